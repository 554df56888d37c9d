"""The NumPy reference of the tflm_ops kernels, and the C (via ctypes) against it, bit for bit.

Both C builds are checked: the plain-C path and the DSP path with SMLAD & co emulated in C
(the real DSP path runs the same golden vectors on the Cortex-M4 in QEMU). Cases: every
in/weight/out bit-width combination, conv and depthwise, strides 1/2, SAME/VALID, odd
channel counts, dilation, batch 2, patch windows at every border with region buffers, the
long-K flush of the paired 2-bit lanes, the packing layout, requantization edge cases and
the bit-flip step; plus the argument errors (C status == reference status, message names
the argument).
"""

from __future__ import annotations

import ctypes
import dataclasses
import itertools
import math
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from builders import golden
from kernel_helpers import assert_same, run_c, window_of

from tfmot_edgeplus.calibration import bitflip_reference as bfr
from tfmot_edgeplus.core import conv_reference as ref
from tfmot_edgeplus.core import intmath, packing
from tfmot_edgeplus.runtime import kernel_abi, kernels
from tfmot_edgeplus.runtime.kernel_abi import load_abi
from tfmot_edgeplus.runtime.qcore_step_result import StepResult

REPO = Path(__file__).resolve().parents[1]
BITS = (2, 4, 8)
# ----------------------------------------------------------------------------- packing


@pytest.mark.parametrize("bits", BITS)
def test_pack_roundtrip_and_size(bits, rng):
    lo, hi = intmath.int_range(bits)
    for n in list(range(17)) + [101, 1000]:
        v = rng.integers(lo, hi + 1, n)
        p = packing.pack(v, bits)
        assert p.dtype == np.int8 and p.size == packing.packed_nbytes(n, bits) == math.ceil(
            n * bits / 8
        )
        np.testing.assert_array_equal(packing.unpack(p, bits, n), v)


def test_pack_layout_is_tflite_int4_and_low_bits_first():
    # int4: element 2i in the low nibble (TFLite's INT4), odd tail padded with 0
    assert packing.pack_int4([1, -1, 7]).view(np.uint8).tolist() == [0xF1, 0x07]
    assert packing.pack_int4([-8, 0]).view(np.uint8).tolist() == [0x08]
    # int2: element 4i+k in bits 2k..2k+1
    assert packing.pack_int2([1, -2, 0, -1, 1]).view(np.uint8).tolist() == [0b11_00_10_01, 0b01]
    np.testing.assert_array_equal(
        packing.unpack_int2(np.array([0b11_00_10_01], np.uint8)), [1, -2, 0, -1]
    )


def test_pack_rejects_out_of_range_and_bad_bits():
    with pytest.raises(ValueError, match=r"\[-8, 7\].*flat index 1 holds 8"):
        packing.pack_int4([0, 8])
    with pytest.raises(ValueError, match=r"\[-2, 1\]"):
        packing.pack_int2([-3])
    with pytest.raises(ValueError, match="bits must be one of"):
        packing.pack([1], 3)
    with pytest.raises(TypeError):
        packing.pack(np.array([0.5]), 4)


@pytest.mark.parametrize("bits", BITS)
def test_c_pack_matches_python(k, bits, rng):
    lo, hi = intmath.int_range(bits)
    for n in (1, 2, 3, 5, 8, 13, 64, 255):
        v = rng.integers(lo, hi + 1, n)
        np.testing.assert_array_equal(k.pack(v, bits), packing.pack(v, bits))
        np.testing.assert_array_equal(k.unpack(packing.pack(v, bits), bits, n), v)
    with pytest.raises(kernels.KernelArgumentError, match="EDGEPLUS_ERR_ARG.*'values'"):
        k.pack([hi + 1], bits)


# ----------------------------------------------------------------------------- requant


