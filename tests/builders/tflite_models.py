"""Test models holding the edgeplus custom ops (test data: not part of the installed package).

:func:`build_conv_mp_model` writes a one-op model whose single operator is the custom
``EDGEPLUS_CONV_MP`` (mixed-precision conv, see ``tflm_ops/tflm/edgeplus_conv_mp.cc``):
opcode CUSTOM with ``customCode="EDGEPLUS_CONV_MP"`` and ``customOptions`` = the
flexbuffer map of :data:`tfmot_edgeplus.conversion.op_schema.CONV_MP`.
:func:`build_patch_stage_model` writes a one-op model of ``EDGEPLUS_PATCH_STAGE`` (a whole
QuantMCU patch stage, see ``tflm_ops/tflm/edgeplus_patch_stage_op.cc``) from a stage program
and its filters, with :func:`tfmot_edgeplus.patching.deploy.patch_stage_options`.

Storage is real low-bit storage: activations and weights at 2/4 bits are packed
(:mod:`tfmot_edgeplus.core.packing`, flat over the NHWC / OHWI / 1HWO index) into
``INT8`` tensors of shape ``[N, H, W, ceil(C * bits / 8)]`` (filter
``[O, KH, KW, ceil(I * bits / 8)]``, depthwise ``[1, KH, KW, ceil(C * bits / 8)]``);
when ``C * bits`` is not a multiple of 8 the packed data starts at byte 0 and the
tensor has a few spare bytes at the end. :func:`pack_activations` /
:func:`unpack_activations` convert between integer NHWC arrays and such tensors.
Scales and zero points are stored as the tensors' quantization parameters, exactly
as the converter does for builtin ops (per-channel filter scales on dimension 0, or
3 for depthwise, as TFLite).

The flatbuffer is written with the TFLite schema objects of the ``tflite-micro`` wheel and
serialized (buffers aligned) by :func:`tfmot_edgeplus.core.tflite.serialize`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from flatbuffers import flexbuffers

from tfmot_edgeplus.conversion import op_schema
from tfmot_edgeplus.core.conv_reference import conv_geometry
from tfmot_edgeplus.core.intmath import check_bits, int_range, narrow_range
from tfmot_edgeplus.core.packing import pack, packed_nbytes, unpack
from tfmot_edgeplus.core.program import StageProgram
from tfmot_edgeplus.core.tflite import schema_py_generated, serialize
from tfmot_edgeplus.patching.deploy import patch_stage_options

__all__ = [
    "ConvMPSpec",
    "build_conv_mp_model",
    "build_patch_stage_model",
    "pack_activations",
    "packed_activation_shape",
    "unpack_activations",
]


def packed_activation_shape(shape: Sequence[int], bits: int) -> tuple[int, ...]:
    """Tensor shape of packed data of logical ``shape`` (last dim = channels) at ``bits``."""
    bits = check_bits(bits)
    shape = tuple(int(d) for d in shape)
    if not shape or any(d <= 0 for d in shape):
        raise ValueError(f"shape must have positive dims, got {shape}")
    return (*shape[:-1], packed_nbytes(shape[-1], bits))


def pack_activations(values: np.ndarray, bits: int) -> np.ndarray:
    """Integer NHWC ``values`` -> the int8 tensor (``packed_activation_shape``) holding them."""
    values = np.asarray(values)
    tensor_shape = packed_activation_shape(values.shape, bits)
    flat = pack(values, bits)
    out = np.zeros(int(np.prod(tensor_shape)), dtype=np.int8)
    out[: flat.size] = flat
    return out.reshape(tensor_shape)


def unpack_activations(tensor: np.ndarray, shape: Sequence[int], bits: int) -> np.ndarray:
    """The int8 tensor of packed data -> integer array of logical ``shape``."""
    shape = tuple(int(d) for d in shape)
    expected = packed_activation_shape(shape, bits)
    tensor = np.asarray(tensor)
    if tensor.shape != expected:
        raise ValueError(
            f"packed tensor has shape {tensor.shape}; a {shape} array at {bits} bits is stored "
            f"as {expected}"
        )
    return unpack(tensor.reshape(-1), bits, int(np.prod(shape))).reshape(shape)


@dataclasses.dataclass(frozen=True)
class ConvMPSpec:
    """Everything an ``EDGEPLUS_CONV_MP`` node needs, validated on construction.

    ``weights``: integer filter, OHWI (conv) or 1HWO (depthwise), within the symmetric
    ``w_bits`` range. ``weight_scales``: one per output channel (or one for all).
    ``padding``: "SAME", "VALID" or explicit ``(pad_h, pad_w)`` (top/left; TFLite's
    output size rule, via :func:`tfmot_edgeplus.core.conv_reference.conv_geometry`).
    ``act_min``/``act_max`` default to the full ``out_bits`` range. ``bias`` counts
    ``2**-bias_frac_bits`` steps of ``input_scale * weight_scale``. ``lean_scratch``: the op
    requests the kernel's lean scratch (False: its default scratch).
    """

    input_shape: tuple[int, int, int, int]
    weights: np.ndarray
    in_bits: int
    w_bits: int
    out_bits: int
    input_scale: float
    input_zero_point: int
    weight_scales: tuple[float, ...]
    output_scale: float
    output_zero_point: int
    bias: np.ndarray | None = None
    stride: int | tuple[int, int] = 1
    padding: str | tuple[int, int] = "SAME"
    dilation: int | tuple[int, int] = 1
    depthwise: bool = False
    act_min: int | None = None
    act_max: int | None = None
    bias_frac_bits: int = 0
    lean_scratch: bool = True

    def __post_init__(self):
        for name in ("in_bits", "w_bits", "out_bits"):
            check_bits(getattr(self, name), name)
        shape = tuple(int(d) for d in self.input_shape)
        if len(shape) != 4 or min(shape) <= 0:
            raise ValueError(
                f"input_shape must be 4 positive dims (N, H, W, C), got {self.input_shape!r}"
            )
        object.__setattr__(self, "input_shape", shape)
        w = np.asarray(self.weights)
        if w.ndim != 4 or w.dtype.kind not in "iu":
            raise ValueError(
                f"weights must be a 4-D integer array (OHWI / 1HWO), got {w.dtype} {w.shape}"
            )
        lo, hi = narrow_range(self.w_bits)
        if w.size and (w.min() < lo or w.max() > hi):
            raise ValueError(
                f"weights must lie in [{lo}, {hi}] for w_bits={self.w_bits}, "
                f"got [{w.min()}, {w.max()}]"
            )
        if self.depthwise:
            if w.shape[0] != 1 or w.shape[3] != shape[3]:
                raise ValueError(
                    f"depthwise weights must be 1HWO with O = input channels {shape[3]}, "
                    f"got {w.shape}"
                )
        elif w.shape[3] != shape[3]:
            raise ValueError(
                f"conv weights must be OHWI with I = input channels {shape[3]}, got {w.shape}"
            )
        object.__setattr__(self, "weights", w.astype(np.int8))
        scales = np.atleast_1d(np.asarray(self.weight_scales, dtype=np.float64))
        if scales.size not in (1, self.out_channels) or not np.all(scales > 0):
            raise ValueError(
                f"weight_scales must be {self.out_channels} (or 1) positive values, "
                f"got {scales.size} values"
            )
        object.__setattr__(self, "weight_scales", tuple(float(s) for s in scales))
        for name in ("input_scale", "output_scale"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name, bits in (
            ("input_zero_point", self.in_bits),
            ("output_zero_point", self.out_bits),
        ):
            zlo, zhi = int_range(bits)
            if not zlo <= int(getattr(self, name)) <= zhi:
                raise ValueError(
                    f"{name}={getattr(self, name)} is outside the {bits}-bit range [{zlo}, {zhi}]"
                )
        if self.bias is not None:
            b = np.asarray(self.bias)
            if b.shape != (self.out_channels,) or b.dtype.kind not in "iu":
                raise ValueError(
                    f"bias must be an integer array of shape ({self.out_channels},), "
                    f"got {b.dtype} {b.shape}"
                )
            if b.size and (b.min() < -(2**31) or b.max() > 2**31 - 1):
                raise ValueError("bias values must fit int32")
            object.__setattr__(self, "bias", b.astype(np.int32))
        self.geometry()  # raises on an impossible geometry

    @property
    def out_channels(self) -> int:
        return int(self.weights.shape[3] if self.depthwise else self.weights.shape[0])

    def geometry(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """``((out_h, out_w), (pad_h, pad_w))``, TFLite's rule."""
        return conv_geometry(
            self.input_shape[1:3], self.weights.shape[1:3], self.stride, self.padding, self.dilation
        )

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        (oh, ow), _ = self.geometry()
        return (self.input_shape[0], oh, ow, self.out_channels)

    def options(self) -> dict:
        """The custom options map (validated against the schema by ``encode``)."""
        _, (ph, pw) = self.geometry()
        sh, sw = _pair(self.stride)
        dh, dw = _pair(self.dilation)
        lo, hi = int_range(self.out_bits)
        return {
            "in_bits": self.in_bits,
            "w_bits": self.w_bits,
            "out_bits": self.out_bits,
            "depthwise": bool(self.depthwise),
            "in_channels": self.input_shape[3],
            "out_channels": self.out_channels,
            "kernel_h": int(self.weights.shape[1]),
            "kernel_w": int(self.weights.shape[2]),
            "stride_h": sh,
            "stride_w": sw,
            "pad_h": ph,
            "pad_w": pw,
            "dilation_h": dh,
            "dilation_w": dw,
            "act_min": lo if self.act_min is None else int(self.act_min),
            "act_max": hi if self.act_max is None else int(self.act_max),
            "bias_frac_bits": int(self.bias_frac_bits),
            "lean_scratch": bool(self.lean_scratch),
        }


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    a, b = v
    return int(a), int(b)


