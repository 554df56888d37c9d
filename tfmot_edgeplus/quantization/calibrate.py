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

:func:`calibrate_batchnorm` then re-estimates the BatchNorm moving statistics of the
quantized model (the FP model's no longer fit the low-bit convolutions' outputs): the mean
of the batch statistics of a few training-mode passes. On the bed's deep IMU net
(``benchmarks/_tasks.py``, ``imu_deep``) at W2A8 with 1024 training samples it lifts plain
PTQ from 0.45 / 0.46 / 0.38 to 0.76 / 0.65 / 0.76 (seeds 0 / 1 / 2; float 0.87 / 0.82 / 0.84).
"""

from __future__ import annotations

import numpy as np

from tfmot_edgeplus._compat import check_keras2_model, keras, tf

__all__ = ["calibrate_activation_ranges", "calibrate_batchnorm", "uncalibrated_ranges"]

_RANGE_SUFFIXES = ("_min", "_max", "_range_initialized")


def _is_range_variable(variable) -> bool:
    return variable.name.split(":")[0].endswith(_RANGE_SUFFIXES)


def _calibration_samples(qat_model, x, batch_size: int, batches: int, what: str) -> np.ndarray:
    """The first ``batches * batch_size`` samples of ``x``, after checking the arguments."""
    check_keras2_model(qat_model, "qat_model")
    x = np.asarray(x)
    if batch_size < 1 or batches < 1:
        raise ValueError(
            f"batch_size and batches must be >= 1, got batch_size={batch_size}, batches={batches}."
        )
    if len(x) == 0:
        raise ValueError(f"x is empty; calibrating {what} needs at least one sample.")
    return x[: batch_size * batches]


def calibrate_activation_ranges(qat_model, x, batch_size: int = 256, batches: int = 4) -> int:
    """Calibrate ``qat_model``'s activation ranges on ``x``; returns the samples used.

    Args:
      qat_model: a QAT model (our scheme or TF-MOT's).
      x: NumPy array of model inputs; the first ``batches * batch_size`` samples are used,
        so pass a shuffled or representative slice.
      batch_size: samples per forward pass.
      batches: number of forward passes (>= 1).
    """
    used = _calibration_samples(qat_model, x, batch_size, batches, "activation ranges")
    keep = [v for v in qat_model.variables if not _is_range_variable(v)]
    if len(keep) == len(qat_model.variables):
        raise ValueError(
            f"Model {qat_model.name!r} has no activation-range variables (names ending in "
            f"{', '.join(_RANGE_SUFFIXES)}): it is not a QAT model from quantize_model / "
            "quantize_apply."
        )
    saved = [v.numpy() for v in keep]
    forward = tf.function(lambda batch: qat_model(batch, training=True))
    for start in range(0, len(used), batch_size):
        forward(tf.constant(used[start : start + batch_size]))
    for variable, value in zip(keep, saved):
        variable.assign(value)
    return len(used)


def calibrate_batchnorm(qat_model, x, batch_size: int = 256, batches: int = 4) -> int:
    """Re-estimate ``qat_model``'s BatchNorm moving statistics on ``x``; returns the number
    of BatchNorm layers set (0: the model has none, nothing changes).

    Each BatchNorm's moving mean and variance become the mean of its batch statistics over
    ``batches`` training-mode passes of ``batch_size`` samples (the first ones of ``x``).
    Those passes also move the activation ranges (their EMA), as any training step does.
    """
    used = _calibration_samples(qat_model, x, batch_size, batches, "BatchNorm statistics")
    norms = [m for m in qat_model.submodules if isinstance(m, keras.layers.BatchNormalization)]
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    try:
        for step, start in enumerate(range(0, len(used), batch_size)):
            for norm in norms:  # a running mean of the batch statistics
                norm.momentum = step / (step + 1)
            qat_model(tf.constant(used[start : start + batch_size]), training=True)
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
    return len(norms)


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
