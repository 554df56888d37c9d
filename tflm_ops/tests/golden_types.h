/*
 * golden_types.h - record types of the golden vectors in golden_cases.h, which
 * `python -m tests.builders.golden --out tflm_ops/tests/golden_cases.h`
 * generates from the NumPy reference (tfmot_edgeplus/core/conv_reference.py).
 */
#ifndef EDGEPLUS_GOLDEN_TYPES_H
#define EDGEPLUS_GOLDEN_TYPES_H

#include <stdint.h>

#include "edgeplus/edgeplus_ops.h"

/* One conv / depthwise case. The output buffer (holding output_region, or the
 * whole output when has_output_region is 0) is filled with `prefill` bytes, the
 * kernel computes `window`, and the buffer must then equal `expected` byte for
 * byte (bytes outside the window keep the prefill). */
typedef struct {
    const char *name;
    int32_t depthwise;
    edgeplus_conv_params params;
    edgeplus_dims input_dims;  /* logical */
    edgeplus_dims filter_dims;
    edgeplus_dims output_dims; /* logical */
    edgeplus_window window;
    int32_t has_input_region;
    edgeplus_window input_region;
    int32_t has_output_region;
    edgeplus_window output_region;
    const int8_t *input; /* packed, holds input_region (or all) */
    int32_t input_bytes;
    const int8_t *filter; /* packed */
    int32_t filter_bytes;
    const int32_t *bias; /* NULL: no bias */
    const int32_t *multiplier;
    const int32_t *shift;
    uint8_t prefill;
    const int8_t *expected; /* packed output buffer after the call */
    int32_t output_bytes;
} golden_conv_case;

typedef struct {
    int32_t acc, multiplier, shift, expected;
} golden_requant_case;

typedef struct {
    int32_t bits;
    int32_t count;
    const int8_t *values; /* unpacked */
    const int8_t *packed; /* edgeplus_packed_bytes(count, bits) bytes */
} golden_pack_case;

typedef struct {
    int32_t bits;
    int32_t count;
    const int8_t *weights; /* packed, before */
    const int8_t *update;  /* count values, -1/0/+1 */
    const int8_t *expected; /* packed, after */
    int32_t changed;
} golden_bitflip_case;

/* One patch-stage program (tests/builders/golden.py golden_stage_case): its
 * words, the packed filters of its weight slots, tensor 0 whole and the expected split
 * tensor whole (int8). */
typedef struct {
    const int32_t *program;
    int32_t words;
    int32_t num_slots;
    const int8_t *const *filters;
    const int32_t *filter_bytes;
    const int8_t *input;
    int32_t input_bytes;
    const int8_t *expected;
    int32_t output_bytes;
} golden_stage_case;

/* One QCore step (tests/builders/golden.py golden_qcore_cases): a 6 -> 5 -> 3 head at
 * W4 (packed [out][in]; layer 1 uses 8 of its 15 bytes), 8 samples, both layers
 * calibrated by 3-unit flip nets, margin 16, tries 4; the first `guard` samples are
 * guarded. After edgeplus_qcore_step: result, the masks and the weights w_after. */
typedef struct {
    int8_t w[15];
    int32_t bias[5], mult[5], shift[5];
    int32_t zp_in, zp_out, act_min, act_max;
} golden_qcore_layer;

typedef struct {
    int8_t w1[12];
    int32_t b1[3];
    int32_t m1, s1;
    int8_t w2[3];
    int32_t b2, threshold;
} golden_qcore_net;

typedef struct {
    int8_t x[48];
    int32_t y[8];
    int32_t guard, guard_min_correct;
    golden_qcore_layer layers[2];
    golden_qcore_net nets[2];
    edgeplus_qcore_step_result result;
    uint8_t before[8], after[8];
    int8_t w_after[2][15];
} golden_qcore_case;

#endif /* EDGEPLUS_GOLDEN_TYPES_H */
