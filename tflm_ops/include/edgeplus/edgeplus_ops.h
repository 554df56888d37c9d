/*
 * edgeplus_ops.h - public API of the edgeplus low-bit kernels (pure C99).
 *
 * Like CMSIS-NN's arm_nnfunctions.h: raw pointers and small structs, no TFLite
 * types, no malloc, caller-owned scratch with a _get_buffer_size companion, every
 * kernel returns an edgeplus_status and validates its arguments at entry (it never
 * aborts); a refusal also records which argument broke which rule (edgeplus_last_error).
 * One public function per source file in tflm_ops/src (edgeplus_last_error.c: the record's
 * two); their shared inline helpers are src/edgeplus_support.h.
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
 *   acc = acc * 2^bias_frac_bits + bias[oc]           (bias may be NULL: + 0)
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
 *   With bias_frac_bits = F > 0 the kernels reject any K*C above
 *   EDGEPLUS_MAX_KC(in, w) / 2^F (acc * 2^F fits int32 too).
 *   The bias is added with int32 wrap-around, as TFLite does (in range for any
 *   bias a converter produces). The DSP path's packed 2-bit products (two
 *   products per 16-bit lane) flush their fields every EDGEPLUS_W2A2_FLUSH words,
 *   so they cannot overflow either (see src/edgeplus_conv_core.c). The conv's lean
 *   layout sums 4-bit (2-bit) weights scaled by 16 (64); it does so only when the bound
 *   above times 16 (64) stays below 2^31, else it takes its unpacking path.
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

/* Largest edgeplus_conv_params.bias_frac_bits. */
#define EDGEPLUS_MAX_BIAS_FRAC_BITS 16

/* Largest K*C (see above) for which the int32 accumulator cannot overflow. */
#define EDGEPLUS_MAX_KC(in_bits, w_bits) \
    ((int32_t)(2147483647LL / (((1LL << (in_bits)) - 1) * (1LL << ((w_bits) - 1)))))

/* ------------------------------------------------------------------ misc */

/* Static string for a status ("EDGEPLUS_OK", "EDGEPLUS_ERR_DIMS", ...); unknown
 * values give "EDGEPLUS_ERR_UNKNOWN". Never NULL. */
const char *edgeplus_status_str(edgeplus_status status);

/* Which argument the last refused call of the calling thread refused: every function that
 * returns an error status (or a negative size) first records the argument, its value and
 * the range or rule it breaks. The record stays until the next refusal or
 * edgeplus_clear_error; calls that succeed do not touch it. Thread-local on hosted builds
 * (Linux, macOS, Windows), one static record on bare metal (about 40 bytes, no malloc).
 * -DEDGEPLUS_ERROR_DETAIL=0 builds the library without the records and their strings
 * (the status alone; the record then keeps status EDGEPLUS_OK and a NULL argument). Never
 * NULL. */
const edgeplus_error *edgeplus_last_error(void);
void edgeplus_clear_error(void);

/* TFLite's MultiplyByQuantizedMultiplier (reference kernels, double rounding):
 * RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(acc << max(shift,0), m),
 * max(-shift,0)). The left shift wraps like the 32-bit hardware. */
int32_t edgeplus_requantize(int32_t acc, int32_t multiplier, int32_t shift);

/* out[i] = edgeplus_requantize(acc[i], multiplier[i], shift[i]) for i < count (count == 0
 * is a no-op; EDGEPLUS_ERR_DIMS for count < 0, EDGEPLUS_ERR_NULL for a NULL array). */
edgeplus_status edgeplus_requantize_array(const int32_t *acc, const int32_t *multiplier,
                                          const int32_t *shift, int32_t count, int32_t *out);

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
 * it has fewer than 32 pixels). A smaller ctx still works, more slowly (the lean
 * layout, see edgeplus_conv2d_get_buffer_size_lean), down to the minimum.
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

