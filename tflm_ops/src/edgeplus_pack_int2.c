/* edgeplus_pack_int2: four signed 2-bit values per byte, lowest bits first. */
#include "edgeplus_internal.h"

edgeplus_status edgeplus_pack_int2(const int8_t *src, int32_t count, int8_t *dst)
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
        if (src[i] < -2 || src[i] > 1) {
            return EP_FAIL_RANGE(EDGEPLUS_ERR_ARG, "src[]", i, src[i], -2, 1);
        }
    }
    for (i = 0; i < count / 4 + (count % 4 != 0); i++) { /* count + 3 may pass INT32_MAX */
        uint32_t byte = 0;
        int32_t k;
        for (k = 0; k < 4; k++) {
            const int32_t j = 4 * i + k;
            if (j < count) {
                byte |= ((uint32_t)src[j] & 3u) << (2 * k);
            }
        }
        dst[i] = (int8_t)byte;
    }
    return EDGEPLUS_OK;
}
