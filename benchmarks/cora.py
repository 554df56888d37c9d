"""CoRa with 1,600 samples: plain PTQ vs QAT with the same steps and samples vs CoRa vs
full-data QAT.

    python -m benchmarks.cora [--quick] [--out FILE.json] [--tasks imu_deep,fashion_mbv2]

Tasks: the bed of ``benchmarks/_tasks.py`` (``fashion_mnist``, ``imu_watch`` and the deeper
``fashion_mbv2``, ``imu_deep``; Fashion-MNIST: a 20k class-stratified pool, the whole 10k
test set; quick: the IMU deep net only). One float model per task (seed 0, cached on disk by
``_tasks.train_float``) is shared by every row.

Method:

1. The calibration set: ``calib_samples`` (1,600; ``min(1600, n)``) samples drawn uniformly
   at random (seed 0) from the training pool, with their labels.
2. For each weight bit-width (activations 8) every method starts from the same PTQ:
   ``recipes.cora.ptq_model`` (``EdgePlusQuantizeScheme(bits, 8, learnable_scales=True)``,
   LSQ steps at minimum quantization MSE, activation ranges calibrated on the calibration
   set), then:

   - ``ptq``: nothing more (steps 0);
   - ``qat_same_steps``: ``recipes.cora.qat_same_steps``: plain QAT (cross-entropy on the
     labels, every weight and LSQ step trained, Adam ``qat_lr`` = 5e-4) on the same
     calibration samples and held-out slice as CoRa, for exactly ``steps`` steps;
   - ``cora``: ``recipes.cora.cora_ptq`` on the calibration set: the same PTQ, then adapters
     with ranks from ``rank_method`` (``"greedy"``: ``adapters.allocate_ranks``;
     ``"butterworth"``: the paper's learned cutoffs, 100 steps, counted in ``wall_s`` but not
     in ``steps``), KD-calibrated (adapters only, Adam 1e-3, batch 64) for ``steps`` steps;
     ``train_bn`` / ``train_scales`` (``--train-bn``, ``--train-scales``) also train every
     BatchNorm's gamma and beta / the main layers' LSQ steps (``CoRaConfig``).
     ``budgets``: ``None`` means "adapter bytes = 5 % of the main weights' bytes", i.e.
     B = 0.05 * bits / 8 as a parameter fraction (adapters are int8); a float is a parameter
     fraction used as is. One row per budget; ``budget`` is the fraction passed;
   - ``full_qat``: ``quarc_qat(fp, x_train, y_train, QuaRCConfig(bits, coreset="full",
     beta=0, epochs=E, batch_size=64))``: QAT with KD on the whole training pool (E = 10,
     quick 2; the recipe keeps its best weights by a held-out 10 % of the pool), the
     ceiling. ``steps`` = E * ceil(n_trained / 64) (n_trained: the pool less the held-out
     slice), ``calib_samples`` = n (every labelled sample it used).
3. Every row's model is converted (``tfmot_edgeplus.convert(model, x_calib[:256])``, 2-3 bit
   layers repacked to 2/3 bits per weight) and run in the TFLM interpreter on the host.

Row keys (the issue's first): ``task``, ``method``, ``weight_bits``, ``acc`` (Keras QAT
model, whole test set), ``steps``, ``flatbuffer_overhead_frac`` (what the adapters add to
the converted flatbuffer, op and tensor metadata included: this row's flatbuffer bytes over
those of the ``ptq`` row at the same task and bits, minus 1; 0 for other methods), then
``calib_samples``, ``adapter_bytes_frac`` (the adapter weight tensors' bytes, names
``*_cora_a`` / ``*_cora_b``, over those of every other weight tensor, LUT tables included,
``lowbit.describe_weights``; 0 for other methods), ``flatbuffer_bytes``, ``wall_s``
(quantize + range calibration + rank choice + training; not conversion), ``budget``,
``adapter_param_frac`` (``AdapterRecord.param_fraction``), ``tflm_acc`` (the flatbuffer in
TFLM, on the first ``tflm_test`` test samples: the whole test set by default),
``tflm_agreement`` (share of those samples where TFLM and Keras pick the same class) and
``time_vs_full`` (``wall_s`` / that of ``full_qat`` at the same task and bits).
``env["room"]``: per task and bits, ``full_qat`` minus ``ptq`` and minus ``qat_same_steps``,
and ``cora`` (the default budget, ``budgets`` None) minus ``qat_same_steps``. A plot of
accuracy vs weight bits (one panel per task, full_qat dashed) is written beside the JSON.
"""

