"""The one way the package reads, checks and edits a .tflite flatbuffer.

Reading: :func:`check_model` refuses bytes that are not a sound TFLite flatbuffer (the
``TFL3`` identifier, a decodable model, every tensor / buffer / operator-code index in range,
see :func:`structure_problems`) before anything follows an index; every reader below calls it.

Two views of the same schema, both from the pinned TFLM wheel (nothing else is imported):

- :class:`TFLiteGraph`, the generated object API (``schema_py_generated``) with tensors named
  by index: for readers and for edits that rewire operators. :func:`finish_model` serializes
  it (unused tensors and buffers dropped).
- :func:`read`, TFLM's ``model_editor`` (tensors as objects, operator codes and buffers kept
  in step by its compiler): for edits of tensor data and quantization, and what TFLM's own
  ``decode_insert`` works on. :func:`prune` drops what no operator uses; :func:`build`
  serializes it.

Why two views and not one: TFLM's ``decode_insert`` (the LUT packing of
:mod:`~tfmot_edgeplus.conversion.lowbit`) edits a ``model_editor`` model, and the two
serializers lay a model out differently (``model_editor`` keeps the signature defs and the
metadata, whose buffers it moves last, and drops unused operator codes; :func:`finish_model`
keeps the operator-code table and drops the signature defs, whose indices an edit
invalidates, and the metadata): moving the callers of either to the other would change the
bytes users already have.

Both serializers end in :func:`align`, the schema's buffer alignment. The lookups every
reader needs are here once: :func:`operator_name` (honours ``deprecated_builtin_code``),
:func:`quantization`, :func:`int_values` (the levels of an INT8 / INT4 constant), and
:func:`cut`, the one graph cut (keep the operators between new inputs and outputs).
"""

from __future__ import annotations

import functools
import os
import tempfile
from typing import NamedTuple

import flatbuffers
import numpy as np

from tfmot_edgeplus.core.intmath import int_range, round_half_away
from tfmot_edgeplus.core.packing import unpack_int4

__all__ = [
    "TFLITE_FILE_IDENTIFIER",
    "Quantization",
    "TFLiteGraph",
    "TFLiteModelError",
    "activation_range",
    "align",
    "build",
    "builtin_code",
    "builtin_names",
    "builtin_options",
    "check_model",
    "custom_opcode",
    "cut",
    "describe_received",
    "editor_op_name",
    "enum_names",
    "finish_model",
    "int_values",
    "new_buffer",
    "operator_name",
    "prune",
    "quantization",
    "read",
    "schema_py_generated",
    "serialize",
    "structure_problems",
    "type_name",
]

TFLITE_FILE_IDENTIFIER = b"TFL3"
_VAR_HANDLE = 142  # schema BuiltinOperator.VAR_HANDLE
_FIX = (
    "Pass the bytes returned by tf.lite.TFLiteConverter.convert() or read from a .tflite "
    "file opened in binary mode."
)


class TFLiteModelError(ValueError):
    """A .tflite flatbuffer lacks what a reader needs; the message names it and the fix."""


def schema_py_generated():
    """The pinned TFLM wheel's generated TFLite schema module (object API)."""
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    return schema


def activation_range(activation: int, scale: float, zp: int, bits: int) -> tuple[int, int]:
    """TFLite's ``CalculateActivationRangeQuantized`` of fused ``activation`` (a schema
    ``ActivationFunctionType``) for an output of ``scale``/``zp`` at ``bits`` (float32
    arithmetic): the clamp ``(act_min, act_max)`` in the output's integer domain."""
    qmin, qmax = int_range(bits)
    s = np.float32(scale)

    def q(f):
        return int(zp) + round_half_away(np.float32(f) / s)

    kinds = schema_py_generated().ActivationFunctionType
    if activation == kinds.RELU:
        return max(qmin, q(0.0)), qmax
    if activation == kinds.RELU6:
        return max(qmin, q(0.0)), min(qmax, q(6.0))
    if activation == kinds.RELU_N1_TO_1:
        return max(qmin, q(-1.0)), min(qmax, q(1.0))
    if activation == kinds.NONE:
        return qmin, qmax
    names = {v: k for k, v in vars(kinds).items() if not k.startswith("_")}
    raise ValueError(
        f"fused activation {names.get(activation, activation)} is not supported (NONE, RELU, "
        "RELU6 or RELU_N1_TO_1 are)"
    )


