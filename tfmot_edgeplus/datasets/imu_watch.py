"""Smartwatch shoulder-exercise IMU data (seglearn's ``load_watch``), cut into windows.

Source: the file ``seglearn/data/watch_dataset.npy`` of the PyPI package ``seglearn``
(Burns et al., arXiv:1802.01489): 140 recordings of a 6-axis IMU (``ax ay az wx wy wz``,
accelerometer then gyroscope) sampled at 50 Hz, 7 exercise classes, 10 subjects (1..10),
14 recordings each (both arms). We read that file directly with NumPy instead of calling
``seglearn.datasets.load_watch()``: it is the same file, and ``import seglearn`` needs
pandas, which seglearn does not declare as a dependency.

Windows: a recording of ``n`` samples gives ``(n - window) // step + 1`` windows of
``window = round(window_s * 50)`` samples starting every ``step = round(window *
(1 - overlap))`` samples; the tail that does not fill a window is dropped, and recordings
shorter than a window give none. Defaults (2 s, 50 % overlap) give 4677 windows of
(100, 6). Every window keeps its recording's label, subject, side and recording index.

Normalisation is NOT applied by the loader, because statistics must come from the
training subjects only (using the test subjects' statistics leaks them). Do::

    ds = imu_watch()
    train, test = split_by_subject(ds, test_subjects=(9, 10))
    stats = channel_stats(train)        # per-channel mean/std over train windows
    train, test = stats.apply(train), stats.apply(test)
    stats.to_dict()                     # the same numbers, for the firmware

Overlapping windows count each sample up to ``window / step`` times in the statistics,
exactly as the model sees them.
"""

from __future__ import annotations

import importlib.util
import numbers
import os
from dataclasses import dataclass, replace

import numpy as np

from ._errors import DatasetCorruptError, DatasetNotFoundError

__all__ = [
    "SAMPLE_RATE_HZ",
    "ChannelStats",
    "IMUWindows",
    "channel_stats",
    "imu_watch",
    "split_by_subject",
]

SAMPLE_RATE_HZ = 50.0
_INSTALL = ("Install it with `pip install 'tfmot_edgeplus[datasets]'` (or `pip install seglearn`; "
            "the data file ships inside the package).")
_REINSTALL = "Reinstall it with `pip install --force-reinstall --no-deps seglearn`."
_KEYS = ("X", "y", "subject", "side", "X_labels", "y_labels")


@dataclass(frozen=True, eq=False)
class IMUWindows:
    """Fixed-length IMU windows with per-window metadata.

    Attributes:
        x: float32 (N, window, 6) samples, channels ``channel_names``.
        y: int64 (N,) exercise class index into ``class_names``.
        subject: int64 (N,) subject id of the source recording (1..10).
        recording: int64 (N,) index of the source recording in the file (0..139): windows
            of one recording overlap, so keep them on the same side of any split.
        side: int8 (N,) 1 = right arm, 0 = left arm.
        class_names, channel_names: names from the data file.
        sample_rate_hz: 50.0.
        window, step: window length and hop, in samples.
    """

    x: np.ndarray
    y: np.ndarray
    subject: np.ndarray
    recording: np.ndarray
    side: np.ndarray
    class_names: tuple[str, ...]
    channel_names: tuple[str, ...]
    sample_rate_hz: float
    window: int
    step: int

    def __len__(self) -> int:
        return len(self.y)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def subjects(self) -> tuple[int, ...]:
        """Sorted subject ids present."""
        return tuple(int(s) for s in np.unique(self.subject))

    @property
    def input_shape(self) -> tuple[int, int]:
        return (self.window, len(self.channel_names))

    def select(self, index) -> IMUWindows:
        """Windows picked by a boolean mask or an index array (metadata follows)."""
        index = np.asarray(index)
        if index.dtype == bool and index.shape != self.y.shape:
            raise ValueError(
                f"boolean mask of shape {index.shape} does not match {len(self)} windows"
            )
        return replace(
            self,
            x=self.x[index],
            y=self.y[index],
            subject=self.subject[index],
            recording=self.recording[index],
            side=self.side[index],
        )

    def __repr__(self) -> str:
        return (
            f"IMUWindows(n={len(self)}, window={self.window}, step={self.step}, "
            f"subjects={list(self.subjects)}, num_classes={self.num_classes})"
        )


