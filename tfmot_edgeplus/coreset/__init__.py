"""QuaRC coreset selection for QAT in ``model.fit`` (ALGORITHMS.md section 1).

- :mod:`~tfmot_edgeplus.coreset.scores`: per-sample RES / EVS / DS scores and the
  cosine-scheduled selection score, pure NumPy over logits.
- :mod:`~tfmot_edgeplus.coreset.scoring`: batched tf.data passes giving the logits.
- :class:`RESCoreset` / :class:`RandomCoreset`: ``coreset.dataset(batch_size)`` for fit,
  ``coreset.callback()`` to (re)select during fit.
"""

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
    "CoresetCallback",
    "RESCoreset",
    "RandomCoreset",
    "as_arrays",
    "cosine_weight",
    "ds_scores",
    "evs_scores",
    "log_softmax",
    "predict_logits",
    "res_scores",
    "selection_scores",
    "softmax",
]
