"""QuaRC little-data QAT, like for like: random and stratified random coresets vs RES (top-k
and weighted) vs RES + CLC vs full-data QAT, all with the same KD loss, over seeds.

    python -m benchmarks.coreset_qat [--quick] [--out FILE.json] [--tasks imu_deep,...]
        [--bits 2,3] [--fractions 0.01,0.1] [--seeds 0,1,2] [--methods random,res,...]

Tasks: the bed of ``benchmarks/_tasks.py`` (``fashion_mnist``, ``imu_watch`` and the deeper
``fashion_mbv2``, ``imu_deep``; Fashion-MNIST: a 20k class-stratified pool, the whole 10k
test set). Per task and seed one float model (trained with that seed, cached on disk by
``_tasks.train_float``) is shared by every row of that seed.

Method (every QAT run goes through ``tfmot_edgeplus.recipes.quarc.quarc_qat``): for each
weight bit-width (activations 8), fraction and seed, each method fine-tunes a fresh QAT copy
(``EdgePlusQuantizeScheme(b, 8, learnable_scales=True)``, activation ranges calibrated on
1024 training samples) with **the same step budget**: every coreset row makes ``qat_steps``
(300) optimizer steps, i.e. ``ceil(300 / batches per pass)`` passes over its coreset
(``QuaRCConfig.steps``), and ``full_kd`` makes ``qat_epochs`` (10) passes over the pool
(Adam 5e-4, batch 64); and with **the same loss**, KD from the float model at temperature 1
(``CLCTrainer``, beta = 0), except ``res_clc`` which adds beta * CLC (``beta`` 5; the
recipe's default is 1); and from the same calibrated start: BatchNorm statistics of the
quantized model re-estimated on the calibration samples (``calibrate_bn``, below). At the
same *epochs* a 1 % coreset of the IMU pool got one step per epoch, 10 in all, and seed
noise (std 4-5 points) swamped any selection effect.

- ``random``: a uniformly random coreset (``RandomCoreset``);
- ``random_stratified``: uniformly random within each class, with the per-class quotas of
  the RES rows (``RandomCoreset(stratified=True)``): **the baseline** of every difference;
- ``res_top``: RES scores d_S (QuaRC Eq. 6), per-class quotas, the top-k of each class (the
  paper's top-k; the paper ranks all samples together, the quotas are kept so that only the
  scores differ from the baseline);
- ``res``: the same scores and quotas, score-weighted sampling (our default);
- ``res_clc``: ``res`` + beta * CLC on every conv/dense layer but the last;
- ``full_kd``: every training sample (the fraction-1 row).

Selection is made once (``reselect_every=None``; ``--reselect-every R`` re-selects every
coreset row every R passes, the random ones re-drawn, so that both sides see as many
distinct samples). ``--calibrate-bn 1`` re-estimates the quantized model's BatchNorm
statistics before scoring and after training (``QuaRCConfig.calibrate_bn``), for every row
and for PTQ: on by default here (``--calibrate-bn 0`` turns it off). The recipe's held-out
slice that keeps the best weights is off (``holdout=0``): a 1 % row would otherwise pick its
weights on ten times more labelled data than it trains on. Accuracy: the Keras QAT model (fake-quant) on the test
set; the TFLM agreement of such models is pinned by tests/test_convert.py.

Row keys: ``task``, ``method``, ``weight_bits``, ``fraction``, ``acc_mean``, ``acc_std``
(population std over seeds), ``diff_vs_random_stratified`` (``{"mean", "lo", "hi"}``: the
paired per-seed difference from ``random_stratified`` at the same task, bits and fraction,
and its 95 % Student-t interval, ``benchmarks._report.paired_interval``; None for
``full_kd``), ``time_vs_full``
(``wall_s`` / that of ``full_kd``), ``seeds``, ``train_samples`` (per epoch), ``wall_s``
(mean over seeds of quantize + calibrate + coreset scoring + training).

``env["room"]``: per task and bit-width, how much room the bed leaves a coreset method:
``full_minus_random_1pct`` (full_kd minus ``random`` at 1 %) and ``full_minus_ptq`` (full_kd
minus plain PTQ: ``recipes.cora.ptq_model`` on the same 1024 calibration samples, no
training), each paired per seed (mean, ``_lo``, ``_hi``). ``env["per_seed"]`` holds every
run's accuracy. A plot of accuracy vs fraction (one panel per task and bits) is written
beside the JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from benchmarks import _tasks
from benchmarks._report import paired_interval, save_figure, write_report
from benchmarks._tasks import say

NAME = "coreset_qat"
METHODS = ("random", "random_stratified", "res_top", "res", "res_clc", "full_kd")
BASELINE = "random_stratified"
ROW_KEYS = ("task", "method", "weight_bits", "fraction", "acc_mean", "acc_std",
            "diff_vs_random_stratified", "time_vs_full", "seeds", "train_samples", "wall_s")
# method -> (coreset, per_class, sampling, CLC on)
_RECIPE = {
    "random": ("random", False, "weighted", False),
    "random_stratified": ("random", True, "weighted", False),
    "res_top": ("res", True, "top", False),
    "res": ("res", True, "weighted", False),
    "res_clc": ("res", True, "weighted", True),
    "full_kd": ("full", True, "weighted", False),
}


@dataclass(frozen=True)
class Config:
    tasks: tuple[str, ...] = _tasks.TASKS
    weight_bits: tuple[int, ...] = (2, 3)
    fractions: tuple[float, ...] = (0.01, 0.1)  # below 1; full_kd is the fraction-1 row
    seeds: tuple[int, ...] = (0, 1, 2)
    fashion_train: int | None = 20000
    fashion_test: int | None = None
    fp_epochs: dict | None = None  # per task; None: benchmarks._tasks.FP_EPOCHS
    qat_epochs: int = 10  # full_kd's budget: passes over the whole pool
    qat_steps: int | None = 300  # every coreset row's budget: optimizer steps; None: qat_epochs
    reselect_every: int | None = None  # R passes between re-selections of every coreset row
    calibrate_bn: bool = True  # QuaRCConfig.calibrate_bn of every row and of PTQ
    beta: float = 5.0  # res_clc's CLC weight (QuaRCConfig's default is 1)
    batch_size: int = 64
    calibration_samples: int = 1024
    methods: tuple[str, ...] = METHODS
    cache_dir: str | None = None  # float-model cache; None: build/bench_cache

    @classmethod
    def full(cls, **overrides) -> Config:
        return replace(cls(), **overrides)

    @classmethod
    def quick(cls, **overrides) -> Config:
        """Real and small: the IMU deep net (3,675 windows), W2, 5 %, two seeds, 6 steps per
        coreset row, 2 epochs of full_kd."""
        return replace(cls(tasks=("imu_deep",), weight_bits=(2,), fractions=(0.05,),
                           seeds=(0, 1), qat_epochs=2, qat_steps=6, fashion_train=5000,
                           fashion_test=1000,
                           fp_epochs={name: 3 for name in _tasks.TASKS}), **overrides)

    def __post_init__(self):
        _tasks.check_tasks(self.tasks)
        if not self.weight_bits or any(isinstance(b, bool) or b not in (2, 3, 4, 8)
                                       for b in self.weight_bits):
            raise ValueError(f"weight_bits must be a non-empty subset of (2, 3, 4, 8), got "
                             f"{self.weight_bits!r}.")
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

    coreset, per_class, sampling, clc = _RECIPE[method]
    return QuaRCConfig(
        weight_bits=bits, coreset=coreset, fraction=1.0 if coreset == "full" else fraction,
        beta=config.beta if clc else 0.0, epochs=config.qat_epochs,
        steps=None if coreset == "full" else config.qat_steps,
        reselect_every=None if coreset == "full" else config.reselect_every,
        calibrate_bn=config.calibrate_bn,
        batch_size=config.batch_size, per_class=per_class, sampling=sampling,
        calibration_samples=config.calibration_samples, holdout=0.0, seed=seed)


def measure(fp_model, data, method, bits, fraction, seed, config: Config) -> dict:
    """One QAT run: {acc, wall_s, train_samples}."""
    import warnings

    from tfmot_edgeplus.recipes.quarc import quarc_qat

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a coreset under one batch warns
        run = quarc_qat(fp_model, data.x_train, data.y_train,
                        quarc_config(method, bits, fraction, seed, config))
    wall = time.perf_counter() - start
    return {"acc": _accuracy(run.qat_model, data), "wall_s": wall,
            "train_samples": int(run.train_samples)}


def ptq_accuracy(fp_model, data, bits, seed, config: Config) -> float:
    """Plain PTQ on the calibration samples quarc_qat draws at ``seed`` (BatchNorm
    re-estimated on them with ``calibrate_bn``); no training."""
    from tfmot_edgeplus.quantization import calibrate_batchnorm
    from tfmot_edgeplus.recipes.cora import ptq_model

    pick = np.random.default_rng(seed).permutation(len(data.x_train))[
        : config.calibration_samples]
    model = ptq_model(fp_model, bits, 8, data.x_train[pick])
    if config.calibrate_bn:
        calibrate_batchnorm(model, data.x_train[pick])
    return _accuracy(model, data)


def _interval(prefix: str, diffs) -> dict:
    mean, lo, hi = paired_interval(diffs)
    return {prefix: mean, f"{prefix}_lo": lo, f"{prefix}_hi": hi}


def summarize(task: str, runs: dict, ptq: dict, config: Config) -> tuple[list[dict], list[dict]]:
    """Rows and room entries of one task from ``runs[(bits, method, fraction)] = [run per
    seed]`` and ``ptq[bits] = [acc per seed]``."""
    rows, room = [], []
    for bits in config.weight_bits:
        full = runs.get((bits, "full_kd", 1.0))
        for (b, method, fraction), seeds in runs.items():
            if b != bits:
                continue
            accs = [r["acc"] for r in seeds]
            base = runs.get((bits, BASELINE, fraction))
            diff = None
            if base is not None and method != "full_kd":
                mean, lo, hi = paired_interval([a - r["acc"] for a, r in zip(accs, base)])
                diff = {"mean": mean, "lo": lo, "hi": hi}
            wall = float(np.mean([r["wall_s"] for r in seeds]))
            full_wall = None if full is None else float(np.mean([r["wall_s"] for r in full]))
            row = {"task": task, "method": method, "weight_bits": bits, "fraction": fraction,
                   "acc_mean": float(np.mean(accs)), "acc_std": float(np.std(accs)),
                   "diff_vs_random_stratified": diff,
                   "time_vs_full": None if full_wall is None else wall / full_wall,
                   "seeds": len(accs), "train_samples": seeds[0]["train_samples"],
                   "wall_s": wall}
            rows.append({key: row[key] for key in ROW_KEYS})
        if full is None:
            continue
        entry = {"task": task, "weight_bits": bits,
                 "full_kd": float(np.mean([r["acc"] for r in full])),
                 "ptq": float(np.mean(ptq[bits]))}
        entry.update(_interval("full_minus_ptq",
                               [r["acc"] - p for r, p in zip(full, ptq[bits])]))
        random_1 = runs.get((bits, "random", 0.01))
        if random_1 is not None:
            entry["random_1pct"] = float(np.mean([r["acc"] for r in random_1]))
            entry.update(_interval("full_minus_random_1pct",
                                   [f["acc"] - r["acc"] for f, r in zip(full, random_1)]))
        room.append(entry)
    return rows, room


def run(config: Config) -> tuple[list[dict], dict]:
    rows = []
    env = {"fp_acc": {}, "train_samples": {}, "test_samples": {}, "room": [], "per_seed": {}}
    jobs = [(m, f) for f in config.fractions for m in config.methods if m != "full_kd"]
    if "full_kd" in config.methods:
        jobs.append(("full_kd", 1.0))
    total = len(config.tasks) * len(config.seeds) * len(config.weight_bits) * len(jobs)
    done = 0
    for task in config.tasks:
        data = _tasks.load(task, config)
        for fraction in config.fractions:
            _tasks.check_fraction(data, fraction, task)
        env["train_samples"][task] = len(data.x_train)
        env["test_samples"][task] = len(data.x_test)
        env["fp_acc"][task] = []
        runs: dict = {}
        ptq = {bits: [] for bits in config.weight_bits}
        for seed in config.seeds:
            fp_model = _tasks.train_float(data, task, config, seed)
            env["fp_acc"][task].append(_accuracy(fp_model, data))
            say(f"{task} seed {seed}: {len(data.x_train)} train / {len(data.x_test)} test, "
                f"float accuracy {env['fp_acc'][task][-1]:.4f}")
            for bits in config.weight_bits:
                ptq[bits].append(ptq_accuracy(fp_model, data, bits, seed, config))
                say(f"  W{bits}A8 ptq acc {ptq[bits][-1]:.4f}")
                for method, fraction in jobs:
                    one = measure(fp_model, data, method, bits, fraction, seed, config)
                    runs.setdefault((bits, method, fraction), []).append(one)
                    done += 1
                    say(f"[{done}/{total}] {task} seed {seed} W{bits}A8 {fraction:.0%} "
                        f"{method:<17} acc {one['acc']:.4f}  {one['wall_s']:.1f} s")
        task_rows, room = summarize(task, runs, ptq, config)
        rows += task_rows
        env["room"] += room
        env["per_seed"][task] = {
            "ptq": {f"W{b}": accs for b, accs in ptq.items()},
            **{f"W{b}_{m}_{f:g}": [r["acc"] for r in seeds]
               for (b, m, f), seeds in runs.items()}}
        for entry in room:
            say(f"room {task} W{entry['weight_bits']}: full_kd {entry['full_kd']:.4f}, "
                f"minus PTQ {entry['full_minus_ptq']:+.4f}"
                + (f", minus random 1 % {entry['full_minus_random_1pct']:+.4f}"
                   if "random_1pct" in entry else ""))
    env["seeds"] = list(config.seeds)
    env["config"] = {k: (list(v) if isinstance(v, tuple) else v)
                     for k, v in asdict(config).items()}
    return rows, env


def plot(rows: list[dict], path: str | Path) -> Path:
    """Accuracy vs fraction (log x), one panel per task and bits; full_kd as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["task"], r["weight_bits"]) for r in rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    colors = {"random": "#bbb", "random_stratified": "#666", "res_top": "#e9a",
              "res": "#d62", "res_clc": "#37a"}
    for ax, (task, bits) in zip(axes[0], panels):
        sel = [r for r in rows if r["task"] == task and r["weight_bits"] == bits]
        full = next((r for r in sel if r["method"] == "full_kd"), None)
        for method, color in colors.items():
            pts = sorted((r["fraction"], r["acc_mean"], r["acc_std"]) for r in sel
                         if r["method"] == method)
            if pts:
                f, m, s = map(np.array, zip(*pts))
                ax.errorbar(f * 100, m, yerr=s, color=color, marker="o", capsize=3,
                            label=method)
        if full is not None:
            ax.axhline(full["acc_mean"], color="k", linestyle=":", label="full data + KD")
        ax.set_xscale("log")
        ax.set_xlabel("training data used (%)")
        ax.set_title(f"{task}, W{bits}A8")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (QAT model)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def write(rows, quick: bool, out, env=None) -> Path:
    json_path = write_report(NAME, quick, rows, out, env_extra=env)
    say(f"wrote {plot(rows, json_path.with_suffix('.png'))}")
    return json_path


