/* Internals of the patch-stage executor (edgeplus_patch_stage*.c): the program layout
 * (tfmot_edgeplus/core/program.py is the spec), bounds-checked accessors and packed
 * element access. */
#ifndef EDGEPLUS_STAGE_INTERNAL_H
#define EDGEPLUS_STAGE_INTERNAL_H

#include "edgeplus_internal.h"

#define EP_ST_HEADER 8
#define EP_ST_TENSOR 9
#define EP_ST_STEP 20
#define EP_ST_KIND_CONV 1
#define EP_ST_KIND_DW 2
#define EP_ST_KIND_PAD 3
#define EP_ST_KIND_ADD 4
#define EP_ST_ADD_WORDS 7
#define EP_ST_MAX_PAD 255

/* A program's section offsets (in words), valid after edgeplus__stage_layout. */
typedef struct {
    int32_t T, S, n, P, arena;
    int32_t tensors, steps, patches, patch_words, quant;
} ep_stage;

/* Tensor record fields. */
enum { EP_T_H, EP_T_W, EP_T_C, EP_T_BITS0, EP_T_BITS1, EP_T_ZP0, EP_T_ZP1, EP_T_OFF, EP_T_SIZE };
/* Step record fields. */
enum {
    EP_S_KIND, EP_S_IN0, EP_S_IN1, EP_S_KH, EP_S_KW, EP_S_SH, EP_S_SW, EP_S_PH, EP_S_PW,
    EP_S_DH, EP_S_DW, EP_S_WBITS, EP_S_SLOT, EP_S_AMIN0, EP_S_AMAX0, EP_S_AMIN1, EP_S_AMAX1,
    EP_S_Q0, EP_S_Q1
};

/* Header checks and section offsets (no other check). */
edgeplus_status edgeplus__stage_layout(const int32_t *program, int32_t words, ep_stage *st);

EP_INLINE const int32_t *ep_st_tensor(const int32_t *p, const ep_stage *st, int32_t i)
{
    return p + st->tensors + i * EP_ST_TENSOR;
}

EP_INLINE const int32_t *ep_st_step(const int32_t *p, const ep_stage *st, int32_t k)
{
    return p + st->steps + k * EP_ST_STEP;
}

/* Patch record: [0] outlier flag, then 4 words (y, x, h, w) per tensor. */
EP_INLINE const int32_t *ep_st_patch(const int32_t *p, const ep_stage *st, int32_t q)
{
    return p + st->patches + q * st->patch_words;
}

/* A region record (y, x, h, w) as a window. */
EP_INLINE edgeplus_window ep_st_window(const int32_t *r)
{
    edgeplus_window w;
    w.y = r[0];
    w.x = r[1];
    w.h = r[2];
    w.w = r[3];
    return w;
}

/* The input window step k reads to produce `out` of its output; 0 if it reads nothing
 * (a region entirely in a pad's border). */
int edgeplus__stage_input_need(const int32_t *p, const ep_stage *st, int32_t k,
                               const edgeplus_window *out, edgeplus_window *need);

/* Fill the conv params of step k in variant v. */
void edgeplus__stage_conv_params(const int32_t *p, const ep_stage *st, int32_t k, int32_t v,
                                 edgeplus_conv_params *cp);

/* Logical dims of tensor i (n = 1) and, for a conv/depthwise step, of its filter. */
void edgeplus__stage_dims(const int32_t *p, const ep_stage *st, int32_t i, edgeplus_dims *d);
void edgeplus__stage_filter_dims(const int32_t *p, const ep_stage *st, int32_t k,
                                 edgeplus_dims *d);

/* The largest kernel scratch of any conv/depthwise step and variant (>= 0). */
int32_t edgeplus__stage_kernel_scratch(const int32_t *p, const ep_stage *st);

#endif /* EDGEPLUS_STAGE_INTERNAL_H */
