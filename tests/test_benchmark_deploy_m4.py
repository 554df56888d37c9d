"""benchmarks/deploy_m4.py: its M4 program's output parser, and (with the Arduino core, the
Chirale TFLM library and the ARM tools) one builtin model and one model with our op run on the
emulated M4 exactly as in the host TFLM. The benchmark's own training loop is exercised by its
--quick run, not here (a QAT MobileNetV2 is minutes)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from benchmarks import deploy_m4 as D
from tfmot_edgeplus.export.arduino import FLASH_BYTES

RUN = """CALIB instr_per_tick_x1000=40000
MODEL_ARENA used=2788 size=4832
MODEL_RUN sample=0 instructions=157640 output=80ff7f
MODEL_RUN sample=1 instructions=157680 output=0001fe
MODEL_DONE samples=2
"""


def test_parse_output_reads_every_run():
    got = D.parse_output(RUN, 2)
    assert (got["arena_used"], got["arena_size"]) == (2788, 4832)
    assert got["instructions"] == [157640, 157680]
    assert got["outputs"].tolist() == [[-128, -1, 127], [0, 1, -2]]


@pytest.mark.parametrize(
    "text, samples, message",
    [
        (RUN.replace("MODEL_DONE samples=2\n", ""), 2, "incomplete (2 of 2 runs)"),
        (RUN, 3, "incomplete (2 of 3 runs)"),
        (RUN.replace("40000", "1000"), 2, "calibration 1000"),
        ("CALIB instr_per_tick_x1000=40000\nMODEL_ERROR what=AllocateTensors\n", 1,
         "failed: AllocateTensors"),
    ],
)  # fmt: skip
def test_parse_output_refuses_errors_and_missing_lines(text, samples, message):
    with pytest.raises(D.DeployError, match=message.replace("(", r"\(").replace(")", r"\)")):
        D.parse_output(text, samples)


def test_a_different_m4_output_is_an_error_not_a_figure():
    host = np.zeros((3, 4), np.int8)
    m4 = host[:2].copy()
    D.check_same_outputs("m", m4, host)  # the first len(m4) host rows
    m4[1, 2] = 3
    with pytest.raises(D.DeployError, match="differ from the host TFLM's on 1 of 8 values"):
        D.check_same_outputs("m", m4, host)


_TOOLS = [t for t in ("arm-none-eabi-g++", "qemu-system-arm") if shutil.which(t) is None]
_ENV = [v for v in ("EDGEPLUS_ARDUINO_CORE", "EDGEPLUS_ARDUINO_TFLM") if not os.environ.get(v)]
needs_bed = pytest.mark.skipif(
    bool(_TOOLS or _ENV),
    reason=f"{', '.join(_TOOLS + _ENV)} missing: the M4 program is built with the Nano 33 BLE "
    "core's recipes and Chirale_TensorFLowLite (README; EDGEPLUS_ARDUINO_API too) and run in "
    "qemu-system-arm",
)


@pytest.fixture(scope="module")
def m4(tmp_path_factory):
    return D.M4Bed.build(tmp_path_factory.mktemp("deploy_m4"))


@needs_bed
@pytest.mark.slow
def test_a_builtin_model_runs_on_the_m4_like_the_host(m4, digits_fp):
    """small_cnn (digits, 8x8, width 8) at W8A8 through the plain converter: CMSIS-NN builtins
    only; the row's figures come from the M4 program."""
    from benchmarks.qat_bits import build_qat
    from tfmot_edgeplus import convert

    fp, data = digits_fp
    model = convert(build_qat(fp, "edgeplus", 8, 8), data.x_train[:64])
    x = D.quantize_input(model, data.x_test[:40])
    row = D.deploy_row(m4, "digits_int8", model, x, data.y_test[:40], 2)
    assert row["operators"] == "CONV_2D+DEPTHWISE_CONV_2D+FULLY_CONNECTED+MAX_POOL_2D+RESHAPE"
    assert row["m4_samples"] == 2 and 0 <= row["acc"] <= 1
    assert 50_000 < row["m4_instructions"] < 2_000_000  # about 160k measured
    assert 0 < row["arena_bytes"] < 16_384 and row["model_bytes"] == len(model)
    assert row["model_bytes"] < row["flash_bytes"] < FLASH_BYTES


