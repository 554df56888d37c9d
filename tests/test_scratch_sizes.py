"""tfmot_edgeplus.core.scratch: the Python scratch sizes equal the C kernels' (both variants)."""

from __future__ import annotations

import itertools

import pytest

from tfmot_edgeplus.core import scratch
from tfmot_edgeplus.core.conv_reference import ConvArgumentError, make_conv_params

# (input h, w, c, kernel, stride, dilation, out channels; depthwise: out channels = c)
SHAPES = [
    (1, 1, 1, 1, 1, 1, 1),  # the smallest
    (12, 12, 8, 3, 1, 1, 16),  # conv 3x3
    (24, 24, 16, 3, 2, 1, 24),  # stride 2
    (10, 10, 64, 1, 1, 1, 96),  # 1x1, more than one pixel block
    (7, 9, 5, 5, 1, 2, 3),  # odd sizes, dilation
    (3, 200, 48, 3, 1, 1, 48),  # a row wider than the depthwise tile
    (4, 4, 3, 1, 1, 1, 2),  # K*C below the lean block's MACs
    (40, 40, 1, 7, 3, 1, 33),  # one input channel, 7x7
    (2, 64, 640, 7, 1, 60, 8),  # depthwise: too wide for the planar layout (fallback)
]
BITS = [(8, 8, 8), (4, 4, 4), (2, 2, 2), (8, 4, 8), (4, 2, 8), (2, 8, 4)]


def _case(shape, bits, depthwise):
    h, w, c, kk, stride, dil, oc = shape
    in_bits, w_bits, out_bits = bits
    params, (oh, ow) = make_conv_params((h, w), kk, stride=stride, dilation=dil,
                                        in_bits=in_bits, w_bits=w_bits, out_bits=out_bits)
    oc = c if depthwise else oc
    filt = (1, kk, kk, c) if depthwise else (oc, kk, kk, c)
    return params, (1, h, w, c), filt, (1, oh, ow, oc)


@pytest.mark.parametrize("depthwise", [False, True], ids=["conv", "depthwise"])
def test_scratch_sizes_match_c(k, depthwise):
    name = "depthwise_conv2d" if depthwise else "conv2d"
    default_c = getattr(k, f"{name}_get_buffer_size")
    lean_c = getattr(k, f"{name}_get_buffer_size_lean")
    checked = 0
    for shape, bits in itertools.product(SHAPES, BITS):
        args = _case(shape, bits, depthwise)
        for lean, c_fn in ((False, default_c), (True, lean_c)):
            got = scratch.scratch_bytes(*args, depthwise=depthwise, lean=lean)
            assert got == c_fn(*args), (shape, bits, lean)
            checked += 1
        assert scratch.scratch_bytes(*args, depthwise=depthwise, lean=True) <= got
    assert checked == 2 * len(SHAPES) * len(BITS)


def test_scratch_sizes_refuse_what_the_c_refuses():
    params, inp, filt, out = _case(SHAPES[1], (8, 8, 8), False)
    with pytest.raises(ConvArgumentError, match="BITS"):
        scratch.conv_scratch_bytes(params.replace(w_bits=3), inp, filt, out)
    with pytest.raises(ConvArgumentError):
        scratch.depthwise_scratch_bytes(params, inp, filt, out)  # not 1HWO
