"""Continual calibration on a stream of new subjects: QCore bit flips vs back-propagation
fine-tuning vs experience replay vs nothing, on the deployed integer IMU model.

    python -m benchmarks.continual [--quick] [--out FILE.json]

Data and recipe: :func:`tfmot_edgeplus.recipes.qcore.qcore_continual` (its module doc has every
detail). The IMU watch set (2 s windows, 50 % overlap); the model (``imu_cnn(hidden=32)``:
a 32 -> 32 -> 7 head) trains on subjects 1-4 with a ``QuantMissTracker``, is quantized
(PTQ, W4 or W8 weights, 8-bit activations) and converted full-integer; the flip network of
the last layer trains offline on subjects 5 and 6; subjects 7, 8, 9, 10 then arrive in
chunks of 40 labeled windows (2 per subject) and each method calibrates the deployed head
on every chunk. Every subject's second half of each recording (in time) is its test set;
``old`` is the held-out last quarter of the training subjects' recordings.

Methods (``tfmot_edgeplus.calibration.METHODS``): ``none``; ``qcore_bitflip`` (QCore of 20
+ the chunk, up to 10 bit-flip steps of 6 confidence levels, roll back, QCore refresh);
``bp_finetune`` (30 full-batch Adam steps, lr 0.01, on the same layer and the same memory:
the QCore + the chunk, re-quantized to the integer grid); ``replay`` (the same fine-tuning
on a 20-sample reservoir buffer + the chunk).

Row keys (one row per weight bit-width and method; accuracies are means over ``seeds``,
with ``*_std`` the standard deviation): ``weight_bits``, ``method``, ``avg_acc`` (mean over
chunks of the accuracy on the subjects seen so far), ``final_acc`` (all stream subjects,
after the last chunk), ``adapted_acc`` (each subject right after its own chunks),
``forgetting`` (how much of a subject's best accuracy after its chunks is lost by the end),
``old_acc`` (training subjects, at the end), ``step_wall_s`` (host seconds per chunk
calibration, the backbone's TFLM run on the chunk included), ``step_m4_instructions``
(instructions on the emulated Cortex-M4 to calibrate one chunk: QCore's flip steps + refresh
in C from tflm_ops, or the baseline's 30 Adam iterations in float32 C; measured on the first
chunk of seed 0; null for ``none`` and when the emulator is absent),
``iteration_m4_instructions`` (one ``edgeplus_qcore_step`` / one Adam iteration),
``memory_bytes`` (QCore + flip networks + the C step's scratch; for the baselines their
buffer + float32 training state, ``bp_memory_bytes``), ``recovery`` (for ``qcore_bitflip``:
its gain over ``none`` as a share of ``bp_finetune``'s, in ``adapted_acc``). A plot of the
seen-subject accuracy after each chunk is written beside the JSON.

``--quick``: W4 only, one seed, 10 float epochs (the same code path).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from benchmarks._report import save_figure, write_report
from benchmarks._tasks import say

NAME = "continual"
_MEAN_KEYS = ("avg_acc", "final_acc", "adapted_acc", "forgetting", "old_acc", "step_wall_s")
ROW_KEYS = (
    "weight_bits",
    "method",
    *_MEAN_KEYS,
    "step_m4_instructions",
    "iteration_m4_instructions",
    "memory_bytes",
    "recovery",
    "avg_acc_std",
    "final_acc_std",
    "adapted_acc_std",
)


@dataclass(frozen=True)
class Config:
    weight_bits: tuple = (4, 8)
    seeds: tuple = (0, 1, 2, 3, 4)
    fp_epochs: int = 30
    m4: bool = True

    @classmethod
    def full(cls, **overrides) -> Config:
        return replace(cls(), **overrides)

    @classmethod
    def quick(cls, **overrides) -> Config:
        return replace(cls(weight_bits=(4,), seeds=(0,), fp_epochs=10), **overrides)


def _m4_cost(run) -> dict | None:
    """Instructions of calibrating the stream's first chunk on the emulated M4 (None, said
    aloud, when the cross compiler or QEMU is missing)."""
    from benchmarks._qcore_m4 import m4_calibration_cost

    missing = [t for t in ("arm-none-eabi-gcc", "qemu-system-arm") if shutil.which(t) is None]
    if missing:
        say(f"[continual] no M4 counts: {', '.join(missing)} not installed (make setup)")
        return None
    cal = run.calibrator
    cal.reset()
    chunk = run.chunks[0]
    x = np.concatenate([cal.core_x, cal.features(chunk.x)])
    y = np.concatenate([cal.core_y, np.asarray(chunk.y, np.int64)])
    prior = np.concatenate([cal.core_counts, np.zeros(len(chunk.y), np.int64)])
    return m4_calibration_cost(
        cal, x, y, prior, cal.layers, run.config.bp_steps, run.config.bp_learning_rate
    )


def run(config: Config) -> tuple[list[dict], dict]:
    from tfmot_edgeplus.calibration import METHODS
    from tfmot_edgeplus.recipes.qcore import QCoreConfig, qcore_continual, recovery

    rows, env = [], {"seeds": list(config.seeds), "curves": {}, "m4": {}}
    for bits in config.weight_bits:
        per_method = {m: [] for m in METHODS}
        curves = {m: [] for m in METHODS}
        m4 = None
        for seed in config.seeds:
            say(f"[continual] W{bits} seed {seed}")
            result = qcore_continual(
                QCoreConfig(weight_bits=bits, fp_epochs=config.fp_epochs, seed=seed), verbose=0
            )
            for m, r in result.results.items():
                per_method[m].append(r.metrics())
                curves[m].append(r.seen_accuracy().tolist())
            if config.m4 and m4 is None:
                m4 = _m4_cost(result)
                env["m4"][f"w{bits}"] = m4
        means = {
            m: {k: float(np.mean([x[k] for x in v])) for k in v[0]} for m, v in per_method.items()
        }
        for m in METHODS:
            mean = means[m]
            instr = iteration = None
            if m4 is not None and m == "qcore_bitflip":
                instr, iteration = m4["qcore_instructions"], m4["qcore_step_instructions"]
            elif m4 is not None and m in ("bp_finetune", "replay"):
                instr, iteration = m4["bp_instructions"], m4["bp_step_instructions"]
            row = {
                "weight_bits": bits,
                "method": m,
                **{k: mean[k] for k in _MEAN_KEYS},
                "step_m4_instructions": instr,
                "iteration_m4_instructions": iteration,
                "memory_bytes": int(mean["memory_bytes"]),
                "recovery": recovery(means) if m == "qcore_bitflip" else None,
                **{
                    f"{k}_std": float(np.std([x[k] for x in per_method[m]]))
                    for k in ("avg_acc", "final_acc", "adapted_acc")
                },
            }
            rows.append(row)
        env["curves"][f"w{bits}"] = {m: np.mean(c, axis=0).tolist() for m, c in curves.items()}
    return rows, env


def plot(env: dict, path: str | Path) -> Path:
    """Seen-subject accuracy after each chunk, one panel per weight bit-width."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfmot_edgeplus.recipes.qcore import plot_curves

    panels = env["curves"]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for ax, (name, curves) in zip(axes[0], panels.items()):
        plot_curves(ax, curves)
        ax.set_xlabel("chunk (2 per new subject: 7, 8, 9, 10)")
        ax.set_title(f"IMU watch, {name.upper()} head, mean of {len(env['seeds'])} seeds")
    axes[0][0].set_ylabel("accuracy on the subjects seen so far")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.continual", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="W4 only, one seed, 10 float epochs (same code path)"
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