def _tflite_mbqm_literal(x: int, m: int, s: int) -> int:
    """TFLite's MultiplyByQuantizedMultiplier written out with Python ints."""
    left, right = max(s, 0), max(-s, 0)
    x = ((x << left) + 2**31) % 2**32 - 2**31
    if x == m == -(2**31):
        h = 2**31 - 1
    else:
        ab = x * m
        nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
        h = (
            int((ab + nudge) / 2**31)
            if abs(ab + nudge) < 2**52
            else ((ab + nudge) // 2**31 if ab + nudge >= 0 else -((-(ab + nudge)) // 2**31))
        )
    mask = (1 << right) - 1
    rem, thr = h & mask, (mask >> 1) + (1 if h < 0 else 0)
    return (h >> right) + (1 if rem > thr else 0)


def test_requant_reference_matches_tflite_formula(rng):
    accs = np.concatenate([rng.integers(-(2**31), 2**31, 3000), [-(2**31), 2**31 - 1, 0, 1, -1]])
    mults = rng.integers(1 << 30, 2**31, accs.size)
    shifts = rng.integers(-31, 10, accs.size)
    got = intmath.multiply_by_quantized_multiplier(accs, mults, shifts)
    want = [_tflite_mbqm_literal(int(a), int(m), int(s)) for a, m, s in zip(accs, mults, shifts)]
    np.testing.assert_array_equal(got, want)
    # gemmlowp's two roundings: the doubling high mul rounds halves up (-1.5 -> -1),
    # RoundingDivideByPOT rounds halves away from zero (-1.5 -> -2)
    assert intmath.multiply_by_quantized_multiplier([3, -3, 5, -5], 1 << 30, 0).tolist() == [
        2,
        -1,
        3,
        -2,
    ]
    assert intmath.rounding_divide_by_pot([3, -3, 5, -5], 1).tolist() == [2, -2, 3, -3]


def test_c_requantize_matches_reference(k, rng):
    accs = np.concatenate([rng.integers(-(2**31), 2**31, 1500), rng.integers(-3000, 3000, 500)])
    mults = rng.integers(1 << 30, 2**31, accs.size)
    shifts = rng.integers(-31, 31, accs.size)
    assert_same(
        k.requantize(accs, mults, shifts),
        intmath.multiply_by_quantized_multiplier(accs, mults, shifts).astype(np.int32),
        "requantize",
    )


def test_quantize_multiplier_tflite_semantics():
    for real in (0.5, 0.75, 1.0, 1e-3, 3.999, 2.0**-40, 123.0):
        m, s = intmath.quantize_multiplier(real)
        if real < 2.0**-32:
            assert (m, s) == (0, 0)
            continue
        assert 2**30 <= m < 2**31
        assert abs(m * 2.0 ** (s - 31) - real) <= real * 2.0**-30
    # half-way mantissa rounds up (TfLiteRound), not to even
    real = (2**30 + 0.5) / 2**31
    assert intmath.quantize_multiplier(real) == (2**30 + 1, 0)


# ----------------------------------------------------------------------------- reference properties


def _naive_conv_acc(x, w, p: ref.ConvParams, out_hw, depthwise):
    n, ih, iw, c = x.shape
    oh, ow = out_hw
    oc = c if depthwise else w.shape[0]
    acc = np.zeros((n, oh, ow, oc), np.int64)
    for b, oy, ox, o in itertools.product(range(n), range(oh), range(ow), range(oc)):
        s = 0
        for ky, kx in itertools.product(range(w.shape[1]), range(w.shape[2])):
            iy = oy * p.stride_h - p.pad_h + ky * p.dilation_h
            ix = ox * p.stride_w - p.pad_w + kx * p.dilation_w
            if not (0 <= iy < ih and 0 <= ix < iw):
                continue
            if depthwise:
                s += int(w[0, ky, kx, o]) * (int(x[b, iy, ix, o]) - p.input_zero_point)
            else:
                for i in range(c):
                    s += int(w[o, ky, kx, i]) * (int(x[b, iy, ix, i]) - p.input_zero_point)
        acc[b, oy, ox, o] = s
    return acc


@pytest.mark.parametrize("depthwise", [False, True])
@pytest.mark.parametrize(
    "stride,padding,dilation", [(1, "SAME", 1), (2, "VALID", 1), (2, "SAME", 1), (1, "SAME", 2)]
)
def test_reference_accumulators_match_naive_loops(depthwise, stride, padding, dilation, rng):
    case = golden.random_conv_case(
        rng,
        in_bits=4,
        w_bits=2,
        out_bits=8,
        depthwise=depthwise,
        n=2,
        h=6,
        w=5,
        c=3,
        oc=4,
        stride=stride,
        padding=padding,
        dilation=dilation,
    )
    acc = ref.conv2d_accumulators(
        case.x, case.w, case.params, output_hw=case.output_hw, depthwise=depthwise
    )
    np.testing.assert_array_equal(
        acc, _naive_conv_acc(case.x, case.w, case.params, case.output_hw, depthwise)
    )


def test_depthwise_equals_conv_with_diagonal_filter(rng):
    case = golden.random_conv_case(rng, in_bits=8, w_bits=4, depthwise=True, c=5)
    c = case.x.shape[3]
    diag = np.zeros((c, *case.w.shape[1:3], c), np.int8)
    for i in range(c):
        diag[i, :, :, i] = case.w[0, :, :, i]
    a = ref.conv2d(
        case.x, diag, case.bias, case.multiplier, case.shift, case.params, output_hw=case.output_hw
    )
    np.testing.assert_array_equal(a, case.reference())


def test_reference_geometry_matches_tflite():
    # TFLite: SAME out = ceil(in/s), pad = total//2 (extra at the bottom); VALID no pad
    assert ref.conv_geometry((5, 6), (3, 3), 2, "SAME") == ((3, 3), (1, 0))
    assert ref.conv_geometry((4, 4), (3, 3), 2, "SAME") == ((2, 2), (0, 0))
    assert ref.conv_geometry((7, 7), (3, 3), 2, "VALID") == ((3, 3), (0, 0))
    assert ref.conv_geometry((7, 7), (3, 3), 1, "SAME", 2) == ((7, 7), (2, 2))


def test_max_kc_table_matches_header():
    header = (REPO / "tflm_ops/include/edgeplus/edgeplus_ops.h").read_text()
    for ib in BITS:
        row = " ".join(f"{ref.max_kc(ib, wb):,}" for wb in (8, 4, 2))
        assert row.split() == [
            t for t in header.split(f"\n *     {ib}  ", 1)[1].split("\n")[0].split()
        ], row


# ----------------------------------------------------------------------------- C vs reference


@pytest.mark.parametrize("in_bits,w_bits,out_bits", list(itertools.product(BITS, BITS, BITS)))
def test_c_conv_matches_reference_all_bit_combos(k, in_bits, w_bits, out_bits):
    rng = np.random.default_rng(in_bits * 100 + w_bits * 10 + out_bits)
    geoms = [(1, "SAME", 1), (2, "VALID", 1), (2, "SAME", 1), (1, "VALID", 2)]
    for depthwise, (stride, padding, dil) in itertools.product((False, True), geoms):
        h, w = int(rng.integers(5, 10)), int(rng.integers(5, 10))
        c = int(rng.choice([1, 3, 5, 8]))
        oc = int(rng.choice([1, 2, 3, 7]))
        kk = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        case = golden.random_conv_case(
            rng,
            in_bits=in_bits,
            w_bits=w_bits,
            out_bits=out_bits,
            depthwise=depthwise,
            n=int(rng.integers(1, 3)),
            h=h,
            w=w,
            c=c,
            oc=oc,
            k=kk,
            stride=stride,
            padding=padding,
            dilation=dil,
            bias=bool(rng.integers(0, 2)),
            relu=bool(rng.integers(0, 2)),
        )
        assert_same(
            run_c(k, case),
            case.reference(),
            f"{'dw' if depthwise else 'conv'} a{in_bits}w{w_bits}o{out_bits} s{stride} "
            f"{padding} d{dil} x{case.x.shape} w{case.w.shape}",
        )


def _border_windows(oh, ow):
    mid_y, mid_x = oh // 2, ow // 2
    return [
        (0, 0, 2, 2),
        (0, ow - 2, 2, 2),
        (oh - 2, 0, 2, 2),
        (oh - 2, ow - 2, 2, 2),  # corners
        (0, 1, 1, ow - 2),
        (oh - 1, 1, 1, ow - 2),
        (1, 0, oh - 2, 1),
        (1, ow - 1, oh - 2, 1),
        (mid_y, mid_x, 1, 1),
        (1, 1, oh - 2, ow - 2),
        (0, 0, oh, ow),
    ]


@pytest.mark.parametrize(
    "in_bits,w_bits,out_bits", [(8, 8, 8), (4, 4, 4), (2, 2, 2), (2, 4, 8), (8, 2, 4), (4, 8, 2)]
)
@pytest.mark.parametrize("depthwise", [False, True])
@pytest.mark.parametrize("stride", [1, 2])
def test_c_patch_windows_at_every_border(k, in_bits, w_bits, out_bits, depthwise, stride):
    rng = np.random.default_rng(7 + stride)
    base = golden.random_conv_case(
        rng,
        in_bits=in_bits,
        w_bits=w_bits,
        out_bits=out_bits,
        depthwise=depthwise,
        h=9,
        w=11,
        c=3,
        oc=5,
        stride=stride,
    )
    oh, ow = base.output_hw
    full_ref = base.reference()
    for win in _border_windows(oh, ow):
        for margin in (None, 0, 1):
            case = golden.random_conv_case(
                np.random.default_rng(7 + stride),
                in_bits=in_bits,
                w_bits=w_bits,
                out_bits=out_bits,
                depthwise=depthwise,
                h=9,
                w=11,
                c=3,
                oc=5,
                stride=stride,
                window=win,
                region_margin=margin,
            )
            want = case.reference()
            # the reference window equals the slice of the whole reference output
            np.testing.assert_array_equal(
                want, full_ref[:, win[0] : win[0] + win[2], win[1] : win[1] + win[3], :]
            )
            lo, hi = intmath.int_range(out_bits)
            reg_hw = case.output_region[2:] if case.output_region else case.output_hw
            sentinel = rng.integers(lo, hi + 1, (1, *reg_hw, full_ref.shape[3])).astype(np.int8)
            got = run_c(k, case, out=sentinel)
            assert_same(window_of(got, case), want, f"window {win} margin {margin}")
            # everything outside the window is untouched (incl. packed neighbours)
            mask = np.ones(got.shape, bool)
            oy, ox = case.output_region[:2] if case.output_region else (0, 0)
            mask[:, win[0] - oy : win[0] - oy + win[2], win[1] - ox : win[1] - ox + win[3], :] = (
                False
            )
            np.testing.assert_array_equal(got[mask], sentinel[mask])


@pytest.mark.parametrize("c", [71, 160, 201])
def test_c_w2a2_long_k_paired_lane_flush(k, c):
    """K*C well past EDGEPLUS_W2A2_FLUSH (160 words = 640 values) at extreme values."""
    rng = np.random.default_rng(c)
    case = golden.random_conv_case(
        rng, in_bits=2, w_bits=2, out_bits=8, h=4, w=4, c=c, oc=3, padding="VALID"
    )
    assert_same(run_c(k, case), case.reference(), f"c={c}")
    # all-extreme values: |x - zp| = 3, w = -2 everywhere: the largest lane fields
    x = np.full_like(case.x, 1)
    w = np.full_like(case.w, -2)
    p = case.params.replace(input_zero_point=-2)
    got = k.conv2d(x, w, None, case.multiplier, case.shift, p, output_hw=case.output_hw)
    want = ref.conv2d(x, w, None, case.multiplier, case.shift, p, output_hw=case.output_hw)
    assert_same(got, want, f"extreme c={c}")


@pytest.mark.parametrize(
    "h,w,c,oc,kk,stride,out_bits",
    [
        (6, 7, 16, 5, 3, 1, 4),  # whole-word weight rows, a lone last channel, 2 chunks
        (5, 5, 4, 4, 3, 2, 8),  # K*C = 36: a byte after whole words; 9 pixels: a partial quad
        (5, 5, 3, 4, 3, 1, 4),  # K*C = 27: rows off a byte, the int16 path
        (4, 9, 64, 3, 1, 1, 4),  # a 1x1 of 64 channels: one chunk
        (3, 3, 90, 2, 3, 1, 8),  # K*C = 810: many chunks
    ],
)
def test_c_w4a4_field_path(k, h, w, c, oc, kk, stride, out_bits):
    """4-bit activations x narrow-range 4-bit weights take the 64-bit field path (four
    products per SMLAL, decoded every chunk); a filter holding -8, or K*C odd, the int16
    path. Random values, then every product at the field bound (|x - zp| = 15, w = +-7)."""
    rng = np.random.default_rng(c * 10 + oc)
    case = golden.random_conv_case(
        rng, in_bits=4, w_bits=4, out_bits=out_bits, h=h, w=w, c=c, oc=oc, k=kk,
        stride=stride, bias=True,
    )  # fmt: skip
    narrow = np.clip(case.w, -7, 7)
    with_min = narrow.copy()
    with_min.flat[int(rng.integers(0, narrow.size))] = -8
    extreme = case.params.replace(input_zero_point=-8)
    for x, wt, p, what in (
        (case.x, narrow, case.params, "narrow"),
        (case.x, with_min, case.params, "holding -8"),
        (np.full_like(case.x, 7), np.full_like(narrow, 7), extreme, "all +105"),
        (np.full_like(case.x, 7), np.full_like(narrow, -7), extreme, "all -105"),
    ):
        acc = ref.conv2d_accumulators(x, wt, p, output_hw=case.output_hw)
        mult, shift = golden.calibrate_requant(acc, case.bias, out_bits, rng)
        got = k.conv2d(x, wt, case.bias, mult, shift, p, output_hw=case.output_hw)
        want = ref.conv2d(x, wt, case.bias, mult, shift, p, output_hw=case.output_hw)
        assert_same(got, want, f"{what} x{x.shape} w{wt.shape}")


@pytest.mark.parametrize("bits", [(8, 8, 8), (4, 4, 4), (2, 2, 2)])
def test_c_scratch_sizes_give_same_result(k, bits):
    """Default, fast (weight cache), lean, reduced and minimal scratch: same bytes; below:
    refused."""
    rng = np.random.default_rng(3)
    case = golden.random_conv_case(
        rng, in_bits=bits[0], w_bits=bits[1], out_bits=bits[2], h=8, w=40, c=8, oc=7
    )
    want = case.reference()
    shapes = (case.params, case.input_shape, case.w.shape)
    default = k.conv2d_get_buffer_size(*shapes, case.output_shape)
    fast = k.conv2d_get_buffer_size_fast(*shapes, case.output_shape)
    lean = k.conv2d_get_buffer_size_lean(*shapes, case.output_shape)
    minimum = k.conv2d_get_buffer_size_lean(*shapes, (1, 1, 1, case.output_shape[3]))
    assert minimum < lean < default < fast
    sizes = (fast, fast + 13, default, default - 1, lean, (lean + minimum) // 2, minimum)
    for size in sizes:
        assert_same(run_c(k, case, scratch_bytes=size), want, f"scratch {size}")
    with pytest.raises(kernels.KernelScratchError, match="EDGEPLUS_ERR_SCRATCH.*'scratch_bytes'"):
        run_c(k, case, scratch_bytes=minimum - 9)


def test_c_requant_fast_and_literal_paths(k):
    """Big biases / left shifts push channels off the SMMULR fast path: both paths agree."""
    rng = np.random.default_rng(5)
    case = golden.random_conv_case(rng, in_bits=8, w_bits=8, out_bits=8, h=5, w=6, c=3, oc=6)
    bias = np.array([2**29, -(2**29), 5, -7, 2**30 + 3, 0], np.int64)
    shift = np.array([-30, -30, 7, 20, -31, 0], np.int64)
    mult = np.array([2**30, 2**31 - 1, 1518500250, 2**30 + 1, 2**31 - 1, 1234567890], np.int64)
    for m, s in ((mult, shift), (mult[::-1].copy(), np.array([3, -1, -5, 0, 1, -12]))):
        got = k.conv2d(case.x, case.w, bias, m, s, case.params, output_hw=case.output_hw)
        want = ref.conv2d(case.x, case.w, bias, m, s, case.params, output_hw=case.output_hw)
        assert_same(got, want, "requant paths")


def test_c_input_region_matches_reference(k):
    p, _ = ref.make_conv_params((9, 11), (3, 3), stride=2, padding="SAME")
    for win in _border_windows(5, 6):
        assert k.conv_input_region(p, (1, 9, 11, 3), (4, 3, 3, 3), win) == ref.conv_input_region(
            p, (9, 11), (3, 3), win
        )


# ----------------------------------------------------------------------------- errors


def _bad_cases():
    """(name, mutation of (params, shapes, window, regions), C status)."""
    return [
        ("in_bits", {"params": {"in_bits": 3}}, "EDGEPLUS_ERR_BITS"),
        ("w_bits", {"params": {"w_bits": 16}}, "EDGEPLUS_ERR_BITS"),
        ("out_bits", {"params": {"out_bits": 1}}, "EDGEPLUS_ERR_BITS"),
        ("window", {"window": (4, 0, 2, 2)}, "EDGEPLUS_ERR_WINDOW"),
        ("window", {"window": (-1, 0, 2, 2)}, "EDGEPLUS_ERR_WINDOW"),
        (
            "input_region",
            {"window": (0, 0, 2, 2), "input_region": (1, 0, 3, 5)},
            "EDGEPLUS_ERR_WINDOW",
        ),
        (
            "output_region",
            {"window": (0, 0, 2, 2), "output_region": (0, 0, 9, 9)},
            "EDGEPLUS_ERR_WINDOW",
        ),
        ("window", {"window": (0, 0, 2, 2), "output_region": (1, 1, 2, 2)}, "EDGEPLUS_ERR_WINDOW"),
        ("stride_h", {"params": {"stride_h": 0}}, "EDGEPLUS_ERR_ARG"),
        ("input_zero_point", {"params": {"input_zero_point": 8}}, "EDGEPLUS_ERR_ARG"),
        ("act_min", {"params": {"act_min": 5, "act_max": 4}}, "EDGEPLUS_ERR_ARG"),
        ("pad_w", {"params": {"pad_w": 3}}, "EDGEPLUS_ERR_ARG"),
        ("output shape", {"output_hw": (9, 5)}, "EDGEPLUS_ERR_DIMS"),
    ]


@pytest.mark.parametrize("arg,mutation,status", _bad_cases())
def test_c_errors_name_status_and_argument(k, arg, mutation, status):
    rng = np.random.default_rng(0)
    case = golden.random_conv_case(rng, in_bits=4, w_bits=4, out_bits=4, h=5, w=5, c=2, oc=3)
    params = case.params.replace(**mutation.get("params", {}))
    kwargs = {
        "output_hw": mutation.get("output_hw", case.output_hw),
        "window": mutation.get("window"),
    }
    x = case.x
    if "input_region" in mutation:
        r = mutation["input_region"]
        kwargs.update(input_region=r, input_hw=(5, 5))
        x = case.x[:, r[0] : r[0] + r[2], r[1] : r[1] + r[3], :]
    if "output_region" in mutation:
        kwargs["output_region"] = mutation["output_region"]
    with pytest.raises(kernels.KernelError) as ei:
        k.conv2d(x, case.w, case.bias, case.multiplier, case.shift, params, **kwargs)
    e = ei.value
    assert e.status == status, str(e)
    assert e.argument == arg, str(e)
    assert status in str(e) and repr(arg) in str(e)
    # the reference's own check agrees with what the C named
    with pytest.raises(ref.ConvArgumentError) as er:
        ref.check_conv_args(
            params,
            case.input_shape,
            case.w.shape,
            (1, *kwargs["output_hw"], 3),
            window=kwargs["window"],
            input_region=kwargs.get("input_region"),
            output_region=kwargs.get("output_region"),
        )
    assert (er.value.status, er.value.argument) == (status, arg)


def test_c_error_classes(k):
    rng = np.random.default_rng(1)
    case = golden.random_conv_case(rng, in_bits=8, w_bits=8, out_bits=8, h=4, w=4, c=2, oc=2)
    with pytest.raises(kernels.KernelBitsError):
        k.conv2d(
            case.x,
            case.w,
            None,
            case.multiplier,
            case.shift,
            case.params.replace(in_bits=5),
            output_hw=case.output_hw,
        )
    with pytest.raises(kernels.KernelDimsError, match="'multiplier'"):
        k.conv2d(
            case.x,
            case.w,
            None,
            case.multiplier[:1],
            case.shift,
            case.params,
            output_hw=case.output_hw,
        )
    with pytest.raises(kernels.KernelArgumentError, match="'x'"):
        k.conv2d(
            case.x.astype(np.int16) * 1000,
            case.w,
            None,
            case.multiplier,
            case.shift,
            case.params,
            output_hw=case.output_hw,
        )
    with pytest.raises(kernels.KernelDimsError, match="'filter shape'"):
        k.depthwise_conv2d(
            case.x, case.w, None, case.multiplier, case.shift, case.params, output_hw=case.output_hw
        )
    assert issubclass(kernels.KernelWindowError, ValueError)


# ----------------------------------------------------------------------------- bit-flip


@pytest.mark.parametrize("bits", BITS)
def test_bitflip_reference_and_c(k, bits, rng):
    lo, hi = intmath.int_range(bits)
    for n in (1, 7, 64, 333):
        w = rng.integers(lo, hi + 1, n)
        w[0] = lo
        u = rng.integers(-1, 2, n)
        new, changed = bfr.bitflip_apply(w, u, bits)
        nlo, nhi = intmath.narrow_range(bits)
        assert new.min() >= nlo and new.max() <= nhi
        np.testing.assert_array_equal(new, np.clip(w + u, nlo, nhi))
        assert changed == int(np.count_nonzero(new != w))
        got, c_changed = k.bitflip_apply(w, u, bits)
        assert_same(got, new, f"bitflip bits={bits} n={n}")
        assert c_changed == changed
        # packed API keeps the unused tail bits of the last byte
        packed = packing.pack(w, bits).view(np.uint8).copy()
        if (n * bits) % 8:
            packed[-1] |= np.uint8((0xFF << ((n * bits) % 8)) & 0xFF)
        gp, _ = k.bitflip_apply_packed(packed, u, bits)
        rp, _ = bfr.bitflip_apply_packed(packed, u, bits)
        np.testing.assert_array_equal(gp.view(np.uint8), rp.view(np.uint8))


def test_bitflip_errors(k):
    with pytest.raises(kernels.KernelArgumentError, match="EDGEPLUS_ERR_ARG.*'update'"):
        k.bitflip_apply(np.array([1, 2]), np.array([0, 2]), 4)
    with pytest.raises(ValueError, match="-1, 0 or \\+1"):
        bfr.bitflip_apply(np.array([1, 2]), np.array([0, 2]), 4)
    with pytest.raises(ValueError, match="bits must be one of"):
        k.bitflip_apply(np.array([1]), np.array([0]), 3)


# ----------------------------------------------------------------------------- golden header


def test_golden_header_is_up_to_date():
    path = REPO / "tflm_ops/tests/golden_cases.h"
    assert path.read_text() == golden.render_header(), (
        "tflm_ops/tests/golden_cases.h is stale: regenerate it with "
        "`python -m tests.builders.golden --out tflm_ops/tests/golden_cases.h`"
    )
    assert path.stat().st_size < 32_000


def test_golden_cases_pass_through_ctypes(k):
    for case in golden.golden_conv_cases():
        assert_same(window_of(run_c(k, case), case), case.reference(), case.name)


# ----------------------------------------------------------------------------- loading


def test_missing_compiler_gives_a_clear_error(monkeypatch):
    monkeypatch.setenv("CC", "no-such-cc-for-edgeplus")
    with pytest.raises(kernels.KernelBuildError, match="needs `make` and a C compiler"):
        kernels.build()


def test_library_path_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEPLUS_OPS_LIB", str(tmp_path / "lib.so"))
    assert kernels.library_path() == tmp_path / "lib.so"
    assert kernels.library_path("emudsp").name == "libedgeplus_ops_emudsp.so"
    with pytest.raises(ValueError, match="variant"):
        kernels.library_path("avx")


def test_binding_is_read_from_the_headers(k):
    """The ctypes structs and signatures come from the C headers (kernel_abi): the Python
    mirrors of the C structs hold the same fields, every prototype is bound, and a C type
    the parser does not know is refused, not guessed."""
    abi = load_abi()
    assert abi.field_names("edgeplus_conv_params") == tuple(
        f.name for f in dataclasses.fields(ref.ConvParams)
    )
    result_fields = abi.field_names("edgeplus_qcore_step_result")
    assert set(result_fields) <= {f.name for f in dataclasses.fields(StepResult)}
    exported = subprocess.run(
        ["nm", "-D", "--defined-only", str(kernels.library_path(k.variant))],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    public = set(re.findall(r" T (edgeplus_[a-z0-9]\w*)", exported))
    assert public == set(abi.parsed.functions), public ^ set(abi.parsed.functions)
    for name, (ret, args) in abi.parsed.functions.items():
        fn = getattr(k.lib, name)
        assert fn.argtypes == [abi.ctype(a.base, a.depth) for a in args], name
    ret, args = abi.parsed.functions["edgeplus_patch_stage"]
    assert [a.ctype for a in args] == [
        "edgeplus_context*", "int32_t*", "int32_t", "int8_t**", "int8_t*", "int8_t*"
    ] and ret.ctype == "edgeplus_status"  # fmt: skip
    assert ctypes.sizeof(abi.struct("edgeplus_conv_params")) == 14 * 4
    odd = kernel_abi.parse_headers(["typedef struct { float scale; } odd_t;"])
    with pytest.raises(kernel_abi.AbiError, match="float"):
        kernel_abi.Abi(odd)


def test_status_names_match_c(k):
    statuses = load_abi().parsed.enums["edgeplus_status"]
    assert len(statuses) == 9
    for name, code in statuses.items():
        assert k.status_str(code) == name
    assert k.status_str(-42) == "EDGEPLUS_ERR_UNKNOWN"