/* Lean scratch (CMSIS-NN's spirit: little SRAM, about the same speed): the bytes with
 * which edgeplus_conv2d[_window] takes its lean layout. No requantization table (each
 * channel's constants are prepared per block of output pixels), no output staging for an
 * 8-bit output, and the weight rows are read packed, straight from the filter (one 32-bit
 * word per 4 / 8 / 16 weights, widened in registers), against the im2col columns of
 * blocks of P pixels: P = 512 / (filter_h*filter_w*in_c) rounded up to a multiple of 4,
 * within [4, 32] and at most the window's pixels rounded up to 4; 8 + (out_bits < 8:
 * P*out_c to 4) + (P + 1) * kpad * 2 bytes (conv 32x32x16 -> 32 3x3: 1,448 B at 8-bit
 * output against 11,624 by default; 1x1 16x16x64 -> 64: 1,160 B; 2-bit x 2-bit keeps its
 * paired lanes, whose columns are half as wide, and the requantization table when it fits
 * next to blocks of 4 pixels or more). Where a weight row does
 * not start on a byte (4-bit weights and an odd K*C, 2-bit and K*C not a multiple of 4) or
 * K*C exceeds EDGEPLUS_MAX_KC / 16 (4-bit weights) or / 64 (2-bit), the lean layout
 * unpacks the weight rows instead (slower). The same call serves both layouts: the kernels
 * take the default one from _get_buffer_size on and the lean one below it, with as many
 * pixels per block as fit; every layout gives the same bytes (cost on the emulated M4:
 * benchmarks.kernels_m4, its scratch_mode rows). The minimum, what this returns for an
 * output of 1x1 (P = 4), includes 8 bytes of alignment slack: the kernels refuse with
 * EDGEPLUS_ERR_SCRATCH from 9 bytes below it on. Negative edgeplus_status on bad args. */
