/* edgeplus_patch_stage_weight_size: packed filter bytes of a weight slot. */
#include "edgeplus_stage_internal.h"

edgeplus_status edgeplus_patch_stage_weight_size(const int32_t *program, int32_t words,
                                                 int32_t slot, int32_t *filter_bytes)
{
    ep_stage st;
    int32_t k;
    edgeplus_status rc;
    EP_CHECK_NULL(filter_bytes, "filter_bytes");
    rc = edgeplus_patch_stage_check(program, words);
    if (rc != EDGEPLUS_OK) {
        return rc;
    }
    edgeplus__stage_layout(program, words, &st);
    for (k = 0; k < st.S; ++k) {
        const int32_t *s = ep_st_step(program, &st, k);
        if ((s[EP_S_KIND] == EP_ST_KIND_CONV || s[EP_S_KIND] == EP_ST_KIND_DW) &&
            s[EP_S_SLOT] == slot) {
            edgeplus_dims f;
            edgeplus__stage_filter_dims(program, &st, k, &f);
            *filter_bytes = edgeplus_packed_bytes(f.n * f.h * f.w * f.c, s[EP_S_WBITS]);
            return EDGEPLUS_OK;
        }
    }
    return EP_FAIL(EDGEPLUS_ERR_ARG, "slot", -1, slot, "a weight slot of the program");
}