def _model_editor():
    from tflite_micro.tensorflow.lite.micro.compression import model_editor

    return model_editor


def enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_")}


def describe_received(obj) -> str:
    """``obj`` in an error message: its size and first bytes, or its type and value."""
    if isinstance(obj, (bytes, bytearray, memoryview)):
        head = bytes(obj[:16])
        return f"{len(obj)} bytes ({type(obj).__name__}, starting {head!r})"
    return f"{type(obj).__name__} {obj!r:.80}"


# ------------------------------------------------------------------------------- checks


def check_model(data: bytes):
    """Validate a TFLite flatbuffer; return the decoded ``ModelT``. Raise ValueError naming
    what is wrong (what TFLMRunner raises)."""
    if len(data) < 8:
        raise ValueError(
            f"Not a TFLite model: received {describe_received(data)}, too short for a "
            f"flatbuffer header (8 bytes). {_FIX}"
        )
    if data[4:8] != TFLITE_FILE_IDENTIFIER:
        raise ValueError(
            f"Not a TFLite model: received {describe_received(data)}, whose bytes 4..8 are "
            f"{data[4:8]!r} instead of the TFLite identifier {TFLITE_FILE_IDENTIFIER!r}. {_FIX}"
        )
    root = int.from_bytes(data[:4], "little")
    if root + 4 > len(data):
        raise ValueError(
            f"Damaged TFLite model: received {len(data)} bytes but its root table offset is "
            f"{root} (truncated file?). {_FIX}"
        )
    schema = schema_py_generated()
    try:
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))
    except Exception as exc:
        raise ValueError(
            f"Damaged TFLite model: received {len(data)} bytes with the TFL3 identifier that "
            f"cannot be decoded ({type(exc).__name__}: {exc}); the file is probably truncated "
            f"or corrupted. {_FIX}"
        ) from exc
    problems = structure_problems(model, len(data))
    if problems:
        raise ValueError(
            f"Damaged TFLite model ({len(data)} bytes): " + "; ".join(problems[:5]) + f". {_FIX}"
        )
    return model


