"""QCore end to end on the IMU watch data: a deployed model meets new subjects and recalibrates.

One function, :func:`qcore_continual`, runs the recipe of ALGORITHMS.md section 2; ``edgeplus
qcore``, the demo's IMU part and ``benchmarks/continual.py`` go through it::

    run = qcore_continual(QCoreConfig(weight_bits=4))
    run.results["qcore_bitflip"].metrics()     # avg_acc, final_acc, forgetting, ...
    run.calibrator.model_bytes()               # the calibrated flatbuffer (after the stream)

Steps (each timed in ``run.seconds``):

1. Data: the windows (2 s, 50 % overlap) of ``train_subjects`` train the model; inside every
   recording the last ``old_fraction`` of the windows (one window later, so no test window
   overlaps a training one) is held out as the ``old`` eval set (the training domain).
   ``offline_subjects`` are the shifted data the flip networks learn from. Each of
   ``stream_subjects`` is split inside every recording the same way: its first half gives
   ``chunks_per_subject`` chunks of ``chunk_size`` windows (the stream, in subject order),
   its second half (one window later) is that subject's eval set. Channel statistics come
   from the training windows only.
2. The float model (``models.imu_cnn(hidden=...)``: a two-layer head) trains ``fp_epochs``
   epochs with a :class:`~tfmot_edgeplus.coreset.QuantMissTracker` (bit-widths 2, 3, 4, 5, 8
   and FP every 5 epochs); the QCore is ``tracker.sample(core_size)``.
3. PTQ at ``weight_bits`` (8-bit activations) and full-integer conversion: the deployed
   model, which TFLM runs.
4. :class:`~tfmot_edgeplus.calibration.BitFlipCalibrator` on the deployed bytes, fitted
   offline on QCore + ``offline_subjects`` chunks. It calibrates the last layer (the
   classifier); the device keeps the QCore and the chunk as that layer's int8 inputs (the
   ``hidden``-wide ReLU features), so a step never re-runs the layers before it. (Flip
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
    run_stream,
    save_qcore,
)
from tfmot_edgeplus.conversion import convert
from tfmot_edgeplus.coreset import QuantMissTracker
from tfmot_edgeplus.datasets.imu_watch import channel_stats, imu_watch
from tfmot_edgeplus.recipes.cora import ptq_model

__all__ = [
    "QCoreConfig",
    "QCoreRun",
    "plot_curves",
    "qcore_continual",
    "recovery",
    "split_recordings",
    "summary_table",
    "write_run",
]


@dataclass(frozen=True)
class QCoreConfig:
    """Settings of :func:`qcore_continual`, validated at construction."""

    weight_bits: int = 4
    train_subjects: tuple = (1, 2, 3, 4)
    offline_subjects: tuple = (5, 6)
    stream_subjects: tuple = (7, 8, 9, 10)
    chunk_size: int = 40
    chunks_per_subject: int = 2
    old_fraction: float = 0.25
    fp_epochs: int = 30
    hidden: int = 32
    core_size: int = 20
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
            "chunks_per_subject",
            "fp_epochs",
            "hidden",
            "core_size",
            "max_steps",
            "tries",
            "flipnet_hidden",
            "episodes",
            "bp_steps",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
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


def split_recordings(ds, fraction: float):
    """Split every recording's windows in time: the first ``1 - fraction`` and, one window
    later (so that no window of the second part overlaps one of the first at 50 % overlap),
    the rest. Returns two :class:`~tfmot_edgeplus.datasets.IMUWindows`."""
    first, second = [], []
    for rec in np.unique(ds.recording):
        idx = np.flatnonzero(ds.recording == rec)
        cut = round(len(idx) * (1 - fraction))
        first.extend(idx[:cut])
        second.extend(idx[cut + 1 :])
    return ds.select(np.asarray(first, np.int64)), ds.select(np.asarray(second, np.int64))


def _say(verbose: int, text: str) -> None:
    if verbose:
        print(text, flush=True)


def qcore_continual(config: QCoreConfig | None = None, verbose: int = 1) -> QCoreRun:
    """Run the QCore recipe (see the module doc) and every method of ``config.methods``."""

    config = config or QCoreConfig()
    seconds = {}
    t0 = time.perf_counter()
    ds = imu_watch(overlap=0.5)
    train, old = split_recordings(
        ds.select(np.isin(ds.subject, config.train_subjects)), config.old_fraction
    )
    stats = channel_stats(train)
    train, old = stats.apply(train), stats.apply(old)
    rng = np.random.default_rng(config.seed)
    chunks, eval_sets = [], {"old": (old.x, old.y)}
    for s in config.stream_subjects:
        calib, test = split_recordings(stats.apply(ds.select(ds.subject == s)), 0.5)
        order = rng.permutation(len(calib))
        need = config.chunk_size * config.chunks_per_subject
        if need > len(order):
            raise ValueError(
                f"subject {s} has {len(order)} calibration windows, fewer than chunk_size x "
                f"chunks_per_subject = {need}; lower one of them"
            )
        for c in range(config.chunks_per_subject):
            pick = order[c * config.chunk_size : (c + 1) * config.chunk_size]
            chunks.append(Chunk(f"subject{s}", calib.x[pick], calib.y[pick]))
        eval_sets[f"subject{s}"] = (test.x, test.y)
    offline = [
        (d.x, d.y)
        for d in (stats.apply(ds.select(ds.subject == s)) for s in config.offline_subjects)
    ]
    seconds["data"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    _say(
        verbose,
        f"[qcore] float model: {len(train)} windows of subjects "
        f"{list(config.train_subjects)}, {config.fp_epochs} epochs, quantization-miss "
        "tracking",
    )
    tf.keras.utils.set_random_seed(config.seed)
    fp = models.compile_classifier(models.imu_cnn(hidden=config.hidden))
    tracker = QuantMissTracker(train.x, train.y, every=5, seed=config.seed)
    fp.fit(train.x, train.y, epochs=config.fp_epochs, batch_size=32, verbose=0, callbacks=[tracker])
    float_accuracy = {
        "old": float(fp.evaluate(old.x, old.y, verbose=0)[1]),
        **{
            n: float(fp.evaluate(x, y, verbose=0)[1])
            for n, (x, y) in eval_sets.items()
            if n != "old"
        },
    }
    seconds["fp_train"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    q = ptq_model(fp, config.weight_bits, 8, train.x[:800])
    model_bytes = convert(q, train.x[:200])
    keras.backend.clear_session()
    seconds["quantize_convert"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    idx = tracker.sample(config.core_size)
    cal = BitFlipCalibrator(
        model_bytes,
        head_layers=1,
        core_size=config.core_size,
        hidden=config.flipnet_hidden,
        max_steps=config.max_steps,
        tries=config.tries,
        seed=config.seed + 1,
    )
    fit_report = cal.fit(
        (train.x[idx], train.y[idx]),
        offline,
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
            replay_pool=(train.x, train.y),
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
        stats,
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
    names = [f"imu_watch_w{bits}a8.tflite"]
    with open(os.path.join(out_dir, names[0]), "wb") as f:
        f.write(run.model_bytes)
    if "qcore_bitflip" in run.results:
        names.append(f"imu_watch_w{bits}a8_qcore.tflite")
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
