"""QCore's back-propagation-free continual calibration of a deployed model.

::

    cal = BitFlipCalibrator(model_bytes, head_layers=1, core_size=20)
    cal.fit(core=(x_core, y_core), shifts=[(x_a, y_a), (x_b, y_b)])   # offline, on the host
    report = cal.calibrate(x_chunk, y_chunk)    # on the device: QCore + chunk, bit flips
    cal.evaluate(x_test, y_test)                # the calibrated integer model
    cal.model_bytes()                           # the flatbuffer with the new head weights
    cal.reset()                                 # back to the deployed weights and first QCore

- ``model_bytes`` is the converted full-integer model (what runs in TFLM). Its last
  ``head_layers`` FULLY_CONNECTED ops are the head (:func:`split_head`); ``calibrate``
  picks which of them get a flip network: ``"all"`` or the last k (an int).
- :meth:`fit` trains one int8 :class:`FlipNet` per calibrated layer to imitate what a
  back-propagation step does to the integer weights (:func:`bp_flip_target`: the true
  cross-entropy gradient through the head, one level per weight, its size line-searched on
  the samples). Its data are episodes: the QCore (``core``, e.g. from
  :class:`~tfmot_edgeplus.coreset.QuantMissTracker`) plus ``chunk_size`` samples of one of
  the offline ``shifts`` (data from domains the model was not trained on, e.g. held-out
  subjects); each episode follows the teacher for up to ``max_steps`` steps, so the
  networks also see the weights that earlier steps leave. Per weight: the 4 features of
  :mod:`~tfmot_edgeplus.calibration.step` -> the teacher's -1/0/+1. The float network
  (4 -> ``hidden`` -> 1, ReLU) is fitted with MSE, Adam (lr 0.01, gradient-norm clip 2.0,
  as in the paper), then quantized to int8.
- :meth:`calibrate` is the device loop on one chunk: up to ``max_steps``
  :func:`qcore_step` calls on QCore U chunk, each trying ``tries`` confidence levels
  (stopping at the first step that is rolled back), then :func:`qcore_refresh` draws the
  next QCore from QCore U chunk by misses. A chunk whose device memory (QCore + flip
  networks + the C step's scratch on QCore U chunk, :meth:`memory`) would exceed
  ``memory_budget`` bytes (default 32 KB) is refused before anything runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tfmot_edgeplus.calibration.backprop import bp_flip_target
from tfmot_edgeplus.calibration.head import IntHead, split_head, write_head
from tfmot_edgeplus.calibration.step import (
    FEATURES,
    FlipNet,
    StepResult,
    error_signals,
    flip_features,
    qcore_refresh,
    qcore_step,
    score,
)
from tfmot_edgeplus.core.intmath import narrow_range, quantize_multiplier
from tfmot_edgeplus.runtime import TFLMRunner, kernels

__all__ = ["BitFlipCalibrator", "ChunkReport"]


@dataclass
class ChunkReport:
    """One :meth:`BitFlipCalibrator.calibrate` call."""

    steps: list[StepResult] = field(repr=False)
    kept: int
    rolled_back: int
    changed: int
    accuracy_before: float
    accuracy_after: float
    core_from_chunk: int

    def summary(self) -> dict:
        return {
            k: getattr(self, k)
            for k in (
                "kept",
                "rolled_back",
                "changed",
                "accuracy_before",
                "accuracy_after",
                "core_from_chunk",
            )
        }


def _fit_mlp(f, t, hidden, epochs, seed, batch=4096, lr=0.01, clip=2.0):
    """Float 4 -> hidden -> 1 ReLU MLP, MSE weighted so that the rows whose target is a flip
    weigh as much in total as those whose target is 0, Adam with gradient-norm clipping."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 1 / math.sqrt(f.shape[1]), (hidden, f.shape[1])).astype(np.float32)
    b1 = np.zeros(hidden, np.float32)
    w2 = rng.normal(0, 1 / math.sqrt(hidden), hidden).astype(np.float32)
    b2 = np.float32(0)
    params = [w1, b1, w2, np.array([b2])]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    nz = t != 0
    sw = np.where(nz, 0.5 / max(nz.mean(), 1e-6), 0.5 / max(1 - nz.mean(), 1e-6)).astype(np.float32)
    step = 0
    for _ in range(epochs):
        order = rng.permutation(len(f))
        for s in range(0, len(f), batch):
            i = order[s : s + batch]
            x, y = f[i], t[i]
            z1 = x @ params[0].T + params[1]
            h = np.maximum(z1, 0)
            out = h @ params[2] + params[3][0]
            d = 2 * sw[i] * (out - y) / len(y)
            g_w2 = h.T @ d
            g_b2 = np.array([d.sum()])
            dh = np.outer(d, params[2]) * (z1 > 0)
            g_w1 = dh.T @ x
            g_b1 = dh.sum(axis=0)
            grads = [g_w1, g_b1, g_w2, g_b2]
            norm = math.sqrt(sum(float((g * g).sum()) for g in grads))
            if norm > clip:
                grads = [g * (clip / norm) for g in grads]
            step += 1
            for k, g in enumerate(grads):
                m[k] = 0.9 * m[k] + 0.1 * g
                v[k] = 0.999 * v[k] + 0.001 * g * g
                params[k] = params[k] - lr * (m[k] / (1 - 0.9**step)) / (
                    np.sqrt(v[k] / (1 - 0.999**step)) + 1e-7
                )
    return params


