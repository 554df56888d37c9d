"""Continual calibration on a stream of labeled chunks: QCore bit flips and the baselines,
evaluated after every chunk.

::

    result = run_stream(cal, chunks, eval_sets, "qcore_bitflip")
    result.accuracy          # (chunks + 1, eval sets): row 0 is before the first chunk
    result.metrics()         # avg_acc, final_acc, forgetting, ...

``cal`` is a fitted :class:`~tfmot_edgeplus.calibration.BitFlipCalibrator` (it holds the
deployed model, its head, the QCore and the flip networks); ``chunks`` is a list of
:class:`Chunk` (a domain name and raw labeled samples, e.g. the windows of one new
subject); ``eval_sets`` maps a name to raw ``(x, y)``: give each chunk domain a held-out set
of the same name, plus any others (e.g. ``"old"``: the training domain).

Methods (:data:`METHODS`), each starting from the deployed weights:

- ``none``: no calibration.
- ``qcore_bitflip``: :meth:`BitFlipCalibrator.calibrate` on each chunk (bit flips on QCore U
  memory U chunk, kept only when they help the new samples and the QCore's guard holds, then
  the memory refresh).
- ``bp_finetune``: :func:`bp_finetune` (Adam, ``bp_steps`` steps, re-quantized to the integer
  grid) of the same head layers on the QCore plus the chunk.
- ``replay``: experience replay with a buffer of the QCore's size: the same fine-tuning on
  buffer U chunk; the buffer starts as a random draw of ``replay_pool`` and is then updated by
  reservoir sampling over every sample the stream brings.

Every method runs the deployed backbone (TFLM) on its chunk inside the timed region, so
``step_seconds`` are comparable.

Metrics (:meth:`StreamResult.metrics`), with ``A[t, d]`` the accuracy on eval set ``d``
after chunk ``t`` (t = 0: before any):

- ``avg_acc``: the mean over chunks t of the mean accuracy on the domains seen up to t;
- ``final_acc``: the mean accuracy on every chunk domain after the last chunk;
- ``forgetting``: the mean over chunk domains but the last of ``max_{t >= t_d} A[t, d] -
  A[T, d]`` (``t_d``: the last chunk of domain d), how much was lost again later;
- ``adapted_acc``: the mean over chunk domains of ``A[t_d, d]``, the accuracy on a domain
  right after its last chunk (how well a method learns the new domain);
- ``before_acc``: the mean accuracy on the chunk domains before any chunk;
- for every other eval set d (e.g. ``old``): ``d_acc`` = ``A[T, d]``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from tfmot_edgeplus.calibration.backprop import bp_finetune, bp_memory_bytes
from tfmot_edgeplus.calibration.step import score

__all__ = ["METHODS", "Chunk", "StreamResult", "run_stream"]

METHODS = ("none", "qcore_bitflip", "bp_finetune", "replay")


@dataclass
class Chunk:
    """Raw labeled samples from one domain (e.g. one new subject)."""

    domain: str
    x: np.ndarray
    y: np.ndarray


@dataclass
class StreamResult:
    """What :func:`run_stream` measured for one method."""

    method: str
    eval_names: list[str]
    chunk_domains: list[str]
    accuracy: np.ndarray  # (chunks + 1, eval sets)
    step_seconds: list[float]
    memory_bytes: int
    reports: list = field(default_factory=list, repr=False)

    def _col(self, name: str) -> np.ndarray:
        return self.accuracy[:, self.eval_names.index(name)]

    def seen_accuracy(self) -> np.ndarray:
        """Per chunk t = 1..T, the mean accuracy on the domains seen up to t."""
        out = []
        for t in range(1, len(self.chunk_domains) + 1):
            seen = list(dict.fromkeys(self.chunk_domains[:t]))
            out.append(float(np.mean([self._col(d)[t] for d in seen])))
        return np.asarray(out)

    def metrics(self) -> dict:
        domains = list(dict.fromkeys(self.chunk_domains))
        final = float(np.mean([self._col(d)[-1] for d in domains]))
        forget, adapted = [], []
        for d in domains:
            last = max(t + 1 for t, c in enumerate(self.chunk_domains) if c == d)
            adapted.append(float(self._col(d)[last]))
            if d != domains[-1]:
                forget.append(float(self._col(d)[last:].max() - self._col(d)[-1]))
        out = {
            "avg_acc": float(self.seen_accuracy().mean()),
            "final_acc": final,
            "forgetting": float(np.mean(forget)) if forget else 0.0,
            "adapted_acc": float(np.mean(adapted)),
            "before_acc": float(np.mean([self._col(d)[0] for d in domains])),
        }
        for name in self.eval_names:
            if name not in domains:
                out[f"{name}_acc"] = float(self._col(name)[-1])
        out["step_wall_s"] = float(np.mean(self.step_seconds)) if self.step_seconds else 0.0
        out["memory_bytes"] = int(self.memory_bytes)
        return out


def _check(chunks, eval_sets, method):
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not chunks:
        raise ValueError("the stream is empty: pass at least one Chunk")
    for i, c in enumerate(chunks):
        if len(c.y) == 0:
            raise ValueError(f"chunk {i} ({c.domain!r}) is empty: every chunk needs samples")
        if c.domain not in eval_sets:
            raise ValueError(
                f"chunk {i} comes from domain {c.domain!r}, which has no eval set; pass "
                f"eval_sets[{c.domain!r}] = (x_test, y_test) (held-out samples of that domain)"
            )


def run_stream(
    cal,
    chunks: list[Chunk],
    eval_sets: dict,
    method: str,
    *,
    bp_steps: int = 30,
    bp_learning_rate: float = 0.01,
    replay_pool=None,
    seed: int = 0,
    progress=None,
) -> StreamResult:
    """Run ``method`` over ``chunks``, evaluating on ``eval_sets`` after each (module doc).

    ``cal`` is reset to the deployed weights and its first QCore before the run and is left
    in the state the method reached (for ``qcore_bitflip``; the baselines do not touch it).
    ``replay_pool = (x, y)``: raw samples of the training domain that fill the replay buffer
    (required for ``replay``). ``progress``: a callable receiving each chunk's index.
    """
    _check(chunks, eval_sets, method)
    if method == "replay" and replay_pool is None:
        raise ValueError(
            "method 'replay' needs replay_pool=(x, y): training samples for its buffer"
        )
    cal.reset()
    names = list(eval_sets)
    feats = {n: (cal.features(x), np.asarray(y, np.int64)) for n, (x, y) in eval_sets.items()}
    rng = np.random.default_rng(seed)
    k = cal.core_size
    if method == "replay":
        px, py = replay_pool
        pick = rng.choice(len(py), min(k, len(py)), replace=False)
        buf_x, buf_y = cal.features(np.asarray(px)[pick]), np.asarray(py, np.int64)[pick]
        seen = len(buf_y)
    weights = cal.head.weights()

    def evaluate(w):
        return [score(cal.head.forward(fx, w), fy)[1] / len(fy) for fx, fy in feats.values()]

    rows, seconds, reports = [evaluate(weights)], [], []
    for i, c in enumerate(chunks):
        t0 = time.perf_counter()
        if method == "qcore_bitflip":
            reports.append(cal.calibrate(c.x, c.y))
            weights = cal.weights
        elif method in ("bp_finetune", "replay"):
            fx, fy = cal.features(c.x), np.asarray(c.y, np.int64)
            mem_x, mem_y = (cal.old_x, cal.old_y) if method == "bp_finetune" else (buf_x, buf_y)
            weights = bp_finetune(
                cal.head,
                np.concatenate([mem_x, fx]),
                np.concatenate([mem_y, fy]),
                cal.layers,
                weights,
                bp_steps,
                bp_learning_rate,
            )
            if method == "replay":
                for j in range(len(fy)):  # reservoir sampling over the stream
                    seen += 1
                    r = int(rng.integers(seen))
                    if r < len(buf_y):
                        buf_x[r], buf_y[r] = fx[j], fy[j]
        seconds.append(time.perf_counter() - t0)
        rows.append(evaluate(weights))
        if progress is not None:
            progress(i)
    largest = max(len(c.y) for c in chunks)
    if method == "qcore_bitflip":
        memory = cal.memory(largest)["total_bytes"]
    elif method == "none":
        memory = 0
    else:
        memory = bp_memory_bytes(cal.head, cal.layers, k + largest, k)
    return StreamResult(
        method, names, [c.domain for c in chunks], np.asarray(rows), seconds, memory, reports
    )
