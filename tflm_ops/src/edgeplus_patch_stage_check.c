/* edgeplus_patch_stage_check: validate a stage program (every rule the executor's memory
 * safety and the kernels depend on). */
#include "edgeplus_stage_internal.h"

/* A refusal of the program: which rule of the spec (tfmot_edgeplus/core/program.py) broke. */
#define EP_FAIL_STAGE(st, rule) EP_FAIL((st), "program", -1, 0, (rule))

#define EP_ST_MAX_ELEMS (1 << 27) /* packed element indices stay in int32 */

/* 1 <= h, w, c and h * w * c <= EP_ST_MAX_ELEMS. Each factor is bounded before it is
 * multiplied (three int32 factors can overflow even an int64 product). */
static int ep_elems_ok(const int32_t *t)
{
    return ep_in_range(t[EP_T_H], 1, EP_ST_MAX_ELEMS) &&
           ep_in_range(t[EP_T_W], 1, EP_ST_MAX_ELEMS) &&
           ep_in_range(t[EP_T_C], 1, EP_ST_MAX_ELEMS) &&
           (int64_t)t[EP_T_H] * t[EP_T_W] <= EP_ST_MAX_ELEMS &&
           (int64_t)t[EP_T_H] * t[EP_T_W] * t[EP_T_C] <= EP_ST_MAX_ELEMS;
}

static edgeplus_status ep_check_tensors(const int32_t *p, const ep_stage *st)
{
    int32_t i, v;
    for (i = 0; i < st->T; ++i) {
        const int32_t *t = ep_st_tensor(p, st, i);
        const int end = i == 0 || i == st->T - 1;
        if (!ep_elems_ok(t)) {
            return EP_FAIL_STAGE(EDGEPLUS_ERR_DIMS, "a tensor record");
        }
        for (v = 0; v < 2; ++v) {
            const int32_t bits = t[EP_T_BITS0 + v];
            if (bits != 2 && bits != 4 && bits != 8) {
                return EP_FAIL_STAGE(EDGEPLUS_ERR_BITS, "a tensor record");
            }
            if (!ep_in_range(t[EP_T_ZP0 + v], -(1 << (bits - 1)), (1 << (bits - 1)) - 1)) {
                return EP_FAIL_STAGE(EDGEPLUS_ERR_ARG, "a tensor record");
            }
        }
        if (end) {
            if (t[EP_T_BITS0] != 8 || t[EP_T_BITS1] != 8 || t[EP_T_ZP0] != t[EP_T_ZP1] ||
                t[EP_T_OFF] != -1 || t[EP_T_SIZE] != 0) {
                return EP_FAIL_STAGE(EDGEPLUS_ERR_ARG, "a tensor record");
            }
        } else if (t[EP_T_OFF] < 0 || t[EP_T_SIZE] < 0 ||
                   (int64_t)t[EP_T_OFF] + t[EP_T_SIZE] > st->arena) {
            return EP_FAIL_STAGE(EDGEPLUS_ERR_WINDOW, "a tensor record");
        }
    }
    return EDGEPLUS_OK;
}

static edgeplus_status ep_check_quant(const int32_t *p, int32_t words, const ep_stage *st,
                                      int32_t off, int32_t kind, int32_t c)
{
    int32_t j;
    const int64_t size = kind == EP_ST_KIND_ADD ? EP_ST_ADD_WORDS : 3 * (int64_t)c;
    if (off < st->quant || (int64_t)off + size > words) {
        return EP_FAIL_STAGE(EDGEPLUS_ERR_DIMS, "a requantization block");
    }
    if (kind == EP_ST_KIND_ADD) {
        if (!ep_in_range(p[off], 0, 22)) {
            return EP_FAIL_STAGE(EDGEPLUS_ERR_ARG, "a requantization block");
        }
        for (j = 0; j < 3; ++j) {
            if (p[off + 1 + 2 * j] < 0 || !ep_in_range(p[off + 2 + 2 * j], -31, 30)) {
                return EP_FAIL_STAGE(EDGEPLUS_ERR_ARG, "a requantization block");
            }
        }
        return EDGEPLUS_OK;
    }
    for (j = 0; j < c; ++j) {
        if (p[off + j] < 0 || !ep_in_range(p[off + c + j], -31, 30)) {
            return EP_FAIL_STAGE(EDGEPLUS_ERR_ARG, "a requantization block");
        }
    }
    return EDGEPLUS_OK;
}

