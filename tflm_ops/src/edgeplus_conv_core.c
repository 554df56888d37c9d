/*
 * edgeplus_conv_core.c - shared implementation of edgeplus_conv2d[_window] and
 * edgeplus_depthwise_conv2d[_window] (internal, not public API).
 *
 * Conv algorithm (both paths): for each output row of the window, output pixels are
 * taken in blocks of P (even, <= EDGEPLUS_CONV_PIXEL_BLOCK, limited by the scratch).
 * Each pixel's im2col column is unpacked once into int16 as (x - input_zp) (padding
 * = 0; length kpad = K*C rounded up to 16 with zeros) and stored interleaved with the
 * other pixel of its pair, one 32-bit word (two int16) at a time. For each pair of
 * output channels the two weight rows are unpacked once, interleaved the same way,
 * and every pixel pair of the block is reduced 2x2 (two pixels x two channels): the
 * inner loop loads one word pair of each stream (LDRD) and issues 4 SMLAD = 8 MACs.
 * Weight unpacking costs 1/P per MAC, the im2col 1/out_c per MAC.
 *
 * 2-bit activations x 2-bit weights: two products share one 16-bit lane. The column
 * holds halfwords A = a0 + a1*2^13 and the weight row B = b1 + b0*2^13 (|a| <= 3,
 * |b| <= 2, so both fit int16), and A*B = a0*b1 + (a0*b0 + a1*b1)*2^13 + a1*b0*2^26:
 * one SMLAD adds four MACs into the field at 2^13. Field bounds: per SMLAD the low
 * field moves by at most 2*3*2 = 12 and the middle one by at most 4*6 = 24; both must
 * stay inside (-2^12, 2^12) to be decoded, which holds for up to 170 SMLADs: the
 * accumulators are decoded (sign-extended bits 13..25 after adding 2^12) and
 * cleared every EDGEPLUS_W2A2_FLUSH (160) words. Bits above 26 wrap harmlessly.
 *
 * Accumulators: every lane product is |x - zp| * |w| <= (2^in_bits - 1) *
 * 2^(w_bits-1) and K*C <= EDGEPLUS_MAX_KC(in_bits, w_bits) is checked at entry, so
 * the int32 sums cannot overflow (SMLAD adds two such products at a time).
 *
 * Depthwise: validated and prepared here, computed by edgeplus__dw_planar
 * (edgeplus_depthwise_core.c: planar unpacked input rows, see there). Geometries whose
 * planar scratch would exceed EDGEPLUS_DW_PLANAR_MAX (huge dilations) fall back to
 * ep_depthwise_loop: one im2col column per output pixel ([ky][kx][c], the filter
 * unpacked once, SMLABB/SMLATT on channel pairs).
 *
 * The DSP path's word operations (SMLAD, SXTB16, SSUB8, ...) are ACLE intrinsics on
 * the M4; EDGEPLUS_EMULATE_DSP replaces them with C so the host tests (and the
 * sanitizers) run the same code (edgeplus_internal.h).
 */
#include <string.h>

#include "edgeplus_internal.h"

#define EP_LANE_SHIFT 13

/* ------------------------------------------------------------------ validation */

static int ep_in_range(int32_t v, int32_t bits)
{
    return v >= ep_qmin(bits) && v <= ep_qmax(bits);
}

/* Every dim >= 1 and n*h*w*c <= INT32_MAX; each partial product is bounded before the
 * next factor (four int32 factors can overflow even an int64 product). */
static int ep_dims_positive(const edgeplus_dims *d)
{
    int64_t count;
    if (d->n <= 0 || d->h <= 0 || d->w <= 0 || d->c <= 0) {
        return 0;
    }
    count = (int64_t)d->n * d->h; /* < 2^62 */
    if (count > INT32_MAX) {
        return 0;
    }
    count *= d->w;
    return count <= INT32_MAX && count * d->c <= INT32_MAX;
}

