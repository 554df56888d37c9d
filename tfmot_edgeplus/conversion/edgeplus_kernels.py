"""Run a converted model's low-bit conv / depthwise / fully connected layers on our kernels.

:func:`place_on_edgeplus` rewrites the full-integer flatbuffer :func:`convert` makes (INT4
filters on their exact levels, nothing LUT-packed yet) so that stock TFLM runs each chosen
``CONV_2D`` / ``DEPTHWISE_CONV_2D`` / ``FULLY_CONNECTED`` as an ``EDGEPLUS_CONV_MP`` custom
op (``tflm_ops/tflm/edgeplus_conv_mp.cc``; options: :data:`op_schema.CONV_MP`). Every other
operator stays builtin.

**Which layers.** A layer is *low-bit* when its weights or an activation it reads or writes
was trained below 8 bits; every low-bit layer runs on our kernels unless they cannot run it
(:func:`refusal` names why: a depth multiplier above 1, a fused activation other than
ReLU/ReLU6/ReLU-1..1, a filter or bias that is not a constant, a fully connected layer on a
tensor that is not ``[N, C]``, a size beyond the options' bounds or the kernel's accumulator
bound, ...). With ``include_int8`` the 8-bit layers run on them too (our int8 kernels beat
CMSIS-NN on the Cortex-M4).

**Bits.** A weight tensor is packed at the fewest bits (2, 4 or 8) that hold all its levels
(a 3-bit layer's levels -3..3 run at 4 bits). An activation tensor trained at ``b < 8`` bits
(``tensor_bits``: the QAT model's quantizer of the layer that writes it, the model input's
for the input, and a max pool's / reshape's / pad's input's for its output) takes TF-MOT's
``b``-bit quantization of its trained range: ``convert`` traced it at 8 bits over that range,
so its int8 scale and zero point give ``lo = (-128 - zp) * s``, ``hi = (127 - zp) * s`` and
:func:`~tfmot_edgeplus.core.intmath.low_bit_params` the ``b``-bit scale and zero point (the
values the Keras model computes, not a finer 8-bit grid). Such a tensor is **packed**
(``[N, H, W, ceil(C * b / 8)]`` int8 bytes, ``b`` = 2 or 4) when our op writes it and only our
ops read it; otherwise it stays an int8 tensor holding the ``b``-bit levels (our op then
clamps them to the ``b``-bit range; a builtin producer clamps to int8's only: a value beyond
the trained range, which the Keras model saturates, then passes through). A tensor trained at
8 bits is never touched. The int32 bias of a layer whose input scale changed is rescaled to it
(rounded: half a unit of the bias scale at most).

**Bias.** A low-bit layer's accumulator step ``in_scale * w_scale`` is coarse (a 4-bit input's
scale is 17 times its 8-bit one), so an integer bias at that step would move outputs by a
level where the Keras model's float bias does not (4 % of one W4A4 depthwise layer's outputs,
measured). On our op the bias counts ``2**-bias_frac_bits`` accumulator steps (the kernel
requantizes ``acc * 2**bias_frac_bits + bias``; :func:`bias_frac_bits`: as many as the
kernel's one-instruction requantization allows) and is rounded from the float bias
(``float_biases``: TF's own BatchNorm folding, in a float conversion), not from the int8
model's: that one is off by up to half an 8-bit-input step, which alone put 0.08 % of a W4A4
depthwise layer's outputs a level off and, carried through the layers, 1.4 % of a W4A4
small_cnn's top-1 answers (measured). A layer whose step did not grow
keeps TFLite's integer bias (0 fraction bits: the int8 path stays TFLite's arithmetic).

**Scratch.** Each of our ops requests either the kernels' default scratch (fastest) or their
lean one (about 2 KB at most, a few per cent more instructions; option ``lean_scratch``).
``scratch="auto"`` (:func:`choose_scratch`) gives an op the default scratch where it costs
no arena and the lean one where the default would raise the arena: TFLM's greedy memory plan
is reproduced in Python (:func:`arena_buffers`, :func:`plan_peak`) with the scratch sizes of
:mod:`tfmot_edgeplus.core.scratch`.
``"fast"`` / ``"lean"`` force one for every op.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from tfmot_edgeplus.conversion.op_schema import CONV_MP
from tfmot_edgeplus.core import tflite
from tfmot_edgeplus.core.conv_reference import (
    MAX_BIAS_FRAC_BITS,
    ConvParams,
    conv_geometry,
    max_kc,
)
from tfmot_edgeplus.core.intmath import low_bit_params
from tfmot_edgeplus.core.packing import pack, packed_nbytes
from tfmot_edgeplus.core.scratch import scratch_bytes

__all__ = [
    "FILTER_OPS",
    "KERNELS",
    "SCRATCH",
    "Placement",
    "arena_buffers",
    "bias_frac_bits",
    "choose_scratch",
    "describe_placement",
    "filter_biases",
    "names_layer",
    "place_on_edgeplus",
    "plan_peak",
    "refusal",
    "scratch_choice",
]

# The values of convert(kernels=...): builtin ops only; low-bit layers on ours; every
# conv / depthwise / fully connected layer on ours.
KERNELS = ("builtin", "edgeplus", "edgeplus_all")
# The values of convert(scratch=...): per op where it costs no arena; all default; all lean.
SCRATCH = ("auto", "fast", "lean")
FILTER_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
# Builtin ops whose output holds values of their input (same scale and zero point).
_PASS_THROUGH = ("MAX_POOL_2D", "RESHAPE", "SQUEEZE", "PAD", "PADV2")
# Builtin ops that requantize to whatever output scale their output tensor has.
_RESCALING = FILTER_OPS + ("ADD", "SUB", "MEAN", "AVERAGE_POOL_2D", "QUANTIZE")
_ACTIVATION_BITS = (2, 4)  # activation bits our kernels read and write packed
_FIELDS = {f.key: f for f in CONV_MP.fields}


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where one conv / depthwise / fully connected layer runs, and why.

    ``layer``: the operator's output tensor name (its first part, which names the Keras
    layer that writes it); ``filter``: its filter tensor's name; ``runs_on``:
    ``"EDGEPLUS_CONV_MP"`` or ``"builtin"``; ``in_bits`` / ``w_bits`` / ``out_bits``: what
    our op reads and writes (8 for an int8 tensor, also one holding ``b``-bit levels);
    ``why``: the reason it stays builtin (empty when it runs on ours); ``scratch``: on ours,
    ``"fast"`` (the kernels' default scratch) or ``"lean"``, and ``scratch_bytes`` its size.
    """

    op_index: int
    op: str
    layer: str
    filter: str
    runs_on: str
    in_bits: int
    w_bits: int
    out_bits: int
    why: str = ""
    scratch: str = ""
    scratch_bytes: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------ reading


