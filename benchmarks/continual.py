"""Continual calibration on two shifting streams: QCore bit flips vs back-propagation
fine-tuning vs experience replay vs nothing, on the deployed integer model.

    python -m benchmarks.continual [--quick] [--out FILE.json]

Data and recipe: :func:`tfmot_edgeplus.recipes.qcore.qcore_continual` (its module doc and
:mod:`tfmot_edgeplus.recipes.qcore_streams` have every detail). Two streams (the row's
``task``):

- ``imu_watch``: the IMU watch set (2 s windows, 50 % overlap); the model
  (``imu_cnn(hidden=32)``: a 32 -> 32 -> 7 head) trains on subjects 1-4, the flip network
  on subjects 5 and 6; subjects 7, 8, 9, 10 then arrive in chunks of 40 labeled windows
  (2 per subject). ``old`` is the held-out last quarter of the training subjects'
  recordings.
- ``fashion_shift``: Fashion-MNIST (``small_cnn(hidden=32)``, 6,000 clean training images,
  10 float epochs); the stream is 4 image shifts (rotate +20 degrees, contrast x0.5, rotate
  -20, move 3 px), 2 chunks of 40 each, of images the model never saw; the flip network
  learns on two other shifts. ``old`` is 1,000 clean test images.

The model is quantized (PTQ, W4 or W8 weights, 8-bit activations) and converted
full-integer; each method calibrates the deployed head on every chunk.

Methods (``tfmot_edgeplus.calibration.METHODS``): ``none``; ``qcore_bitflip`` (QCore of 20
training samples, fixed, guarding the training domain + a memory of 20 new samples + the
chunk; up to 10 bit-flip steps of 6 confidence levels, each kept only if it helps the new
samples without getting the QCore wrong; memory refresh); ``bp_finetune`` (30 full-batch Adam
steps, lr 0.01, on the same layer, the QCore + the chunk, re-quantized to the integer grid);
``replay`` (the same fine-tuning on a 20-sample reservoir buffer + the chunk).

Row keys (one row per task, weight bit-width and method; accuracies are means over
``seeds``, with ``*_std`` the standard deviation): ``task``, ``weight_bits``, ``method``,
``avg_acc`` (mean over chunks of the accuracy on the domains seen so far), ``final_acc`` (all
stream domains, after the last chunk), ``adapted_acc`` (each domain right after its own
chunks), ``forgetting`` (how much of a domain's best accuracy after its chunks is lost by
the end), ``old_acc`` (the training domain's held-out data, at the end),
``old_drop`` (``none``'s old_acc minus this one, paired per seed: what the method cost the
training domain), ``step_wall_s`` (host seconds per chunk calibration, the backbone's TFLM run
on the chunk included), ``m4_instructions_per_chunk`` (instructions on the emulated Cortex-M4
to calibrate one chunk: for QCore its flip steps + refresh in C from tflm_ops, the mean over
every chunk of every seed; for the baselines their 30 Adam iterations in float32 C on the
QCore + the chunk, the mean over seeds; null for ``none`` and when the emulator is absent),
``device_bytes`` (QCore: the RAM of ``edgeplus::QCoreCalibrator``, the figure ``edgeplus export
arduino --qcore`` reserves; the baselines: their buffer + float32 training state,
``bp_memory_bytes``), ``recovery`` (for ``qcore_bitflip``: its gain over ``none`` as a share of
``bp_finetune``'s, in ``adapted_acc``), ``adapted_vs_none``, ``final_vs_none``,
``old_vs_none`` (the paired per-seed difference from ``none``, with ``_lo`` / ``_hi`` its 95 %
Student-t interval; null ends with one seed). The ablation ``env["unguarded"]``: QCore on the same
streams with its guard off (``old_tolerance=1``), mean adapted, final and old accuracy and
old_drop per task and bit-width, and its paired difference from the guarded QCore with a 95 %
interval (``*_vs_qcore``, ``*_vs_qcore_lo``, ``*_vs_qcore_hi``); ``env["per_seed"]``: every
method's metrics per seed. A plot of the seen-domain accuracy after each chunk
is written beside the JSON.

``--quick``: imu_watch, W4, one seed, 10 float epochs (the same code path).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from benchmarks._report import paired_interval, save_figure, write_report
from benchmarks._tasks import say

NAME = "continual"
_MEAN_KEYS = (
    "avg_acc",
    "final_acc",
    "adapted_acc",
    "forgetting",
    "old_acc",
    "old_drop",
    "step_wall_s",
)
ROW_KEYS = (
    "task",
    "weight_bits",
    "method",
    *_MEAN_KEYS,
    "m4_instructions_per_chunk",
    "device_bytes",
    "recovery",
    *(f"{k}_vs_none{end}" for k in ("adapted", "final", "old") for end in ("", "_lo", "_hi")),
    "avg_acc_std",
    "final_acc_std",
    "adapted_acc_std",
    "old_acc_std",
)


@dataclass(frozen=True)
class Config:
    tasks: tuple = ("imu_watch", "fashion_shift")
    weight_bits: tuple = (4, 8)
    seeds: tuple = (0, 1, 2, 3, 4)
    fp_epochs: int | None = None  # None: the stream's default
    chunks_per_domain: int = 2
    m4: bool = True

    @classmethod
    def full(cls, **overrides) -> Config:
        return replace(cls(), **overrides)

    @classmethod
    def quick(cls, **overrides) -> Config:
        return replace(
            cls(tasks=("imu_watch",), weight_bits=(4,), seeds=(0,), fp_epochs=10), **overrides
        )


def _m4_available() -> bool:
    missing = [t for t in ("arm-none-eabi-gcc", "qemu-system-arm") if shutil.which(t) is None]
    if missing:
        say(f"[continual] no M4 counts: {', '.join(missing)} not installed (make setup)")
    return not missing


_ABLATION_KEYS = ("adapted_acc", "final_acc", "old_acc", "old_drop")


def _paired(method: list[dict], base: list[dict], name: str) -> dict:
    """Per metric, the method's paired per-seed difference from ``base``: mean and 95 %
    interval (``{metric}_vs_{name}``, ``..._lo``, ``..._hi``)."""
    out = {}
    for k in ("adapted", "final", "old"):
        diffs = [m[f"{k}_acc"] - b[f"{k}_acc"] for m, b in zip(method, base)]
        mean, lo, hi = paired_interval(diffs)
        out.update({f"{k}_vs_{name}": mean, f"{k}_vs_{name}_lo": lo, f"{k}_vs_{name}_hi": hi})
    return out


def _unguarded(run, none_old: float) -> dict:
    """The ablation: QCore on the same stream with its guard off (``old_tolerance=1``)."""
    from tfmot_edgeplus.calibration import run_stream

    cal = run.calibrator
    tolerance = cal.old_tolerance
    cal.set_old_tolerance(1.0)
    metrics = run_stream(cal, run.chunks, run.eval_sets, "qcore_bitflip").metrics()
    cal.set_old_tolerance(tolerance)
    metrics["old_drop"] = none_old - metrics["old_acc"]
    return {k: metrics[k] for k in _ABLATION_KEYS}


def _m4_costs(run) -> dict:
    """Emulated M4 instructions of QCore's calibration of every chunk of the stream (the
    calibrator replayed from its reset state, chunk by chunk, exactly as the stream ran it),
    and of the back-propagation baseline on the QCore + the first chunk."""
    from benchmarks._qcore_m4 import m4_calibration_cost

    cal, cfg = run.calibrator, run.config
    cal.reset()
    qcore, n_old = [], len(cal.old_y)
    for chunk in run.chunks:
        fx, fy = cal.features(chunk.x), np.asarray(chunk.y, np.int64)
        cost = m4_calibration_cost(
            cal,
            np.concatenate([cal.old_x, cal.mem_x, fx]),
            np.concatenate([cal.old_y, cal.mem_y, fy]),
            np.concatenate([cal.mem_counts, np.zeros(len(fy), np.int64)]),
            cal.layers,
            cfg.bp_steps,
            cfg.bp_learning_rate,
            guard=n_old,
            guard_min_correct=cal.guard_min_correct,
        )
        qcore.append(cost["qcore_instructions"])
        cal.calibrate_features(fx, fy)
    cal.reset()
    first = run.chunks[0]
    bp = m4_calibration_cost(
        cal,
        np.concatenate([cal.old_x, cal.features(first.x)]),
        np.concatenate([cal.old_y, np.asarray(first.y, np.int64)]),
        np.zeros(len(first.y), np.int64),
        cal.layers,
        cfg.bp_steps,
        cfg.bp_learning_rate,
        guard=n_old,
        guard_min_correct=cal.guard_min_correct,
    )
    return {"qcore_per_chunk": qcore, "bp": bp["bp_instructions"]}


def run(config: Config) -> tuple[list[dict], dict]:
    from tfmot_edgeplus.calibration import METHODS
    from tfmot_edgeplus.recipes.qcore import QCoreConfig, qcore_continual, recovery

    m4_on = config.m4 and _m4_available()
    rows = []
    env = {"seeds": list(config.seeds), "curves": {}, "m4": {}, "unguarded": {}, "per_seed": {}}
    for task in config.tasks:
        for bits in config.weight_bits:
            key = f"{task}/w{bits}"
            per_method = {m: [] for m in METHODS}
            curves = {m: [] for m in METHODS}
            m4 = {"qcore_per_chunk": [], "bp": []}
            unguarded = []
            for seed in config.seeds:
                say(f"[continual] {task} W{bits} seed {seed}")
                result = qcore_continual(
                    QCoreConfig(
                        stream=task,
                        weight_bits=bits,
                        fp_epochs=config.fp_epochs,
                        chunks_per_domain=config.chunks_per_domain,
                        seed=seed,
                    ),
                    verbose=0,
                )
                none_old = result.results["none"].metrics()["old_acc"]
                for m, r in result.results.items():
                    metrics = r.metrics()
                    metrics["old_drop"] = none_old - metrics["old_acc"]
                    per_method[m].append(metrics)
                    curves[m].append(r.seen_accuracy().tolist())
                unguarded.append(_unguarded(result, none_old))
                if m4_on:
                    cost = _m4_costs(result)
                    m4["qcore_per_chunk"] += cost["qcore_per_chunk"]
                    m4["bp"].append(cost["bp"])
            env["m4"][key] = m4 if m4_on else None
            means = {
                m: {k: float(np.mean([x[k] for x in v])) for k in v[0]}
                for m, v in per_method.items()
            }
            for m in METHODS:
                mean = means[m]
                instr = None
                if m4_on and m == "qcore_bitflip":
                    instr = float(np.mean(m4["qcore_per_chunk"]))
                elif m4_on and m in ("bp_finetune", "replay"):
                    instr = float(np.mean(m4["bp"]))
                rows.append(
                    {
                        "task": task,
                        "weight_bits": bits,
                        "method": m,
                        **{k: mean[k] for k in _MEAN_KEYS},
                        "m4_instructions_per_chunk": instr,
                        "device_bytes": int(mean["memory_bytes"]),
                        "recovery": recovery(means) if m == "qcore_bitflip" else None,
                        **_paired(per_method[m], per_method["none"], "none"),
                        **{
                            f"{k}_std": float(np.std([x[k] for x in per_method[m]]))
                            for k in ("avg_acc", "final_acc", "adapted_acc", "old_acc")
                        },
                    }
                )
            env["curves"][key] = {m: np.mean(c, axis=0).tolist() for m, c in curves.items()}
            env["unguarded"][key] = {
                **{k: float(np.mean([u[k] for u in unguarded])) for k in _ABLATION_KEYS},
                **_paired(unguarded, per_method["qcore_bitflip"], "qcore"),
            }
            env["per_seed"][key] = per_method
    return rows, env


def plot(env: dict, path: str | Path) -> Path:
    """Seen-domain accuracy after each chunk, one panel per task and weight bit-width."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfmot_edgeplus.recipes.qcore import plot_curves

    panels = env["curves"]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for ax, (name, curves) in zip(axes[0], panels.items()):
        plot_curves(ax, curves)
        ax.set_xlabel("chunk (2 per new domain)")
        task, bits = name.split("/")
        ax.set_title(f"{task}, {bits.upper()} head, mean of {len(env['seeds'])} seeds")
    axes[0][0].set_ylabel("accuracy on the domains seen so far")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.continual", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="imu_watch, W4, one seed, 10 float epochs (same code path)",
    )
    parser.add_argument(
        "--out", default=None, help="JSON output (default benchmarks/results/continual.json)"
    )
    args = parser.parse_args(argv)
    config = Config.quick() if args.quick else Config.full()
    start = time.perf_counter()
    rows, env = run(config)
    env["total_s"] = round(time.perf_counter() - start, 1)
    json_path = write_report(NAME, args.quick, rows, args.out, env_extra=env)
    say(f"wrote {plot(env, json_path.with_suffix('.png'))}")
    say(f"total {env['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
