"""The QCore bundle: what a device needs to go on calibrating a deployed model, in one file.

::

    save_qcore(cal, "qcore.npz")                 # a fitted BitFlipCalibrator
    bundle = load_qcore("qcore.npz")
    head = bundle.check_model(model_bytes)       # the IntHead it calibrates, or a clear error

A ``.npz`` (no pickles) holding: the format tag ``edgeplus-qcore/2``; the SHA-256 of the
backbone flatbuffer (the model cut before the head, see :func:`split_head`) and the head's
current int8 weights, which together identify the model the bundle belongs to; its class
count; which head layers are calibrated and their int8 flip networks; the QCore (the old
part: head inputs int8 and labels, fixed) with its guard (``guard_min_correct`` and the
``guard_slack`` it ratchets with, from ``old_tolerance``); the new-data memory (head inputs,
labels, miss counts) and the refresh's rng state; the calibrator's settings (margin, tries,
max_steps, core_size, memory_size, old_tolerance); optionally the per-channel input
normalisation the model expects (``input_mean`` / ``input_std``, e.g.
:class:`~tfmot_edgeplus.datasets.imu_watch.ChannelStats`).
Bundles of format ``edgeplus-qcore/1`` (one QCore refreshed from the new data, no guard) are
refused with how to make a new one.

``edgeplus export arduino --qcore`` writes it into a sketch as C arrays
(:mod:`tfmot_edgeplus.export.arduino`).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import numpy as np

from tfmot_edgeplus.calibration.head import IntHead, split_head
from tfmot_edgeplus.calibration.step import FlipNet

__all__ = ["FORMAT", "QCoreBundle", "load_qcore", "save_qcore", "sha256"]

FORMAT = "edgeplus-qcore/2"
_NET_FIELDS = ("w1", "b1", "m1", "s1", "w2", "b2", "threshold")


def sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data`` (how bundles and sketch banners name the bytes they refer to)."""
    return hashlib.sha256(bytes(data)).hexdigest()


@dataclass
class QCoreBundle:
    """A loaded bundle (see the module doc); ``nets`` maps head layer index -> FlipNet."""

    backbone_sha256: str
    head_layers: int
    head_weights: list[np.ndarray]
    classes: int
    nets: dict[int, FlipNet]
    core_x: np.ndarray  # the QCore (old part, fixed): head inputs int8 and labels
    core_y: np.ndarray
    guard_min_correct: int
    guard_slack: int
    memory_x: np.ndarray  # the new-data memory: head inputs, labels, miss counts
    memory_y: np.ndarray
    memory_counts: np.ndarray
    rng_state: int
    margin: int
    tries: int
    max_steps: int
    core_size: int
    memory_size: int
    old_tolerance: float
    input_mean: np.ndarray | None = None
    input_std: np.ndarray | None = None
    path: str = field(default="", repr=False)

    def check_model(self, model_bytes: bytes) -> IntHead:
        """The model's head, after checking that this bundle was made for ``model_bytes``:
        the same backbone and head weights. Raises ValueError naming what differs."""
        where = f"the QCore bundle {self.path!r}" if self.path else "the QCore bundle"
        try:
            head = split_head(bytes(model_bytes), self.head_layers)
        except ValueError as e:
            raise ValueError(
                f"{where} calibrates the last {self.head_layers} FULLY_CONNECTED layer(s), which "
                f"this model does not have ({e}); pass the model the bundle was saved with"
            ) from None
        got = sha256(head.backbone)
        if got != self.backbone_sha256:
            raise ValueError(
                f"{where} belongs to another model: its backbone SHA-256 is "
                f"{self.backbone_sha256[:16]}..., this model's is {got[:16]}...; pass the .tflite "
                "the calibrator was built on (after calibrating on the host: cal.model_bytes())"
            )
        for l, (layer, w) in enumerate(zip(head.layers, self.head_weights)):
            if layer.shape != w.shape or not np.array_equal(layer.weights, w):
                raise ValueError(
                    f"{where}: head layer {l} ({layer.name!r}) of the model holds other weights "
                    "than the bundle's; the model was calibrated or re-quantized after the "
                    "bundle was saved. Save the bundle and cal.model_bytes() together"
                )
        labels = np.concatenate([self.core_y, self.memory_y]).astype(np.int64)
        if self.classes != head.num_classes or (len(labels) and labels.max() >= self.classes):
            raise ValueError(
                f"{where}: its QCore was labeled for {self.classes} classes (labels up to "
                f"{labels.max() if len(labels) else None}), this model's head has "
                f"{head.num_classes}; the bundle belongs to another model"
            )
        for what, x in (("QCore", self.core_x), ("memory", self.memory_x)):
            if x.ndim != 2 or x.shape[1] != head.input_size:
                raise ValueError(
                    f"{where}: its {what} items have {x.shape[1:]} features, the head of this "
                    f"model takes {head.input_size}; the bundle belongs to another model"
                )
        return head


