/*
 * edgeplus_internal.h - helpers shared by the edgeplus kernels (not public API).
 */
#ifndef EDGEPLUS_INTERNAL_H
#define EDGEPLUS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "edgeplus/edgeplus_ops.h"

#if defined(__ARM_FEATURE_DSP) && !defined(EDGEPLUS_NO_DSP)
#define EDGEPLUS_DSP 1
#else
#define EDGEPLUS_DSP 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define EP_INLINE static inline __attribute__((always_inline))
#else
#define EP_INLINE static inline
#endif

/* Output pixels whose im2col columns are kept at once (per output row). More
 * pixels amortise the weight unpacking better; fewer need less scratch. */
#ifndef EDGEPLUS_CONV_PIXEL_BLOCK
#define EDGEPLUS_CONV_PIXEL_BLOCK 32
#endif

/* Depthwise planar layout (see edgeplus_conv_core.c): channels per strip, output
 * pixels per tile row, and the largest scratch (bytes) it may ask for; geometries
 * needing more (huge dilations) take the per-pixel im2col fallback. */
#ifndef EDGEPLUS_DW_STRIP
#define EDGEPLUS_DW_STRIP 16
#endif
#ifndef EDGEPLUS_DW_TILE_W
#define EDGEPLUS_DW_TILE_W 64
#endif
#ifndef EDGEPLUS_DW_PLANAR_MAX
#define EDGEPLUS_DW_PLANAR_MAX 32768
#endif

/* 2-bit x 2-bit DSP path: two products share one 16-bit lane (see conv core);
 * its 32-bit accumulators are decoded and cleared every this many words. */
#define EDGEPLUS_W2A2_FLUSH 160

EP_INLINE int ep_bits_ok(int32_t bits) { return bits == 2 || bits == 4 || bits == 8; }

EP_INLINE int32_t ep_qmin(int32_t bits) { return -(1 << (bits - 1)); }
EP_INLINE int32_t ep_qmax(int32_t bits) { return (1 << (bits - 1)) - 1; }

/* Read element `idx` of a buffer packed at `bits` (sign-extended). */
EP_INLINE int32_t ep_load(const int8_t *buf, int32_t idx, int32_t bits)
{
    if (bits == 8) {
        return buf[idx];
    } else if (bits == 4) {
        const uint32_t b = (uint8_t)buf[idx >> 1];
        const uint32_t v = (idx & 1) ? (b >> 4) : (b & 0xFu);
        return (int32_t)(v ^ 8u) - 8;
    } else {
        const uint32_t b = (uint8_t)buf[idx >> 2];
        const uint32_t v = (b >> ((idx & 3) * 2)) & 3u;
        return (int32_t)(v ^ 2u) - 2;
    }
}

/* Write element `idx` (value already in range), keeping the other bits of the byte. */
EP_INLINE void ep_store(int8_t *buf, int32_t idx, int32_t bits, int32_t v)
{
    if (bits == 8) {
        buf[idx] = (int8_t)v;
    } else if (bits == 4) {
        uint8_t *p = (uint8_t *)buf + (idx >> 1);
        const uint32_t sh = (uint32_t)(idx & 1) * 4u;
        *p = (uint8_t)((*p & ~(0xFu << sh)) | (((uint32_t)v & 0xFu) << sh));
    } else {
        uint8_t *p = (uint8_t *)buf + (idx >> 2);
        const uint32_t sh = (uint32_t)(idx & 3) * 2u;
        *p = (uint8_t)((*p & ~(3u << sh)) | (((uint32_t)v & 3u) << sh));
    }
}

/* TFLite SaturatingRoundingDoublingHighMul. (ab + 2^30) >> 31 with an arithmetic
 * shift equals TFLite's "nudge then truncating divide" for both signs. */
EP_INLINE int32_t ep_srdhm(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    return (int32_t)(((int64_t)a * b + (1LL << 30)) >> 31);
}

