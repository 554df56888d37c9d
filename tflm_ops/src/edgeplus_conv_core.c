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
 * Depthwise: one im2col column per output pixel (layout [ky][kx][c], the 1HWO
 * filter's own layout), the whole filter unpacked once to int16; channel c sums
 * col[k*C + c] * w[k*C + c] over k (SMLABB/SMLATT on channel pairs with DSP).
 *
 * The DSP path's word operations (SMLAD, SXTB16, SSUB8, ...) are ACLE intrinsics on
 * the M4; EDGEPLUS_EMULATE_DSP replaces them with C so the host tests (and the
 * sanitizers) run the same code.
 */
#include <string.h>

#include "edgeplus_internal.h"

#if defined(__ARM_FEATURE_DSP) && !defined(EDGEPLUS_NO_DSP)
#include <arm_acle.h>
#define EP_SMLAD(a, b, acc) ((int32_t)__smlad((a), (b), (acc)))
#define EP_SXTB16(x) __sxtb16(x)
#define EP_SSUB16(a, b) __ssub16((a), (b))
#define EP_SADD16(a, b) __sadd16((a), (b))
#define EP_SSUB8(a, b) __ssub8((a), (b))
#define EP_SMLABB(a, b, acc) ((int32_t)__smlabb((int32_t)(a), (int32_t)(b), (acc)))
#define EP_SMLATT(a, b, acc) ((int32_t)__smlatt((int32_t)(a), (int32_t)(b), (acc)))
#define EP_SMLABT(a, b, acc) ((int32_t)__smlabt((int32_t)(a), (int32_t)(b), (acc)))
#define EP_SMLATB(a, b, acc) ((int32_t)__smlatb((int32_t)(a), (int32_t)(b), (acc)))
#define EP_USE_WORDS 1
#elif defined(EDGEPLUS_EMULATE_DSP)
/* Host emulation of the DSP path (tests its logic under the sanitizers). */
EP_INLINE int32_t ep_smlad_emul(uint32_t a, uint32_t b, int32_t acc)
{
    const int32_t p0 = (int32_t)(int16_t)(a & 0xFFFFu) * (int32_t)(int16_t)(b & 0xFFFFu);
    const int32_t p1 = (int32_t)(int16_t)(a >> 16) * (int32_t)(int16_t)(b >> 16);
    return (int32_t)((uint32_t)acc + (uint32_t)p0 + (uint32_t)p1);
}
EP_INLINE uint32_t ep_h(int32_t v) { return (uint32_t)v & 0xFFFFu; }
EP_INLINE uint32_t ep_sxtb16_emul(uint32_t x)
{
    return ep_h((int8_t)(x & 0xFFu)) | (ep_h((int8_t)((x >> 16) & 0xFFu)) << 16);
}
EP_INLINE uint32_t ep_ssub16_emul(uint32_t a, uint32_t b)
{
    return ep_h((int16_t)(a & 0xFFFFu) - (int16_t)(b & 0xFFFFu)) |
           (ep_h((int16_t)(a >> 16) - (int16_t)(b >> 16)) << 16);
}
EP_INLINE uint32_t ep_sadd16_emul(uint32_t a, uint32_t b)
{
    return ep_h((int16_t)(a & 0xFFFFu) + (int16_t)(b & 0xFFFFu)) |
           (ep_h((int16_t)(a >> 16) + (int16_t)(b >> 16)) << 16);
}
EP_INLINE uint32_t ep_ssub8_emul(uint32_t a, uint32_t b)
{
    uint32_t r = 0;
    int k;
    for (k = 0; k < 32; k += 8) {
        r |= ((uint32_t)((int8_t)((a >> k) & 0xFFu) - (int8_t)((b >> k) & 0xFFu)) & 0xFFu) << k;
    }
    return r;
}
#define EP_SMLAD(a, b, acc) ep_smlad_emul((a), (b), (acc))
#define EP_SXTB16(x) ep_sxtb16_emul(x)
#define EP_SSUB16(a, b) ep_ssub16_emul((a), (b))
#define EP_SADD16(a, b) ep_sadd16_emul((a), (b))
#define EP_SSUB8(a, b) ep_ssub8_emul((a), (b))
#define EP_SMLABB(a, b, acc) \
    ((acc) + (int32_t)(int16_t)((a) & 0xFFFFu) * (int32_t)(int16_t)((b) & 0xFFFFu))
#define EP_SMLATT(a, b, acc) \
    ((acc) + (int32_t)(int16_t)((a) >> 16) * (int32_t)(int16_t)((b) >> 16))
#define EP_SMLABT(a, b, acc) \
    ((acc) + (int32_t)(int16_t)((a) & 0xFFFFu) * (int32_t)(int16_t)((b) >> 16))
#define EP_SMLATB(a, b, acc) \
    ((acc) + (int32_t)(int16_t)((a) >> 16) * (int32_t)(int16_t)((b) & 0xFFFFu))
#define EP_USE_WORDS 1
#else
#define EP_USE_WORDS 0
#endif

#define EP_LANE_SHIFT 13

/* Real DSP build with GCC: inline assembly for what ACLE lacks, and the depthwise
 * 3x3 kernel (ep_dw33s1_m4, below). */
#if defined(__ARM_FEATURE_DSP) && !defined(EDGEPLUS_NO_DSP) && defined(__GNUC__) && \
    !defined(EDGEPLUS_NO_ASM)
#define EP_M4_ASM 1
#else
#define EP_M4_ASM 0
#endif

/* GCC turns these into PKHBT / PKHTB. */
#define EP_PKHBT16(a, b) (((a) & 0xFFFFu) | ((b) << 16))
#define EP_PKHTB16(a, b) (((a) & 0xFFFF0000u) | ((b) >> 16))

EP_INLINE uint32_t ep_ld32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

EP_INLINE void ep_st32(void *p, uint32_t v) { memcpy(p, &v, sizeof(v)); }

#if defined(__GNUC__)
#define EP_NOINLINE __attribute__((noinline))
#else
#define EP_NOINLINE
#endif

static int32_t ep_gcd(int32_t a, int32_t b)
{
    while (b != 0) {
        const int32_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* ------------------------------------------------------------------ validation */

static int ep_in_range(int32_t v, int32_t bits)
{
    return v >= ep_qmin(bits) && v <= ep_qmax(bits);
}

static int ep_dims_positive(const edgeplus_dims *d)
{
    return d->n > 0 && d->h > 0 && d->w > 0 && d->c > 0 &&
           (int64_t)d->n * d->h * d->w * d->c <= INT32_MAX;
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

static int32_t ep_kpad(const edgeplus_dims *input_dims, const edgeplus_dims *filter_dims)
{
    const int32_t kc = filter_dims->h * filter_dims->w * input_dims->c;
    return (kc + 15) & ~15; /* multiple of 16: whole 4-word steps in every layout */
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

/* (lo16(a), lo16(b)), (hi16(b), hi16(a)) and SXTB16(x ror 8), one instruction each on
 * the M4 (GCC does not form PKHBT/PKHTB or the rotated SXTB16 reliably). */
EP_INLINE uint32_t ep_pkhbt16(uint32_t a, uint32_t b)
{
#if EP_M4_ASM
    uint32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
#else
    return EP_PKHBT16(a, b);
#endif
}

EP_INLINE uint32_t ep_pkhtb16(uint32_t a, uint32_t b)
{
#if EP_M4_ASM
    uint32_t r;
    __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
#else
    return EP_PKHTB16(a, b);
#endif
}


#if EP_USE_WORDS
EP_INLINE uint32_t ep_ror8(uint32_t x) { return (x >> 8) | (x << 24); }

EP_INLINE uint32_t ep_sxtb16_ror8(uint32_t x)
{
#if EP_M4_ASM
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
#else
    return EP_SXTB16(ep_ror8(x));
#endif
}

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

typedef struct {
    const int8_t *input;
    int32_t in_h, in_w, in_c, in_bits, in_zp;
    int32_t ry, rx, rh, rw; /* input buffer region */
    int32_t kh, kw;
    int32_t sh, sw, ph, pw, dh, dw;
    int32_t kc, kpad;
    int lanes; /* write paired 2-bit lanes directly (needs in_c % 4 == 0) */
} ep_im2col;

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
    const int32_t iy0 = oy * g->sh - g->ph;
    const int32_t ix0 = ox * g->sw - g->pw;
    const int32_t div = g->lanes ? 2 : 1; /* int16 slots per value */
    const int32_t row_len = g->kw * c;
    /* whole kernel row inside the input and contiguous in the buffer */
    const int contiguous_row = (g->dw == 1 && ix0 >= 0 && ix0 + g->kw <= g->in_w);
    int16_t *d = dst;
    int32_t ky, kx;
    for (ky = 0; ky < g->kh; ky++) {
        const int32_t iy = iy0 + ky * g->dh;
        int32_t row_base;
        if (iy < 0 || iy >= g->in_h) {
            memset(d, 0, (size_t)(row_len / div) * sizeof(int16_t));
            d += row_len / div;
            continue;
        }
        row_base = (n * g->rh + (iy - g->ry)) * g->rw;
        if (contiguous_row) {
            ep_run(g, (row_base + ix0 - g->rx) * c, row_len, d);
            d += row_len / div;
            continue;
        }
        for (kx = 0; kx < g->kw; kx++) {
            const int32_t ix = ix0 + kx * g->dw;
            if (ix < 0 || ix >= g->in_w) {
                memset(d, 0, (size_t)(c / div) * sizeof(int16_t));
            } else {
                ep_run(g, (row_base + ix - g->rx) * c, c, d);
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

typedef struct {
    int8_t *output;
    int32_t oc, bits, zp, act_min, act_max;
    int32_t ry, rx, rh, rw; /* output buffer region */
    const int32_t *mult, *shift, *bias;
} ep_out;

/* ep_requant for multipliers >= 0 (checked at entry): SaturatingRoundingDoublingHighMul
 * cannot saturate then (that needs both operands INT32_MIN). Same result. */
EP_INLINE int32_t ep_requant_nn(int32_t acc, int32_t mult, int32_t shift)
{
    int32_t x, h, right, mask;
    if (shift > 0) {
        x = (int32_t)((uint32_t)acc << shift);
        right = 0;
    } else {
        x = acc;
        right = -shift;
    }
    h = (int32_t)(((int64_t)x * mult + (1LL << 30)) >> 31);
    mask = (int32_t)((1u << right) - 1u);
    return (h >> right) + ((h & mask) > ((mask >> 1) + (int32_t)((uint32_t)h >> 31)) ? 1 : 0);
}

/* Per-channel requantization, prepared once per call. When the accumulator bound A
 * (K*C * max|x - zp| * max|w| + |bias|) satisfies A * 2^(left+1) < 2^31, TFLite's
 *   h = SaturatingRoundingDoublingHighMul(x << left, m) = (x*2^left*m + 2^30) >> 31
 * equals SMMULR(x << (left+1), m) = (x*2^(left+1)*m + 2^31) >> 32 (one instruction),
 * and RoundingDivideByPOT(h, r) equals (h + 2^(r-1) - (h < 0)) >> r for r >= 1 (no
 * overflow: |h| < 2^30). Otherwise the channel takes the literal path. */
typedef struct {
    int32_t mult;
    int32_t bias;
    int32_t round;  /* fast: 2^(rshift-1) or 0; slow: the TFLite shift */
    int16_t lshift; /* fast: left + 1; slow: -1 */
    int16_t rshift;
} ep_rq;

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

EP_INLINE int32_t ep_smmulr(int32_t a, int32_t b)
{
#if defined(__ARM_FEATURE_DSP) && defined(__GNUC__)
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
#else
    return (int32_t)(((int64_t)a * b + 0x80000000LL) >> 32);
#endif
}

EP_INLINE int32_t ep_rq_apply(int32_t acc, const ep_rq *q)
{
    if (q->lshift >= 0) {
        const int32_t h =
            ep_smmulr((int32_t)((uint32_t)(acc + q->bias) << q->lshift), q->mult);
        if (q->rshift == 0) {
            return h;
        }
        return (h + q->round - (int32_t)((uint32_t)h >> 31)) >> q->rshift;
    }
    return ep_requant_nn(ep_wrap_add(acc, q->bias), q->mult, q->round);
}

/* Requantize + offset + clamp, as int8. */
EP_INLINE int8_t ep_out_value(const ep_out *o, const ep_rq *q, int32_t acc)
{
    int32_t v = ep_rq_apply(acc, q) + o->zp;
    v = v < o->act_min ? o->act_min : (v > o->act_max ? o->act_max : v);
    return (int8_t)v;
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

EP_INLINE int8_t ep_clamp8(int32_t v, int32_t lo, int32_t hi)
{
    return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
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
static void ep_pack_run(int8_t *buf, int32_t start, const int8_t *v, int32_t count, int32_t bits)
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

EP_INLINE int32_t ep_out_index(const ep_out *o, int32_t n, int32_t oy, int32_t ox)
{
    return ((n * o->rh + (oy - o->ry)) * o->rw + (ox - o->rx)) * o->oc;
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
                    ep_pack_run(o->output, base, stage, c, o->bits);
                }
            }
        }
    }
}

/* ------------------------------------------------------------------ depthwise (planar) */

/* Planar depthwise (the default layout; see the top of this file). Scratch after the
 * requantization table: per-strip weights | int32 accumulators of one tile row |
 * int8 output staging (2/4-bit outputs) | kh slot bookkeeping | a zero row | kh slots
 * of S planar input rows. Every part is a multiple of 4 bytes. */
typedef struct {
    int32_t strip;  /* channels per strip, S */
    int32_t tile_w; /* output pixels per tile row, TW */
    int32_t rw;     /* input columns one tile row reads */
    int32_t rwp;    /* int16 per planar row: rw + >= 2 slack, even */
    int32_t wrow;   /* int16 weights per kernel row and channel (>= 4, even) */
    int32_t planar; /* 1: planar layout; 0: the per-pixel im2col fallback */
    int64_t bytes;  /* scratch bytes after the requantization table, no slack */
} ep_dw_geom;

static void ep_dw_geom_make(const edgeplus_conv_params *params, const edgeplus_dims *input_dims,
                            const edgeplus_dims *filter_dims, ep_dw_geom *d)
{
    const int64_t c = input_dims->c;
    const int64_t kh = filter_dims->h, kw = filter_dims->w;
    const int64_t sw = params->stride_w;
    const int64_t dw = params->dilation_w > 0 ? params->dilation_w : 1;
    const int64_t max_ow = ((int64_t)input_dims->w - 1 + params->pad_w) / sw + 1;
    const int64_t tw = max_ow < EDGEPLUS_DW_TILE_W ? max_ow : EDGEPLUS_DW_TILE_W;
    const int64_t s = c < EDGEPLUS_DW_STRIP ? c : EDGEPLUS_DW_STRIP;
    const int64_t rw = (tw - 1) * sw + (kw - 1) * dw + 1;
    /* slack: the 3x3 kernel computes whole groups of 4 pixels (reads 3 past the tile) */
    const int64_t rwp = (rw + 6) & ~(int64_t)1;
    const int64_t wrow = kw < 4 ? 4 : (kw + 1) & ~(int64_t)1;
    /* accumulators: whole groups of 4, then 8 words for the 3x3 kernel's weights+bias */
    const int64_t accw = ((tw + 3) & ~(int64_t)3) + 8;
    const int64_t bytes = s * kh * wrow * 2 + accw * 4 + ((tw * s + 3) & ~(int64_t)3) + kh * 8 +
                          rwp * 2 + kh * s * rwp * 2;
    d->planar = bytes <= EDGEPLUS_DW_PLANAR_MAX;
    d->strip = (int32_t)s;
    d->tile_w = (int32_t)tw;
    d->rw = d->planar ? (int32_t)rw : 0;
    d->rwp = d->planar ? (int32_t)rwp : 0;
    d->wrow = (int32_t)wrow;
    if (d->planar) {
        d->bytes = bytes;
    } else {
        /* fallback: output staging + one im2col column + the unpacked filter */
        d->bytes = ((c + 3) & ~(int64_t)3) + 2 * (int64_t)ep_kpad(input_dims, filter_dims) * 2;
    }
}

int32_t edgeplus__dw_scratch_bytes(const edgeplus_conv_params *params,
                                   const edgeplus_dims *input_dims,
                                   const edgeplus_dims *filter_dims)
{
    ep_dw_geom d;
    int64_t bytes;
    ep_dw_geom_make(params, input_dims, filter_dims, &d);
    bytes = 8 + (int64_t)input_dims->c * (int64_t)sizeof(ep_rq) + d.bytes;
    return bytes > INT32_MAX ? (int32_t)EDGEPLUS_ERR_DIMS : (int32_t)bytes;
}

#if EP_USE_WORDS
/* ep_dw_fill_row for 4-bit (bits 4) or 2-bit (bits 2) input, groups of 4 channels of a
 * pixel pair: the two pixels' 4 fields (16 or 8 bits each) go to the two halfwords of
 * one word, then field k of both is (t >> k*bits) & mask, and one SSUB16 gives the
 * (pixel x, pixel x+1) int16 word of row k. src: the byte of (pixel xa, channel c0). */
EP_INLINE void ep_dw_fill_lowbit(const uint8_t *src, int32_t pstride, int32_t xa, int32_t xb,
                                 int32_t s, int32_t zp, int32_t bits, int16_t *dst, int32_t rwp)
{
    const uint32_t fm = bits == 4 ? 0x000F000Fu : 0x00030003u;
    const uint32_t flip = bits == 4 ? 0x88888888u : 0xAAAAAAAAu; /* fields + 2^(bits-1) */
    const uint32_t kk = ((uint32_t)((1 << (bits - 1)) + zp) & 0xFFFFu) * 0x00010001u;
    const int32_t gbytes = bits / 2; /* bytes per group of 4 channels */
    int32_t j, x;
    for (j = 0; j < s; j += 4) {
        const uint8_t *sp = src + (j / 4) * gbytes;
        int16_t *d0 = dst + j * rwp + xa;
        int16_t *d1 = d0 + rwp;
        int16_t *d2 = d1 + rwp;
        int16_t *d3 = d2 + rwp;
        for (x = xa; x + 1 < xb; x += 2) {
            uint32_t t;
            if (bits == 4) {
                uint16_t ha, hb;
                memcpy(&ha, sp, 2);
                memcpy(&hb, sp + pstride, 2);
                t = ((uint32_t)ha | ((uint32_t)hb << 16)) ^ flip;
            } else {
                t = ((uint32_t)sp[0] | ((uint32_t)sp[pstride] << 16)) ^ flip;
            }
            ep_st32(d0, EP_SSUB16(t & fm, kk));
            ep_st32(d1, EP_SSUB16((t >> bits) & fm, kk));
            ep_st32(d2, EP_SSUB16((t >> (2 * bits)) & fm, kk));
            ep_st32(d3, EP_SSUB16((t >> (3 * bits)) & fm, kk));
            sp += 2 * pstride;
            d0 += 2;
            d1 += 2;
            d2 += 2;
            d3 += 2;
        }
        if (x < xb) {
            uint32_t t;
            if (bits == 4) {
                uint16_t ha;
                memcpy(&ha, sp, 2);
                t = (uint32_t)ha ^ flip;
            } else {
                t = (uint32_t)sp[0] ^ flip;
            }
            d0[0] = (int16_t)EP_SSUB16(t & fm, kk);
            d1[0] = (int16_t)EP_SSUB16((t >> bits) & fm, kk);
            d2[0] = (int16_t)EP_SSUB16((t >> (2 * bits)) & fm, kk);
            d3[0] = (int16_t)EP_SSUB16((t >> (3 * bits)) & fm, kk);
        }
    }
}
#endif

/* Input row iy, columns [ixs, ixs + rw), channels [c0, c0 + s) -> s planar int16 rows
 * of x - zp, row j at dst + j * rwp. Writes only the columns inside the input: the
 * caller zeroes the padding columns and the slack once per tile. */
EP_NOINLINE static void ep_dw_fill_row(const ep_im2col *g, int32_t n, int32_t iy, int32_t ixs, int32_t rw,
                           int32_t c0, int32_t s, int16_t *dst, int32_t rwp)
{
    const int32_t c = g->in_c;
    const int32_t xa = ixs < 0 ? (-ixs < rw ? -ixs : rw) : 0;
    const int32_t xe = g->in_w - ixs;
    const int32_t xb = xe < rw ? (xe > xa ? xe : xa) : rw;
    /* flat index of (iy, ixs + xa, c0) in the input buffer */
    const int32_t start = ((n * g->rh + (iy - g->ry)) * g->rw + (ixs + xa - g->rx)) * c + c0;
    int32_t j, x;
    (void)rwp;
#if EP_USE_WORDS
    if (g->in_bits == 8 && (s & 3) == 0) {
        const uint32_t zz = ((uint32_t)g->in_zp & 0xFFFFu) * 0x00010001u;
        for (j = 0; j < s; j += 4) {
            const int8_t *src = g->input + start + j;
            int16_t *d0 = dst + j * rwp + xa;
            int16_t *d1 = d0 + rwp;
            int16_t *d2 = d1 + rwp;
            int16_t *d3 = d2 + rwp;
            for (x = xa; x + 1 < xb; x += 2) {
                const uint32_t w0 = ep_ld32(src), w1 = ep_ld32(src + c);
                const uint32_t e0 = EP_SSUB16(EP_SXTB16(w0), zz);      /* ch 0, 2 */
                const uint32_t e1 = EP_SSUB16(EP_SXTB16(w1), zz);
                const uint32_t o0 = EP_SSUB16(ep_sxtb16_ror8(w0), zz); /* ch 1, 3 */
                const uint32_t o1 = EP_SSUB16(ep_sxtb16_ror8(w1), zz);
                ep_st32(d0, ep_pkhbt16(e0, e1));
                ep_st32(d1, ep_pkhbt16(o0, o1));
                ep_st32(d2, ep_pkhtb16(e1, e0));
                ep_st32(d3, ep_pkhtb16(o1, o0));
                src += 2 * c;
                d0 += 2;
                d1 += 2;
                d2 += 2;
                d3 += 2;
            }
            if (x < xb) {
                d0[0] = (int16_t)(src[0] - g->in_zp);
                d1[0] = (int16_t)(src[1] - g->in_zp);
                d2[0] = (int16_t)(src[2] - g->in_zp);
                d3[0] = (int16_t)(src[3] - g->in_zp);
            }
        }
        return;
    }
    /* whole bytes per pixel and per group of 4 channels (start is then byte-aligned) */
    if (g->in_bits == 4 && (c & 1) == 0 && (s & 3) == 0) {
        ep_dw_fill_lowbit((const uint8_t *)g->input + (start >> 1), c / 2, xa, xb, s, g->in_zp,
                          4, dst, rwp);
        return;
    }
    if (g->in_bits == 2 && (c & 3) == 0 && (s & 3) == 0) {
        ep_dw_fill_lowbit((const uint8_t *)g->input + (start >> 2), c / 4, xa, xb, s, g->in_zp,
                          2, dst, rwp);
        return;
    }
#endif
    {
        /* two pixels at a time: unpack both runs (word unpackers), then write channel
         * pairs as (pixel x, pixel x+1) words: PKHBT / PKHTB */
        int16_t ta[EDGEPLUS_DW_STRIP], tb[EDGEPLUS_DW_STRIP];
        const int32_t sp = s & ~1;
        for (x = xa; x + 1 < xb; x += 2) {
            int16_t *d = dst + x;
            edgeplus__unpack_s16(g->input, start + (x - xa) * c, s, g->in_bits, g->in_zp, ta);
            edgeplus__unpack_s16(g->input, start + (x + 1 - xa) * c, s, g->in_bits, g->in_zp,
                                 tb);
            for (j = 0; j < sp; j += 2) {
                const uint32_t a = ep_ld32(ta + j), b = ep_ld32(tb + j);
                ep_st32(d, ep_pkhbt16(a, b));
                ep_st32(d + rwp, ep_pkhtb16(b, a));
                d += 2 * rwp;
            }
            if (sp < s) {
                d[0] = ta[sp];
                d[1] = tb[sp];
            }
        }
        if (x < xb) {
            edgeplus__unpack_s16(g->input, start + (x - xa) * c, s, g->in_bits, g->in_zp, ta);
            for (j = 0; j < s; j++) {
                dst[j * rwp + x] = ta[j];
            }
        }
    }
}

/* Accumulators of one tile row, generic filter: acc[p] = sum over ky, kx of
 * rows[ky][p * sw + kx * dw] * w[ky * wrow + kx]. */
static void ep_dw_mac_generic(const int16_t *const *rows, const int16_t *w, int32_t kh,
                              int32_t kw, int32_t wrow, int32_t sw, int32_t dw, int32_t tw,
                              int32_t init, int32_t *acc)
{
    int32_t p, ky, kx;
    for (p = 0; p < tw; p++) {
        int32_t s = init;
        for (ky = 0; ky < kh; ky++) {
            const int16_t *r = rows[ky] + p * sw;
            const int16_t *wk = w + ky * wrow;
            for (kx = 0; kx < kw; kx++) {
                s += (int32_t)r[kx * dw] * wk[kx];
            }
        }
        acc[p] = s;
    }
}

#if EP_USE_WORDS
/* Accumulators of one tile row for a 3-wide filter row, stride 1 or 2, dilation 1, with
 * the weights of row ky as words W01 = (w0, w1), W12 = (w1, w2). Two pixels per step:
 * stride 1 reads A = (x0, x1), B = (x2, x3): p0 = SMLAD(A, W01) + x2*w2 (SMLABT),
 * p1 = x1*w0 (SMLATB) + SMLAD(B, W12); stride 2 reads A, B, C = (x4, x5):
 * p0 = SMLAD(A, W01) + x2*w2, p1 = SMLAD(B, W01) + x4*w2. 4 multiplies per 6 MACs.
 * first != 0 starts the sums at 0, else adds to acc. */
EP_NOINLINE static void ep_dw_mac3_row(const int16_t *r, uint32_t w01, uint32_t w12, int32_t sw, int32_t tw,
                           int32_t *acc, int first, int32_t init)
{
    int32_t p = 0;
    if (sw == 1) {
        for (; p + 1 < tw; p += 2) {
            const uint32_t a = ep_ld32(r + p), b = ep_ld32(r + p + 2);
            int32_t s0 = first ? init : acc[p], s1 = first ? init : acc[p + 1];
            s0 = EP_SMLAD(a, w01, s0);
            s0 = EP_SMLABT(b, w12, s0);
            s1 = EP_SMLATB(a, w01, s1);
            s1 = EP_SMLAD(b, w12, s1);
            acc[p] = s0;
            acc[p + 1] = s1;
        }
    } else {
        for (; p + 1 < tw; p += 2) {
            const uint32_t a = ep_ld32(r + 2 * p), b = ep_ld32(r + 2 * p + 2);
            const uint32_t cc = ep_ld32(r + 2 * p + 4);
            int32_t s0 = first ? init : acc[p], s1 = first ? init : acc[p + 1];
            s0 = EP_SMLAD(a, w01, s0);
            s0 = EP_SMLABT(b, w12, s0);
            s1 = EP_SMLAD(b, w01, s1);
            s1 = EP_SMLABT(cc, w12, s1);
            acc[p] = s0;
            acc[p + 1] = s1;
        }
    }
    if (p < tw) {
        const uint32_t a = ep_ld32(r + p * sw), b = ep_ld32(r + p * sw + 2);
        int32_t s0 = first ? init : acc[p];
        s0 = EP_SMLAD(a, w01, s0);
        s0 = EP_SMLABT(b, w12, s0);
        acc[p] = s0;
    }
}

/* 3x3, stride 1, dilation 1, in groups of 4 pixels (whole groups: up to 3 pixels past
 * tw are computed and ignored). w: the 3 rows' (W01, W12) words; the sums start at
 * init. Per group and kernel row 2 data loads, 1 weight load and 8 multiplies:
 * p0 = SMLAD(A, W01) + SMLABT(B, W12), p1 = SMLATB(A, W01) + SMLAD(B, W12),
 * p2 = SMLAD(B, W01) + SMLABT(C, W12), p3 = SMLATB(B, W01) + SMLAD(C, W12) with
 * A = (x0, x1), B = (x2, x3), C = (x4, x5). */
#if EP_M4_ASM
/* The same in Thumb-2 assembly (all 14 free registers): acc..end is whole groups of
 * 4 words; end[0..5] hold the weight words, end[6] the initial sum. */
void edgeplus__dw33s1_m4(int32_t *acc, const int32_t *end, const int16_t *const *rows);
__asm__(
    ".syntax unified\n"
    ".thumb\n"
    ".text\n"
    ".p2align 2\n"
    ".global edgeplus__dw33s1_m4\n"
    ".type edgeplus__dw33s1_m4, %function\n"
    ".thumb_func\n"
    "edgeplus__dw33s1_m4:\n"
    "  push {r4-r11, lr}\n"
    "  ldr r4, [r2, #8]\n"
    "  ldr r3, [r2, #4]\n"
    "  ldr r2, [r2, #0]\n"
    "1:\n"
    "  ldr r11, [r1, #24]\n"
    "  ldrd r9, r10, [r2], #8\n"
    "  ldrd r12, lr, [r1, #0]\n"
    "  smlad r5, r9, r12, r11\n"
    "  smlatb r6, r9, r12, r11\n"
    "  smlad r7, r10, r12, r11\n"
    "  smlatb r8, r10, r12, r11\n"
    "  ldr r11, [r2]\n"
    "  smlabt r5, r10, lr, r5\n"
    "  smlad r6, r10, lr, r6\n"
    "  smlabt r7, r11, lr, r7\n"
    "  smlad r8, r11, lr, r8\n"
    "  ldrd r9, r10, [r3], #8\n"
    "  ldr r11, [r3]\n"
    "  ldrd r12, lr, [r1, #8]\n"
    "  smlad r5, r9, r12, r5\n"
    "  smlatb r6, r9, r12, r6\n"
    "  smlad r7, r10, r12, r7\n"
    "  smlatb r8, r10, r12, r8\n"
    "  smlabt r5, r10, lr, r5\n"
    "  smlad r6, r10, lr, r6\n"
    "  smlabt r7, r11, lr, r7\n"
    "  smlad r8, r11, lr, r8\n"
    "  ldrd r9, r10, [r4], #8\n"
    "  ldr r11, [r4]\n"
    "  ldrd r12, lr, [r1, #16]\n"
    "  smlad r5, r9, r12, r5\n"
    "  smlatb r6, r9, r12, r6\n"
    "  smlad r7, r10, r12, r7\n"
    "  smlatb r8, r10, r12, r8\n"
    "  smlabt r5, r10, lr, r5\n"
    "  smlad r6, r10, lr, r6\n"
    "  smlabt r7, r11, lr, r7\n"
    "  smlad r8, r11, lr, r8\n"
    "  stmia r0!, {r5-r8}\n"
    "  cmp r0, r1\n"
    "  blo 1b\n"
    "  pop {r4-r11, pc}\n"
    ".size edgeplus__dw33s1_m4, .-edgeplus__dw33s1_m4\n");
#endif

EP_NOINLINE static void ep_dw_mac33_s1(const int16_t *r0, const int16_t *r1, const int16_t *r2,
                                       const int16_t *w, int32_t tw, int32_t init, int32_t *acc)
{
#if EP_M4_ASM
    /* acc has room for whole groups plus the 8 words of weights + init */
    int32_t *end = acc + ((tw + 3) & ~3);
    const int16_t *rows[3];
    rows[0] = r0;
    rows[1] = r1;
    rows[2] = r2;
    memcpy(end, w, 12 * sizeof(int16_t));
    end[6] = init;
    edgeplus__dw33s1_m4(acc, end, rows);
#else
    const uint32_t a01 = ep_ld32(w), a12 = ep_ld32(w + 2);
    const uint32_t b01 = ep_ld32(w + 4), b12 = ep_ld32(w + 6);
    const uint32_t c01 = ep_ld32(w + 8), c12 = ep_ld32(w + 10);
    int32_t p;
    for (p = 0; p < tw; p += 4) {
        int32_t s0 = init, s1 = init, s2 = init, s3 = init, k;
        for (k = 0; k < 3; k++) {
            const int16_t *r = k == 0 ? r0 : (k == 1 ? r1 : r2);
            const uint32_t w01 = k == 0 ? a01 : (k == 1 ? b01 : c01);
            const uint32_t w12 = k == 0 ? a12 : (k == 1 ? b12 : c12);
            const uint32_t a = ep_ld32(r + p), b = ep_ld32(r + p + 2), cc = ep_ld32(r + p + 4);
            s0 = EP_SMLAD(a, w01, s0);
            s0 = EP_SMLABT(b, w12, s0);
            s1 = EP_SMLATB(a, w01, s1);
            s1 = EP_SMLAD(b, w12, s1);
            s2 = EP_SMLAD(b, w01, s2);
            s2 = EP_SMLABT(cc, w12, s2);
            s3 = EP_SMLATB(b, w01, s3);
            s3 = EP_SMLAD(cc, w12, s3);
        }
        acc[p] = s0;
        acc[p + 1] = s1;
        acc[p + 2] = s2;
        acc[p + 3] = s3;
    }
#endif
}
#endif

/* Saturate to [-2^(bits-1), 2^(bits-1) - 1] (SSAT on the M4). */
#if EP_M4_ASM
#define EP_SSAT(v, bits) __ssat((v), (bits))
#else
#define EP_SSAT(v, bits) \
    ((v) < -(1 << ((bits)-1)) ? -(1 << ((bits)-1)) : ((v) > (1 << ((bits)-1)) - 1 ? (1 << ((bits)-1)) - 1 : (v)))
#endif

/* SMMLAR: acc + SMMULR(a, b) (wrapping). */
EP_INLINE int32_t ep_smmlar(int32_t a, int32_t b, int32_t acc)
{
#if defined(__ARM_FEATURE_DSP) && defined(__GNUC__)
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
#else
    return (int32_t)((uint32_t)acc + (uint32_t)ep_smmulr(a, b));
#endif
}

/* Depthwise fast channels: the ep_rq fast path (q->lshift >= 0) whose weights still fit
 * int16 after << lshift and whose right shift is at most 22. Their accumulators are
 * x = (acc + bias) << lshift, computed directly from pre-shifted weights and bias, and
 *   v = (SMMLAR(x, m, round + (zp << r)) + (x >> 31)) >> r     (r >= 1)
 *   v = SMMLAR(x, m, zp)                                       (r == 0)
 * equals TFLite's (h + round - (h < 0)) >> r + zp with h = SMMULR(x, m): h has the
 * sign of x unless h == 0, where both give zp (round - 1 < 2^r); |zp << r| < 2^30 and
 * |h| <= 2^30 keep the sums in range. Other channels take ep_out_value. */
EP_INLINE int ep_dw_fast(const ep_rq *q, int32_t w_bits)
{
    return q->lshift >= 0 && q->lshift <= 15 - w_bits && q->rshift <= 22;
}

#define EP_DW_RQ_LOOP(CLAMP)                                                              \
    do {                                                                                  \
        if (r == 0) {                                                                     \
            for (p = 0; p + 1 < count; p += 2) {                                          \
                const int32_t v0 = ep_smmlar(acc[p], m, rnd);                             \
                const int32_t v1 = ep_smmlar(acc[p + 1], m, rnd);                         \
                dst[0] = (int8_t)CLAMP(v0);                                               \
                dst[step] = (int8_t)CLAMP(v1);                                            \
                dst += 2 * step;                                                          \
            }                                                                             \
        } else {                                                                          \
            for (p = 0; p + 1 < count; p += 2) {                                          \
                const int32_t x0 = acc[p], x1 = acc[p + 1];                               \
                const int32_t v0 = (ep_smmlar(x0, m, rnd) + (x0 >> 31)) >> r;             \
                const int32_t v1 = (ep_smmlar(x1, m, rnd) + (x1 >> 31)) >> r;             \
                dst[0] = (int8_t)CLAMP(v0);                                               \
                dst[step] = (int8_t)CLAMP(v1);                                            \
                dst += 2 * step;                                                          \
            }                                                                             \
        }                                                                                 \
    } while (0)

#define EP_DW_CLAMP_LOHI(v) ((v) < lo ? lo : ((v) > hi ? hi : (v)))
#define EP_DW_CLAMP_LOHI_FULL(v, bits)                \
    ((v) < ep_qmin(bits) ? ep_qmin(bits) : ((v) > ep_qmax(bits) ? ep_qmax(bits) : (v)))
#define EP_DW_CLAMP_S8(v) EP_SSAT((v), 8)
#define EP_DW_CLAMP_S4(v) EP_SSAT((v), 4)
#define EP_DW_CLAMP_S2(v) EP_SSAT((v), 2)

#if EP_M4_ASM
/* The fast requantization loop (r >= 1, clamp = the full range of `bits`) in Thumb-2
 * assembly, 4 accumulators per step: acc..end (whole groups of 4) -> dst[p * step];
 * prm = {step, m, rnd, r}. 25 instructions per 4 outputs. */
#define EP_DW_RQ_ASM(NAME, BITS)                                                          \
    void NAME(const int32_t *acc, const int32_t *end, int8_t *dst, const int32_t *prm);   \
    __asm__(".syntax unified\n.thumb\n.text\n.p2align 2\n.global " #NAME "\n"            \
            ".type " #NAME ", %function\n.thumb_func\n" #NAME ":\n"                      \
            "  push {r4-r11, lr}\n"                                                       \
            "  ldm r3, {r3, r4, r5, r6}\n"                                                \
            "1:\n"                                                                        \
            "  ldmia r0!, {r8-r11}\n"                                                     \
            "  add r7, r5, r8, asr #31\n"                                                 \
            "  smmlar r8, r8, r4, r7\n"                                                   \
            "  asr r8, r8, r6\n"                                                          \
            "  ssat r8, #" #BITS ", r8\n"                                                 \
            "  strb r8, [r2]\n"                                                           \
            "  add r7, r5, r9, asr #31\n"                                                 \
            "  smmlar r9, r9, r4, r7\n"                                                   \
            "  asr r9, r9, r6\n"                                                          \
            "  ssat r9, #" #BITS ", r9\n"                                                 \
            "  strb r9, [r2, r3]\n"                                                       \
            "  add r2, r2, r3, lsl #1\n"                                                  \
            "  add r7, r5, r10, asr #31\n"                                                \
            "  smmlar r10, r10, r4, r7\n"                                                 \
            "  asr r10, r10, r6\n"                                                        \
            "  ssat r10, #" #BITS ", r10\n"                                               \
            "  strb r10, [r2]\n"                                                          \
            "  add r7, r5, r11, asr #31\n"                                                \
            "  smmlar r11, r11, r4, r7\n"                                                 \
            "  asr r11, r11, r6\n"                                                        \
            "  ssat r11, #" #BITS ", r11\n"                                               \
            "  strb r11, [r2, r3]\n"                                                      \
            "  add r2, r2, r3, lsl #1\n"                                                  \
            "  cmp r0, r1\n"                                                              \
            "  blo 1b\n"                                                                  \
            "  pop {r4-r11, pc}\n"                                                        \
            ".size " #NAME ", .-" #NAME "\n")
EP_DW_RQ_ASM(edgeplus__dw_rq8_m4, 8);
EP_DW_RQ_ASM(edgeplus__dw_rq4_m4, 4);
EP_DW_RQ_ASM(edgeplus__dw_rq2_m4, 2);
#endif

/* Requantize `count` accumulators of one channel into dst[p * step] (int8). fast:
 * the channel is ep_dw_fast and acc holds (acc + bias) << lshift (see there); else acc
 * is the plain sum and ep_out_value adds the bias. */
EP_NOINLINE static void ep_dw_requant(const ep_out *o, const ep_rq *q, const int32_t *acc,
                                      int32_t count, int8_t *dst, int32_t step, int fast)
{
    const int32_t lo = o->act_min, hi = o->act_max;
    int32_t p = 0;
    if (fast) {
        const int32_t m = q->mult, r = q->rshift;
        const int32_t rnd =
            r == 0 ? o->zp : (int32_t)((uint32_t)q->round + ((uint32_t)o->zp << r));
        const int full = lo == ep_qmin(o->bits) && hi == ep_qmax(o->bits);
#if EP_M4_ASM
        if (full && r > 0 && count >= 4) {
            int32_t prm[4];
            prm[0] = step;
            prm[1] = m;
            prm[2] = rnd;
            prm[3] = r;
            p = count & ~3;
            if (o->bits == 8) {
                edgeplus__dw_rq8_m4(acc, acc + p, dst, prm);
            } else if (o->bits == 4) {
                edgeplus__dw_rq4_m4(acc, acc + p, dst, prm);
            } else {
                edgeplus__dw_rq2_m4(acc, acc + p, dst, prm);
            }
            dst += p * step;
            for (; p < count; p++) {
                const int32_t x = acc[p];
                const int32_t v = (ep_smmlar(x, m, rnd) + (x >> 31)) >> r;
                *dst = (int8_t)EP_DW_CLAMP_LOHI(v); /* lo, hi: the full range */
                dst += step;
            }
            return;
        }
#endif
        if (full && o->bits == 8) {
            EP_DW_RQ_LOOP(EP_DW_CLAMP_S8);
        } else if (full && o->bits == 4) {
            EP_DW_RQ_LOOP(EP_DW_CLAMP_S4);
        } else if (full && o->bits == 2) {
            EP_DW_RQ_LOOP(EP_DW_CLAMP_S2);
        } else {
            EP_DW_RQ_LOOP(EP_DW_CLAMP_LOHI);
        }
        if (p < count) {
            const int32_t x = acc[p];
            const int32_t v = r == 0 ? ep_smmlar(x, m, rnd) : (ep_smmlar(x, m, rnd) + (x >> 31)) >> r;
            *dst = (int8_t)EP_DW_CLAMP_LOHI(v);
        }
        return;
    }
    for (p = 0; p < count; p++) {
        dst[p * step] = ep_out_value(o, q, acc[p]);
    }
}

#if EP_M4_ASM
/* Per-channel block of the M4 3x3 path, prepared once per strip: the kernel's weight
 * words and initial sum (copied behind the accumulators for edgeplus__dw33s1_m4),
 * then {step, m, rnd, r} for edgeplus__dw_rqN_m4 and whether the channel takes it. */
typedef struct {
    int32_t w[6];
    int32_t init;
    int32_t asm_rq;
    int32_t prm[4];
} ep_dw_m4ch;

/* All s channels of one output row of a strip, 3x3 stride 1 on the M4: row ky of
 * channel j at rb[ky] + j * rs[ky]; outputs at dst + j, dst + j + step, ... */
static void ep_dw_row33_m4(const ep_out *o, const ep_rq *rq, const ep_dw_m4ch *blk,
                           const int16_t *const *rb, const int32_t *rs, int32_t s, int32_t tw,
                           int32_t *acc, int8_t *dst, int32_t step, int32_t w_bits)
{
    int32_t *end = acc + ((tw + 3) & ~3);
    const int32_t t4 = tw & ~3;
    const int32_t bits = o->bits;
    const int16_t *rows[3];
    int32_t j;
    rows[0] = rb[0];
    rows[1] = rb[1];
    rows[2] = rb[2];
    for (j = 0; j < s; j++) {
        const ep_dw_m4ch *b = blk + j;
        memcpy(end, b->w, 7 * sizeof(int32_t));
        edgeplus__dw33s1_m4(acc, end, rows);
        rows[0] += rs[0];
        rows[1] += rs[1];
        rows[2] += rs[2];
        if (b->asm_rq && t4 > 0) {
            int32_t p;
            if (bits == 8) {
                edgeplus__dw_rq8_m4(acc, acc + t4, dst + j, b->prm);
            } else if (bits == 4) {
                edgeplus__dw_rq4_m4(acc, acc + t4, dst + j, b->prm);
            } else {
                edgeplus__dw_rq2_m4(acc, acc + t4, dst + j, b->prm);
            }
            for (p = t4; p < tw; p++) {
                const int32_t x = acc[p];
                const int32_t v = (ep_smmlar(x, b->prm[1], b->prm[2]) + (x >> 31)) >> b->prm[3];
                dst[j + p * step] = (int8_t)EP_DW_CLAMP_LOHI_FULL(v, bits);
            }
        } else {
            ep_dw_requant(o, rq + j, acc, tw, dst + j, step, ep_dw_fast(rq + j, w_bits));
        }
    }
}
#endif

/* ep_pack_run with word paths for runs that start on a byte: 8 nibbles or 16 2-bit
 * fields per 32-bit store (the values are in range, so masking is exact). */
static void ep_dw_pack(int8_t *buf, int32_t start, const int8_t *v, int32_t count, int32_t bits)
{
    int32_t i = 0;
    if (bits == 4 && (start & 1) == 0) {
        uint8_t *d = (uint8_t *)buf + (start >> 1);
        for (; i + 7 < count; i += 8) {
            uint32_t t0 = ep_ld32(v + i) & 0x0F0F0F0Fu;
            uint32_t t1 = ep_ld32(v + i + 4) & 0x0F0F0F0Fu;
            t0 |= t0 >> 4; /* bytes 0, 2: (v0, v1), (v2, v3) */
            t1 |= t1 >> 4;
            ep_st32(d, (t0 & 0xFFu) | ((t0 >> 8) & 0xFF00u) | ((t1 & 0xFFu) << 16) |
                           ((t1 << 8) & 0xFF000000u));
            d += 4;
        }
    } else if (bits == 2 && (start & 3) == 0) {
        uint8_t *d = (uint8_t *)buf + (start >> 2);
        for (; i + 15 < count; i += 16) {
            uint32_t r = 0;
            int k;
            for (k = 0; k < 4; k++) {
                uint32_t t = ep_ld32(v + i + 4 * k) & 0x03030303u;
                t |= t >> 6;  /* bytes 0, 2: (v0, v1), (v2, v3) */
                t |= t >> 12; /* byte 0: v0 v1 v2 v3 */
                r |= (t & 0xFFu) << (8 * k);
            }
            ep_st32(d, r);
            d += 4;
        }
    }
    if (i < count) {
        ep_pack_run(buf, start + i, v + i, count - i, bits);
    }
}

/* The staged int8 outputs of one tile row of a strip, stage[p * s + j], into the packed
 * output at flat index start + p * oc + j. Whole-byte runs (start and oc multiples of
 * 8 / bits, s a multiple of 32 / bits) take word stores, the rest ep_dw_pack. */
EP_NOINLINE static void ep_dw_pack_row(int8_t *buf, int32_t start, int32_t oc,
                                       const int8_t *stage, int32_t s, int32_t tw, int32_t bits)
{
    int32_t p, i;
    if (bits == 4 && (start & 1) == 0 && (oc & 1) == 0 && (s & 7) == 0) {
        uint8_t *d = (uint8_t *)buf + (start >> 1);
        for (p = 0; p < tw; p++) {
            const int8_t *v = stage + p * s;
            for (i = 0; i < s; i += 8) {
                uint32_t t0 = ep_ld32(v + i) & 0x0F0F0F0Fu;
                uint32_t t1 = ep_ld32(v + i + 4) & 0x0F0F0F0Fu;
                t0 |= t0 >> 4;
                t1 |= t1 >> 4;
                ep_st32(d + i / 2, (t0 & 0xFFu) | ((t0 >> 8) & 0xFF00u) | ((t1 & 0xFFu) << 16) |
                                       ((t1 << 8) & 0xFF000000u));
            }
            d += oc >> 1;
        }
        return;
    }
    if (bits == 2 && (start & 3) == 0 && (oc & 3) == 0 && (s & 15) == 0) {
        uint8_t *d = (uint8_t *)buf + (start >> 2);
        for (p = 0; p < tw; p++) {
            const int8_t *v = stage + p * s;
            for (i = 0; i < s; i += 16) {
                uint32_t t0 = ep_ld32(v + i) & 0x03030303u;
                uint32_t t1 = ep_ld32(v + i + 4) & 0x03030303u;
                uint32_t t2 = ep_ld32(v + i + 8) & 0x03030303u;
                uint32_t t3 = ep_ld32(v + i + 12) & 0x03030303u;
                t0 |= t0 >> 6;
                t1 |= t1 >> 6;
                t2 |= t2 >> 6;
                t3 |= t3 >> 6;
                t0 |= t0 >> 12;
                t1 |= t1 >> 12;
                t2 |= t2 >> 12;
                t3 |= t3 >> 12;
                ep_st32(d + i / 4, (t0 & 0xFFu) | ((t1 & 0xFFu) << 8) | ((t2 & 0xFFu) << 16) |
                                       (t3 << 24));
            }
            d += oc >> 2;
        }
        return;
    }
    for (p = 0; p < tw; p++) {
        ep_dw_pack(buf, start + p * oc, stage + p * s, s, bits);
    }
}

/* Planar depthwise: channel strips x tiles of output columns x output rows, with a
 * ring of kh unpacked input rows per (strip, tile) so each input row is unpacked once
 * per strip and tile (see the top of this file). */
EP_NOINLINE static void ep_dw_planar(const ep_im2col *g, const ep_out *o, const ep_rq *rq,
                         const edgeplus_window *win, int32_t batches, const int8_t *filter,
                         int32_t w_bits, const ep_dw_geom *d, uint8_t *mem)
{
    const int32_t c = g->in_c, kh = g->kh, kw = g->kw, S = d->strip, rwp = d->rwp;
    const int32_t wrow = d->wrow;
    int16_t *wts = (int16_t *)(void *)mem;
    int32_t *acc = (int32_t *)(void *)(wts + S * kh * wrow);
    int8_t *stage = (int8_t *)(acc + ((d->tile_w + 3) & ~3) + 8);
    int32_t *slot_row = (int32_t *)(void *)(stage + ((d->tile_w * S + 3) & ~3));
    int32_t *row_of = slot_row + kh; /* per ky: slot index, or -1 for a padding row */
    int16_t *zero = (int16_t *)(void *)(row_of + kh);
    int16_t *slots = zero + rwp;
    const int special = EP_USE_WORDS && kw == 3 && g->dw == 1 && (g->sw == 1 || g->sw == 2);
    const int rolling = ep_gcd(g->dh, kh) == 1;
    const int32_t ntiles = (win->w + d->tile_w - 1) / d->tile_w;
    const int16_t *rows_small[8];
#if EP_M4_ASM
    /* the M4 3x3 path: per-channel blocks (in the weight area, which it does not use
     * otherwise: S * 3 * wrow int16 = 24 bytes per channel < sizeof(ep_dw_m4ch)) */
    const int m4 = special && kh == 3 && g->sw == 1;
    ep_dw_m4ch blk[EDGEPLUS_DW_STRIP];
    int32_t rs[3];
    const int16_t *rb[3];
    const int full = o->act_min == ep_qmin(o->bits) && o->act_max == ep_qmax(o->bits);
#endif
    int32_t c0, n, t, oy, ky, kx, j, p;
    memset(zero, 0, (size_t)rwp * sizeof(int16_t));
    for (c0 = 0; c0 < c; c0 += S) {
        const int32_t s = c - c0 < S ? c - c0 : S;
        /* weights of the strip: channel j, row ky at wts + (j * kh + ky) * wrow; the
         * 3-wide DSP layout is (w0, w1, w1, w2), else w0 .. w(kw-1) */
        for (j = 0; j < s; j++) {
            /* fast channels: weights << lshift (see ep_dw_fast) */
            const ep_rq *q = rq + c0 + j;
            const int32_t sh = ep_dw_fast(q, w_bits) ? q->lshift : 0;
            for (ky = 0; ky < kh; ky++) {
                int16_t *wk = wts + (j * kh + ky) * wrow;
                const int32_t f0 = (ky * kw) * c + c0 + j;
                if (special) {
                    wk[0] = (int16_t)(ep_load(filter, f0, w_bits) * (1 << sh));
                    wk[1] = (int16_t)(ep_load(filter, f0 + c, w_bits) * (1 << sh));
                    wk[2] = wk[1];
                    wk[3] = (int16_t)(ep_load(filter, f0 + 2 * c, w_bits) * (1 << sh));
                } else {
                    for (kx = 0; kx < kw; kx++) {
                        wk[kx] = (int16_t)(ep_load(filter, f0 + kx * c, w_bits) * (1 << sh));
                    }
                }
            }
        }
#if EP_M4_ASM
        if (m4) {
            for (j = 0; j < s; j++) {
                const ep_rq *q = rq + c0 + j;
                const int fast = ep_dw_fast(q, w_bits);
                memcpy(blk[j].w, wts + j * 3 * wrow, 6 * sizeof(int32_t));
                blk[j].init = fast ? (int32_t)((uint32_t)q->bias << q->lshift) : 0;
                blk[j].asm_rq = fast && full && q->rshift > 0;
                blk[j].prm[0] = o->bits == 8 ? o->oc : s;
                blk[j].prm[1] = q->mult;
                blk[j].prm[2] =
                    (int32_t)((uint32_t)q->round + ((uint32_t)o->zp << q->rshift));
                blk[j].prm[3] = q->rshift;
            }
        }
#endif
        for (n = 0; n < batches; n++) {
            for (t = 0; t < ntiles; t++) {
                /* balanced tiles: tile t covers window columns [x0, x1) */
                const int32_t x0 = win->x + (int32_t)((int64_t)win->w * t / ntiles);
                const int32_t x1 = win->x + (int32_t)((int64_t)win->w * (t + 1) / ntiles);
                const int32_t tw = x1 - x0;
                const int32_t ixs = x0 * g->sw - g->pw;
                const int32_t rw = (tw - 1) * g->sw + (kw - 1) * g->dw + 1;
                for (ky = 0; ky < kh; ky++) {
                    slot_row[ky] = -1;
                }
                /* padding columns and slack are the same for every row of the tile:
                 * zero them once, ep_dw_fill_row writes only the input columns */
                memset(slots, 0, (size_t)kh * S * rwp * sizeof(int16_t));
                for (oy = win->y; oy < win->y + win->h; oy++) {
                    const int32_t iy0 = oy * g->sh - g->ph;
                    for (ky = 0; ky < kh; ky++) {
                        const int32_t iy = iy0 + ky * g->dh;
                        int32_t sl;
                        if (iy < 0 || iy >= g->in_h) {
                            row_of[ky] = -1;
                            continue;
                        }
                        sl = rolling ? iy % kh : ky;
                        if (slot_row[sl] != iy) {
                            ep_dw_fill_row(g, n, iy, ixs, rw, c0, s, slots + sl * S * rwp, rwp);
                            slot_row[sl] = iy;
                        }
                        row_of[ky] = sl;
                    }
#if EP_M4_ASM
                    if (m4) {
                        for (ky = 0; ky < 3; ky++) {
                            rb[ky] = row_of[ky] < 0 ? zero : slots + row_of[ky] * S * rwp;
                            rs[ky] = row_of[ky] < 0 ? 0 : rwp;
                        }
                        ep_dw_row33_m4(o, rq + c0, blk, rb, rs, s, tw, acc,
                                       o->bits == 8 ? o->output + ep_out_index(o, n, oy, x0) + c0
                                                    : stage,
                                       o->bits == 8 ? o->oc : s, w_bits);
                        j = s; /* done */
                    } else {
                        j = 0;
                    }
#else
                    j = 0;
#endif
                    for (; j < s; j++) {
                        const int16_t *wj = wts + j * kh * wrow;
                        const ep_rq *q = rq + c0 + j;
                        /* fast channels start from bias << lshift (see ep_dw_fast) */
                        const int fast = ep_dw_fast(q, w_bits);
                        const int32_t init =
                            fast ? (int32_t)((uint32_t)q->bias << q->lshift) : 0;
                        int8_t *dst;
                        int32_t step;
#define EP_DW_ROW(k) \
    (row_of[k] < 0 ? zero : slots + (row_of[k] * S + j) * rwp)
#if EP_USE_WORDS
                        if (special && kh == 3 && g->sw == 1) {
                            ep_dw_mac33_s1(EP_DW_ROW(0), EP_DW_ROW(1), EP_DW_ROW(2), wj, tw, init,
                                           acc);
                        } else if (special) {
                            for (ky = 0; ky < kh; ky++) {
                                const int16_t *wk = wj + ky * wrow;
                                ep_dw_mac3_row(EP_DW_ROW(ky), ep_ld32(wk), ep_ld32(wk + 2), g->sw,
                                               tw, acc, ky == 0, init);
                            }
                        } else
#endif
                        if (kh <= 8) {
                            for (ky = 0; ky < kh; ky++) {
                                rows_small[ky] = EP_DW_ROW(ky);
                            }
                            ep_dw_mac_generic(rows_small, wj, kh, kw, wrow, g->sw, g->dw, tw,
                                              init, acc);
                        } else {
                            /* tall filters: one kernel row at a time */
                            for (p = 0; p < tw; p++) {
                                acc[p] = init;
                            }
                            for (ky = 0; ky < kh; ky++) {
                                const int16_t *r = EP_DW_ROW(ky);
                                const int16_t *wk = wj + ky * wrow;
                                for (p = 0; p < tw; p++) {
                                    int32_t sacc = acc[p];
                                    for (kx = 0; kx < kw; kx++) {
                                        sacc += (int32_t)r[p * g->sw + kx * g->dw] * wk[kx];
                                    }
                                    acc[p] = sacc;
                                }
                            }
                        }
#undef EP_DW_ROW
                        if (o->bits == 8) {
                            dst = o->output + ep_out_index(o, n, oy, x0) + c0 + j;
                            step = o->oc;
                        } else {
                            dst = stage + j;
                            step = s;
                        }
                        ep_dw_requant(o, q, acc, tw, dst, step, fast);
                    }
                    if (o->bits != 8) {
                        ep_dw_pack_row(o->output, ep_out_index(o, n, oy, x0) + c0, o->oc,
                                       stage, s, tw, o->bits);
                    }
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
    const int32_t total = win->h * win->w;
    int32_t obase[EDGEPLUS_CONV_PIXEL_BLOCK];
    int32_t n, f;
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
                int32_t np = total - f;
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
                        ep_pack_run(o->output, obase[p], stage + p * o->oc, o->oc, o->bits);
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
    int32_t avail, ch, block;
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
    avail = ctx->size - (int32_t)(aligned - base) - o.oc * (int32_t)sizeof(ep_rq);
    {
        ep_rq *rq = (ep_rq *)(void *)aligned;
        int8_t *stage = (int8_t *)(rq + o.oc);
        const int64_t kc_acc = depthwise ? (int64_t)g.kh * g.kw : (int64_t)g.kc;
        const int64_t acc_bound =
            kc_acc * ((1 << params->in_bits) - 1) * (1 << (params->w_bits - 1));
        if (depthwise) {
            const int32_t stage_bytes = (o.oc + 3) & ~3;
            ep_dw_geom d;
            ep_dw_geom_make(params, input_dims, filter_dims, &d);
            if ((int64_t)avail < d.bytes) {
                return EDGEPLUS_ERR_SCRATCH;
            }
            ep_rq_prepare(rq, quant, bias, o.oc, acc_bound);
            if (d.planar) {
                ep_dw_planar(&g, &o, rq, window, input_dims->n, filter, params->w_bits, &d,
                             (uint8_t *)stage);
            } else {
                ep_depthwise_loop(&g, &o, rq, window, input_dims->n, filter, params->w_bits,
                                  stage, (int16_t *)(void *)(stage + stage_bytes));
            }
            return EDGEPLUS_OK;
        }
        avail -= 3 * g.kpad * 2;
        block = avail > 0 ? (avail / (g.kpad * 2 + o.oc)) & ~1 : 0;
        if (block > EDGEPLUS_CONV_PIXEL_BLOCK) {
            block = EDGEPLUS_CONV_PIXEL_BLOCK & ~1;
        }
        if (block > ((window->h * window->w + 1) & ~1)) {
            block = (window->h * window->w + 1) & ~1;
        }
        while (block >= 2 && ((block * o.oc + 3) & ~3) + block * g.kpad * 2 > avail) {
            block -= 2;
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
