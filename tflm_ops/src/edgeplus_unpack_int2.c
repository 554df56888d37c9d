/* edgeplus_unpack_int2: inverse of edgeplus_pack_int2 (sign-extends). */
#include "edgeplus_internal.h"

edgeplus_status edgeplus_unpack_int2(const int8_t *src, int32_t count, int8_t *dst)
{
    int32_t i;
    if (count < 0) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_DIMS, "count", -1, count, 0, INT32_MAX);
    }
    if (count == 0) {
        return EDGEPLUS_OK;
    }
    EP_CHECK_NULL(src, "src");
    EP_CHECK_NULL(dst, "dst");
    for (i = 0; i < count; i++) {
        dst[i] = (int8_t)ep_load(src, i, 2);
    }
    return EDGEPLUS_OK;
}
