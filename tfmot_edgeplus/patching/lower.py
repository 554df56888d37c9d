"""Lower a :class:`~tfmot_edgeplus.patching.patch_plan.PatchPlan` onto the int8 TFLite model
it will run in: the stage program, its weights and where they sit in the flatbuffer.

::

    lowered = lower.lower(tflite_bytes, plan)
    lowered.program            # StageProgram (core/program.py), ready for C or NumPy
    lowered.filters            # unpacked integer filters per slot (biases: in the program)
    y = simulate.run_stage(lowered.program, lowered.filters, x_int8)

**Matching.** The plan's stage steps (Keras layers with BN/activations fused, see
:mod:`~tfmot_edgeplus.patching.planner`) are matched to the TFLite operators by structure,
not by name: the stage input is the model input (or the output of the ``QUANTIZE`` that
reads a float input), and each step in order is the one operator of its kind
(``conv`` -> ``CONV_2D``, ``depthwise`` -> ``DEPTHWISE_CONV_2D``, ``pad`` -> ``PAD``,
``add`` -> ``ADD``) that reads the tensors its inputs were matched to, with the step's
output shape. Anything else (a step the converter did not fuse, an op kind the patch stage
does not run, another input or output shape) is a :class:`PlanMismatchError` that names the
step. TF-MOT's input ``QuantizeLayer`` is the int8 input itself. A ``ZeroPadding2D`` the
converter folded into the conv after it (SAME padding with the
same top/left rows) has no operator: the conv reads the pad's input and pads it itself, so
the program has no copy of the padded tensor.

**8-bit variant** (outlier patches, and every patch of an 8-bit plan): exactly the int8
model's arithmetic, computed like TFLM's Prepare: conv/depthwise multipliers from
``double(s_in) * double(s_w[c]) / double(s_out)`` (``QuantizeMultiplier``), ADD's
``left_shift = 20`` and ``2 * max(s1, s2)`` rescaling, the fused-activation clamp from the
output scale in float32. Running every patch at 8 bits gives the int8 model's split tensor
bit for bit.

**Low-bit variant** (normal patches, a map at ``b < 8`` bits): the map is quantized on the
real range ``[lo, hi]`` VDQS chose for its normal patches (``plan.ranges``, the least-MSE
clipping of their values; values past it saturate), widened to contain 0:
``scale_b = (hi - lo) / (2**b - 1)`` and ``zp_b = round(qmin_b - lo / scale_b)`` in float32,
clamped to the ``b``-bit range. A map and the pad/pool steps
copying it share one (scale, zero point). Requantization and clamps of every step are then
derived from the variant's scales exactly as for 8 bits.

**Arena.** Every stage tensor except the input and the split tensor gets a region buffer of
the largest size its regions take over the patches (at the patch's bits); buffers of tensors
that are never alive at the same step share bytes (first fit, largest first, over the steps'
liveness). ``arena_bytes`` is their extent.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tfmot_edgeplus.core.intmath import low_bit_params, quantize_multiplier
from tfmot_edgeplus.core.packing import unpack
from tfmot_edgeplus.core.program import (
    KIND_ADD,
    KIND_CONV,
    KIND_DEPTHWISE,
    KIND_PAD,
    StageProgram,
    StageStep,
    StageTensor,
    live_steps,
    region_bytes,
)
from tfmot_edgeplus.core.tflite import TFLiteGraph, TFLiteModelError, activation_range

__all__ = ["Lowered", "PlanMismatchError", "lower"]


class PlanMismatchError(ValueError):
    """A plan is applied to a model it was not made for."""

_STEP_OPS = {
    "conv": ("CONV_2D", KIND_CONV),
    "depthwise": ("DEPTHWISE_CONV_2D", KIND_DEPTHWISE),
    "pad": ("PAD", KIND_PAD),
    "add": ("ADD", KIND_ADD),
}
_ADD_LEFT_SHIFT = 20


@dataclasses.dataclass(frozen=True)
class Lowered:
    """A plan lowered onto a TFLite model (see the module docstring).

    ``op_indices``: the TFLite operators the stage replaces, in step order; ``input_tensor`` /
    ``split_tensor``: TFLite tensor indices of the stage input and output; ``filter_tensors``
    per weight slot; ``input_scale``/``split_scale`` their
    scales; ``tensor_scales[i]`` the (normal, outlier) scales of program tensor ``i``;
    ``tensor_index`` maps the plan's tensor names to program tensors (a folded pad to its
    input's).
    """

    program: StageProgram
    filters: tuple[np.ndarray, ...]
    op_indices: tuple[int, ...]
    input_tensor: int
    split_tensor: int
    filter_tensors: tuple[int, ...]
    tensor_scales: tuple[tuple[float, float], ...]
    tensor_index: dict

    @property
    def input_scale(self) -> float:
        return self.tensor_scales[0][1]

    @property
    def split_scale(self) -> float:
        return self.tensor_scales[-1][1]


# ----------------------------------------------------------------------------- quantization


def _conv_quant(s_in, s_w, s_out, bias8, s_in8) -> np.ndarray:
    """``multiplier, shift, bias`` of a conv variant: the int8 model's bias (scale
    ``s_in8 * s_w``) rescaled to the variant's input scale (unchanged when it is ``s_in8``)."""
    m, sh = [], []
    for sw in np.asarray(s_w, dtype=np.float32):
        real = float(np.float32(s_in)) * float(sw) / float(np.float32(s_out))
        a, b = quantize_multiplier(real)
        m.append(a)
        sh.append(b)
    if float(s_in) == float(s_in8):
        bias = np.asarray(bias8, np.int64)
    else:
        ratio = float(np.float32(s_in8)) / float(np.float32(s_in))
        b = np.asarray(bias8, np.float64) * ratio
        bias = (np.sign(b) * np.floor(np.abs(b) + 0.5)).astype(np.int64)
    bias = np.clip(bias, -(2**31), 2**31 - 1)
    return np.concatenate([np.asarray(m + sh, np.int64), bias]).astype(np.int32)


