/* edgeplus_qcore_core: argument checks and scratch layout of the QCore step (internal). */
#include "edgeplus_qcore_internal.h"

#define EP_I8_FIELD(st, name, index, v)                                                  \
    do {                                                                                 \
        if (!ep_in_range((v), -128, 127)) {                                              \
            return EP_FAIL_RANGE((st), "head->layers[]." name, (index), (v), -128, 127); \
        }                                                                                \
    } while (0)

static edgeplus_status ep_check_layer(const edgeplus_qcore_head *head, int32_t l)
{
    const edgeplus_fc_layer *ly = &head->layers[l];
    int32_t o;
    if (ly->weights == NULL || ly->multiplier == NULL || ly->shift == NULL) {
        return EP_FAIL(EDGEPLUS_ERR_NULL,
                       ly->weights == NULL      ? "head->layers[].weights"
                       : ly->multiplier == NULL ? "head->layers[].multiplier"
                                                : "head->layers[].shift",
                       l, 0, "must not be NULL");
    }
    if (ly->w_bits != 4 && ly->w_bits != 8) {
        return EP_FAIL(EDGEPLUS_ERR_BITS, "head->layers[].w_bits", l, ly->w_bits, "4 or 8");
    }
    const int32_t max_out = INT32_MAX / (ly->in_features > 0 ? ly->in_features : 1);
    if (ly->out_features < 1 || ly->out_features > max_out) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_DIMS, "head->layers[].out_features", l,
                             ly->out_features, 1, max_out);
    }
    if (ly->in_features < 1 || ly->in_features > EDGEPLUS_MAX_KC(8, ly->w_bits)) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_DIMS, "head->layers[].in_features", l,
                             ly->in_features, 1, EDGEPLUS_MAX_KC(8, ly->w_bits));
    }
    if (l > 0 && ly->in_features != head->layers[l - 1].out_features) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_DIMS, "head->layers[].in_features", l,
                             ly->in_features, head->layers[l - 1].out_features,
                             head->layers[l - 1].out_features);
    }
    EP_I8_FIELD(EDGEPLUS_ERR_ARG, "input_zero_point", l, ly->input_zero_point);
    EP_I8_FIELD(EDGEPLUS_ERR_ARG, "output_zero_point", l, ly->output_zero_point);
    EP_I8_FIELD(EDGEPLUS_ERR_ARG, "act_min", l, ly->act_min);
    EP_I8_FIELD(EDGEPLUS_ERR_ARG, "act_max", l, ly->act_max);
    if (ly->act_min > ly->act_max) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_ARG, "head->layers[].act_min", l, ly->act_min, -128,
                             ly->act_max);
    }
    for (o = 0; o < ly->out_features; o++) {
        if (ly->multiplier[o] < 0) {
            return EP_FAIL_RANGE(EDGEPLUS_ERR_ARG, "head->layers[].multiplier", l,
                                 ly->multiplier[o], 0, INT32_MAX);
        }
        if (ly->shift[o] < -31 || ly->shift[o] > 30) {
            return EP_FAIL_RANGE(EDGEPLUS_ERR_ARG, "head->layers[].shift", l, ly->shift[o], -31,
                                 30);
        }
    }
    return EDGEPLUS_OK;
}

static edgeplus_status ep_check_net(const edgeplus_flipnet *net, int32_t l)
{
    int32_t h;
    (void)l; /* only recorded (unused with EDGEPLUS_ERROR_DETAIL=0) */
    if (net->w1 == NULL || net->b1 == NULL || net->w2 == NULL) {
        return EP_FAIL(EDGEPLUS_ERR_NULL,
                       net->w1 == NULL   ? "head->nets[]->w1"
                       : net->b1 == NULL ? "head->nets[]->b1"
                                         : "head->nets[]->w2",
                       l, 0, "must not be NULL");
    }
    if (net->hidden < 1 || net->hidden > EDGEPLUS_QCORE_MAX_HIDDEN) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_DIMS, "head->nets[]->hidden", l, net->hidden, 1,
                             EDGEPLUS_QCORE_MAX_HIDDEN);
    }
    for (h = 0; h < net->hidden; h++) {
        if (net->b1[h] < -(1 << 30) || net->b1[h] > (1 << 30)) {
            return EP_FAIL_RANGE(EDGEPLUS_ERR_ARG, "head->nets[]->b1", l, net->b1[h],
                                 -(1 << 30), 1 << 30);
        }
    }
    if (net->m1 < 0) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_ARG, "head->nets[]->m1", l, net->m1, 0, INT32_MAX);
    }
    if (net->s1 < -31 || net->s1 > 30) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_ARG, "head->nets[]->s1", l, net->s1, -31, 30);
    }
    if (net->b2 < -(1 << 30) || net->b2 > (1 << 30)) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_ARG, "head->nets[]->b2", l, net->b2, -(1 << 30),
                             1 << 30);
    }
    if (net->threshold < 1 || net->threshold > (1 << 30)) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_ARG, "head->nets[]->threshold", l, net->threshold, 1,
                             1 << 30);
    }
    return EDGEPLUS_OK;
}

