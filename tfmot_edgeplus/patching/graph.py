"""Read a built Keras model into the ops the patch planner reasons about.

:func:`read_graph` walks a tf_keras Functional or Sequential model in topological order and
returns a :class:`ModelGraph`: the **spatial prefix** (:attr:`ModelGraph.ops`), i.e. the
longest run of leading layers the planner understands, and the **tail**
(:attr:`ModelGraph.tail`), every layer after it, kept only for its tensor sizes and MACs.

Spatial op kinds (``SpatialOp.kind``), all NHWC (``channels_last``):

========== ==============================================================================
conv       ``Conv2D`` (any ``groups``; not ``Conv2DTranspose``)
depthwise  ``DepthwiseConv2D`` (any ``depth_multiplier``)
pad        ``ZeroPadding2D``
bn         ``BatchNormalization`` over the channel axis
act        ``ReLU`` (incl. ReLU6 = ``ReLU(max_value=6)``), ``Activation``, ``LeakyReLU``,
           TF-MOT's ``QuantizeLayer`` (all pointwise in space)
add        ``Add`` of same-shaped tensors (residual connections)
maxpool    ``MaxPooling2D``
avgpool    ``AveragePooling2D``
========== ==============================================================================

The first layer of any other kind (``Flatten``, ``Dense``, ``GlobalAveragePooling2D``,
``Reshape``, ``Concatenate``, ``SeparableConv2D``...) ends the prefix, and so does everything
after it in topological order. TF-MOT's ``QuantizeWrapper`` layers are read through to the
layer they wrap (keeping the wrapper's name). Not supported (a clear error): subclassed
models, nested models used as layers, layers shared within the model (called more than
once), multi-output layers, inputs with unknown spatial size, and models with more than
one input.

Tensors are named after the layer that produces them (the model input after its
``InputLayer``); shapes leave out the batch dimension. ``macs_per_pixel`` counts the
multiply-accumulates of one output position (all output channels): ``kh*kw*(C_in/groups)*C_out``
for a conv, ``kh*kw*C_in*depth_multiplier`` for a depthwise conv, ``C_in*units`` for a
``Dense`` in the tail, 0 for every other op (padding, BN, activations, adds and pooling do
no multiply-accumulates once BN is folded into the conv before it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tfmot_edgeplus._compat import check_keras2_model, keras
from tfmot_edgeplus.core.conv_reference import conv_geometry

__all__ = [
    "SPATIAL_KINDS",
    "GraphError",
    "ModelGraph",
    "NoSpatialStageError",
    "SpatialOp",
    "read_graph",
]

SPATIAL_KINDS = ("conv", "depthwise", "pad", "bn", "act", "add", "maxpool", "avgpool")
"""Op kinds of the spatial prefix (see the module docstring)."""

WINDOWED_KINDS = ("conv", "depthwise", "maxpool", "avgpool")
POINTWISE_KINDS = ("bn", "act")


class GraphError(ValueError):
    """The model cannot be read into a planner graph (the message says why and what to do)."""


class NoSpatialStageError(GraphError):
    """The model starts with no spatial op, so there is nothing to run patch by patch."""


@dataclass(frozen=True)
class SpatialOp:
    """One layer of the model as the planner sees it.

    ``inputs``/``output`` are tensor names; ``input_shapes``/``output_shape`` leave out the
    batch dimension (``(H, W, C)`` for spatial ops). ``kernel``/``stride``/``dilation`` are
    ``(1, 1)`` and ``padding`` is ``"VALID"`` where they do not apply; ``pads`` is
    ``((top, bottom), (left, right))`` for ``ZeroPadding2D`` and zeros otherwise. Tail ops
    have ``kind == "other"``.
    """

    name: str
    kind: str
    layer_class: str
    inputs: tuple[str, ...]
    output: str
    input_shapes: tuple[tuple[int, ...], ...]
    output_shape: tuple[int, ...]
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    padding: str = "VALID"
    pads: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))
    macs_per_pixel: int = 0

    @property
    def pixels(self) -> int:
        """Output positions: ``H*W`` for a spatial op, all but the last dim otherwise."""
        return math.prod(self.output_shape[:-1]) if len(self.output_shape) > 1 else 1

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the whole output."""
        return self.macs_per_pixel * self.pixels


