/* edgeplus_unpack_int2: inverse of edgeplus_pack_int2 (sign-extends). */
#include "edgeplus_internal.h"

edgeplus_status edgeplus_unpack_int2(const int8_t *src, int32_t count, int8_t *dst)
{
    int32_t i;
    if (count < 0) {
        return EDGEPLUS_ERR_DIMS;
    }
    if (count == 0) {
        return EDGEPLUS_OK;
    }
    if (src == NULL || dst == NULL) {
        return EDGEPLUS_ERR_NULL;
    }
    for (i = 0; i < count; i++) {
        dst[i] = (int8_t)ep_load(src, i, 2);
    }
    return EDGEPLUS_OK;
}
