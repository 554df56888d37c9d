/*
 * edgeplus_conv_helpers.h - the unpacking, im2col and packing helpers both conv cores use
 * (edgeplus_conv_core.c, edgeplus_depthwise_core.c; not public API). Static functions: each
 * core gets its own copy and inlines them into its loops as before, so neither core calls
 * into the other.
 */
#ifndef EDGEPLUS_CONV_HELPERS_H
#define EDGEPLUS_CONV_HELPERS_H

#include "edgeplus_internal.h"

#if defined(__GNUC__)
#define EP_CONV_HELPER static __attribute__((unused))
#else
#define EP_CONV_HELPER static
#endif

/* 2-bit x 2-bit lanes: the second member of a pair sits at 2^EP_LANE_SHIFT. */
#define EP_LANE_SHIFT 13


#if EP_USE_WORDS
/* 8-bit run -> int16 (x - zp), 4 values per step. */
EP_CONV_HELPER void ep_unpack8_s16_words(const int8_t *src, int32_t count, int32_t zp, int16_t *dst)
{
    const uint32_t zz = ((uint32_t)zp & 0xFFFFu) * 0x00010001u;
    while (count >= 4) {
        const uint32_t w = ep_ld32(src);
        const uint32_t even = EP_SSUB16(EP_SXTB16(w), zz);         /* x0 x2 */
        const uint32_t odd = EP_SSUB16(ep_sxtb16_ror8((w)), zz); /* x1 x3 */
        ep_st32(dst, ep_pkhbt16(even, odd));
        ep_st32(dst + 2, ep_pkhtb16(odd, even));
        src += 4;
        dst += 4;
        count -= 4;
    }
    while (count-- > 0) {
        *dst++ = (int16_t)(*src++ - zp);
    }
}

/* 4-bit run starting on a byte boundary -> int16 (x - zp), 8 values per step. */
EP_CONV_HELPER void ep_unpack4_s16_words(const int8_t *src, int32_t count, int32_t zp, int16_t *dst)
{
    /* (n ^ 8) - (8 + zp) per byte: in [-15, 15], then widened. */
    const uint32_t k = ((uint32_t)(8 + zp) & 0xFFu) * 0x01010101u;
    int32_t i;
    while (count >= 8) {
        const uint32_t t = ep_ld32(src) ^ 0x88888888u;
        const uint32_t lo = EP_SSUB8(t & 0x0F0F0F0Fu, k);        /* n0 n2 n4 n6 */
        const uint32_t hi = EP_SSUB8((t >> 4) & 0x0F0F0F0Fu, k); /* n1 n3 n5 n7 */
        const uint32_t l0 = EP_SXTB16(lo);                       /* n0 n4 */
        const uint32_t l1 = ep_sxtb16_ror8((lo));              /* n2 n6 */
        const uint32_t h0 = EP_SXTB16(hi);                       /* n1 n5 */
        const uint32_t h1 = ep_sxtb16_ror8((hi));              /* n3 n7 */
        ep_st32(dst, ep_pkhbt16(l0, h0));
        ep_st32(dst + 2, ep_pkhbt16(l1, h1));
        ep_st32(dst + 4, ep_pkhtb16(h0, l0));
        ep_st32(dst + 6, ep_pkhtb16(h1, l1));
        src += 4;
        dst += 8;
        count -= 8;
    }
    for (i = 0; i < count; i++) {
        dst[i] = (int16_t)(ep_load(src, i, 4) - zp);
    }
}

