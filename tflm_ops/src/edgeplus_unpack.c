/* edgeplus_unpack: unpack from 2, 4 or 8 bits (8 is a plain copy). */
#include "edgeplus_internal.h"

edgeplus_status edgeplus_unpack(const int8_t *src, int32_t count, int32_t bits, int8_t *dst)
{
    int32_t i;
    if (!ep_bits_ok(bits)) {
        return EP_FAIL(EDGEPLUS_ERR_BITS, "bits", -1, bits, "2, 4 or 8");
    }
    if (bits == 4) {
        return edgeplus_unpack_int4(src, count, dst);
    }
    if (bits == 2) {
        return edgeplus_unpack_int2(src, count, dst);
    }
    if (count < 0) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_DIMS, "count", -1, count, 0, INT32_MAX);
    }
    if (count == 0) {
        return EDGEPLUS_OK;
    }
    EP_CHECK_NULL(src, "src");
    EP_CHECK_NULL(dst, "dst");
    for (i = 0; i < count; i++) {
        dst[i] = src[i];
    }
    return EDGEPLUS_OK;
}
