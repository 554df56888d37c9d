"""Pairing a QAT model's layers with the FP correction model's layers, by name.

TF-MOT wraps every quantized layer in a ``QuantizeWrapper(V2)`` named ``quant_<name>`` whose
``.layer`` is a clone of the original layer named ``<name>``; that inner name is the key we
match on, so any QAT model from our scheme or from TF-MOT's ``default_8bit`` /
``default_n_bit`` schemes works.

Which tensor is compared: the **output of the layer with that name, in both models**. TF-MOT's
Conv -> BatchNorm -> ReLU handling keeps BatchNorm and ReLU as their own (wrapped) layers and
only moves the activation quantizer to the end of the chain, so ``quant_conv1``'s output is the
quantized-weight convolution *before* BatchNorm, exactly like ``conv1``'s output in the FP
model: both sides are the same point of the graph. To correct the block's activation instead,
name the ReLU (e.g. ``layers=["relu1", ...]``).
"""

from __future__ import annotations

from dataclasses import dataclass

from tfmot_edgeplus import _tfmot
from tfmot_edgeplus._compat import keras, tfmot

_QuantizeWrapper = tfmot.quantization.keras.QuantizeWrapper

#: Layer types that ``layers="all"`` corrects (all but the model's last such layer).
CORRECTED_TYPES = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.Dense,
)


@dataclass(frozen=True)
class LayerPair:
    """One corrected layer: its original name, the two Keras layers and the channel axis."""

    name: str
    student_layer: object
    fp_layer: object
    channel_axis: int


def original_name(layer) -> str:
    """The FP layer name a (possibly wrapped) student layer corresponds to."""
    return layer.layer.name if isinstance(layer, _QuantizeWrapper) else layer.name


def check_quantized(student) -> None:
    """Raise unless ``student`` is a Keras model containing TF-MOT quantize wrappers."""
    if not isinstance(student, keras.Model):
        raise TypeError(
            f"student must be a tf_keras.Model (a QAT model), got {type(student).__name__}."
        )
    if not any(isinstance(layer, _QuantizeWrapper) for layer in student.layers):
        raise ValueError(
            f"student {student.name!r} is not quantized: it has no TF-MOT QuantizeWrapper "
            "layers. Pass the QAT model, e.g. tfmot_edgeplus.quantize_model(fp_model, "
            "EdgePlusQuantizeScheme(weight_bits=2)) or tfmot.quantization.keras.quantize_model"
            "(fp_model), and keep the FP model as the teacher."
        )


def _candidates(student):
    """Student layers that can be corrected, by original name, in graph order."""
    out = {}
    for layer in student.layers:
        if isinstance(layer, (keras.layers.InputLayer, _tfmot.QuantizeLayer)):
            continue
        out[original_name(layer)] = layer
    return out


def _inner(layer):
    return layer.layer if isinstance(layer, _QuantizeWrapper) else layer


def _channel_axis(layer) -> int:
    inner = _inner(layer)
    return 1 if getattr(inner, "data_format", "channels_last") == "channels_first" else -1


def default_layer_names(student) -> list[str]:
    """``layers="all"``: every Conv1D/Conv2D/DepthwiseConv2D/Dense except the last one."""
    names = [
        name
        for name, layer in _candidates(student).items()
        if isinstance(_inner(layer), CORRECTED_TYPES)
    ]
    return names[:-1]


def match_layers(student, correction_model, layers="all") -> list[LayerPair]:
    """Resolve ``layers`` ("all" or a list of names) into checked student/FP layer pairs.

    Names may be given as in the FP model (``conv1``) or as TF-MOT's wrapper (``quant_conv1``).
    """
    check_quantized(student)
    candidates = _candidates(student)
    if isinstance(layers, str):
        if layers != "all":
            raise ValueError(
                f"layers must be 'all' or a list of layer names, got the string {layers!r}. "
                f"Valid names: {sorted(candidates)}."
            )
        names = default_layer_names(student)
        if not names:
            raise ValueError(
                f"student {student.name!r} has fewer than two Conv1D/Conv2D/DepthwiseConv2D/"
                "Dense layers, so layers='all' (all but the final one) corrects nothing. Name "
                f"layers explicitly from {sorted(candidates)}, or use beta=0."
            )
    else:
        try:
            names = list(layers)
        except TypeError:
            raise TypeError(
                f"layers must be 'all' or a list of layer names, got {type(layers).__name__}."
            ) from None
        if not names:
            raise ValueError("layers is an empty list; give at least one name, or use beta=0.")
        wrapper_names = {layer.name: name for name, layer in candidates.items()}
        names = [wrapper_names.get(n, n) if isinstance(n, str) else n for n in names]
        unknown = [n for n in names if n not in candidates]
        if unknown:
            raise ValueError(
                f"layers names layers that are not in the student {student.name!r}: {unknown}. "
                f"Valid names: {sorted(candidates)}."
            )
        if len(set(names)) != len(names):
            raise ValueError(f"layers lists a layer more than once: {names}.")

    fp_names = {layer.name for layer in correction_model.layers}
    missing = [n for n in names if n not in fp_names]
    if missing:
        raise ValueError(
            f"the correction model {correction_model.name!r} has no layers named {missing}, which "
            f"the student has. The correction model must be the FP model the student was "
            f"quantized from (same architecture and layer names); its layers are "
            f"{sorted(fp_names)}."
        )
    pairs = []
    for name in names:
        student_layer = candidates[name]
        fp_layer = correction_model.get_layer(name)
        for what, layer in (("student", student_layer), ("correction model", fp_layer)):
            if isinstance(layer.output, (list, tuple)):
                raise TypeError(f"layer {name!r} of the {what} has several outputs; pick another.")
        s_shape = tuple(student_layer.output.shape[1:])
        f_shape = tuple(fp_layer.output.shape[1:])
        # A Conv1D followed by a BatchNorm is a Conv2D on (1, steps) rows in the student
        # (tfmot_edgeplus.quantization.transforms): same values, one more axis.
        conv1d_as_2d = isinstance(fp_layer, keras.layers.Conv1D) and s_shape == (1,) + f_shape
        if s_shape != f_shape and not conv1d_as_2d:
            raise ValueError(
                f"layer {name!r} outputs shape {s_shape} in the student but {f_shape} in the "
                "correction model; they must have the same architecture."
            )
        if len(s_shape) < 1:
            raise ValueError(f"layer {name!r} outputs a scalar per example; it has no channels.")
        pairs.append(LayerPair(name, student_layer, fp_layer, _channel_axis(student_layer)))
    return pairs


__all__ = ["CORRECTED_TYPES", "LayerPair", "check_quantized", "default_layer_names", "match_layers",
           "original_name"]
