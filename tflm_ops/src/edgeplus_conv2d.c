/* edgeplus_conv2d: low-bit Conv2D over the whole tensor (see edgeplus_ops.h). */
#include "edgeplus_internal.h"

edgeplus_status edgeplus_conv2d(const edgeplus_context *ctx,
                                const edgeplus_conv_params *params,
                                const edgeplus_quant_params *quant,
                                const edgeplus_dims *input_dims, const int8_t *input,
                                const edgeplus_dims *filter_dims, const int8_t *filter,
                                const int32_t *bias,
                                const edgeplus_dims *output_dims, int8_t *output)
{
    edgeplus_window all;
    EP_CHECK_NULL(output_dims, "output_dims");
    all.y = 0;
    all.x = 0;
    all.h = output_dims->h;
    all.w = output_dims->w;
    const ep_conv_args a = {ctx,  params, quant,  input_dims,  NULL, input, filter_dims,
                             filter, bias, output_dims, NULL, output, &all};
    return edgeplus__conv_core(&a);
}