@dataclass(frozen=True)
class ModelGraph:
    """A model read by :func:`read_graph`: its spatial prefix and the rest."""

    name: str
    input_name: str
    input_shape: tuple[int, int, int]
    ops: tuple[SpatialOp, ...]
    tail: tuple[SpatialOp, ...]
    outputs: tuple[str, ...]
    shapes: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        shapes = {self.input_name: tuple(self.input_shape)}
        for op in self.ops + self.tail:
            shapes[op.output] = tuple(op.output_shape)
        object.__setattr__(self, "shapes", shapes)

    @property
    def all_ops(self) -> tuple[SpatialOp, ...]:
        return self.ops + self.tail

    def op(self, name: str) -> SpatialOp:
        for op in self.all_ops:
            if op.name == name:
                return op
        raise KeyError(f"no layer named {name!r} in model {self.name!r}")

    def signature(self) -> tuple:
        """``(input shape, ((layer, class, output shape), ...))``: what a plan must match."""
        return (
            tuple(self.input_shape),
            tuple((op.name, op.layer_class, tuple(op.output_shape)) for op in self.all_ops),
        )


# ----------------------------------------------------------------------------- reading


def _pair(v) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    return (int(v[0]), int(v[1]))


def _shape(s, what: str) -> tuple[int, ...]:
    dims = tuple(s)[1:]
    if any(d is None for d in dims):
        raise GraphError(
            f"{what} has shape {tuple(s)} with an unknown dimension; the planner needs fixed "
            "sizes. Build the model with a fixed input shape, e.g. keras.Input((96, 96, 3))."
        )
    return tuple(int(d) for d in dims)


def _unwrap(layer):
    """TF-MOT's QuantizeWrapper(V2) -> the wrapped layer (for its configuration)."""
    if type(layer).__name__.startswith("QuantizeWrapper") and hasattr(layer, "layer"):
        return layer.layer
    return layer


def _channels_last(layer) -> bool:
    return getattr(layer, "data_format", "channels_last") == "channels_last"


def _kind(layer, input_shapes) -> str:
    """The spatial kind of ``layer`` or ``"other"``."""
    L = keras.layers
    spatial_in = all(len(s) == 3 for s in input_shapes) and len(input_shapes) >= 1
    if not spatial_in:
        return "other"
    if isinstance(layer, L.DepthwiseConv2D):
        return "depthwise" if _channels_last(layer) else "other"
    if isinstance(layer, L.Conv2D) and not isinstance(layer, L.Conv2DTranspose):
        return "conv" if _channels_last(layer) else "other"
    if isinstance(layer, L.ZeroPadding2D):
        return "pad" if _channels_last(layer) else "other"
    if isinstance(layer, L.BatchNormalization):
        axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
        return "bn" if list(axis) in ([-1], [3]) else "other"
    if isinstance(layer, (L.ReLU, L.Activation, L.LeakyReLU)):
        return "act"
    if type(layer).__name__ == "QuantizeLayer":
        return "act"
    if isinstance(layer, L.Add):
        return "add" if len(set(input_shapes)) == 1 else "other"
    if isinstance(layer, L.MaxPooling2D):
        return "maxpool" if _channels_last(layer) else "other"
    if isinstance(layer, L.AveragePooling2D):
        return "avgpool" if _channels_last(layer) else "other"
    return "other"


def _model_node(model, layer):
    """The one node through which ``layer`` takes part in ``model``."""
    nodes = [
        node
        for i, node in enumerate(layer._inbound_nodes)
        if f"{layer.name}_ib-{i}" in model._network_nodes
    ]
    if len(nodes) != 1:
        raise GraphError(
            f"layer {layer.name!r} is called {len(nodes)} times in model {model.name!r}; the "
            "planner reads layers used once. Give each call its own layer."
        )
    return nodes[0]


