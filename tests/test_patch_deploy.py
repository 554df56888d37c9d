"""QuantMCU deployment: a plan lowered onto the int8 .tflite (stage program), the NumPy
simulator, the rewritten models and the runners, against TFLM running the model layer by layer.

The model (``mbv2_int8`` in conftest.py) is a small MobileNetV2-style network on the real
8x8 digits upsampled to 24x24, QAT-wrapped with TF-MOT's default 8-bit scheme and converted.
"""

from __future__ import annotations

import numpy as np
import pytest

from tfmot_edgeplus import patching
from tfmot_edgeplus._compat import keras
from tfmot_edgeplus.core.program import ProgramError, StageProgram
from tfmot_edgeplus.core.tflite import TFLiteGraph
from tfmot_edgeplus.patching import PlanMismatchError, lower, simulate
from tfmot_edgeplus.patching import deploy as patch_stage
from tfmot_edgeplus.patching.patch_runner import PatchStageRunner
from tfmot_edgeplus.runtime.tflm import TFLMRunner

L = keras.layers


@pytest.fixture(scope="module")
def full(mbv2_int8):
    return TFLMRunner(mbv2_int8[1])


def _int8(full, x):
    scale, zp = full.input_details[0]["quantization"]
    from tfmot_edgeplus.core.intmath import quantize

    return quantize(x, scale, zp, np.int8)


@pytest.mark.parametrize("grid", [1, 2, 3])
def test_8bit_patch_stage_is_the_int8_model_bit_for_bit(mbv2_int8, full, grid):
    q, tfl, _, xt, _ = mbv2_int8
    p = patching.plan(q, None, grid=grid, split="quant_b3_project_bn")
    low = lower.lower(tfl, p)
    # both ZeroPadding2D are folded into their depthwise by the converter: no PAD step
    kinds = ["conv"] + ["conv", "depthwise", "conv"] * 2 + ["add"] + ["conv", "depthwise", "conv"]
    assert [s.kind_name for s in low.program.steps] == kinds
    xq = _int8(full, xt)
    rest = TFLMRunner(patch_stage.rest_model(tfl, low))
    got = rest.predict(simulate.run_stage(low.program, low.filters, xq),
                       dequantize=False)  # fmt: skip
    np.testing.assert_array_equal(got, full.predict(xq, dequantize=False))


def test_plan_from_the_tflite_and_its_check(mbv2_int8, full):
    _, tfl, xc, xt, _ = mbv2_int8
    p = patching.plan(tfl, xc, grid=2, outlier_sample_fraction=1.0, lam=0.2)
    p.check(tfl)
    # named after the (QAT-wrapped) Keras layer in the TFLite tensor name
    assert p.split.startswith("quant_b") and p.split.endswith("_project_bn"), p.split
    assert min(p.bits.values()) < 8, p.bits
    low = lower.lower(tfl, p)
    low_bits = [t.bits[0] for t in low.program.tensors]
    assert min(low_bits) < 8 and low_bits[0] == low_bits[-1] == 8
    # a low-bit map is quantized on the range VDQS chose for its normal patches
    assert set(p.ranges) == {t for t, b in p.bits.items() if b < 8}
    for name, (lo, hi) in p.ranges.items():
        i = low.tensor_index[name]
        bits = low.program.tensors[i].bits[0]
        assert low.tensor_scales[i][0] == pytest.approx((hi - min(lo, 0)) / (2**bits - 1))
    xq = _int8(full, xt)
    y = PatchStageRunner(tfl, low, backend="numpy").predict(xq, dequantize_output=False)
    assert y.shape == (len(xt), 10)
    with pytest.raises(PlanMismatchError, match="input shape"):
        p.check(patch_stage.rest_model(tfl, low))


def test_lower_refuses_a_plan_of_another_model(mbv2_int8):
    _, tfl, *_ = mbv2_int8
    inp = keras.Input((24, 24, 1))
    wide = keras.Model(inp, L.Conv2D(4, 3, padding="same", name="c")(inp))
    with pytest.raises(PlanMismatchError, match="step 'c'"):
        lower.lower(tfl, patching.plan(wide, None, grid=2))


