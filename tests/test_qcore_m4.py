"""One QCore chunk calibration and its back-propagation baseline on the emulated Cortex-M4F.

``benchmarks/_qcore_m4.py`` builds ``tflm_ops/m4/qcore_bench_main.c`` on a generated case,
runs it in QEMU (instruction counts) and on the host, and reports only when the M4's QCore
results equal the NumPy reference bit for bit and its float baseline agrees with
``bp_finetune``. Here: a real converted model with a fitted calibrator (W8, two calibrated
layers, every step under the old-domain guard, back-propagation through the ReLU) and a
synthetic W4 head of three layers (a
packed odd tail, an uncalibrated middle layer, steps kept at several levels then rolled
back); plus the guard refusing a result that differs, and the error naming a missing tool.
Skipped, with the reason, without arm-none-eabi-gcc / qemu-system-arm.
"""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from qcore_helpers import converted_mlp, random_flipnet

from benchmarks import _qcore_m4
from benchmarks.kernels_m4 import BenchmarkError

_missing = [
    tool for tool in ("arm-none-eabi-gcc", "qemu-system-arm", "make") if shutil.which(tool) is None
]
needs_m4 = pytest.mark.skipif(
    bool(_missing),
    reason=f"{', '.join(_missing)} not installed (apt-get install gcc-arm-none-eabi "
    "libnewlib-arm-none-eabi qemu-system-arm); `make test` installs them on CI",
)


def _synthetic_case(seed: int = 11, dims=(20, 16, 10, 6), bits: int = 4, n: int = 36):
    """A W4 head built directly as HeadLayers (requantization from consistent float
    scales, so the baseline's float head means the same), random flip nets on layers 0
    and 2, a stand-in for the fitted calibrator with the attributes the driver reads."""
    from tfmot_edgeplus.calibration.head import HeadLayer, IntHead
    from tfmot_edgeplus.core.intmath import quantize_multiplier

    rng = np.random.default_rng(seed)
    layers, s_in, zp_in = [], 0.05, -20
    qmax = 2 ** (bits - 1) - 1
    for l in range(len(dims) - 1):
        inp, out = dims[l], dims[l + 1]
        last = l == len(dims) - 2
        w = rng.integers(-qmax, qmax + 1, (out, inp)).astype(np.int8)
        s_w = rng.uniform(0.5, 1.5, out).astype(np.float32) / (qmax * np.sqrt(inp))
        s_out = 0.15 if last else 0.08
        zp_out = int(rng.integers(-10, 10)) if last else -128
        mq = [quantize_multiplier(float(np.float32(s_in) * s) / s_out) for s in s_w]
        layers.append(
            HeadLayer(
                name=f"fc{l}",
                weights=w,
                bits=bits,
                bias=rng.integers(-200, 200, out).astype(np.int32),
                multiplier=np.array([m for m, _ in mq], np.int32),
                shift=np.array([s for _, s in mq], np.int32),
                input_zero_point=zp_in,
                output_zero_point=zp_out,
                act_min=-128 if last else zp_out,
                act_max=127,
                input_scale=float(s_in),
                weight_scale=s_w,
                output_scale=s_out,
                relu=not last,
            )
        )
        s_in, zp_in = s_out, zp_out
    head = IntHead(layers, b"")

    nets = {0: random_flipnet(rng), 2: random_flipnet(rng)}
    x = rng.integers(-128, 128, (n, dims[0])).astype(np.int8)
    y = head.forward(x).argmax(axis=1)
    y = np.where(rng.random(n) < 0.4, rng.integers(0, dims[-1], n), y)
    prior = np.concatenate([rng.integers(0, 3, 12), np.zeros(n - 12, np.int64)])
    cal = SimpleNamespace(
        head=head,
        nets=nets,
        margin=16,
        tries=6,
        max_steps=4,
        memory_size=12,
        _rng_state=int(rng.integers(1, 2**32)),
        weights=head.weights(),
    )
    return cal, x, y, prior


