/* edgeplus_conv_input_region: input rows/cols an output window reads (clipped). */
#include "edgeplus_internal.h"

edgeplus_status edgeplus_conv_input_region(const edgeplus_conv_params *params,
                                           const edgeplus_dims *input_dims,
                                           const edgeplus_dims *filter_dims,
                                           const edgeplus_window *window,
                                           edgeplus_window *input_region)
{
    int32_t dh, dw;
    EP_CHECK_NULL(params, "params");
    EP_CHECK_NULL(input_dims, "input_dims");
    EP_CHECK_NULL(filter_dims, "filter_dims");
    EP_CHECK_NULL(window, "window");
    EP_CHECK_NULL(input_region, "input_region");
    if (input_dims->h <= 0 || input_dims->w <= 0) {
        return EP_FAIL(EDGEPLUS_ERR_DIMS, "input_dims", -1, 0, "h and w >= 1");
    }
    if (filter_dims->h <= 0 || filter_dims->w <= 0) {
        return EP_FAIL(EDGEPLUS_ERR_DIMS, "filter_dims", -1, 0, "h and w >= 1");
    }
    if (params->stride_h < 1 || params->stride_w < 1 || params->pad_h < 0 ||
        params->pad_w < 0 || params->dilation_h < 0 || params->dilation_w < 0) {
        return EP_FAIL(EDGEPLUS_ERR_ARG, "params", -1, 0,
                       "strides >= 1, pads and dilations >= 0");
    }
    if (window->h <= 0 || window->w <= 0 || window->y < 0 || window->x < 0) {
        return EP_FAIL(EDGEPLUS_ERR_WINDOW, "window", -1, 0, "y, x >= 0 and h, w >= 1");
    }
    dh = params->dilation_h > 0 ? params->dilation_h : 1;
    dw = params->dilation_w > 0 ? params->dilation_w : 1;
    if (!ep_span(window->y, window->h, params->stride_h, params->pad_h, filter_dims->h, dh,
                 input_dims->h, &input_region->y, &input_region->h) ||
        !ep_span(window->x, window->w, params->stride_w, params->pad_w, filter_dims->w, dw,
                 input_dims->w, &input_region->x, &input_region->w)) {
        return EP_FAIL(EDGEPLUS_ERR_WINDOW, "window", -1, 0, "reading at least one input pixel");
    }
    return EDGEPLUS_OK;
}