static edgeplus_status ep_check_step(const int32_t *p, int32_t words, const ep_stage *st,
                                     int32_t k, int32_t *slots)
{
    const int32_t *s = ep_st_step(p, st, k);
    const int32_t kind = s[EP_S_KIND];
    const int32_t *out, *in;
    int32_t v, f;
    edgeplus_status rc;
    if (!ep_in_range(kind, EP_ST_KIND_CONV, EP_ST_KIND_ADD)) {
        return EP_FAIL_STAGE(EDGEPLUS_ERR_ARG, "a step record");
    }
    if (!ep_in_range(s[EP_S_IN0], 0, k) ||
        (kind == EP_ST_KIND_ADD ? !ep_in_range(s[EP_S_IN1], 0, k) : s[EP_S_IN1] != -1)) {
        return EP_FAIL_STAGE(EDGEPLUS_ERR_DIMS, "a step record");
    }
    for (f = EP_S_KH; f <= EP_S_DW; ++f) {
        const int pad = f == EP_S_PH || f == EP_S_PW;
        if (!ep_in_range(s[f], pad ? 0 : 1, EP_ST_MAX_PAD)) {
            return EP_FAIL_STAGE(EDGEPLUS_ERR_ARG, "a step record");
        }
    }
    out = ep_st_tensor(p, st, k + 1);
    in = ep_st_tensor(p, st, s[EP_S_IN0]);
    for (v = 0; kind != EP_ST_KIND_PAD && v < 2; ++v) { /* a pad has no clamp */
        const int32_t bits = out[EP_T_BITS0 + v];
        const int32_t lo = -(1 << (bits - 1)), hi = (1 << (bits - 1)) - 1;
        const int32_t a = s[EP_S_AMIN0 + 2 * v], b = s[EP_S_AMAX0 + 2 * v];
        if (!ep_in_range(a, lo, hi) || !ep_in_range(b, a, hi)) {
            return EP_FAIL_STAGE(EDGEPLUS_ERR_ARG, "a step record");
        }
    }
    if (kind == EP_ST_KIND_CONV || kind == EP_ST_KIND_DW) {
        const int32_t w = s[EP_S_WBITS];
        if (w != 2 && w != 4 && w != 8) {
            return EP_FAIL_STAGE(EDGEPLUS_ERR_BITS, "a step record");
        }
        if (s[EP_S_SLOT] != (*slots)++) {
            return EP_FAIL_STAGE(EDGEPLUS_ERR_ARG, "a step record");
        }
        for (v = 0; v < 2; ++v) {
            edgeplus_conv_params cp;
            edgeplus_dims di, df, dout;
            rc = ep_check_quant(p, words, st, s[EP_S_Q0 + v], kind, out[EP_T_C]);
            if (rc != EDGEPLUS_OK) {
                return rc;
            }
            edgeplus__stage_conv_params(p, st, k, v, &cp);
            edgeplus__stage_dims(p, st, s[EP_S_IN0], &di);
            edgeplus__stage_filter_dims(p, st, k, &df);
            edgeplus__stage_dims(p, st, k + 1, &dout);
            if ((int64_t)(dout.h - 1) * cp.stride_h - cp.pad_h > di.h - 1 ||
                (int64_t)(dout.w - 1) * cp.stride_w - cp.pad_w > di.w - 1) {
                return EP_FAIL_STAGE(EDGEPLUS_ERR_DIMS, "a step record");
            }
            /* the kernel's argument checks (its scratch size is edgeplus__stage_kernel_scratch's:
             * edgeplus_patch_stage_get_buffer_size refuses a program whose scratch passes
             * INT32_MAX, this check only the spec's rules, exactly as program.py) */
            rc = edgeplus__check_conv_args(&cp, &di, &df, &dout, kind == EP_ST_KIND_DW);
            if (rc != EDGEPLUS_OK) {
                return rc;
            }
        }
        return EDGEPLUS_OK;
    }
    /* pad and add: kernel, stride, dilation 1 (add: pads 0), no weights */
    if (s[EP_S_WBITS] != 8 || s[EP_S_SLOT] != -1 || s[EP_S_KH] != 1 || s[EP_S_KW] != 1 ||
        s[EP_S_SH] != 1 || s[EP_S_SW] != 1 || s[EP_S_DH] != 1 || s[EP_S_DW] != 1 ||
        (kind == EP_ST_KIND_ADD && (s[EP_S_PH] != 0 || s[EP_S_PW] != 0))) {
        return EP_FAIL_STAGE(EDGEPLUS_ERR_ARG, "a step record");
    }
    if (kind == EP_ST_KIND_PAD) {
        if (s[EP_S_Q0] != -1 || s[EP_S_Q1] != -1) {
            return EP_FAIL_STAGE(EDGEPLUS_ERR_ARG, "a step record");
        }
        if (out[EP_T_C] != in[EP_T_C] || (int64_t)out[EP_T_H] < (int64_t)in[EP_T_H] + s[EP_S_PH] ||
            (int64_t)out[EP_T_W] < (int64_t)in[EP_T_W] + s[EP_S_PW]) {
            return EP_FAIL_STAGE(EDGEPLUS_ERR_DIMS, "a step record");
        }
        for (v = 0; v < 2; ++v) {
            if (out[EP_T_BITS0 + v] != in[EP_T_BITS0 + v] || out[EP_T_ZP0 + v] != in[EP_T_ZP0 + v]) {
                return EP_FAIL_STAGE(EDGEPLUS_ERR_ARG, "a step record");
            }
        }
        return EDGEPLUS_OK;
    }
    {
        const int32_t *in1 = ep_st_tensor(p, st, s[EP_S_IN1]);
        for (f = EP_T_H; f <= EP_T_C; ++f) {
            if (in[f] != out[f] || in1[f] != out[f]) {
                return EP_FAIL_STAGE(EDGEPLUS_ERR_DIMS, "a step record");
            }
        }
    }
    for (v = 0; v < 2; ++v) {
        rc = ep_check_quant(p, words, st, s[EP_S_Q0 + v], kind, 0);
        if (rc != EDGEPLUS_OK) {
            return rc;
        }
    }
    return EDGEPLUS_OK;
}

