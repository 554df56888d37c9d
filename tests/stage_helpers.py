"""Random valid patch-stage programs (tfmot_edgeplus/core/program.py) for the C, TFLM
and Cortex-M4 tests: every step kind, strides, dilations, border-only pad regions, residual
adds, 2/4/8-bit tensors per variant, 2/4/8-bit weights, normal and outlier patches."""

from __future__ import annotations

import numpy as np

from tfmot_edgeplus.core.intmath import int_range, narrow_range
from tfmot_edgeplus.core.program import (
    KIND_ADD,
    KIND_CONV,
    KIND_DEPTHWISE,
    KIND_PAD,
    StageProgram,
    StageStep,
    StageTensor,
    input_need,
    region_bytes,
)


def _out_size(i, k, s, p, d):
    return (i + 2 * p - ((k - 1) * d + 1)) // s + 1


def _act(rng, bits):
    lo, hi = int_range(bits)
    if rng.random() < 0.5:
        return (lo, hi)
    a = int(rng.integers(lo, 0))
    return (a, int(rng.integers(a + 1, hi + 1)))


def _conv_quant(rng, c):
    m = rng.integers(1 << 29, 1 << 31, c)
    s = rng.integers(-9, -4, c)
    b = rng.integers(-(1 << 12), 1 << 12, c)
    return np.concatenate([m, s, b]).astype(np.int32)


def _add_quant(rng):
    return np.array(
        [
            20,
            rng.integers(1 << 29, 1 << 30),
            -1,
            rng.integers(1 << 29, 1 << 30),
            -1,
            rng.integers(1 << 29, 1 << 31),
            -19,
        ],
        dtype=np.int32,
    )