/* 2-bit run starting on a byte boundary -> int16 (x - zp), 16 values per step. */
EP_CONV_HELPER void ep_unpack2_s16_words(const int8_t *src, int32_t count, int32_t zp, int16_t *dst)
{
    const uint32_t k = ((uint32_t)(2 + zp) & 0xFFu) * 0x01010101u;
    int32_t i;
    while (count >= 16) {
        const uint32_t t = ep_ld32(src) ^ 0xAAAAAAAAu;
        const uint32_t f0 = EP_SSUB8(t & 0x03030303u, k);        /* v0 v4 v8 v12 */
        const uint32_t f1 = EP_SSUB8((t >> 2) & 0x03030303u, k); /* v1 v5 v9 v13 */
        const uint32_t f2 = EP_SSUB8((t >> 4) & 0x03030303u, k); /* v2 v6 v10 v14 */
        const uint32_t f3 = EP_SSUB8((t >> 6) & 0x03030303u, k); /* v3 v7 v11 v15 */
        const uint32_t a0 = EP_SXTB16(f0), a1 = ep_sxtb16_ror8((f0));
        const uint32_t b0 = EP_SXTB16(f1), b1 = ep_sxtb16_ror8((f1));
        const uint32_t c0 = EP_SXTB16(f2), c1 = ep_sxtb16_ror8((f2));
        const uint32_t d0 = EP_SXTB16(f3), d1 = ep_sxtb16_ror8((f3));
        ep_st32(dst, ep_pkhbt16(a0, b0));      /* v0 v1 */
        ep_st32(dst + 2, ep_pkhbt16(c0, d0));  /* v2 v3 */
        ep_st32(dst + 4, ep_pkhbt16(a1, b1));  /* v4 v5 */
        ep_st32(dst + 6, ep_pkhbt16(c1, d1));  /* v6 v7 */
        ep_st32(dst + 8, ep_pkhtb16(b0, a0));  /* v8 v9 */
        ep_st32(dst + 10, ep_pkhtb16(d0, c0)); /* v10 v11 */
        ep_st32(dst + 12, ep_pkhtb16(b1, a1)); /* v12 v13 */
        ep_st32(dst + 14, ep_pkhtb16(d1, c1)); /* v14 v15 */
        src += 4;
        dst += 16;
        count -= 16;
    }
    for (i = 0; i < count; i++) {
        dst[i] = (int16_t)(ep_load(src, i, 2) - zp);
    }
}
#endif

/* Unpack `count` elements starting at flat index `start` of a buffer packed at `bits`,
 * subtract `zp`, store as int16. */
EP_CONV_HELPER void ep_unpack_s16(const int8_t *buf, int32_t start, int32_t count, int32_t bits,
                                  int32_t zp, int16_t *dst)
{
#if !EP_USE_WORDS
    int32_t i;
#endif
    if (bits == 8) {
#if EP_USE_WORDS
        ep_unpack8_s16_words(buf + start, count, zp, dst);
#else
        const int8_t *s = buf + start;
        for (i = 0; i < count; i++) {
            dst[i] = (int16_t)(s[i] - zp);
        }
#endif
        return;
    }
    if (bits == 4) {
        /* leading odd nibble, then whole bytes */
        if ((start & 1) && count > 0) {
            *dst++ = (int16_t)(ep_load(buf, start, 4) - zp);
            start++;
            count--;
        }
#if EP_USE_WORDS
        ep_unpack4_s16_words(buf + (start >> 1), count, zp, dst);
#else
        {
            const uint8_t *s = (const uint8_t *)buf + (start >> 1);
            for (i = 0; i + 1 < count; i += 2) {
                const uint32_t b = s[i >> 1];
                dst[i] = (int16_t)((int32_t)((b & 0xFu) ^ 8u) - 8 - zp);
                dst[i + 1] = (int16_t)((int32_t)((b >> 4) ^ 8u) - 8 - zp);
            }
            if (i < count) {
                const uint32_t b = s[i >> 1];
                dst[i] = (int16_t)((int32_t)((b & 0xFu) ^ 8u) - 8 - zp);
            }
        }
#endif
        return;
    }
    /* bits == 2: leading fields up to a byte boundary, then whole bytes */
    while ((start & 3) && count > 0) {
        *dst++ = (int16_t)(ep_load(buf, start, 2) - zp);
        start++;
        count--;
    }
#if EP_USE_WORDS
    ep_unpack2_s16_words(buf + (start >> 2), count, zp, dst);
#else
    {
        const uint8_t *s = (const uint8_t *)buf + (start >> 2);
        const int32_t off = 2 + zp;
        for (i = 0; i + 3 < count; i += 4) {
            const uint32_t b = s[i >> 2] ^ 0xAAu; /* each field + 2 */
            dst[i] = (int16_t)((int32_t)(b & 3u) - off);
            dst[i + 1] = (int16_t)((int32_t)((b >> 2) & 3u) - off);
            dst[i + 2] = (int16_t)((int32_t)((b >> 4) & 3u) - off);
            dst[i + 3] = (int16_t)((int32_t)(b >> 6) - off);
        }
        for (; i < count; i++) {
            dst[i] = (int16_t)(ep_load(buf, start + i, 2) - zp);
        }
    }
#endif
}