def _layer_name(g: tflite.TFLiteGraph, t: int) -> str:
    return g.tensor_name(t).split(";")[0]


def names_layer(tensor_name: str, layer: str) -> bool:
    """Whether converter tensor name ``tensor_name`` names Keras layer ``layer`` (a path
    component ``layer`` or ``quant_layer``, as :mod:`~tfmot_edgeplus.conversion.lowbit`
    matches its keys)."""
    parts = {c for part in tensor_name.split(";") for c in part.split("/")}
    return bool({layer, "quant_" + layer} & parts)


def _filter_levels(g, op) -> tuple[np.ndarray, int] | None:
    """``(levels, step)`` of a filter op's constant INT8 / INT4 filter (None for any other):
    TF stores a 2-bit layer's levels -1, 0, 1 in INT4 as -7, 0, 7 (scale / 7); those come back
    as -1, 0, 1 with ``step`` 7 (the scale is ``step`` times the stored one), others with 1."""
    ft = int(op.inputs[1])
    raw = g.data(ft)
    if raw is None or g.type_name(ft) not in ("INT8", "INT4"):
        return None
    levels = tflite.int_values(raw, g.type_name(ft), g.shape(ft), g.tensor_name(ft))
    if g.type_name(ft) == "INT4" and np.any(levels) and np.all(np.isin(levels, (-7, 0, 7))):
        return levels // 7, 7
    return levels, 1


def _weight_bits(levels: np.ndarray) -> int:
    """The fewest of 2, 4, 8 bits holding every level (symmetric weights)."""
    top = int(np.abs(levels.astype(np.int32)).max()) if levels.size else 0
    return 2 if top <= 1 else 4 if top <= 7 else 8