def _add_quant(s1: float, s2: float, s_out: float) -> np.ndarray:
    s1, s2, so = (float(np.float32(v)) for v in (s1, s2, s_out))
    twice = 2 * max(s1, s2)
    out = [_ADD_LEFT_SHIFT]
    for real in (s1 / twice, s2 / twice, twice / ((1 << _ADD_LEFT_SHIFT) * so)):
        out += list(quantize_multiplier(real))
    return np.asarray(out, dtype=np.int32)


# ----------------------------------------------------------------------------- matching


def _match_ops(g: TFLiteGraph, plan):
    if len(g.model.subgraphs) != 1:
        raise PlanMismatchError(
            f"the model has {len(g.model.subgraphs)} subgraphs; lower reads one"
        )
    try:
        start = g.int8_input()
    except TFLiteModelError as err:
        raise PlanMismatchError(str(err)) from None
    in_shape = g.shape(start)[1:]
    if tuple(in_shape) != tuple(plan.input_shape) or g.shape(start)[0] != 1:
        raise PlanMismatchError(
            f"the plan was made for input shape {tuple(plan.input_shape)}, the TFLite model "
            f"takes {g.shape(start)}. Make a new plan for this model."
        )
    stage = [r for r in plan.layers if r.in_stage]
    names = {plan.input_name: start}
    matched = []
    used: set[int] = set()
    classes = {name: cls for name, cls, _ in plan.signature[1]}
    for r in stage:
        if r.kind == "act" and all(classes.get(o) == "QuantizeLayer" for o in r.ops):
            # TF-MOT's input QuantizeLayer: the int8 model input already is its output.
            matched.append((r, None, None))
            names[r.output] = names[r.inputs[0]]
            continue
        want_op, kind = _STEP_OPS.get(r.kind, (None, None))
        if want_op is None:
            raise PlanMismatchError(
                f"step {r.step!r} is a {r.kind!r}; the patch stage runs conv, depthwise, pad "
                "and add steps. Make a plan with an earlier split (split=...)."
            )
        srcs = [names[t] for t in r.inputs]
        cands = []
        for k in g.consumers(srcs[0]):
            op = g.operators[k]
            if k in used or g.op_name(op) != want_op:
                continue
            ins = [int(i) for i in op.inputs]
            if kind == KIND_ADD:
                if sorted(ins[:2]) != sorted(srcs):
                    continue
            elif ins[0] != srcs[0]:
                continue
            if g.shape(op.outputs[0])[1:] != tuple(r.output_shape):
                continue
            cands.append(k)
        if not cands and kind == KIND_PAD and r is not stage[-1]:
            # The converter folded this ZeroPadding2D into the conv reading it (SAME padding
            # with the same top/left): the conv reads the pad's input directly.
            matched.append((r, None, kind))
            names[r.output] = srcs[0]
            continue
        if len(cands) != 1:
            found = ", ".join(f"{g.op_name(g.operators[k])}" for k in g.consumers(srcs[0]))
            raise PlanMismatchError(
                f"step {r.step!r} ({r.kind}, output {tuple(r.output_shape)}) matches "
                f"{len(cands)} TFLite operators reading {g.tensor_name(srcs[0])!r} (its "
                f"readers: {found or 'none'}). The plan was made for another model, or the "
                "converter did not fuse this step's BN/activation; make a new plan."
            )
        used.add(cands[0])
        matched.append((r, cands[0], kind))
        names[r.output] = int(g.operators[cands[0]].outputs[0])
    return start, matched, names


