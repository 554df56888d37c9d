"""Weight and activation quantizers of the edgeplus scheme (TF-MOT ``Quantizer`` API).

Two weight quantizers, both symmetric, per output channel, narrow range
(integer levels ``-Qp..Qp`` with ``Qp = 2**(bits-1) - 1``: 2 bits give the ternary
levels {-1, 0, 1}, 3 bits -3..3, 4 bits -7..7, 8 bits -127..127), which is what TFLite
requires of weights (zero point 0):

* :func:`min_max_weight_quantizer`: TF-MOT's last-value min/max quantizer (range = the
  channel's max |w|), as in TF-MOT's ``default_n_bit`` scheme.
* :class:`LearnedScaleWeightQuantizer`: LSQ (Esser et al. 2020), the QuaRC quantizer
  ``w_q = s * clamp(round(w / s), -Qp, Qp)`` with a trainable per-channel step ``s``,
  straight-through rounding and LSQ's gradient scale ``1 / sqrt(n * Qp)``. ``s`` is
  initialised lazily, on the first call, to the step that minimises the channel's
  quantization MSE over a grid of clipping ratios (better than max|w| at 2-3 bits, where
  the largest weight would otherwise waste a level).

In inference mode (``training=False``, which is what ``TFLiteConverter`` traces) the LSQ
quantizer emits TensorFlow's ``FakeQuantWithMinMaxVarsPerChannel`` with
``min = -s*Qp, max = s*Qp``: the same values (its step is ``(max-min)/(2*Qp) = s``), in the
op the converter turns into stored low-bit integer weights.

Activations use :class:`ActivationRangeQuantizer` (asymmetric, per tensor, 8, 4 or 2 bits):
TF-MOT's moving-average quantizer starts every range at [-6, 6] and moves it with an EMA of
decay 0.999, so after the few hundred steps of a little-data QAT the ranges are still mostly
that guess (measured: 31 % of the logits of a 1-epoch Fashion-MNIST QAT clipped at int8's
top). Ours sets the range from the first training batch, then follows an EMA of decay 0.99.
"""

from __future__ import annotations

import numpy as np

from tfmot_edgeplus._compat import keras, tf, tfmot

_Quantizer = tfmot.quantization.keras.quantizers.Quantizer
LastValueQuantizer = tfmot.quantization.keras.quantizers.LastValueQuantizer

WEIGHT_BITS = (2, 3, 4, 8)
ACTIVATION_BITS = (2, 4, 8)

# Clipping ratios (of max|w|) tried when initialising a learned step by minimum MSE.
_INIT_CLIP_RATIOS = np.linspace(0.3, 1.0, 15).astype(np.float32)


def check_bits(value, allowed, what: str) -> int:
    """Return ``value`` as an int if it is one of ``allowed``, else raise a ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value not in allowed:
        raise ValueError(
            f"{what} must be one of {sorted(allowed)}, got {value!r}. "
            f"Choose {what} from {sorted(allowed)}."
        )
    return int(value)


def q_max(bits: int) -> int:
    """Largest integer level of a symmetric narrow-range ``bits``-bit weight."""
    return 2 ** (bits - 1) - 1


def min_max_weight_quantizer(bits: int, per_axis: bool = True) -> LastValueQuantizer:
    """TF-MOT's min/max (last value) weight quantizer at ``bits``, symmetric narrow range."""
    check_bits(bits, WEIGHT_BITS, "weight_bits")
    return LastValueQuantizer(num_bits=bits, per_axis=per_axis, symmetric=True, narrow_range=True)


