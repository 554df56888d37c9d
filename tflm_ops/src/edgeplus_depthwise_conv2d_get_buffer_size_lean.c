/* edgeplus_depthwise_conv2d_get_buffer_size_lean: the lean scratch of the depthwise
 * kernels (see edgeplus_ops.h). */
#include "edgeplus_internal.h"

int32_t edgeplus_depthwise_conv2d_get_buffer_size_lean(const edgeplus_conv_params *params,
                                                       const edgeplus_dims *input_dims,
                                                       const edgeplus_dims *filter_dims,
                                                       const edgeplus_dims *output_dims)
{
    return edgeplus__dw_buffer_size(params, input_dims, filter_dims, output_dims, 1);
}