def _tensor(schema, name, shape, type_, buffer, scales=None, zero_points=None, qdim=0):
    t = schema.TensorT()
    t.name = name
    t.shape = [int(d) for d in shape]
    t.type = type_
    t.buffer = buffer
    if scales is not None:
        q = schema.QuantizationParametersT()
        q.scale = [float(s) for s in scales]
        q.zeroPoint = [int(z) for z in zero_points]
        q.quantizedDimension = qdim
        t.quantization = q
    return t


def _buffer(schema, data: bytes | None):
    b = schema.BufferT()
    b.data = None if data is None else np.frombuffer(data, dtype=np.uint8)
    return b


def build_conv_mp_model(
    spec: ConvMPSpec, *, options: dict | bytes | None = None, with_bias: bool | None = None
) -> bytes:
    """A .tflite flatbuffer holding one ``EDGEPLUS_CONV_MP`` node described by ``spec``.

    ``options`` overrides the custom options: a dict is encoded WITHOUT schema
    validation and raw bytes are stored as they are (used to test that the C glue
    rejects bad options); the default is ``op_schema.CONV_MP.encode(spec.options())``.
    ``with_bias`` defaults to ``spec.bias is not None``; with no bias the node has
    two inputs.
    """
    schema = schema_py_generated()
    if options is None:
        custom = op_schema.CONV_MP.encode(spec.options())
    elif isinstance(options, dict):
        custom = bytes(flexbuffers.Dumps(options))
    else:
        custom = bytes(options)
    with_bias = spec.bias is not None if with_bias is None else with_bias

    out_shape = spec.output_shape
    filt = pack(spec.weights, spec.w_bits)
    filt_shape = packed_activation_shape(spec.weights.shape, spec.w_bits)
    filt_bytes = np.zeros(int(np.prod(filt_shape)), dtype=np.int8)
    filt_bytes[: filt.size] = filt
    bias = spec.bias if spec.bias is not None else np.zeros(spec.out_channels, np.int32)

    buffers = [
        _buffer(schema, None),
        _buffer(schema, None),
        _buffer(schema, filt_bytes.tobytes()),
        _buffer(schema, None),
    ]
    tensors = [
        _tensor(
            schema,
            "input",
            packed_activation_shape(spec.input_shape, spec.in_bits),
            schema.TensorType.INT8,
            1,
            [spec.input_scale],
            [spec.input_zero_point],
        ),
        _tensor(
            schema,
            "filter",
            filt_shape,
            schema.TensorType.INT8,
            2,
            spec.weight_scales,
            [0] * len(spec.weight_scales),
            qdim=3 if spec.depthwise else 0,
        ),
        _tensor(
            schema,
            "output",
            packed_activation_shape(out_shape, spec.out_bits),
            schema.TensorType.INT8,
            3,
            [spec.output_scale],
            [spec.output_zero_point],
        ),
    ]
    inputs = [0, 1]
    if with_bias:
        bias_scales = [spec.input_scale * s / 2**spec.bias_frac_bits for s in spec.weight_scales]
        buffers.append(_buffer(schema, np.asarray(bias, dtype="<i4").tobytes()))
        tensors.append(
            _tensor(
                schema,
                "bias",
                [spec.out_channels],
                schema.TensorType.INT32,
                4,
                bias_scales,
                [0] * len(bias_scales),
            )
        )
        inputs.append(3)

    return _one_op_model(
        schema,
        op_schema.CONV_MP.custom_code,
        custom,
        tensors,
        buffers,
        inputs,
        2,
        "tfmot_edgeplus EDGEPLUS_CONV_MP",
    )