edgeplus_status edgeplus__check_conv_args(const edgeplus_conv_params *params,
                                          const edgeplus_dims *input_dims,
                                          const edgeplus_dims *filter_dims,
                                          const edgeplus_dims *output_dims, int depthwise)
{
    int32_t dh, dw;
    int64_t ekh, ekw, kc;
    if (params == NULL || input_dims == NULL || filter_dims == NULL || output_dims == NULL) {
        return EDGEPLUS_ERR_NULL;
    }
    if (!ep_bits_ok(params->in_bits) || !ep_bits_ok(params->w_bits) ||
        !ep_bits_ok(params->out_bits)) {
        return EDGEPLUS_ERR_BITS;
    }
    if (!ep_dims_positive(input_dims) || !ep_dims_positive(filter_dims) ||
        !ep_dims_positive(output_dims)) {
        return EDGEPLUS_ERR_DIMS;
    }
    if (params->stride_h < 1 || params->stride_w < 1 || params->pad_h < 0 ||
        params->pad_w < 0 || params->dilation_h < 0 || params->dilation_w < 0) {
        return EDGEPLUS_ERR_ARG;
    }
    if (!ep_in_range(params->input_zero_point, params->in_bits) ||
        !ep_in_range(params->output_zero_point, params->out_bits) ||
        !ep_in_range(params->act_min, params->out_bits) ||
        !ep_in_range(params->act_max, params->out_bits) || params->act_min > params->act_max) {
        return EDGEPLUS_ERR_ARG;
    }
    if (output_dims->n != input_dims->n) {
        return EDGEPLUS_ERR_DIMS;
    }
    if (depthwise) {
        if (filter_dims->n != 1 || filter_dims->c != input_dims->c ||
            output_dims->c != input_dims->c) {
            return EDGEPLUS_ERR_DIMS;
        }
        kc = (int64_t)filter_dims->h * filter_dims->w;
    } else {
        if (filter_dims->c != input_dims->c || filter_dims->n != output_dims->c) {
            return EDGEPLUS_ERR_DIMS;
        }
        kc = (int64_t)filter_dims->h * filter_dims->w * filter_dims->c;
    }
    if (kc > EDGEPLUS_MAX_KC(params->in_bits, params->w_bits)) {
        return EDGEPLUS_ERR_DIMS;
    }
    /* im2col columns must fit int32 sizes (with the x3 of the minimum scratch). */
    if ((int64_t)filter_dims->h * filter_dims->w * input_dims->c > (INT32_MAX / 8)) {
        return EDGEPLUS_ERR_DIMS;
    }
    dh = params->dilation_h > 0 ? params->dilation_h : 1;
    dw = params->dilation_w > 0 ? params->dilation_w : 1;
    ekh = (int64_t)(filter_dims->h - 1) * dh + 1;
    ekw = (int64_t)(filter_dims->w - 1) * dw + 1;
    if (params->pad_h >= ekh || params->pad_w >= ekw) {
        return EDGEPLUS_ERR_ARG;
    }
    /* Every output position must read at least one input row/col (TFLite's
     * SAME and VALID always satisfy this). */
    if ((int64_t)(output_dims->h - 1) * params->stride_h - params->pad_h > input_dims->h - 1 ||
        (int64_t)(output_dims->w - 1) * params->stride_w - params->pad_w > input_dims->w - 1) {
        return EDGEPLUS_ERR_DIMS;
    }
    return EDGEPLUS_OK;
}

int32_t edgeplus__conv_wcache_bytes(const edgeplus_conv_params *params,
                                    const edgeplus_dims *input_dims,
                                    const edgeplus_dims *filter_dims)
{
    /* words per member: 2-bit x 2-bit lanes hold 4 values per word, int16 two */
    const int64_t kpad = ep_kpad(input_dims, filter_dims);
    const int pairs = params->in_bits == 2 && params->w_bits == 2;
    const int64_t mw = pairs ? kpad / 4 : kpad / 2;
    const int64_t bytes = (int64_t)((filter_dims->n + 1) & ~1) * mw * 4;
    return bytes > INT32_MAX ? (int32_t)EDGEPLUS_ERR_DIMS : (int32_t)bytes;
}

int32_t edgeplus__conv_scratch_bytes(const edgeplus_dims *input_dims,
                                     const edgeplus_dims *filter_dims, int32_t pixels,
                                     int depthwise)
{
    /* 8 (alignment slack) + per-channel requant table (16 B/channel) + output staging
     * (pixels x channels int8) + int16 columns: conv: a temp column, a weight-row pair
     * and an even number of im2col columns; depthwise: one column and the filter. */
    const int64_t kpad = ep_kpad(input_dims, filter_dims);
    const int64_t oc = depthwise ? input_dims->c : filter_dims->n;
    const int64_t px = depthwise ? 1 : (int64_t)((pixels + 1) & ~1);
    const int64_t rows = depthwise ? 2 : px + 3;
    const int64_t bytes = 8 + oc * 16 + ((px * oc + 3) & ~(int64_t)3) + rows * kpad * 2;
    return bytes > INT32_MAX ? (int32_t)EDGEPLUS_ERR_DIMS : (int32_t)bytes;
}

/* ------------------------------------------------------------------ unpacking */

#if EP_USE_WORDS
/* 8-bit run -> int16 (x - zp), 4 values per step. */
static void ep_unpack8_s16_words(const int8_t *src, int32_t count, int32_t zp, int16_t *dst)
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
static void ep_unpack4_s16_words(const int8_t *src, int32_t count, int32_t zp, int16_t *dst)
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
static void ep_unpack2_s16_words(const int8_t *src, int32_t count, int32_t zp, int16_t *dst)
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

