"""The calibrated head of a deployed model: its trailing FULLY_CONNECTED layers, in integers.

QCore recalibrates the last layers of the *deployed* integer model. :func:`split_head`
reads them from the converted flatbuffer (the bytes that run in TFLM) and returns

- an :class:`IntHead`: per layer the integer weight levels, int32 bias, per-channel
  requantization (TFLite's multiplier/shift), zero points and fused-activation clamp,
  exactly as TFLM's FULLY_CONNECTED computes them; and
- the *backbone* flatbuffer: the same model cut before the head, whose output is the
  head's int8 input. The backbone never changes on the device, so the QCore and new
  samples are kept as their head inputs (a few dozen bytes each instead of a raw window).

``head.forward(backbone_output)`` is the reference integer forward (the
``edgeplus_conv2d`` reference, a 1x1 convolution per layer), equal bit for bit to TFLM
running the whole model: a test checks it. :func:`write_head` writes calibrated weights
into the flatbuffer in place (same buffer, same storage type, INT4 stays packed; the file
keeps its size) for the device or TFLM.

Supported heads: a chain of FULLY_CONNECTED ops at the end of the graph (optionally with
fused ReLU/ReLU6), int8 activations, INT8 or INT4 weights (4-bit weights stay 4-bit: the
calibration saturates them to [-7, 7]). LUT-compressed 2/3-bit weights are refused with a
message saying so.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field

import numpy as np

from tfmot_edgeplus.core import conv_reference as _ref
from tfmot_edgeplus.core import intmath, tflite
from tfmot_edgeplus.core.packing import pack_int4

__all__ = ["HeadLayer", "IntHead", "split_head", "write_head"]

_RELU = {0: None, 1: "RELU", 3: "RELU6"}  # tflite ActivationFunctionType values we accept


@dataclass
class HeadLayer:
    """One integer FULLY_CONNECTED layer: ``weights`` (out, in) int8 levels at ``bits``."""

    name: str
    weights: np.ndarray
    bits: int
    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray
    input_zero_point: int
    output_zero_point: int
    act_min: int
    act_max: int
    input_scale: float
    weight_scale: np.ndarray
    output_scale: float
    relu: bool

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(int(d) for d in self.weights.shape)

    def params(self) -> _ref.ConvParams:
        p, _ = _ref.make_conv_params(
            (1, 1),
            (1, 1),
            in_bits=8,
            w_bits=self.bits,
            out_bits=8,
            input_zero_point=self.input_zero_point,
            output_zero_point=self.output_zero_point,
            act_min=self.act_min,
            act_max=self.act_max,
        )
        return p

    def forward(self, x: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """int8 (N, in) -> int8 (N, out), with ``weights`` in place of the layer's if given."""
        w = self.weights if weights is None else weights
        out, inp = w.shape
        y = _ref.conv2d(
            np.asarray(x, np.int8).reshape(-1, 1, 1, inp),
            w.reshape(out, 1, 1, inp),
            self.bias,
            self.multiplier,
            self.shift,
            self.params(),
            output_hw=(1, 1),
        )
        return y.reshape(-1, out)