edgeplus_status edgeplus__qcore_check(const edgeplus_qcore_head *head, int32_t n)
{
    edgeplus_status st;
    int32_t l, classes;
    EP_CHECK_NULL(head, "head");
    EP_CHECK_NULL(head->layers, "head->layers");
    if (head->num_layers < 1 || head->num_layers > EDGEPLUS_QCORE_MAX_LAYERS) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_DIMS, "head->num_layers", -1, head->num_layers, 1,
                             EDGEPLUS_QCORE_MAX_LAYERS);
    }
    if (head->margin < 1 || head->margin > EDGEPLUS_QCORE_MAX_MARGIN) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_ARG, "head->margin", -1, head->margin, 1,
                             EDGEPLUS_QCORE_MAX_MARGIN);
    }
    if (head->tries < 1 || head->tries > EDGEPLUS_QCORE_MAX_TRIES) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_ARG, "head->tries", -1, head->tries, 1,
                             EDGEPLUS_QCORE_MAX_TRIES);
    }
    for (l = 0; l < head->num_layers; l++) {
        st = ep_check_layer(head, l);
        if (st != EDGEPLUS_OK) {
            return st;
        }
    }
    classes = head->layers[head->num_layers - 1].out_features;
    if (classes < 2 || classes > EDGEPLUS_QCORE_MAX_CLASSES) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_DIMS, "head->layers[].out_features",
                             head->num_layers - 1, classes, 2, EDGEPLUS_QCORE_MAX_CLASSES);
    }
    for (l = 0; l < head->num_layers; l++) {
        if (ep_qcore_calibrated(head, l)) {
            st = ep_check_net(head->nets[l], l);
            if (st != EDGEPLUS_OK) {
                return st;
            }
        }
    }
    if (n < 1 || n > EDGEPLUS_QCORE_MAX_N) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_DIMS, "n", -1, n, 1, EDGEPLUS_QCORE_MAX_N);
    }
    return EDGEPLUS_OK;
}

void edgeplus__qcore_layout(const edgeplus_qcore_head *head, int32_t n, ep_qcore_layout *lay)
{
    int64_t sum_out = 0, t = 0, wc = 0, bc = 0, wmax = 0, r = 0, first_out = 0;
    int32_t l;
    int calibrated = 0;
    for (l = 0; l < head->num_layers; l++) {
        const edgeplus_fc_layer *ly = &head->layers[l];
        const int64_t count = (int64_t)ly->out_features * ly->in_features;
        sum_out += ly->out_features;
        if (ly->w_bits == 4) {
            r = ly->in_features > r ? ly->in_features : r;
        }
        if (ep_qcore_calibrated(head, l)) {
            if (!calibrated) {
                first_out = ly->out_features;
            }
            calibrated = 1;
            wc += count;
            bc += (count * ly->w_bits + 7) / 8;
            wmax = count > wmax ? count : wmax;
            t = ly->in_features > t ? ly->in_features : t;
            t = ly->out_features > t ? ly->out_features : t;
        }
    }
    if (!calibrated) {
        lay->ecol = lay->elab = lay->tmp32 = lay->acc = lay->gbuf = lay->acts = 0;
        lay->codes = lay->a8 = lay->e8 = lay->row = lay->total = n * sum_out;
        return;
    }
    /* int32 parts first: every one starts 4-byte aligned */
    lay->ecol = 0;
    lay->elab = lay->ecol + 4 * (int64_t)n;
    lay->tmp32 = lay->elab + 4 * (int64_t)n;
    lay->acc = lay->tmp32 + 4 * t;
    lay->gbuf = lay->acc + 4 * (int64_t)n * first_out;
    lay->acts = lay->gbuf + (4 * wmax > bc ? 4 * wmax : bc);
    lay->codes = lay->acts + (int64_t)n * sum_out;
    lay->a8 = lay->codes + wc;
    lay->e8 = lay->a8 + t;
    lay->row = lay->e8 + t;
    lay->total = lay->row + r;
}
