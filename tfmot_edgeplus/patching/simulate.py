"""NumPy execution of a patch-stage program, bit-exact with the C ``edgeplus_patch_stage``.

::

    y = simulate.run_stage(program, filters, x)   # x (N, H, W, C) int8

``filters[slot]`` are the *unpacked* integer filters of the program's weight slots (OHWI
for conv, 1HWO for depthwise; biases are in the program, per variant). It runs
every patch of the program in order exactly as the spec in
:mod:`~tfmot_edgeplus.core.program` says, on a batch of ``N`` inputs at once (each
sample runs the same program), and returns the split tensor (``(N, H_T, W_T, C_T)`` int8).
Region buffers hold unpacked integers here; packing is lossless, so the values match the
C's packed buffers. Convs use :mod:`~tfmot_edgeplus.core.conv_reference` (written after
TFLite's formulas); add is TFLite's int8 ADD arithmetic at the variant's bits.
"""

from __future__ import annotations

import numpy as np

from tfmot_edgeplus.core import conv_reference as reference
from tfmot_edgeplus.core import intmath
from tfmot_edgeplus.core.program import (
    KIND_ADD,
    KIND_CONV,
    KIND_DEPTHWISE,
    KIND_PAD,
    StageProgram,
)

__all__ = ["add", "run_stage"]


def add(a, b, zp_a, zp_b, zp_out, quant, act) -> np.ndarray:
    """TFLite's quantized ADD: ``quant = (left_shift, m1, s1, m2, s2, m_out, s_out)``."""
    left, m1, s1, m2, s2, mo, so = (int(v) for v in quant)
    mq = intmath.multiply_by_quantized_multiplier
    xa = mq((np.asarray(a, np.int64) - zp_a) << left, m1, s1)
    xb = mq((np.asarray(b, np.int64) - zp_b) << left, m2, s2)
    y = mq(intmath.wrap32(xa + xb), mo, so) + zp_out
    return np.clip(y, act[0], act[1]).astype(np.int8)


def _check_inputs(program: StageProgram, filters, x) -> np.ndarray:
    x = np.asarray(x)
    t0 = program.tensors[0]
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1:] != t0.shape:
        raise ValueError(f"x must have shape (N, {t0.h}, {t0.w}, {t0.c}), got {x.shape}")
    if x.dtype != np.int8:
        raise ValueError(f"x must be int8 (the quantized stage input), got {x.dtype}")
    slots = program.slot_steps()
    if len(filters) != len(slots):
        raise ValueError(f"the program has {len(slots)} weight slots, got {len(filters)} filters")
    for slot, k in enumerate(slots):
        want = program.filter_shape(k)
        if tuple(np.shape(filters[slot])) != want:
            raise ValueError(
                f"filter of slot {slot} (step {k}) must have shape {want}, "
                f"got {np.shape(filters[slot])}"
            )
    return x


def run_stage(program: StageProgram, filters, x, keep_all: bool = False):
    """Run ``program`` on ``x`` (``(N, H, W, C)`` or ``(H, W, C)`` int8); see the module doc.

    ``keep_all=True`` (a 1x1-grid program only) returns every program tensor instead, whole
    (positions no step computed hold the tensor's zero point): the stage run layer by layer.
    """
    x = _check_inputs(program, filters, x)
    T = len(program.tensors)
    if keep_all and program.grid != 1:
        raise ValueError(
            f"keep_all needs a 1x1-grid program, this one is {program.grid}x{program.grid}"
        )
    last = program.tensors[-1]
    out = np.zeros((x.shape[0], last.h, last.w, last.c), dtype=np.int8)
    if keep_all:
        full = [x]
        for t, r in zip(program.tensors[1:], program.regions[0, 1:], strict=True):
            a = np.full((x.shape[0], t.h, t.w, t.c), t.zp[1], dtype=np.int8)
            full.append(a)
    for p in range(program.grid**2):
        v = program.variant(p)
        buf: dict[int, np.ndarray] = {0: x}
        for k, s in enumerate(program.steps):
            region = tuple(int(a) for a in program.regions[p, k + 1])
            if region[2] == 0:
                continue
            y = _run_step(program, k, s, v, p, region, buf, filters)
            if keep_all:
                ry, rx, rh, rw = region
                full[k + 1][:, ry : ry + rh, rx : rx + rw, :] = y
            if k + 1 == T - 1:
                ry, rx, rh, rw = region
                out[:, ry : ry + rh, rx : rx + rw, :] = y
            else:
                buf[k + 1] = y
    if keep_all:
        full[-1] = out
        return full
    return out


def _view(program, p, j, buf):
    """``(array, region or None)`` of tensor ``j`` in patch ``p`` (tensor 0: whole)."""
    if j == 0:
        return buf[0], None
    return buf[j], tuple(int(a) for a in program.regions[p, j])


def _run_step(program, k, s, v, p, region, buf, filters) -> np.ndarray:
    src_t = program.tensors[s.inputs[0]]
    out_t = program.tensors[k + 1]
    ry, rx, rh, rw = region
    if program.input_need(k, region) is None:  # a pad region entirely in the border
        return np.full((len(buf[0]), rh, rw, out_t.c), out_t.zp[v], dtype=np.int8)
    x, in_region = _view(program, p, s.inputs[0], buf)
    if s.kind in (KIND_CONV, KIND_DEPTHWISE):
        params = reference.ConvParams(
            stride_h=s.stride[0],
            stride_w=s.stride[1],
            pad_h=s.pad[0],
            pad_w=s.pad[1],
            dilation_h=s.dilation[0],
            dilation_w=s.dilation[1],
            input_zero_point=src_t.zp[v],
            output_zero_point=out_t.zp[v],
            act_min=s.act[v][0],
            act_max=s.act[v][1],
            in_bits=src_t.bits[v],
            w_bits=s.w_bits,
            out_bits=out_t.bits[v],
        )
        q = np.asarray(s.quant[v])
        fn = reference.conv2d if s.kind == KIND_CONV else reference.depthwise_conv2d
        c = out_t.c
        return fn(
            x,
            filters[s.slot],
            q[2 * c :],
            q[:c],
            q[c : 2 * c],
            params,
            output_hw=(out_t.h, out_t.w),
            window=region,
            input_region=in_region,
            input_hw=(src_t.h, src_t.w),
        )
    if s.kind == KIND_PAD:
        y = np.full((x.shape[0], rh, rw, out_t.c), out_t.zp[v], dtype=np.int8)
        iy0, ix0 = (0, 0) if in_region is None else in_region[:2]
        for oy in range(ry, ry + rh):
            iy = oy - s.pad[0]
            if not 0 <= iy < src_t.h:
                continue
            ox = np.arange(rx, rx + rw)
            ix = ox - s.pad[1]
            ok = (ix >= 0) & (ix < src_t.w)
            y[:, oy - ry, ok, :] = x[:, iy - iy0, ix[ok] - ix0, :]
        return y
    if s.kind == KIND_ADD:
        parts = []
        for j in s.inputs:
            a, reg = _view(program, p, j, buf)
            y0, x0 = (0, 0) if reg is None else reg[:2]
            parts.append(a[:, ry - y0 : ry - y0 + rh, rx - x0 : rx - x0 + rw, :])
        other = program.tensors[s.inputs[1]]
        return add(parts[0], parts[1], src_t.zp[v], other.zp[v], out_t.zp[v], s.quant[v], s.act[v])
    raise AssertionError(f"step kind {s.kind}")  # pragma: no cover - checked by the program