def _list(kind):
    return lambda text: tuple(kind(t.strip()) for t in text.split(",") if t.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.coreset_qat",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="imu_deep only, W2, 5 %%, two seeds, 6 coreset steps, 2 full epochs")
    parser.add_argument("--out", default=None,
                        help="JSON output (default benchmarks/results/coreset_qat.json)")
    parser.add_argument("--tasks", type=_list(str), help="comma-separated subset of "
                        + ",".join(_tasks.TASKS))
    parser.add_argument("--bits", type=_list(int), help="weight bits, e.g. 2,3")
    parser.add_argument("--fractions", type=_list(float), help="e.g. 0.01,0.1")
    parser.add_argument("--seeds", type=_list(int), help="e.g. 0,1,2")
    parser.add_argument("--methods", type=_list(str), help="subset of " + ",".join(METHODS))
    parser.add_argument("--fashion-train", type=int, help="Fashion-MNIST pool size")
    parser.add_argument("--fashion-test", type=int, help="Fashion-MNIST test samples")
    parser.add_argument("--qat-epochs", type=int, help="full_kd's QAT epochs (default 10)")
    parser.add_argument("--qat-steps", type=int, help="every coreset row's optimizer steps "
                        "(default 300; 0: train them for --qat-epochs too)")
    parser.add_argument("--reselect-every", type=int, help="passes between re-selections of "
                        "every coreset row (random ones re-drawn); 0: select once")
    parser.add_argument("--calibrate-bn", type=int, choices=(0, 1),
                        help="re-estimate BatchNorm statistics of the quantized model "
                        "(default 1)")
    parser.add_argument("--beta", type=float, help="res_clc's CLC weight (default 5)")
    args = parser.parse_args(argv)
    overrides = {name: value for name, value in (
        ("tasks", args.tasks), ("weight_bits", args.bits), ("fractions", args.fractions),
        ("seeds", args.seeds), ("methods", args.methods),
        ("fashion_train", args.fashion_train), ("fashion_test", args.fashion_test),
        ("qat_epochs", args.qat_epochs), ("beta", args.beta)) if value is not None}
    for name in ("qat_steps", "reselect_every"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name) or None
    if args.calibrate_bn is not None:
        overrides["calibrate_bn"] = bool(args.calibrate_bn)
    config = Config.quick(**overrides) if args.quick else Config.full(**overrides)
    start = time.perf_counter()
    rows, env = run(config)
    env["total_s"] = round(time.perf_counter() - start, 1)
    write(rows, args.quick, args.out, env)
    say(f"total {env['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
