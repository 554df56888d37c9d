/* edgeplus_conv_common: the argument checks and call setup shared by the conv and depthwise
 * cores (internal, not public API). */
#include "edgeplus_internal.h"


/* Every dim >= 1 and n*h*w*c <= INT32_MAX; each partial product is bounded before the
 * next factor (four int32 factors can overflow even an int64 product). */
static int ep_dims_positive(const edgeplus_dims *d)
{
    int64_t count;
    if (d->n <= 0 || d->h <= 0 || d->w <= 0 || d->c <= 0) {
        return 0;
    }
    count = (int64_t)d->n * d->h; /* < 2^62 */
    if (count > INT32_MAX) {
        return 0;
    }
    count *= d->w;
    return count <= INT32_MAX && count * d->c <= INT32_MAX;
}

#define EP_DIMS_RULE "4 dims >= 1 whose product fits int32"
#define EP_CONV_BITS(f)                                                                  \
    do {                                                                                 \
        if (!ep_bits_ok(params->f)) {                                                    \
            return EP_FAIL(EDGEPLUS_ERR_BITS, "params->" #f, -1, params->f, "2, 4 or 8"); \
        }                                                                                \
    } while (0)
#define EP_CONV_MIN(f, lo)                                                                     \
    do {                                                                                       \
        if (params->f < (lo)) {                                                                \
            return EP_FAIL_RANGE(EDGEPLUS_ERR_ARG, "params->" #f, -1, params->f, lo, INT32_MAX); \
        }                                                                                      \
    } while (0)
#define EP_CONV_IN_BITS(f, bits)                                                            \
    do {                                                                                    \
        if (!ep_in_bits_range(params->f, (bits))) {                                         \
            return EP_FAIL_RANGE(EDGEPLUS_ERR_ARG, "params->" #f, -1, params->f, ep_qmin(bits), \
                                 ep_qmax(bits));                                            \
        }                                                                                   \
    } while (0)

edgeplus_status edgeplus__check_conv_args(const edgeplus_conv_params *params,
                                          const edgeplus_dims *input_dims,
                                          const edgeplus_dims *filter_dims,
                                          const edgeplus_dims *output_dims, int depthwise)
{
    int32_t dh, dw;
    int64_t ekh, ekw, kc;
    EP_CHECK_NULL(params, "params");
    EP_CHECK_NULL(input_dims, "input_dims");
    EP_CHECK_NULL(filter_dims, "filter_dims");
    EP_CHECK_NULL(output_dims, "output_dims");
    EP_CONV_BITS(in_bits);
    EP_CONV_BITS(w_bits);
    EP_CONV_BITS(out_bits);
    if (!ep_dims_positive(input_dims)) {
        return EP_FAIL(EDGEPLUS_ERR_DIMS, "input_dims", -1, 0, EP_DIMS_RULE);
    }
    if (!ep_dims_positive(filter_dims)) {
        return EP_FAIL(EDGEPLUS_ERR_DIMS, "filter_dims", -1, 0, EP_DIMS_RULE);
    }
    if (!ep_dims_positive(output_dims)) {
        return EP_FAIL(EDGEPLUS_ERR_DIMS, "output_dims", -1, 0, EP_DIMS_RULE);
    }
    EP_CONV_MIN(stride_h, 1);
    EP_CONV_MIN(stride_w, 1);
    EP_CONV_MIN(pad_h, 0);
    EP_CONV_MIN(pad_w, 0);
    EP_CONV_MIN(dilation_h, 0);
    EP_CONV_MIN(dilation_w, 0);
    EP_CONV_IN_BITS(input_zero_point, params->in_bits);
    EP_CONV_IN_BITS(output_zero_point, params->out_bits);
    EP_CONV_IN_BITS(act_min, params->out_bits);
    EP_CONV_IN_BITS(act_max, params->out_bits);
    if (params->act_min > params->act_max) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_ARG, "params->act_min", -1, params->act_min,
                             ep_qmin(params->out_bits), params->act_max);
    }
    if (output_dims->n != input_dims->n) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_DIMS, "output_dims", -1, output_dims->n, input_dims->n,
                             input_dims->n);
    }
    if (depthwise) {
        if (filter_dims->n != 1 || filter_dims->c != input_dims->c ||
            output_dims->c != input_dims->c) {
            return EP_FAIL(EDGEPLUS_ERR_DIMS, "filter_dims", -1, filter_dims->c,
                           "1HWO with O == input channels == output channels");
        }
        kc = (int64_t)filter_dims->h * filter_dims->w;
    } else {
        if (filter_dims->c != input_dims->c || filter_dims->n != output_dims->c) {
            return EP_FAIL(EDGEPLUS_ERR_DIMS, "filter_dims", -1, filter_dims->c,
                           "OHWI with I == input channels and O == output channels");
        }
        kc = (int64_t)filter_dims->h * filter_dims->w * filter_dims->c;
    }
    if (params->bias_frac_bits < 0 || params->bias_frac_bits > EDGEPLUS_MAX_BIAS_FRAC_BITS) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_ARG, "params->bias_frac_bits", -1,
                             params->bias_frac_bits, 0, EDGEPLUS_MAX_BIAS_FRAC_BITS);
    }
    /* acc * 2^bias_frac_bits fits int32 too */
    if (kc > (EDGEPLUS_MAX_KC(params->in_bits, params->w_bits) >> params->bias_frac_bits)) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_DIMS, "filter_dims", -1, kc, 1,
                             EDGEPLUS_MAX_KC(params->in_bits, params->w_bits) >>
                                 params->bias_frac_bits);
    }
    /* im2col columns must fit int32 sizes (with the x3 of the minimum scratch). */
    if ((int64_t)filter_dims->h * filter_dims->w * input_dims->c > (INT32_MAX / 8)) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_DIMS, "filter_dims", -1,
                             (int64_t)filter_dims->h * filter_dims->w * input_dims->c, 1,
                             INT32_MAX / 8);
    }
    dh = params->dilation_h > 0 ? params->dilation_h : 1;
    dw = params->dilation_w > 0 ? params->dilation_w : 1;
    ekh = (int64_t)(filter_dims->h - 1) * dh + 1;
    ekw = (int64_t)(filter_dims->w - 1) * dw + 1;
    if (params->pad_h >= ekh) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_ARG, "params->pad_h", -1, params->pad_h, 0, ekh - 1);
    }
    if (params->pad_w >= ekw) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_ARG, "params->pad_w", -1, params->pad_w, 0, ekw - 1);
    }
    /* Every output position must read at least one input row/col (TFLite's
     * SAME and VALID always satisfy this). */
    if ((int64_t)(output_dims->h - 1) * params->stride_h - params->pad_h > input_dims->h - 1 ||
        (int64_t)(output_dims->w - 1) * params->stride_w - params->pad_w > input_dims->w - 1) {
        return EP_FAIL(EDGEPLUS_ERR_DIMS, "output_dims", -1, 0,
                       "every output row/col must read an input row/col");
    }
    return EDGEPLUS_OK;
}

