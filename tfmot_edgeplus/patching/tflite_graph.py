"""Plan from a converted model: a .tflite flatbuffer read as a planner graph, and its stage
run in integers for VDPC/VDQS.

:func:`read_tflite_graph` turns the first subgraph of a full-integer .tflite into the
:class:`~tfmot_edgeplus.patching.graph.ModelGraph` the planner reads. Operators map to kinds
``CONV_2D`` -> conv, ``DEPTHWISE_CONV_2D`` -> depthwise, ``PAD`` -> pad, ``ADD`` -> add,
``MAX_POOL_2D`` / ``AVERAGE_POOL_2D`` -> maxpool / avgpool (BN and activations are already
fused by the converter); the first other operator ends the spatial prefix. The stage input is
the int8 model input (or the output of the ``QUANTIZE`` reading a float input). Each tensor
is named after the Keras layer in its TFLite name (``model/block_1_expand_relu/Relu6;...``
-> ``block_1_expand_relu``), made unique with ``_2``, ``_3``...; the ``layer_class`` of an op
is its TFLite operator name.

:class:`TFLiteStageRunner` gives VDPC/VDQS what :class:`~tfmot_edgeplus.patching.vdq.
StageRunner` gives them for a Keras model: the stage's feature maps over the calibration
data, batch by batch. Here they are the int8 model's own values: the stage runs layer by
layer (an 8-bit, 1x1-grid program, :mod:`~tfmot_edgeplus.patching.lower`) in the NumPy
simulator and every map is dequantized (``(q - zp) * scale``).
"""

from __future__ import annotations

import numpy as np

from tfmot_edgeplus.core.conv_reference import conv_geometry
from tfmot_edgeplus.core.intmath import quantize
from tfmot_edgeplus.core.tflite import TFLiteGraph
from tfmot_edgeplus.patching.graph import GraphError, ModelGraph, NoSpatialStageError, SpatialOp
from tfmot_edgeplus.patching.simulate import run_stage
from tfmot_edgeplus.patching.vdq import check_calib_data

__all__ = ["TFLiteStageRunner", "read_tflite_graph"]

_KINDS = {
    "CONV_2D": "conv",
    "DEPTHWISE_CONV_2D": "depthwise",
    "PAD": "pad",
    "ADD": "add",
    "MAX_POOL_2D": "maxpool",
    "AVERAGE_POOL_2D": "avgpool",
}


def _layer_name(raw: str) -> str:
    head = raw.split(";")[0]
    parts = [p for p in head.split("/") if p]
    if len(parts) >= 3:
        return parts[1]
    return parts[-1].split(":")[0] if parts else "tensor"


def read_tflite_graph(model_bytes, name: str = "tflite") -> ModelGraph:
    """The planner graph of a full-integer .tflite (see the module docstring)."""
    g = TFLiteGraph(model_bytes)
    start = g.int8_input()
    shape = g.shape(start)
    if len(shape) != 4 or shape[0] != 1:
        raise NoSpatialStageError(
            f"the model input has shape {shape}; patch-based inference needs an image input "
            "(1, H, W, C)."
        )
    names: dict[int, str] = {}
    used: set[str] = set()

    def name_of(t: int, fallback: str) -> str:
        if t not in names:
            base = _layer_name(g.tensor_name(t)) or fallback
            n, k = base, 2
            while n in used:
                n, k = f"{base}_{k}", k + 1
            used.add(n)
            names[t] = n
        return names[t]

    input_name = name_of(start, "input")
    ops: list[SpatialOp] = []
    tail: list[SpatialOp] = []
    begun = False
    for k, op in enumerate(g.operators):
        op_name = g.op_name(op)
        out = int(op.outputs[0])
        if not begun:
            if start not in [int(i) for i in op.inputs]:
                continue  # the input's QUANTIZE
            begun = True
        ins = [int(i) for i in op.inputs if i >= 0 and g.data(int(i)) is None]
        if any(i not in names for i in ins):
            continue  # not downstream of the input
        kind = _KINDS.get(op_name, "other")
        if tail or kind == "other" or len(g.shape(out)) != 4:
            kind = "other"
        sop = _spatial_op(g, op, op_name, kind, name_of(out, op_name.lower()), ins, names)
        (tail if kind == "other" else ops).append(sop)
    if not ops:
        first = g.op_name(g.operators[0]) if g.operators else None
        raise NoSpatialStageError(
            f"the model has no spatial stage: its first operator ({first}) is not one of "
            f"{', '.join(_KINDS)}, so there is nothing to run patch by patch."
        )
    outputs = tuple(names[int(t)] for t in g.subgraph.outputs if int(t) in names)
    return ModelGraph(
        name=name,
        input_name=input_name,
        input_shape=tuple(shape[1:]),
        ops=tuple(ops),
        tail=tuple(tail),
        outputs=outputs,
    )