# ----------------------------------------------------------------------------- lowering


def lower(model_bytes, plan) -> Lowered:
    """Lower ``plan`` onto ``model_bytes`` (the int8 .tflite of the planned model)."""
    g = TFLiteGraph(model_bytes)
    start, matched, names = _match_ops(g, plan)
    folded = [r for r, k, _ in matched if k is None]
    matched = [m for m in matched if m[1] is not None]
    order = [plan.input_name] + [r.output for r, _, _ in matched]
    index = {t: i for i, t in enumerate(order)}
    for r in folded:
        index[r.output] = index[r.inputs[0]]
    units = _units(matched, index)
    n = plan.grid
    outlier = np.asarray(plan.outlier, dtype=bool)

    # scales/zero points per program tensor and variant (0 normal, 1 outlier)
    scales, zps, bits = [], [], []
    for i, t in enumerate(order):
        s8, z8 = g.quant(names[t])
        s8, z8 = float(s8[0]), int(z8[0])
        root = order[units[i]]
        b = 8 if i in (0, len(order) - 1) else int(plan.bits.get(root, 8))
        sb, zb = (s8, z8)
        if b < 8:
            if root not in plan.ranges:
                raise PlanMismatchError(
                    f"the plan puts map {root!r} at {b} bits but gives no value range for it"
                )
            try:
                sb, zb = low_bit_params(b, plan.ranges[root])
            except ValueError as err:
                raise PlanMismatchError(f"map {root!r}: {err}") from err
        scales.append((sb, s8))
        zps.append((zb, z8))
        bits.append((b, 8))

    steps, filters, ftensors = [], [], []
    for k, (r, op_index, kind) in enumerate(matched):
        op = g.operators[op_index]
        out = k + 1
        ins = tuple(index[t] for t in r.inputs)
        if kind == KIND_ADD and int(op.inputs[0]) != names[order[ins[0]]]:
            ins = (ins[1], ins[0])
        opts = op.builtinOptions
        activation = int(getattr(opts, "fusedActivationFunction", 0) or 0)
        try:
            act = tuple(
                activation_range(activation, scales[out][v], zps[out][v], bits[out][v])
                for v in (0, 1)
            )
        except ValueError as err:
            raise PlanMismatchError(f"the patch stage cannot run step {r.step!r}: {err}") from err
        if kind in (KIND_CONV, KIND_DEPTHWISE):
            step, f, ft = _conv_step(g, op, kind, r, ins, out, scales, act, len(filters))
            filters.append(f)
            ftensors.append(ft)
        elif kind == KIND_PAD:
            step = _pad_step(g, op, r, ins)
        else:
            quant = tuple(
                _add_quant(scales[ins[0]][v], scales[ins[1]][v], scales[out][v]) for v in (0, 1)
            )
            step = StageStep(kind=KIND_ADD, inputs=ins, act=act, quant=quant)
        steps.append(step)

    regions = _regions(plan, order)
    tensors, arena = _arena(plan, order, bits, zps, regions, outlier, steps)
    program = StageProgram(tuple(tensors), tuple(steps), n, outlier, regions, arena)
    return Lowered(
        program=program,
        filters=tuple(filters),
        op_indices=tuple(k for _, k, _ in matched),
        input_tensor=start,
        split_tensor=names[order[-1]],
        filter_tensors=tuple(ftensors),
        tensor_scales=tuple(scales),
        tensor_index=dict(index),
    )


def _units(matched, index) -> list[int]:
    """Program tensor -> the index of the map whose bits and scale it shares."""
    root = [0]
    for k, (r, _, kind) in enumerate(matched):
        root.append(root[index[r.inputs[0]]] if kind == KIND_PAD else k + 1)
    return root