def _options(op):
    return tflite.builtin_options(op)


def _geometry(g, op, name: str):
    """(in_channels, out_channels, kernel, stride, pad, dilation, depthwise) of a filter op."""
    ins = [int(t) for t in op.inputs]
    fshape = g.shape(ins[1])
    if name == "FULLY_CONNECTED":
        return fshape[1], fshape[0], (1, 1), (1, 1), (0, 0), (1, 1), False
    o = _options(op)
    stride = (int(o.strideH), int(o.strideW))
    dil = (int(o.dilationHFactor or 1), int(o.dilationWFactor or 1))
    padding = "SAME" if int(o.padding) == g.schema.Padding.SAME else "VALID"
    in_hw = g.shape(ins[0])[1:3]
    _, pad = conv_geometry(in_hw, fshape[1:3], stride, padding, dil)
    cin = g.shape(ins[0])[3]
    depthwise = name == "DEPTHWISE_CONV_2D"
    cout = fshape[3] if depthwise else fshape[0]
    return cin, cout, tuple(fshape[1:3]), stride, pad, dil, depthwise


def refusal(g: tflite.TFLiteGraph, op) -> str:
    """Why our kernels cannot run filter operator ``op`` of ``g``, or ``""`` when they can
    (the accumulator bound is checked for 8-bit inputs, whatever the layer reads)."""
    name = g.op_name(op)
    ins = [int(t) for t in op.inputs]
    if name not in FILTER_OPS:
        return f"{name} is not one of {', '.join(FILTER_OPS)}"
    if len(ins) < 2 or len(op.outputs) != 1:
        return f"{name} has {len(ins)} inputs and {len(op.outputs)} outputs"
    x, out = ins[0], int(op.outputs[0])
    for what, t in (("input", x), ("output", out)):
        if g.type_name(t) != "INT8":
            return f"its {what} is {g.type_name(t)}, not INT8"
    if len(ins) > 2 and ins[2] >= 0 and (g.type_name(ins[2]) != "INT32" or g.data(ins[2]) is None):
        return f"its bias is {g.type_name(ins[2])} or not a constant (needs an INT32 constant)"
    o = _options(op)
    act = int(o.fusedActivationFunction or 0)
    acts = g.schema.ActivationFunctionType
    if act not in (acts.NONE, acts.RELU, acts.RELU6, acts.RELU_N1_TO_1):
        return (f"fused activation {tflite.enum_names(acts).get(act, act)} (ours: ReLU, ReLU6, "
                "ReLU-1..1)")
    xs = g.shape(x)
    if name == "FULLY_CONNECTED":
        if len(xs) != 2 or len(g.shape(ins[1])) != 2:
            return (f"input shape {list(xs)} is not [N, C] (ours run a fully connected layer "
                    "as a 1x1 conv on [N, C])")
        if o.keepNumDims:
            return "keep_num_dims is set"
    elif len(xs) != 4:
        return f"input shape {list(xs)} is not 4-D"
    cin, cout, kernel, stride, pad, dil, depthwise = _geometry(g, op, name)
    if depthwise and cout != cin:
        return f"depth multiplier {cout // max(cin, 1)} (ours: 1)"
    for key, value in (("in_channels", cin), ("out_channels", cout), ("kernel_h", kernel[0]),
                       ("kernel_w", kernel[1]), ("stride_h", stride[0]), ("stride_w", stride[1]),
                       ("pad_h", pad[0]), ("pad_w", pad[1]), ("dilation_h", dil[0]),
                       ("dilation_w", dil[1])):
        f = _FIELDS[key]
        if not f.minimum <= value <= f.maximum:
            return f"{key} = {value} is outside the op's [{f.minimum}, {f.maximum}]"
    found = _filter_levels(g, op)
    if found is None:
        return (f"its filter is {g.type_name(ins[1])} or not a constant (needs an INT8/INT4 "
                "constant)")
    _, zw = g.quant(ins[1])
    if np.any(zw != 0):
        return "its filter has nonzero zero points"
    kc = kernel[0] * kernel[1] * (1 if depthwise else cin)
    w_bits = _weight_bits(found[0])
    if kc > max_kc(8, w_bits):
        return (f"K*C = {kc} exceeds the kernel's int32 accumulator bound {max_kc(8, w_bits)} "
                f"at 8-bit inputs and {w_bits}-bit weights")
    return ""


