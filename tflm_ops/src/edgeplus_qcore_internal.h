/*
 * edgeplus_qcore_internal.h - helpers shared by the QCore step, refresh and their
 * _get_buffer_size companions (not public API). See edgeplus_ops.h ("QCore").
 */
#ifndef EDGEPLUS_QCORE_INTERNAL_H
#define EDGEPLUS_QCORE_INTERNAL_H

#include "edgeplus_internal.h"

/* Layer l has a flip network (is calibrated by the step). */
EP_INLINE int ep_qcore_calibrated(const edgeplus_qcore_head *head, int32_t l)
{
    return head->nets != NULL && head->nets[l] != NULL;
}

/* Scratch layout of edgeplus_qcore_step: byte offsets from the 4-byte aligned base
 * (see edgeplus_qcore_step_get_buffer_size in edgeplus_ops.h). */
typedef struct {
    int64_t ecol;  /* int32 [n] error column of one unit */
    int64_t elab;  /* int32 [n] the labels' output errors */
    int64_t tmp32; /* int32 [t] raw A or E sums */
    int64_t acc;   /* int32 [out][n] accumulators of the first calibrated layer */
    int64_t gbuf;  /* int32 G per weight of one calibrated layer, later the backup of
                    * the calibrated layers' packed bytes (the larger of the two) */
    int64_t acts;  /* int8 [n][sum of out_features] activations */
    int64_t codes; /* int8 flip level per calibrated weight */
    int64_t a8;    /* int8 [t] A feature */
    int64_t e8;    /* int8 [t] E feature */
    int64_t row;   /* int8 [r] one unpacked 4-bit weight row */
    int64_t total; /* bytes after the aligned base */
} ep_qcore_layout;

/* The step's checks of the head (layers, nets, margin, tries) and n, in a fixed order
 * (each refusal recorded for edgeplus_last_error). */
edgeplus_status edgeplus__qcore_check(const edgeplus_qcore_head *head, int32_t n);

/* The scratch layout of a checked head for n samples. */
void edgeplus__qcore_layout(const edgeplus_qcore_head *head, int32_t n, ep_qcore_layout *lay);

#endif /* EDGEPLUS_QCORE_INTERNAL_H */
