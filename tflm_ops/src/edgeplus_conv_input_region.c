/* edgeplus_conv_input_region: input rows/cols an output window reads (clipped). */
#include "edgeplus_internal.h"

static void ep_span(int32_t o0, int32_t count, int32_t stride, int32_t pad, int32_t k,
                    int32_t dil, int32_t size, int32_t *lo, int32_t *len)
{
    int64_t a = (int64_t)o0 * stride - pad;
    /* incl.; o0 + count - 1 in int64: both may be near INT32_MAX */
    int64_t b = ((int64_t)o0 + count - 1) * stride - pad + (int64_t)(k - 1) * dil;
    if (a < 0) {
        a = 0;
    }
    if (b > size - 1) {
        b = size - 1;
    }
    *lo = (int32_t)a;
    *len = b >= a ? (int32_t)(b - a + 1) : 0;
}

edgeplus_status edgeplus_conv_input_region(const edgeplus_conv_params *params,
                                           const edgeplus_dims *input_dims,
                                           const edgeplus_dims *filter_dims,
                                           const edgeplus_window *window,
                                           edgeplus_window *input_region)
{
    int32_t dh, dw;
    if (params == NULL || input_dims == NULL || filter_dims == NULL || window == NULL ||
        input_region == NULL) {
        return EDGEPLUS_ERR_NULL;
    }
    if (input_dims->h <= 0 || input_dims->w <= 0 || filter_dims->h <= 0 || filter_dims->w <= 0) {
        return EDGEPLUS_ERR_DIMS;
    }
    if (params->stride_h < 1 || params->stride_w < 1 || params->pad_h < 0 ||
        params->pad_w < 0 || params->dilation_h < 0 || params->dilation_w < 0) {
        return EDGEPLUS_ERR_ARG;
    }
    if (window->h <= 0 || window->w <= 0 || window->y < 0 || window->x < 0) {
        return EDGEPLUS_ERR_WINDOW;
    }
    dh = params->dilation_h > 0 ? params->dilation_h : 1;
    dw = params->dilation_w > 0 ? params->dilation_w : 1;
    ep_span(window->y, window->h, params->stride_h, params->pad_h, filter_dims->h, dh,
            input_dims->h, &input_region->y, &input_region->h);
    ep_span(window->x, window->w, params->stride_w, params->pad_w, filter_dims->w, dw,
            input_dims->w, &input_region->x, &input_region->w);
    if (input_region->h == 0 || input_region->w == 0) {
        return EDGEPLUS_ERR_WINDOW;
    }
    return EDGEPLUS_OK;
}
