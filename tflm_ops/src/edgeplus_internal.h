/*
 * edgeplus_internal.h - helpers shared by the edgeplus kernels (not public API).
 */
#ifndef EDGEPLUS_INTERNAL_H
#define EDGEPLUS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

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
#define EDGEPLUS_DW_PLANAR_MAX 65536
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
