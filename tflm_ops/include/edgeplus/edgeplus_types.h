/*
 * edgeplus_types.h - types of the edgeplus low-bit kernel library (pure C99).
 *
 * No TFLite types, no malloc, caller-owned scratch (edgeplus_context), a status
 * enum returned by every kernel. See edgeplus_ops.h for the functions and the
 * documented data layouts.
 */
#ifndef EDGEPLUS_TYPES_H
#define EDGEPLUS_TYPES_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status returned by every kernel. EDGEPLUS_OK is 0, errors are negative. The
 * values are part of the ABI (the Python binding maps them by number). */
typedef enum {
    EDGEPLUS_OK = 0,
    EDGEPLUS_ERR_NULL = -1,    /* a required pointer is NULL */
    EDGEPLUS_ERR_DIMS = -2,    /* a dimension is <= 0, or dims disagree with each other */
    EDGEPLUS_ERR_BITS = -3,    /* a bit-width is not 2, 4 or 8 */
    EDGEPLUS_ERR_WINDOW = -4,  /* a window/region lies outside its tensor or buffer */
    EDGEPLUS_ERR_SCRATCH = -5, /* ctx->buf is NULL or ctx->size is below the minimum */
    EDGEPLUS_ERR_ARG = -6,     /* any other bad argument (a value out of range ...) */
    EDGEPLUS_ERR_COVERAGE = -7, /* a stage program's patches do not tile its output */
    EDGEPLUS_ERR_OVERLAP = -8   /* a stage program's buffers of two tensors alive at the
                                   same step share bytes */
} edgeplus_status;

/* What a refused call refused (edgeplus_last_error): the argument, its value and the rule
 * it breaks. Static strings; no allocation. */
typedef struct {
    edgeplus_status status; /* the refusal's status; EDGEPLUS_OK: no refusal recorded */
    const char *argument;   /* the C argument or field, e.g. "params->stride_h", "ctx->size",
                               "head->layers[].act_min": "[]" stands for [index] */
    int32_t index;          /* the element, layer, tensor, step or word; -1: none */
    int64_t value;          /* the value refused (0 for a NULL pointer) */
    int64_t min, max;       /* the range it must lie in; min > max: no range, see expected */
    const char *expected;   /* the rule in words when it is not a range ("" otherwise) */
} edgeplus_error;

/* Caller-owned scratch memory. Any alignment: kernels align internally (the
 * _get_buffer_size companions include the slack). */
typedef struct {
    void *buf;
    int32_t size; /* bytes */
} edgeplus_context;

/* Tensor dims. Activations NHWC; conv filters OHWI (n = out channels);
 * depthwise filters 1HWO (n = 1, c = channels). */
typedef struct {
    int32_t n;
    int32_t h;
    int32_t w;
    int32_t c;
} edgeplus_dims;

/* A rectangle of rows/cols in the coordinates of a tensor (all batches, all
 * channels): rows [y, y+h), cols [x, x+w). */
typedef struct {
    int32_t y;
    int32_t x;
    int32_t h;
    int32_t w;
} edgeplus_window;

/* Conv / depthwise-conv parameters. */
typedef struct {
    int32_t stride_h, stride_w;     /* >= 1 */
    int32_t pad_h, pad_w;           /* top / left padding, >= 0 (bottom/right follow from
                                       the output dims, as in TFLite's SAME/VALID) */
    int32_t dilation_h, dilation_w; /* >= 1; 0 is read as 1 */
    int32_t input_zero_point;       /* in the input bit-width's range [-2^(b-1), 2^(b-1)-1] */
    int32_t output_zero_point;      /* in the output bit-width's range */
    int32_t act_min, act_max;       /* fused clamp, output integer domain, in the output
                                       bit-width's range, act_min <= act_max */
    int32_t in_bits;                /* activation bits of the input: 2, 4 or 8 */
    int32_t w_bits;                 /* weight bits: 2, 4 or 8 */
    int32_t out_bits;               /* activation bits of the output: 2, 4 or 8 */
    int32_t bias_frac_bits;         /* 0..16: the bias counts 2^-bias_frac_bits accumulator
                                       steps, requantization reads acc * 2^bias_frac_bits
                                       + bias (0: TFLite's integer bias; more: the float
                                       bias of a low-bit layer, whose accumulator step
                                       in_scale * w_scale is coarse, kept to a fraction) */
} edgeplus_conv_params;