#if EP_USE_WORDS
/* 2-bit run (byte-aligned start, count a multiple of 4) -> count/2 paired lanes:
 * column (swap 0): (v[2j] - zp) + (v[2j+1] - zp) * 2^13; weights (swap 1, zp 0):
 * v[2j+1] + v[2j] * 2^13. 16 values per step. */
EP_CONV_HELPER void ep_unpack2_lanes(const int8_t *src, int32_t count, int32_t zp, int swap,
                             int16_t *dst)
{
    const uint32_t k = ((uint32_t)(2 + zp) & 0xFFu) * 0x01010101u;
    const uint32_t k32 = ((uint32_t)((2 + zp) * 32) & 0xFFu) * 0x01010101u;
    int32_t j;
    while (count >= 16) {
        const uint32_t t = ep_ld32(src) ^ 0xAAAAAAAAu; /* fields + 2, in [0, 3] */
        const uint32_t tl = swap ? t >> 2 : t;        /* low member of each pair at bit 0 */
        const uint32_t th = swap ? t : t >> 2;        /* high member at bit 0 */
        /* byte b holds pairs 2b (bits 0..3) and 2b+1 (bits 4..7) */
        const uint32_t lo0 = EP_SSUB8(tl & 0x03030303u, k);              /* pairs 0 2 4 6 */
        const uint32_t lo1 = EP_SSUB8((tl >> 4) & 0x03030303u, k);       /* pairs 1 3 5 7 */
        const uint32_t hi0 = EP_SSUB8((th << 5) & 0x60606060u, k32);     /* 32 * high */
        const uint32_t hi1 = EP_SSUB8((th << 1) & 0x60606060u, k32);
        const uint32_t l04 = EP_SADD16(EP_SXTB16(lo0), (hi0 << 8) & 0xFF00FF00u);
        const uint32_t l26 = EP_SADD16(ep_sxtb16_ror8((lo0)), hi0 & 0xFF00FF00u);
        const uint32_t l15 = EP_SADD16(EP_SXTB16(lo1), (hi1 << 8) & 0xFF00FF00u);
        const uint32_t l37 = EP_SADD16(ep_sxtb16_ror8((lo1)), hi1 & 0xFF00FF00u);
        ep_st32(dst, ep_pkhbt16(l04, l15));
        ep_st32(dst + 2, ep_pkhbt16(l26, l37));
        ep_st32(dst + 4, ep_pkhtb16(l15, l04));
        ep_st32(dst + 6, ep_pkhtb16(l37, l26));
        src += 4;
        dst += 8;
        count -= 16;
    }
    for (j = 0; j < count / 2; j++) {
        const int32_t a = ep_load(src, 2 * j, 2) - zp;
        const int32_t b = ep_load(src, 2 * j + 1, 2) - zp;
        dst[j] = (int16_t)(swap ? b + a * (1 << EP_LANE_SHIFT) : a + b * (1 << EP_LANE_SHIFT));
    }
}
#endif


EP_INLINE void ep_run(const ep_im2col *g, int32_t start, int32_t count, int16_t *d)
{
#if EP_USE_WORDS
    if (g->lanes) {
        ep_unpack2_lanes(g->input + (start >> 2), count, g->in_zp, 0, d);
        return;
    }
#endif
    ep_unpack_s16(g->input, start, count, g->in_bits, g->in_zp, d);
}

/* Column of output pixel (n, oy, ox): [ky][kx][c] of (x - zp), padding 0, zero tail up
 * to kpad (int16 values; with g->lanes, kpad/2 paired lanes). */
