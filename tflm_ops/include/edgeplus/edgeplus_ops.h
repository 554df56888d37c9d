/*
 * edgeplus_ops.h - public API of the edgeplus low-bit kernels (pure C99).
 *
 * Like CMSIS-NN's arm_nnfunctions.h: raw pointers and small structs, no TFLite
 * types, no malloc, caller-owned scratch with a _get_buffer_size companion, every
 * kernel returns an edgeplus_status and validates its arguments at entry (it never
 * aborts). One public function per source file in tflm_ops/src.
 *
 * A plain-C path always exists; with __ARM_FEATURE_DSP (Cortex-M4/M7/M33 with DSP)
 * the conv inner loops use SMLAD (two 16-bit MACs, or four 2-bit x 2-bit MACs in
 * paired lanes) with LDRD loads, SXTB16/SSUB8 unpacking and an SMMULR requant fast
 * path. Both paths give identical results. -DEDGEPLUS_NO_DSP forces the plain path;
 * -DEDGEPLUS_EMULATE_DSP runs the DSP path's logic in C on any host (tests).
 *
 * Cost on the emulated Cortex-M4 (instructions per MAC, scratch and .text bytes per
 * layer and bit-width, with either scratch size): `python -m benchmarks.kernels_m4`.
 * For scale: CMSIS-NN arm_convolve_s8 takes about 2.1 instructions per MAC there, a
 * naive C conv about 5.0.
 *
 * ---------------------------------------------------------------------------
 * Data layout
 * ---------------------------------------------------------------------------
 * Integers at b bits are signed two's complement, range [-2^(b-1), 2^(b-1)-1].
 *   b = 8: one int8 per byte.
 *   b = 4: two values per byte, LOW nibble first (element 2i in bits 0..3 of byte i,
 *          element 2i+1 in bits 4..7) - TFLite's INT4 convention.
 *   b = 2: four values per byte, lowest bits first (element 4i+k in bits 2k..2k+1).
 *   An odd tail is padded with 0 bits. Packing runs over the flat index of the whole
 *   buffer (for activations: the flat NHWC index of the buffer, so with an odd channel
 *   count a pixel may start in the middle of a byte; weights: the flat OHWI / 1HWO
 *   index). Size in bytes: edgeplus_packed_bytes(count, bits) = ceil(count*b/8).
 *
 * Activations: NHWC, asymmetric at every bit-width (input/output zero point in the
 *   bit-width's range). Weights: symmetric per output channel (no zero point),
 *   conv OHWI, depthwise 1HWO (depth multiplier 1: out channels == in channels).
 *
 * Math (TFLite reference kernels, bit-exact):
 *   acc = sum_{ky,kx,ic} w[oc,ky,kx,ic] * (x[iy,ix,ic] - input_zero_point)
 *         (padding positions contribute 0, i.e. they hold the input zero point)
 *   acc += bias[oc]                                   (if bias != NULL)
 *   y = MultiplyByQuantizedMultiplier(acc, multiplier[oc], shift[oc])
 *       (SaturatingRoundingDoublingHighMul then RoundingDivideByPOT, TFLite's default
 *        double rounding) + output_zero_point, clamped to [act_min, act_max].
 *
 * Accumulator bounds (int32 accumulators, never overflow): |x - zp| <= 2^in_bits - 1,
 *   |w| <= 2^(w_bits-1), so |acc| <= K*C * (2^in_bits - 1) * 2^(w_bits-1), where
 *   K*C = filter_h*filter_w*in_channels (conv) or filter_h*filter_w (depthwise).
 *   The kernels reject (EDGEPLUS_ERR_DIMS) any K*C above EDGEPLUS_MAX_KC(in, w):
 *     in\w       8            4            2
 *     8       65,793     1,052,688    4,210,752
 *     4    1,118,481    17,895,697   71,582,788
 *     2    5,592,405    89,478,485  357,913,941
 *   The bias is added with int32 wrap-around, as TFLite does (in range for any
 *   bias a converter produces). The DSP path's packed 2-bit products (two
 *   products per 16-bit lane) flush their fields every EDGEPLUS_W2A2_FLUSH words,
 *   so they cannot overflow either (see src/edgeplus_conv_core.c).
 *
 * Patch-based inference (the _window variants): the output `window` is given in
 * OUTPUT tensor coordinates. The input buffer may hold only a region of the logical
 * input (input_region, in input coordinates) and the output buffer only a region of
 * the logical output (output_region); NULL means the buffer holds the whole tensor.
 * The kernel reads the input rows/cols the window needs (padding outside the
 * logical input is the zero point; everything else must lie inside input_region,
 * else EDGEPLUS_ERR_WINDOW; use edgeplus_conv_input_region to get it) and writes
 * exactly the window into the output buffer (packed bytes shared with neighbours
 * outside the window are read-modify-written, the neighbours are kept).
 */
#ifndef EDGEPLUS_OPS_H
#define EDGEPLUS_OPS_H

