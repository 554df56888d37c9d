"""The planar depthwise kernel (tflm_ops/src/edgeplus_depthwise_core.c) against the NumPy
reference, bit for bit, on the geometry it splits work by: several channel strips (more
than 16 channels, a partial last strip), several column tiles (outputs wider than 64),
every bit-width combination, stride 1/2/3, dilation, 1x1 / 3x3 / 5x5 / 3x1 / 1x3 / 2x2 /
tall 10x3 filters, fused ReLU clamps, windows with region buffers, exotic requantization
(large left shifts, tiny scales, zero multipliers) and the per-pixel im2col fallback
taken for huge dilations. Both C builds: plain C and the emulated DSP path (the real M4
path runs the same code through tests/test_m4_qemu.py and benchmarks/kernels_m4.py).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from builders import golden
from kernel_helpers import assert_same, run_c, window_of

from tfmot_edgeplus.runtime import kernels


def _run(k, case):
    return window_of(run_c(k, case), case)


def _exotic_requant(case, rng):
    """Some channels get big left shifts, scales below 2^-22 or a zero multiplier."""
    shift, mult = case.shift.copy(), case.multiplier.copy()
    for i in range(len(shift)):
        r = int(rng.integers(0, 5))
        if r == 0:
            shift[i] = int(rng.integers(-31, -22))
        elif r == 1:
            shift[i] = int(rng.integers(5, 12))
        elif r == 2:
            mult[i] = 0
    return dataclasses.replace(case, shift=shift, multiplier=mult)


BITS = [(8, 8, 8), (4, 4, 4), (2, 2, 2), (8, 4, 2), (2, 8, 4), (4, 2, 8)]


@pytest.mark.parametrize("in_bits,w_bits,out_bits", BITS)
@pytest.mark.parametrize(
    "c,w,kernel,stride,dilation",
    [
        (37, 9, (3, 3), 1, 1),  # strips 16 + 16 + 5
        (20, 150, (3, 3), 1, 1),  # 3 column tiles, strips 16 + 4
        (32, 70, (3, 3), 2, 1),  # stride-2 3-wide path, 1 or 2 tiles
        (17, 40, (5, 5), 1, 2),  # generic path, dilation
        (8, 66, (1, 3), 3, 1),
        (12, 11, (3, 1), 1, 1),
        (5, 13, (2, 2), 2, 1),
        (16, 10, (10, 3), 1, 1),  # tall filter: row-at-a-time path
        (24, 9, (1, 1), 1, 1),
    ],
)
def test_planar_geometries(k, in_bits, w_bits, out_bits, c, w, kernel, stride, dilation):
    rng = np.random.default_rng(c * 1000 + w + 7 * stride)
    h = max(kernel[0] * dilation, 5)
    for relu in (False, True):
        case = golden.random_conv_case(
            rng,
            in_bits=in_bits,
            w_bits=w_bits,
            out_bits=out_bits,
            depthwise=True,
            n=2 if relu else 1,
            h=h,
            w=w,
            c=c,
            k=kernel,
            stride=stride,
            dilation=dilation,
            relu=relu,
        )
        assert_same(_run(k, case), case.reference(), f"relu={relu}")
        case = _exotic_requant(case, rng)
        assert_same(_run(k, case), case.reference(), f"exotic requant relu={relu}")


@pytest.mark.parametrize("in_bits,w_bits,out_bits", BITS[:3])
def test_planar_windows_across_tiles(k, in_bits, w_bits, out_bits):
    """Windows that start/end inside column tiles, with and without region buffers."""
    for i, win in enumerate([(0, 0, 3, 130), (1, 61, 2, 7), (1, 63, 3, 67), (0, 129, 4, 1)]):
        for margin in (None, 0, 2):
            case = golden.random_conv_case(
                np.random.default_rng(i),
                in_bits=in_bits,
                w_bits=w_bits,
                out_bits=out_bits,
                depthwise=True,
                h=4,
                w=130,
                c=20,
                window=win,
                region_margin=margin,
            )
            assert_same(_run(k, case), case.reference(), f"window {win} margin {margin}")


@pytest.mark.parametrize("dilation,c", [(20000, 5), (30000, 18)])
def test_huge_dilation_takes_the_im2col_fallback(k, dilation, c):
    rng = np.random.default_rng(dilation)
    case = golden.random_conv_case(
        rng, in_bits=4, w_bits=8, out_bits=2, depthwise=True, h=4, w=6, c=c, dilation=dilation
    )
    size = k.depthwise_conv2d_get_buffer_size(
        case.params, case.x.shape, case.w.shape, (1, *case.output_hw, c)
    )
    assert size < 4096, f"the fallback needs little scratch, got {size}"
    assert_same(_run(k, case), case.reference(), f"dilation {dilation}")


def test_depthwise_scratch_does_not_depend_on_the_window(k):
    case = golden.random_conv_case(
        np.random.default_rng(3), depthwise=True, h=9, w=100, c=40, stride=2
    )
    sizes = {
        k.depthwise_conv2d_get_buffer_size(case.params, case.x.shape, case.w.shape, (1, h, w, 40))
        for h, w in [(1, 1), (5, 50), *[case.output_hw]]
    }
    assert len(sizes) == 1, sizes


@pytest.mark.parametrize("in_bits,w_bits,out_bits", BITS)
@pytest.mark.parametrize(
    "c,w,kernel,stride",
    [
        (37, 9, (3, 3), 1),  # lean strips 4 x 9 + 1
        (20, 150, (3, 3), 1),  # 3 column tiles
        (32, 70, (3, 3), 2),
        (6, 13, (5, 5), 1),  # generic path, strips 4 + 2
        (24, 9, (1, 1), 1),
    ],
)
def test_lean_scratch(k, in_bits, w_bits, out_bits, c, w, kernel, stride):
    """Below the default scratch the kernel takes its lean layout (strips of 4 channels, no
    staging for an 8-bit output): same bytes down to _get_buffer_size_lean; 9 bytes below
    it (its alignment slack is 8): EDGEPLUS_ERR_SCRATCH."""
    case = golden.random_conv_case(
        np.random.default_rng(c * 31 + w),
        in_bits=in_bits,
        w_bits=w_bits,
        out_bits=out_bits,
        depthwise=True,
        h=max(kernel[0], 5),
        w=w,
        c=c,
        k=kernel,
        stride=stride,
    )
    shapes = (case.params, case.x.shape, case.w.shape, (1, *case.output_hw, c))
    default = k.depthwise_conv2d_get_buffer_size(*shapes)
    lean = k.depthwise_conv2d_get_buffer_size_lean(*shapes)
    assert 0 < lean < default
    want = case.reference()
    for size in (lean, (lean + default) // 2, default - 1):
        assert_same(window_of(run_c(k, case, scratch_bytes=size), case), want, f"scratch {size}")
    with pytest.raises(kernels.KernelScratchError, match="EDGEPLUS_ERR_SCRATCH"):
        run_c(k, case, scratch_bytes=lean - 9)
