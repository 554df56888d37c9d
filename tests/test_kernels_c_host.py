"""The C tests of tflm_ops on the host: `make -C tflm_ops test-host` and `test-asan`.

Each target builds tflm_ops/tests/*.c with the kernels twice (plain C, and the DSP path with
SMLAD & co emulated in C) and runs them: golden vectors from the NumPy reference, bad input
(NULL, zero/negative dims, bits outside {2,4,8}, windows outside the tensor, scratch too
small), and tile-by-tile == whole-tensor equivalence. test-asan adds
-fsanitize=address,undefined (any report aborts the run). And, through the ctypes binding, the
conv kernels' scratch split at a channel count whose byte sizes pass INT32_MAX, and the conv's
lean layout against the NumPy reference on the geometries that choose its paths.
"""

from __future__ import annotations

import ctypes
import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from builders import golden
from kernel_helpers import assert_same, run_c, window_of

from tfmot_edgeplus.core.conv_reference import ConvParams
from tfmot_edgeplus.runtime import kernels
from tfmot_edgeplus.runtime.build_lock import build_lock
from tfmot_edgeplus.runtime.kernel_abi import load_abi

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    shutil.which("make") is None or shutil.which("cc") is None,
    reason="needs make and a C compiler (apt-get install make gcc)",
)


def _run(target: str) -> str:
    with build_lock():
        proc = subprocess.run(
            ["make", "-C", str(REPO / "tflm_ops"), target],
            check=False,
            capture_output=True,
            text=True,
            timeout=900,
        )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"make {target} failed (exit {proc.returncode}):\n{out[-6000:]}"
    return out


def _check_summaries(out: str, expected_runs: int) -> None:
    runs = re.findall(r"^ctests: (\d+) passed, (\d+) failed$", out, re.MULTILINE)
    assert len(runs) == expected_runs, out[-3000:]
    for passed, failed in runs:
        assert int(failed) == 0 and int(passed) > 500, out[-3000:]
    assert "FAIL " not in out


def test_c_tests_host():
    out = _run("test-host")
    _check_summaries(out, 2)
    assert "plain C path" in out and "emulated DSP path" in out


def test_c_tests_asan_ubsan():
    out = _run("test-asan")
    _check_summaries(out, 2)
    assert "runtime error" not in out and "AddressSanitizer" not in out


def test_conv_scratch_split_with_huge_channel_counts():
    """3 * 2^26 output channels with 64 bytes of scratch: EDGEPLUS_ERR_SCRATCH. The scratch
    split computed out_c * 16 in int32 (wrapped to -2^30, so 2^30 bytes seemed free) and the
    kernel wrote its 3 GB requantization table into the 64 bytes (a segfault). The quant
    arrays are lazily mapped zero pages (np.zeros): valid, and cheap to read (0.3 s)."""
    k = kernels.get_kernels()
    oc = 3 << 26
    mult, shift = np.zeros(oc, np.int32), np.zeros(oc, np.int32)
    abi = load_abi()
    i32p, i8p = ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(ctypes.c_int8)
    dims = abi.struct("edgeplus_dims")
    params = abi.struct("edgeplus_conv_params")(**dataclasses.asdict(ConvParams()))  # 8-bit
    quant = abi.struct("edgeplus_quant_params")(
        mult.ctypes.data_as(i32p), shift.ctypes.data_as(i32p)
    )
    small = np.zeros(64, np.int8)
    ctx = abi.struct("edgeplus_context")(small.ctypes.data, small.size)
    one = dims(1, 1, 1, 1)
    filt, out = dims(oc, 1, 1, 1), dims(1, 1, 1, oc)
    ptr = small.ctypes.data_as(i8p)  # never read or written: the call is refused
    st = k.lib.edgeplus_conv2d(ctypes.byref(ctx), ctypes.byref(params), ctypes.byref(quant),
                               ctypes.byref(one), ptr, ctypes.byref(filt), ptr, None,
                               ctypes.byref(out), ptr)  # fmt: skip
    assert k.status_str(st) == "EDGEPLUS_ERR_SCRATCH"
    assert not small.any()