void edgeplus__unpack_s16(const int8_t *buf, int32_t start, int32_t count, int32_t bits,
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
static void ep_unpack2_lanes(const int8_t *src, int32_t count, int32_t zp, int swap,
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

/* In-place: int16 values v[0..n) (n even) -> n/2 paired lanes (see ep_unpack2_lanes). */
static void ep_pair_lanes(int16_t *v, int32_t n, int swap)
{
    int32_t j;
    for (j = 0; j < n / 2; j++) {
        const int32_t a = v[2 * j];
        const int32_t b = v[2 * j + 1];
        v[j] = (int16_t)(swap ? (b + a * (1 << EP_LANE_SHIFT)) : (a + b * (1 << EP_LANE_SHIFT)));
    }
}

/* ------------------------------------------------------------------ im2col */

EP_INLINE void ep_run(const ep_im2col *g, int32_t start, int32_t count, int16_t *d)
{
#if EP_USE_WORDS
    if (g->lanes) {
        ep_unpack2_lanes(g->input + (start >> 2), count, g->in_zp, 0, d);
        return;
    }
#endif
    edgeplus__unpack_s16(g->input, start, count, g->in_bits, g->in_zp, d);
}

/* Column of output pixel (n, oy, ox): [ky][kx][c] of (x - zp), padding 0, zero tail up
 * to kpad (int16 values; with g->lanes, kpad/2 paired lanes). */
static void ep_im2col_pixel(const ep_im2col *g, int32_t n, int32_t oy, int32_t ox, int16_t *dst)
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

/* Store `words` words of src into slot `slot` (0/1) of an interleaved pair buffer. */
static void ep_interleave(uint32_t *pair, int slot, const int16_t *src, int32_t words)
{
    uint32_t *d = pair + slot;
    int32_t i;
    for (i = 0; i < words; i++) {
        d[2 * i] = ep_ld32(src + 2 * i);
    }
}

/* ------------------------------------------------------------------ dot products */

/* Decode the middle field of a paired-lane accumulator. */
EP_INLINE int32_t ep_lane_decode(int32_t acc)
{
    const uint32_t t = (uint32_t)acc + (1u << (EP_LANE_SHIFT - 1));
    const uint32_t field = (t >> EP_LANE_SHIFT) & ((1u << EP_LANE_SHIFT) - 1u);
    return (int32_t)(field ^ (1u << (EP_LANE_SHIFT - 1))) - (1 << (EP_LANE_SHIFT - 1));
}

/* 2x2 dot products of interleaved pairs: a = pixel pair, b = channel pair, each
 * `mw` words (two int16) per member, mw a multiple of 4 (>= 4).
 * out = {p0c0, p0c1, p1c0, p1c1}. */
#if EP_USE_WORDS && defined(__ARM_FEATURE_DSP) && !defined(EDGEPLUS_NO_DSP) && \
    defined(__GNUC__) && !defined(EDGEPLUS_NO_ASM)
#define EP_DOT_ASM 1
#else
#define EP_DOT_ASM 0
#endif

/* s[0..3] += 2x2 dot products of interleaved pairs: a = pixel pair, b = channel pair,
 * `mw` words per member (a multiple of 4, >= 4); s = {p0c0, p0c1, p1c0, p1c1}. */
EP_INLINE void ep_dot_il_acc(const uint32_t *a, const uint32_t *b, int32_t mw, int32_t *s)
{
    int32_t s00 = s[0], s01 = s[1], s10 = s[2], s11 = s[3];
    const uint32_t *end = a + 2 * mw;
#if EP_DOT_ASM
    /* GCC splits the loads into single LDRs; LDRD halves the load count:
     * 8 LDRD + 16 SMLAD + 2 loop = 26 instructions per 16 SMLAD. */
    uint32_t a0, a1, b0, b1;
    __asm__ volatile(
        "1:\n\t"
        "ldrd %[a0], %[a1], [%[pa]], #8\n\t"
        "ldrd %[b0], %[b1], [%[pb]], #8\n\t"
        "smlad %[s00], %[a0], %[b0], %[s00]\n\t"
        "smlad %[s01], %[a0], %[b1], %[s01]\n\t"
        "smlad %[s10], %[a1], %[b0], %[s10]\n\t"
        "smlad %[s11], %[a1], %[b1], %[s11]\n\t"
        "ldrd %[a0], %[a1], [%[pa]], #8\n\t"
        "ldrd %[b0], %[b1], [%[pb]], #8\n\t"
        "smlad %[s00], %[a0], %[b0], %[s00]\n\t"
        "smlad %[s01], %[a0], %[b1], %[s01]\n\t"
        "smlad %[s10], %[a1], %[b0], %[s10]\n\t"
        "smlad %[s11], %[a1], %[b1], %[s11]\n\t"
        "ldrd %[a0], %[a1], [%[pa]], #8\n\t"
        "ldrd %[b0], %[b1], [%[pb]], #8\n\t"
        "smlad %[s00], %[a0], %[b0], %[s00]\n\t"
        "smlad %[s01], %[a0], %[b1], %[s01]\n\t"
        "smlad %[s10], %[a1], %[b0], %[s10]\n\t"
        "smlad %[s11], %[a1], %[b1], %[s11]\n\t"
        "ldrd %[a0], %[a1], [%[pa]], #8\n\t"
        "ldrd %[b0], %[b1], [%[pb]], #8\n\t"
        "smlad %[s00], %[a0], %[b0], %[s00]\n\t"
        "smlad %[s01], %[a0], %[b1], %[s01]\n\t"
        "smlad %[s10], %[a1], %[b0], %[s10]\n\t"
        "smlad %[s11], %[a1], %[b1], %[s11]\n\t"
        "cmp %[pa], %[end]\n\t"
        "blo 1b\n\t"
        : [s00] "+r"(s00), [s01] "+r"(s01), [s10] "+r"(s10), [s11] "+r"(s11), [pa] "+r"(a),
          [pb] "+r"(b), [a0] "=&r"(a0), [a1] "=&r"(a1), [b0] "=&r"(b0), [b1] "=&r"(b1)
        : [end] "r"(end)
        : "cc", "memory");
#elif EP_USE_WORDS
    do {
        int i;
        for (i = 0; i < 4; i++) {
            const uint32_t a0 = a[2 * i], a1 = a[2 * i + 1], b0 = b[2 * i], b1 = b[2 * i + 1];
            s00 = EP_SMLAD(a0, b0, s00);
            s01 = EP_SMLAD(a0, b1, s01);
            s10 = EP_SMLAD(a1, b0, s10);
            s11 = EP_SMLAD(a1, b1, s11);
        }
        a += 8;
        b += 8;
    } while (a < end);
#else
    do {
        const int32_t x0 = (int16_t)(a[0] & 0xFFFFu), x1 = (int16_t)(a[0] >> 16);
        const int32_t y0 = (int16_t)(a[1] & 0xFFFFu), y1 = (int16_t)(a[1] >> 16);
        const int32_t u0 = (int16_t)(b[0] & 0xFFFFu), u1 = (int16_t)(b[0] >> 16);
        const int32_t v0 = (int16_t)(b[1] & 0xFFFFu), v1 = (int16_t)(b[1] >> 16);
        s00 += x0 * u0 + x1 * u1;
        s01 += x0 * v0 + x1 * v1;
        s10 += y0 * u0 + y1 * u1;
        s11 += y0 * v0 + y1 * v1;
        a += 2;
        b += 2;
    } while (a < end);
#endif
    s[0] = s00;
    s[1] = s01;
    s[2] = s10;
    s[3] = s11;
}

/* out = 2x2 dot products (int16 lanes). */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void ep_dot_il(const uint32_t *a, const uint32_t *b, int32_t mw, int32_t *out)
{
    out[0] = out[1] = out[2] = out[3] = 0;
    ep_dot_il_acc(a, b, mw, out);
}

#if EP_USE_WORDS
/* Paired-lane (2-bit x 2-bit) variant: each SMLAD adds 4 MACs to the middle field;
 * decoded and cleared every EDGEPLUS_W2A2_FLUSH words. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void ep_dot_il_lanes(const uint32_t *a, const uint32_t *b, int32_t mw, int32_t *out)
{
    int32_t t[4] = {0, 0, 0, 0};
    int32_t s[4];
    while (mw > 0) {
        const int32_t chunk = mw < EDGEPLUS_W2A2_FLUSH ? mw : EDGEPLUS_W2A2_FLUSH;
        s[0] = s[1] = s[2] = s[3] = 0;
        ep_dot_il_acc(a, b, chunk, s);
        t[0] += ep_lane_decode(s[0]);
        t[1] += ep_lane_decode(s[1]);
        t[2] += ep_lane_decode(s[2]);
        t[3] += ep_lane_decode(s[3]);
        a += 2 * chunk;
        b += 2 * chunk;
        mw -= chunk;
    }
    out[0] = t[0];
    out[1] = t[1];
    out[2] = t[2];
    out[3] = t[3];
}
#endif

/* ------------------------------------------------------------------ output */

/* The per-channel requantization table (ep_rq, see edgeplus_internal.h). */
static void ep_rq_prepare(ep_rq *rq, const edgeplus_quant_params *quant, const int32_t *bias,
                          int32_t channels, int64_t acc_bound)
{
    int32_t ch;
    for (ch = 0; ch < channels; ch++) {
        const int32_t shift = quant->shift[ch];
        const int32_t b = bias != NULL ? bias[ch] : 0;
        const int32_t left = shift > 0 ? shift : 0;
        const int32_t right = shift > 0 ? 0 : -shift;
        const int64_t bound = acc_bound + (b < 0 ? -(int64_t)b : (int64_t)b);
        rq[ch].mult = quant->multiplier[ch];
        rq[ch].bias = b;
        if (bound < ((int64_t)1 << (30 - left))) {
            rq[ch].lshift = (int16_t)(left + 1);
            rq[ch].rshift = (int16_t)right;
            rq[ch].round = right > 0 ? (int32_t)(1u << (right - 1)) : 0;
        } else {
            rq[ch].lshift = -1;
            rq[ch].rshift = 0;
            rq[ch].round = shift;
        }
    }
}

/* Fast-path requantization with the channel's constants in registers. */
EP_INLINE int32_t ep_rq_fast(int32_t acc, int32_t bias, int32_t lshift, int32_t mult,
                             int32_t rshift, int32_t round)
{
    const int32_t h = ep_smmulr((int32_t)((uint32_t)(acc + bias) << lshift), mult);
    if (rshift == 0) {
        return h;
    }
    return (h + round - (int32_t)((uint32_t)h >> 31)) >> rshift;
}

/* The four results of a 2x2 block, acc = {p0c0, p0c1, p1c0, p1c1}, as int8 at d0[0..1]
 * (pixel 0, channels oc / oc+1) and d1[0..1] (pixel 1; d1 NULL: none). d0/d1 point
 * into the int8 output or into the staging rows of a 2/4-bit output. Everything is
 * loaded before the first store (an int8 store may alias anything). */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void ep_emit_block(const ep_out *o, const ep_rq *q, const int32_t *acc, int8_t *d0,
                          int8_t *d1, int two_ch)
{
    const int32_t zp = o->zp, lo = o->act_min, hi = o->act_max;
    const ep_rq *q1 = two_ch ? q + 1 : q;
    const int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    int32_t v00, v01, v10, v11;
    if (q->lshift >= 0 && q1->lshift >= 0) {
        const int32_t m0 = q->mult, b0 = q->bias, l0 = q->lshift, r0 = q->rshift, n0 = q->round;
        const int32_t m1 = q1->mult, b1 = q1->bias, l1 = q1->lshift, r1 = q1->rshift,
                      n1 = q1->round;
        v00 = ep_rq_fast(a0, b0, l0, m0, r0, n0);
        v10 = ep_rq_fast(a2, b0, l0, m0, r0, n0);
        v01 = ep_rq_fast(a1, b1, l1, m1, r1, n1);
        v11 = ep_rq_fast(a3, b1, l1, m1, r1, n1);
    } else {
        v00 = ep_rq_apply(a0, q);
        v10 = ep_rq_apply(a2, q);
        v01 = ep_rq_apply(a1, q1);
        v11 = ep_rq_apply(a3, q1);
    }
    d0[0] = ep_clamp8(v00 + zp, lo, hi);
    if (two_ch) {
        d0[1] = ep_clamp8(v01 + zp, lo, hi);
    }
    if (d1 != NULL) {
        d1[0] = ep_clamp8(v10 + zp, lo, hi);
        if (two_ch) {
            d1[1] = ep_clamp8(v11 + zp, lo, hi);
        }
    }
}

/* Pack `count` int8 values into a buffer at `bits` starting at flat index `start`
 * (read-modify-write only at the run's ends). */
void edgeplus__pack_run(int8_t *buf, int32_t start, const int8_t *v, int32_t count,
                        int32_t bits)
{
    int32_t i = 0;
    if (bits == 4) {
        if ((start & 1) && count > 0) {
            ep_store(buf, start, 4, v[0]);
            i = 1;
        }
        for (; i + 1 < count; i += 2) {
            buf[(start + i) >> 1] =
                (int8_t)(((uint32_t)v[i] & 0xFu) | (((uint32_t)v[i + 1] & 0xFu) << 4));
        }
    } else if (bits == 2) {
        for (; i < count && ((start + i) & 3); i++) {
            ep_store(buf, start + i, 2, v[i]);
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

static int ep_window_inside(const edgeplus_window *w, int32_t h, int32_t wd)
{
    return w->h > 0 && w->w > 0 && w->y >= 0 && w->x >= 0 && (int64_t)w->y + w->h <= h &&
           (int64_t)w->x + w->w <= wd;
}

static int ep_window_contains(const edgeplus_window *outer, const edgeplus_window *inner)
{
    return inner->y >= outer->y && inner->x >= outer->x &&
           (int64_t)inner->y + inner->h <= (int64_t)outer->y + outer->h &&
           (int64_t)inner->x + inner->w <= (int64_t)outer->x + outer->w;
}

/* ------------------------------------------------------------------ compute loops */

static void ep_depthwise_loop(const ep_im2col *g, const ep_out *o, const ep_rq *rq,
                              const edgeplus_window *win, int32_t batches, const int8_t *filter,
                              int32_t w_bits, int8_t *stage, int16_t *col)
{
    const int32_t c = g->in_c;
    const int32_t kk = g->kh * g->kw;
    int16_t *wbuf = col + g->kpad;
    int32_t n, oy, ox, ch;
    edgeplus__unpack_s16(filter, 0, g->kc, w_bits, 0, wbuf);
    for (n = 0; n < batches; n++) {
        for (oy = win->y; oy < win->y + win->h; oy++) {
            for (ox = win->x; ox < win->x + win->w; ox++) {
                const int32_t base = ep_out_index(o, n, oy, ox);
                int8_t *dst = o->bits == 8 ? o->output + base : stage;
                ep_im2col_pixel(g, n, oy, ox, col);
                ch = 0;
#if EP_USE_WORDS
                if ((c & 1) == 0) {
                    /* channel pairs: col/weights at k*c + ch are 4-byte aligned */
                    for (; ch < c; ch += 2) {
                        int32_t s0 = 0, s1 = 0, k;
                        for (k = 0; k < kk; k++) {
                            const uint32_t x = ep_ld32(col + k * c + ch);
                            const uint32_t y = ep_ld32(wbuf + k * c + ch);
                            s0 = EP_SMLABB(x, y, s0);
                            s1 = EP_SMLATT(x, y, s1);
                        }
                        dst[ch] = ep_out_value(o, rq + ch, s0);
                        dst[ch + 1] = ep_out_value(o, rq + ch + 1, s1);
                    }
                }
#endif
                for (; ch < c; ch++) {
                    int32_t s = 0, k;
                    for (k = 0; k < kk; k++) {
                        s += (int32_t)col[k * c + ch] * wbuf[k * c + ch];
                    }
                    dst[ch] = ep_out_value(o, rq + ch, s);
                }
                if (o->bits != 8) {
                    edgeplus__pack_run(o->output, base, stage, c, o->bits);
                }
            }
        }
    }
}

/* Unpack weight rows oc and oc+1 (or oc twice) into the interleaved pair `wpair`. */
static void ep_weight_pair(const ep_im2col *g, const int8_t *filter, int32_t w_bits, int pairs,
                           int32_t oc, int two_ch, int16_t *tmp, uint32_t *wpair, int32_t mw)
{
    int ci;
    for (ci = 0; ci < 2; ci++) {
        const int32_t ch = oc + ci;
        if (ci == 1 && !two_ch) {
            ep_interleave(wpair, 1, tmp, mw); /* lone last channel */
            break;
        }
#if EP_USE_WORDS
        if (pairs && g->lanes) {
            /* in_c % 4 == 0: the row starts on a byte, kc is a multiple of 4 */
            ep_unpack2_lanes(filter + ((ch * g->kc) >> 2), g->kc, 0, 1, tmp);
            memset(tmp + g->kc / 2, 0, (size_t)(g->kpad - g->kc) / 2 * 2);
        } else
#endif
        {
            edgeplus__unpack_s16(filter, ch * g->kc, g->kc, w_bits, 0, tmp);
            memset(tmp + g->kc, 0, (size_t)(g->kpad - g->kc) * sizeof(int16_t));
            if (pairs) {
                ep_pair_lanes(tmp, g->kpad, 1);
            }
        }
        ep_interleave(wpair, ci, tmp, mw);
    }
}

/* Bytes of the optional weight cache: all rows, unpacked and interleaved by pairs. */
static int64_t ep_wcache_bytes(int32_t oc, int32_t kpad, int pairs)
{
    const int64_t mw = pairs ? kpad / 4 : kpad / 2;
    return (int64_t)((oc + 1) & ~1) * mw * 4;
}

static void ep_conv_loop(const ep_im2col *g, const ep_out *o, const ep_rq *rq,
                         const edgeplus_window *win, int32_t batches, const int8_t *filter,
                         int32_t w_bits, int pairs, int8_t *stage, int16_t *tmp, int32_t block,
                         uint32_t *wcache)
{
    /* scratch: tmp column | weight-row pair | block of interleaved column pairs
     * [| weight cache] */
    uint32_t *wpair = (uint32_t *)(void *)(tmp + g->kpad);
    uint32_t *blk = wpair + g->kpad;
    /* words per member: int16 values two per word; paired lanes four per word */
    const int32_t mw = pairs ? g->kpad / 4 : g->kpad / 2;
    const int direct = (o->bits == 8);
    const int32_t total = win->h * win->w; /* <= the output's h * w <= INT32_MAX */
    int32_t obase[EDGEPLUS_CONV_PIXEL_BLOCK];
    int32_t n;
    int64_t f; /* f + block may pass INT32_MAX */
    if (wcache != NULL) {
        int32_t oc;
        for (oc = 0; oc < o->oc; oc += 2) {
            ep_weight_pair(g, filter, w_bits, pairs, oc, oc + 1 < o->oc, tmp,
                           wcache + (oc >> 1) * 2 * mw, mw);
        }
    }
    for (n = 0; n < batches; n++) {
        /* blocks of `block` window pixels in raster order (a block may span rows, so
         * narrow patch windows still fill it) */
        int32_t oy = win->y, ox = win->x;
        for (f = 0; f < total; f += block) {
            {
                int32_t np = (int32_t)(total - f);
                int32_t p, oc;
                if (np > block) {
                    np = block;
                }
                for (p = 0; p < np; p++) {
                    uint32_t *slot_pair = blk + (p >> 1) * 2 * mw;
                    ep_im2col_pixel(g, n, oy, ox, tmp);
                    if (pairs && !g->lanes) {
                        ep_pair_lanes(tmp, g->kpad, 0);
                    }
                    ep_interleave(slot_pair, p & 1, tmp, mw);
                    if ((p & 1) == 0 && p + 1 == np) {
                        ep_interleave(slot_pair, 1, tmp, mw); /* lone last pixel */
                    }
                    obase[p] = ep_out_index(o, n, oy, ox);
                    if (++ox == win->x + win->w) {
                        ox = win->x;
                        oy++;
                    }
                }
                for (oc = 0; oc < o->oc; oc += 2) {
                    const int two_ch = (oc + 1 < o->oc);
                    const uint32_t *wp = wcache != NULL ? wcache + (oc >> 1) * 2 * mw : wpair;
                    if (wcache == NULL) {
                        ep_weight_pair(g, filter, w_bits, pairs, oc, two_ch, tmp, wpair, mw);
                    }
                    for (p = 0; p < np; p += 2) {
                        const uint32_t *a = blk + (p >> 1) * 2 * mw;
                        const int two_px = (p + 1 < np);
                        int8_t *d0 = direct ? o->output + obase[p] + oc : stage + p * o->oc + oc;
                        int8_t *d1 = !two_px ? NULL
                                     : direct ? o->output + obase[p + 1] + oc
                                              : stage + (p + 1) * o->oc + oc;
                        int32_t acc[4];
#if EP_USE_WORDS
                        if (pairs) {
                            ep_dot_il_lanes(a, wp, mw, acc);
                        } else
#endif
                        {
                            ep_dot_il(a, wp, mw, acc);
                        }
                        ep_emit_block(o, rq + oc, acc, d0, d1, two_ch);
                    }
                }
                if (!direct) {
                    for (p = 0; p < np; p++) {
                        edgeplus__pack_run(o->output, obase[p], stage + p * o->oc, o->oc, o->bits);
                    }
                }
            }
        }
    }
}

/* ------------------------------------------------------------------ entry */

edgeplus_status edgeplus__conv_core(const edgeplus_context *ctx,
                                    const edgeplus_conv_params *params,
                                    const edgeplus_quant_params *quant,
                                    const edgeplus_dims *input_dims,
                                    const edgeplus_window *input_region,
                                    const int8_t *input,
                                    const edgeplus_dims *filter_dims, const int8_t *filter,
                                    const int32_t *bias,
                                    const edgeplus_dims *output_dims,
                                    const edgeplus_window *output_region, int8_t *output,
                                    const edgeplus_window *window, int depthwise)
{
    edgeplus_status st;
    edgeplus_window in_reg, out_reg, need;
    ep_im2col g;
    ep_out o;
    int64_t avail; /* scratch bytes left: int64, out_c * 16 alone may pass INT32_MAX */
    int32_t ch, block;
    uintptr_t base, aligned;
    int pairs;

    if (ctx == NULL || params == NULL || quant == NULL || input_dims == NULL ||
        input == NULL || filter_dims == NULL || filter == NULL || output_dims == NULL ||
        output == NULL || window == NULL || quant->multiplier == NULL || quant->shift == NULL) {
        return EDGEPLUS_ERR_NULL;
    }
    st = edgeplus__check_conv_args(params, input_dims, filter_dims, output_dims, depthwise);
    if (st != EDGEPLUS_OK) {
        return st;
    }
    for (ch = 0; ch < output_dims->c; ch++) {
        if (quant->multiplier[ch] < 0 || quant->shift[ch] > 30 || quant->shift[ch] < -31) {
            return EDGEPLUS_ERR_ARG;
        }
    }

    /* regions */
    if (input_region != NULL) {
        in_reg = *input_region;
        if (!ep_window_inside(&in_reg, input_dims->h, input_dims->w)) {
            return EDGEPLUS_ERR_WINDOW;
        }
    } else {
        in_reg.y = 0;
        in_reg.x = 0;
        in_reg.h = input_dims->h;
        in_reg.w = input_dims->w;
    }
    if (output_region != NULL) {
        out_reg = *output_region;
        if (!ep_window_inside(&out_reg, output_dims->h, output_dims->w)) {
            return EDGEPLUS_ERR_WINDOW;
        }
    } else {
        out_reg.y = 0;
        out_reg.x = 0;
        out_reg.h = output_dims->h;
        out_reg.w = output_dims->w;
    }
    if (!ep_window_inside(window, output_dims->h, output_dims->w) ||
        !ep_window_contains(&out_reg, window)) {
        return EDGEPLUS_ERR_WINDOW;
    }
    st = edgeplus_conv_input_region(params, input_dims, filter_dims, window, &need);
    if (st != EDGEPLUS_OK) {
        return st;
    }
    if (!ep_window_contains(&in_reg, &need)) {
        return EDGEPLUS_ERR_WINDOW;
    }

    /* im2col geometry */
    g.input = input;
    g.in_h = input_dims->h;
    g.in_w = input_dims->w;
    g.in_c = input_dims->c;
    g.in_bits = params->in_bits;
    g.in_zp = params->input_zero_point;
    g.ry = in_reg.y;
    g.rx = in_reg.x;
    g.rh = in_reg.h;
    g.rw = in_reg.w;
    g.kh = filter_dims->h;
    g.kw = filter_dims->w;
    g.sh = params->stride_h;
    g.sw = params->stride_w;
    g.ph = params->pad_h;
    g.pw = params->pad_w;
    g.dh = params->dilation_h > 0 ? params->dilation_h : 1;
    g.dw = params->dilation_w > 0 ? params->dilation_w : 1;
    g.kc = g.kh * g.kw * g.in_c;
    g.kpad = ep_kpad(input_dims, filter_dims);
#if EP_USE_WORDS
    pairs = !depthwise && params->in_bits == 2 && params->w_bits == 2;
#else
    pairs = 0;
#endif
    g.lanes = pairs && (g.in_c % 4) == 0;

    o.output = output;
    o.oc = output_dims->c;
    o.bits = params->out_bits;
    o.zp = params->output_zero_point;
    o.act_min = params->act_min;
    o.act_max = params->act_max;
    o.ry = out_reg.y;
    o.rx = out_reg.x;
    o.rh = out_reg.h;
    o.rw = out_reg.w;
    o.mult = quant->multiplier;
    o.shift = quant->shift;
    o.bias = bias;

    /* scratch: requant table | output staging | int16 columns (see
     * edgeplus__conv_scratch_bytes) */
    if (ctx->buf == NULL || ctx->size < 0) {
        return EDGEPLUS_ERR_SCRATCH;
    }
    base = (uintptr_t)ctx->buf;
    aligned = (base + 3u) & ~(uintptr_t)3u;
    avail = (int64_t)ctx->size - (int64_t)(aligned - base) - (int64_t)o.oc * (int64_t)sizeof(ep_rq);
    {
        ep_rq *rq = (ep_rq *)(void *)aligned;
        int8_t *stage = (int8_t *)(rq + o.oc);
        const int64_t kc_acc = depthwise ? (int64_t)g.kh * g.kw : (int64_t)g.kc;
        const int64_t acc_bound =
            kc_acc * ((1 << params->in_bits) - 1) * (1 << (params->w_bits - 1));
        if (depthwise) {
            const int32_t stage_bytes = (o.oc + 3) & ~3;
            ep_dw_geom d;
            edgeplus__dw_geom(params, input_dims, filter_dims, &d);
            if (avail < d.bytes) {
                return EDGEPLUS_ERR_SCRATCH;
            }
            ep_rq_prepare(rq, quant, bias, o.oc, acc_bound);
            if (d.planar) {
                edgeplus__dw_planar(&g, &o, rq, window, input_dims->n, filter, params->w_bits,
                                    &d, (uint8_t *)stage);
            } else {
                ep_depthwise_loop(&g, &o, rq, window, input_dims->n, filter, params->w_bits,
                                  stage, (int16_t *)(void *)(stage + stage_bytes));
            }
            return EDGEPLUS_OK;
        }
        avail -= 3 * (int64_t)g.kpad * 2;
        {
            /* all in int64: out_c alone may be near INT32_MAX */
            const int64_t pixels = ((int64_t)window->h * window->w + 1) & ~(int64_t)1;
            int64_t b = avail > 0 ? (avail / ((int64_t)g.kpad * 2 + o.oc)) & ~(int64_t)1 : 0;
            if (b > (EDGEPLUS_CONV_PIXEL_BLOCK & ~1)) {
                b = EDGEPLUS_CONV_PIXEL_BLOCK & ~1;
            }
            if (b > pixels) {
                b = pixels;
            }
            while (b >= 2 && ((b * o.oc + 3) & ~(int64_t)3) + b * g.kpad * 2 > avail) {
                b -= 2;
            }
            block = (int32_t)b; /* <= EDGEPLUS_CONV_PIXEL_BLOCK */
        }
        if (block < 2) {
            return EDGEPLUS_ERR_SCRATCH;
        }
        ep_rq_prepare(rq, quant, bias, o.oc, acc_bound);
        {
            /* the weight cache, when the rest of the scratch holds it */
            int16_t *tmp = (int16_t *)(void *)(stage + ((block * o.oc + 3) & ~3));
            uint32_t *wcache = (uint32_t *)(void *)(tmp + (3 + block) * g.kpad);
            const int64_t rest =
                (int64_t)avail - ((block * o.oc + 3) & ~3) - (int64_t)block * g.kpad * 2;
            if (rest < ep_wcache_bytes(o.oc, g.kpad, pairs)) {
                wcache = NULL;
            }
            ep_conv_loop(&g, &o, rq, window, input_dims->n, filter, params->w_bits, pairs,
                         stage, tmp, block, wcache);
        }
    }
    return EDGEPLUS_OK;
}