def _one_op_model(schema, custom_code, custom, tensors, buffers, inputs, output, description):
    """Serialize a model whose one subgraph runs one custom operator (input = tensor 0)."""
    opcode = schema.OperatorCodeT()
    opcode.builtinCode = schema.BuiltinOperator.CUSTOM
    opcode.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    opcode.customCode = custom_code
    opcode.version = 1

    op = schema.OperatorT()
    op.opcodeIndex = 0
    op.inputs = list(inputs)
    op.outputs = [output]
    op.customOptions = np.frombuffer(custom, dtype=np.uint8) if custom else None
    op.customOptionsFormat = schema.CustomOptionsFormat.FLEXBUFFERS

    subgraph = schema.SubGraphT()
    subgraph.tensors = tensors
    subgraph.inputs = [0]
    subgraph.outputs = [output]
    subgraph.operators = [op]
    subgraph.name = "main"

    model = schema.ModelT()
    model.version = 3
    model.description = description
    model.operatorCodes = [opcode]
    model.subgraphs = [subgraph]
    model.buffers = buffers

    return serialize(model)


def build_patch_stage_model(
    program,
    filters: Sequence[np.ndarray],
    *,
    input_scale: float,
    output_scale: float,
    options: dict | bytes | None = None,
) -> bytes:
    """A .tflite flatbuffer holding one ``EDGEPLUS_PATCH_STAGE`` node running ``program``.

    ``program``: a :class:`~tfmot_edgeplus.core.program.StageProgram`. ``filters[slot]``:
    the UNPACKED integer filter of each weight slot (shape ``program.filter_shape(step)``,
    OHWI / 1HWO, values in the step's ``w_bits`` range), as
    :func:`~tfmot_edgeplus.patching.simulate.run_stage` takes them. Node inputs: the stage
    input ``x`` (int8 ``[1, H, W, C]``, ``input_scale``, the program's tensor-0 zero point),
    then the filters stored at their step's ``w_bits``: ``INT8`` OHWI / 1HWO for 8 bits,
    ``INT4`` (TFLite's packed storage, two per byte, low nibble first) for 4 bits, and for
    2 bits, which no TFLite tensor type holds, an ``INT8`` tensor of shape
    ``[packed_nbytes]`` holding the packed bytes (4 per byte, lowest bits first); only this
    op reads it. Filters carry no quantization parameters and there are no bias tensors: the
    program holds every variant's requantization and bias. Output: the split tensor (int8
    ``[1, H', W', C']``, ``output_scale``, the last tensor's zero point).

    ``options`` overrides the custom options like in :func:`build_conv_mp_model` (a dict is
    encoded WITHOUT schema validation, bytes are stored as they are: tests of the C glue's
    refusals); the default is :func:`patch_stage_options`.
    """
    if not isinstance(program, StageProgram):
        raise TypeError(f"program must be a StageProgram, got {type(program).__name__}")
    for name, v in (("input_scale", input_scale), ("output_scale", output_scale)):
        if not float(v) > 0:
            raise ValueError(f"{name} must be > 0, got {v!r}")
    slots = program.slot_steps()
    if len(filters) != len(slots):
        raise ValueError(f"the program has {len(slots)} weight slots, got {len(filters)} filters")
    schema = schema_py_generated()
    if options is None:
        custom = patch_stage_options(program)
    elif isinstance(options, dict):
        custom = bytes(flexbuffers.Dumps(options))
    else:
        custom = bytes(options)
    first, last = program.tensors[0], program.tensors[-1]
    buffers = [_buffer(schema, None), _buffer(schema, None), _buffer(schema, None)]
    tensors = [
        _tensor(schema, "stage_input", (1, *first.shape), schema.TensorType.INT8, 1,
                [input_scale], [first.zp[0]]),
        _tensor(schema, "split", (1, *last.shape), schema.TensorType.INT8, 2,
                [output_scale], [last.zp[0]]),
    ]  # fmt: skip
    for slot, k in enumerate(slots):
        bits = program.steps[k].w_bits
        shape = program.filter_shape(k)
        w = np.asarray(filters[slot])
        if w.shape != shape or w.dtype.kind not in "iu":
            raise ValueError(
                f"filter of weight slot {slot} (step {k}) must be an integer array of shape "
                f"{shape}, got {w.dtype} {w.shape}"
            )
        lo, hi = int_range(bits)
        if w.size and (w.min() < lo or w.max() > hi):
            raise ValueError(
                f"filter of weight slot {slot} (step {k}) must lie in [{lo}, {hi}] for "
                f"w_bits={bits}, got [{w.min()}, {w.max()}]"
            )
        data = pack(w, bits)
        if bits == 8:
            kind = schema.TensorType.INT8
        elif bits == 4:
            kind = schema.TensorType.INT4
        else:
            kind, shape = schema.TensorType.INT8, (data.size,)
        buffers.append(_buffer(schema, data.tobytes()))
        tensors.append(_tensor(schema, f"filter_{slot}", shape, kind, len(buffers) - 1))
    return _one_op_model(
        schema,
        op_schema.PATCH_STAGE.custom_code,
        custom,
        tensors,
        buffers,
        [0, *range(2, len(tensors))],
        1,
        "tfmot_edgeplus EDGEPLUS_PATCH_STAGE",
    )
