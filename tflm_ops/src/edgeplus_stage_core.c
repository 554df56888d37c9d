/* edgeplus_stage_core: shared internals of the patch-stage executor (layout, receptive
 * fields, parameters, kernel scratch). */
#include "edgeplus_stage_internal.h"

edgeplus_status edgeplus__stage_layout(const int32_t *p, int32_t words, ep_stage *st)
{
    int64_t need;
    EP_CHECK_NULL(p, "program");
    if (words < EP_ST_HEADER) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_DIMS, "words", -1, words, EP_ST_HEADER, INT32_MAX);
    }
    if (p[0] != EDGEPLUS_STAGE_MAGIC) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_ARG, "program[]", 0, p[0], EDGEPLUS_STAGE_MAGIC,
                             EDGEPLUS_STAGE_MAGIC);
    }
    if (p[1] != EDGEPLUS_STAGE_VERSION) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_ARG, "program[]", 1, p[1], EDGEPLUS_STAGE_VERSION,
                             EDGEPLUS_STAGE_VERSION);
    }
    st->T = p[2];
    st->S = p[3];
    st->n = p[4];
    st->arena = p[5];
    if (st->T < 2 || st->T > EDGEPLUS_STAGE_MAX_TENSORS) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_DIMS, "program[]", 2, st->T, 2,
                             EDGEPLUS_STAGE_MAX_TENSORS);
    }
    if (st->S != st->T - 1) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_DIMS, "program[]", 3, st->S, st->T - 1, st->T - 1);
    }
    if (st->n < 1 || st->n > EDGEPLUS_STAGE_MAX_GRID) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_DIMS, "program[]", 4, st->n, 1,
                             EDGEPLUS_STAGE_MAX_GRID);
    }
    if (st->arena < 0) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_DIMS, "program[]", 5, st->arena, 0, INT32_MAX);
    }
    if (p[6] != words) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_DIMS, "program[]", 6, p[6], words, words);
    }
    st->P = st->n * st->n;
    st->patch_words = 1 + 4 * st->T;
    st->tensors = EP_ST_HEADER;
    st->steps = st->tensors + st->T * EP_ST_TENSOR;
    st->patches = st->steps + st->S * EP_ST_STEP;
    need = (int64_t)st->patches + (int64_t)st->P * st->patch_words;
    if (need > words) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_DIMS, "words", -1, words, need, INT32_MAX);
    }
    st->quant = (int32_t)need;
    return EDGEPLUS_OK;
}

int edgeplus__stage_input_need(const int32_t *p, const ep_stage *st, int32_t k,
                               const edgeplus_window *out, edgeplus_window *need)
{
    const int32_t *s = ep_st_step(p, st, k);
    const int32_t *src = ep_st_tensor(p, st, s[EP_S_IN0]);
    if (s[EP_S_KIND] == EP_ST_KIND_ADD) {
        *need = *out;
        return 1;
    }
    if (s[EP_S_KIND] == EP_ST_KIND_PAD) {
        int32_t y0 = out->y - s[EP_S_PH], y1 = out->y + out->h - s[EP_S_PH];
        int32_t x0 = out->x - s[EP_S_PW], x1 = out->x + out->w - s[EP_S_PW];
        y0 = y0 < 0 ? 0 : y0;
        x0 = x0 < 0 ? 0 : x0;
        y1 = y1 > src[EP_T_H] ? src[EP_T_H] : y1;
        x1 = x1 > src[EP_T_W] ? src[EP_T_W] : x1;
        if (y1 <= y0 || x1 <= x0) {
            return 0;
        }
        need->y = y0;
        need->x = x0;
        need->h = y1 - y0;
        need->w = x1 - x0;
        return 1;
    }
    return ep_span(out->y, out->h, s[EP_S_SH], s[EP_S_PH], s[EP_S_KH], s[EP_S_DH],
                   src[EP_T_H], &need->y, &need->h) &&
           ep_span(out->x, out->w, s[EP_S_SW], s[EP_S_PW], s[EP_S_KW], s[EP_S_DW],
                   src[EP_T_W], &need->x, &need->w);
}