# ------------------------------------------------------------------------- tensor bits


def _tensor_bits(g, layer_bits: dict[str, int], input_bits: int) -> dict[int, int]:
    """Trained bits of every activation tensor below 8 bits (see the module docstring)."""
    bits = {}
    if input_bits < 8:
        bits[g.int8_input()] = input_bits
    for op in g.operators:
        name = g.op_name(op)
        for t in (int(t) for t in op.outputs):
            if g.type_name(t) != "INT8":
                continue
            if name in _PASS_THROUGH:
                b = bits.get(int(op.inputs[0]), 8)
            elif name in _RESCALING:
                b = _named_bits(layer_bits, _layer_name(g, t))
                if b is None and name in FILTER_OPS:  # the model output has lost its name
                    b = _named_bits(layer_bits, _layer_name(g, int(op.inputs[1])))
                b = 8 if b is None else b
            else:
                b = 8
            if b < 8:
                bits[t] = b
    return bits


def _named_bits(layer_bits: dict[str, int], name: str) -> int | None:
    for component in reversed(name.split("/")):
        for key in (component, component.removeprefix("quant_")):
            if key in layer_bits:
                return layer_bits[key]
    return None


def _low_bit_quant(g, t: int, bits: int) -> tuple[float, int]:
    """``bits``-bit scale and zero point of int8 tensor ``t``'s range (module docstring)."""
    s, z = g.quant(t)
    s, z = float(s[0]), int(z[0]) if len(z) else 0
    return low_bit_params(bits, ((-128 - z) * s, (127 - z) * s))


# ------------------------------------------------------------------------------ rewrite


def _set_quant(g, t: int, scale: float, zero_point: int) -> None:
    q = g.tensors[t].quantization
    q.scale = [np.float32(scale)]
    q.zeroPoint = [int(zero_point)]
    q.min = q.max = None


def _new_tensor(g, like: int, *, shape, data: bytes, name: str) -> int:
    schema = g.schema
    buf = schema.BufferT()
    buf.data = np.frombuffer(data, dtype=np.uint8).copy()
    g.model.buffers.append(buf)
    t = schema.TensorT()
    t.shape = [int(d) for d in shape]
    t.type = g.tensors[like].type
    t.buffer = len(g.model.buffers) - 1
    t.name = name
    t.quantization = g.tensors[like].quantization
    g.tensors.append(t)
    return len(g.tensors) - 1


def _packed_filter(g, op, name: str, w_bits: int) -> int:
    ft = int(op.inputs[1])
    levels, step = _filter_levels(g, op)
    if name == "FULLY_CONNECTED":
        levels = levels.reshape(levels.shape[0], 1, 1, levels.shape[1])
    shape = (*levels.shape[:3], packed_nbytes(levels.shape[3], w_bits))
    data = np.zeros(int(np.prod(shape)), np.int8)
    packed = pack(levels, w_bits)
    data[: packed.size] = packed
    new = _new_tensor(g, ft, shape=shape, data=data.tobytes(), name=g.tensor_name(ft))
    g.tensors[new].type = g.schema.TensorType.INT8
    g.tensors[new].quantization = _scaled_quant(g, ft, step)
    return new


def _scaled_quant(g, t: int, factor: float):
    """Tensor ``t``'s (symmetric) quantization with every scale times ``factor``."""
    old = g.tensors[t].quantization
    s, _ = g.quant(t)
    q = g.schema.QuantizationParametersT()
    q.scale = [np.float32(np.float64(v) * factor) for v in s]
    q.zeroPoint = [0] * len(s)
    q.quantizedDimension = int(old.quantizedDimension or 0)
    return q


def _rescaled_bias(g, bt: int, factor: float, exact: np.ndarray | None = None) -> int:
    """A copy of int32 bias ``bt`` whose scale is ``factor`` times its scale (the product of
    a new input scale and filter scale over the old): the values (``exact``, the float bias
    it was rounded from, when given) divided by the new scale, rounded half away from zero."""
    b = g.data(bt).view("<i4").astype(np.float64)
    if exact is not None:
        b = exact / np.asarray(g.quant(bt)[0], np.float64)
    b = b / factor
    b = np.clip(np.sign(b) * np.floor(np.abs(b) + 0.5), -(2**31), 2**31 - 1).astype("<i4")
    new = _new_tensor(g, bt, shape=g.shape(bt), data=b.tobytes(), name=g.tensor_name(bt))
    g.tensors[new].quantization = _scaled_quant(g, bt, factor)
    return new