/* TFLite RoundingDivideByPOT, exponent in [0, 31]. */
EP_INLINE int32_t ep_rdbpot(int32_t x, int32_t exponent)
{
    const int32_t mask = (int32_t)((1LL << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* TFLite MultiplyByQuantizedMultiplier (double rounding). */
EP_INLINE int32_t ep_requant(int32_t acc, int32_t mult, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    const int32_t x = (int32_t)((uint32_t)acc << left);
    return ep_rdbpot(ep_srdhm(x, mult), right);
}

EP_INLINE int32_t ep_wrap_add(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

/* ------------------------------------------------------------------ kernel cores */
/* Shared by edgeplus_conv_core.c and edgeplus_depthwise_core.c (not public API). */

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

/* Real DSP build with GCC: inline assembly for what ACLE lacks, and the depthwise
 * assembly kernels of edgeplus_depthwise_core.c. */
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
#endif

EP_INLINE int32_t ep_kpad(const edgeplus_dims *input_dims, const edgeplus_dims *filter_dims)
{
    const int32_t kc = filter_dims->h * filter_dims->w * input_dims->c;
    return (kc + 15) & ~15; /* multiple of 16: whole 4-word steps in every layout */
}

typedef struct {
    const int8_t *input;
    int32_t in_h, in_w, in_c, in_bits, in_zp;
    int32_t ry, rx, rh, rw; /* input buffer region */
    int32_t kh, kw;
    int32_t sh, sw, ph, pw, dh, dw;
    int32_t kc, kpad;
    int lanes; /* write paired 2-bit lanes directly (needs in_c % 4 == 0) */
} ep_im2col;

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

EP_INLINE int8_t ep_clamp8(int32_t v, int32_t lo, int32_t hi)
{
    return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

EP_INLINE int32_t ep_out_index(const ep_out *o, int32_t n, int32_t oy, int32_t ox)
{
    return ((n * o->rh + (oy - o->ry)) * o->rw + (ox - o->rx)) * o->oc;
}

/* Pack `count` int8 values into a buffer at `bits` starting at flat index `start`
 * (read-modify-write only at the run's ends). */
void edgeplus__pack_run(int8_t *buf, int32_t start, const int8_t *v, int32_t count,
                        int32_t bits);

/* Planar depthwise (the default layout; see edgeplus_depthwise_core.c). Scratch after the
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

/* The depthwise geometry of a call (args already validated). */
void edgeplus__dw_geom(const edgeplus_conv_params *params, const edgeplus_dims *input_dims,
                       const edgeplus_dims *filter_dims, ep_dw_geom *d);

/* Planar depthwise over `win` (d->planar set; mem: d->bytes of 4-byte aligned scratch
 * after the requantization table rq). */
void edgeplus__dw_planar(const ep_im2col *g, const ep_out *o, const ep_rq *rq,
                         const edgeplus_window *win, int32_t batches, const int8_t *filter,
                         int32_t w_bits, const ep_dw_geom *d, uint8_t *mem);

/* Unpack `count` elements starting at flat index `start` of a buffer packed at
 * `bits`, subtract `zp`, store as int16. */
void edgeplus__unpack_s16(const int8_t *buf, int32_t start, int32_t count, int32_t bits,
                          int32_t zp, int16_t *dst);

/* Shared conv / depthwise implementation (validation + compute). */
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
                                    const edgeplus_window *window, int depthwise);

/* Validation of params + dims shared with the _get_buffer_size companions. */
edgeplus_status edgeplus__check_conv_args(const edgeplus_conv_params *params,
                                          const edgeplus_dims *input_dims,
                                          const edgeplus_dims *filter_dims,
                                          const edgeplus_dims *output_dims, int depthwise);

/* Bytes of the optional conv weight cache (all rows unpacked). The host build has no
 * paired lanes, so it may ask a few bytes too many for 2-bit x 2-bit: harmless. */
int32_t edgeplus__conv_wcache_bytes(const edgeplus_conv_params *params,
                                    const edgeplus_dims *input_dims,
                                    const edgeplus_dims *filter_dims);

/* Scratch bytes for pixel-block `pixels` (conv) or the depthwise layout. */
int32_t edgeplus__conv_scratch_bytes(const edgeplus_dims *input_dims,
                                     const edgeplus_dims *filter_dims, int32_t pixels,
                                     int depthwise);

/* Scratch bytes of the depthwise kernels (args already validated), or
 * EDGEPLUS_ERR_DIMS when they exceed int32. */
int32_t edgeplus__dw_scratch_bytes(const edgeplus_conv_params *params,
                                   const edgeplus_dims *input_dims,
                                   const edgeplus_dims *filter_dims);

#endif /* EDGEPLUS_INTERNAL_H */
