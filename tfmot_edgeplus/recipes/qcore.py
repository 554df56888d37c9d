"""QCore end to end on the IMU watch data: a deployed model meets new subjects and recalibrates.

One function, :func:`qcore_continual`, runs the recipe of ALGORITHMS.md section 2; ``edgeplus
qcore``, the demo's IMU part and ``benchmarks/continual.py`` go through it::

    run = qcore_continual(QCoreConfig(weight_bits=4))
    run.results["qcore_bitflip"].metrics()     # avg_acc, final_acc, forgetting, ...
    run.calibrator.model_bytes()               # the calibrated flatbuffer (after the stream)

Steps (each timed in ``run.seconds``):

1. Data: the stream ``config.stream`` (:mod:`~tfmot_edgeplus.recipes.qcore_streams`:
   ``imu_watch``, a shift between people, or ``fashion_shift``, Fashion-MNIST under rotation,
   contrast and translation): the training domain and its held-out ``old`` eval set, the
   offline shifted data of the flip networks, the stream's chunks (``chunks_per_domain`` of
   ``chunk_size`` samples per domain) and one eval set per domain.
2. The float model (``models.imu_cnn`` or ``models.small_cnn`` with ``hidden``: a two-layer
   head) trains ``fp_epochs`` epochs (default: 30 on ``imu_watch``, 10 on ``fashion_shift``)
   with a :class:`~tfmot_edgeplus.coreset.QuantMissTracker` (bit-widths 2, 3, 4, 5, 8
   and FP every 5 epochs); the QCore is ``tracker.sample(core_size)``.
3. PTQ at ``weight_bits`` (8-bit activations) and full-integer conversion: the deployed
   model, which TFLM runs.
4. :class:`~tfmot_edgeplus.calibration.BitFlipCalibrator` on the deployed bytes, fitted
   offline on QCore + chunks of the offline shifted data. It calibrates the last layer (the
   classifier); the device keeps the QCore, its memory and the chunk as that layer's int8
   inputs (the ``hidden``-wide ReLU features), so a step never re-runs the layers before it. (Flip
   networks for earlier layers exist, ``calibrate="all"``, but their error signal is a fixed
   random feedback, not back-propagation, and on this data they cost accuracy.)
5. :func:`~tfmot_edgeplus.calibration.run_stream` for each method of ``methods``.
"""

from __future__ import annotations

import numbers
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from tfmot_edgeplus import models
from tfmot_edgeplus._compat import agg_pyplot, keras, tf
from tfmot_edgeplus.calibration import (
    METHODS,
    BitFlipCalibrator,
    Chunk,
    StreamResult,
    check_old_tolerance,
    run_stream,
    save_qcore,
)
from tfmot_edgeplus.conversion import convert
from tfmot_edgeplus.coreset import QuantMissTracker
from tfmot_edgeplus.recipes.cora import ptq_model
from tfmot_edgeplus.recipes.qcore_streams import STREAMS, make_stream

__all__ = [
    "QCoreConfig",
    "QCoreRun",
    "plot_curves",
    "qcore_continual",
    "recovery",
    "summary_table",
    "write_run",
]


