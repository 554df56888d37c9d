/* edgeplus_pack_int4: two signed 4-bit values per byte, low nibble first. */
#include "edgeplus_internal.h"

edgeplus_status edgeplus_pack_int4(const int8_t *src, int32_t count, int8_t *dst)
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
        if (src[i] < -8 || src[i] > 7) {
            return EP_FAIL_RANGE(EDGEPLUS_ERR_ARG, "src[]", i, src[i], -8, 7);
        }
    }
    for (i = 0; i + 1 < count; i += 2) {
        dst[i >> 1] = (int8_t)(((uint32_t)src[i] & 0xFu) | (((uint32_t)src[i + 1] & 0xFu) << 4));
    }
    if (count & 1) {
        dst[count >> 1] = (int8_t)((uint32_t)src[count - 1] & 0xFu);
    }
    return EDGEPLUS_OK;
}