void edgeplus__stage_conv_params(const int32_t *p, const ep_stage *st, int32_t k, int32_t v,
                                 edgeplus_conv_params *cp)
{
    const int32_t *s = ep_st_step(p, st, k);
    const int32_t *in = ep_st_tensor(p, st, s[EP_S_IN0]);
    const int32_t *out = ep_st_tensor(p, st, k + 1);
    cp->stride_h = s[EP_S_SH];
    cp->stride_w = s[EP_S_SW];
    cp->pad_h = s[EP_S_PH];
    cp->pad_w = s[EP_S_PW];
    cp->dilation_h = s[EP_S_DH];
    cp->dilation_w = s[EP_S_DW];
    cp->input_zero_point = in[EP_T_ZP0 + v];
    cp->output_zero_point = out[EP_T_ZP0 + v];
    cp->act_min = s[EP_S_AMIN0 + 2 * v];
    cp->act_max = s[EP_S_AMAX0 + 2 * v];
    cp->in_bits = in[EP_T_BITS0 + v];
    cp->w_bits = s[EP_S_WBITS];
    cp->out_bits = out[EP_T_BITS0 + v];
    cp->bias_frac_bits = 0; /* a stage program's biases are TFLite's */
}

void edgeplus__stage_dims(const int32_t *p, const ep_stage *st, int32_t i, edgeplus_dims *d)
{
    const int32_t *t = ep_st_tensor(p, st, i);
    d->n = 1;
    d->h = t[EP_T_H];
    d->w = t[EP_T_W];
    d->c = t[EP_T_C];
}

void edgeplus__stage_filter_dims(const int32_t *p, const ep_stage *st, int32_t k,
                                 edgeplus_dims *d)
{
    const int32_t *s = ep_st_step(p, st, k);
    const int32_t cin = ep_st_tensor(p, st, s[EP_S_IN0])[EP_T_C];
    const int32_t cout = ep_st_tensor(p, st, k + 1)[EP_T_C];
    d->h = s[EP_S_KH];
    d->w = s[EP_S_KW];
    if (s[EP_S_KIND] == EP_ST_KIND_CONV) {
        d->n = cout;
        d->c = cin;
    } else {
        d->n = 1;
        d->c = cout;
    }
}

int32_t edgeplus__stage_kernel_scratch(const int32_t *p, const ep_stage *st)
{
    int32_t best = 0, k, v;
    for (k = 0; k < st->S; ++k) {
        const int32_t kind = ep_st_step(p, st, k)[EP_S_KIND];
        edgeplus_dims in, filt, out;
        if (kind != EP_ST_KIND_CONV && kind != EP_ST_KIND_DW) {
            continue;
        }
        edgeplus__stage_dims(p, st, ep_st_step(p, st, k)[EP_S_IN0], &in);
        edgeplus__stage_filter_dims(p, st, k, &filt);
        edgeplus__stage_dims(p, st, k + 1, &out);
        /* The conv kernels' minimum (the lean scratch of a 1x1 output): the stage exists to
         * save SRAM, so it takes the least scratch they accept; each step runs the lean
         * layout with as many pixels per block as the stage's largest minimum holds. */
        out.h = 1;
        out.w = 1;
        for (v = 0; v < 2; ++v) {
            edgeplus_conv_params cp;
            int32_t need;
            edgeplus__stage_conv_params(p, st, k, v, &cp);
            need = kind == EP_ST_KIND_CONV
                       ? edgeplus_conv2d_get_buffer_size_lean(&cp, &in, &filt, &out)
                       : edgeplus_depthwise_conv2d_get_buffer_size_lean(&cp, &in, &filt, &out);
            if (need < 0) {
                return need;
            }
            best = need > best ? need : best;
        }
    }
    return best;
}
