"""QuantizeConfigs of the edgeplus scheme: layers with weights, and weightless layers."""

from __future__ import annotations

from tfmot_edgeplus._compat import tfmot
from tfmot_edgeplus.quantization.quantizers import (
    ACTIVATION_BITS,
    WEIGHT_BITS,
    LearnedScaleWeightQuantizer,
    activation_quantizer,
    check_bits,
    min_max_weight_quantizer,
)

QuantizeConfig = tfmot.quantization.keras.QuantizeConfig


class EdgePlusWeightQuantizeConfig(QuantizeConfig):
    """Quantizes a layer's kernel at ``weight_bits`` and its activation at ``activation_bits``.

    Args:
      weight_attr: the kernel attribute (``"kernel"`` or ``"depthwise_kernel"``).
      weight_bits: 2, 3, 4 or 8 (symmetric, per output channel, narrow range).
      activation_bits: 2, 4 or 8 (asymmetric, per tensor). Below 8 bits, activations deploy
        only through edgeplus custom ops; builtin TFLite ops keep them in int8.
      learnable_scales: LSQ steps (trainable) instead of TF-MOT's min/max ranges.
      channel_axis: output-channel axis of the kernel (2 for a depthwise kernel), or None
        for one range per tensor (Dense: TFLite's converter cannot keep a per-channel axis
        through the transpose of FC weights, so TF-MOT and we quantize Dense per tensor).
    """

    def __init__(
        self,
        weight_attr: str = "kernel",
        weight_bits: int = 4,
        activation_bits: int = 8,
        learnable_scales: bool = False,
        channel_axis: int | None = -1,
    ):
        self.weight_attr = weight_attr
        self.weight_bits = check_bits(weight_bits, WEIGHT_BITS, "weight_bits")
        self.activation_bits = check_bits(activation_bits, ACTIVATION_BITS, "activation_bits")
        self.learnable_scales = bool(learnable_scales)
        self.channel_axis = None if channel_axis is None else int(channel_axis)
        if self.learnable_scales:
            self.weight_quantizer = LearnedScaleWeightQuantizer(weight_bits, channel_axis)
        else:
            # TF-MOT's min/max quantizer reduces over all axes but the last; a depthwise
            # kernel's last axis is its multiplier (1), so there it is per tensor, as in TF-MOT.
            self.weight_quantizer = min_max_weight_quantizer(
                weight_bits, per_axis=self.channel_axis is not None
            )
        self.activation_quantizer = activation_quantizer(activation_bits)

    def get_weights_and_quantizers(self, layer):
        return [(getattr(layer, self.weight_attr), self.weight_quantizer)]

    def get_activations_and_quantizers(self, layer):
        return [(layer.activation, self.activation_quantizer)]

    def set_quantize_weights(self, layer, quantize_weights):
        if len(quantize_weights) != 1:
            raise ValueError(
                f"set_quantize_weights on layer {layer.name!r} expects 1 weight "
                f"({self.weight_attr}), got {len(quantize_weights)}."
            )
        current = getattr(layer, self.weight_attr)
        if current.shape != quantize_weights[0].shape:
            raise ValueError(
                f"layer {layer.name!r}: quantized {self.weight_attr} has shape "
                f"{quantize_weights[0].shape}, the layer's is {current.shape}."
            )
        setattr(layer, self.weight_attr, quantize_weights[0])

    def set_quantize_activations(self, layer, quantize_activations):
        if len(quantize_activations) != 1:
            raise ValueError(
                f"set_quantize_activations on layer {layer.name!r} expects 1 activation, "
                f"got {len(quantize_activations)}."
            )
        layer.activation = quantize_activations[0]

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {
            "weight_attr": self.weight_attr,
            "weight_bits": self.weight_bits,
            "activation_bits": self.activation_bits,
            "learnable_scales": self.learnable_scales,
            "channel_axis": self.channel_axis,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return isinstance(other, EdgePlusWeightQuantizeConfig) and self.get_config() == other.get_config()

    def __ne__(self, other):
        return not self.__eq__(other)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"EdgePlusWeightQuantizeConfig({args})"


class EdgePlusOutputQuantizeConfig(QuantizeConfig):
    """Quantizes a weightless layer's activation attributes and/or its output.

    For ReLU, pooling, Add, Concatenate... (which attributes, and whether the output is
    quantized, come from TF-MOT's n-bit table) and for the output of a BatchNorm that
    TF-MOT's transforms fold into the preceding conv.
    """

    def __init__(self, activation_attrs=(), quantize_output: bool = True, activation_bits: int = 8):
        self.activation_attrs = list(activation_attrs)
        self.quantize_output = bool(quantize_output)
        self.activation_bits = check_bits(activation_bits, ACTIVATION_BITS, "activation_bits")
        self.activation_quantizer = activation_quantizer(activation_bits)

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return [(getattr(layer, attr), self.activation_quantizer) for attr in self.activation_attrs]

    def set_quantize_weights(self, layer, quantize_weights):
        if quantize_weights:
            raise ValueError(f"layer {layer.name!r} has no weights to quantize, got {len(quantize_weights)}.")

    def set_quantize_activations(self, layer, quantize_activations):
        if len(quantize_activations) != len(self.activation_attrs):
            raise ValueError(
                f"set_quantize_activations on layer {layer.name!r} expects "
                f"{len(self.activation_attrs)} activations, got {len(quantize_activations)}."
            )
        for attr, activation in zip(self.activation_attrs, quantize_activations):
            setattr(layer, attr, activation)

    def get_output_quantizers(self, layer):
        return [self.activation_quantizer] if self.quantize_output else []

    def get_config(self):
        return {
            "activation_attrs": list(self.activation_attrs),
            "quantize_output": self.quantize_output,
            "activation_bits": self.activation_bits,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return isinstance(other, EdgePlusOutputQuantizeConfig) and self.get_config() == other.get_config()

    def __ne__(self, other):
        return not self.__eq__(other)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"EdgePlusOutputQuantizeConfig({args})"


def custom_objects() -> dict:
    return {
        "EdgePlusWeightQuantizeConfig": EdgePlusWeightQuantizeConfig,
        "EdgePlusOutputQuantizeConfig": EdgePlusOutputQuantizeConfig,
    }