def random_program(
    rng,
    *,
    grid=None,
    eight_bit=False,
    w_bits=None,
    steps=None,
    size=None,
    low_bit_outliers=False,
) -> tuple[StageProgram, list[np.ndarray]]:
    """``(program, filters)``: a random valid program and its unpacked filters.
    ``eight_bit``: every tensor at 8 bits and both variants identical (patching is exact).
    ``low_bit_outliers``: outlier patches get random bits too (else 8, as VDPC plans them)."""
    n_steps = int(rng.integers(2, 6)) if steps is None else steps
    h = w = int(rng.integers(8, 15)) if size is None else size
    shapes = [(h, w, int(rng.integers(1, 5)))]
    raw = []  # (kind, inputs, kernel, stride, pad, dilation)
    while len(raw) < n_steps:
        ih, iw, ic = shapes[-1]
        kind = rng.choice([KIND_CONV, KIND_CONV, KIND_DEPTHWISE, KIND_PAD, KIND_ADD])
        src = len(shapes) - 1
        if kind == KIND_ADD:
            # a same-shaped branch: conv 1x1 (or depthwise 3x3 SAME) of src, then add
            if len(raw) + 2 > n_steps:
                continue
            raw.append((KIND_CONV, (src,), (1, 1), (1, 1), (0, 0), (1, 1)))
            shapes.append((ih, iw, ic))
            raw.append((KIND_ADD, (src, src + 1), (1, 1), (1, 1), (0, 0), (1, 1)))
            shapes.append((ih, iw, ic))
            continue
        if kind == KIND_PAD:
            if len(raw) + 1 == n_steps:
                continue  # the stage output must be 8-bit: not a copy of a low-bit map
            t, left = int(rng.integers(0, 3)), int(rng.integers(0, 3))
            b, r = int(rng.integers(0, 2)), int(rng.integers(0, 2))
            raw.append((KIND_PAD, (src,), (1, 1), (1, 1), (t, left), (1, 1)))
            shapes.append((ih + t + b, iw + left + r, ic))
            continue
        k = int(rng.choice([1, 3]))
        s = int(rng.choice([1, 2])) if min(ih, iw) >= 6 else 1
        d = int(rng.choice([1, 2])) if k == 3 and s == 1 and rng.random() < 0.3 else 1
        p = int(rng.integers(0, (k - 1) * d + 1)) if k > 1 else 0
        oh, ow = _out_size(ih, k, s, p, d), _out_size(iw, k, s, p, d)
        if min(oh, ow) < 2:
            continue
        oc = ic if kind == KIND_DEPTHWISE else int(rng.integers(1, 6))
        raw.append((int(kind), (src,), (k, k), (s, s), (p, p), (d, d)))
        shapes.append((oh, ow, oc))
    T = len(shapes)
    bits = [(8, 8)]
    for i in range(1, T):
        if eight_bit or i == T - 1:
            bits.append((8, 8))
        else:
            b0 = int(rng.choice([2, 4, 8]))
            bits.append((b0, int(rng.choice([2, 4, 8])) if low_bit_outliers else 8))
    # pads keep their input's bits and zero points
    zps = []
    for i in range(T):
        kind = raw[i - 1][0] if i else None
        if kind == KIND_PAD:
            src = raw[i - 1][1][0]
            bits[i] = bits[src]
            zps.append(zps[src])
            continue
        z = []
        for v in (0, 1):
            lo, hi = int_range(bits[i][v])
            z.append(int(rng.integers(lo, hi + 1)))
        if i in (0, T - 1) or eight_bit:
            z[1] = z[0]
        zps.append(tuple(z))
    steps_out, filters = [], []
    for k, (kind, ins, kern, stride, pad, dil) in enumerate(raw):
        out_bits = bits[k + 1]
        act = tuple(_act(rng, b) for b in out_bits)
        if eight_bit:
            act = (act[0], act[0])
        if kind in (KIND_CONV, KIND_DEPTHWISE):
            wb = int(rng.choice([2, 4, 8])) if w_bits is None else w_bits
            cin, cout = shapes[ins[0]][2], shapes[k + 1][2]
            shape = (cout, *kern, cin) if kind == KIND_CONV else (1, *kern, cout)
            lo, hi = narrow_range(wb) if rng.random() < 0.5 else int_range(wb)
            filters.append(rng.integers(lo, hi + 1, shape).astype(np.int8))
            q = _conv_quant(rng, cout)
            quant = (q, q if eight_bit or rng.random() < 0.3 else _conv_quant(rng, cout))
            steps_out.append(StageStep(kind, ins, kern, stride, pad, dil, wb, len(filters) - 1,
                                       act, quant))  # fmt: skip
        elif kind == KIND_PAD:
            steps_out.append(StageStep(KIND_PAD, ins, pad=pad))
        else:
            q = _add_quant(rng)
            steps_out.append(
                StageStep(KIND_ADD, ins, act=act, quant=(q, q if eight_bit else _add_quant(rng)))
            )
    n = int(rng.integers(1, 5)) if grid is None else grid
    n = min(n, shapes[-1][0], shapes[-1][1])
    outlier = rng.random(n * n) < 0.4
    tensors = [StageTensor(*shapes[i], bits=bits[i], zp=zps[i]) for i in range(T)]
    end = [(0, 0, 0, 0)] * T
    regions = np.zeros((n * n, T, 4), dtype=np.int64)
    H, W = shapes[-1][:2]
    edges_h = [(i * H) // n for i in range(n + 1)]
    edges_w = [(j * W) // n for j in range(n + 1)]
    for p in range(n * n):
        i, j = divmod(p, n)
        need = list(end)
        need[T - 1] = (edges_h[i], edges_w[j], edges_h[i + 1] - edges_h[i],
                       edges_w[j + 1] - edges_w[j])  # fmt: skip
        for k in range(T - 2, -1, -1):
            out = need[k + 1]
            if not out[2]:
                continue
            win = input_need(tensors, steps_out, k, out)
            if win is None:
                continue
            for src in steps_out[k].inputs:
                need[src] = _union(need[src], win)
        regions[p] = need
    sizes = [0] * T
    for p in range(n * n):
        v = int(outlier[p])
        for t in range(1, T - 1):
            sizes[t] = max(sizes[t], region_bytes(regions[p, t], shapes[t][2], bits[t][v]))
    offsets, pos = [-1] * T, 0
    for t in range(1, T - 1):
        offsets[t] = pos
        pos += sizes[t]
    final = tuple(
        t if i in (0, T - 1) else _with_buffer(t, offsets[i], sizes[i])
        for i, t in enumerate(tensors)
    )
    return StageProgram(final, tuple(steps_out), n, outlier, regions, pos), filters


def _with_buffer(t: StageTensor, offset: int, size: int) -> StageTensor:
    return StageTensor(t.h, t.w, t.c, t.bits, t.zp, offset, size)


def _union(a, b):
    if not a[2]:
        return tuple(b)
    y0, x0 = min(a[0], b[0]), min(a[1], b[1])
    y1, x1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    return (y0, x0, y1 - y0, x1 - x0)


def random_input(rng, program: StageProgram, n: int = 2) -> np.ndarray:
    return rng.integers(-128, 128, (n, *program.tensors[0].shape)).astype(np.int8)
