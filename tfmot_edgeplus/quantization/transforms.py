"""Conv1D + BatchNormalization for TF-MOT: rewritten as the Conv2D + BatchNorm it runs as.

TF-MOT's transforms keep fake-quant out from between a Conv2D (or DepthwiseConv2D, Dense)
and the BatchNormalization after it, so that the TFLite converter folds the BatchNorm into
the conv. It has none for Conv1D, and even if it had, the converter could not fold: Keras runs
a Conv1D as EXPAND_DIMS -> CONV_2D -> squeeze, and the BatchNorm's MUL and ADD come after
the squeeze. :class:`Conv1DBatchNormToConv2D` rewrites

    Conv1D -> BatchNorm [-> ReLU]   into
    StepsAsRows -> Conv2D -> BatchNorm [-> ReLU] -> StepsAsRows(inverse)

(the Conv2D keeps the Conv1D's name, its weights with a kernel ``(1, k)``, and quantizes them
per output channel) before TF-MOT's own
transforms run; they then treat it as any Conv2D + BatchNorm, and the converter folds the
BatchNorm (and the ReLU) into one CONV_2D.
"""

from __future__ import annotations

import collections

import numpy as np

from tfmot_edgeplus import _tfmot
from tfmot_edgeplus._compat import keras, tf

_BATCHNORM = "BatchNormalization|SyncBatchNormalization"

# The layers a following BatchNormalization folds into; the layer's activation must be linear.
BATCHNORM_FOLDS_INTO = ("Conv1D", "Conv2D", "DepthwiseConv2D", "Dense")


class StepsAsRows(keras.layers.Layer):
    """``(batch, steps, channels)`` -> ``(batch, 1, steps, channels)``, or back with
    ``inverse=True`` (EXPAND_DIMS / RESHAPE in TFLite, as Keras runs a Conv1D)."""

    def __init__(self, inverse: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.inverse = bool(inverse)

    def call(self, inputs):
        return tf.squeeze(inputs, [1]) if self.inverse else tf.expand_dims(inputs, 1)

    def get_config(self):
        return {**super().get_config(), "inverse": self.inverse}


def custom_objects() -> dict:
    return {"StepsAsRows": StepsAsRows}


def conv1d_unfoldable(config: dict, bn_config: dict) -> str | None:
    """Why a Conv1D -> BatchNorm (their Keras configs) cannot be rewritten as a Conv2D ->
    BatchNorm, or None if it can."""
    if _tuple(bn_config.get("axis", -1)) not in ((-1,), (2,)):
        return (f"the BatchNormalization normalizes axis {bn_config['axis']} (use the channel "
                "axis, -1)")
    if config.get("padding") == "causal":
        return "padding='causal' (use 'same' or 'valid', with ZeroPadding1D before it if needed)"
    if config.get("data_format", "channels_last") != "channels_last":
        return f"data_format={config['data_format']!r} (use 'channels_last')"
    return None


def _serialize(layer) -> dict:
    config = _tfmot.serialize_layer(layer, use_legacy_format=True)
    config["name"] = layer.name
    return config


def _tuple(value) -> tuple:
    return (value,) if isinstance(value, int) else tuple(value)


def _reshape_node(name: str, inverse: bool, inputs: list) -> _tfmot.LayerNode:
    return _tfmot.LayerNode(
        _serialize(StepsAsRows(inverse, name=name)),
        input_layers=inputs,
        metadata={"quantize_config": _tfmot.NoOpQuantizeConfig()},
    )


class Conv1DBatchNormToConv2D(_tfmot.Transform):
    """``Conv1D -> BatchNorm [-> tail]`` to ``StepsAsRows -> Conv2D -> BatchNorm [-> tail] ->
    StepsAsRows(inverse)``; ``tail`` is ``"ReLU"`` or ``"Activation"`` (relu) or None."""

    def __init__(self, tail: str | None = None):
        self._tail = tail

    def pattern(self):
        bn = _tfmot.LayerPattern(
            _BATCHNORM, inputs=[_tfmot.LayerPattern("Conv1D", config={"activation": "linear"})]
        )
        if self._tail is None:
            return bn
        config = {"activation": "relu"} if self._tail == "Activation" else {}
        return _tfmot.LayerPattern(self._tail, config=config, inputs=[bn])

    def replacement(self, match_layer):
        tail = match_layer if self._tail else None
        bn = tail.input_layers[0] if tail else match_layer
        conv = bn.input_layers[0]
        nodes = [n for n in (conv, bn, tail) if n is not None]
        if any(n.metadata.get("quantize_config") is not None for n in nodes):
            return match_layer  # the user annotated one of them: leave the chain alone
        config = conv.layer["config"]
        if conv1d_unfoldable(config, bn.layer["config"]) is not None:
            return match_layer  # quantize_model's check names it
        name = config["name"]
        conv2d = keras.layers.Conv2D(
            filters=config["filters"],
            kernel_size=(1,) + _tuple(config["kernel_size"]),
            strides=(1,) + _tuple(config["strides"]),
            padding=config["padding"],
            dilation_rate=(1,) + _tuple(config["dilation_rate"]),
            groups=config.get("groups", 1),
            activation="linear",
            use_bias=config["use_bias"],
            name=name,
            trainable=config.get("trainable", True),
        )
        kernel, *bias = list(conv.weights.values())
        weights = collections.OrderedDict({"kernel:0": np.expand_dims(kernel, 0)})
        if bias:
            weights["bias:0"] = bias[0]
        node = _reshape_node(f"{name}_as_2d", False, [])
        node = _tfmot.LayerNode(
            _serialize(conv2d), weights=weights, input_layers=[node],
            metadata={"quantize_config": None},
        )
        bn_layer = dict(bn.layer, config=dict(bn.layer["config"], axis=-1))  # now of a 4-D tensor
        node = _tfmot.LayerNode(bn_layer, bn.weights, [node], bn.metadata,
                                     bn.names_and_weights)
        if tail is not None:
            node = _tfmot.LayerNode(tail.layer, tail.weights, [node], tail.metadata)
        return _reshape_node(f"{match_layer.layer['config']['name']}_as_1d", True, [node])


def conv1d_batchnorm_transforms() -> list:
    """The rewrites, longest pattern first (as TF-MOT orders its own)."""
    return [Conv1DBatchNormToConv2D(tail) for tail in ("ReLU", "Activation", None)]
