"""QuaRC / ACS per-sample selection scores, pure NumPy over batched model outputs.

All functions take **logits** (shape ``(N, M)``, M classes) and turn them into
probabilities with a numerically stable log-softmax (max subtracted), so a confident
model does not overflow ``exp`` and ``log p`` never sees an exact zero.

- :func:`res_scores`: relative entropy, ``d_RES = sum_m p_Q^m log(p_Q^m / p_F^m)``
  = KL(p_Q || p_F) per sample (QuaRC Eq. 5). p_Q is the quantized model, p_F the
  full-precision one. Always >= 0 (clipped at 0 against round-off), 0 iff equal.
- :func:`evs_scores`: error-vector score ``||p_Q - onehot(y)||_2`` (ACS, QuaRC Eq. 6).
- :func:`ds_scores`: disagreement score ``||p_Q - p_T||_2`` with the teacher T.
- :func:`selection_scores`: ``d_S(t) = a(t) d_EVS + (1 - a(t)) d_DS + d_RES`` with
  ``a(t) = cos(t * pi / (2T))`` (:func:`cosine_weight`): early in training the label
  error dominates, late the teacher disagreement does.

Bad shapes, non-finite values (e.g. a diverged model's NaN logits) and out-of-range
labels raise ``ValueError`` naming the argument, the value and the fix.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "cosine_weight",
    "ds_scores",
    "evs_scores",
    "log_softmax",
    "res_scores",
    "selection_scores",
    "softmax",
]


def _logits(name: str, value) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be a numeric array of logits, got dtype {arr.dtype}.")
    arr = arr.astype(np.float64, copy=False)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(
            f"{name} must be logits of shape (num_samples, num_classes) with at least 2 "
            f"classes, got shape {arr.shape}. Pass the model's batched outputs, e.g. "
            "model.predict(x)."
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise ValueError(
            f"{name} has non-finite values (NaN or inf) in {len(rows)} of {arr.shape[0]} "
            f"samples (first: sample {int(rows[0])}). The model diverged or its input is "
            "bad; lower the learning rate or check the data before scoring."
        )
    return arr


def _same_shape(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} has shape {a.shape} but {name_b} has shape {b.shape}; both must be "
            "(num_samples, num_classes) outputs of the same samples."
        )


def log_softmax(logits) -> np.ndarray:
    """Row-wise stable log-softmax of ``(N, M)`` logits (float64)."""
    z = _logits("logits", logits)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax(logits) -> np.ndarray:
    """Row-wise softmax of ``(N, M)`` logits (float64), via :func:`log_softmax`."""
    return np.exp(log_softmax(logits))


def res_scores(p_q_logits, p_f_logits) -> np.ndarray:
    """KL(p_Q || p_F) per sample (QuaRC Eq. 5), shape ``(N,)``, >= 0.

    Args:
        p_q_logits: ``(N, M)`` logits of the quantized (QAT / fake-quantized) model.
        p_f_logits: ``(N, M)`` logits of the full-precision model on the same samples.
    """
    log_q = log_softmax(_logits("p_q_logits", p_q_logits))
    log_f = log_softmax(_logits("p_f_logits", p_f_logits))
    _same_shape("p_q_logits", log_q, "p_f_logits", log_f)
    kl = np.sum(np.exp(log_q) * (log_q - log_f), axis=1)
    return np.maximum(kl, 0.0)


def evs_scores(p_q_logits, y) -> np.ndarray:
    """Error-vector score ``||p_Q - onehot(y)||_2`` per sample, shape ``(N,)``, in [0, sqrt 2].

    Args:
        p_q_logits: ``(N, M)`` logits of the quantized model.
        y: ``(N,)`` integer class indices in ``[0, M)``.
    """
    log_q = log_softmax(_logits("p_q_logits", p_q_logits))
    labels = np.asarray(y)
    if labels.ndim != 1 or labels.shape[0] != log_q.shape[0]:
        raise ValueError(
            f"y must be a 1-D array of {log_q.shape[0]} integer class indices (one per row of "
            f"p_q_logits), got shape {labels.shape}. One-hot labels: pass y.argmax(axis=1)."
        )
    if labels.dtype.kind not in "iu":
        if (
            labels.dtype.kind == "f"
            and np.all(np.isfinite(labels))
            and np.all(labels == np.round(labels))
        ):
            labels = labels.astype(np.int64)
        else:
            raise ValueError(f"y must hold integer class indices, got dtype {labels.dtype}.")
    num_classes = log_q.shape[1]
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"y has class indices outside [0, {num_classes}) (min {labels.min()}, max "
            f"{labels.max()}); the model has {num_classes} outputs."
        )
    diff = np.exp(log_q)
    diff[np.arange(labels.shape[0]), labels] -= 1.0
    return np.sqrt(np.sum(diff * diff, axis=1))


def ds_scores(p_q_logits, p_t_logits) -> np.ndarray:
    """Disagreement score ``||p_Q - p_T||_2`` per sample, shape ``(N,)``.

    Args:
        p_q_logits: ``(N, M)`` logits of the quantized model.
        p_t_logits: ``(N, M)`` logits of the teacher on the same samples.
    """
    p_q = softmax(_logits("p_q_logits", p_q_logits))
    p_t = softmax(_logits("p_t_logits", p_t_logits))
    _same_shape("p_q_logits", p_q, "p_t_logits", p_t)
    diff = p_q - p_t
    return np.sqrt(np.sum(diff * diff, axis=1))


def cosine_weight(epoch, total_epochs) -> float:
    """``a(t) = cos(t * pi / (2T))``: 1 at t = 0, 0 at t = T (QuaRC Eq. 6)."""
    for name, value in (("epoch", epoch), ("total_epochs", total_epochs)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}.")
    if total_epochs <= 0:
        raise ValueError(f"total_epochs must be > 0, got {total_epochs}; pass the fit's epochs.")
    if not 0 <= epoch <= total_epochs:
        raise ValueError(
            f"epoch must be in [0, total_epochs={total_epochs}], got {epoch}. Pass the "
            "0-based index of the next epoch and the total number of epochs."
        )
    return float(np.cos(float(epoch) * np.pi / (2.0 * float(total_epochs))))


def _score_vector(name: str, value, n: int | None) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of per-sample scores, got shape {arr.shape}.")
    if n is not None and arr.shape[0] != n:
        raise ValueError(
            f"{name} has {arr.shape[0]} scores but d_evs has {n}; score the same samples."
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} has non-finite scores; rescore with finite model outputs.")
    return arr


def selection_scores(d_evs, d_ds, d_res, epoch, total_epochs) -> np.ndarray:
    """``d_S(t) = a(t) d_EVS + (1 - a(t)) d_DS + d_RES`` per sample (QuaRC Eq. 6).

    Args:
        d_evs, d_ds, d_res: ``(N,)`` scores from :func:`evs_scores`, :func:`ds_scores`,
            :func:`res_scores`.
        epoch: t, the 0-based epoch the selection is made for (0 = before training).
        total_epochs: T, the number of epochs of the whole run.
    """
    evs = _score_vector("d_evs", d_evs, None)
    ds = _score_vector("d_ds", d_ds, evs.shape[0])
    res = _score_vector("d_res", d_res, evs.shape[0])
    a = cosine_weight(epoch, total_epochs)
    return a * evs + (1.0 - a) * ds + res
