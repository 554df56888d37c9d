"""Coreset selection in ``model.fit``: QuaRC (ALGORITHMS.md section 1) and QCore (section 2).

- :mod:`~tfmot_edgeplus.coreset.scores`: per-sample RES / EVS / DS scores and the
  cosine-scheduled selection score, pure NumPy over logits.
- :mod:`~tfmot_edgeplus.coreset.scoring`: batched tf.data passes giving the logits.
- :class:`RESCoreset` / :class:`RandomCoreset`: ``coreset.dataset(batch_size)`` for fit,
  ``coreset.callback()`` to (re)select during fit.
- :mod:`~tfmot_edgeplus.coreset.quant_miss`: :class:`QuantMissTracker`, the QCore
  callback counting per-sample quantization misses of 2..8-bit copies while the FP model
  trains, and ``tracker.sample(20)`` / ``tracker.core(20)`` drawing the core by misses;
  :func:`count_misses` and :func:`fake_quantize` are its pure NumPy pieces.

Deviations from the paper (QuaRC's RES, ALGORITHMS.md 1; QCore's are in
:mod:`~tfmot_edgeplus.coreset.quant_miss` and ``calibration/calibrator.py``):

* :class:`RESCoreset` follows the paper by default (all samples ranked together, the top
  ``d_S`` kept); ``per_class=True`` (per-class quotas) and ``sampling="weighted"`` (a seeded
  draw proportional to ``d_S``) are our additions, and the QuaRC recipe turns both on: on
  Fashion-MNIST at W2 and 1 % the top-``d_S`` samples alone fell below a random coreset.
* :class:`RandomCoreset` (the paper's "random" baseline) can draw with the same per-class
  quotas (``stratified=True``), so that a gain of RES is not a gain of stratification.
* Re-selection every ``R`` epochs is as in the paper when ``reselect_every=R``; it re-scores
  the whole training set, which the recipe skips by default (``reselect_every=None``).
"""

from tfmot_edgeplus.coreset.quant_miss import (
    FP_BITS,
    QuantMissTracker,
    count_misses,
    fake_quantize,
)
from tfmot_edgeplus.coreset.scores import (
    cosine_weight,
    ds_scores,
    evs_scores,
    log_softmax,
    res_scores,
    selection_scores,
    softmax,
)
from tfmot_edgeplus.coreset.scoring import as_arrays, predict_logits
from tfmot_edgeplus.coreset.selection import CoresetCallback, RandomCoreset, RESCoreset

__all__ = [
    "FP_BITS",
    "CoresetCallback",
    "QuantMissTracker",
    "RESCoreset",
    "RandomCoreset",
    "as_arrays",
    "cosine_weight",
    "count_misses",
    "ds_scores",
    "evs_scores",
    "fake_quantize",
    "log_softmax",
    "predict_logits",
    "res_scores",
    "selection_scores",
    "softmax",
]
