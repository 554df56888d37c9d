/* edgeplus_conv2d_get_buffer_size_lean: the lean scratch of edgeplus_conv2d[_window]
 * (see edgeplus_ops.h). */
#include "edgeplus_internal.h"

int32_t edgeplus_conv2d_get_buffer_size_lean(const edgeplus_conv_params *params,
                                             const edgeplus_dims *input_dims,
                                             const edgeplus_dims *filter_dims,
                                             const edgeplus_dims *output_dims)
{
    int32_t pixels;
    const edgeplus_status st =
        edgeplus__check_conv_args(params, input_dims, filter_dims, output_dims, 0);
    if (st != EDGEPLUS_OK) {
        return (int32_t)st;
    }
    /* min(window pixels, EDGEPLUS_CONV_LEAN_BLOCK); h * w may pass INT32_MAX */
    pixels = (int64_t)output_dims->h * output_dims->w < EDGEPLUS_CONV_LEAN_BLOCK
                 ? output_dims->h * output_dims->w
                 : EDGEPLUS_CONV_LEAN_BLOCK;
    return edgeplus__conv_scratch_bytes(params, input_dims, filter_dims, pixels, 1);
}
