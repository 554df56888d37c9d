/*
 * edgeplus_support.h - the inline helpers every edgeplus kernel shares (not public API),
 * like CMSIS-NN's arm_nnsupportfunctions.h: one definition and one behaviour each.
 *
 *   build switches     EDGEPLUS_DSP, EP_USE_WORDS, EP_M4_ASM, EP_INLINE
 *   ranges             ep_bits_ok, ep_qmin/ep_qmax, ep_in_range, ep_in_bits_range, ep_clamp8
 *   packed elements    ep_load / ep_store (flat index, bits 2/4/8)
 *   requantization     ep_srdhm, ep_rdbpot, ep_requant, ep_requant_nn, ep_smmulr, ep_smmlar
 *                      (int32 arithmetic is modular where the M4 instruction is: ep_wrap_add)
 *   DSP words          EP_SMLAD & co (ACLE on the M4, C under EDGEPLUS_EMULATE_DSP),
 *                      ep_ld32 / ep_st32, ep_pkhbt16 / ep_pkhtb16, ep_sxtb16_ror8
 *   conv geometry      ep_span (the input rows/cols an output span reads)
 *   error reports      EP_FAIL (edgeplus_last_error, see edgeplus_ops.h)
 */
#ifndef EDGEPLUS_SUPPORT_H
#define EDGEPLUS_SUPPORT_H

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

/* v in [lo, hi]. */
EP_INLINE int ep_in_range(int32_t v, int32_t lo, int32_t hi) { return v >= lo && v <= hi; }

/* v in the signed range of `bits`. */
EP_INLINE int ep_in_bits_range(int32_t v, int32_t bits)
{
    return v >= ep_qmin(bits) && v <= ep_qmax(bits);
}

EP_INLINE int8_t ep_clamp8(int32_t v, int32_t lo, int32_t hi)
{
    return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

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

/* SMMLAR: acc + SMMULR(a, b), modular in int32 like the instruction. */
EP_INLINE int32_t ep_smmlar(int32_t a, int32_t b, int32_t acc)
{
#if defined(__ARM_FEATURE_DSP) && defined(__GNUC__)
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
#else
    return ep_wrap_add(acc, ep_smmulr(a, b));
#endif
}

/* The input rows (or cols) that outputs [o0, o0 + count) read with a kernel of k taps
 * (stride, pad, dilation), clipped to [0, size): *start and *len; returns 0 (outputs
 * untouched) when they read none (all padding). int64 throughout: o0 + count - 1 and the
 * products may pass INT32_MAX. */
EP_INLINE int ep_span(int32_t o0, int32_t count, int32_t stride, int32_t pad, int32_t k,
                      int32_t dil, int32_t size, int32_t *start, int32_t *len)
{
    int64_t a = (int64_t)o0 * stride - pad;
    int64_t b = ((int64_t)o0 + count - 1) * stride - pad + (int64_t)(k - 1) * dil;
    if (a < 0) {
        a = 0;
    }
    if (b > (int64_t)size - 1) {
        b = (int64_t)size - 1;
    }
    if (b < a) {
        return 0;
    }
    *start = (int32_t)a;
    *len = (int32_t)(b - a + 1);
    return 1;
}

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

/* ------------------------------------------------------------------ error reports */

/* Every refusal records what it refused (edgeplus_last_error, edgeplus_ops.h) and returns
 * its status: return EP_FAIL_RANGE(EDGEPLUS_ERR_ARG, "params->stride_h", -1, v, 1, INT32_MAX).
 * -DEDGEPLUS_ERROR_DETAIL=0 compiles the records (and their strings) out. */
#ifndef EDGEPLUS_ERROR_DETAIL
#define EDGEPLUS_ERROR_DETAIL 1
#endif

edgeplus_status edgeplus__fail(edgeplus_status status, const char *argument, int32_t index,
                               int64_t value, int64_t min, int64_t max, const char *expected);

#if EDGEPLUS_ERROR_DETAIL
/* value must lie in [min, max] */
#define EP_FAIL_RANGE(st, arg, index, value, min, max) \
    edgeplus__fail((st), (arg), (index), (int64_t)(value), (int64_t)(min), (int64_t)(max), "")
/* value breaks the rule `expected` (no range) */
#define EP_FAIL(st, arg, index, value, expected) \
    edgeplus__fail((st), (arg), (index), (int64_t)(value), 1, 0, (expected))
#else
#define EP_FAIL_RANGE(st, arg, index, value, min, max) (st)
#define EP_FAIL(st, arg, index, value, expected) (st)
#endif
#define EP_FAIL_NULL(arg) EP_FAIL(EDGEPLUS_ERR_NULL, (arg), -1, 0, "must not be NULL")
#define EP_FAIL_SCRATCH(arg, size, need) \
    EP_FAIL_RANGE(EDGEPLUS_ERR_SCRATCH, (arg), -1, (size), (need), INT32_MAX)
/* return EP_FAIL_NULL(name) when p is NULL */
#define EP_CHECK_NULL(p, name)         \
    do {                               \
        if ((p) == NULL) {             \
            return EP_FAIL_NULL(name); \
        }                              \
    } while (0)

#endif /* EDGEPLUS_SUPPORT_H */
