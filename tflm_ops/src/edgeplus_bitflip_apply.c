/* edgeplus_bitflip_apply: QCore's bit-flip step on packed integer weights. */
#include "edgeplus_internal.h"

edgeplus_status edgeplus_bitflip_apply(int8_t *weights, const int8_t *update, int32_t count,
                                       int32_t bits, int32_t *changed)
{
    int32_t i;
    int32_t n_changed = 0;
    int32_t qmax;
    if (!ep_bits_ok(bits)) {
        return EP_FAIL(EDGEPLUS_ERR_BITS, "bits", -1, bits, "2, 4 or 8");
    }
    if (count < 0) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_DIMS, "count", -1, count, 0, INT32_MAX);
    }
    if (count > 0) {
        EP_CHECK_NULL(weights, "weights");
        EP_CHECK_NULL(update, "update");
    }
    /* Validate everything first: on error nothing is changed. */
    for (i = 0; i < count; i++) {
        if (update[i] < -1 || update[i] > 1) {
            return EP_FAIL_RANGE(EDGEPLUS_ERR_ARG, "update[]", i, update[i], -1, 1);
        }
    }
    qmax = ep_qmax(bits);
    for (i = 0; i < count; i++) {
        const int32_t w = ep_load(weights, i, bits);
        int32_t v = w + update[i];
        if (v > qmax) {
            v = qmax;
        } else if (v < -qmax) {
            v = -qmax;
        }
        if (v != w) {
            ep_store(weights, i, bits, v);
            n_changed++;
        }
    }
    if (changed != NULL) {
        *changed = n_changed;
    }
    return EDGEPLUS_OK;
}
