"""The edgeplus QuantizeScheme: low-bit weights (2/3/4/8) and activations (2/4/8) for TF-MOT.

``tfmot.quantization.keras.quantize_apply(annotated_model, EdgePlusQuantizeScheme(...))``
accepts it like TF-MOT's own schemes; :func:`quantize_model` is the one-call convenience.
"""

from __future__ import annotations

from tfmot_edgeplus import _tfmot
from tfmot_edgeplus._compat import check_keras2_model, keras, tfmot
from tfmot_edgeplus.quantization import configs, quantizers, transforms
from tfmot_edgeplus.quantization.quantizers import ACTIVATION_BITS, WEIGHT_BITS, check_bits
from tfmot_edgeplus.quantization.registry import (
    SUPPORTED_WEIGHTED_LAYERS,
    EdgePlusQuantizeRegistry,
    validate_per_layer,
)
from tfmot_edgeplus.quantization.transforms import (
    BATCHNORM_FOLDS_INTO,
    conv1d_batchnorm_transforms,
    conv1d_unfoldable,
)

_QuantizeScheme = tfmot.quantization.keras.QuantizeScheme


class EdgePlusLayoutTransform(_tfmot.NBitLayoutTransform):
    """TF-MOT's n-bit graph transforms (Conv/Dense + BatchNorm folding, as TF-MOT does it;
    Conv1D + BatchNorm first rewritten as a Conv2D + BatchNorm by
    :mod:`~tfmot_edgeplus.quantization.transforms`), with the output quantizer they put on
    a folded BatchNorm replaced by ours, at the bits given for that BatchNorm or, failing
    that, for its conv/dense."""

    def __init__(self, activation_bits: int, per_layer: dict):
        super().__init__(num_bits_weight=8, num_bits_activation=activation_bits)
        self._activation_bits = activation_bits
        self._per_layer = per_layer

    def apply(self, model, layer_quantize_map):
        model, layer_quantize_map = _tfmot.ModelTransformer(
            model, conv1d_batchnorm_transforms(), set(layer_quantize_map), layer_quantize_map
        ).transform()
        model, layer_quantize_map = super().apply(model, layer_quantize_map)
        for name, metadata in layer_quantize_map.items():
            config = metadata.get("quantize_config")
            if isinstance(config, _tfmot.NBitOutputQuantizeConfig):
                bits = self._override_bits(model, name) or self._activation_bits
                metadata["quantize_config"] = configs.EdgePlusOutputQuantizeConfig(
                    (), quantize_output=True, activation_bits=bits
                )
        return model, layer_quantize_map

    def _override_bits(self, model, name):
        names = [name]
        try:
            inbound = model.get_layer(name).inbound_nodes[0].inbound_layers
            names += [layer.name for layer in (inbound if isinstance(inbound, list) else [inbound])]
        except (ValueError, IndexError, AttributeError):
            pass
        for candidate in names:
            if "activation_bits" in self._per_layer.get(candidate, {}):
                return self._per_layer[candidate]["activation_bits"]
        return None