def _conv_step(g, op, kind, r, ins, out, scales, act, slot):
    ins_t = [int(i) for i in op.inputs]
    ft = ins_t[1]
    bt = ins_t[2] if len(ins_t) > 2 else -1
    type_name = g.type_name(ft)
    if type_name not in ("INT8", "INT4"):
        raise PlanMismatchError(
            f"step {r.step!r}: filter type {type_name}; the patch stage runs INT8 or INT4 filters"
        )
    w_bits = 8 if type_name == "INT8" else 4
    shape = g.shape(ft)
    raw = g.data(ft)
    if raw is None:
        raise PlanMismatchError(f"step {r.step!r}: the filter is not a constant tensor")
    count = int(np.prod(shape))
    values = unpack(raw.view(np.int8), w_bits, count).reshape(shape).astype(np.int8)
    s_w, z_w = g.quant(ft)
    if np.any(z_w != 0):
        raise PlanMismatchError(f"step {r.step!r}: the filter has nonzero zero points")
    opts = op.builtinOptions
    if kind == KIND_DEPTHWISE and shape[3] != g.shape(ins_t[0])[3]:
        raise PlanMismatchError(
            f"step {r.step!r}: depthwise with depth multiplier "
            f"{shape[3] // g.shape(ins_t[0])[3]}; the patch stage runs multiplier 1"
        )
    cout = shape[0] if kind == KIND_CONV else shape[3]
    if s_w.size == 1:
        s_w = np.full(cout, s_w[0], dtype=np.float32)
    bias = np.zeros(cout, np.int64)
    if bt >= 0:
        braw = g.data(bt)
        if braw is None:
            raise PlanMismatchError(f"step {r.step!r}: the bias is not a constant tensor")
        bias = braw.view("<i4").astype(np.int64)
    in_shape = g.shape(ins_t[0])[1:3]
    kh, kw = shape[1], shape[2]
    stride = (int(opts.strideH), int(opts.strideW))
    dil = (int(opts.dilationHFactor or 1), int(opts.dilationWFactor or 1))
    padding = "SAME" if int(opts.padding) == g.schema.Padding.SAME else "VALID"
    pads = []
    for i_sz, k_sz, s, d in zip(in_shape, (kh, kw), stride, dil, strict=True):
        eff = (k_sz - 1) * d + 1
        o = (i_sz + s - 1) // s if padding == "SAME" else (i_sz + s - eff) // s
        pads.append(max((o - 1) * s + eff - i_sz, 0) // 2)
    quant = tuple(
        _conv_quant(scales[ins[0]][v], s_w, scales[out][v], bias, scales[ins[0]][1]) for v in (0, 1)
    )
    step = StageStep(
        kind=kind,
        inputs=ins,
        kernel=(kh, kw),
        stride=stride,
        pad=tuple(pads),
        dilation=dil,
        w_bits=w_bits,
        slot=slot,
        act=act,
        quant=quant,
    )
    return step, values, ft


def _pad_step(g, op, r, ins):
    pt = int(op.inputs[1])
    raw = g.data(pt)
    if raw is None:
        raise PlanMismatchError(f"step {r.step!r}: PAD with non-constant paddings")
    dtype = "<i8" if g.type_name(pt) == "INT64" else "<i4"
    pads = raw.view(dtype).reshape(-1, 2)
    if pads.shape != (4, 2) or pads[0].any() or pads[3].any() or (pads < 0).any():
        raise PlanMismatchError(
            f"step {r.step!r}: PAD {pads.tolist()} pads more than height and width"
        )
    return StageStep(kind=KIND_PAD, inputs=ins, pad=(int(pads[1, 0]), int(pads[2, 0])))


def _regions(plan, order) -> np.ndarray:
    n = plan.grid
    out = np.zeros((n * n, len(order), 4), dtype=np.int64)
    for i, t in enumerate(order):
        for p, win in enumerate(plan.regions[t]):
            if win is not None:
                out[p, i] = win
    return out


def _arena(plan, order, bits, zps, regions, outlier, steps):
    T = len(order)
    size = [0] * T
    for i in range(1, T - 1):
        for p in range(regions.shape[0]):
            v = int(outlier[p])
            size[i] = max(
                size[i], region_bytes(regions[p, i], plan_channels(plan, order[i]), bits[i][v])
            )
    live = live_steps(T, steps)  # the spec's Buffers rule
    offsets = [-1] * T
    placed: list[tuple[int, int, int]] = []  # (offset, end, tensor)
    for i in sorted(range(1, T - 1), key=lambda i: (-size[i], i)):
        cands = sorted(
            (o, e)
            for o, e, j in placed
            if not (live[j][1] < live[i][0] or live[i][1] < live[j][0])
        )
        off = 0
        for o, e in cands:
            if off + size[i] <= o:
                break
            off = max(off, e)
        offsets[i] = off
        placed.append((off, off + size[i], i))
    arena = max((e for _, e, _ in placed), default=0)
    tensors = []
    for i, t in enumerate(order):
        shape = plan_shape(plan, t)
        tensors.append(
            StageTensor(
                *shape,
                bits=tuple(bits[i]),
                zp=tuple(zps[i]),
                offset=offsets[i] if 0 < i < T - 1 else -1,
                size=size[i] if 0 < i < T - 1 else 0,
            )
        )
    return tensors, int(arena)


def plan_shape(plan, t: str) -> tuple[int, int, int]:
    if t == plan.input_name:
        return tuple(plan.input_shape)
    return next(tuple(r.output_shape) for r in plan.layers if r.output == t)


def plan_channels(plan, t: str) -> int:
    return plan_shape(plan, t)[-1]
