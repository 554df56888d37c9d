"""How logits and feature maps become distributions, and the divergences QuaRC uses.

Pure TensorFlow functions, differentiable, batch-first, returning one value per example so
that the caller chooses the (distribution-aware) reduction.

Feature map -> distribution (CLC, ALGORITHMS.md section 1, Eq. 8; the paper does not say):
a **softmax over channels at each spatial position**, with temperature ``tau``::

    p^c[b, pos, k] = softmax_k(f[b, pos, k] / tau)

A Dense output ``(batch, units)`` is one position over ``units`` channels. Channel softmax
keeps the per-position "which filters fire" pattern, is invariant to adding a constant to
all channels at a position, and does not depend on the spatial size, so layers of different
resolutions contribute comparably. A larger ``tau`` flattens the distribution (softer
matching of small activations); a smaller one focuses on the strongest channels.

``over="positions"`` is the other reading: a **softmax over spatial positions for each
channel** (where in the map a filter fires, as channel-wise distillation does), and the
divergence is the KL per channel averaged over channels. A Dense output has a single
position, so there it is 0: with ``"positions"`` only convolutions are corrected.
"""

from __future__ import annotations

from tfmot_edgeplus._compat import tf


def _check_temperature(value, what: str) -> float:
    value = float(value)
    if not value > 0.0:
        raise ValueError(f"{what} must be > 0, got {value}. Use 1.0 for no scaling.")
    return value


def _move_channels_last(feature, channel_axis: int):
    rank = feature.shape.rank
    if rank is None or rank < 2:
        raise ValueError(
            f"a feature map must have a batch axis and a channel axis (rank >= 2), got shape "
            f"{feature.shape}."
        )
    axis = channel_axis % rank
    if axis == 0:
        raise ValueError("channel_axis cannot be the batch axis (0); use -1 or 1.")
    if axis != rank - 1:
        perm = [i for i in range(rank) if i != axis] + [axis]
        feature = tf.transpose(feature, perm)
    return feature


def _positions_by_channels(feature, channel_axis: int):
    """Reshape to ``(batch, positions, channels)``."""
    feature = _move_channels_last(tf.convert_to_tensor(feature), channel_axis)
    channels = feature.shape[-1]
    batch = tf.shape(feature)[0]
    return tf.reshape(feature, [batch, -1, channels if channels is not None else -1])


OVER = ("channels", "positions")


def check_over(over: str, what: str = "over") -> str:
    """``over`` if it is one of ``OVER``, else an error naming ``what`` and the value."""
    if over not in OVER:
        raise ValueError(f"{what} must be one of {', '.join(map(repr, OVER))} (what the "
                         f"feature-map softmax runs over), got {over!r}.")
    return over


def _softmax_axis(over: str) -> int:
    return -1 if check_over(over) == "channels" else 1


def feature_log_distribution(feature, tau: float = 1.0, channel_axis: int = -1,
                             over: str = "channels"):
    """Log of the feature-map distribution, shape ``(batch, positions, channels)``: a
    softmax over channels (``over="channels"``) or over positions (``"positions"``)."""
    tau = _check_temperature(tau, "tau (feature temperature)")
    axis = _softmax_axis(over)
    flat = tf.cast(_positions_by_channels(feature, channel_axis), tf.float32)
    return tf.nn.log_softmax(flat / tau, axis=axis)


def feature_distribution(feature, tau: float = 1.0, channel_axis: int = -1,
                         over: str = "channels"):
    """Distribution of a feature map, ``(batch, positions, channels)``; sums to 1 over the
    channels at every position (``over="channels"``) or over the positions of every channel
    (``"positions"``)."""
    return tf.exp(feature_log_distribution(feature, tau, channel_axis, over))


def clc_divergence(student_feature, fp_feature, tau: float = 1.0, channel_axis: int = -1,
                   over: str = "channels"):
    """KL(p_Q || p_F) per example, shape ``(batch,)``: per position averaged over positions
    (``over="channels"``), or per channel averaged over channels (``"positions"``).

    ``student_feature`` is the quantized model's map (gradients flow through it),
    ``fp_feature`` the full-precision correction model's map (treated as a constant).
    Computed from log-softmaxes, so it is finite even where a probability underflows.
    """
    if student_feature.shape[1:] != fp_feature.shape[1:]:
        raise ValueError(
            f"student and FP feature maps differ in shape: {student_feature.shape} vs "
            f"{fp_feature.shape}. The correction model must have the student's architecture."
        )
    axis = _softmax_axis(over)
    log_q = feature_log_distribution(student_feature, tau, channel_axis, over)
    log_f = tf.stop_gradient(feature_log_distribution(fp_feature, tau, channel_axis, over))
    per_distribution = tf.reduce_sum(tf.exp(log_q) * (log_q - log_f), axis=axis)
    return tf.reduce_mean(per_distribution, axis=-1)


def kd_cross_entropy(student_logits, teacher_logits, temperature: float = 1.0,
                     scale_by_t2: bool = True):
    """L_KD per example: ``-sum_m p_T^m log p_Q^m`` at ``temperature``, shape ``(batch,)``.

    This is the paper's cross-entropy form (Eq. 9), not KL: it equals KL(p_T || p_Q) plus the
    teacher's entropy, which has no gradient, so it is not 0 when the student matches the
    teacher. With ``scale_by_t2`` it is multiplied by ``temperature**2`` (Hinton et al.), which
    keeps the gradient magnitude independent of the temperature; at the default T = 1 this
    changes nothing.
    """
    temperature = _check_temperature(temperature, "temperature")
    student_logits = tf.cast(student_logits, tf.float32)
    teacher_logits = tf.stop_gradient(tf.cast(teacher_logits, tf.float32))
    p_teacher = tf.nn.softmax(teacher_logits / temperature, axis=-1)
    log_q = tf.nn.log_softmax(student_logits / temperature, axis=-1)
    loss = -tf.reduce_sum(p_teacher * log_q, axis=-1)
    if scale_by_t2:
        loss = loss * (temperature**2)
    return loss


__all__ = ["clc_divergence", "feature_distribution", "feature_log_distribution", "kd_cross_entropy"]