def structure_problems(model, size: int) -> list[str]:
    """What in a decoded ``ModelT`` (of a ``size``-byte file) points outside the model."""
    problems = []
    if model.version != 3:
        problems.append(f"schema version {model.version}, expected 3")
    if not model.subgraphs:
        return problems + ["no subgraph"]
    n_buffers = len(model.buffers or [])
    n_codes = len(model.operatorCodes or [])
    for b, buf in enumerate(model.buffers or []):
        if buf.offset and buf.offset + buf.size > size:
            problems.append(f"buffer {b} lies outside the file")
    for m, entry in enumerate(model.metadata or []):
        if not 0 <= entry.buffer < n_buffers:
            problems.append(f"metadata {m} points at missing buffer {entry.buffer}")
    for g, sub in enumerate(model.subgraphs):
        n_t = len(sub.tensors or [])
        if sub.operators is None:
            problems.append(f"subgraph {g} has no operator list")
        for t, tensor in enumerate(sub.tensors or []):
            if not 0 <= tensor.buffer < max(n_buffers, 1):
                problems.append(f"subgraph {g} tensor {t} points at missing buffer {tensor.buffer}")
            q = tensor.quantization
            if q is not None and q.detailsType and q.details is None:
                problems.append(f"subgraph {g} tensor {t} has quantization details of type "
                                f"{q.detailsType} but none stored")  # fmt: skip
        io_lists = (("input", sub.inputs), ("output", sub.outputs))
        for kind, idx in io_lists:
            for t in [] if idx is None else list(idx):
                if not 0 <= t < n_t:
                    problems.append(f"subgraph {g} {kind} tensor {t} out of range [0, {n_t})")
        for o, op in enumerate(sub.operators or []):
            if not 0 <= op.opcodeIndex < n_codes:
                problems.append(f"subgraph {g} operator {o} has opcode index {op.opcodeIndex}")
            if op.inputs is None or op.outputs is None:  # TFLM reads both without a check
                problems.append(f"subgraph {g} operator {o} has no input or output list")
            if op.builtinOptionsType and op.builtinOptions is None:
                problems.append(f"subgraph {g} operator {o} has options of type "
                                f"{op.builtinOptionsType} but none stored")  # fmt: skip
            code = model.operatorCodes[op.opcodeIndex] if 0 <= op.opcodeIndex < n_codes else None
            if (  # the wheel's count_resource_variables reads VAR_HANDLE's options
                code is not None
                and builtin_code(code) == _VAR_HANDLE
                and not hasattr(op.builtinOptions, "sharedName")
            ):
                problems.append(f"subgraph {g} operator {o} is a VAR_HANDLE without its options")
            for t in list(op.inputs if op.inputs is not None else []) + list(
                op.outputs if op.outputs is not None else []
            ):
                if not -1 <= t < n_t:
                    problems.append(f"subgraph {g} operator {o} uses tensor {t} of {n_t}")
    if model.subgraphs[0].inputs is None or len(model.subgraphs[0].inputs) == 0:
        problems.append("the main subgraph has no input")
    if model.subgraphs[0].outputs is None or len(model.subgraphs[0].outputs) == 0:
        problems.append("the main subgraph has no output")
    return problems


def _model_bytes(model_bytes) -> bytes:
    """``model_bytes`` checked (:func:`check_model`) as bytes; the errors name the argument."""
    if not isinstance(model_bytes, (bytes, bytearray, memoryview)):
        raise TypeError(
            f"model_bytes must be the bytes of a .tflite flatbuffer, got "
            f"{type(model_bytes).__name__}. Pass converter.convert() or open(path, 'rb').read()."
        )
    data = bytes(model_bytes)
    if len(data) < 8 or data[4:8] != TFLITE_FILE_IDENTIFIER:
        raise TFLiteModelError(
            f"model_bytes ({len(data)} bytes, starting {data[:8]!r}) is not a TFLite flatbuffer "
            "(no 'TFL3' identifier at byte 4). Pass the output of TFLiteConverter.convert()."
        )
    try:  # decodable, every index in range: the readers below trust the indices
        check_model(data)
    except ValueError as err:
        raise TFLiteModelError(f"model_bytes: {err}") from None
    return data


# ------------------------------------------------------------------------------ lookups


def builtin_code(code) -> int:
    """The builtin operator of an ``OperatorCodeT``; honours ``deprecated_builtin_code``
    (the only field old flatbuffers fill)."""
    return max(int(code.builtinCode or 0), int(code.deprecatedBuiltinCode or 0))


@functools.cache
def builtin_names() -> dict[int, str]:
    """Builtin operator code -> name (``"CONV_2D"``), from the schema."""
    return enum_names(schema_py_generated().BuiltinOperator)


@functools.cache
def _tensor_type_names() -> dict[int, str]:
    return enum_names(schema_py_generated().TensorType)


def type_name(tensor) -> str:
    """The TensorType name (``"INT8"``) of a tensor of either view (``TensorT`` or a
    ``model_editor`` tensor)."""
    code = tensor.dtype if hasattr(tensor, "dtype") else tensor.type
    return _tensor_type_names().get(code, str(code))


def operator_name(code) -> str:
    """The operator name of an ``OperatorCodeT``: the builtin's (``"CONV_2D"``) or, for a
    custom operator, its custom code (``"TFLM_DECODE"``)."""
    builtin = builtin_code(code)
    name = builtin_names().get(builtin, str(builtin))
    if name == "CUSTOM" and code.customCode:
        c = code.customCode
        return c.decode() if isinstance(c, bytes) else str(c)
    return name


