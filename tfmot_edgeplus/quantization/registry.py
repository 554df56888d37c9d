"""Which layer gets which QuantizeConfig: one table, plus per-layer bit overrides by name."""

from __future__ import annotations

from dataclasses import dataclass

from tfmot_edgeplus import _tfmot
from tfmot_edgeplus._compat import keras, tfmot
from tfmot_edgeplus.quantization.configs import (
    EdgePlusOutputQuantizeConfig,
    EdgePlusWeightQuantizeConfig,
)
from tfmot_edgeplus.quantization.quantizers import (
    ACTIVATION_BITS,
    WEIGHT_BITS,
    check_bits,
)

_QuantizeRegistry = tfmot.quantization.keras.QuantizeRegistry

OVERRIDE_KEYS = ("weight_bits", "activation_bits")


@dataclass(frozen=True)
class _WeightedLayerInfo:
    weight_attr: str
    channel_axis: int | None


# Per output channel where TF 2.21's converter keeps the channel axis; per tensor (None)
# where it reshapes the kernel and refuses a per-channel axis that moves: Dense (FC weights
# are transposed) and Conv1D (its kernel is expanded to 4-D).
_WEIGHTED_LAYERS = {
    keras.layers.Conv1D: _WeightedLayerInfo("kernel", None),
    keras.layers.Conv2D: _WeightedLayerInfo("kernel", -1),
    keras.layers.DepthwiseConv2D: _WeightedLayerInfo("depthwise_kernel", 2),
    keras.layers.Dense: _WeightedLayerInfo("kernel", None),
}

SUPPORTED_WEIGHTED_LAYERS = tuple(cls.__name__ for cls in _WEIGHTED_LAYERS)


def validate_per_layer(per_layer) -> dict:
    """Check a ``{"layer_name": {"weight_bits": b, "activation_bits": a}}`` mapping."""
    if per_layer is None:
        return {}
    if not isinstance(per_layer, dict):
        raise TypeError(
            f"per_layer must be a dict mapping layer names to overrides, got {type(per_layer).__name__}."
        )
    clean = {}
    for name, override in per_layer.items():
        if not isinstance(override, dict):
            raise TypeError(
                f"per_layer[{name!r}] must be a dict like {{'weight_bits': 2}}, got {override!r}."
            )
        unknown = set(override) - set(OVERRIDE_KEYS)
        if unknown:
            raise ValueError(
                f"per_layer[{name!r}] has unknown keys {sorted(unknown)}; allowed: {list(OVERRIDE_KEYS)}."
            )
        entry = {}
        if "weight_bits" in override:
            entry["weight_bits"] = check_bits(
                override["weight_bits"], WEIGHT_BITS, f"per_layer[{name!r}]['weight_bits']"
            )
        if "activation_bits" in override:
            entry["activation_bits"] = check_bits(
                override["activation_bits"], ACTIVATION_BITS, f"per_layer[{name!r}]['activation_bits']"
            )
        clean[str(name)] = entry
    return clean


class EdgePlusQuantizeRegistry(_QuantizeRegistry):
    """Registry of the edgeplus scheme.

    Conv1D, Conv2D, DepthwiseConv2D and Dense get :class:`EdgePlusWeightQuantizeConfig`;
    the layers without weights of TF-MOT's n-bit table get
    :class:`EdgePlusOutputQuantizeConfig` on the tensors that table names (a
    ``keras.layers.Activation`` layer keeps TF-MOT's own config). ``per_layer`` overrides
    the bits of the named layers.
    """

    def __init__(self, weight_bits=4, activation_bits=8, per_layer=None, learnable_scales=False):
        self.weight_bits = check_bits(weight_bits, WEIGHT_BITS, "weight_bits")
        self.activation_bits = check_bits(activation_bits, ACTIVATION_BITS, "activation_bits")
        self.per_layer = validate_per_layer(per_layer)
        self.learnable_scales = bool(learnable_scales)
        self._weightless = {}

    def bits_for(self, layer_name: str) -> tuple[int, int]:
        """(weight_bits, activation_bits) of the layer named ``layer_name``."""
        override = self.per_layer.get(layer_name, {})
        return (
            override.get("weight_bits", self.weight_bits),
            override.get("activation_bits", self.activation_bits),
        )

    def _weightless_registry(self, activation_bits):
        # TF-MOT's n-bit registry says which layers without weights are supported (ReLU,
        # pooling, Add, Concatenate, Reshape, ...) and which of their tensors to quantize;
        # we quantize those tensors with our own activation quantizer.
        if activation_bits not in self._weightless:
            self._weightless[activation_bits] = _tfmot.NBitQuantizeRegistry(
                num_bits_weight=8, num_bits_activation=activation_bits
            )
        return self._weightless[activation_bits]

    def supports(self, layer) -> bool:
        if type(layer) in _WEIGHTED_LAYERS:
            return True
        return self._weightless_registry(self.activation_bits).supports(layer)

    def get_quantize_config(self, layer):
        weight_bits, activation_bits = self.bits_for(layer.name)
        info = _WEIGHTED_LAYERS.get(type(layer))
        if info is not None:
            return EdgePlusWeightQuantizeConfig(
                weight_attr=info.weight_attr,
                weight_bits=weight_bits,
                activation_bits=activation_bits,
                learnable_scales=self.learnable_scales,
                channel_axis=info.channel_axis,
            )
        registry = self._weightless_registry(activation_bits)
        info = _tfmot.weightless_quantize_info(registry, layer) if registry.supports(layer) else None
        if info is not None:
            activation_attrs, quantize_output = info
            return EdgePlusOutputQuantizeConfig(activation_attrs, quantize_output, activation_bits)
        if not registry.supports(layer):
            raise ValueError(
                f"Layer {layer.name!r} ({type(layer).__name__}) is not supported by the edgeplus "
                f"scheme. Supported layers with weights: {', '.join(SUPPORTED_WEIGHTED_LAYERS)}; "
                "plus TF-MOT's layers without weights (ReLU, pooling, Add, Concatenate, Reshape, "
                "Flatten, Dropout, ...). Alternatively annotate it with your own QuantizeConfig "
                "(tfmot.quantization.keras.quantize_annotate_layer) or leave it unquantized."
            )
        return registry.get_quantize_config(layer)