/* The per-channel requantization table (ep_rq, see edgeplus_internal.h) of the requantization
 * input acc * 2^frac + bias. */
void edgeplus__rq_prepare(ep_rq *rq, const edgeplus_quant_params *quant, const int32_t *bias,
                          int32_t channels, int64_t acc_bound, int32_t frac)
{
    int32_t ch;
    for (ch = 0; ch < channels; ch++) {
        const int32_t shift = quant->shift[ch];
        const int32_t b = bias != NULL ? bias[ch] : 0;
        const int32_t left = shift > 0 ? shift : 0;
        const int32_t right = shift > 0 ? 0 : -shift;
        const int64_t bound = (acc_bound << frac) + (b < 0 ? -(int64_t)b : (int64_t)b);
        rq[ch].mult = quant->multiplier[ch];
        if (bound < ((int64_t)1 << (30 - left))) {
            /* (acc * 2^frac + b) << (left + 1), |b| << (left + 1) < 2^31 */
            rq[ch].bias = (int32_t)((uint32_t)b << (left + 1));
            rq[ch].lshift = (int16_t)(frac + left + 1);
            rq[ch].rshift = (int16_t)right;
            rq[ch].round = right > 0 ? (int32_t)(1u << (right - 1)) : 0;
        } else {
            rq[ch].bias = b;
            rq[ch].lshift = -1;
            rq[ch].rshift = (int16_t)frac;
            rq[ch].round = shift;
        }
    }
}

static int ep_window_inside(const edgeplus_window *w, int32_t h, int32_t wd)
{
    return w->h > 0 && w->w > 0 && w->y >= 0 && w->x >= 0 && (int64_t)w->y + w->h <= h &&
           (int64_t)w->x + w->w <= wd;
}

static int ep_window_contains(const edgeplus_window *outer, const edgeplus_window *inner)
{
    return inner->y >= outer->y && inner->x >= outer->x &&
           (int64_t)inner->y + inner->h <= (int64_t)outer->y + outer->h &&
           (int64_t)inner->x + inner->w <= (int64_t)outer->x + outer->w;
}