from __future__ import annotations

import argparse
import math
import numbers
import sys
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from benchmarks import _tasks
from benchmarks._report import save_figure, write_report
from benchmarks._tasks import say

NAME = "cora"
METHODS = ("ptq", "qat_same_steps", "cora", "full_qat")
BITS = (2, 3, 4, 8)
RANK_METHODS = ("greedy", "butterworth")
ROW_KEYS = ("task", "method", "weight_bits", "acc", "steps", "flatbuffer_overhead_frac",
            "calib_samples", "adapter_bytes_frac", "flatbuffer_bytes", "wall_s", "budget",
            "adapter_param_frac", "tflm_acc", "tflm_agreement", "time_vs_full")
ADAPTER_TENSOR_MARKS = ("_cora_a", "_cora_b")


def _is_int(value, low: int = 1) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Integral) and value >= low


@dataclass(frozen=True)
class Config:
    tasks: tuple[str, ...] = _tasks.TASKS
    weight_bits: tuple[int, ...] = (3, 2)
    methods: tuple[str, ...] = METHODS
    calib_samples: int = 1600
    steps: int = 250
    budgets: tuple[float | None, ...] = (None, 0.05)  # None: adapter bytes = 5 % of weights
    rank_method: str = "greedy"
    train_bn: bool = False  # CoRaConfig.train_bn: also BN gamma/beta (no flatbuffer byte)
    train_scales: bool = False  # CoRaConfig.train_scales: also the main layers' LSQ steps
    qat_lr: float = 5e-4
    cora_lr: float = 1e-3
    fashion_train: int | None = 20000
    fashion_test: int | None = None
    fp_epochs: dict | None = None  # per task; None: benchmarks._tasks.FP_EPOCHS
    full_qat_epochs: int = 10
    batch_size: int = 64
    tflm_test: int | None = None  # test samples run in TFLM; None: all
    cache_dir: str | None = None  # float-model cache; None: build/bench_cache

    @classmethod
    def full(cls, **overrides) -> Config:
        return replace(cls(), **overrides)

    @classmethod
    def quick(cls, **overrides) -> Config:
        return replace(cls(tasks=("imu_deep",), budgets=(None,), full_qat_epochs=2,
                           fp_epochs={name: 10 for name in _tasks.TASKS}), **overrides)

    def __post_init__(self):
        _tasks.check_tasks(self.tasks)
        if not self.weight_bits or any(b not in BITS or isinstance(b, bool)
                                       for b in self.weight_bits):
            raise ValueError(f"weight_bits must be a non-empty subset of {BITS}, got "
                             f"{self.weight_bits!r}.")
        if not self.methods or any(m not in METHODS for m in self.methods):
            raise ValueError(f"methods must be a non-empty subset of {METHODS}, got "
                             f"{self.methods!r}.")
        if "cora" in self.methods and "ptq" not in self.methods:
            raise ValueError(f"methods {self.methods!r} have 'cora' without 'ptq': the ptq "
                             "row's flatbuffer is the base of cora's flatbuffer_overhead_frac; "
                             "add 'ptq'.")
        for name in ("calib_samples", "steps", "full_qat_epochs", "batch_size"):
            if not _is_int(getattr(self, name)):
                raise ValueError(f"{name} must be an int >= 1, got {getattr(self, name)!r}.")
        if not self.budgets or any(
                b is not None and (isinstance(b, bool) or not isinstance(b, numbers.Real)
                                   or not 0.0 < b <= 1.0) for b in self.budgets):
            raise ValueError(f"budgets must be a non-empty tuple of None (adapter bytes = 5 % of "
                             f"the weight bytes) or parameter fractions in (0, 1], got "
                             f"{self.budgets!r}.")
        for name in ("train_bn", "train_scales"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}.")
        if self.rank_method not in RANK_METHODS:
            raise ValueError(f"rank_method must be one of {RANK_METHODS}, got "
                             f"{self.rank_method!r}.")
        for name in ("qat_lr", "cora_lr"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
                raise ValueError(f"{name} must be a number > 0, got {value!r}.")
        if self.tflm_test is not None and not _is_int(self.tflm_test):
            raise ValueError(f"tflm_test must be None (whole test set) or an int >= 1, got "
                             f"{self.tflm_test!r}.")


def calibration_set(data, config: Config):
    """``min(calib_samples, n)`` training samples drawn uniformly at random (seed 0)."""
    n = min(config.calib_samples, len(data.x_train))
    pick = np.sort(np.random.default_rng(0).permutation(len(data.x_train))[:n])
    return data.x_train[pick], data.y_train[pick]


def budget_fraction(budget: float | None, bits: int) -> float:
    """The adapter parameter fraction: ``budget``, or for None 5 % of the main weights' bytes
    with int8 adapters (0.05 * bits / 8)."""
    return 0.05 * bits / 8 if budget is None else float(budget)


def _keras_classes(model, x) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=512, verbose=0)).argmax(axis=1)