@dataclass(frozen=True)
class QCoreConfig:
    """Settings of :func:`qcore_continual`, validated at construction."""

    weight_bits: int = 4
    stream: str = "imu_watch"
    train_subjects: tuple = (1, 2, 3, 4)
    offline_subjects: tuple = (5, 6)
    stream_subjects: tuple = (7, 8, 9, 10)
    chunk_size: int = 40
    chunks_per_domain: int = 2
    old_fraction: float = 0.25
    fp_epochs: int | None = None  # None: 30 on imu_watch, 10 on fashion_shift
    hidden: int = 32
    core_size: int = 40
    memory_size: int = 20
    old_tolerance: float = 0.0
    max_steps: int = 10
    tries: int = 6
    flipnet_hidden: int = 16
    episodes: int = 24
    bp_steps: int = 30
    bp_learning_rate: float = 0.01
    methods: tuple = METHODS
    seed: int = 0

    def __post_init__(self):
        if self.weight_bits not in (4, 8):
            raise ValueError(
                f"weight_bits must be 4 or 8 (the head's deployed INT4/INT8 weights), got "
                f"{self.weight_bits!r}"
            )
        for name in (
            "chunk_size",
            "chunks_per_domain",
            "hidden",
            "core_size",
            "memory_size",
            "max_steps",
            "tries",
            "flipnet_hidden",
            "episodes",
            "bp_steps",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.stream not in STREAMS:
            raise ValueError(f"stream must be one of {', '.join(STREAMS)}, got {self.stream!r}")
        if self.fp_epochs is not None and (
            isinstance(self.fp_epochs, bool)
            or not isinstance(self.fp_epochs, numbers.Integral)
            or self.fp_epochs < 1
        ):
            raise ValueError(f"fp_epochs must be an int >= 1 or None, got {self.fp_epochs!r}")
        groups = [set(self.train_subjects), set(self.offline_subjects), set(self.stream_subjects)]
        if not all(groups) or sum(map(len, groups)) != len(set().union(*groups)):
            raise ValueError(
                "train_subjects, offline_subjects and stream_subjects must be non-empty and "
                f"disjoint, got {self.train_subjects}, {self.offline_subjects}, "
                f"{self.stream_subjects}"
            )
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"methods must be some of {', '.join(METHODS)}, got {self.methods}")
        check_old_tolerance(self.old_tolerance)
        if not 0 < self.old_fraction < 1:
            raise ValueError(f"old_fraction must be in (0, 1), got {self.old_fraction!r}")