class EdgePlusQuantizeScheme(_QuantizeScheme):
    """Low-bit QAT scheme.

    Args:
      weight_bits: default weight bits, one of 2, 3, 4, 8 (symmetric, per output channel).
      activation_bits: default activation bits, 2, 4 or 8. A model converted to builtin TFLite
        ops keeps activations in int8 whatever this says (the conversion report notes it);
        lower-bit activations deploy through edgeplus custom ops.
      per_layer: overrides by layer name, e.g. ``{"conv1": {"weight_bits": 8}}``. TF-MOT
        fuses Conv/Dense -> BatchNorm -> ReLU into one quantized activation at the end of
        the chain: give ``activation_bits`` to the layer that outputs it (the ReLU; for
        Conv -> BatchNorm alone, the BatchNorm or the conv).
      learnable_scales: LSQ trainable per-channel steps instead of min/max ranges.
    """

    def __init__(self, weight_bits=4, activation_bits=8, per_layer=None, learnable_scales=False):
        self.weight_bits = check_bits(weight_bits, WEIGHT_BITS, "weight_bits")
        self.activation_bits = check_bits(activation_bits, ACTIVATION_BITS, "activation_bits")
        self.per_layer = validate_per_layer(per_layer)
        self.learnable_scales = bool(learnable_scales)

    def get_layout_transformer(self):
        return EdgePlusLayoutTransform(self.activation_bits, self.per_layer)

    def get_quantize_registry(self):
        return EdgePlusQuantizeRegistry(
            self.weight_bits, self.activation_bits, self.per_layer, self.learnable_scales
        )

    def get_config(self):
        return {
            "weight_bits": self.weight_bits,
            "activation_bits": self.activation_bits,
            "per_layer": {name: dict(o) for name, o in self.per_layer.items()},
            "learnable_scales": self.learnable_scales,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return isinstance(other, EdgePlusQuantizeScheme) and self.get_config() == other.get_config()

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"EdgePlusQuantizeScheme({args})"


def _unsupported_layers(model, registry) -> list[str]:
    ignored = (keras.layers.InputLayer, keras.layers.BatchNormalization)
    return [
        f"{layer.name} ({type(layer).__name__})"
        for layer in model.layers
        if not isinstance(layer, ignored) and not registry.supports(layer)
    ]


def _unfoldable_batchnorms(model) -> list[str]:
    """BatchNormalization layers the scheme cannot fold, each with why and the fix."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            why = _why_unfoldable(layer)
            if why:
                found.append(f"{layer.name} ({why})")
    return found


def _why_unfoldable(bn) -> str | None:
    inbound = [node.inbound_layers for node in bn.inbound_nodes]
    if len(inbound) != 1 or isinstance(inbound[0], list):
        return "it is called on several tensors or several times (use one per conv)"
    producer = inbound[0]
    kind = type(producer).__name__
    config = producer.get_config()
    if kind not in BATCHNORM_FOLDS_INTO:
        return (f"it follows {producer.name!r} ({kind}), not one of "
                f"{', '.join(BATCHNORM_FOLDS_INTO)}")
    if config.get("activation", "linear") != "linear":
        return (f"{producer.name!r} has activation {config['activation']!r} before it (move the "
                "activation after the BatchNormalization)")
    if len(producer.outbound_nodes) != 1:
        return (f"{producer.name!r} also feeds other layers (it must feed only the "
                "BatchNormalization)")
    if kind == "Conv1D":
        return conv1d_unfoldable(config, bn.get_config())
    return None


def quantize_model(model, scheme: EdgePlusQuantizeScheme | None = None):
    """Return a QAT copy of ``model`` quantized by ``scheme`` (default: W4A8).

    Equivalent to ``quantize_apply(quantize_annotate_model(model), scheme)`` with the inputs
    checked first: a Keras 2 Sequential/Functional model, only supported layers, and
    ``per_layer`` names that exist in the model.
    """
    scheme = EdgePlusQuantizeScheme() if scheme is None else scheme
    if not isinstance(scheme, _QuantizeScheme):
        raise TypeError(
            f"scheme must be a QuantizeScheme such as EdgePlusQuantizeScheme(weight_bits=4), "
            f"got {type(scheme).__name__}."
        )
    check_keras2_model(model)
    if isinstance(scheme, EdgePlusQuantizeScheme):
        names = {layer.name for layer in model.layers}
        missing = sorted(set(scheme.per_layer) - names)
        if missing:
            raise ValueError(
                f"per_layer names layers that are not in model {model.name!r}: {missing}. "
                f"The model's layers are: {sorted(names)}."
            )
    unsupported = _unsupported_layers(model, scheme.get_quantize_registry())
    if unsupported:
        raise ValueError(
            f"Model {model.name!r} has layers the scheme cannot quantize: {', '.join(unsupported)}. "
            f"Supported layers with weights: {', '.join(SUPPORTED_WEIGHTED_LAYERS)} (plus "
            "BatchNormalization after them and TF-MOT's weightless layers). Replace them, or "
            "annotate them yourself with a QuantizeConfig."
        )
    unfoldable = _unfoldable_batchnorms(model)
    if unfoldable:
        raise ValueError(
            f"Model {model.name!r} has BatchNormalization layers the scheme cannot fold into the "
            f"layer before them: {'; '.join(unfoldable)}. A BatchNormalization must directly "
            f"follow a {', '.join(BATCHNORM_FOLDS_INTO)} with a linear activation, used only "
            "by it; otherwise fold it into the layer's weights before quantizing, or remove it."
        )
    with quantize_scope():
        annotated = tfmot.quantization.keras.quantize_annotate_model(model)
        qat_model = tfmot.quantization.keras.quantize_apply(annotated, scheme)
    initialize_learned_scales(qat_model)
    return qat_model


def initialize_learned_scales(qat_model) -> int:
    """Set every still-unset LSQ step of ``qat_model`` from its weights; returns how many.

    quantize_model calls it. After a bare ``quantize_apply`` the steps are set on the first
    training step instead (and are derived on the fly when evaluating before that).
    """
    count = 0
    for layer in qat_model.layers:
        config = getattr(layer, "quantize_config", None)
        quantizer = getattr(config, "weight_quantizer", None)
        if not isinstance(quantizer, quantizers.LearnedScaleWeightQuantizer):
            continue
        for weight, quantizer_, quantizer_vars in _tfmot.weight_vars(layer):
            if quantizer_ is quantizer and float(quantizer_vars["initialized"].numpy()) < 0.5:
                quantizer.initialize(weight, quantizer_vars)
                count += 1
    return count


def quantize_scope(*args):
    """``tfmot.quantization.keras.quantize_scope`` with the edgeplus types registered,
    so that a saved QAT model loads again: ``with quantize_scope(): keras.models.load_model(p)``."""
    objects = {}
    objects.update(quantizers.custom_objects())
    objects.update(configs.custom_objects())
    objects.update(transforms.custom_objects())
    objects.update(_tfmot.n_bit_custom_objects())
    objects["EdgePlusQuantizeScheme"] = EdgePlusQuantizeScheme
    for extra in args:
        objects.update(extra)
    return tfmot.quantization.keras.quantize_scope(objects)