def save_qcore(cal, path, input_stats=None) -> str:
    """Write the bundle of a fitted :class:`BitFlipCalibrator` ``cal`` (its current head
    weights, flip networks, QCore and guard, memory and rng state) to ``path``; return the
    path.
    ``input_stats``: an object with ``mean`` and ``std`` (per input channel), or None."""
    if not cal.nets:
        raise ValueError("the calibrator has no flip networks: call cal.fit(...) before saving")
    if cal.old_x is None:
        raise ValueError("the calibrator has no QCore: call cal.fit(...) or cal.set_core(...)")
    arrays = {
        "format": np.array(FORMAT),
        "backbone_sha256": np.array(sha256(cal.head.backbone)),
        "head_layers": np.array(len(cal.head.layers)),
        "classes": np.array(cal.head.num_classes, np.int64),
        "calibrated": np.array(sorted(cal.nets), np.int64),
        "core_x": np.asarray(cal.old_x, np.int8),
        "core_y": np.asarray(cal.old_y, np.int64),
        "guard_min_correct": np.array(int(cal.guard_min_correct), np.int64),
        "guard_slack": np.array(int(cal.guard_slack), np.int64),
        "memory_x": np.asarray(cal.mem_x, np.int8).reshape(-1, cal.head.input_size),
        "memory_y": np.asarray(cal.mem_y, np.int64),
        "memory_counts": np.asarray(cal.mem_counts, np.int64),
        "rng_state": np.array(int(cal._rng_state), np.int64),
        "settings": np.array(
            [cal.margin, cal.tries, cal.max_steps, cal.core_size, cal.memory_size], np.int64
        ),
        "old_tolerance": np.array(float(cal.old_tolerance), np.float64),
    }
    for l, w in enumerate(cal.weights):
        arrays[f"head_weights_{l}"] = np.asarray(w, np.int8)
    for l, net in cal.nets.items():
        for name in _NET_FIELDS:
            arrays[f"net_{l}_{name}"] = np.asarray(getattr(net, name))
        arrays[f"net_{l}_bits"] = np.array(-1 if net.bits is None else net.bits)
    if input_stats is not None:
        arrays["input_mean"] = np.asarray(input_stats.mean, np.float32)
        arrays["input_std"] = np.asarray(input_stats.std, np.float32)
    path = os.fspath(path)
    with open(path, "wb") as f:  # np.savez would append .npz to a name without it
        np.savez(f, **arrays)
    return path


def load_qcore(path) -> QCoreBundle:
    """Read a bundle written by :func:`save_qcore`; a clear error for anything else."""
    path = os.fspath(path)
    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"QCore bundle {path!r} not found") from None
    except (ValueError, OSError) as e:
        raise ValueError(f"{path!r} is not a QCore bundle (.npz from save_qcore): {e}") from None
    with z:
        found = str(z["format"]) if "format" in z.files else "none"
        if found.startswith("edgeplus-qcore/") and found != FORMAT:
            raise ValueError(
                f"{path!r} is a QCore bundle of the older format {found!r} (one QCore refreshed "
                f"from the new data, no old-domain guard); this version reads {FORMAT!r}. Make "
                "it again: `edgeplus qcore` (or BitFlipCalibrator.fit and save_qcore) with this "
                "version"
            )
        if found != FORMAT:
            raise ValueError(
                f"{path!r} is not a QCore bundle: format {found!r}, expected {FORMAT!r} "
                "(write one with tfmot_edgeplus.calibration.save_qcore)"
            )
        n = int(z["head_layers"])
        margin, tries, max_steps, core_size, memory_size = (int(v) for v in z["settings"])
        nets = {}
        for l in (int(v) for v in z["calibrated"]):
            bits = int(z[f"net_{l}_bits"])
            fields = {name: z[f"net_{l}_{name}"] for name in _NET_FIELDS}
            for name in ("m1", "s1", "b2", "threshold"):
                fields[name] = int(fields[name])
            nets[l] = FlipNet(**fields, bits=None if bits < 0 else bits)
        return QCoreBundle(
            backbone_sha256=str(z["backbone_sha256"]),
            head_layers=n,
            head_weights=[z[f"head_weights_{l}"] for l in range(n)],
            classes=int(z["classes"]),
            nets=nets,
            core_x=z["core_x"],
            core_y=z["core_y"],
            guard_min_correct=int(z["guard_min_correct"]),
            guard_slack=int(z["guard_slack"]),
            memory_x=z["memory_x"],
            memory_y=z["memory_y"],
            memory_counts=z["memory_counts"],
            rng_state=int(z["rng_state"]),
            margin=margin,
            tries=tries,
            max_steps=max_steps,
            core_size=core_size,
            memory_size=memory_size,
            old_tolerance=float(z["old_tolerance"]),
            input_mean=z["input_mean"] if "input_mean" in z.files else None,
            input_std=z["input_std"] if "input_std" in z.files else None,
            path=path,
        )
