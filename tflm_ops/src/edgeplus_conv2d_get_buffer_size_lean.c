/* edgeplus_conv2d_get_buffer_size_lean: the lean scratch of edgeplus_conv2d[_window]
 * (see edgeplus_ops.h). */
#include "edgeplus_internal.h"

int32_t edgeplus_conv2d_get_buffer_size_lean(const edgeplus_conv_params *params,
                                             const edgeplus_dims *input_dims,
                                             const edgeplus_dims *filter_dims,
                                             const edgeplus_dims *output_dims)
{
    int64_t pixels, kc;
    const edgeplus_status st =
        edgeplus__check_conv_args(params, input_dims, filter_dims, output_dims, 0);
    if (st != EDGEPLUS_OK) {
        return (int32_t)st;
    }
    /* blocks of 4 to 32 pixels (a multiple of 4) with at least EDGEPLUS_CONV_LEAN_MACS MACs
     * per channel, no more than the window's pixels rounded up to 4 */
    kc = (int64_t)filter_dims->h * filter_dims->w * filter_dims->c; /* >= 1, checked */
    pixels = ((EDGEPLUS_CONV_LEAN_MACS + kc - 1) / kc + 3) & ~(int64_t)3;
    if (pixels > (EDGEPLUS_CONV_PIXEL_BLOCK & ~3)) {
        pixels = EDGEPLUS_CONV_PIXEL_BLOCK & ~3;
    }
    if (pixels > (((int64_t)output_dims->h * output_dims->w + 3) & ~(int64_t)3)) {
        pixels = ((int64_t)output_dims->h * output_dims->w + 3) & ~(int64_t)3;
    }
    return edgeplus__conv_scratch_bytes(params, input_dims, filter_dims, (int32_t)pixels, 1);
}