def _quantize_mlp(params, f_int, bits: int) -> FlipNet:
    """int8 FlipNet from the float MLP (inputs are ``f_int / 127``); hidden scale from the
    largest hidden activation on the training features."""
    w1, b1, w2, b2 = params
    s_w1 = max(float(np.abs(w1).max()), 1e-8) / 127
    w1q = np.clip(np.round(w1 / s_w1), -127, 127).astype(np.int8)
    acc_scale = s_w1 / 127  # real value of one acc1 unit
    b1q = np.round(b1 / acc_scale).astype(np.int64)
    acc1 = f_int.astype(np.int64) @ w1q.astype(np.int64).T + b1q
    h_max = max(float(acc1.max()) * acc_scale, 1e-6)
    s_h = h_max / 127
    m1, s1 = quantize_multiplier(acc_scale / s_h)
    s_w2 = max(float(np.abs(w2).max()), 1e-8) / 127
    w2q = np.clip(np.round(w2 / s_w2), -127, 127).astype(np.int8)
    out_scale = s_w2 * s_h
    b2q = int(np.clip(round(float(b2[0]) / out_scale), -(2**30), 2**30))
    threshold = min(2**30, max(1, math.ceil((1 / 6) / out_scale)))
    b1q = np.clip(b1q, -(2**30), 2**30).astype(np.int32)
    return FlipNet(w1q, b1q, m1, s1, w2q, b2q, threshold, bits)


