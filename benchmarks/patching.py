"""QuantMCU patch-based inference: layer-by-layer int8 TFLM against the 8-bit patch plan and
the VDPC + VDQS mixed-precision patch plan, on a MobileNetV2-style model and real data.

    python -m benchmarks.patching [--quick] [--out FILE.json]

Model and data: :func:`tfmot_edgeplus.recipes.quantmcu.quantmcu_pipeline` (its module doc has every
detail): ``keras.applications.MobileNetV2(alpha=0.35)`` on Fashion-MNIST upsampled to
96x96x1, trained, TF-MOT 8-bit QAT, converted full-integer; the plans are made from the
.tflite within a 256 KB SRAM budget, the 8-bit plan's grid searched with its patch stage at
most ``Config.max_halo`` times the stage's modeled M4 instructions layer by layer (halo
recomputation bounded, ``patching/planner.py``). VDQS's Phi counts ``Config.saving``
(default ``"instructions"``: our kernels' cost model, ``patching/cost_model.py``). The mixed
plan's VDPC/VDQS settings are *tuned on the calibration images* (never the test set): each
``(phi, outlier_sample_fraction, lam)`` of ``Config.search`` is planned with the 8-bit plan's
split and grid, and the one with the fewest modeled stage instructions (then the most BitOPs
saved) whose top-1 agreement with the int8 model on the calibration images is at least
``min_agreement`` is kept (the 8-bit plan if none is); every candidate is reported
in ``env.search``. ``low_bits`` restricts VDQS to 4-bit maps in most candidates: 2-bit
activations without quantization-aware training cost this model most of its accuracy.

Rows (``config``): ``layer_int8`` (the converted model in the TFLM interpreter, layer by
layer), ``patch_int8`` (the 8-bit patch plan), ``patch_vdpc_vdqs`` (the tuned mixed plan).
Keys: ``peak_sram_bytes`` (measured: TFLM's whole arena for ``layer_int8``; for the patch
rows the deployed model's TFLM arena with our op's scratch, or with the split runner the
rest's TFLM arena + the input + the stage's C scratch, see ``patching/patch_runner.py``; host
figures, 64-bit TFLM structs), ``activation_bytes`` (measured too: the arena's head, i.e.
the planned activation tensors and scratch buffers without TFLM's persistent per-operator
data, which patching does not change), ``modeled_peak_bytes`` (the planner's activation
model: tensors only, no kernel scratch), ``bitops``
(whole model, ``MACs x w_bits x a_bits``), ``stage_bitops`` (the patch stage only; for
``layer_int8`` the same layers layer by layer), ``m4_instructions`` (the patch stage on the
emulated Cortex-M4, -Ofast, our C kernels: the stage layer by layer for ``layer_int8``, i.e.
a 1x1 grid; null without the cross compiler/QEMU), ``modeled_stage_instructions`` (the
planner's cost model of the same stage), ``acc`` (test top-1), ``agreement``
(test top-1 agreement with ``layer_int8``), ``flash_bytes`` (the .tflite: for the patch rows
the deployed model with its ``EDGEPLUS_PATCH_STAGE`` op), ``stage_scratch_bytes``,
``backend`` (what measured the row's memory: ``tflm``, TFLM with our op, or ``split``, the
split runner's figure when the TFLM glue is not configured), ``fits_nano`` (peak <= 256 KB
and flash <= 1 MB), ``grid``, ``normal_patches``, ``bits``
(normal-patch bits of the stage maps, in order). A figure of the mixed plan and one of the
three configs are written beside the JSON, with the mixed plan (``_plan.json``) and the int8
model (``_int8.tflite``), so ``edgeplus plan`` can be rerun on them.

``--quick``: 3,000 training images, 2 epochs, 300 test images, 64 calibration images,
three search candidates (the same code path).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import dataclass, replace

import numpy as np

from benchmarks._report import save_figure, write_report
from benchmarks._tasks import say
from tfmot_edgeplus.recipes.quantmcu import SEARCH, top1_predictions

NAME = "patching"
CONFIGS = ("layer_int8", "patch_int8", "patch_vdpc_vdqs")
NANO_SRAM, NANO_FLASH = 256 * 1024, 1024 * 1024


@dataclass(frozen=True)
class Config:
    train_samples: int = 10000
    test_samples: int = 2000
    calib_samples: int = 256
    epochs: int = 5
    search: tuple = SEARCH  # (phi, outlier_sample_fraction, lam, low_bits)
    min_agreement: float = 0.95
    max_halo: float = 1.5
    saving: str = "instructions"
    m4: bool = True
    seed: int = 0

    @classmethod
    def full(cls, **overrides) -> Config:
        return replace(cls(), **overrides)

    @classmethod
    def quick(cls, **overrides) -> Config:
        q = cls(
            train_samples=3000,
            test_samples=300,
            calib_samples=64,
            epochs=2,
            search=((0.9999, 0.3, 0.3, (4,)), (0.999, 1.0, 0.3, (4,)), (0.999, 1.0, 0.5, (4, 2))),
        )
        return replace(q, **overrides)


def tune(result, config: Config):
    """The search of the module docstring: ``(chosen plan, [candidate dicts])``."""
    from tfmot_edgeplus.recipes.quantmcu import tune_plan

    return tune_plan(result.tflite, result.x_calib, result.plan8, config.search,
                     config.min_agreement, say, saving=config.saving)  # fmt: skip


def _m4(programs, filters, x_int8) -> dict | None:
    missing = [t for t in ("arm-none-eabi-gcc", "qemu-system-arm") if shutil.which(t) is None]
    if missing:
        say(f"[patching] no M4 counts: {', '.join(missing)} not installed (make setup)")
        return None
    from benchmarks._stage_m4 import m4_stage_cost

    return m4_stage_cost(programs, filters, x_int8)


def run(config: Config) -> tuple[list[dict], dict]:
    from tfmot_edgeplus.patching import PatchPlanner, lower
    from tfmot_edgeplus.patching.deploy import deploy_model
    from tfmot_edgeplus.patching.patch_plan import layer_plan
    from tfmot_edgeplus.patching.patch_runner import PatchStageRunner
    from tfmot_edgeplus.patching.tflite_graph import read_tflite_graph
    from tfmot_edgeplus.recipes.quantmcu import QuantMCUConfig, quantmcu_pipeline
    from tfmot_edgeplus.runtime.tflm import TFLMRunner

    qc = QuantMCUConfig(
        train_samples=config.train_samples,
        test_samples=config.test_samples,
        calib_samples=config.calib_samples,
        epochs=config.epochs,
        max_halo=config.max_halo,
        saving=config.saving,
        seed=config.seed,
    )
    result = quantmcu_pipeline(qc, verbose=2)
    plan, tried = tune(result, config)
    tfl, xt, yt = result.tflite, result.x_test, result.y_test
    full = TFLMRunner(tfl)
    ref = top1_predictions(full.predict, xt)
    planner = PatchPlanner(read_tflite_graph(tfl))
    lowered = {
        "layer_int8": lower.lower(tfl, layer_plan(planner, result.plan8.split)),
        "patch_int8": lower.lower(tfl, result.plan8),
        "patch_vdpc_vdqs": lower.lower(tfl, plan),
    }
    x0 = PatchStageRunner(tfl, lowered["patch_int8"], backend="numpy").quantize_input(xt[:1])
    m4 = None
    if config.m4:
        m4 = _m4({k: v.program for k, v in lowered.items()}, lowered["layer_int8"].filters, x0[0])
    plans = {"layer_int8": result.plan8, "patch_int8": result.plan8, "patch_vdpc_vdqs": plan}
    rows = []
    for name in CONFIGS:
        p, low = plans[name], lowered[name]
        if name == "layer_int8":
            backend = "tflm"  # the builtin int8 ops, TFLM's own arena
            preds, peak, flash, scratch = ref, full.arena_bytes, len(tfl), None
            activation = full.arena_head_bytes
            modeled, bitops, stage_bitops = p.peak_layer, p.bitops_layer, p.stage_bitops_layer
            instr = p.stage_instructions_layer
        else:
            runner = PatchStageRunner(tfl, low)
            backend = runner.backend  # tflm: measured with our op; split: the split runner's
            fast = PatchStageRunner(tfl, low, backend="numpy")
            say(f"[patching] {name}: evaluating {len(xt)} test images ({runner.backend} backend)")
            preds = top1_predictions(fast.predict, xt)
            check = runner.predict(xt[:8], dequantize_output=False)
            if not np.array_equal(check, fast.predict(xt[:8], dequantize_output=False)):
                raise AssertionError(f"{name}: the {runner.backend} backend differs from NumPy")
            peak, scratch = runner.peak_sram_bytes, runner.stage_scratch_bytes
            activation = runner.activation_bytes
            flash = len(deploy_model(tfl, low))
            if name == "patch_int8":
                modeled, bitops, stage_bitops = (
                    p.peak_patch8,
                    p.bitops_patch8,
                    p.stage_bitops_patch8,
                )
                instr = p.stage_instructions_patch8
            else:
                modeled, bitops = p.peak_planned, p.bitops_planned
                stage_bitops = p.stage_bitops_planned
                instr = p.stage_instructions_planned
        rows.append(
            {
                "config": name,
                "peak_sram_bytes": int(peak),
                "activation_bytes": int(activation),
                "modeled_peak_bytes": int(modeled),
                "bitops": int(bitops),
                "stage_bitops": int(stage_bitops),
                "m4_instructions": None if m4 is None else int(m4[name]["instructions"]),
                "modeled_stage_instructions": int(round(instr)),
                "acc": round(float((preds == yt).mean()), 4),
                "agreement": round(float((preds == ref).mean()), 4),
                "flash_bytes": int(flash),
                "stage_scratch_bytes": scratch,
                "backend": backend,
                "fits_nano": bool(peak <= NANO_SRAM and flash <= NANO_FLASH),
                "grid": 1 if name == "layer_int8" else int(p.grid),
                "normal_patches": 0 if name != "patch_vdpc_vdqs" else int(
                    p.grid**2 - len(p.outlier_patches)
                ),
                "bits": "8" if name != "patch_vdpc_vdqs" else "/".join(
                    str(b) for b in p.bits.values()
                ),
            }
        )  # fmt: skip
    env = {
        "float_acc": round(result.float_acc, 4),
        "qat_acc": round(result.qat_acc, 4),
        "split": result.plan8.split,
        "grid": result.plan8.grid,
        "max_halo": config.max_halo,
        "saving": config.saving,
        "search": tried,
        "min_agreement": config.min_agreement,
        "m4": m4,
        "ratios": _ratios(rows),
    }
    env["_plan"] = plan
    env["_tflite"] = tfl
    return rows, env


def _ratios(rows) -> dict:
    r = {row["config"]: row for row in rows}
    layer, p8, mixed = r["layer_int8"], r["patch_int8"], r["patch_vdpc_vdqs"]
    out = {
        "peak_layer_over_patch8": layer["peak_sram_bytes"] / p8["peak_sram_bytes"],
        "peak_layer_over_mixed": layer["peak_sram_bytes"] / mixed["peak_sram_bytes"],
        "activation_layer_over_patch8": layer["activation_bytes"] / p8["activation_bytes"],
        "activation_layer_over_mixed": layer["activation_bytes"] / mixed["activation_bytes"],
        "modeled_layer_over_mixed": layer["modeled_peak_bytes"] / mixed["modeled_peak_bytes"],
        "stage_bitops_patch8_over_mixed": p8["stage_bitops"] / mixed["stage_bitops"],
        "acc_loss_points": 100 * (layer["acc"] - mixed["acc"]),
    }
    if p8["m4_instructions"]:
        out["m4_patch8_over_mixed"] = p8["m4_instructions"] / mixed["m4_instructions"]
        out["m4_patch8_over_layer"] = p8["m4_instructions"] / layer["m4_instructions"]
        out["m4_mixed_over_layer"] = mixed["m4_instructions"] / layer["m4_instructions"]
        out["acc_mixed_minus_patch8_points"] = 100 * (mixed["acc"] - p8["acc"])
    return {k: round(v, 3) for k, v in out.items()}


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [("peak_sram_bytes", "peak SRAM (KiB)", 1024), ("stage_bitops", "stage GBitOPs", 1e9),
            ("m4_instructions", "stage M4 Minstr", 1e6), ("acc", "test accuracy", 1)]  # fmt: skip
    fig, axes = plt.subplots(1, len(keys), figsize=(14, 3.6), layout="constrained")
    names = [r["config"] for r in rows]
    for ax, (key, label, scale) in zip(axes, keys, strict=True):
        vals = [(r[key] or 0) / scale for r in rows]
        ax.bar(names, vals, color=["tab:gray", "tab:blue", "tab:orange"])
        ax.set_title(label, fontsize=9)
        ax.tick_params(axis="x", labelrotation=20, labelsize=7)
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:.3g}", ha="center", va="bottom", fontsize=7)
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.patching", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="smaller real run (same path)")
    parser.add_argument("--out", default=None, help="JSON output (default benchmarks/results/)")
    args = parser.parse_args(argv)
    config = Config.quick() if args.quick else Config.full()
    start = time.perf_counter()
    rows, env = run(config)
    plan = env.pop("_plan")
    tflite = env.pop("_tflite")
    env["total_s"] = round(time.perf_counter() - start, 1)
    json_path = write_report(NAME, args.quick, rows, args.out, env_extra=env)
    say(f"wrote {plot(rows, json_path.with_suffix('.png'))}")
    plan.plot(json_path.with_name(json_path.stem + "_plan.png"))
    json_path.with_name(json_path.stem + "_plan.json").write_text(plan.to_json())
    json_path.with_name(json_path.stem + "_int8.tflite").write_bytes(tflite)
    say(plan.summary())
    say(f"ratios {env['ratios']}; total {env['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
