/* edgeplus_requantize_array: edgeplus_requantize over arrays. */
#include "edgeplus_internal.h"

edgeplus_status edgeplus_requantize_array(const int32_t *acc, const int32_t *multiplier,
                                          const int32_t *shift, int32_t count, int32_t *out)
{
    int32_t i;
    if (count < 0) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_DIMS, "count", -1, count, 0, INT32_MAX);
    }
    if (count == 0) {
        return EDGEPLUS_OK;
    }
    EP_CHECK_NULL(acc, "acc");
    EP_CHECK_NULL(multiplier, "multiplier");
    EP_CHECK_NULL(shift, "shift");
    EP_CHECK_NULL(out, "out");
    for (i = 0; i < count; i++) {
        out[i] = edgeplus_requantize(acc[i], multiplier[i], shift[i]);
    }
    return EDGEPLUS_OK;
}
