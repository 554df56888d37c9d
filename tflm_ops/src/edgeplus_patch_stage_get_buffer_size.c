/* edgeplus_patch_stage_get_buffer_size: scratch bytes of edgeplus_patch_stage. */
#include "edgeplus_stage_internal.h"

int32_t edgeplus_patch_stage_get_buffer_size(const int32_t *program, int32_t words)
{
    ep_stage st;
    int32_t kernel;
    int64_t total;
    edgeplus_status rc = edgeplus_patch_stage_check(program, words);
    if (rc != EDGEPLUS_OK) {
        return (int32_t)rc;
    }
    edgeplus__stage_layout(program, words, &st);
    kernel = edgeplus__stage_kernel_scratch(program, &st);
    if (kernel < 0) {
        return kernel;
    }
    /* 4 bytes of alignment slack for the arena, the arena rounded up to 4, the kernels' */
    total = 4 + (((int64_t)st.arena + 3) & ~(int64_t)3) + kernel;
    if (total > INT32_MAX) {
        return (int32_t)EP_FAIL(EDGEPLUS_ERR_DIMS, "program", -1, 0,
                                "the scratch bytes must fit int32");
    }
    return (int32_t)total;
}