#include "edgeplus/edgeplus_types.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EDGEPLUS_VERSION_MAJOR 0
#define EDGEPLUS_VERSION_MINOR 1

/* Largest K*C (see above) for which the int32 accumulator cannot overflow. */
#define EDGEPLUS_MAX_KC(in_bits, w_bits) \
    ((int32_t)(2147483647LL / (((1LL << (in_bits)) - 1) * (1LL << ((w_bits) - 1)))))

/* ------------------------------------------------------------------ misc */

/* Static string for a status ("EDGEPLUS_OK", "EDGEPLUS_ERR_DIMS", ...); unknown
 * values give "EDGEPLUS_ERR_UNKNOWN". Never NULL. */
const char *edgeplus_status_str(edgeplus_status status);

/* TFLite's MultiplyByQuantizedMultiplier (reference kernels, double rounding):
 * RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(acc << max(shift,0), m),
 * max(-shift,0)). The left shift wraps like the 32-bit hardware. */
int32_t edgeplus_requantize(int32_t acc, int32_t multiplier, int32_t shift);

/* ------------------------------------------------------------------ packing */

/* Bytes needed for `count` values at `bits` (2, 4, 8); -1 for bad bits or count < 0. */
int32_t edgeplus_packed_bytes(int32_t count, int32_t bits);

/* Pack `count` int8 values (each in the 4-bit / 2-bit signed range, else
 * EDGEPLUS_ERR_ARG and dst is left undefined) into dst (edgeplus_packed_bytes
 * bytes; the tail bits of the last byte are 0). count == 0 is a no-op. */
edgeplus_status edgeplus_pack_int4(const int8_t *src, int32_t count, int8_t *dst);
edgeplus_status edgeplus_pack_int2(const int8_t *src, int32_t count, int8_t *dst);

/* Unpack `count` values into int8 (sign-extended). */
edgeplus_status edgeplus_unpack_int4(const int8_t *src, int32_t count, int8_t *dst);
edgeplus_status edgeplus_unpack_int2(const int8_t *src, int32_t count, int8_t *dst);

/* Any of bits 2/4/8 (8 = range-free copy). */
edgeplus_status edgeplus_pack(const int8_t *src, int32_t count, int32_t bits, int8_t *dst);
edgeplus_status edgeplus_unpack(const int8_t *src, int32_t count, int32_t bits, int8_t *dst);

/* ------------------------------------------------------------------ conv */

/* Scratch bytes for edgeplus_conv2d / edgeplus_conv2d_window (>= 0), or a negative
 * edgeplus_status when the arguments are invalid. output_dims->h/w may be those of
 * the largest window you will run instead of the whole output (less scratch when
 * it has fewer than 32 pixels). A smaller ctx still works, more slowly, down to the
 * minimum: what this returns for an output of 1x1 (it includes 8 bytes of alignment
 * slack, so the kernels refuse with EDGEPLUS_ERR_SCRATCH from 9 bytes below it on).
 * With P = min(out_h*out_w, 32) rounded up to even: 8 + out_c*16 + P*out_c (to 4)
 * + (P + 3) * kpad * 2 bytes, kpad = filter_h*filter_w*in_c rounded up to 16. */
int32_t edgeplus_conv2d_get_buffer_size(const edgeplus_conv_params *params,
                                        const edgeplus_dims *input_dims,
                                        const edgeplus_dims *filter_dims,
                                        const edgeplus_dims *output_dims);

/* Scratch bytes with which edgeplus_conv2d[_window] also keeps every weight row
 * unpacked for the whole call instead of unpacking it again for each block of 32
 * output pixels: _get_buffer_size + about out_c * kpad * 2 bytes; faster (about 0.1
 * to 0.2 instructions per MAC on the M4). Any ctx at least this large gets the
 * cache; the result does not depend on it. Negative edgeplus_status on bad args. */
int32_t edgeplus_conv2d_get_buffer_size_fast(const edgeplus_conv_params *params,
                                             const edgeplus_dims *input_dims,
                                             const edgeplus_dims *filter_dims,
                                             const edgeplus_dims *output_dims);

/* Conv2D over the whole tensor. input: NHWC at params->in_bits; filter: OHWI at
 * params->w_bits; bias: int32[out_c] or NULL; output: NHWC at params->out_bits.
 * input_dims->n == output_dims->n, filter_dims->c == input_dims->c,
 * filter_dims->n == output_dims->c, and (out_h-1)*stride_h - pad_h <= in_h-1 (same
 * for w), else EDGEPLUS_ERR_DIMS. */
edgeplus_status edgeplus_conv2d(const edgeplus_context *ctx,
                                const edgeplus_conv_params *params,
                                const edgeplus_quant_params *quant,
                                const edgeplus_dims *input_dims, const int8_t *input,
                                const edgeplus_dims *filter_dims, const int8_t *filter,
                                const int32_t *bias,
                                const edgeplus_dims *output_dims, int8_t *output);