/* Buffers of two tensors alive at the same step must not share bytes (else a step would
 * overwrite what a later one reads, and a conv's result would depend on its pixel blocks,
 * i.e. on the scratch given). Tensor i (0 < i < T-1) is alive from step i-1, which writes
 * it, to the last step reading it (step i-1 if none does); empty buffers share nothing.
 * The first pair (i < j, in order) breaking it is reported. */
static edgeplus_status ep_check_overlap(const int32_t *p, const ep_stage *st)
{
    uint8_t last[EDGEPLUS_STAGE_MAX_TENSORS]; /* last step tensor i is alive at (<= 254) */
    int32_t i, j, k;
    for (i = 1; i < st->T; ++i) {
        last[i] = (uint8_t)(i - 1);
    }
    for (k = 0; k < st->S; ++k) { /* steps in order: the last reader wins */
        const int32_t *s = ep_st_step(p, st, k);
        last[s[EP_S_IN0]] = (uint8_t)k;
        if (s[EP_S_KIND] == EP_ST_KIND_ADD) {
            last[s[EP_S_IN1]] = (uint8_t)k;
        }
    }
    for (i = 1; i < st->T - 1; ++i) {
        const int32_t *a = ep_st_tensor(p, st, i);
        for (j = i + 1; j < st->T - 1 && j - 1 <= last[i]; ++j) {
            const int32_t *b = ep_st_tensor(p, st, j);
            /* offset + size <= arena <= INT32_MAX (ep_check_tensors) */
            if (a[EP_T_SIZE] > 0 && b[EP_T_SIZE] > 0 && a[EP_T_OFF] < b[EP_T_OFF] + b[EP_T_SIZE] &&
                b[EP_T_OFF] < a[EP_T_OFF] + a[EP_T_SIZE]) {
                return EP_FAIL_STAGE(EDGEPLUS_ERR_OVERLAP,
                                     "buffers of tensors alive at one step must not overlap");
            }
        }
    }
    return EDGEPLUS_OK;
}

static int ep_contains(const int32_t *outer, const edgeplus_window *in)
{
    return outer[2] > 0 && in->y >= outer[0] && in->x >= outer[1] &&
           in->y + in->h <= outer[0] + outer[2] && in->x + in->w <= outer[1] + outer[3];
}