def _make_op(layer, wrapper_name, inputs, input_shapes, output_shape) -> SpatialOp:
    kind = _kind(layer, input_shapes)
    common = {
        "name": wrapper_name,
        "kind": kind,
        "layer_class": type(layer).__name__,
        "inputs": tuple(inputs),
        "output": wrapper_name,
        "input_shapes": tuple(input_shapes),
        "output_shape": tuple(output_shape),
    }
    L = keras.layers
    if kind in WINDOWED_KINDS:
        if kind in ("conv", "depthwise"):
            kernel = _pair(layer.kernel_size)
            stride = _pair(layer.strides)
            dilation = _pair(layer.dilation_rate)
        else:
            kernel = _pair(layer.pool_size)
            stride = _pair(layer.strides)
            dilation = (1, 1)
        padding = str(layer.padding).upper()
        (ih, iw, cin) = input_shapes[0]
        (oh, ow), _ = conv_geometry((ih, iw), kernel, stride, padding, dilation)
        if (oh, ow) != tuple(output_shape[:2]):  # pragma: no cover - Keras and TFLite agree
            raise GraphError(
                f"layer {wrapper_name!r}: TFLite geometry gives output {(oh, ow)} but Keras "
                f"reports {tuple(output_shape[:2])}; padding {padding!r} is not supported."
            )
        cout = output_shape[2]
        if kind == "conv":
            macs = kernel[0] * kernel[1] * (cin // int(getattr(layer, "groups", 1) or 1)) * cout
        elif kind == "depthwise":
            macs = kernel[0] * kernel[1] * cin * int(layer.depth_multiplier)
        else:
            macs = 0
        return SpatialOp(
            **common,
            kernel=kernel,
            stride=stride,
            dilation=dilation,
            padding=padding,
            macs_per_pixel=macs,
        )
    if kind == "pad":
        (t, b), (left, r) = layer.padding
        return SpatialOp(**common, pads=((int(t), int(b)), (int(left), int(r))))
    macs = 0
    if isinstance(layer, L.Dense) and input_shapes:
        macs = int(input_shapes[0][-1]) * int(layer.units)
    return SpatialOp(**common, macs_per_pixel=macs)


def read_graph(model) -> ModelGraph:
    """Read ``model`` (a built tf_keras Functional or Sequential model) into a
    :class:`ModelGraph`. Raises :class:`NoSpatialStageError` if its first layer is not a
    spatial op and :class:`GraphError` for models the planner cannot read."""
    check_keras2_model(model, "model")
    if not model.built or not getattr(model, "_is_graph_network", False):
        raise GraphError(
            f"model {model.name!r} is not built; give it an input shape "
            "(keras.Input(...) or input_shape=...) or call model.build(...) first."
        )
    if len(model.inputs) != 1:
        raise GraphError(
            f"model {model.name!r} has {len(model.inputs)} inputs; the planner reads "
            "single-input image models."
        )
    input_tensor = model.inputs[0]
    input_name = input_tensor._keras_history.layer.name
    input_shape = _shape(input_tensor.shape, f"the input of model {model.name!r}")
    if len(input_shape) != 3:
        raise NoSpatialStageError(
            f"model {model.name!r} takes input of shape {input_shape}; patch-based "
            "inference needs an image input (H, W, C)."
        )

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    produced = {input_name: input_shape}
    pending = []
    for layer in layers:
        if isinstance(layer, keras.Model):
            raise GraphError(
                f"layer {layer.name!r} of model {model.name!r} is itself a model; the planner "
                "reads flat models. Rebuild it flat, e.g. keras.Model(inner.input, "
                "head(inner.output))."
            )
        node = _model_node(model, layer)
        inputs = []
        for inbound, _node_index, tensor_index, _tensor in node.iterate_inbound():
            if tensor_index != 0:
                raise GraphError(
                    f"layer {layer.name!r} reads output {tensor_index} of {inbound.name!r}; "
                    "the planner reads single-output layers only."
                )
            inputs.append(inbound.name)
        outputs = node.output_tensors
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        if len(outputs) != 1:
            raise GraphError(
                f"layer {layer.name!r} returns {len(outputs)} tensors; the planner reads "
                "single-output layers only."
            )
        pending.append((layer, inputs, outputs[0]))

    # Topological order (stable in model.layers order).
    order = []
    while pending:
        for k, (layer, inputs, out) in enumerate(pending):
            if all(name in produced for name in inputs):
                produced[layer.name] = _shape(out.shape, f"the output of layer {layer.name!r}")
                order.append((layer, inputs))
                del pending[k]
                break
        else:  # pragma: no cover - Keras graphs are acyclic
            raise GraphError(f"model {model.name!r}: could not order its layers")

    ops, tail = [], []
    for layer, inputs in order:
        inner = _unwrap(layer)
        op = _make_op(
            inner, layer.name, inputs, [produced[n] for n in inputs], produced[layer.name]
        )
        if tail or op.kind == "other":
            tail.append(op if op.kind == "other" else _as_other(op))
        else:
            ops.append(op)
    if not ops:
        first = order[0][0] if order else None
        raise NoSpatialStageError(
            f"model {model.name!r} has no spatial stage: its first layer "
            f"{first.name if first else None!r} ({type(first).__name__}) is not one of "
            f"{', '.join(SPATIAL_KINDS)}, so there is nothing to run patch by patch."
        )
    outputs = tuple(t._keras_history.layer.name for t in model.outputs)
    return ModelGraph(
        name=model.name,
        input_name=input_name,
        input_shape=input_shape,
        ops=tuple(ops),
        tail=tuple(tail),
        outputs=outputs,
    )


def _as_other(op: SpatialOp) -> SpatialOp:
    """A spatial op after the end of the prefix: kept as a tail op (its MACs stay)."""
    return SpatialOp(
        name=op.name,
        kind="other",
        layer_class=op.layer_class,
        inputs=op.inputs,
        output=op.output,
        input_shapes=op.input_shapes,
        output_shape=op.output_shape,
        macs_per_pixel=op.macs_per_pixel,
    )