# in_bits, w_bits, out_bits, in_c, out_c, filter, input h, w: what the lean layout does there
LEAN_CONV = [
    (8, 8, 8, 3, 5, (3, 3), 5, 7),  # K*C 27: a partial last weight word
    (4, 4, 4, 3, 6, (3, 3), 5, 6),  # odd K*C with 4-bit weights: the unpacking path
    (2, 2, 2, 2, 3, (3, 3), 4, 5),  # 2-bit rows not on a byte: the unpacking path
    (2, 2, 4, 6, 5, (2, 2), 5, 5),  # paired lanes from an int16 column (in_c % 4 != 0)
    (2, 2, 2, 80, 3, (3, 3), 3, 4),  # K*C 720: the lanes are decoded mid-row
    (2, 2, 2, 4, 40, (1, 1), 4, 5),  # lanes without the requantization table (40 channels)
    (8, 2, 8, 8, 4, (1, 1), 3, 3),  # 2-bit weights x64
    (4, 8, 2, 8, 7, (3, 3), 6, 7),  # 8-bit weights, 2-bit output (staging)
    (8, 4, 8, 65800, 2, (1, 1), 2, 2),  # K*C x 16 past the bound: the unpacking path
]


@pytest.mark.parametrize("in_bits,w_bits,out_bits,c,oc,kernel,h,w", LEAN_CONV)
def test_conv_lean_layouts(k, in_bits, w_bits, out_bits, c, oc, kernel, h, w):
    """The conv's lean layout (packed weights read straight from the filter, 4 pixels per
    dot product; or the unpacking path where rows do not start on a byte or the scaled
    sums could overflow) gives the reference's bytes at the lean scratch, at the minimum
    and in between, on a window and the whole tensor; 9 bytes below the minimum (8 are
    alignment slack) it refuses."""
    rng = np.random.default_rng(c * 7 + oc)
    for window in (None, (1, 1, h - 1, max(w - 2, 1))):
        case = golden.random_conv_case(
            rng, in_bits=in_bits, w_bits=w_bits, out_bits=out_bits, h=h, w=w, c=c, oc=oc,
            k=kernel, window=window, region_margin=None if window is None else 1,
        )  # fmt: skip
        shapes = (case.params, case.input_shape, case.w.shape)
        default = k.conv2d_get_buffer_size(*shapes, case.output_shape)
        lean = k.conv2d_get_buffer_size_lean(*shapes, case.output_shape)
        minimum = k.conv2d_get_buffer_size_lean(*shapes, (1, 1, 1, oc))
        assert 0 < minimum <= lean < default
        want = case.reference()
        for size in (lean, minimum, (minimum + default) // 2, default - 1):
            got = window_of(run_c(k, case, scratch_bytes=size), case)
            assert_same(got, want, f"scratch {size} (lean {lean}, minimum {minimum})")
        with pytest.raises(kernels.KernelScratchError, match="EDGEPLUS_ERR_SCRATCH"):
            run_c(k, case, scratch_bytes=minimum - 9)


@pytest.mark.parametrize("c,kernel", [(8, (3, 3)), (6, (2, 2))])
@pytest.mark.parametrize("relu", [False, True])
def test_conv_w2a2_threshold_outputs(k, c, kernel, relu):
    """2-bit x 2-bit conv with 2-bit outputs on windows of 64 pixels or more: the DSP path
    reads the packed weights through the lane table and requantizes by per-channel
    thresholds found with the multiplier path (fused ReLU clamps included); the reference's
    bytes on the whole tensor and on a window, at the default scratch, the lean one and the
    minimum (the requantization table fits next to the narrow lane columns there)."""
    rng = np.random.default_rng(c + 10 * relu)
    for window in (None, (0, 1, 9, 8)):
        case = golden.random_conv_case(
            rng, in_bits=2, w_bits=2, out_bits=2, h=9, w=10, c=c, oc=5, k=kernel,
            relu=relu, window=window,
        )  # fmt: skip
        shapes = (case.params, case.input_shape, case.w.shape)
        lean = k.conv2d_get_buffer_size_lean(*shapes, case.output_shape)
        minimum = k.conv2d_get_buffer_size_lean(*shapes, (1, 1, 1, 5))
        for size in (None, lean, minimum):
            got = window_of(run_c(k, case, scratch_bytes=size), case)
            assert_same(got, case.reference(), f"window {window} scratch {size}")