@dataclass(frozen=True, eq=False)
class ChannelStats:
    """Per-channel mean and standard deviation (float32, shape (channels,))."""

    mean: np.ndarray
    std: np.ndarray
    channel_names: tuple[str, ...] = ()

    def apply(self, data):
        """Standardise an :class:`IMUWindows` (returns a new one) or an array (..., C)."""
        x = data.x if isinstance(data, IMUWindows) else np.asarray(data)
        if x.shape[-1] != self.mean.shape[0]:
            raise ValueError(
                f"data has {x.shape[-1]} channels (shape {x.shape}) but the statistics have "
                f"{self.mean.shape[0]}"
            )
        out = ((x - self.mean) / self.std).astype(np.float32)
        return replace(data, x=out) if isinstance(data, IMUWindows) else out

    def to_dict(self) -> dict:
        """Plain lists, for JSON or a C header: the device must standardise the same way."""
        return {
            "channel_names": list(self.channel_names),
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
        }


def channel_stats(data) -> ChannelStats:
    """Per-channel mean/std over all windows and time steps of ``data`` (windows or array).

    Compute it on the training subjects only. A channel with zero variance gets std 1
    (it is only centred) so that ``apply`` never divides by zero.
    """
    names = data.channel_names if isinstance(data, IMUWindows) else ()
    x = data.x if isinstance(data, IMUWindows) else np.asarray(data)
    if x.ndim < 2 or x.size == 0:
        raise ValueError(f"channel_stats needs a non-empty array (..., channels), got {x.shape}")
    flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
    mean = flat.mean(axis=0)
    std = flat.std(axis=0)
    std[std == 0] = 1.0
    return ChannelStats(mean.astype(np.float32), std.astype(np.float32), tuple(names))


def _default_source() -> str:
    # find_spec on a top-level package locates it without executing its __init__.
    spec = importlib.util.find_spec("seglearn")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError(
            "The smartwatch IMU data set comes from the Python package seglearn, which is "
            f"not installed. {_INSTALL}"
        )
    path = os.path.join(next(iter(spec.submodule_search_locations)), "data", "watch_dataset.npy")
    if not os.path.isfile(path):
        raise DatasetNotFoundError(f"seglearn is installed but {path} is missing. {_REINSTALL}")
    return path


def _load_raw(path: str) -> dict:
    if not os.path.isfile(path):
        raise DatasetNotFoundError(f"IMU watch data file {path!r} not found. {_INSTALL}")
    try:
        # The file is a pickled dict (that is how seglearn ships it); it comes from an
        # installed package, trusted like the package's code.
        raw = np.load(path, allow_pickle=True).item()
    except Exception as exc:
        raise DatasetCorruptError(
            f"{path}: cannot be read as seglearn's watch data ({type(exc).__name__}: {exc}). "
            + _REINSTALL
        ) from exc
    if not isinstance(raw, dict) or any(k not in raw for k in _KEYS):
        have = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        raise DatasetCorruptError(
            f"{path}: expected a dict with keys {list(_KEYS)}, got {have}. {_REINSTALL}"
        )
    n = len(raw["X"])
    for key in ("y", "subject", "side"):
        if len(raw[key]) != n:
            raise DatasetCorruptError(
                f"{path}: {n} recordings in 'X' but {len(raw[key])} entries in {key!r}. "
                + _REINSTALL
            )
    n_channels = len(raw["X_labels"])
    for i, rec in enumerate(raw["X"]):
        rec = np.asarray(rec)
        if rec.ndim != 2 or rec.shape[1] != n_channels or not np.isfinite(rec).all():
            raise DatasetCorruptError(
                f"{path}: recording {i} has shape {rec.shape} (expected (n, {n_channels}), "
                f"finite values). {_REINSTALL}"
            )
    y = np.asarray(raw["y"])
    if n and (y.min() < 0 or y.max() >= len(raw["y_labels"])):
        raise DatasetCorruptError(
            f"{path}: labels span [{y.min()}, {y.max()}] but there are "
            f"{len(raw['y_labels'])} class names. {_REINSTALL}"
        )
    return raw