/* Conv2D of one output window (patch-based inference, see the top of this file).
 * input_dims / output_dims are the LOGICAL tensor dims; input holds
 * [n][input_region.h][input_region.w][c] (input_region NULL: the whole input),
 * output holds [n][output_region.h][output_region.w][c] (NULL: the whole output).
 * window (not NULL) must lie inside the output tensor and output_region. */
edgeplus_status edgeplus_conv2d_window(const edgeplus_context *ctx,
                                       const edgeplus_conv_params *params,
                                       const edgeplus_quant_params *quant,
                                       const edgeplus_dims *input_dims,
                                       const edgeplus_window *input_region,
                                       const int8_t *input,
                                       const edgeplus_dims *filter_dims, const int8_t *filter,
                                       const int32_t *bias,
                                       const edgeplus_dims *output_dims,
                                       const edgeplus_window *output_region, int8_t *output,
                                       const edgeplus_window *window);

/* ------------------------------------------------------------------ depthwise */

/* Scratch bytes for the depthwise kernels (>= 0), or a negative edgeplus_status. It
 * depends on params, input_dims and filter_dims only (not on output_dims or the window),
 * and is also the minimum: the kernels refuse (EDGEPLUS_ERR_SCRATCH) from 9 bytes below
 * it on (it includes 8 bytes of alignment slack). With S = min(c, 16) channels per
 * strip, T = min(64, (in_w - 1 + pad_w) / stride_w + 1) output pixels per tile row,
 * R = (T - 1) * stride_w + (filter_w - 1) * dilation_w + 1 input columns per tile row,
 * Rp = R + 6 rounded down to even, F = max(4, filter_w rounded up to even), "to 4" =
 * rounded up to a multiple of 4: 8 + 16 c + 2 S filter_h F + 4 (T to 4) + 32
 * + (T S to 4) + 8 filter_h + 2 Rp (filter_h S + 1) bytes (48x48x32 3x3 SAME: 7,440).
 * Where the terms after 16 c exceed 32,768 (huge dilations) the kernels use a per-pixel
 * im2col instead: 8 + 16 c + (c to 4) + 4 kpad bytes, kpad = filter_h filter_w c to 16. */
int32_t edgeplus_depthwise_conv2d_get_buffer_size(const edgeplus_conv_params *params,
                                                  const edgeplus_dims *input_dims,
                                                  const edgeplus_dims *filter_dims,
                                                  const edgeplus_dims *output_dims);

/* Depthwise Conv2D, depth multiplier 1: filter 1HWO with O == input_dims->c ==
 * output_dims->c (else EDGEPLUS_ERR_DIMS). quant and bias have c entries. */
edgeplus_status edgeplus_depthwise_conv2d(const edgeplus_context *ctx,
                                          const edgeplus_conv_params *params,
                                          const edgeplus_quant_params *quant,
                                          const edgeplus_dims *input_dims, const int8_t *input,
                                          const edgeplus_dims *filter_dims, const int8_t *filter,
                                          const int32_t *bias,
                                          const edgeplus_dims *output_dims, int8_t *output);

edgeplus_status edgeplus_depthwise_conv2d_window(const edgeplus_context *ctx,
                                                 const edgeplus_conv_params *params,
                                                 const edgeplus_quant_params *quant,
                                                 const edgeplus_dims *input_dims,
                                                 const edgeplus_window *input_region,
                                                 const int8_t *input,
                                                 const edgeplus_dims *filter_dims,
                                                 const int8_t *filter,
                                                 const int32_t *bias,
                                                 const edgeplus_dims *output_dims,
                                                 const edgeplus_window *output_region,
                                                 int8_t *output,
                                                 const edgeplus_window *window);

/* The input rows/cols (clipped to the input tensor) that the conv or depthwise conv
 * reads to produce output `window`: what a patch's input buffer must hold. */
edgeplus_status edgeplus_conv_input_region(const edgeplus_conv_params *params,
                                           const edgeplus_dims *input_dims,
                                           const edgeplus_dims *filter_dims,
                                           const edgeplus_window *window,
                                           edgeplus_window *input_region);

/* ------------------------------------------------------------------ bit-flip */

/* QCore's on-device step: weights (packed at `bits` = 2, 4 or 8, `count` values)
 * += update (int8, each -1, 0 or +1, else EDGEPLUS_ERR_ARG and nothing is changed),
 * saturated to the narrow symmetric range [-(2^(b-1)-1), 2^(b-1)-1]: every result
 * lies in that range (a stored -2^(b-1) with update 0 becomes -(2^(b-1)-1)).
 * changed (may be NULL) receives how many values changed. */
edgeplus_status edgeplus_bitflip_apply(int8_t *weights, const int8_t *update, int32_t count,
                                       int32_t bits, int32_t *changed);

#ifdef __cplusplus
}
#endif

#endif /* EDGEPLUS_OPS_H */