def _assert_counts(cost: dict) -> None:
    for key in (
        "qcore_instructions",
        "qcore_step_instructions",
        "bp_instructions",
        "bp_step_instructions",
    ):
        assert cost[key] > 0 and cost[key] % 40 == 0, (key, cost)
    for key in ("qcore_scratch_bytes", "qcore_step_scratch_bytes", "bp_scratch_bytes"):
        assert cost[key] > 0, (key, cost)
    assert cost["text_bytes"] > 0
    assert cost["qcore_step_instructions"] <= cost["qcore_instructions"]
    assert cost["bp_step_instructions"] < cost["bp_instructions"]


@pytest.fixture(scope="module")
def fitted():
    """A BitFlipCalibrator on the W8 model, fitted on a label shift (as the calibrator
    test does), and QCore U chunk of 30 shifted samples."""
    from tfmot_edgeplus.calibration.calibrator import BitFlipCalibrator

    model_bytes, x, y = converted_mlp(8)
    cal = BitFlipCalibrator(model_bytes, head_layers=2, calibrate="all", core_size=10)
    yy = (y + 1) % 5
    cal.fit((x[:10], y[:10]), [(x[100:200], yy[100:200])], chunk_size=30, episodes=4, epochs=5)
    items_x = np.concatenate([cal.old_x, cal.mem_x, cal.features(x[300:330])])
    items_y = np.concatenate([cal.old_y, cal.mem_y, yy[300:330]])
    prior = np.concatenate([cal.mem_counts, np.zeros(30, np.int64)])
    return cal, items_x, items_y, prior


@needs_m4
def test_real_calibrator_chunk_on_m4_matches_numpy(fitted):
    """Every step guarded as the calibrator guards it: the QCore's 10 items first, with the
    calibrator's guard_min_correct; the refresh over the memory and the chunk."""
    cal, x, y, prior = fitted
    weights_before = [w.copy() for w in cal.weights]
    guard = {"guard": len(cal.old_y), "guard_min_correct": cal.guard_min_correct}
    cost = _qcore_m4.m4_calibration_cost(
        cal, x, y, prior, bp_layers=[0, 1], bp_steps=30, bp_learning_rate=0.01, **guard
    )
    print("real W8 case:", cost)
    _assert_counts(cost)
    assert cost["qcore_steps"] >= 1 and cost["n"] == len(y) and len(prior) == len(y) - 10
    assert (cost["guard"], cost["guard_min_correct"]) == (10, cal.guard_min_correct)
    assert cost["calibrated_layers"] == [0, 1] and cost["bp_layers"] == [0, 1]
    assert cost["bp_weights_agree"] >= 0.99 and cost["bp_weights_agree_host"] >= 0.99
    for w0, w1 in zip(weights_before, cal.weights):  # the calibrator is left as it was
        np.testing.assert_array_equal(w0, w1)


@needs_m4
def test_synthetic_w4_three_layer_head_on_m4_matches_numpy():
    cal, x, y, prior = _synthetic_case()
    cost = _qcore_m4.m4_calibration_cost(
        cal, x, y, prior, bp_layers=[2], bp_steps=10, bp_learning_rate=0.01
    )
    print("synthetic W4 case:", cost)
    _assert_counts(cost)
    # this case keeps three steps (levels 3, 5, 5) and rolls the fourth back
    assert (cost["qcore_steps"], cost["qcore_kept"]) == (4, 3)
    assert cost["bp_weights_agree"] >= 0.99


@needs_m4
def test_a_result_that_differs_from_numpy_is_refused(monkeypatch):
    cal, x, y, prior = _synthetic_case()
    real = _qcore_m4._reference

    def tampered(*args):
        steps, w, idx, counts, state, size = real(*args)
        return steps, w, idx[::-1].copy(), counts[::-1].copy(), state, size

    monkeypatch.setattr(_qcore_m4, "_reference", tampered)
    with pytest.raises(BenchmarkError, match="chosen_checksum"):
        _qcore_m4.m4_calibration_cost(
            cal, x, y, prior, bp_layers=[2], bp_steps=10, bp_learning_rate=0.01
        )


def test_a_missing_tool_is_named(monkeypatch):
    cal, x, y, prior = _synthetic_case()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(BenchmarkError, match="arm-none-eabi-gcc not found on PATH"):
        _qcore_m4.m4_calibration_cost(
            cal, x, y, prior, bp_layers=[2], bp_steps=10, bp_learning_rate=0.01
        )
