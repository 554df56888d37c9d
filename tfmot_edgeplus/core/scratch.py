"""Scratch bytes of the ``tflm_ops`` conv and depthwise kernels, without calling the C.

Python twins of ``edgeplus_conv2d_get_buffer_size[_lean]`` and
``edgeplus_depthwise_conv2d_get_buffer_size[_lean]`` (``tflm_ops/src``:
``edgeplus__conv_scratch_bytes``, ``edgeplus__dw_geom``, ``edgeplus__dw_buffer_size``), so
the converter can plan each op's scratch from the model alone.
``tests/test_scratch_sizes.py`` checks them against the C functions over a table of shapes
and bit-widths; change both together.

The *default* scratch is what the kernels run fastest with; the *lean* one (about 2 KB at
most, a few per cent more instructions) is the smallest they accept for a 1x1 output, and a
kernel given less than the default takes its lean layout. Shapes are the logical NHWC input,
OHWI (conv) or 1HWO (depthwise) filter and NHWC output; bad arguments raise
:class:`~tfmot_edgeplus.core.conv_reference.ConvArgumentError` as the C returns an error.
"""

from __future__ import annotations

from tfmot_edgeplus.core.conv_reference import ConvParams, check_conv_args

__all__ = ["conv_scratch_bytes", "depthwise_scratch_bytes", "scratch_bytes"]

# edgeplus_internal.h
_PIXEL_BLOCK = 32  # EDGEPLUS_CONV_PIXEL_BLOCK
_LEAN_MACS = 512  # EDGEPLUS_CONV_LEAN_MACS
_DW_STRIP = 16  # EDGEPLUS_DW_STRIP
_DW_TILE_W = 64  # EDGEPLUS_DW_TILE_W
_DW_LEAN_STRIP = 4  # EDGEPLUS_DW_LEAN_STRIP
_DW_PLANAR_MAX = 32768  # EDGEPLUS_DW_PLANAR_MAX
_RQ_BYTES = 16  # sizeof(ep_rq): one channel's requantization constants
_SLACK = 8  # alignment slack of every scratch


def _up(v: int, m: int) -> int:
    return (v + m - 1) // m * m


def _kpad(input_shape, filter_shape) -> int:
    """ep_kpad: K*C rounded up to 16."""
    return _up(filter_shape[1] * filter_shape[2] * input_shape[3], 16)


def conv_scratch_bytes(params: ConvParams, input_shape, filter_shape, output_shape, *,
                       lean: bool = False) -> int:
    """``edgeplus_conv2d_get_buffer_size`` (``lean``: ``_get_buffer_size_lean``)."""
    check_conv_args(params, input_shape, filter_shape, output_shape)
    out_px = output_shape[1] * output_shape[2]
    if lean:
        kc = filter_shape[1] * filter_shape[2] * filter_shape[3]
        pixels = min(_up(-(-_LEAN_MACS // kc), 4), _PIXEL_BLOCK & ~3, _up(out_px, 4))
    else:
        pixels = min(out_px, _PIXEL_BLOCK)
    oc = filter_shape[0]
    px = _up(pixels, 2)
    table = 0 if lean else oc * _RQ_BYTES
    stage = 0 if lean and params.out_bits == 8 else _up(px * oc, 4)
    return _SLACK + table + stage + (px + (1 if lean else 3)) * _kpad(input_shape, filter_shape) * 2


def _dw_bytes(params: ConvParams, input_shape, filter_shape, lean: bool) -> int:
    """``edgeplus__dw_geom``'s bytes: the planar layout's, or the im2col fallback's."""
    c, kh, kw = input_shape[3], filter_shape[1], filter_shape[2]
    sw, dw = params.stride_w, max(params.dilation_w, 1)
    max_ow = (input_shape[2] - 1 + params.pad_w) // sw + 1
    tw = min(max_ow, _DW_TILE_W)
    s = min(c, _DW_LEAN_STRIP if lean else _DW_STRIP)
    rw = (tw - 1) * sw + (kw - 1) * dw + 1
    rwp = (rw + 6) & ~1
    wrow = 4 if kw < 4 else _up(kw, 2)
    accw = _up(tw, 4) + 8
    stage = 0 if lean and params.out_bits == 8 else _up(tw * s, 4)
    planar = s * kh * wrow * 2 + accw * 4 + stage + kh * 8 + rwp * 2 + kh * s * rwp * 2
    if planar <= _DW_PLANAR_MAX:
        return planar
    return c * _RQ_BYTES + _up(c, 4) + 2 * _kpad(input_shape, filter_shape) * 2


def depthwise_scratch_bytes(params: ConvParams, input_shape, filter_shape, output_shape, *,
                            lean: bool = False) -> int:
    """``edgeplus_depthwise_conv2d_get_buffer_size`` (``lean``: ``_get_buffer_size_lean``)."""
    check_conv_args(params, input_shape, filter_shape, output_shape, depthwise=True)
    full = _dw_bytes(params, input_shape, filter_shape, False)
    return _SLACK + min(_dw_bytes(params, input_shape, filter_shape, lean), full)


def scratch_bytes(params: ConvParams, input_shape, filter_shape, output_shape, *,
                  depthwise: bool, lean: bool) -> int:
    """:func:`depthwise_scratch_bytes` or :func:`conv_scratch_bytes`."""
    f = depthwise_scratch_bytes if depthwise else conv_scratch_bytes
    return f(params, input_shape, filter_shape, output_shape, lean=lean)