class Quantization(NamedTuple):
    """A tensor's quantization: ``scales`` (float32), ``zero_points`` (int64, empty when the
    file has none), ``axis`` (the quantized dimension)."""

    scales: np.ndarray
    zero_points: np.ndarray
    axis: int


def quantization(tensor) -> Quantization | None:
    """The quantization of a tensor of either view (``TensorT`` or a ``model_editor``
    tensor), None when it has no scales."""
    q = tensor.quantization
    if q is None:
        return None
    if hasattr(q, "scales"):  # model_editor.Quantization
        scales, zero_points, axis = q.scales, q.zero_points, q.axis
    else:
        scales, zero_points, axis = q.scale, q.zeroPoint, q.quantizedDimension
    scales = [] if scales is None else np.atleast_1d(np.asarray(scales, np.float32))
    if len(scales) == 0:
        return None
    zero_points = [] if zero_points is None else np.atleast_1d(zero_points)
    return Quantization(
        np.asarray(scales, np.float32), np.asarray(zero_points, np.int64), int(axis or 0)
    )


def builtin_options(op):
    """The builtin options object of an operator of either view (``OperatorT`` or a
    ``model_editor`` operator), None when it has none."""
    return (op._fb if hasattr(op, "_fb") else op).builtinOptions


def int_values(data, dtype_name: str, shape, what: str) -> np.ndarray:
    """The integer levels (int8, ``shape``) of an INT8 or INT4 constant (INT4: two per byte,
    low nibble first, as TFLite stores it). ``what`` names the tensor in errors."""
    shape = tuple(int(d) for d in shape)
    n = int(np.prod(shape)) if shape else 1
    raw = np.frombuffer(bytes(data), dtype=np.int8)
    if dtype_name == "INT8":
        if raw.size != n:
            raise TFLiteModelError(
                f"{what}: INT8 buffer has {raw.size} bytes for shape {shape} "
                f"({n} weights); the flatbuffer is corrupt."
            )
        return raw.reshape(shape)
    if dtype_name == "INT4":
        if raw.size != (n + 1) // 2:
            raise TFLiteModelError(
                f"{what}: INT4 buffer has {raw.size} bytes for shape {shape} "
                f"({n} weights, expected {(n + 1) // 2}); the flatbuffer is corrupt."
            )
        return unpack_int4(raw, n).reshape(shape)
    raise TFLiteModelError(f"{what} is {dtype_name}; only INT8 and INT4 constants hold levels.")


def _key(t):
    return int(t) if isinstance(t, (int, np.integer)) else id(t)


def _absent(t) -> bool:
    return t is None or (isinstance(t, (int, np.integer)) and t < 0)


def cut(subgraph, *, inputs=None, outputs=None) -> None:
    """The one graph cut: keep only the operators that compute ``outputs`` (default: the
    subgraph's) from ``inputs`` (default: the subgraph's), in their order, and make those the
    subgraph's inputs and outputs (no operator is kept when the outputs are inputs or
    constants). Tensors are indices (``TFLiteGraph``) or objects (``model_editor``); what no
    operator uses any more is dropped when the model is serialized (:func:`finish_model`) or
    pruned (:func:`prune`)."""
    inputs = list(subgraph.inputs if inputs is None else inputs)
    outputs = list(subgraph.outputs if outputs is None else outputs)
    ops = list(subgraph.operators)
    stop = {_key(t) for t in inputs}
    producers = {_key(t): k for k, op in enumerate(ops) for t in op.outputs}
    needed: set[int] = set()
    frontier = list(outputs)
    seen = set()
    while frontier:
        t = frontier.pop()
        k = _key(t)
        if k in seen or k in stop:
            continue
        seen.add(k)
        p = producers.get(k)
        if p is None:
            continue
        needed.add(p)
        frontier += [i for i in ops[p].inputs if not _absent(i)]
    subgraph.operators = [op for k, op in enumerate(ops) if k in needed]
    subgraph.inputs = inputs
    subgraph.outputs = outputs