def filter_biases(float_model_bytes: bytes) -> list[np.ndarray | None]:
    """The float32 bias of every conv / depthwise / fully connected operator of a float
    conversion of the same QAT model (TFLite's own BatchNorm folding), in graph order; None
    for an operator without a constant float bias."""
    g = tflite.TFLiteGraph(float_model_bytes)
    found = []
    for op in g.operators:
        if g.op_name(op) not in FILTER_OPS:
            continue
        bt = int(op.inputs[2]) if len(op.inputs) > 2 else -1
        raw = g.data(bt) if bt >= 0 and g.type_name(bt) == "FLOAT32" else None
        found.append(None if raw is None else raw.view("<f4").astype(np.float64))
    return found


def _exact_bias(g, bt: int, candidate: np.ndarray | None) -> np.ndarray | None:
    """``candidate`` (a float bias of :func:`filter_biases`) when int32 bias ``bt`` is its
    rounding (the same layer), else None."""
    if candidate is None or g.data(bt) is None or candidate.shape != (g.shape(bt)[0],):
        return None
    steps = candidate / np.asarray(g.quant(bt)[0], np.float64)
    return candidate if np.all(np.abs(steps - g.data(bt).view("<i4")) <= 0.5 + 1e-3) else None


def bias_frac_bits(factor: float, kc: int, in_bits: int, w_bits: int,
                   bias_steps: float = 0.0) -> int:
    """Fraction bits of the bias of a layer whose accumulator step grew ``factor``-fold from
    the int8 model's (its K*C ``kc``, the bits our op reads, its largest bias ``bias_steps``
    in new accumulator steps): the most, up to ``MAX_BIAS_FRAC_BITS``, with which ``(max|acc|
    + bias_steps) * 2**bits < 2**30`` (the kernel's one-instruction requantization, and no
    int32 overflow); 0 when the step did not grow (TFLite's integer bias)."""
    if factor <= 1.0:
        return 0
    bound = kc * ((1 << in_bits) - 1) * (1 << (w_bits - 1)) + math.ceil(bias_steps)
    bits = MAX_BIAS_FRAC_BITS
    while bits > 0 and bound << bits >= 1 << 30:
        bits -= 1
    return bits


def _conv_options(g, op, geometry, placement: Placement, out_levels: int, frac: int) -> dict:
    """The EDGEPLUS_CONV_MP options of ``op`` (of :func:`_geometry` ``geometry``) but
    ``lean_scratch``: its output holds ``out_levels``-bit levels (the fused activation's clamp
    is taken in that range); its bias counts ``2**-frac`` accumulator steps."""
    cin, cout, kernel, stride, pad, dil, depthwise = geometry
    out = int(op.outputs[0])
    s, z = g.quant(out)
    activation = int(_options(op).fusedActivationFunction or 0)
    act_min, act_max = tflite.activation_range(activation, float(s[0]), int(z[0]), out_levels)
    return {
        "in_bits": placement.in_bits, "w_bits": placement.w_bits,
        "out_bits": placement.out_bits, "depthwise": depthwise, "in_channels": cin,
        "out_channels": cout, "kernel_h": kernel[0], "kernel_w": kernel[1],
        "stride_h": stride[0], "stride_w": stride[1], "pad_h": pad[0], "pad_w": pad[1],
        "dilation_h": dil[0], "dilation_w": dil[1], "act_min": act_min, "act_max": act_max,
        "bias_frac_bits": frac,
    }


def _custom_op(g, op, options: dict, filt: int, bias: int):
    """The EDGEPLUS_CONV_MP operator replacing ``op``, with ``options`` (all keys)."""
    new = g.schema.OperatorT()
    new.opcodeIndex = tflite.custom_opcode(g, CONV_MP.custom_code)
    new.inputs = [int(op.inputs[0]), filt] + ([bias] if bias >= 0 else [])
    new.outputs = [int(op.outputs[0])]
    new.customOptions = list(CONV_MP.encode(options))
    new.customOptionsFormat = g.schema.CustomOptionsFormat.FLEXBUFFERS
    return new