int32_t edgeplus_conv2d_get_buffer_size_lean(const edgeplus_conv_params *params,
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
 * depends on params, input_dims and filter_dims only (not on output_dims or the window).
 * With S = min(c, 16) channels per strip, T = min(64, (in_w - 1 + pad_w) / stride_w + 1)
 * output pixels per tile row, R = (T - 1) * stride_w + (filter_w - 1) * dilation_w + 1
 * input columns per tile row, Rp = R + 6 rounded down to even, F = max(4, filter_w
 * rounded up to even), "to 4" = rounded up to a multiple of 4: 8 + 2 S filter_h F
 * + 4 (T to 4) + 32 + (T S to 4) + 8 filter_h + 2 Rp (filter_h S + 1) bytes (48x48x32 3x3
 * SAME: 6,928; the strip's requantization table, S x 16 bytes, is on the stack). Where the
 * terms after 8 exceed 32,768 (huge dilations) the kernels use a per-pixel im2col instead:
 * 8 + 16 c + (c to 4) + 4 kpad bytes, kpad = filter_h filter_w c to 16. A smaller ctx
 * takes the lean layout (_get_buffer_size_lean). */
int32_t edgeplus_depthwise_conv2d_get_buffer_size(const edgeplus_conv_params *params,
                                                  const edgeplus_dims *input_dims,
                                                  const edgeplus_dims *filter_dims,
                                                  const edgeplus_dims *output_dims);

/* Lean scratch of the depthwise kernels, also their minimum (the kernels refuse with
 * EDGEPLUS_ERR_SCRATCH from 9 bytes below it on: it includes 8 bytes of alignment slack):
 * the formula above with S = min(c, EDGEPLUS_DW_LEAN_STRIP = 4) and, for an 8-bit output,
 * no (T S to 4) staging term (48x48x32 3x3 SAME: 1,824 B at 8-bit output, 2,020 B at 2 or
 * 4 bits), or the default's when that is smaller. The kernels take the default layout
 * when ctx->size holds it, else the lean one; same bytes either way (cost: about 1.07x the
 * default's instructions at 8-bit output, 1.15x at 4-bit: benchmarks.kernels_m4, its
 * scratch_mode rows). Negative edgeplus_status on bad args. */
int32_t edgeplus_depthwise_conv2d_get_buffer_size_lean(const edgeplus_conv_params *params,
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

/* ------------------------------------------------------------------ QCore */

/* QCore's on-device calibration step and coreset refresh, bit-exact with the NumPy
 * reference tfmot_edgeplus/calibration/step.py (its module docstring is the spec; the
 * head layers compute like tfmot_edgeplus/calibration/head.py's HeadLayer.forward).
 * No back-propagation: integer forwards, integer error signals, and a small int8
 * network that decides a -1/0/+1 flip per weight. */

/* Largest head (layers), flip network (hidden units), margin, tries, classes and
 * samples per step. */
#define EDGEPLUS_QCORE_MAX_LAYERS 8
#define EDGEPLUS_QCORE_MAX_HIDDEN 1024
#define EDGEPLUS_QCORE_MAX_MARGIN 255
#define EDGEPLUS_QCORE_MAX_TRIES 16
#define EDGEPLUS_QCORE_MAX_CLASSES (1 << 21) /* error sums stay in int32 */
#define EDGEPLUS_QCORE_MAX_N 8421504         /* 255 * n stays in int32 */

/* Scratch bytes of edgeplus_qcore_step for `n` samples (>= 0), or a negative
 * edgeplus_status when the head is invalid (the step's checks of head, nets and n).
 * It includes 4 bytes of alignment slack: any ctx of this size works, and the step
 * refuses (EDGEPLUS_ERR_SCRATCH) from 5 bytes below it on. With S = sum of the layers'
 * out_features, R = the largest in_features of a 4-bit layer (0 if none), and over the
 * calibrated layers K (nets[l] != NULL): F = out_features of the first of them,
 * T = max(in_features, out_features), Wc = sum out*in, Wm = max out*in, Bc = sum
 * edgeplus_packed_bytes(out*in, w_bits):
 *   4 + n*S                                                      (K empty)
 *   4 + n*S + 4*n*(F + 2) + 6*T + Wc + max(4*Wm, Bc) + R           (otherwise)
 * = alignment slack | int32 error column [n] | int32 label errors [n] | int32 [T] (raw A
 * or E sums) | int32 accumulators of the first calibrated layer [F][n] (kept through the
 * levels) | int32 G of one calibrated layer [Wm], later the backup of the calibrated
 * layers' packed weights [Bc] | int8 activations of every layer [n][S] | int8 flip level
 * per calibrated weight [Wc] | int8 A and E features [T] each | one 4-bit weight row
 * unpacked to int8 [R]. One calibrated IMU layer 32 -> 7 at W4, n = 60: 3,928 bytes;
 * the head 64 -> 32 -> 7, both layers calibrated, n = 60: 20,636 bytes at W8, 19,566 at
 * W4. */
int32_t edgeplus_qcore_step_get_buffer_size(const edgeplus_qcore_head *head, int32_t n);

/* One QCore step on n samples x ([n][layers[0].in_features] int8, the head's inputs)
 * with labels y ([n], class indices in [0, classes)), the first `guard` of them guarded
 * (the QCore's old-domain items: 0 <= guard <= n - 1); step.py's qcore_step:
 *  1. forward with the current weights: score before = (correct, sum of margins) of
 *     the int8 logits over the unguarded samples [guard, n) (pred = first maximum,
 *     margin = z[y] - max_{o != y} z[o]); guard count = guarded samples [0, guard) right;
 *  2. error signals: at the output e[n][o] = clamp(z[o] - z[y] + margin, 0, 2 margin)
 *     for o != y, e[n][y] = -sum of them; a hidden layer l gets
 *     clamp(sum_o B_l[j][o] e[n][o], -127, 127) where its output > output_zero_point,
 *     else 0 (B_l = +-1 from the murmur3 finaliser of (l, j, o), never stored);
 *  3. per weight of every calibrated layer the int8 features (G, W, A, E) and the flip
 *     network's confidence acc2; EDGEPLUS_ERR_DIMS if n * max|e| * 255 > 2^31 - 1 for
 *     a calibrated layer's errors (its int32 sums could overflow: use fewer samples);
 *  4. for level k = 0 .. tries-1: every calibrated weight += (+1 if acc2 >=
 *     (k+1)*threshold, -1 if acc2 <= -(k+1)*threshold, else 0), saturated to the
 *     narrow range [-(2^(b-1)-1), 2^(b-1)-1] (edgeplus_bitflip_apply's rule); stop if
 *     no weight changed; forward; keep the candidate and stop if its unguarded score is
 *     higher (more right, or as many right with a larger margin sum) AND its guard count
 *     is >= guard_min_correct (0 <= guard_min_correct <= guard: the old-domain guard),
 *     else roll back. Steps 2 and 3 use all n samples; guard = 0 is the unguarded step.
 * On return the weights hold the kept candidate or exactly the old bytes (padding bits
 * included). result (not NULL) describes the step; correct_before / correct_after
 * (n bytes each, 0/1, or NULL) receive the per-sample correctness of all n samples
 * before the step and with the last candidate tried (== before when none was).
 * Errors, with the weights, correct_* and result untouched: EDGEPLUS_ERR_NULL (ctx,
 * head, layers, a layer's weights/multiplier/shift, a net's w1/b1/w2, x, y, result),
 * EDGEPLUS_ERR_DIMS (num_layers, in/out_features < 1, a chain mismatch, in_features
 * above EDGEPLUS_MAX_KC(8, w_bits), classes outside [2, EDGEPLUS_QCORE_MAX_CLASSES],
 * hidden, n outside [1, EDGEPLUS_QCORE_MAX_N], the overflow bound of 3.),
 * EDGEPLUS_ERR_BITS (w_bits not 4 or 8), EDGEPLUS_ERR_ARG (margin, tries, zero points
 * or act_min/act_max outside int8 or act_min > act_max, a multiplier < 0 or shift
 * outside [-31, 30], b1/b2/threshold/m1/s1 out of range, guard outside [0, n - 1],
 * guard_min_correct outside [0, guard], a label outside [0, classes)),
 * EDGEPLUS_ERR_SCRATCH (ctx->buf NULL or ctx->size below the _get_buffer_size). */
edgeplus_status edgeplus_qcore_step(const edgeplus_context *ctx,
                                    const edgeplus_qcore_head *head, const int8_t *x,
                                    const int32_t *y, int32_t n, int32_t guard,
                                    int32_t guard_min_correct, uint8_t *correct_before,
                                    uint8_t *correct_after,
                                    edgeplus_qcore_step_result *result);

/* Scratch bytes of edgeplus_qcore_refresh for n items: 4 + 4*n (alignment slack and
 * an int32 count per item), or EDGEPLUS_ERR_DIMS for n < 1 or above 2^29 - 2. */
int32_t edgeplus_qcore_refresh_get_buffer_size(int32_t n);

/* The QCore refresh (step.py qcore_refresh): choose `size` of the n items of QCore U
 * chunk. counts = prior_counts + miss counts of `history` (steps vectors of n bytes,
 * 0/1: the correct -> incorrect transitions of each item; an item never correct gets
 * `steps`). Then `size` draws without replacement, weight count + 1 (chosen items
 * weigh 0): *rng_state = xorshift32(*rng_state), r = *rng_state % (sum of weights),
 * the first item whose running sum of weights exceeds r. chosen[d] receives the item
 * of draw d, counts[d] its count; *rng_state is left at the last state drawn.
 * Errors (outputs untouched): EDGEPLUS_ERR_NULL (any pointer), EDGEPLUS_ERR_DIMS
 * (n or steps < 1, steps * n > 2^31 - 1, size outside [1, n]), EDGEPLUS_ERR_ARG
 * (*rng_state == 0, a prior count < 0 or > 2^31 - 1 - steps, a history byte > 1),
 * EDGEPLUS_ERR_SCRATCH. */
edgeplus_status edgeplus_qcore_refresh(const edgeplus_context *ctx, const int32_t *prior_counts,
                                       const uint8_t *history, int32_t steps, int32_t n,
                                       int32_t size, uint32_t *rng_state, int32_t *chosen,
                                       int32_t *counts);

/* ------------------------------------------------------------------ patch stage */

/* QuantMCU's patch stage: a planned chain of conv / depthwise / pad / add steps run patch
 * by patch with per-patch mixed precision (VDPC outlier patches at 8 bits, VDQS bits per
 * feature map elsewhere), described by a *stage program*: int32 words whose layout is
 * specified in tfmot_edgeplus/core/program.py (header "EPS1", tensors, steps, patches,
 * requantization blocks). tfmot_edgeplus/patching/simulate.py is the NumPy reference it
 * agrees with bit for bit. Batch 1. */

#define EDGEPLUS_STAGE_MAGIC 0x31535045 /* "EPS1" */
#define EDGEPLUS_STAGE_VERSION 1
#define EDGEPLUS_STAGE_MAX_TENSORS 256
#define EDGEPLUS_STAGE_MAX_GRID 64

/* Check every rule of the spec that memory safety, the kernels and the executor's promises
 * depend on: header, counts, tensor dims (each bounded before any product)/bits/zero points,
 * buffers inside the arena, step kinds, inputs, geometry, quant block offsets inside the
 * program and their values, buffers of tensors alive at the same step disjoint (the spec's
 * Buffers rule), each patch's regions inside their tensors and buffers and holding what the
 * step reading them needs, the patches' output windows tiling the output as the n x n grid
 * (Coverage), and the spec's Limits: the programs StageProgram.from_words accepts, with the
 * status its ProgramError names (the same checks in the same order; tested on corrupted,
 * truncated and hand-made malformed programs), reading no word past `words`. EDGEPLUS_OK or
 * the status of the first problem (EDGEPLUS_ERR_NULL, _DIMS, _BITS, _WINDOW, _ARG, _OVERLAP,
 * _COVERAGE). A program whose scratch would pass INT32_MAX passes the check;
 * edgeplus_patch_stage_get_buffer_size refuses it. */
edgeplus_status edgeplus_patch_stage_check(const int32_t *program, int32_t words);

/* Filter bytes (packed at the step's w_bits: conv OHWI, depthwise 1HWO) of weight slot
 * `slot`; the caller checks its filter tensors against them. (Biases are in the program's
 * requantization blocks, one per variant: a low-bit input has its own scale.) */
edgeplus_status edgeplus_patch_stage_weight_size(const int32_t *program, int32_t words,
                                                 int32_t slot, int32_t *filter_bytes);

/* Scratch bytes of edgeplus_patch_stage (>= 0): 4 bytes of alignment slack + the program's
 * arena_bytes (region buffers) rounded up to 4 + the largest minimum kernel scratch of any
 * conv/depthwise step and variant (the _get_buffer_size_lean of a 1x1 output: the stage
 * exists to save SRAM); or a negative edgeplus_status when the program is invalid
 * (EDGEPLUS_ERR_DIMS also when that sum exceeds INT32_MAX). A larger ctx is used: the conv
 * steps then take bigger blocks of output pixels (faster, same result). */
int32_t edgeplus_patch_stage_get_buffer_size(const int32_t *program, int32_t words);

/* Run every patch of the program: input = tensor 0 whole ([h][w][c] int8), output = the
 * split tensor whole ([h][w][c] int8, every element written once the last patch ran, and
 * the same whatever the scratch's size and content: the check's Coverage and Buffers rules),
 * filters[slot] the packed filters of the conv/depthwise steps (biases: in the program).
 * Errors return before anything is written: the checks of edgeplus_patch_stage_check,
 * EDGEPLUS_ERR_NULL (ctx, program, filters, a filter, input, output), EDGEPLUS_ERR_SCRATCH
 * (ctx->buf NULL or ctx->size below _get_buffer_size). */
edgeplus_status edgeplus_patch_stage(const edgeplus_context *ctx, const int32_t *program,
                                     int32_t words, const int8_t *const *filters,
                                     const int8_t *input, int8_t *output);

#ifdef __cplusplus
}
#endif

#endif /* EDGEPLUS_OPS_H */