EP_CONV_HELPER void ep_im2col_pixel(const ep_im2col *g, int32_t n, int32_t oy, int32_t ox, int16_t *dst)
{
    const int32_t c = g->in_c;
    /* int64: oy * stride may pass INT32_MAX when a huge pad brings it back in range */
    const int64_t iy0 = (int64_t)oy * g->sh - g->ph;
    const int64_t ix0 = (int64_t)ox * g->sw - g->pw;
    const int32_t div = g->lanes ? 2 : 1; /* int16 slots per value */
    const int32_t row_len = g->kw * c;
    /* whole kernel row inside the input and contiguous in the buffer */
    const int contiguous_row = (g->dw == 1 && ix0 >= 0 && ix0 + g->kw <= g->in_w);
    int16_t *d = dst;
    int32_t ky, kx;
    for (ky = 0; ky < g->kh; ky++) {
        const int64_t iy = iy0 + (int64_t)ky * g->dh; /* a huge dilation: past int32 */
        int32_t row_base;
        if (iy < 0 || iy >= g->in_h) {
            memset(d, 0, (size_t)(row_len / div) * sizeof(int16_t));
            d += row_len / div;
            continue;
        }
        row_base = (n * g->rh + ((int32_t)iy - g->ry)) * g->rw;
        if (contiguous_row) {
            ep_run(g, (row_base + (int32_t)ix0 - g->rx) * c, row_len, d);
            d += row_len / div;
            continue;
        }
        for (kx = 0; kx < g->kw; kx++) {
            const int64_t ix = ix0 + (int64_t)kx * g->dw;
            if (ix < 0 || ix >= g->in_w) {
                memset(d, 0, (size_t)(c / div) * sizeof(int16_t));
            } else {
                ep_run(g, (row_base + (int32_t)ix - g->rx) * c, c, d);
            }
            d += c / div;
        }
    }
    if (g->kpad > g->kc) {
        memset(d, 0, (size_t)((g->kpad - g->kc) / div) * sizeof(int16_t));
    }
}

/* Pack `count` int8 values (in range: masking is exact) into a buffer at `bits` starting
 * at flat index `start` (read-modify-write only at the run's ends); from the first whole
 * byte on, 8 nibbles or 16 2-bit fields per 32-bit store. */
EP_CONV_HELPER void ep_pack_run(int8_t *buf, int32_t start, const int8_t *v, int32_t count,
                               int32_t bits)
{
    int32_t i = 0;
    if (bits == 4) {
        if ((start & 1) && count > 0) {
            ep_store(buf, start, 4, v[0]);
            i = 1;
        }
        for (; i + 7 < count; i += 8) {
            uint32_t t0 = ep_ld32(v + i) & 0x0F0F0F0Fu;
            uint32_t t1 = ep_ld32(v + i + 4) & 0x0F0F0F0Fu;
            t0 |= t0 >> 4; /* bytes 0, 2: (v0, v1), (v2, v3) */
            t1 |= t1 >> 4;
            ep_st32(buf + ((start + i) >> 1), (t0 & 0xFFu) | ((t0 >> 8) & 0xFF00u) |
                                                  ((t1 & 0xFFu) << 16) |
                                                  ((t1 << 8) & 0xFF000000u));
        }
        for (; i + 1 < count; i += 2) {
            buf[(start + i) >> 1] =
                (int8_t)(((uint32_t)v[i] & 0xFu) | (((uint32_t)v[i + 1] & 0xFu) << 4));
        }
    } else if (bits == 2) {
        for (; i < count && ((start + i) & 3); i++) {
            ep_store(buf, start + i, 2, v[i]);
        }
        for (; i + 15 < count; i += 16) {
            uint32_t r = 0;
            int k;
            for (k = 0; k < 4; k++) {
                uint32_t t = ep_ld32(v + i + 4 * k) & 0x03030303u;
                t |= t >> 6;  /* bytes 0, 2: (v0, v1), (v2, v3) */
                t |= t >> 12; /* byte 0: v0 v1 v2 v3 */
                r |= (t & 0xFFu) << (8 * k);
            }
            ep_st32(buf + ((start + i) >> 2), r);
        }
        for (; i + 3 < count; i += 4) {
            buf[(start + i) >> 2] =
                (int8_t)(((uint32_t)v[i] & 3u) | (((uint32_t)v[i + 1] & 3u) << 2) |
                         (((uint32_t)v[i + 2] & 3u) << 4) | (((uint32_t)v[i + 3] & 3u) << 6));
        }
    }
    for (; i < count; i++) {
        ep_store(buf, start + i, bits, v[i]);
    }
}

#endif /* EDGEPLUS_CONV_HELPERS_H */
