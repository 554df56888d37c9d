"""Set a fresh QAT model's activation ranges from data before it is scored or evaluated.

A model returned by ``quantize_apply`` holds placeholder activation ranges until its first
training step ([-6, 6] for our :class:`ActivationRangeQuantizer` and TF-MOT's moving-average
quantizer): in inference mode it clips and rounds on those placeholders, so its outputs are
not what QAT will start from. That matters whenever p_Q is read before training, as RES
coreset selection does (ALGORITHMS.md section 1: p_Q of the pretrained weights,
fake-quantized). :func:`calibrate_activation_ranges` runs a few forward passes in training
mode, which is how the quantizers set their ranges (first batch, then their EMA), and then
puts back every other variable those passes touched (BatchNorm moving statistics, TF-MOT's
step counters), so the only change is the ranges.
"""

from __future__ import annotations

import numpy as np

from tfmot_edgeplus._compat import check_keras2_model, tf

__all__ = ["calibrate_activation_ranges", "uncalibrated_ranges"]

_RANGE_SUFFIXES = ("_min", "_max", "_range_initialized")


def _is_range_variable(variable) -> bool:
    return variable.name.split(":")[0].endswith(_RANGE_SUFFIXES)


def calibrate_activation_ranges(qat_model, x, batch_size: int = 256, batches: int = 4) -> int:
    """Calibrate ``qat_model``'s activation ranges on ``x``; returns the samples used.

    Args:
      qat_model: a QAT model (our scheme or TF-MOT's).
      x: NumPy array of model inputs; the first ``batches * batch_size`` samples are used,
        so pass a shuffled or representative slice.
      batch_size: samples per forward pass.
      batches: number of forward passes (>= 1).
    """
    check_keras2_model(qat_model, "qat_model")
    x = np.asarray(x)
    if batch_size < 1 or batches < 1:
        raise ValueError(
            f"batch_size and batches must be >= 1, got batch_size={batch_size}, batches={batches}."
        )
    if len(x) == 0:
        raise ValueError("x is empty; calibrating activation ranges needs at least one sample.")
    keep = [v for v in qat_model.variables if not _is_range_variable(v)]
    if len(keep) == len(qat_model.variables):
        raise ValueError(
            f"Model {qat_model.name!r} has no activation-range variables (names ending in "
            f"{', '.join(_RANGE_SUFFIXES)}): it is not a QAT model from quantize_model / "
            "quantize_apply."
        )
    saved = [v.numpy() for v in keep]
    forward = tf.function(lambda batch: qat_model(batch, training=True))
    used = x[: batch_size * batches]
    for start in range(0, len(used), batch_size):
        forward(tf.constant(used[start : start + batch_size]))
    for variable, value in zip(keep, saved):
        variable.assign(value)
    return len(used)


def uncalibrated_ranges(model) -> list[str]:
    """Names of ``model``'s activation ranges still at quantize_apply's placeholders.

    Only our :class:`ActivationRangeQuantizer` records that (its ``*_range_initialized``
    flag); a model without it (FP, or TF-MOT's quantizers) gives ``[]``.
    """
    return [
        v.name.split(":")[0]
        for v in model.variables
        if v.name.split(":")[0].endswith("_range_initialized") and float(v.numpy()) < 0.5
    ]