/* Per-output-channel requantization (TFLite's QuantizeMultiplier form):
 * real_scale[c] = multiplier[c] * 2^(shift[c] - 31), multiplier in [2^30, 2^31)
 * (or 0), shift in [-31, 30]. Both arrays have out-channel entries. */
typedef struct {
    const int32_t *multiplier;
    const int32_t *shift;
} edgeplus_quant_params;

/* ------------------------------------------------------------------ QCore */

/* One integer FULLY_CONNECTED layer of the calibrated head (TFLite's kernel, bit-exact):
 * out[n][o] = clamp(MultiplyByQuantizedMultiplier(sum_i w[o][i] * (x[n][i] -
 * input_zero_point) + bias[o], multiplier[o], shift[o]) + output_zero_point,
 * act_min, act_max), int8 in and out. */
typedef struct {
    int32_t out_features, in_features;
    int32_t w_bits;                    /* 4 or 8: weights packed at w_bits (library layout),
                                          [out][in] */
    int8_t *weights;                   /* edgeplus_qcore_step updates these in place */
    const int32_t *bias;               /* [out] or NULL */
    const int32_t *multiplier, *shift; /* [out]: multiplier >= 0, shift in [-31, 30] */
    int32_t input_zero_point, output_zero_point, act_min, act_max; /* int8 range */
} edgeplus_fc_layer;

/* The int8 bit-flip network of one calibrated layer (step.py FlipNet): per weight, from
 * its 4 int8 features f, acc1[h] = b1[h] + sum_k w1[h][k] f[k],
 * hid[h] = clamp(MultiplyByQuantizedMultiplier(acc1[h], m1, s1), 0, 127),
 * acc2 = b2 + sum_h w2[h] hid[h] (the confidence). */
typedef struct {
    int32_t hidden;       /* 1..1024 */
    const int8_t *w1;     /* [hidden][4] */
    const int32_t *b1;    /* [hidden], |b1| <= 2^30 */
    int32_t m1, s1;       /* m1 in [0, 2^31), s1 in [-31, 30] */
    const int8_t *w2;     /* [hidden] */
    int32_t b2;           /* |b2| <= 2^30 */
    int32_t threshold;    /* 1..2^30 */
} edgeplus_flipnet;

/* The calibrated head: a chain of FULLY_CONNECTED layers and their flip networks. */
typedef struct {
    int32_t num_layers;                  /* 1..8; layer l's out_features == layer l+1's in */
    edgeplus_fc_layer *layers;           /* layer 0 first; the last one gives the logits */
    const edgeplus_flipnet *const *nets; /* [num_layers]; NULL = layer not calibrated (nets
                                            itself NULL: no layer is) */
    int32_t margin;                      /* 1..255 */
    int32_t tries;                       /* 1..16 confidence levels */
} edgeplus_qcore_head;

/* What one edgeplus_qcore_step did (step.py StepResult). */
typedef struct {
    int32_t kept;           /* 1: the weights hold the candidate of `level`; 0: rolled back */
    int32_t level;          /* the level kept, or the last one tried (0 if none was) */
    int32_t changed;        /* weights that candidate changed (0 if none was tried) */
    int32_t correct_before; /* unguarded samples [guard, n) right before the step */
    int32_t correct_after;  /* ... with that candidate (== before if none was tried) */
    int32_t margin_before;  /* their sum of margins z[y] - max_{o != y} z[o] before it */
    int32_t margin_after;   /* ... with that candidate (== before if none was tried) */
    int32_t guard_correct_before; /* guarded samples [0, guard) right before the step */
    int32_t guard_correct_after;  /* ... with that candidate (== before if none was tried) */
} edgeplus_qcore_step_result;

#ifdef __cplusplus
}
#endif

#endif /* EDGEPLUS_TYPES_H */