@dataclass
class IntHead:
    """The trailing FULLY_CONNECTED layers of a deployed model (see the module doc)."""

    layers: list[HeadLayer]
    backbone: bytes = field(repr=False)

    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    @property
    def input_size(self) -> int:
        return self.layers[0].shape[1]

    @property
    def num_classes(self) -> int:
        return self.layers[-1].shape[0]

    def weights(self) -> list[np.ndarray]:
        return [layer.weights.copy() for layer in self.layers]

    def activations(self, x, weights=None) -> list[np.ndarray]:
        """``[x, a_1, ..., logits]``: every layer's int8 input and the final output."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.input_size:
            raise ValueError(
                f"head input must be int8 of shape (N, {self.input_size}) (the backbone's "
                f"output), got {x.shape}"
            )
        acts = [x.astype(np.int8)]
        for i, layer in enumerate(self.layers):
            acts.append(layer.forward(acts[-1], None if weights is None else weights[i]))
        return acts

    def forward(self, x, weights=None) -> np.ndarray:
        """int8 logits (N, classes) of the head on backbone outputs ``x``."""
        return self.activations(x, weights)[-1]

    def weight_bytes(self) -> int:
        return int(sum(-(-layer.weights.size * layer.bits // 8) for layer in self.layers))


def _scales(tensor) -> np.ndarray:
    q = tflite.quantization(tensor)
    if q is None:
        raise ValueError(f"tensor {tensor.name!r} is not quantized; convert the model full-integer")
    scales = q.scales
    if not np.all(np.isfinite(scales) & (scales > 0)):
        raise ValueError(f"tensor {tensor.name!r} has a scale <= 0 or not finite: {scales[:4]}")
    return scales


def _zero_point(tensor) -> int:
    zp = tflite.quantization(tensor).zero_points
    return int(zp[0]) if zp.size else 0


def _fc_options(op) -> tuple[int, bool]:
    opts = tflite.builtin_options(op)
    act = int(getattr(opts, "fusedActivationFunction", 0) or 0)
    keep = bool(getattr(opts, "keepNumDims", False))
    return act, keep


def _head_layer(op, name: str) -> HeadLayer:
    x, w = op.inputs[0], op.inputs[1]
    b = op.inputs[2] if len(op.inputs) > 2 else None
    y = op.outputs[0]
    for t, what in ((x, "input"), (y, "output")):
        if tflite.type_name(t) != "INT8":
            raise ValueError(
                f"head layer {name!r}: {what} is {tflite.type_name(t)}; QCore "
                "calibrates full-integer models (int8 activations)"
            )
    if w.buffer is None or len(w.buffer.data) == 0:
        raise ValueError(
            f"head layer {name!r}: its weights are not a plain constant (LUT-compressed 2/3-bit "
            "weights?); on-device calibration needs INT8 or INT4 weights. Convert with "
            "convert(..., lowbit_storage=False) or calibrate a 4/8-bit head."
        )
    wtype = tflite.type_name(w)
    if wtype not in ("INT8", "INT4"):
        raise ValueError(
            f"head layer {name!r}: weights are {wtype}; only INT8 and INT4 are supported"
        )
    levels = tflite.int_values(w.buffer.data, wtype, w.shape, f"head layer {name!r}")
    levels = levels.reshape(int(w.shape[0]), -1)
    bits = 4 if wtype == "INT4" else 8
    act, _ = _fc_options(op)
    if act not in _RELU:
        raise ValueError(
            f"head layer {name!r}: fused activation {act} is not supported (none, RELU, RELU6)"
        )
    s_in, s_w, s_out = _scales(x)[0], _scales(w), _scales(y)[0]
    out = levels.shape[0]
    s_w = np.broadcast_to(s_w, (out,)).astype(np.float32)
    zp_in, zp_out = _zero_point(x), _zero_point(y)
    mult, shift = np.empty(out, np.int32), np.empty(out, np.int32)
    for o in range(out):
        # TFLite: double(float(s_in * s_w)) / double(s_out), then QuantizeMultiplier
        real = float(np.float32(s_in) * np.float32(s_w[o])) / float(s_out)
        mult[o], shift[o] = intmath.quantize_multiplier(real)
    lo, hi = -128, 127
    if _RELU[act] is not None:
        lo = max(lo, zp_out)
    if _RELU[act] == "RELU6":
        hi = min(hi, zp_out + round(6.0 / float(s_out)))
    bias = (
        np.frombuffer(b.buffer.data, np.int32).copy()
        if b is not None and b.buffer is not None
        else np.zeros(out, np.int32)
    )
    return HeadLayer(
        name=name,
        weights=levels.astype(np.int8),
        bits=bits,
        bias=bias,
        multiplier=mult,
        shift=shift,
        input_zero_point=zp_in,
        output_zero_point=zp_out,
        act_min=lo,
        act_max=hi,
        input_scale=float(s_in),
        weight_scale=s_w,
        output_scale=float(s_out),
        relu=_RELU[act] is not None,
    )


def _layer_name(op, index: int) -> str:
    """The Keras layer name inside the output tensor's name (``.../quant_fc/MatMul;...``),
    else ``fc<index>``."""
    match = re.search(r"quant_([A-Za-z0-9_.-]+)/", op.outputs[0].name or "")
    return match.group(1) if match else f"fc{index}"


def _head_ops(model, layers: int):
    """The last ``layers`` FULLY_CONNECTED ops of ``model``'s single subgraph, checked."""
    if len(model.subgraphs) != 1:
        raise ValueError(f"the model has {len(model.subgraphs)} subgraphs; QCore needs one")
    sg = model.subgraphs[0]
    ops = list(sg.operators)
    kinds = [tflite.editor_op_name(model, op) for op in ops]
    trailing = 0
    while trailing < len(ops) and kinds[len(ops) - 1 - trailing] == "FULLY_CONNECTED":
        trailing += 1
    if trailing < layers:
        tail = ", ".join(kinds[-3:])
        raise ValueError(
            f"layers={layers}, but the model ends with {trailing} FULLY_CONNECTED op(s) "
            f"(its last ops: {tail}); choose layers <= {trailing}, or end the model with Dense layers"
        )
    head_ops = ops[len(ops) - layers :]
    for op in head_ops:  # _head_layer reads input, weights and output
        if len(op.inputs) < 2 or op.inputs[0] is None or op.inputs[1] is None or not op.outputs:
            raise ValueError(
                "a trailing FULLY_CONNECTED op lacks its input, weights or output tensor: the "
                "model is damaged"
            )
    for a, b in itertools.pairwise(head_ops):
        if b.inputs[0] is not a.outputs[0]:
            raise ValueError("the trailing FULLY_CONNECTED ops do not form a chain")
    if sg.outputs != [head_ops[-1].outputs[0]]:
        raise ValueError("the model's single output must be the last FULLY_CONNECTED op's output")
    return sg, head_ops