# ------------------------------------------------------------------------------ scratch

_ITEM_BYTES = {"INT8": 1, "UINT8": 1, "BOOL": 1, "INT16": 2, "FLOAT16": 2, "INT32": 4,
               "FLOAT32": 4, "INT64": 8}
_ARENA_ALIGN = 16  # TFLM's MicroArenaBufferAlignment


def _aligned(nbytes: int) -> int:
    return -(-nbytes // _ARENA_ALIGN) * _ARENA_ALIGN


def arena_buffers(g: tflite.TFLiteGraph) -> list[tuple[int, int, int]]:
    """``(bytes, first, last)`` of every activation tensor of ``g`` as TFLM's
    ``AllocationInfoBuilder`` plans it: the model inputs live from time 0, operator ``k`` runs
    at time ``k + 1``, a tensor lives from the operator writing it to the last reading it (a
    model output: to the end); bytes rounded up to the arena's 16-byte alignment."""
    n = len(g.operators)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for t in (int(t) for t in g.subgraph.inputs):
        first[t] = last[t] = 0
    for k, op in enumerate(g.operators, start=1):
        for t in (int(t) for t in op.outputs):
            first.setdefault(t, k)
        for t in (int(t) for t in op.inputs if t >= 0):
            if g.data(t) is None:
                first.setdefault(t, k)
                last[t] = k
        for t in (int(t) for t in op.outputs):
            last[t] = max(last.get(t, k), k)
    for t in (int(t) for t in g.subgraph.outputs):
        last[t] = n + 1
    return [(_aligned(math.prod(g.shape(t)) * _ITEM_BYTES.get(g.type_name(t), 4)), first[t],
             last[t]) for t in sorted(first)]


def plan_peak(buffers: list[tuple[int, int, int]]) -> int:
    """The arena bytes TFLM's ``GreedyMemoryPlanner`` gives ``buffers`` (``(bytes, first,
    last)``, in TFLM's order: the tensors by index, then the scratch buffers by operator):
    largest first (equal sizes: the later one first), each at the lowest offset clear of the
    placed buffers whose lifetimes overlap its own. It reproduces the host TFLM's
    non-persistent arena of the models converted here, our ops' scratch included; builtin
    ops' scratch is not modeled (TFLM's reference kernels take none, CMSIS-NN's on the board
    a few hundred bytes)."""
    placed: list[tuple[int, int, int, int]] = []  # (offset, bytes, first, last)
    # TFLM lists the buffers last to first, then sorts them by size (stable)
    for size, first, last in sorted(reversed(buffers), key=lambda b: -b[0]):
        offset = 0
        for o, ps, pf, pl in sorted(placed):
            if pl < first or pf > last:
                continue
            if o - offset >= size:
                break
            offset = max(offset, o + ps)
        placed.append((offset, size, first, last))
    return max((o + size for o, size, _, _ in placed), default=0)


def scratch_choice(scratch: str) -> str:
    """``scratch`` if it is one of :data:`SCRATCH`, else a ValueError naming it and them."""
    if scratch not in SCRATCH:
        raise ValueError(
            f"scratch must be one of {', '.join(map(repr, SCRATCH))}, got {scratch!r}: "
            "'auto' (the kernels' default scratch where it costs no arena, the lean one where "
            "it would raise the peak), 'fast' (default everywhere) or 'lean' (lean everywhere).")
    return scratch


def choose_scratch(buffers: list[tuple[int, int, int]], sizes: dict[int, tuple[int, int]],
                   scratch: str = "auto") -> dict[int, bool]:
    """Whether each of our ops (operator index -> its ``(default, lean)`` scratch bytes) takes
    the lean scratch. ``"auto"``: from every op lean, each op in graph order takes its default
    scratch when the planned arena (:func:`plan_peak` of the activation ``buffers``,
    :func:`arena_buffers`, and the scratch buffers) stays at the all-lean one; ``"fast"`` /
    ``"lean"``: all default / all lean."""
    scratch_choice(scratch)
    if scratch != "auto":
        return {k: scratch == "lean" for k in sizes}
    lean = dict.fromkeys(sizes, True)

    def peak() -> int:
        return plan_peak(buffers + [(_aligned(sizes[k][lean[k]]), k + 1, k + 1) for k in sizes])

    least = peak()
    for k in sorted(sizes):
        lean[k] = False
        if peak() > least:
            lean[k] = True
    return lean


def _scratch_sizes(g, op, options: dict) -> tuple[int, int]:
    """``(default, lean)`` scratch bytes the kernel asks for our op of ``options``."""
    o = options
    params = ConvParams(
        stride_h=o["stride_h"], stride_w=o["stride_w"], pad_h=o["pad_h"], pad_w=o["pad_w"],
        dilation_h=o["dilation_h"], dilation_w=o["dilation_w"], act_min=o["act_min"],
        act_max=o["act_max"], in_bits=o["in_bits"], w_bits=o["w_bits"],
        out_bits=o["out_bits"], bias_frac_bits=o["bias_frac_bits"])

    def nhwc(t: int, c: int) -> tuple[int, int, int, int]:
        shape = g.shape(t)
        return (shape[0], 1, 1, c) if len(shape) == 2 else (*shape[:3], c)

    cin, cout, kh, kw = o["in_channels"], o["out_channels"], o["kernel_h"], o["kernel_w"]
    shapes = (nhwc(int(op.inputs[0]), cin),
              (1, kh, kw, cout) if o["depthwise"] else (cout, kh, kw, cin),
              nhwc(int(op.outputs[0]), cout))
    return tuple(scratch_bytes(params, *shapes, depthwise=o["depthwise"], lean=lean)
                 for lean in (False, True))


def place_on_edgeplus(model_bytes: bytes, layer_bits: dict[str, int], input_bits: int = 8,
                      *, include_int8: bool = False, pack_activations: bool = True,
                      scratch: str = "auto",
                      float_biases: list[np.ndarray | None] | None = None,
                      ) -> tuple[bytes, list[Placement]]:
    """Put the low-bit layers of ``model_bytes`` on ``EDGEPLUS_CONV_MP`` (module docstring).

    ``layer_bits``: trained activation bits by Keras layer name (the applied quantizer of the
    layer that writes a tensor); ``input_bits``: the model input's. ``pack_activations=False``
    keeps every tensor in int8 (the same values: a check that packing is lossless).
    ``scratch``: ``"auto"``, ``"fast"`` or ``"lean"`` (:func:`choose_scratch`).
    ``float_biases``: :func:`filter_biases` of the model's float conversion, the biases a
    layer whose accumulator step grew is rescaled from (each where the int8 bias is its
    rounding; the int8 bias otherwise). Returns the
    new model and one :class:`Placement` per conv / depthwise / fully connected operator, in
    graph order.
    """
    scratch_choice(scratch)
    g = tflite.TFLiteGraph(model_bytes)
    bits = _tensor_bits(g, layer_bits, input_bits)
    old_scale = {t: float(g.quant(t)[0][0]) for t in bits}
    for t, b in bits.items():
        _set_quant(g, t, *_low_bit_quant(g, t, b))

    # Which filter ops run on ours.
    placements: dict[int, Placement] = {}
    for k, op in enumerate(g.operators):
        name = g.op_name(op)
        if name not in FILTER_OPS:
            continue
        x, out = int(op.inputs[0]), int(op.outputs[0])
        found = _filter_levels(g, op)
        w_bits = _weight_bits(found[0]) if found is not None else 8
        low = w_bits < 8 or x in bits or out in bits
        why = refusal(g, op)
        if not low and not include_int8:
            why = "weights and activations at 8 bits (builtin int8)"
        placements[k] = Placement(k, name, _layer_name(g, out), g.tensor_name(int(op.inputs[1])),
                                  "builtin" if why else CONV_MP.custom_code, 8, w_bits, 8, why)
    geometry = {k: _geometry(g, g.operators[k], p.op) for k, p in placements.items() if not p.why}
    ours = {int(g.operators[k].outputs[0]) for k, p in placements.items() if not p.why}
    graph_outputs = {int(t) for t in g.subgraph.outputs}

    def packed_bits(t: int) -> int:
        if (not pack_activations or t not in ours or t in graph_outputs
                or bits.get(t, 8) not in _ACTIVATION_BITS):
            return 8
        readers = g.consumers(t)
        if all(k in placements and not placements[k].why
               and int(g.operators[k].inputs[0]) == t for k in readers):
            return bits[t]
        return 8

    storage = {t: packed_bits(t) for t in ours}
    for t, b in storage.items():
        if b < 8:
            shape = list(g.shape(t))
            shape[-1] = packed_nbytes(shape[-1], b)
            g.tensors[t].shape = shape
            if g.tensors[t].shapeSignature is not None:
                g.tensors[t].shapeSignature = shape

    ours_ops: dict[int, tuple] = {}  # operator index -> (options, filter, bias)
    if float_biases is not None and len(float_biases) != len(placements):
        float_biases = None  # not the same graph
    for n, k in enumerate(sorted(placements)):
        op = g.operators[k]
        name = g.op_name(op)
        x = int(op.inputs[0])
        p = placements[k]
        step = 1 if p.why else _filter_levels(g, op)[1]
        factor = step * (float(g.quant(x)[0][0]) / old_scale[x] if x in bits else 1.0)
        bias = int(op.inputs[2]) if len(op.inputs) > 2 else -1
        has_bias = bias >= 0 and g.data(bias) is not None
        frac = 0
        if not p.why:
            out = int(op.outputs[0])
            p = placements[k] = dataclasses.replace(p, in_bits=storage.get(x, 8),
                                                    out_bits=storage[out])
            cin, _, kernel, *_, depthwise = geometry[k]
            kc = kernel[0] * kernel[1] * (1 if depthwise else cin)
            steps = float(np.abs(g.data(bias).view("<i4")).max()) / factor if has_bias else 0.0
            frac = bias_frac_bits(factor, kc, p.in_bits, p.w_bits, steps)
        if has_bias and factor != 1.0:
            exact = _exact_bias(g, bias, float_biases[n]) if float_biases else None
            bias = _rescaled_bias(g, bias, factor / 2**frac, exact)
            op.inputs = [*op.inputs[:2], bias, *op.inputs[3:]]
        if p.why:
            continue
        options = _conv_options(g, op, geometry[k], p, bits.get(out, 8), frac)
        ours_ops[k] = (options, _packed_filter(g, op, name, p.w_bits), bias)

    sizes = {k: _scratch_sizes(g, g.operators[k], o) for k, (o, _, _) in ours_ops.items()}
    lean = choose_scratch(arena_buffers(g), sizes, scratch)
    for k, (options, filt, bias) in ours_ops.items():
        options["lean_scratch"] = lean[k]
        g.operators[k] = _custom_op(g, g.operators[k], options, filt, bias)
        placements[k] = dataclasses.replace(placements[k], scratch="lean" if lean[k] else "fast",
                                            scratch_bytes=sizes[k][lean[k]])
    return tflite.finish_model(g), [placements[k] for k in sorted(placements)]


# ------------------------------------------------------------------------------- report


def describe_placement(model_bytes: bytes) -> list[Placement]:
    """Where each conv / depthwise / fully connected layer of ``model_bytes`` runs: our
    ``EDGEPLUS_CONV_MP`` ops with the bits and the scratch their options give, builtin ones with why
    (:func:`refusal`, or: our kernels could run it but it is an int8 layer)."""
    g = tflite.TFLiteGraph(model_bytes)
    rows = []
    for k, op in enumerate(g.operators):
        name = g.op_name(op)
        out = int(op.outputs[0]) if op.outputs is not None and len(op.outputs) else -1
        if name == CONV_MP.custom_code:
            o = CONV_MP.decode(bytes(op.customOptions))
            nbytes = _scratch_sizes(g, op, o)[o["lean_scratch"]]
            rows.append(Placement(k, name, _layer_name(g, out), g.tensor_name(int(op.inputs[1])),
                                  name, o["in_bits"], o["w_bits"], o["out_bits"],
                                  scratch="lean" if o["lean_scratch"] else "fast",
                                  scratch_bytes=nbytes))
        elif name in FILTER_OPS:
            found = _filter_levels(g, op)
            w_bits = _weight_bits(found[0]) if found is not None else 8
            why = refusal(g, op) or (
                "an int8 layer our kernels could run (kernels='builtin' or 'edgeplus')")
            rows.append(Placement(k, name, _layer_name(g, out), g.tensor_name(int(op.inputs[1])),
                                  "builtin", 8, w_bits, 8, why))
    return rows
