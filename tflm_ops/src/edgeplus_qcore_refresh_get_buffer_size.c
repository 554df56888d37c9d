/* edgeplus_qcore_refresh_get_buffer_size: scratch bytes of edgeplus_qcore_refresh. */
#include "edgeplus_qcore_internal.h"

int32_t edgeplus_qcore_refresh_get_buffer_size(int32_t n)
{
    if (n < 1 || n > (INT32_MAX - 4) / 4) {
        return (int32_t)EP_FAIL_RANGE(EDGEPLUS_ERR_DIMS, "n", -1, n, 1, (INT32_MAX - 4) / 4);
    }
    return 4 + 4 * n; /* alignment slack + an int32 count per item */
}