@dataclass
class QCoreRun:
    """What :func:`qcore_continual` returns."""

    config: QCoreConfig
    model_bytes: bytes = field(repr=False)
    calibrator: BitFlipCalibrator = field(repr=False)
    results: dict[str, StreamResult] = field(default_factory=dict)
    fit_report: dict = field(default_factory=dict)
    float_accuracy: dict = field(default_factory=dict)
    tracker_checks: int = 0
    seconds: dict = field(default_factory=dict)
    chunks: list[Chunk] = field(default_factory=list, repr=False)
    eval_sets: dict = field(default_factory=dict, repr=False)  # name -> raw (x, y)
    input_stats: object = field(default=None, repr=False)  # ChannelStats of the training data

    def rows(self) -> list[dict]:
        """One row per method: the stream metrics plus the config's key settings."""
        return [
            {"method": m, "weight_bits": self.config.weight_bits, **r.metrics()}
            for m, r in self.results.items()
        ]

    def recovery(self, metric: str = "adapted_acc") -> float | None:
        """QCore's share of back-propagation fine-tuning's gain over no calibration in
        ``metric`` (None when back-propagation gains nothing or a method did not run)."""
        return recovery({m: r.metrics() for m, r in self.results.items()}, metric)

    def summary(self) -> dict:
        return {
            "config": asdict(self.config),
            "rows": self.rows(),
            "recovery_of_bp_gain": {
                m: self.recovery(m) for m in ("adapted_acc", "avg_acc", "final_acc")
            },
            "fit_report": self.fit_report,
            "float_accuracy": self.float_accuracy,
            "memory": self.calibrator.memory(self.config.chunk_size),
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


def recovery(metrics: dict[str, dict], metric: str = "adapted_acc") -> float | None:
    """QCore's share of back-propagation fine-tuning's gain over no calibration in ``metric``,
    from ``{method: metrics}`` (None when back-propagation gains nothing or a method is
    missing)."""
    if not {"none", "qcore_bitflip", "bp_finetune"} <= set(metrics):
        return None
    gain = metrics["bp_finetune"][metric] - metrics["none"][metric]
    return (metrics["qcore_bitflip"][metric] - metrics["none"][metric]) / gain if gain > 0 else None


def plot_curves(ax, curves: dict) -> None:
    """Per method, the accuracy on the subjects seen so far after each chunk (none dotted)."""
    for method, curve in curves.items():
        ax.plot(
            range(1, len(curve) + 1),
            curve,
            marker="o",
            label=method,
            linestyle=":" if method == "none" else "-",
        )
    ax.grid(alpha=0.3)


def _say(verbose: int, text: str) -> None:
    if verbose:
        print(text, flush=True)


def qcore_continual(config: QCoreConfig | None = None, verbose: int = 1) -> QCoreRun:
    """Run the QCore recipe (see the module doc) and every method of ``config.methods``."""

    config = config or QCoreConfig()
    seconds = {}
    t0 = time.perf_counter()
    rng = np.random.default_rng(config.seed)
    data = make_stream(config, rng)
    (train_x, train_y), chunks, eval_sets = data.train, data.chunks, data.eval_sets
    fp_epochs = config.fp_epochs or {"imu_watch": 30, "fashion_shift": 10}[config.stream]
    seconds["data"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    _say(
        verbose,
        f"[qcore] {data.name}: float model on {len(train_y)} samples, {fp_epochs} epochs, "
        "quantization-miss tracking",
    )
    tf.keras.utils.set_random_seed(config.seed)
    fp = models.compile_classifier(data.build_model(config.hidden))
    tracker = QuantMissTracker(train_x, train_y, every=5, seed=config.seed)
    fp.fit(train_x, train_y, epochs=fp_epochs, batch_size=32, verbose=0, callbacks=[tracker])
    float_accuracy = {
        n: float(fp.evaluate(x, y, verbose=0)[1]) for n, (x, y) in eval_sets.items()
    }
    seconds["fp_train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    q = ptq_model(fp, config.weight_bits, 8, train_x[:800])
    model_bytes = convert(q, train_x[:200])
    keras.backend.clear_session()
    seconds["quantize_convert"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    idx = tracker.sample(config.core_size)
    cal = BitFlipCalibrator(
        model_bytes,
        head_layers=1,
        core_size=config.core_size,
        memory_size=config.memory_size,
        old_tolerance=config.old_tolerance,
        hidden=config.flipnet_hidden,
        max_steps=config.max_steps,
        tries=config.tries,
        seed=config.seed + 1,
    )
    fit_report = cal.fit(
        (train_x[idx], train_y[idx]),
        data.offline,
        chunk_size=config.chunk_size,
        episodes=config.episodes,
    )
    seconds["flipnet_fit"] = time.perf_counter() - t0
    _say(
        verbose,
        f"[qcore] deployed W{config.weight_bits} model {len(model_bytes)} B; QCore of "
        f"{config.core_size} from {tracker.checks} miss checks; flip nets "
        f"{', '.join(f'{k}: {v["net_bytes"]} B' for k, v in fit_report.items())}",
    )

    results = {}
    # QCore last, so that the calibrator is left as QCore calibrated it
    order = sorted(config.methods, key=lambda m: m == "qcore_bitflip")
    for method in order:
        t0 = time.perf_counter()
        results[method] = run_stream(
            cal,
            chunks,
            eval_sets,
            method,
            bp_steps=config.bp_steps,
            bp_learning_rate=config.bp_learning_rate,
            replay_pool=(train_x, train_y),
            seed=config.seed,
        )
        seconds[f"stream_{method}"] = time.perf_counter() - t0
        m = results[method].metrics()
        _say(
            verbose,
            f"[qcore] {method:14s} final {m['final_acc']:.3f} avg {m['avg_acc']:.3f} "
            f"forgetting {m['forgetting']:.3f} old {m['old_acc']:.3f}",
        )
    results = {m: results[m] for m in config.methods}
    return QCoreRun(
        config,
        model_bytes,
        cal,
        results,
        fit_report,
        float_accuracy,
        tracker.checks,
        seconds,
        chunks,
        eval_sets,
        data.input_stats,
    )


def summary_table(run: QCoreRun) -> str:
    """The methods side by side, one line each."""
    header = (
        f"  {'method':14s} {'adapted':>8s} {'avg':>6s} {'final':>6s} {'forget':>7s} "
        f"{'old':>6s} {'bytes':>7s}"
    )
    lines = [header]
    for row in run.rows():
        lines.append(
            f"  {row['method']:14s} {row['adapted_acc']:8.3f} {row['avg_acc']:6.3f} "
            f"{row['final_acc']:6.3f} {row['forgetting']:7.3f} {row['old_acc']:6.3f} "
            f"{row['memory_bytes']:7d}"
        )
    return "\n".join(lines)


def write_run(run: QCoreRun, out_dir: str) -> list[str]:
    """Write the deployed and the QCore-calibrated .tflite, ``qcore.npz`` (the calibrator's
    bundle after the stream, which goes with the calibrated .tflite into ``edgeplus export
    arduino``), ``qcore.json`` (summary, per chunk accuracies) and ``qcore.png`` (accuracy after
    each chunk); return the file names."""
    import json
    import os

    os.makedirs(out_dir, exist_ok=True)
    bits = run.config.weight_bits
    stem = f"{run.config.stream}_w{bits}a8"
    names = [f"{stem}.tflite"]
    with open(os.path.join(out_dir, names[0]), "wb") as f:
        f.write(run.model_bytes)
    if "qcore_bitflip" in run.results:
        names.append(f"{stem}_qcore.tflite")
        with open(os.path.join(out_dir, names[-1]), "wb") as f:
            f.write(run.calibrator.model_bytes())
    record = run.summary()
    record["chunks"] = [c.domain for c in run.chunks]
    record["accuracy_after_chunk"] = {
        m: {"eval_sets": r.eval_names, "rows": r.accuracy.tolist()} for m, r in run.results.items()
    }
    if "qcore_bitflip" in run.results:  # the device's state after the stream, for the sketch

        names.append("qcore.npz")
        save_qcore(run.calibrator, os.path.join(out_dir, names[-1]), run.input_stats)
    names.append("qcore.json")
    with open(os.path.join(out_dir, names[-1]), "w") as f:
        json.dump(record, f, indent=2, default=str)
    names.append("qcore.png")
    _plot(run, os.path.join(out_dir, names[-1]))
    return names


def _plot(run: QCoreRun, path: str) -> None:
    plt = agg_pyplot()
    fig, (curve_ax, bar_ax) = plt.subplots(1, 2, figsize=(11, 3.8))
    plot_curves(curve_ax, {m: r.seen_accuracy() for m, r in run.results.items()})
    curve_ax.set_xticks(
        range(1, len(run.chunks) + 1),
        [c.domain.replace("subject", "s") for c in run.chunks],
        fontsize=8,
    )
    curve_ax.set_xlabel("chunk (its subject)")
    curve_ax.set_ylabel("accuracy on the subjects seen so far")
    curve_ax.set_title(f"continual calibration, W{run.config.weight_bits} head")
    curve_ax.legend(fontsize=8)
    domains = list(dict.fromkeys(c.domain for c in run.chunks))
    x = np.arange(len(domains))
    width = 0.8 / max(len(run.results), 1)
    for i, (method, r) in enumerate(run.results.items()):
        last = [max(t + 1 for t, c in enumerate(r.chunk_domains) if c == d) for d in domains]
        acc = [r.accuracy[t, r.eval_names.index(d)] for t, d in zip(last, domains)]
        bar_ax.bar(x + (i - (len(run.results) - 1) / 2) * width, acc, width, label=method)
    bar_ax.set_xticks(x, domains)
    bar_ax.set_ylim(0, 1)
    bar_ax.set_title("each new subject right after its chunks")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