def _keras_accuracy(model, data) -> float:
    return float(np.mean(_keras_classes(model, data.x_test) == data.y_test))


def adapter_bytes_frac(model_bytes: bytes) -> tuple[float, int]:
    """(adapter weight bytes / other weight bytes, adapter bytes) read from the flatbuffer."""
    from tfmot_edgeplus.conversion.lowbit import describe_weights

    adapter = other = 0
    for row in describe_weights(model_bytes):
        size = row["data_bytes"] + row["table_bytes"]
        if any(mark in row["tensor"] for mark in ADAPTER_TENSOR_MARKS):
            adapter += size
        else:
            other += size
    return adapter / max(other, 1), adapter


def measure(fp_model, data, calib, task: str, method: str, bits: int, budget,
            config: Config, env: dict) -> dict:
    """Build, train, convert and score one row (without ``time_vs_full``)."""
    from tfmot_edgeplus import QuaRCConfig, convert, quarc_qat
    from tfmot_edgeplus._compat import tf
    from tfmot_edgeplus.recipes.cora import CoRaConfig, cora_ptq, ptq_model, qat_same_steps
    from tfmot_edgeplus.runtime import TFLMRunner

    x_calib, y_calib = calib
    n_train = len(data.x_train)
    tf.keras.utils.set_random_seed(0)
    row = {"budget": None, "adapter_param_frac": 0.0, "adapter_bytes_frac": 0.0}
    start = time.perf_counter()
    if method == "full_qat":
        run = quarc_qat(fp_model, data.x_train, data.y_train, QuaRCConfig(
            weight_bits=bits, coreset="full", fraction=1.0, beta=0.0,
            epochs=config.full_qat_epochs, batch_size=config.batch_size, seed=0))
        model = run.qat_model
        # The recipe trains on the pool less its held-out slice (run.train_samples).
        steps = config.full_qat_epochs * math.ceil(run.train_samples / config.batch_size)
        samples = n_train
    elif method == "ptq":
        model, steps, samples = ptq_model(fp_model, bits, 8, x_calib), 0, len(x_calib)
    elif method == "qat_same_steps":
        model = qat_same_steps(fp_model, x_calib, y_calib, CoRaConfig(
            weight_bits=bits, steps=config.steps, calib_samples=len(x_calib),
            batch_size=config.batch_size, seed=0), learning_rate=config.qat_lr)
        steps, samples = config.steps, len(x_calib)
    if method == "cora":
        fraction = budget_fraction(budget, bits)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            run = cora_ptq(fp_model, x_calib, y_calib, CoRaConfig(
                weight_bits=bits, budget=fraction, rank_search=config.rank_method,
                steps=config.steps, calib_samples=len(x_calib), batch_size=config.batch_size,
                learning_rate=config.cora_lr, train_bn=config.train_bn,
                train_scales=config.train_scales, seed=0))
        model, samples, steps = run.model, run.calib_samples, config.steps
        summary = run.summary()
        row.update(budget=fraction, adapter_param_frac=float(summary["adapter_param_fraction"]))
        env["cora"][f"{task}_W{bits}_b{fraction:.4g}"] = {
            key: summary[key] for key in ("ranks", "cutoffs", "kd_before", "kd_after",
                                          "rolled_back", "best_weights", "seconds")
        } | {"warnings": [str(w.message) for w in caught]}
    wall = time.perf_counter() - start

    keras_classes = _keras_classes(model, data.x_test)
    row["acc"] = float(np.mean(keras_classes == data.y_test))
    model_bytes = convert(model, x_calib[:256])
    n_tflm = len(data.x_test) if config.tflm_test is None else min(config.tflm_test,
                                                                   len(data.x_test))
    tflm_classes = TFLMRunner(model_bytes).predict(data.x_test[:n_tflm]).argmax(axis=1)
    row["tflm_acc"] = float(np.mean(tflm_classes == data.y_test[:n_tflm]))
    row["tflm_agreement"] = float(np.mean(tflm_classes == keras_classes[:n_tflm]))
    if method == "cora":
        row["adapter_bytes_frac"], found = adapter_bytes_frac(model_bytes)
        if not found:
            raise RuntimeError("The converted CoRa model has no weight tensor named *_cora_a / "
                               "*_cora_b: the converter dropped the layer names.")
    row.update(task=task, weight_bits=bits, method=method, steps=int(steps),
               calib_samples=int(samples), flatbuffer_bytes=len(model_bytes), wall_s=wall)
    return row


