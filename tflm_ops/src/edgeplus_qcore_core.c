/* edgeplus_qcore_core: argument checks and scratch layout of the QCore step (internal). */
#include "edgeplus_qcore_internal.h"

static int ep_int8_range(int32_t v) { return v >= -128 && v <= 127; }

static edgeplus_status ep_check_layer(const edgeplus_qcore_head *head, int32_t l)
{
    const edgeplus_fc_layer *ly = &head->layers[l];
    int32_t o;
    if (ly->weights == NULL || ly->multiplier == NULL || ly->shift == NULL) {
        return EDGEPLUS_ERR_NULL;
    }
    if (ly->w_bits != 4 && ly->w_bits != 8) {
        return EDGEPLUS_ERR_BITS;
    }
    if (ly->out_features < 1 || ly->in_features < 1 ||
        ly->in_features > EDGEPLUS_MAX_KC(8, ly->w_bits) ||
        (int64_t)ly->out_features * ly->in_features > INT32_MAX) {
        return EDGEPLUS_ERR_DIMS;
    }
    if (l > 0 && ly->in_features != head->layers[l - 1].out_features) {
        return EDGEPLUS_ERR_DIMS;
    }
    if (!ep_int8_range(ly->input_zero_point) || !ep_int8_range(ly->output_zero_point) ||
        !ep_int8_range(ly->act_min) || !ep_int8_range(ly->act_max) ||
        ly->act_min > ly->act_max) {
        return EDGEPLUS_ERR_ARG;
    }
    for (o = 0; o < ly->out_features; o++) {
        if (ly->multiplier[o] < 0 || ly->shift[o] < -31 || ly->shift[o] > 30) {
            return EDGEPLUS_ERR_ARG;
        }
    }
    return EDGEPLUS_OK;
}

static edgeplus_status ep_check_net(const edgeplus_flipnet *net)
{
    int32_t h;
    if (net->w1 == NULL || net->b1 == NULL || net->w2 == NULL) {
        return EDGEPLUS_ERR_NULL;
    }
    if (net->hidden < 1 || net->hidden > EDGEPLUS_QCORE_MAX_HIDDEN) {
        return EDGEPLUS_ERR_DIMS;
    }
    for (h = 0; h < net->hidden; h++) {
        if (net->b1[h] < -(1 << 30) || net->b1[h] > (1 << 30)) {
            return EDGEPLUS_ERR_ARG;
        }
    }
    if (net->m1 < 0 || net->s1 < -31 || net->s1 > 30 || net->b2 < -(1 << 30) ||
        net->b2 > (1 << 30) || net->threshold < 1 || net->threshold > (1 << 30)) {
        return EDGEPLUS_ERR_ARG;
    }
    return EDGEPLUS_OK;
}

edgeplus_status edgeplus__qcore_check(const edgeplus_qcore_head *head, int32_t n)
{
    edgeplus_status st;
    int32_t l, classes;
    if (head == NULL || head->layers == NULL) {
        return EDGEPLUS_ERR_NULL;
    }
    if (head->num_layers < 1 || head->num_layers > EDGEPLUS_QCORE_MAX_LAYERS) {
        return EDGEPLUS_ERR_DIMS;
    }
    if (head->margin < 1 || head->margin > EDGEPLUS_QCORE_MAX_MARGIN || head->tries < 1 ||
        head->tries > EDGEPLUS_QCORE_MAX_TRIES) {
        return EDGEPLUS_ERR_ARG;
    }
    for (l = 0; l < head->num_layers; l++) {
        st = ep_check_layer(head, l);
        if (st != EDGEPLUS_OK) {
            return st;
        }
    }
    classes = head->layers[head->num_layers - 1].out_features;
    if (classes < 2 || classes > EDGEPLUS_QCORE_MAX_CLASSES) {
        return EDGEPLUS_ERR_DIMS;
    }
    for (l = 0; l < head->num_layers; l++) {
        if (ep_qcore_calibrated(head, l)) {
            st = ep_check_net(head->nets[l]);
            if (st != EDGEPLUS_OK) {
                return st;
            }
        }
    }
    if (n < 1 || n > EDGEPLUS_QCORE_MAX_N) {
        return EDGEPLUS_ERR_DIMS;
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
