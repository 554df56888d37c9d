"""QuaRC little-data QAT: random coreset vs RES vs RES + CLC vs full-data QAT with KD.

    python -m benchmarks.coreset_qat [--quick] [--out FILE.json] [--datasets fashion_mnist,imu_watch]

Data (``tfmot_edgeplus.datasets.classification_task``): Fashion-MNIST (full run: a 20k
class-stratified training pool, the whole 10k test set) and the IMU watch set (subjects 9
and 10 held out for test, the other 8 subjects' windows to train on). Models:
``tfmot_edgeplus.models.reference_model`` (``small_cnn`` / ``imu_cnn``).

Method (every QAT run goes through ``tfmot_edgeplus.recipes.quarc.quarc_qat``):

1. Per dataset one float model is trained once (seed 0, Adam 1e-3) and shared by every row.
2. For each weight bit-width (activations 8) and fraction, each method fine-tunes a fresh
   QAT copy (``EdgePlusQuantizeScheme(b, 8, learnable_scales=True)``, activation ranges
   calibrated on 1024 training samples) with the **same epoch budget** (Adam 5e-4, batch
   64), so a coreset of fraction f trains about f times the steps:

   - ``random``: a uniformly random coreset, KD from the float model (beta = 0);
   - ``res``: the RES coreset (d_S of QuaRC Eq. 6, per-class quotas, score-weighted
     sampling: see ``RESCoreset``), KD only (beta = 0);
   - ``res_clc``: the same coreset, KD + beta * CLC on every conv/dense layer but the last;
   - ``full_kd``: every training sample, KD only: the fraction-1 row. (A coreset of
     fraction 1 holds every sample, so random and RES at 100 % are this run; they are not
     repeated.)

   Selection is made once (``reselect_every=None``). In one single-seed check (W2, 1 % of
   all 60k Fashion-MNIST images, 10 epochs, top-k per-class RES + CLC) re-selecting every 3
   epochs scored 0.802 against 0.838 for one selection, and each re-selection costs a
   scoring pass over the whole training set.
3. Test accuracy of the Keras QAT model (fake-quant); the TFLM agreement of such models is
   pinned by tests/test_convert.py.

Row keys: ``dataset``, ``weight_bits``, ``fraction``, ``method``, ``acc_mean``, ``acc_std``
(population std over seeds), ``seeds``, ``train_samples`` (samples trained on per epoch),
``wall_s`` (mean over seeds of quantize + calibrate + coreset scoring + training),
``time_vs_full`` (``wall_s`` / that of ``full_kd`` at the same dataset and bits).
A plot of accuracy vs fraction (one panel per dataset and bits) is written beside the JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from benchmarks._report import save_figure, write_report
from benchmarks._tasks import load, say, train_float

NAME = "coreset_qat"
METHODS = ("random", "res", "res_clc", "full_kd")
DATASETS = ("fashion_mnist", "imu_watch")
ROW_KEYS = ("dataset", "weight_bits", "fraction", "method", "acc_mean", "acc_std", "seeds",
            "train_samples", "wall_s", "time_vs_full")


@dataclass(frozen=True)
class Config:
    datasets: tuple[str, ...] = DATASETS
    weight_bits: tuple[int, ...] = (2, 4)
    fractions: tuple[float, ...] = (0.01, 0.1)  # below 1; full_kd is the fraction-1 row
    seeds: tuple[int, ...] = (0, 1, 2)
    fashion_train: int | None = 20000
    fashion_test: int | None = None
    fp_epochs: dict | None = None  # per dataset; None: benchmarks._tasks.FP_EPOCHS
    qat_epochs: int = 10
    beta: float = 1.0
    batch_size: int = 64
    methods: tuple[str, ...] = METHODS

    @classmethod
    def full(cls, **overrides) -> Config:
        return replace(cls(), **overrides)

    @classmethod
    def quick(cls, **overrides) -> Config:
        return replace(cls(fashion_train=5000, fashion_test=1000, seeds=(0,), qat_epochs=4,
                           fp_epochs={"fashion_mnist": 3, "imu_watch": 15}), **overrides)

    def __post_init__(self):
        if not self.datasets or any(d not in DATASETS for d in self.datasets):
            raise ValueError(f"datasets must be a non-empty subset of {DATASETS}, got "
                             f"{self.datasets!r}.")
        if not self.fractions or any(not 0.0 < f < 1.0 for f in self.fractions):
            raise ValueError(f"fractions must be in (0, 1) (full_kd is the fraction-1 row), "
                             f"got {self.fractions!r}.")
        if not self.methods or any(m not in METHODS for m in self.methods):
            raise ValueError(f"methods must be a non-empty subset of {METHODS}, got "
                             f"{self.methods!r}.")
        if not self.seeds:
            raise ValueError("seeds must name at least one seed, e.g. (0, 1, 2).")


def _accuracy(model, data) -> float:
    logits = model.predict(data.x_test, batch_size=512, verbose=0)
    return float(np.mean(np.asarray(logits).argmax(axis=1) == data.y_test))


def quarc_config(method: str, bits: int, fraction: float, seed: int, config: Config):
    from tfmot_edgeplus.recipes.quarc import QuaRCConfig

    coreset = {"random": "random", "res": "res", "res_clc": "res", "full_kd": "full"}[method]
    return QuaRCConfig(
        weight_bits=bits, coreset=coreset, fraction=1.0 if method == "full_kd" else fraction,
        beta=config.beta if method == "res_clc" else 0.0, epochs=config.qat_epochs,
        batch_size=config.batch_size, seed=seed)


def measure(fp_model, data, method, bits, fraction, config: Config) -> dict:
    """Run ``method`` for every seed; the row without ``time_vs_full``."""
    import warnings

    from tfmot_edgeplus.recipes.quarc import quarc_qat

    accs, walls, samples = [], [], 0
    for seed in config.seeds:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # small coresets warn per draw
            run = quarc_qat(fp_model, data.x_train, data.y_train,
                            quarc_config(method, bits, fraction, seed, config))
        walls.append(time.perf_counter() - start)
        accs.append(_accuracy(run.qat_model, data))
        samples = run.train_samples
    return {
        "weight_bits": bits, "fraction": 1.0 if method == "full_kd" else fraction,
        "method": method, "acc_mean": float(np.mean(accs)), "acc_std": float(np.std(accs)),
        "seeds": len(accs), "train_samples": int(samples), "wall_s": float(np.mean(walls)),
    }


def run(config: Config) -> tuple[list[dict], dict]:
    rows, env = [], {"fp_acc": {}, "train_samples": {}, "test_samples": {}}
    jobs = [(m, f) for f in config.fractions for m in config.methods if m != "full_kd"]
    if "full_kd" in config.methods:
        jobs.append(("full_kd", 1.0))
    total = len(config.datasets) * len(config.weight_bits) * len(jobs)
    for dataset in config.datasets:
        data = load(dataset, config)
        fp_model = train_float(data, dataset, config)
        env["fp_acc"][dataset] = _accuracy(fp_model, data)
        env["train_samples"][dataset] = len(data.x_train)
        env["test_samples"][dataset] = len(data.x_test)
        say(f"{dataset}: {len(data.x_train)} train / {len(data.x_test)} test, float accuracy "
             f"{env['fp_acc'][dataset]:.4f}")
        for bits in config.weight_bits:
            group = []
            for method, fraction in jobs:
                row = {"dataset": dataset, **measure(fp_model, data, method, bits, fraction,
                                                     config)}
                group.append(row)
                say(f"[{len(rows) + len(group)}/{total}] {dataset} W{bits}A8 "
                     f"{row['fraction']:.0%} {method:<8} acc {row['acc_mean']:.4f} +- "
                     f"{row['acc_std']:.4f}  {row['wall_s']:.1f} s")
            full = next((r["wall_s"] for r in group if r["method"] == "full_kd"), None)
            for row in group:
                row["time_vs_full"] = None if full is None else row["wall_s"] / full
                rows.append({key: row[key] for key in ROW_KEYS})
    env["config"] = {k: (list(v) if isinstance(v, tuple) else v)
                     for k, v in asdict(config).items()}
    return rows, env


def plot(rows: list[dict], path: str | Path) -> Path:
    """Accuracy vs fraction (log x), one panel per dataset and bits; full_kd as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["dataset"], r["weight_bits"]) for r in rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    colors = {"random": "#888", "res": "#d62", "res_clc": "#37a"}
    for ax, (dataset, bits) in zip(axes[0], panels):
        sel = [r for r in rows if r["dataset"] == dataset and r["weight_bits"] == bits]
        full = next((r for r in sel if r["method"] == "full_kd"), None)
        for method, color in colors.items():
            pts = sorted((r["fraction"], r["acc_mean"], r["acc_std"]) for r in sel
                         if r["method"] == method)
            if full is not None and pts:
                pts.append((1.0, full["acc_mean"], full["acc_std"]))
            if pts:
                f, m, s = map(np.array, zip(*pts))
                ax.errorbar(f * 100, m, yerr=s, color=color, marker="o", capsize=3,
                            label=method)
        if full is not None:
            ax.axhline(full["acc_mean"], color="k", linestyle=":", label="full data + KD")
        ax.set_xscale("log")
        ax.set_xlabel("training data used (%)")
        ax.set_title(f"{dataset}, W{bits}A8")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (QAT model)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def write(rows, quick: bool, out, env=None) -> Path:
    json_path = write_report(NAME, quick, rows, out, env_extra=env)
    say(f"wrote {plot(rows, json_path.with_suffix('.png'))}")
    return json_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.coreset_qat",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="5k Fashion-MNIST train / 1k test, one seed, 4 QAT epochs")
    parser.add_argument("--out", default=None,
                        help="JSON output (default benchmarks/results/coreset_qat.json)")
    parser.add_argument("--datasets", default=None, help="comma-separated subset of "
                        + ",".join(DATASETS))
    args = parser.parse_args(argv)
    overrides = {}
    if args.datasets:
        overrides["datasets"] = tuple(d.strip() for d in args.datasets.split(",") if d.strip())
    config = Config.quick(**overrides) if args.quick else Config.full(**overrides)
    start = time.perf_counter()
    rows, env = run(config)
    env["total_s"] = round(time.perf_counter() - start, 1)
    write(rows, args.quick, args.out, env)
    say(f"total {env['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