static edgeplus_status ep_check_patch(const int32_t *p, const ep_stage *st, int32_t q)
{
    const int32_t *rec = ep_st_patch(p, st, q);
    int32_t i, k;
    int32_t v = rec[0];
    if (v != 0 && v != 1) {
        return EP_FAIL_STAGE(EDGEPLUS_ERR_ARG, "a patch record");
    }
    for (i = 0; i < st->T; ++i) {
        const int32_t *r = rec + 1 + 4 * i;
        const int32_t *t = ep_st_tensor(p, st, i);
        if (r[2] == 0 && r[3] == 0) {
            continue;
        }
        if (r[2] < 1 || r[3] < 1 || r[0] < 0 || r[1] < 0 || r[0] > t[EP_T_H] - r[2] ||
            r[1] > t[EP_T_W] - r[3]) {
            return EP_FAIL_STAGE(EDGEPLUS_ERR_WINDOW, "a patch record");
        }
        if (i > 0 && i < st->T - 1 &&
            edgeplus_packed_bytes(r[2] * r[3] * t[EP_T_C], t[EP_T_BITS0 + v]) > t[EP_T_SIZE]) {
            return EP_FAIL_STAGE(EDGEPLUS_ERR_WINDOW, "a patch record");
        }
    }
    for (k = 0; k < st->S; ++k) {
        const int32_t *s = ep_st_step(p, st, k);
        const edgeplus_window out = ep_st_window(rec + 1 + 4 * (k + 1));
        edgeplus_window need;
        if (out.h == 0) {
            continue;
        }
        if (!edgeplus__stage_input_need(p, st, k, &out, &need)) {
            continue;
        }
        if (!ep_contains(rec + 1 + 4 * s[EP_S_IN0], &need) ||
            (s[EP_S_KIND] == EP_ST_KIND_ADD && !ep_contains(rec + 1 + 4 * s[EP_S_IN1], &need))) {
            return EP_FAIL_STAGE(EDGEPLUS_ERR_WINDOW, "a patch record");
        }
    }
    return EDGEPLUS_OK;
}

/* The output window (y, x, h, w) of patch q. */
static const int32_t *ep_out_window(const int32_t *p, const ep_stage *st, int32_t q)
{
    return ep_st_patch(p, st, q) + 1 + 4 * (st->T - 1);
}

/* The patches' windows of the output tile it as the n x n grid, row-major: patch (r, c) has
 * the rows of patch (r, 0) and the columns of patch (0, c), both non-empty; the row bands
 * follow each other from row 0 to the output's height, the column bands from column 0 to
 * its width. So every output element is written, by exactly one patch. The first patch
 * breaking it is reported (the regions are inside the output: ep_check_patch). */
static edgeplus_status ep_check_coverage(const int32_t *p, const ep_stage *st)
{
    const int32_t *t = ep_st_tensor(p, st, st->T - 1);
    const int32_t *end = ep_out_window(p, st, st->P - 1);
    int32_t q;
    for (q = 0; q < st->P; ++q) {
        const int32_t r = q / st->n, c = q % st->n;
        const int32_t *w = ep_out_window(p, st, q);
        const int32_t *above = ep_out_window(p, st, (r > 0 ? r - 1 : 0) * st->n);
        const int32_t *left = ep_out_window(p, st, c > 0 ? c - 1 : 0);
        const int32_t y = r > 0 ? above[0] + above[2] : 0, x = c > 0 ? left[1] + left[3] : 0;
        if (w[2] < 1 || w[3] < 1 || w[0] != y || w[1] != x ||
            w[2] != ep_out_window(p, st, r * st->n)[2] || w[3] != ep_out_window(p, st, c)[3]) {
            return EP_FAIL_STAGE(EDGEPLUS_ERR_COVERAGE, "the patches must tile the output");
        }
    }
    if (end[0] + end[2] != t[EP_T_H] || end[1] + end[3] != t[EP_T_W]) {
        return EP_FAIL_STAGE(EDGEPLUS_ERR_COVERAGE, "the patches must tile the output");
    }
    return EDGEPLUS_OK;
}

edgeplus_status edgeplus_patch_stage_check(const int32_t *program, int32_t words)
{
    ep_stage st;
    int32_t k, q, slots = 0;
    edgeplus_status rc = edgeplus__stage_layout(program, words, &st);
    if (rc != EDGEPLUS_OK) {
        return rc;
    }
    rc = ep_check_tensors(program, &st);
    for (k = 0; rc == EDGEPLUS_OK && k < st.S; ++k) {
        rc = ep_check_step(program, words, &st, k, &slots);
    }
    if (rc == EDGEPLUS_OK) {
        rc = ep_check_overlap(program, &st);
    }
    for (q = 0; rc == EDGEPLUS_OK && q < st.P; ++q) {
        rc = ep_check_patch(program, &st, q);
    }
    return rc == EDGEPLUS_OK ? ep_check_coverage(program, &st) : rc;
}
