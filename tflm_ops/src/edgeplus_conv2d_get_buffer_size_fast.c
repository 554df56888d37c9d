/* edgeplus_conv2d_get_buffer_size_fast: scratch bytes that also keep every weight row
 * unpacked for the whole call (faster; see edgeplus_ops.h). */
#include "edgeplus_internal.h"

int32_t edgeplus_conv2d_get_buffer_size_fast(const edgeplus_conv_params *params,
                                             const edgeplus_dims *input_dims,
                                             const edgeplus_dims *filter_dims,
                                             const edgeplus_dims *output_dims)
{
    const int32_t lean =
        edgeplus_conv2d_get_buffer_size(params, input_dims, filter_dims, output_dims);
    int32_t cache;
    if (lean < 0) {
        return lean;
    }
    cache = edgeplus__conv_wcache_bytes(params, input_dims, filter_dims);
    if (cache < 0 || (int64_t)lean + cache > INT32_MAX) {
        return (int32_t)EP_FAIL(EDGEPLUS_ERR_DIMS, "filter_dims", -1, filter_dims->n,
                                "the weight cache's bytes must fit int32");
    }
    return lean + cache;
}
