/* edgeplus_conv2d_window: low-bit Conv2D of one output window (patch-based inference). */
#include "edgeplus_internal.h"

edgeplus_status edgeplus_conv2d_window(const edgeplus_context *ctx,
                                       const edgeplus_conv_params *params,
                                       const edgeplus_quant_params *quant,
                                       const edgeplus_dims *input_dims,
                                       const edgeplus_window *input_region,
                                       const int8_t *input,
                                       const edgeplus_dims *filter_dims, const int8_t *filter,
                                       const int32_t *bias,
                                       const edgeplus_dims *output_dims,
                                       const edgeplus_window *output_region, int8_t *output,
                                       const edgeplus_window *window)
{
    const ep_conv_args a = {ctx,    params, quant,         input_dims, input_region,
                             input,  filter_dims, filter, bias,
                             output_dims, output_region, output, window};
    return edgeplus__conv_core(&a);
}