class ActivationRangeQuantizer(_Quantizer):
    """Asymmetric per-tensor activation quantizer whose range starts from data.

    In training, the first call sets ``[min, max]`` to the batch's range (widened to hold
    0, as TFLite needs); later calls move it by an EMA of ``ema_decay``. In inference it is
    TensorFlow's ``FakeQuantWithMinMaxVars`` on the stored range, which the TFLite converter
    turns into the tensor's int8 scale and zero point.
    """

    def __init__(self, num_bits: int = 8, ema_decay: float = 0.99):
        self.num_bits = check_bits(num_bits, ACTIVATION_BITS, "num_bits")
        if not 0.0 <= float(ema_decay) < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay!r}.")
        self.ema_decay = float(ema_decay)

    def build(self, tensor_shape, name, layer):
        def variable(suffix, value):
            return layer.add_weight(
                name + suffix,
                shape=(),
                initializer=keras.initializers.Constant(value),
                trainable=False,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )

        return {
            "min_var": variable("_min", -6.0),
            "max_var": variable("_max", 6.0),
            "initialized": variable("_range_initialized", 0.0),
        }

    def __call__(self, inputs, training, weights, **kwargs):
        min_var, max_var = weights["min_var"], weights["max_var"]
        if training:
            batch_min = tf.minimum(tf.reduce_min(inputs), 0.0)
            batch_max = tf.maximum(tf.reduce_max(inputs), 0.0)
            first = weights["initialized"] < 0.5
            decay = self.ema_decay
            new_min = tf.where(first, batch_min, decay * min_var + (1.0 - decay) * batch_min)
            new_max = tf.where(first, batch_max, decay * max_var + (1.0 - decay) * batch_max)
            updates = [min_var.assign(new_min), max_var.assign(new_max), weights["initialized"].assign(1.0)]
            with tf.control_dependencies(updates):
                return tf.quantization.fake_quant_with_min_max_vars(
                    inputs, tf.identity(new_min), tf.identity(new_max), num_bits=self.num_bits
                )
        return tf.quantization.fake_quant_with_min_max_vars(
            inputs, min_var, max_var, num_bits=self.num_bits
        )

    def get_config(self):
        return {"num_bits": self.num_bits, "ema_decay": self.ema_decay}

    def __eq__(self, other):
        return isinstance(other, ActivationRangeQuantizer) and self.get_config() == other.get_config()

    def __ne__(self, other):
        return not self.__eq__(other)


def activation_quantizer(bits: int) -> ActivationRangeQuantizer:
    """The edgeplus activation quantizer at ``bits`` (2, 4 or 8)."""
    return ActivationRangeQuantizer(check_bits(bits, ACTIVATION_BITS, "activation_bits"))


def _round_ste(x):
    return x + tf.stop_gradient(tf.round(x) - x)


def _scale_grad(x, factor):
    """Identity in the forward pass; multiplies the gradient by ``factor`` (LSQ)."""
    return tf.stop_gradient(x - x * factor) + x * factor


