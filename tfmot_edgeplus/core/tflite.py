"""The one way the package reads and edits a .tflite flatbuffer.

:class:`TFLiteGraph` decodes the first subgraph into the pinned TFLM wheel's generated object
API (``schema_py_generated``), with the lookups every reader needs (operator names, shapes,
types, quantization, constant data, producers and consumers). Edits change that object tree;
:func:`finish_model` serializes it (unused tensors, buffers and opcodes dropped) and
:func:`align` re-lays the bytes with the schema's buffer alignment.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

__all__ = [
    "TFLiteGraph",
    "TFLiteModelError",
    "align",
    "custom_opcode",
    "enum_names",
    "finish_model",
    "schema_py_generated",
]


class TFLiteModelError(ValueError):
    """A .tflite flatbuffer lacks what a reader needs; the message names it and the fix."""


def schema_py_generated():
    """The pinned TFLM wheel's generated TFLite schema module (object API)."""
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    return schema


def enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_")}


class TFLiteGraph:
    """The first subgraph of a .tflite flatbuffer as an object tree (the wheel's schema)."""

    def __init__(self, model_bytes):
        if not isinstance(model_bytes, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"model must be the bytes of a .tflite flatbuffer, got {type(model_bytes).__name__}"
            )
        data = bytes(model_bytes)
        if len(data) < 8 or data[4:8] != b"TFL3":
            raise ValueError(
                f"the model ({len(data)} bytes) is not a TFLite flatbuffer (no 'TFL3' at byte 4)"
            )
        schema = schema_py_generated()
        self.schema = schema
        self.model = schema.ModelT.InitFromPackedBuf(data, 0)
        self.subgraph = self.model.subgraphs[0]
        self.op_names = enum_names(schema.BuiltinOperator)
        self.type_names = enum_names(schema.TensorType)

    @property
    def tensors(self):
        return self.subgraph.tensors

    @property
    def operators(self):
        return self.subgraph.operators

    def op_name(self, op) -> str:
        code = self.model.operatorCodes[op.opcodeIndex]
        builtin = max(int(code.builtinCode or 0), int(code.deprecatedBuiltinCode or 0))
        name = self.op_names.get(builtin, str(builtin))
        if name == "CUSTOM" and code.customCode:
            c = code.customCode
            return c.decode() if isinstance(c, bytes) else str(c)
        return name

    def shape(self, t: int) -> tuple[int, ...]:
        return tuple(int(d) for d in self.tensors[t].shape)

    def type_name(self, t: int) -> str:
        return self.type_names.get(self.tensors[t].type, str(self.tensors[t].type))

    def quant(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        q = self.tensors[t].quantization
        if q is None or q.scale is None or len(q.scale) == 0:
            raise TFLiteModelError(
                f"tensor {self.tensor_name(t)!r} has no quantization parameters; lower needs a "
                "full-integer model (TFLiteConverter with a representative dataset, int8 ops)."
            )
        return np.asarray(q.scale, dtype=np.float32), np.asarray(q.zeroPoint, dtype=np.int64)

    def tensor_name(self, t: int) -> str:
        n = self.tensors[t].name
        return n.decode() if isinstance(n, bytes) else str(n)

    def data(self, t: int) -> np.ndarray | None:
        b = self.model.buffers[self.tensors[t].buffer]
        return None if b.data is None or len(b.data) == 0 else np.asarray(b.data, dtype=np.uint8)

    def consumers(self, t: int) -> list[int]:
        return [k for k, op in enumerate(self.operators) if t in list(op.inputs)]

    def producer(self, t: int) -> int | None:
        for k, op in enumerate(self.operators):
            if t in list(op.outputs):
                return k
        return None


def custom_opcode(g: TFLiteGraph, custom_code: str) -> int:
    """Index of the CUSTOM operator code ``custom_code`` in ``g``, added if absent."""
    schema = g.schema
    for k, code in enumerate(g.model.operatorCodes):
        c = code.customCode
        c = c.decode() if isinstance(c, bytes) else c
        if c == custom_code:
            return k
    code = schema.OperatorCodeT()
    code.builtinCode = schema.BuiltinOperator.CUSTOM
    code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = custom_code
    code.version = 1
    g.model.operatorCodes.append(code)
    return len(g.model.operatorCodes) - 1


def finish_model(g: TFLiteGraph) -> bytes:
    """An edited :class:`TFLiteGraph` as .tflite bytes: unused tensors, buffers and opcodes
    dropped, buffers aligned. The one way an edited graph is serialized."""
    import flatbuffers

    sg = g.subgraph
    used = {int(t) for t in sg.inputs} | {int(t) for t in sg.outputs}
    for op in sg.operators:
        used |= {int(t) for t in op.inputs if t >= 0} | {int(t) for t in op.outputs}
        if op.intermediates is not None:
            used |= {int(t) for t in op.intermediates}
    keep = sorted(used)
    remap = {old: new for new, old in enumerate(keep)}

    def m(seq):
        return [remap[int(t)] if t >= 0 else -1 for t in seq]

    sg.tensors = [sg.tensors[t] for t in keep]
    sg.inputs = m(sg.inputs)
    sg.outputs = m(sg.outputs)
    for op in sg.operators:
        op.inputs = m(op.inputs)
        op.outputs = m(op.outputs)
        if op.intermediates is not None:
            op.intermediates = m(op.intermediates)
    # buffers: 0 stays the empty sentinel; keep those still referenced
    refs = sorted({t.buffer for t in sg.tensors} | {0})
    bmap = {old: new for new, old in enumerate(refs)}
    g.model.buffers = [g.model.buffers[b] for b in refs]
    for t in sg.tensors:
        t.buffer = bmap[t.buffer]
    g.model.metadata = [md for md in (g.model.metadata or []) if md.buffer in bmap]
    for md in g.model.metadata:
        md.buffer = bmap[md.buffer]
    g.model.signatureDefs = None
    builder = flatbuffers.Builder(1024)
    builder.Finish(g.model.Pack(builder), file_identifier=b"TFL3")
    return align(bytes(builder.Output()))


def align(model_bytes: bytes) -> bytes:
    """Re-lay the flatbuffer with the schema's buffer alignment (the wheel's C++ aligner;
    the Python flatbuffers builder ignores ``force_align``)."""
    from tflite_micro.tensorflow.lite.micro.tools import tflite_flatbuffer_align_wrapper as aligner

    with tempfile.TemporaryDirectory(prefix="edgeplus_align_") as tmp:
        src = os.path.join(tmp, "in.tflite")
        dst = os.path.join(tmp, "out.tflite")
        with open(src, "wb") as f:
            f.write(model_bytes)
        aligner.align_tflite_model(src, dst)
        with open(dst, "rb") as f:
            return f.read()