def room(task: str, group: list[dict]) -> dict:
    """What separates the methods at one task and bit-width (module doc, ``env["room"]``)."""
    bits = group[0]["weight_bits"]
    acc = {r["method"]: r["acc"] for r in group if r["method"] != "cora"}
    cora = [r["acc"] for r in group if r["method"] == "cora"
            and r["budget"] == budget_fraction(None, bits)]  # the 5 %-of-bytes budget
    entry = {"task": task, "weight_bits": bits}
    for name, first, second in (("full_minus_ptq", acc.get("full_qat"), acc.get("ptq")),
                                ("full_minus_qat_same_steps", acc.get("full_qat"),
                                 acc.get("qat_same_steps")),
                                ("cora_minus_qat_same_steps", cora[0] if cora else None,
                                 acc.get("qat_same_steps"))):
        entry[name] = None if first is None or second is None else first - second
    return entry


def run(config: Config) -> tuple[list[dict], dict]:
    rows = []
    env = {"fp_acc": {}, "train_samples": {}, "test_samples": {}, "calib_samples": {},
           "cora": {}, "room": [], "seeds": [0]}
    jobs = [(m, b) for m in config.methods
            for b in (config.budgets if m == "cora" else (None,))]
    total = len(config.tasks) * len(config.weight_bits) * len(jobs)
    for task in config.tasks:
        data = _tasks.load(task, config)
        fp_model = _tasks.train_float(data, task, config, seed=0)
        calib = calibration_set(data, config)
        env["fp_acc"][task] = _keras_accuracy(fp_model, data)
        env["train_samples"][task] = len(data.x_train)
        env["test_samples"][task] = len(data.x_test)
        env["calib_samples"][task] = len(calib[0])
        say(f"{task}: {len(data.x_train)} train / {len(data.x_test)} test / "
            f"{len(calib[0])} calibration, float accuracy {env['fp_acc'][task]:.4f}")
        for bits in config.weight_bits:
            group = []
            for method, budget in jobs:
                row = measure(fp_model, data, calib, task, method, bits, budget, config, env)
                group.append(row)
                extra = (f" budget {row['budget']:.4f} bytes +{row['adapter_bytes_frac']:.1%}"
                         if method == "cora" else "")
                say(f"[{len(rows) + len(group)}/{total}] {task} W{bits}A8 {method:<15} "
                    f"acc {row['acc']:.4f} tflm {row['tflm_acc']:.4f} "
                    f"(same class {row['tflm_agreement']:.2%}) "
                    f"{row['flatbuffer_bytes']} B  {row['wall_s']:.1f} s{extra}")
            full = next((r["wall_s"] for r in group if r["method"] == "full_qat"), None)
            base = next((r["flatbuffer_bytes"] for r in group if r["method"] == "ptq"), None)
            for row in group:
                row["time_vs_full"] = None if full is None else row["wall_s"] / full
                row["flatbuffer_overhead_frac"] = (row["flatbuffer_bytes"] / base - 1.0
                                                   if row["method"] == "cora" else 0.0)
                rows.append({key: row[key] for key in ROW_KEYS})
            env["room"].append(room(task, group))
            say(f"room {env['room'][-1]}")
    env["config"] = {k: (list(v) if isinstance(v, tuple) else v)
                     for k, v in asdict(config).items()}
    return rows, env