class LearnedScaleWeightQuantizer(_Quantizer):
    """LSQ weight quantizer with a trainable step per output channel.

    Save models that use it in the SavedModel format (``model.save(directory)``), which
    restores variables by name. HDF5 restores them by position, and TF-MOT's wrapper lists a
    trainable quantizer variable before the kernel in a rebuilt model but after it in the
    original, so an ``.h5`` file of such a model does not load.

    Args:
      num_bits: 2, 3, 4 or 8.
      channel_axis: first kernel axis of the output channel: the output channels are all
        axes from there to the end, in row-major order. -1 for Conv1D/Conv2D kernels; 2 for
        a DepthwiseConv2D kernel ``(kh, kw, C, m)``, whose ``C * m`` output channels are
        ordered ``c * m + j`` as in TFLite; ``None`` for one step per tensor (Dense: the
        converter transposes FC weights and refuses a per-channel axis that moves, so Dense
        is per tensor, as in TF-MOT).
    """

    def __init__(self, num_bits: int, channel_axis: int | None = -1):
        self.num_bits = check_bits(num_bits, WEIGHT_BITS, "num_bits")
        self.channel_axis = None if channel_axis is None else int(channel_axis)

    # TF-MOT API -----------------------------------------------------------------------
    def build(self, tensor_shape, name, layer):
        rank = len(tensor_shape)
        if self.channel_axis is not None and self.channel_axis % rank not in (rank - 1, rank - 2):
            raise ValueError(
                f"channel_axis={self.channel_axis} for a kernel of shape {tuple(tensor_shape)}: "
                "the output channels must be the last axis (-1) or the last two (depthwise: -2)."
            )
        channels = 1 if self.channel_axis is None else int(
            np.prod(tensor_shape[self.channel_axis % len(tensor_shape):])
        )
        # ONLY_FIRST_REPLICA: the lazy initialisation assigns in replica context under
        # tf.distribute strategies.
        scale = layer.add_weight(
            name + "_scale",
            shape=(channels,),
            initializer=keras.initializers.Ones(),
            trainable=True,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )
        initialized = layer.add_weight(
            name + "_scale_initialized",
            shape=(),
            initializer=keras.initializers.Zeros(),
            trainable=False,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )
        return {"scale": scale, "initialized": initialized}

    def __call__(self, inputs, training, weights, **kwargs):
        qp = float(q_max(self.num_bits))
        if training:
            scale = self._initialised_scale(inputs, weights)
            n_per_channel = int(np.prod(inputs.shape)) // int(scale.shape[0])
            s = _scale_grad(scale, 1.0 / np.sqrt(n_per_channel * qp))
            s = self._broadcast(s, inputs)
            return _round_ste(tf.clip_by_value(inputs / s, -qp, qp)) * s
        # No assignment here: the converter must be able to fold min/max to constants.
        scale = tf.cond(
            weights["initialized"] > 0.5,
            lambda: tf.identity(weights["scale"]),
            lambda: self.mse_optimal_scale(inputs),
        )
        return self._fake_quant(inputs, tf.maximum(tf.abs(scale), 1e-8), qp)

    def initialize(self, weight, weights) -> None:
        """Set the step from ``weight`` now (eagerly), by minimum quantization MSE."""
        weights["scale"].assign(self.mse_optimal_scale(tf.convert_to_tensor(weight)))
        weights["initialized"].assign(1.0)

    def get_config(self):
        return {"num_bits": self.num_bits, "channel_axis": self.channel_axis}

    def __eq__(self, other):
        return isinstance(other, LearnedScaleWeightQuantizer) and self.get_config() == other.get_config()

    def __ne__(self, other):
        return not self.__eq__(other)

    # helpers ---------------------------------------------------------------------------
    def _reduce_axes(self, rank: int) -> list[int]:
        if self.channel_axis is None:
            return list(range(rank))
        return list(range(self.channel_axis % rank))

    def _broadcast(self, per_channel, inputs):
        if self.channel_axis is None:
            return tf.reshape(per_channel, [])
        axis = self.channel_axis % inputs.shape.rank
        return tf.reshape(per_channel, [1] * axis + list(inputs.shape[axis:]))

    def _fake_quant(self, inputs, scale, qp):
        """TFLite-convertible form: FakeQuant with min/max = -+ s * Qp."""
        if self.channel_axis is None:
            return tf.quantization.fake_quant_with_min_max_vars(
                inputs, -scale[0] * qp, scale[0] * qp, num_bits=self.num_bits, narrow_range=True
            )
        rank = inputs.shape.rank
        if self.channel_axis % rank == rank - 1:
            return tf.quantization.fake_quant_with_min_max_vars_per_channel(
                inputs, -scale * qp, scale * qp, num_bits=self.num_bits, narrow_range=True
            )
        # Depthwise kernel (kh, kw, C, m): the same memory seen as (kh, kw, 1, C*m) has the
        # output channels last, in TFLite's order.
        shape = tf.shape(inputs)
        moved = tf.reshape(inputs, tf.concat([shape[:-2], [1, -1]], axis=0))
        quantized = tf.quantization.fake_quant_with_min_max_vars_per_channel(
            moved, -scale * qp, scale * qp, num_bits=self.num_bits, narrow_range=True
        )
        return tf.reshape(quantized, shape)

    def _initialised_scale(self, inputs, weights):
        """The stored step, set from the weights on the first training call if still unset.

        The assignments stay outside the ``tf.cond`` (which only picks the value): under a
        tf.distribute strategy they synchronise replicas, which control flow may not hold."""
        scale_var, flag = weights["scale"], weights["initialized"]

        @tf.autograph.experimental.do_not_convert
        def from_weights():
            return self.mse_optimal_scale(inputs)

        scale = tf.cond(flag > 0.5, lambda: tf.identity(scale_var), from_weights)
        with tf.control_dependencies([scale_var.assign(scale), flag.assign(1.0)]):
            return tf.maximum(tf.abs(tf.identity(scale)), 1e-8)

    def mse_optimal_scale(self, w):
        """Per-channel step minimising ||w - Q(w)||^2 over clipping ratios of max|w|.

        One broadcast pass over all ratios (a leading axis), so the graph stays small."""
        rank = w.shape.rank
        reduce_axes = self._reduce_axes(rank)
        qp = float(q_max(self.num_bits))
        max_abs = tf.maximum(tf.reshape(tf.reduce_max(tf.abs(w), axis=reduce_axes), [-1]), 1e-8)
        ratios = tf.constant(_INIT_CLIP_RATIOS)
        steps = ratios[:, None] * max_abs[None, :] / qp  # (ratios, channels)
        if self.channel_axis is None:
            channel_shape = [1] * rank
        else:
            axis = self.channel_axis % rank
            channel_shape = [1] * axis + list(w.shape[axis:])
        s = tf.reshape(steps, [len(_INIT_CLIP_RATIOS)] + channel_shape)
        q = tf.clip_by_value(tf.round(w[None] / s), -qp, qp) * s
        errors = tf.reduce_sum(tf.square(w[None] - q), axis=[a + 1 for a in reduce_axes])
        best = tf.argmin(tf.reshape(errors, [len(_INIT_CLIP_RATIOS), -1]), axis=0)
        return max_abs * tf.gather(ratios, best) / qp


def custom_objects() -> dict:
    return {
        "LearnedScaleWeightQuantizer": LearnedScaleWeightQuantizer,
        "ActivationRangeQuantizer": ActivationRangeQuantizer,
    }