def test_deploy_model_has_one_stage_op_with_the_program(mbv2_int8):
    from flatbuffers import flexbuffers

    _, tfl, *_ = mbv2_int8
    p = patching.plan(tfl, None, grid=2)
    low = lower.lower(tfl, p)
    dep = patch_stage.deploy_model(tfl, low)
    g = TFLiteGraph(dep)
    names = [g.op_name(op) for op in g.operators]
    assert names[0] == "EDGEPLUS_PATCH_STAGE" and names.count("EDGEPLUS_PATCH_STAGE") == 1
    assert len(names) == len(TFLiteGraph(tfl).operators) - len(low.op_indices) + 1
    op = g.operators[0]
    assert len(op.inputs) == 1 + low.program.num_slots
    opts = flexbuffers.Loads(bytes(op.customOptions))
    words = np.frombuffer(bytes(opts["program"]), dtype="<i4")
    assert StageProgram.from_words(words) == low.program
    assert len(dep) < len(tfl) + len(words) * 4 + 4096  # the stage's tensors are gone


def test_split_runner_matches_the_int8_model(mbv2_int8, full):
    _, tfl, _, xt, _ = mbv2_int8
    p = patching.plan(tfl, None, grid=3)
    xq = _int8(full, xt[:6])
    ref = full.predict(xq, dequantize=False)
    split = PatchStageRunner(tfl, p, backend="split")
    np.testing.assert_array_equal(split.predict(xq, dequantize_output=False), ref)
    assert split.peak_sram_bytes > split.stage_scratch_bytes > 0


def test_program_words_round_trip_and_reject_corruption(mbv2_int8):
    _, tfl, xc, *_ = mbv2_int8
    low = lower.lower(tfl, patching.plan(tfl, xc, grid=2, outlier_sample_fraction=0.5, lam=0.2))
    words = low.program.to_words()
    assert StageProgram.from_words(words) == low.program
    bad = words.copy()
    bad[0] = 0
    with pytest.raises(ProgramError, match="magic"):
        StageProgram.from_words(bad)
    with pytest.raises(ProgramError, match="header says"):
        StageProgram.from_words(words[:-1])
    bad = words.copy()
    bad[8 + 9 * 1 + 7] = low.program.arena_bytes  # tensor 1's buffer past the arena
    with pytest.raises(ProgramError, match="outside the arena"):
        StageProgram.from_words(bad)


def test_plan_command_prints_and_writes_the_plan_and_deployed_model(mbv2_int8, tmp_path):
    from click.testing import CliRunner

    from tfmot_edgeplus.cli import main

    _, tfl, xc, *_ = mbv2_int8
    (tmp_path / "m.tflite").write_bytes(tfl)
    np.save(tmp_path / "calib.npy", xc)
    args = ["plan", str(tmp_path / "m.tflite"), "--calib", str(tmp_path / "calib.npy"),
            "--sram", "16k", "--grid", "2", "--out", str(tmp_path / "out")]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "peak SRAM" in result.output and "2x2 patches" in result.output
    assert {f.name for f in (tmp_path / "out").iterdir()} == {
        "m_plan.json", "m_plan.png", "m_patched.tflite"}  # fmt: skip
    plan = patching.PatchPlan.from_json((tmp_path / "out" / "m_plan.json").read_text())
    assert plan.config["sram_budget"] == 16 * 1024
    # a budget no plan meets: the smallest reachable peak is named
    bad = CliRunner().invoke(main, [*args[:4], "--sram", "1k"])
    assert bad.exit_code != 0 and "smallest reachable peak" in bad.output
    bad = CliRunner().invoke(main, [*args[:2], "--calib", str(tmp_path / "m.tflite")])
    assert bad.exit_code != 0 and "cannot read it as .npy" in bad.output