def _label(row: dict) -> str:
    if row["method"] == "cora":
        return "cora (5 % bytes)" if row["budget"] == budget_fraction(None, row["weight_bits"]) \
            else f"cora (budget {row['budget']:g})"
    return row["method"]


def plot(rows: list[dict], path: str | Path) -> Path:
    """Accuracy vs weight bits, one panel per task; full_qat (the ceiling) dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.0 * len(tasks), 3.8), squeeze=False)
    colors = {"ptq": "#888", "qat_same_steps": "#d62", "full_qat": "k"}
    for ax, task in zip(axes[0], tasks):
        sel = [r for r in rows if r["task"] == task]
        for label in dict.fromkeys(_label(r) for r in sel):
            pts = sorted((r["weight_bits"], r["acc"]) for r in sel if _label(r) == label)
            bits, acc = zip(*pts)
            ax.plot(bits, acc, marker="o", label=label,
                    color=colors.get(label), linestyle="--" if label == "full_qat" else "-")
        ax.set_xticks(sorted({r["weight_bits"] for r in sel}))
        ax.set_xlabel("weight bits (activations 8)")
        ax.set_title(task)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (Keras QAT model)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def write(rows, quick: bool, out, env=None) -> Path:
    json_path = write_report(NAME, quick, rows, out, env_extra=env)
    say(f"wrote {plot(rows, json_path.with_suffix('.png'))}")
    return json_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cora",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="imu_deep only, one CoRa budget, 2 full-QAT epochs")
    parser.add_argument("--out", default=None,
                        help="JSON output (default benchmarks/results/cora.json)")
    parser.add_argument("--tasks", default=None, help="comma-separated subset of "
                        + ",".join(_tasks.TASKS))
    parser.add_argument("--rank-method", choices=RANK_METHODS, default="greedy",
                        help="how CoRa picks the adapter ranks (default greedy)")
    parser.add_argument("--train-bn", action="store_true",
                        help="CoRa also trains every BatchNorm's gamma and beta")
    parser.add_argument("--train-scales", action="store_true",
                        help="CoRa also trains the main layers' LSQ steps")
    args = parser.parse_args(argv)
    overrides = {"rank_method": args.rank_method, "train_bn": args.train_bn,
                 "train_scales": args.train_scales}
    if args.tasks:
        overrides["tasks"] = tuple(d.strip() for d in args.tasks.split(",") if d.strip())
    config = Config.quick(**overrides) if args.quick else Config.full(**overrides)
    start = time.perf_counter()
    rows, env = run(config)
    env["total_s"] = round(time.perf_counter() - start, 1)
    write(rows, args.quick, args.out, env)
    say(f"total {env['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
