/* edgeplus_depthwise_conv2d_get_buffer_size_lean: the lean scratch of the depthwise
 * kernels (see edgeplus_ops.h). */
#include "edgeplus_internal.h"

int32_t edgeplus_depthwise_conv2d_get_buffer_size_lean(const edgeplus_conv_params *params,
                                                       const edgeplus_dims *input_dims,
                                                       const edgeplus_dims *filter_dims,
                                                       const edgeplus_dims *output_dims)
{
    const edgeplus_status st =
        edgeplus__check_conv_args(params, input_dims, filter_dims, output_dims, 1);
    if (st != EDGEPLUS_OK) {
        return (int32_t)st;
    }
    return edgeplus__dw_scratch_bytes(params, input_dims, filter_dims, 1);
}