def _spatial_op(g, op, op_name, kind, out_name, ins, names) -> SpatialOp:
    out = int(op.outputs[0])
    oshape = g.shape(out)[1:]
    in_shapes = tuple(g.shape(i)[1:] for i in ins)
    common = {
        "name": out_name,
        "kind": kind,
        "layer_class": op_name,
        "inputs": tuple(names[i] for i in ins),
        "output": out_name,
        "input_shapes": in_shapes,
        "output_shape": tuple(oshape),
    }
    opts = op.builtinOptions
    macs = 0
    if op_name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        fshape = g.shape(int(op.inputs[1]))
        kernel = (fshape[1], fshape[2])
        macs = (
            kernel[0] * kernel[1] * fshape[3] * fshape[0]
            if op_name == "CONV_2D"
            else kernel[0] * kernel[1] * fshape[3]
        )
    elif op_name == "FULLY_CONNECTED":
        w = g.shape(int(op.inputs[1]))
        macs = w[0] * w[1]
    if kind in ("conv", "depthwise", "maxpool", "avgpool"):
        if kind in ("maxpool", "avgpool"):
            kernel = (int(opts.filterHeight), int(opts.filterWidth))
            dil = (1, 1)
        else:
            dil = (int(opts.dilationHFactor or 1), int(opts.dilationWFactor or 1))
        stride = (int(opts.strideH), int(opts.strideW))
        padding = "SAME" if int(opts.padding) == g.schema.Padding.SAME else "VALID"
        (oh, ow), _ = conv_geometry(in_shapes[0][:2], kernel, stride, padding, dil)
        if (oh, ow) != tuple(oshape[:2]):
            raise GraphError(
                f"operator {out_name!r} ({op_name}): its output {tuple(oshape)} does not follow "
                f"from its input {in_shapes[0]} with {padding} padding; the .tflite is malformed."
            )
        return SpatialOp(
            **common,
            kernel=kernel,
            stride=stride,
            dilation=dil,
            padding=padding,
            macs_per_pixel=macs,
        )
    if kind == "pad":
        raw = g.data(int(op.inputs[1]))
        dtype = "<i8" if g.type_name(int(op.inputs[1])) == "INT64" else "<i4"
        p = raw.view(dtype).reshape(-1, 2)
        return SpatialOp(
            **common, pads=((int(p[1, 0]), int(p[1, 1])), (int(p[2, 0]), int(p[2, 1])))
        )
    return SpatialOp(**common, macs_per_pixel=macs)


class TFLiteStageRunner:
    """The int8 model's stage maps over ``calib_data``, dequantized (see the module doc).

    Same interface as :class:`~tfmot_edgeplus.patching.vdq.StageRunner`.
    """

    def __init__(self, lowered, planner, split: str, calib_data, batch_size=16):
        self.planner = planner
        self.split = split
        self.maps = planner.stage_tensors(split)[1:]
        self.x = check_calib_data(calib_data, planner.graph.input_shape)
        self.batch_size = int(batch_size)
        self.lowered = lowered
        self._names = [planner.graph.input_name, *self.maps]

    def batches(self):
        L = self.lowered
        zp_in = L.program.tensors[0].zp[1]
        for start in range(0, len(self.x), self.batch_size):
            xq = quantize(self.x[start : start + self.batch_size], L.input_scale, zp_in, np.int8)
            values = run_stage(L.program, L.filters, xq, keep_all=True)
            out = {}
            for i, t in enumerate(self._names[1:], start=1):
                v = values[L.tensor_index[t]]
                scale, zp = (
                    L.tensor_scales[L.tensor_index[t]][1],
                    L.program.tensors[L.tensor_index[t]].zp[1],
                )
                out[t] = (v.astype(np.float32) - zp) * np.float32(scale)
            yield out