def split_head(model_bytes: bytes, layers: int = 1) -> IntHead:
    """Split a converted full-integer model into its last ``layers`` FULLY_CONNECTED ops
    (the head QCore calibrates) and the backbone before them (see the module doc)."""
    if not isinstance(layers, int) or layers < 1:
        raise ValueError(
            f"layers must be an int >= 1 (how many trailing FC layers), got {layers!r}"
        )
    model = tflite.read(model_bytes)
    sg, head_ops = _head_ops(model, layers)
    head = [_head_layer(op, _layer_name(op, i)) for i, op in enumerate(head_ops)]
    tflite.cut(sg, outputs=[head_ops[0].inputs[0]])
    tflite.prune(model)
    return IntHead(head, tflite.build(model))


def _buffer_span(model_bytes: bytes, index: int) -> tuple[int, int]:
    """Where buffer ``index``'s data lies in ``model_bytes``: ``(start, stop)``."""
    buf = tflite.schema_py_generated().Model.GetRootAsModel(model_bytes, 0).Buffers(index)
    o = buf._tab.Offset(4)  # Buffer.data
    start = buf._tab.Vector(o) if o else 0
    return start, start + (buf._tab.VectorLen(o) if o else 0)


def write_head(model_bytes: bytes, head: IntHead, weights) -> bytes:
    """``model_bytes`` with the head's weights replaced by ``weights`` (one int8 array per
    head layer, shaped like it, in its narrow range), written in place: each tensor keeps
    its buffer and storage type (INT4 stays packed), every other byte stays as it was."""
    if len(weights) != len(head.layers):
        raise ValueError(f"{len(weights)} weight arrays for a head of {len(head.layers)} layers")
    model_bytes = bytes(model_bytes)
    model = tflite.read(model_bytes)
    _, head_ops = _head_ops(model, len(head.layers))
    out = bytearray(model_bytes)
    for op, layer, w in zip(head_ops, head.layers, weights):
        w = np.asarray(w)
        qmax = 2 ** (layer.bits - 1) - 1
        if (
            w.shape != layer.shape
            or w.dtype.kind not in "iu"
            or np.abs(w.astype(np.int64)).max() > qmax
        ):
            raise ValueError(
                f"weights for head layer {layer.name!r} must be integers of shape {layer.shape} "
                f"in [-{qmax}, {qmax}], got {w.dtype} {w.shape}"
            )
        t = op.inputs[1]
        if tuple(int(d) for d in t.shape) != layer.shape:
            raise ValueError(f"head layer {layer.name!r} does not match this model's weights")
        w8 = w.astype(np.int8).reshape(-1)
        data = np.asarray(pack_int4(w8) if layer.bits == 4 else w8).tobytes()
        shared = [
            o for o in model.subgraphs[0].operators if o is not op and any(x is t for x in o.inputs)
        ]
        shared += [
            u for sg in model.subgraphs for u in sg.tensors if u is not t and u.buffer is t.buffer
        ]
        if shared:
            raise ValueError(f"head layer {layer.name!r} shares its weights with another op")
        start, stop = _buffer_span(model_bytes, t.buffer.index)
        if stop - start != len(data):
            raise ValueError(
                f"head layer {layer.name!r}: its weight buffer holds {stop - start} bytes, the "
                f"{layer.bits}-bit weights need {len(data)}; the model is damaged"
            )
        out[start:stop] = data
    return bytes(out)
