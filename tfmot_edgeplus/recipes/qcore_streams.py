"""The data streams of the QCore recipe (:func:`~tfmot_edgeplus.recipes.qcore.qcore_continual`):
what the model trains on, the shifted data its flip networks learn from offline, the chunks that
reach the device, and the held-out sets it is judged on.

Two streams (:data:`STREAMS`), so that the method is not fitted to one:

- ``imu_watch``: the smartwatch IMU exercises (2 s windows, 50 % overlap), a shift between
  people. The windows of ``train_subjects`` train the model; inside every recording the last
  ``old_fraction`` of the windows (one window later, so no held-out window overlaps a training
  one) is held out as the ``old`` eval set (the training domain). ``offline_subjects`` are the
  shifted data the flip networks learn from. Each of ``stream_subjects`` is split inside every
  recording the same way: its first half gives ``chunks_per_domain`` chunks of ``chunk_size``
  windows (the stream, in subject order), its second half (one window later) is that subject's
  eval set. Channel statistics come from the training windows only.
- ``fashion_shift``: Fashion-MNIST under a documented covariate shift of the images (the
  camera turns, loses contrast, moves). ``FASHION_TRAIN`` images of the training split train
  the model on clean images; ``old`` is ``FASHION_EVAL`` clean images of the test split. The
  stream's domains (:data:`FASHION_STREAM_SHIFTS`, in that order) and the offline ones
  (:data:`FASHION_OFFLINE_SHIFTS`, which the stream never shows) are transforms of images the
  model never saw: each domain's chunks come from its own disjoint slice of the rest of the
  training split, its eval set from its own disjoint slice of the test split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from tfmot_edgeplus import models
from tfmot_edgeplus.calibration import Chunk
from tfmot_edgeplus.datasets.fashion_mnist import fashion_mnist
from tfmot_edgeplus.datasets.imu_watch import channel_stats, imu_watch

__all__ = [
    "FASHION_OFFLINE_SHIFTS",
    "FASHION_STREAM_SHIFTS",
    "STREAMS",
    "StreamData",
    "fashion_shift_stream",
    "imu_watch_stream",
    "make_stream",
    "shift_images",
    "split_recordings",
]

STREAMS = ("imu_watch", "fashion_shift")

FASHION_TRAIN = 6000
FASHION_EVAL = 1000
FASHION_OFFLINE = 1000  # images per offline shift
# name -> (rotation in degrees, contrast about mid-grey, translation in pixels (down, right))
FASHION_STREAM_SHIFTS = {
    "rotate+20": (20.0, 1.0, (0, 0)),
    "contrast0.5": (0.0, 0.5, (0, 0)),
    "rotate-20": (-20.0, 1.0, (0, 0)),
    "move3": (0.0, 1.0, (3, 3)),
}
FASHION_OFFLINE_SHIFTS = {
    "rotate+10": (10.0, 1.0, (0, 0)),
    "contrast0.7_move2": (0.0, 0.7, (-2, 2)),
}


@dataclass
class StreamData:
    """One stream, ready for the recipe."""

    name: str
    train: tuple  # (x, y): the training domain
    offline: list  # [(x, y)]: shifted data the flip networks learn from
    chunks: list[Chunk] = field(repr=False)
    eval_sets: dict = field(repr=False)  # "old" (held-out training domain), then one per domain
    build_model: Callable = field(repr=False)  # hidden -> float Keras model, a 2-layer head
    input_stats: object = field(default=None, repr=False)  # IMU ChannelStats, None for images


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


def _chunks(domain: str, x, y, config, rng) -> list[Chunk]:
    need = config.chunk_size * config.chunks_per_domain
    if need > len(y):
        raise ValueError(
            f"domain {domain!r} has {len(y)} calibration samples, fewer than chunk_size x "
            f"chunks_per_domain = {need}; lower one of them"
        )
    order = rng.permutation(len(y))
    return [
        Chunk(domain, x[pick], y[pick])
        for pick in (
            order[c * config.chunk_size : (c + 1) * config.chunk_size]
            for c in range(config.chunks_per_domain)
        )
    ]


def imu_watch_stream(config, rng) -> StreamData:
    """The ``imu_watch`` stream (module doc) for a
    :class:`~tfmot_edgeplus.recipes.qcore.QCoreConfig`."""
    ds = imu_watch(overlap=0.5)
    train, old = split_recordings(
        ds.select(np.isin(ds.subject, config.train_subjects)), config.old_fraction
    )
    stats = channel_stats(train)
    train, old = stats.apply(train), stats.apply(old)
    chunks, eval_sets = [], {"old": (old.x, old.y)}
    for s in config.stream_subjects:
        calib, test = split_recordings(stats.apply(ds.select(ds.subject == s)), 0.5)
        chunks += _chunks(f"subject{s}", calib.x, calib.y, config, rng)
        eval_sets[f"subject{s}"] = (test.x, test.y)
    offline = [
        (d.x, d.y)
        for d in (stats.apply(ds.select(ds.subject == s)) for s in config.offline_subjects)
    ]
    return StreamData(
        "imu_watch",
        (train.x, train.y),
        offline,
        chunks,
        eval_sets,
        lambda hidden: models.imu_cnn(hidden=hidden),
        stats,
    )


def shift_images(x: np.ndarray, rotate: float, contrast: float, move) -> np.ndarray:
    """Images (N, H, W, 1) in [0, 1] turned by ``rotate`` degrees (bilinear, black outside),
    their contrast scaled by ``contrast`` about mid-grey, then moved by ``move`` = (down,
    right) pixels (black fill); float32 in [0, 1]."""
    out = np.asarray(x, np.float32)
    if rotate:
        out = ndimage.rotate(out, rotate, axes=(1, 2), reshape=False, order=1, mode="constant")
    if contrast != 1.0:
        out = 0.5 + contrast * (out - 0.5)
    if any(move):
        out = ndimage.shift(out, (0, *move, 0), order=0, mode="constant", cval=0.0)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def fashion_shift_stream(config, rng) -> StreamData:
    """The ``fashion_shift`` stream (module doc)."""
    data = fashion_mnist()
    per_domain = config.chunk_size * config.chunks_per_domain
    train_order = rng.permutation(len(data.y_train))
    test_order = rng.permutation(len(data.y_test))
    streamed = per_domain * len(FASHION_STREAM_SHIFTS)
    need = FASHION_TRAIN + streamed + FASHION_OFFLINE * len(FASHION_OFFLINE_SHIFTS)
    if need > len(train_order):
        raise ValueError(
            f"the fashion_shift stream needs {need} training images, the split has "
            f"{len(train_order)}; lower chunk_size or chunks_per_domain"
        )
    train, rest = train_order[:FASHION_TRAIN], train_order[FASHION_TRAIN:]
    old = test_order[:FASHION_EVAL]
    chunks, eval_sets = [], {"old": (data.x_test[old], data.y_test[old])}
    for i, (name, shift) in enumerate(FASHION_STREAM_SHIFTS.items()):
        pick = rest[i * per_domain : (i + 1) * per_domain]
        x = shift_images(data.x_train[pick], *shift)
        chunks += _chunks(name, x, data.y_train[pick], config, rng)
        test = test_order[(i + 1) * FASHION_EVAL : (i + 2) * FASHION_EVAL]
        eval_sets[name] = (shift_images(data.x_test[test], *shift), data.y_test[test])
    offline = []
    for i, shift in enumerate(FASHION_OFFLINE_SHIFTS.values()):
        pick = rest[streamed + i * FASHION_OFFLINE : streamed + (i + 1) * FASHION_OFFLINE]
        offline.append((shift_images(data.x_train[pick], *shift), data.y_train[pick]))
    return StreamData(
        "fashion_shift",
        (data.x_train[train], data.y_train[train]),
        offline,
        chunks,
        eval_sets,
        lambda hidden: models.small_cnn(hidden=hidden, name="fashion_cnn"),
    )


def make_stream(config, rng) -> StreamData:
    """The stream ``config.stream`` names."""
    if config.stream == "imu_watch":
        return imu_watch_stream(config, rng)
    return fashion_shift_stream(config, rng)