edgeplus_status edgeplus__conv_setup(const ep_conv_args *a, int depthwise, ep_conv_setup *s)
{
    edgeplus_status st;
    edgeplus_window in_reg, out_reg, need;
    ep_im2col *g = &s->g;
    ep_out *o = &s->o;
    int32_t ch;
    uintptr_t base, aligned;

    EP_CHECK_NULL(a->ctx, "ctx");
    EP_CHECK_NULL(a->params, "params");
    EP_CHECK_NULL(a->quant, "quant");
    EP_CHECK_NULL(a->input_dims, "input_dims");
    EP_CHECK_NULL(a->input, "input");
    EP_CHECK_NULL(a->filter_dims, "filter_dims");
    EP_CHECK_NULL(a->filter, "filter");
    EP_CHECK_NULL(a->output_dims, "output_dims");
    EP_CHECK_NULL(a->output, "output");
    EP_CHECK_NULL(a->window, "window");
    EP_CHECK_NULL(a->quant->multiplier, "quant->multiplier");
    EP_CHECK_NULL(a->quant->shift, "quant->shift");
    st = edgeplus__check_conv_args(a->params, a->input_dims, a->filter_dims, a->output_dims,
                                   depthwise);
    if (st != EDGEPLUS_OK) {
        return st;
    }
    for (ch = 0; ch < a->output_dims->c; ch++) {
        if (a->quant->multiplier[ch] < 0) {
            return EP_FAIL_RANGE(EDGEPLUS_ERR_ARG, "quant->multiplier[]", ch,
                                 a->quant->multiplier[ch], 0, INT32_MAX);
        }
        if (a->quant->shift[ch] > 30 || a->quant->shift[ch] < -31) {
            return EP_FAIL_RANGE(EDGEPLUS_ERR_ARG, "quant->shift[]", ch, a->quant->shift[ch], -31,
                                 30);
        }
    }

    /* regions */
    if (a->input_region != NULL) {
        in_reg = *a->input_region;
        if (!ep_window_inside(&in_reg, a->input_dims->h, a->input_dims->w)) {
            return EP_FAIL(EDGEPLUS_ERR_WINDOW, "input_region", -1, 0, "inside the input");
        }
    } else {
        in_reg.y = 0;
        in_reg.x = 0;
        in_reg.h = a->input_dims->h;
        in_reg.w = a->input_dims->w;
    }
    if (a->output_region != NULL) {
        out_reg = *a->output_region;
        if (!ep_window_inside(&out_reg, a->output_dims->h, a->output_dims->w)) {
            return EP_FAIL(EDGEPLUS_ERR_WINDOW, "output_region", -1, 0, "inside the output");
        }
    } else {
        out_reg.y = 0;
        out_reg.x = 0;
        out_reg.h = a->output_dims->h;
        out_reg.w = a->output_dims->w;
    }
    if (!ep_window_inside(a->window, a->output_dims->h, a->output_dims->w)) {
        return EP_FAIL(EDGEPLUS_ERR_WINDOW, "window", -1, 0, "inside the output");
    }
    if (!ep_window_contains(&out_reg, a->window)) {
        return EP_FAIL(EDGEPLUS_ERR_WINDOW, "window", -1, 0, "inside output_region");
    }
    st = edgeplus_conv_input_region(a->params, a->input_dims, a->filter_dims, a->window, &need);
    if (st != EDGEPLUS_OK) {
        return st;
    }
    if (!ep_window_contains(&in_reg, &need)) {
        return EP_FAIL(EDGEPLUS_ERR_WINDOW, "input_region", -1, 0,
                       "holding the input rows/cols the window reads");
    }

    /* im2col geometry */
    g->input = a->input;
    g->in_h = a->input_dims->h;
    g->in_w = a->input_dims->w;
    g->in_c = a->input_dims->c;
    g->in_bits = a->params->in_bits;
    g->in_zp = a->params->input_zero_point;
    g->ry = in_reg.y;
    g->rx = in_reg.x;
    g->rh = in_reg.h;
    g->rw = in_reg.w;
    g->kh = a->filter_dims->h;
    g->kw = a->filter_dims->w;
    g->sh = a->params->stride_h;
    g->sw = a->params->stride_w;
    g->ph = a->params->pad_h;
    g->pw = a->params->pad_w;
    g->dh = a->params->dilation_h > 0 ? a->params->dilation_h : 1;
    g->dw = a->params->dilation_w > 0 ? a->params->dilation_w : 1;
    g->kc = g->kh * g->kw * g->in_c;
    g->kpad = ep_kpad(a->input_dims, a->filter_dims);
    g->lanes = 0; /* paired 2-bit lanes: the conv core sets them */

    o->output = a->output;
    o->oc = a->output_dims->c;
    o->bits = a->params->out_bits;
    o->zp = a->params->output_zero_point;
    o->act_min = a->params->act_min;
    o->act_max = a->params->act_max;
    o->ry = out_reg.y;
    o->rx = out_reg.x;
    o->rh = out_reg.h;
    o->rw = out_reg.w;
    o->mult = a->quant->multiplier;
    o->shift = a->quant->shift;
    o->bias = a->bias;
    o->frac = a->params->bias_frac_bits;

    /* scratch: 4-byte aligned; each core lays out its own (requantization table, staging,
     * int16 columns: see edgeplus__conv_scratch_bytes and edgeplus__dw_geom) */
    if (a->ctx->buf == NULL) {
        return EP_FAIL(EDGEPLUS_ERR_SCRATCH, "ctx->buf", -1, 0, "must not be NULL");
    }
    if (a->ctx->size < 0) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_SCRATCH, "ctx->size", -1, a->ctx->size, 0,
                             INT32_MAX);
    }
    base = (uintptr_t)a->ctx->buf;
    aligned = (base + 3u) & ~(uintptr_t)3u;
    s->avail = (int64_t)a->ctx->size - (int64_t)(aligned - base);
    s->mem = (uint8_t *)aligned;
    s->acc_bound = (depthwise ? (int64_t)g->kh * g->kw : (int64_t)g->kc) *
                   ((1 << a->params->in_bits) - 1) * (1 << (a->params->w_bits - 1));
    return EDGEPLUS_OK;
}