@needs_bed
@pytest.mark.skipif(
    not os.environ.get("EDGEPLUS_TFLM_ROOT") and not os.environ.get("EDGEPLUS_TFLM_LIB"),
    reason="EDGEPLUS_TFLM_ROOT (and siblings) or EDGEPLUS_TFLM_LIB not set: the host TFLM "
    "needs our glue to run EDGEPLUS_CONV_MP",
)
def test_our_op_runs_on_the_m4_like_the_host(m4):
    """One EDGEPLUS_CONV_MP (W4, 3x3, int8 in and out) registered by EdgePlusAddModelOps
    on the board's TFLM: bit for bit the host TFLM's output with our glue."""
    from builders.tflite_models import ConvMPSpec, build_conv_mp_model

    rng = np.random.default_rng(0)
    spec = ConvMPSpec(
        input_shape=(1, 6, 6, 8), weights=rng.integers(-7, 8, (8, 3, 3, 8)), in_bits=8,
        w_bits=4, out_bits=8, input_scale=0.05, input_zero_point=-3,
        weight_scales=tuple(rng.uniform(0.01, 0.03, 8)), output_scale=0.2,
        output_zero_point=5, bias=rng.integers(-200, 200, 8),
    )  # fmt: skip
    model = build_conv_mp_model(spec)
    x = rng.integers(-128, 128, (3, 6, 6, 8)).astype(np.int8)
    row = D.deploy_row(m4, "conv_mp_w4", model, x, np.zeros(3, int), 3)
    assert row["operators"] == "EDGEPLUS_CONV_MP"
    assert row["m4_samples"] == 3 and row["m4_instructions"] > 6 * 6 * 8 * 72  # >= 1 per MAC


@pytest.fixture(scope="module")
def mixed(digits_fp):
    """The ``mixed`` config of small_cnn on the digits: its W8A8 QAT model converted by the
    plain converter, planned and deployed with the patch stage op."""
    from benchmarks.qat_bits import build_qat
    from tfmot_edgeplus import convert

    fp, data = digits_fp
    int8 = convert(build_qat(fp, "edgeplus", 8, 8), data.x_train[:64])
    config = D.Config.quick(calib_samples=32)
    return int8, *D.mixed_model(int8, data.x_train[:32], config), data


def test_the_mixed_config_is_the_quantmcu_plan_on_our_stage_op(mixed):
    from tfmot_edgeplus.core.tflite import TFLiteGraph
    from tfmot_edgeplus.patching import lower
    from tfmot_edgeplus.patching.patch_runner import PatchStageRunner
    from tfmot_edgeplus.runtime import TFLMRunner

    int8, deployed, plan, tried, data = mixed
    g = TFLiteGraph(deployed)
    ops = [g.op_name(op) for op in g.operators]
    assert ops.count("EDGEPLUS_PATCH_STAGE") == 1 and "MAX_POOL_2D" in ops
    # a pooling step ends the stage: small_cnn's stage is its first conv (BN, ReLU fused)
    assert plan.split == "quant_relu1" and plan.halo <= 1.5
    assert len(tried) == 1 and tried[0]["calib_agreement"] >= 0.95
    # on 8-bit weights no lower bit-width saves instructions: the maps stay at 8 bits, and
    # the deployed model is the int8 model's outputs bit for bit
    assert set(plan.bits.values()) == {8}
    x = D.quantize_input(deployed, data.x_test[:16])
    got = PatchStageRunner(int8, lower.lower(int8, plan), backend="numpy").predict(
        x, dequantize_output=False)  # fmt: skip
    np.testing.assert_array_equal(got, TFLMRunner(int8).predict(x, dequantize=False))


@needs_bed
@pytest.mark.skipif(
    not os.environ.get("EDGEPLUS_TFLM_ROOT") and not os.environ.get("EDGEPLUS_TFLM_LIB"),
    reason="EDGEPLUS_TFLM_ROOT (and siblings) or EDGEPLUS_TFLM_LIB not set: the host TFLM "
    "needs our glue to run EDGEPLUS_PATCH_STAGE",
)
def test_the_mixed_config_runs_on_the_m4_like_the_host(m4, mixed):
    _, deployed, _, _, data = mixed
    x = D.quantize_input(deployed, data.x_test[:40])
    row = D.deploy_row(m4, "digits_mixed", deployed, x, data.y_test[:40], 2)
    assert "EDGEPLUS_PATCH_STAGE" in row["operators"] and row["m4_samples"] == 2
    assert 50_000 < row["m4_instructions"] < 4_000_000 and 0 < row["arena_bytes"] < 32_768
