"""The planner's instruction cost model (patching/cost_model.py) against the committed
kernels_m4 run it is copied from, and its fallback rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tfmot_edgeplus.patching import cost_model as C

ROOT = Path(__file__).resolve().parent.parent


def test_the_table_is_the_committed_kernels_m4_run():
    report = json.loads((ROOT / C.KERNELS_M4_JSON).read_text())
    assert not report["quick"] and "-Ofast" in report["env"]["cflags"]
    layer_kind = {layer: kind for kind, layer in C.SOURCE_LAYERS.items()}
    measured = {
        (layer_kind[r["layer"]], r["weight_bits"], r["activation_bits"]): r["instr_per_mac"]
        for r in report["rows"]
        if r["scratch_mode"] == "default"
    }
    assert C.INSTR_PER_MAC == measured, (
        f"patching/cost_model.py's INSTR_PER_MAC differs from {C.KERNELS_M4_JSON}: copy the "
        "committed run's default-scratch figures into the table"
    )


def test_unmeasured_pairs_save_nothing_and_kinds_map():
    # W8A4 (what the patch stage runs) is not measured: it costs W8A8's figure
    assert C.instr_per_mac("conv", 8, 4) == C.INSTR_PER_MAC[("conv", 8, 8)]
    # W2A8 falls back to W8A8, W4A2 to W4A8
    assert C.instr_per_mac("depthwise", 2, 8) == C.INSTR_PER_MAC[("depthwise", 8, 8)]
    assert C.instr_per_mac("pointwise", 4, 2) == C.INSTR_PER_MAC[("pointwise", 4, 8)]
    assert C.instr_per_mac("conv", 2, 2) == C.INSTR_PER_MAC[("conv", 2, 2)]
    assert [C.op_kind("conv", (3, 3)), C.op_kind("conv", (1, 1)),
            C.op_kind("depthwise", (3, 3)), C.op_kind("add", (1, 1))] == [
        "conv", "pointwise", "depthwise", None]  # fmt: skip
    with pytest.raises(ValueError, match="op must be one of .* got 'dense'"):
        C.instr_per_mac("dense", 8, 8)