def _window_params(window_s, overlap) -> tuple[int, int]:
    if isinstance(window_s, bool) or not isinstance(window_s, numbers.Real):
        raise TypeError(f"window_s must be a positive number of seconds, got {window_s!r}")
    if not window_s > 0:
        raise ValueError(f"window_s must be a positive number of seconds, got {window_s!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, numbers.Real):
        raise TypeError(f"overlap must be a float in [0, 1), got {overlap!r}")
    if not 0.0 <= float(overlap) < 1.0:
        raise ValueError(
            f"overlap must be in [0, 1) (0 = disjoint windows, 0.5 = half shared), got {overlap}"
        )
    window = round(float(window_s) * SAMPLE_RATE_HZ)
    if window < 1:
        raise ValueError(f"window_s={window_s} is shorter than one sample at {SAMPLE_RATE_HZ:g} Hz")
    step = max(1, round(window * (1.0 - float(overlap))))
    return window, step


def imu_watch(
    window_s: float = 2.0, overlap: float = 0.5, source: str | os.PathLike | None = None
) -> IMUWindows:
    """Load seglearn's smartwatch exercise set as sliding windows.

    Args:
        window_s: window length in seconds (2.0 s = 100 samples at 50 Hz).
        overlap: fraction of a window shared with the next one, in [0, 1).
        source: path of a ``watch_dataset.npy``; default: the one inside the installed
            seglearn package.

    Returns:
        :class:`IMUWindows` with raw (not normalised) float32 x of shape (N, window, 6); see
        the module docstring for subject-wise splits and normalisation.
    """
    window, step = _window_params(window_s, overlap)
    path = _default_source() if source is None else os.fspath(source)
    raw = _load_raw(path)
    xs, ys, subjects, recordings, sides = [], [], [], [], []
    for i, rec in enumerate(raw["X"]):
        rec = np.asarray(rec, dtype=np.float32)
        if len(rec) < window:
            continue
        # (n_windows, channels, window) view -> (n_windows, window, channels)
        wins = np.lib.stride_tricks.sliding_window_view(rec, window, axis=0)[::step]
        xs.append(np.ascontiguousarray(wins.transpose(0, 2, 1)))
        k = len(wins)
        ys.append(np.full(k, int(raw["y"][i]), np.int64))
        subjects.append(np.full(k, int(raw["subject"][i]), np.int64))
        recordings.append(np.full(k, i, np.int64))
        sides.append(np.full(k, int(raw["side"][i]), np.int8))
    if not xs:
        longest = max((len(r) for r in raw["X"]), default=0)
        raise ValueError(
            f"window_s={window_s} ({window} samples) is longer than every recording (the "
            f"longest has {longest} samples = {longest / SAMPLE_RATE_HZ:.1f} s); use a shorter "
            "window"
        )
    return IMUWindows(
        x=np.concatenate(xs),
        y=np.concatenate(ys),
        subject=np.concatenate(subjects),
        recording=np.concatenate(recordings),
        side=np.concatenate(sides),
        class_names=tuple(str(s) for s in raw["y_labels"]),
        channel_names=tuple(str(s) for s in raw["X_labels"]),
        sample_rate_hz=SAMPLE_RATE_HZ,
        window=window,
        step=step,
    )


def split_by_subject(ds: IMUWindows, test_subjects) -> tuple[IMUWindows, IMUWindows]:
    """Split windows into (train, test) by subject: no subject is on both sides.

    Args:
        ds: windows from :func:`imu_watch`.
        test_subjects: one subject id or an iterable of ids, all present in ``ds``, leaving
            at least one subject for training.
    """
    if not isinstance(ds, IMUWindows):
        raise TypeError(f"ds must be IMUWindows from imu_watch(), got {type(ds).__name__}")
    if isinstance(test_subjects, numbers.Integral):
        test_subjects = (test_subjects,)
    try:
        wanted = sorted({int(s) for s in test_subjects})
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"test_subjects must be a subject id or an iterable of ids, got {test_subjects!r}"
        ) from exc
    present = ds.subjects
    unknown = [s for s in wanted if s not in present]
    if not wanted or unknown:
        raise ValueError(
            f"test_subjects must be a non-empty subset of the subjects present {list(present)}, "
            f"got {list(wanted)}" + (f" (unknown: {unknown})" if unknown else "")
        )
    if len(wanted) == len(present):
        raise ValueError(
            f"test_subjects={wanted} takes every subject; leave at least one for training"
        )
    is_test = np.isin(ds.subject, wanted)
    return ds.select(~is_test), ds.select(is_test)
