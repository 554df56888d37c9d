/* edgeplus_qcore_step_get_buffer_size: scratch bytes of edgeplus_qcore_step. */
#include "edgeplus_qcore_internal.h"

int32_t edgeplus_qcore_step_get_buffer_size(const edgeplus_qcore_head *head, int32_t n)
{
    ep_qcore_layout lay;
    const edgeplus_status st = edgeplus__qcore_check(head, n);
    if (st != EDGEPLUS_OK) {
        return (int32_t)st;
    }
    edgeplus__qcore_layout(head, n, &lay);
    if (lay.total + 4 > INT32_MAX) {
        return (int32_t)EP_FAIL(EDGEPLUS_ERR_DIMS, "n", -1, n,
                                "the scratch bytes must fit int32");
    }
    return (int32_t)(lay.total + 4); /* + alignment slack */
}