class BitFlipCalibrator:
    """QCore calibration of a deployed model's head (see the module doc)."""

    def __init__(
        self,
        model_bytes: bytes,
        head_layers: int = 1,
        calibrate=1,
        core_size: int = 20,
        hidden: int = 16,
        margin: int = 16,
        max_steps: int = 10,
        tries: int = 6,
        memory_budget: int | None = 32 * 1024,
        seed: int = 1,
    ):

        self.head: IntHead = split_head(model_bytes, head_layers)
        n = len(self.head.layers)
        if calibrate == "all":
            self.layers = list(range(n))
        elif isinstance(calibrate, int) and 1 <= calibrate <= n:
            self.layers = list(range(n - calibrate, n))
        else:
            raise ValueError(
                f"calibrate must be 'all' or an int in [1, {n}] (the last k of the {n} head "
                f"layers), got {calibrate!r}"
            )
        for name, value, lo in (
            ("core_size", core_size, 1),
            ("hidden", hidden, 1),
            ("max_steps", max_steps, 1),
            ("tries", tries, 1),
        ):
            if not isinstance(value, int) or value < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
        if memory_budget is not None and (not isinstance(memory_budget, int) or memory_budget < 1):
            raise ValueError(
                f"memory_budget must be an int >= 1 (bytes) or None, got {memory_budget!r}"
            )
        if not 0 < seed < 2**32:
            raise ValueError(f"seed must be in [1, 2**32), got {seed}")
        self.core_size, self.hidden, self.margin = core_size, hidden, int(margin)
        self.max_steps, self.tries = max_steps, tries
        self.memory_budget = memory_budget
        self.seed = seed
        self._model_bytes = bytes(model_bytes)
        self._backbone = TFLMRunner(self.head.backbone)
        self.weights = self.head.weights()
        self.nets: dict[int, FlipNet] = {}
        self.core_x = self.core_y = self.core_counts = None
        self._rng_state = seed
        self._first_core = None
        self.fit_report: dict = {}

    # ------------------------------------------------------------------ data
    def features(self, x) -> np.ndarray:
        """Head inputs (int8, N x in) of raw samples ``x``: the backbone run in TFLM."""
        x = np.asarray(x)
        return self._backbone.predict(x, dequantize=False).reshape(len(x), -1).astype(np.int8)

    def set_core(self, x, y, counts=None):
        """Install a QCore (raw samples, labels, optional miss counts as priors)."""
        x, y = np.asarray(x), np.asarray(y)
        if len(x) > self.core_size:
            raise ValueError(
                f"the QCore has {len(x)} samples but core_size={self.core_size}; draw at most "
                f"{self.core_size} (tracker.sample({self.core_size})) or raise core_size"
            )
        self.core_x = self.features(x)
        self.core_y = y.astype(np.int64)
        self.core_counts = (
            np.zeros(len(y), np.int64) if counts is None else np.asarray(counts, np.int64).copy()
        )
        self._first_core = (self.core_x, self.core_y, self.core_counts.copy())

    def reset(self):
        """Back to the deployed weights, the QCore of :meth:`set_core` and the first seed
        (the flip networks stay)."""
        self.weights = self.head.weights()
        if self._first_core is not None:
            self.core_x, self.core_y, counts = self._first_core
            self.core_counts = counts.copy()
        self._rng_state = self.seed

    def model_bytes(self) -> bytes:
        """The deployed flatbuffer with the calibrated head weights written in."""
        return write_head(self._model_bytes, self.head, self.weights)

    # ------------------------------------------------------------------ offline
    def fit(
        self,
        core,
        shifts,
        chunk_size: int = 40,
        episodes: int = 24,
        epochs: int = 30,
    ):
        """Train the flip networks offline (see the module doc). ``core=(x, y[, counts])``,
        ``shifts``: a list of ``(x, y)`` from domains the model was not trained on."""
        self.set_core(*core)
        if not shifts:
            raise ValueError("shifts must hold at least one (x, y) set of shifted data")
        shift_feats = [(self.features(x), np.asarray(y, np.int64)) for x, y in shifts]
        rng = np.random.default_rng(self.seed)
        rows = {l: ([], []) for l in self.layers}
        for ep in range(episodes):
            fx, fy = shift_feats[ep % len(shift_feats)]
            pick = rng.choice(len(fx), min(chunk_size, len(fx)), replace=False)
            x = np.concatenate([self.core_x, fx[pick]])
            y = np.concatenate([self.core_y, fy[pick]])
            weights = [w.copy() for w in self.weights]
            for _ in range(self.max_steps):
                target = bp_flip_target(self.head, x, y, self.layers, weights)
                acts = self.head.activations(x, weights)
                errors = error_signals(self.head, acts, y, self.margin)
                for l in self.layers:
                    f = flip_features(self.head.layers[l], acts[l], errors[l], weights[l])
                    rows[l][0].append(f.reshape(-1, len(FEATURES)))
                    rows[l][1].append(target[l].reshape(-1).astype(np.float32))
                if not any(t.any() for t in target.values()):
                    break
                for l in self.layers:
                    lo, hi = narrow_range(self.head.layers[l].bits)
                    weights[l] = np.clip(weights[l].astype(np.int32) + target[l], lo, hi)
                    weights[l] = weights[l].astype(np.int8)
        self.fit_report = {}
        for l in self.layers:
            f_int = np.concatenate(rows[l][0])
            t = np.concatenate(rows[l][1])
            params = _fit_mlp(f_int.astype(np.float32) / 127, t, self.hidden, epochs, self.seed + l)
            net = _quantize_mlp(params, f_int, self.head.layers[l].bits)
            self.nets[l] = net
            decided = net.decide(f_int)
            nz = t != 0
            self.fit_report[self.head.layers[l].name] = {
                "rows": len(t),
                "target_nonzero": float(nz.mean()),
                "agreement": float((decided == t).mean()),
                "recall_nonzero": float((decided[nz] == t[nz]).mean()) if nz.any() else None,
                "flip_rate": float((decided != 0).mean()),
                "net_bytes": net.nbytes,
            }
        return self.fit_report

    # ------------------------------------------------------------------ device
    def calibrate(self, x, y) -> ChunkReport:
        """Calibrate on one labeled chunk of raw samples; refresh the QCore (module doc)."""
        x, y = np.asarray(x), np.asarray(y)
        if len(x) == 0:
            raise ValueError("the chunk is empty: pass at least one labeled sample")
        return self.calibrate_features(self.features(x), y)

    def calibrate_features(self, fx, y) -> ChunkReport:
        """:meth:`calibrate` on the chunk's head inputs ``fx`` (int8, the backbone's output):
        what the device runs (``edgeplus::QCoreCalibrator::calibrate`` in the Arduino
        library)."""
        if not self.nets:
            raise RuntimeError("no flip networks: call fit() (offline) before calibrate()")
        fx, y = np.asarray(fx, np.int8), np.asarray(y)
        if len(fx) == 0:
            raise ValueError("the chunk is empty: pass at least one labeled sample")
        if len(fx) != len(y):
            raise ValueError(f"{len(fx)} samples but {len(y)} labels")
        if self.memory_budget is not None:
            mem = self.memory(len(fx))
            if mem["total_bytes"] > self.memory_budget:
                raise ValueError(
                    f"calibrating a chunk of {len(fx)} samples needs {mem['total_bytes']} device "
                    f"bytes (QCore {mem['core_bytes']}, flip nets {mem['flipnet_bytes']}, "
                    f"scratch {mem['scratch_bytes']}), over memory_budget={self.memory_budget}; "
                    "pass smaller chunks, a smaller core_size, or raise memory_budget"
                )
        items_x = np.concatenate([self.core_x, fx])
        items_y = np.concatenate([self.core_y, y.astype(np.int64)])
        prior = np.concatenate([self.core_counts, np.zeros(len(fx), np.int64)])
        steps, history = [], []
        for _ in range(self.max_steps):
            r = qcore_step(
                self.head, self.nets, items_x, items_y, self.weights, self.margin, self.tries
            )
            if not history:
                history.append(r.correct_mask_before)
            steps.append(r)
            if not r.kept:
                break
            self.weights = r.weights
            history.append(r.correct_mask_after)
        size = min(self.core_size, len(items_y))
        idx, counts, self._rng_state = qcore_refresh(prior, history, size, self._rng_state)
        self.core_x, self.core_y, self.core_counts = items_x[idx], items_y[idx], counts
        return ChunkReport(
            steps=steps,
            kept=sum(s.kept for s in steps),
            rolled_back=sum(not s.kept and s.changed > 0 for s in steps),
            changed=sum(s.changed for s in steps if s.kept),
            accuracy_before=steps[0].accuracy_before,
            accuracy_after=steps[-1].accuracy_after,
            core_from_chunk=int((idx >= len(prior) - len(fx)).sum()),
        )

    def predict(self, x, weights=None) -> np.ndarray:
        """int8 logits of the (calibrated) integer model on raw samples."""
        return self.head.forward(self.features(x), self.weights if weights is None else weights)

    def evaluate(self, x, y, weights=None) -> float:
        return score(self.predict(x, weights), np.asarray(y, np.int64))[1] / len(y)

    def memory(self, chunk_size: int) -> dict:
        """Device bytes of calibrating chunks of ``chunk_size`` samples: the QCore (head
        inputs int8 + a label byte + a 16-bit miss count each), the flip networks, and the
        scratch of ``edgeplus_qcore_step`` on QCore U chunk (from the C library's
        ``_get_buffer_size``)."""

        k = self.core_size
        core = k * (self.head.input_size + 1 + 2)
        nets = sum(net.nbytes for net in self.nets.values())
        scratch = kernels.get_kernels().qcore_step_get_buffer_size(
            self.head, self.nets, k + chunk_size
        )
        return {
            "core_bytes": core,
            "flipnet_bytes": nets,
            "scratch_bytes": scratch,
            "total_bytes": core + nets + scratch,
        }