# ---------------------------------------------------------------- view 1: object API


class TFLiteGraph:
    """The first subgraph of a .tflite flatbuffer as an object tree (the wheel's schema)."""

    def __init__(self, model_bytes):
        self.model = check_model(_model_bytes(model_bytes))
        self.schema = schema_py_generated()
        self.subgraph = self.model.subgraphs[0]

    @property
    def tensors(self):
        return self.subgraph.tensors

    @property
    def operators(self):
        return self.subgraph.operators

    def op_name(self, op) -> str:
        return operator_name(self.model.operatorCodes[op.opcodeIndex])

    def shape(self, t: int) -> tuple[int, ...]:
        return tuple(int(d) for d in self.tensors[t].shape)

    def type_name(self, t: int) -> str:
        return type_name(self.tensors[t])

    def quant(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        q = quantization(self.tensors[t])
        if q is None:
            raise TFLiteModelError(
                f"tensor {self.tensor_name(t)!r} has no quantization parameters; lower needs a "
                "full-integer model (TFLiteConverter with a representative dataset, int8 ops)."
            )
        return q.scales, q.zero_points

    def tensor_name(self, t: int) -> str:
        n = self.tensors[t].name
        return n.decode() if isinstance(n, bytes) else str(n)

    def data(self, t: int) -> np.ndarray | None:
        b = self.model.buffers[self.tensors[t].buffer]
        return None if b.data is None or len(b.data) == 0 else np.asarray(b.data, dtype=np.uint8)

    def int8_input(self) -> int:
        """The model's int8 input: input 0, or the output of the QUANTIZE reading a float
        input 0."""
        t = int(self.subgraph.inputs[0])
        if self.type_name(t) == "INT8":
            return t
        for k in self.consumers(t):
            op = self.operators[k]
            if self.op_name(op) == "QUANTIZE" and self.type_name(op.outputs[0]) == "INT8":
                return int(op.outputs[0])
        raise TFLiteModelError(
            f"the model input {self.tensor_name(t)!r} is {self.type_name(t)} and no QUANTIZE "
            "turns it into int8; lower needs a full-integer model."
        )

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
    """An edited :class:`TFLiteGraph` as .tflite bytes: unused tensors and buffers dropped
    (so is the metadata, whose buffers no tensor uses), the signature defs dropped, buffers
    aligned. The one way an edited graph is serialized."""
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
    return serialize(g.model)


def serialize(model) -> bytes:
    """A ``ModelT`` (object API) as aligned .tflite bytes."""
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_FILE_IDENTIFIER)
    return align(bytes(builder.Output()))


# ------------------------------------------------------------- view 2: model_editor


def read(model_bytes):
    """``model_bytes``, checked, as TFLM's ``model_editor.Model``."""
    return _model_editor().read(_model_bytes(model_bytes))


def editor_op_name(model, op) -> str:
    """:func:`operator_name` of a ``model_editor`` operator of ``model`` (as read)."""
    return operator_name(model.operator_codes[op.opcode_index]._fb)


def prune(model) -> None:
    """Drop the tensors no operator (nor a subgraph's inputs / outputs) uses, then the
    buffers no tensor uses, from a ``model_editor`` model."""
    for sg in model.subgraphs:
        used = {id(t) for op in sg.operators for t in [*op.inputs, *op.outputs] if t is not None}
        used |= {id(t) for t in [*sg.inputs, *sg.outputs]}
        sg.tensors[:] = [t for t in sg.tensors if id(t) in used]
    _model_editor().prune_buffers(model)


def new_buffer(data: bytes):
    """A ``model_editor`` buffer holding ``data``, for a tensor's ``.buffer``."""
    return _model_editor().Buffer(data=bytes(data))


def build(model) -> bytes:
    """A ``model_editor`` model as aligned .tflite bytes."""
    return align(bytes(model.build()))


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
