"""Golden vectors for the tflm_ops C tests, generated from the NumPy reference.

    python -m tests.builders.golden --out tflm_ops/tests/golden_cases.h

writes a small, deterministic C header (conv / depthwise cases at mixed bit-widths with
patch windows and buffer regions, requantization edge cases, packing and bit-flip cases,
one patch-stage program, QCore steps with and without the old-domain guard) that
``tflm_ops/tests/test_edgeplus.c`` and
``tflm_ops/tests/test_patch_stage.c`` check byte for byte on the host and on the Cortex-M4
in QEMU. The random case builders are shared with the pytest suites (which import this
module as ``builders.golden``: tests/ is on their path). Test data, not part of the
installed package.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from tfmot_edgeplus.calibration.bitflip_reference import bitflip_apply
from tfmot_edgeplus.calibration.head import HeadLayer, IntHead
from tfmot_edgeplus.calibration.step import FlipNet, qcore_step
from tfmot_edgeplus.core import conv_reference as ref
from tfmot_edgeplus.core import intmath
from tfmot_edgeplus.core.intmath import int_range
from tfmot_edgeplus.core.packing import pack, unpack
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
from tfmot_edgeplus.patching import simulate

__all__ = [
    "ConvCase",
    "calibrate_requant",
    "golden_conv_cases",
    "golden_qcore_cases",
    "golden_stage_case",
    "main",
    "random_conv_case",
    "random_flipnet",
    "random_head_layer",
    "random_int_head",
    "render_header",
]


@dataclasses.dataclass
class ConvCase:
    """Everything one conv call needs, unpacked, plus the reference result."""

    name: str
    depthwise: bool
    params: ref.ConvParams
    x: np.ndarray  # the input buffer (the input_region when given)
    w: np.ndarray
    bias: np.ndarray | None
    multiplier: np.ndarray
    shift: np.ndarray
    input_hw: tuple[int, int]
    output_hw: tuple[int, int]
    window: tuple[int, int, int, int] | None = None
    input_region: tuple[int, int, int, int] | None = None
    output_region: tuple[int, int, int, int] | None = None

    def reference(self) -> np.ndarray:
        """The reference output of the window."""
        f = ref.depthwise_conv2d if self.depthwise else ref.conv2d
        return f(
            self.x,
            self.w,
            self.bias,
            self.multiplier,
            self.shift,
            self.params,
            output_hw=self.output_hw,
            window=self.window,
            input_region=self.input_region,
            input_hw=self.input_hw,
        )

    @property
    def input_shape(self):
        return (self.x.shape[0], *self.input_hw, self.x.shape[3])

    @property
    def output_shape(self):
        oc = self.x.shape[3] if self.depthwise else self.w.shape[0]
        return (self.x.shape[0], *self.output_hw, oc)


def calibrate_requant(
    acc: np.ndarray, bias: np.ndarray | None, out_bits: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (multiplier, shift) so that the outputs spread over the out range
    (with some clamping at the ends), like a calibrated layer."""
    oc = acc.shape[-1]
    a = acc.reshape(-1, oc).astype(np.int64)
    if bias is not None:
        a = a + bias
    span = np.maximum(np.abs(a).max(axis=0), 1)
    half = 1 << (out_bits - 1)
    mult, shift = [], []
    for c in range(oc):
        real = half / float(span[c]) * float(rng.uniform(0.7, 1.6))
        m, s = intmath.quantize_multiplier(real)
        mult.append(m)
        shift.append(s)
    return np.array(mult, np.int64), np.array(shift, np.int64)


def random_conv_case(
    rng: np.random.Generator,
    *,
    in_bits=8,
    w_bits=8,
    out_bits=8,
    depthwise=False,
    n=1,
    h=6,
    w=7,
    c=3,
    oc=4,
    k=(3, 3),
    stride=1,
    padding="SAME",
    dilation=1,
    window=None,
    region_margin=None,
    bias=True,
    relu=False,
    bias_frac_bits=0,
    name="case",
) -> ConvCase:
    """A random conv case whose requantization is calibrated to its accumulators.

    ``window``: output window (y, x, h, w) or None. ``region_margin``: when not None,
    the input buffer holds only the rows/cols the window reads grown by that margin
    (clipped), and the output buffer the window grown by it.
    """
    kh, kw = (k, k) if isinstance(k, int) else k
    ilo, ihi = int_range(in_bits)
    olo, ohi = int_range(out_bits)
    zp_in = int(rng.integers(ilo, ihi + 1))
    zp_out = int(rng.integers(olo, ohi + 1))
    params, output_hw = ref.make_conv_params(
        (h, w),
        (kh, kw),
        stride=stride,
        padding=padding,
        dilation=dilation,
        in_bits=in_bits,
        w_bits=w_bits,
        out_bits=out_bits,
        input_zero_point=zp_in,
        output_zero_point=zp_out,
        act_min=max(zp_out, olo) if relu else None,
        bias_frac_bits=bias_frac_bits,
    )
    x = rng.integers(ilo, ihi + 1, (n, h, w, c)).astype(np.int8)
    wlo, whi = int_range(w_bits)
    if depthwise:
        oc = c
        wt = rng.integers(wlo, whi + 1, (1, kh, kw, c)).astype(np.int8)
    else:
        wt = rng.integers(wlo, whi + 1, (oc, kh, kw, c)).astype(np.int8)
    acc = ref.conv2d_accumulators(x, wt, params, output_hw=output_hw, depthwise=depthwise)
    acc = acc.astype(np.int64) << bias_frac_bits  # what the requantization reads
    b = None
    if bias:
        scale = max(int(np.abs(acc).max()), 4)
        b = rng.integers(-scale // 2, scale // 2 + 1, oc).astype(np.int64)
    mult, shift = calibrate_requant(acc, b, out_bits, rng)
    in_region = out_region = None
    if window is not None and region_margin is not None:
        need = ref.conv_input_region(params, (h, w), (kh, kw), window)
        in_region = _grow(need, region_margin, (h, w))
        out_region = _grow(window, region_margin, output_hw)
        y0, x0, rh, rw = in_region
        x = x[:, y0 : y0 + rh, x0 : x0 + rw, :].copy()
    return ConvCase(
        name,
        depthwise,
        params,
        x,
        wt,
        b,
        mult,
        shift,
        (h, w),
        output_hw,
        window,
        in_region,
        out_region,
    )


def random_head_layer(rng, out, inp, bits, relu, x, extreme=False) -> HeadLayer:
    """A FULLY_CONNECTED layer whose outputs spread over int8 on ``x`` (not all clamped);
    ``extreme``: any multiplier, shift, bias and weight the C accepts."""
    qmax = 2 ** (bits - 1) - 1
    lo = -qmax - 1 if extreme else -qmax
    w = rng.integers(lo, qmax + 1, (out, inp)).astype(np.int8)
    zp_in = int(rng.integers(-128, 128)) if extreme else int(rng.integers(-20, 21))
    if extreme:
        mult = rng.integers(0, 2**31, out)
        shift = rng.integers(-31, 31, out) if rng.random() < 0.5 else rng.integers(-12, -4, out)
        bias = (
            rng.integers(-(2**31), 2**31, out)
            if rng.random() < 0.3
            else rng.integers(-5000, 5000, out)
        )
        zp_out = int(rng.integers(-128, 128))
        a, b = sorted(int(v) for v in rng.integers(-128, 128, 2))
    else:
        acc = (x.astype(np.int64) - zp_in) @ w.T.astype(np.int64)
        std = float(acc.std()) + 1.0
        bias = rng.integers(-int(std), int(std) + 1, out)
        mult, shift = np.empty(out, np.int64), np.empty(out, np.int64)
        for o in range(out):
            mult[o], shift[o] = intmath.quantize_multiplier(40.0 / std * rng.uniform(0.5, 2.0))
        zp_out = int(rng.integers(-30, 31))
        a, b = (zp_out if relu else -128), 127
    return HeadLayer(
        name="fc",
        weights=w,
        bits=bits,
        bias=bias.astype(np.int32),
        multiplier=mult.astype(np.int32),
        shift=shift.astype(np.int32),
        input_zero_point=zp_in,
        output_zero_point=zp_out,
        act_min=a,
        act_max=b,
        input_scale=1.0,
        weight_scale=np.ones(out, np.float32),
        output_scale=1.0,
        relu=relu,
    )


def random_int_head(rng, dims, bits, n, extreme=False) -> tuple[IntHead, np.ndarray]:
    """A chain of :func:`random_head_layer` of sizes ``dims`` (hidden layers ReLU with
    probability 0.7) and ``n`` random int8 inputs for it."""
    x = rng.integers(-128, 128, (n, dims[0])).astype(np.int8)
    layers, a = [], x
    for i in range(len(dims) - 1):
        relu = i < len(dims) - 2 and rng.random() < 0.7
        layer = random_head_layer(rng, dims[i + 1], dims[i], bits, relu, a, extreme)
        layers.append(layer)
        a = layer.forward(a)
    return IntHead(layers, b""), x


def random_flipnet(rng, hidden: int = 8, extreme: bool = False) -> FlipNet:
    """In-range random int8 flip network (flips some weights, not all); ``extreme``: any
    value the C accepts."""
    if not extreme:
        return FlipNet(
            rng.integers(-127, 128, (hidden, 4)),
            rng.integers(-2000, 2000, hidden),
            1 << 30,
            -6,
            rng.integers(-127, 128, hidden),
            int(rng.integers(-500, 500)),
            int(rng.integers(50, 400)),
        )
    big = rng.random() < 0.3
    return FlipNet(
        rng.integers(-128, 128, (hidden, 4)),
        rng.integers(-(2**30), 2**30 + 1, hidden) if big else rng.integers(-3000, 3000, hidden),
        int(rng.integers(0, 2**31)),
        int(rng.integers(-31, 31)) if rng.random() < 0.5 else -6,
        rng.integers(-128, 128, hidden),
        int(rng.integers(-(2**30), 2**30 + 1)) if big else int(rng.integers(-600, 600)),
        int(np.exp(rng.uniform(0, np.log(2**30)))),
    )


# The QCore golden cases: a 6 -> 5 -> 3 head at W4 (layer 1's 15 weights leave a padding
# nibble the C test sets), 8 samples, both layers calibrated by 3-unit flip nets, margin
# 16, tries 4; golden_types.h's golden_qcore_case has these sizes.
_QCORE_DIMS, _QCORE_N, _QCORE_HIDDEN, _QCORE_MARGIN, _QCORE_TRIES = (6, 5, 3), 8, 3, 16, 4


def _qcore_try(seed: int):
    rng = np.random.default_rng(seed)
    head, x = random_int_head(rng, list(_QCORE_DIMS), 4, _QCORE_N)
    y = rng.integers(0, _QCORE_DIMS[-1], _QCORE_N)
    nets = {l: random_flipnet(rng, _QCORE_HIDDEN) for l in range(2)}
    return head, nets, x, y


def _qcore_run(case, guard=0, guard_min_correct=0):
    head, nets, x, y = case
    return qcore_step(
        head,
        nets,
        x,
        y,
        margin=_QCORE_MARGIN,
        tries=_QCORE_TRIES,
        guard=guard,
        guard_min_correct=guard_min_correct,
    )


def golden_qcore_cases(seed: int = 20240601) -> list[tuple[str, tuple, int, int]]:
    """Three QCore steps ``(name, (head, nets, x, y), guard, guard_min_correct)`` from the
    first fitting random heads: one kept at a level above 0 and one rolled back after
    two or more levels, unguarded; and one guarded where ``guard_min_correct`` (the
    guard count before) refuses the level the same step keeps with ``guard_min_correct =
    0``, and a later level is kept."""
    found: dict[str, tuple] = {}
    for s in range(seed, seed + 10_000):
        case = _qcore_try(s)
        r = _qcore_run(case)
        if "kept" not in found and r.kept and r.level >= 1:
            found["kept"] = (f"kept at level {r.level}", case, 0, 0)
        if "rolled back" not in found and not r.kept and r.level >= 2:
            found["rolled back"] = (f"rolled back after level {r.level}", case, 0, 0)
        for guard in range(1, _QCORE_N) if "guarded" not in found else ():
            free = _qcore_run(case, guard)
            gmc = free.guard_correct_before
            if free.kept and free.guard_correct_after < gmc:
                g = _qcore_run(case, guard, gmc)
                if g.kept:  # the guard refuses a level, a later one passes it
                    name = f"guard {guard}, min {gmc}: level {free.level} refused, {g.level} kept"
                    found["guarded"] = (name, case, guard, gmc)
                    break
        if len(found) == 3:
            return [found[k] for k in ("kept", "rolled back", "guarded")]
    raise RuntimeError(f"no QCore golden cases in seeds {seed}..{seed + 9_999}")


def _qcore_header(seed: int) -> str:
    entries = []
    for name, case, guard, gmc in golden_qcore_cases(seed):
        head, nets, x, y = case
        r = _qcore_run(case, guard, gmc)
        layers = []
        for layer in head.layers:
            q = [layer.input_zero_point, layer.output_zero_point, layer.act_min, layer.act_max]
            layers.append(
                f"{{{_c_list(pack(layer.weights, 4))}, {_c_list(layer.bias)}, "
                f"{_c_list(layer.multiplier)}, {_c_list(layer.shift)}, {_c_list(q)[1:-1]}}}"
            )
        cnets = [
            f"{{{_c_list(n.w1)}, {_c_list(n.b1)}, {n.m1}, {n.s1}, {_c_list(n.w2)}, {n.b2}, "
            f"{n.threshold}}}"
            for n in (nets[0], nets[1])
        ]
        res = [r.kept, r.level, r.changed, r.correct_before, r.correct_after]
        res += [r.margin_before, r.margin_after, r.guard_correct_before, r.guard_correct_after]
        w_after = [_c_list(pack(w, 4)) for w in r.weights]
        fields = [_c_list(x), _c_list(y), str(guard), str(gmc), "{" + ", ".join(layers) + "}"]
        fields += ["{" + ", ".join(cnets) + "}", _c_list(res), _c_list(r.correct_mask_before)]
        fields += [_c_list(r.correct_mask_after), "{" + ", ".join(w_after) + "}"]
        entries.append(f"    /* {name} */\n" + _wrap_commas("{" + ", ".join(fields) + "},"))
    return (
        "/* QCore steps of golden_qcore_cases() (calibration/step.py qcore_step) */\n"
        "static const golden_qcore_case golden_qcore_cases[] = {\n"
        + "".join(entries)
        + "};\n#define GOLDEN_QCORE_COUNT "
        "((int)(sizeof(golden_qcore_cases) / sizeof(golden_qcore_cases[0])))\n\n"
    )


def _wrap_commas(text: str, width: int = 96, indent: str = "    ") -> str:
    """``text`` without the spaces after its commas, on indented lines of at most ``width``
    characters broken after commas."""
    lines, line = [], indent
    toks = text.replace(", ", ",").split(",")
    for i, tok in enumerate(toks):
        piece = tok + ("," if i < len(toks) - 1 else "")
        if len(line) + len(piece) > width and line.strip():
            lines.append(line)
            line = indent
        line += piece
    return "\n".join(lines + [line]) + "\n"


def _c_list(values) -> str:
    return "{" + ",".join(str(int(v)) for v in np.asarray(values).reshape(-1)) + "}"


def _grow(win, margin, hw):
    y, x, h, w = win
    y0, x0 = max(y - margin, 0), max(x - margin, 0)
    y1, x1 = min(y + h + margin, hw[0]), min(x + w + margin, hw[1])
    return (y0, x0, y1 - y0, x1 - x0)


# ----------------------------------------------------------------------------- the header


def golden_conv_cases(seed: int = 20240601) -> list[ConvCase]:
    """The small fixed set of cases committed in golden_cases.h."""
    rng = np.random.default_rng(seed)
    specs = [
        {"name": "conv_a8w8o8_same_s1", "in_bits": 8, "w_bits": 8, "out_bits": 8},
        {"name": "conv_a4w4o4_same_s1", "in_bits": 4, "w_bits": 4, "out_bits": 4},
        {
            "name": "conv_a2w2o2_valid_s1",
            "in_bits": 2,
            "w_bits": 2,
            "out_bits": 2,
            "padding": "VALID",
        },
        {
            "name": "conv_a8w4o8_same_s2_relu",
            "in_bits": 8,
            "w_bits": 4,
            "out_bits": 8,
            "stride": 2,
            "relu": True,
        },
        {"name": "conv_a2w8o4_same_dil2", "in_bits": 2, "w_bits": 8, "out_bits": 4, "dilation": 2},
        {
            "name": "conv_a4w2o8_valid_s2",
            "in_bits": 4,
            "w_bits": 2,
            "out_bits": 8,
            "padding": "VALID",
            "stride": 2,
        },
        {
            "name": "conv_a2w2o8_patch_bottom_right",
            "in_bits": 2,
            "w_bits": 2,
            "out_bits": 8,
            "window": (2, 2, 3, 3),
            "region_margin": 1,
        },
        {
            "name": "conv_a4w4o2_patch_top_left_bias_frac5",
            "in_bits": 4,
            "w_bits": 4,
            "out_bits": 2,
            "window": (0, 0, 2, 3),
            "region_margin": 1,
            "bias_frac_bits": 5,  # a fractional bias: convert(kernels="edgeplus") below 8 bits
        },
        {
            "name": "conv_a8w8o4_patch_middle_n2_odd",
            "in_bits": 8,
            "w_bits": 8,
            "out_bits": 4,
            "n": 2,
            "c": 5,
            "oc": 3,
            "window": (2, 1, 2, 3),
            "region_margin": 0,
        },
        {
            "name": "conv_a2w2o4_long_k",
            "in_bits": 2,
            "w_bits": 2,
            "out_bits": 4,
            "h": 3,
            "w": 3,
            "c": 72,
            "oc": 2,
            "padding": "VALID",
            "bias": False,
        },
        {
            "name": "dw_a8w8o8_same_s1",
            "depthwise": True,
            "in_bits": 8,
            "w_bits": 8,
            "out_bits": 8,
            "c": 4,
        },
        {
            "name": "dw_a4w4o4_same_s2_patch",
            "depthwise": True,
            "in_bits": 4,
            "w_bits": 4,
            "out_bits": 4,
            "c": 5,
            "stride": 2,
            "window": (1, 0, 2, 2),
            "region_margin": 1,
        },
        {
            "name": "dw_a2w2o2_valid_bias_frac9",
            "depthwise": True,
            "in_bits": 2,
            "w_bits": 2,
            "out_bits": 2,
            "c": 3,
            "padding": "VALID",
            "bias_frac_bits": 9,
        },
    ]
    small = {"h": 5, "w": 5, "oc": 3}
    return [random_conv_case(rng, **{**small, **s}) for s in specs]


def golden_stage_case(seed: int = 20240601):
    """``(program, filters, x, expected)``: the patch-stage program committed in
    golden_cases.h, every step kind at mixed bits on a 2x2 grid (two outlier patches):
    input 12x12x3 -> conv 3x3 SAME (W4) -> pad (1, 1) top/left -> depthwise 3x3 stride 2
    VALID (W8) -> conv 1x1 (W2) -> add -> conv 3x3 dilation 2 SAME (W4) -> 6x6x6.
    ``filters`` unpacked, ``x`` (12, 12, 3) int8, ``expected`` the split tensor (6, 6, 6)."""
    rng = np.random.default_rng(seed + 2)
    shapes = [(12, 12, 3), (12, 12, 4), (13, 13, 4), (6, 6, 4), (6, 6, 4), (6, 6, 4), (6, 6, 6)]
    bits = [(8, 8), (4, 8), (4, 8), (2, 8), (4, 4), (2, 8), (8, 8)]
    zps = [(-3, -3), (-2, -20), (-2, -20), (1, 7), (0, -1), (-1, 4), (5, 5)]
    # (kind, inputs, kernel, stride, pad, dilation, w_bits)
    raw = [
        (KIND_CONV, (0,), 3, 1, 1, 1, 4),
        (KIND_PAD, (1,), 1, 1, 1, 1, 8),
        (KIND_DEPTHWISE, (2,), 3, 2, 0, 1, 8),
        (KIND_CONV, (3,), 1, 1, 0, 1, 2),
        (KIND_ADD, (3, 4), 1, 1, 0, 1, 8),
        (KIND_CONV, (5,), 3, 1, 2, 2, 4),
    ]

    def requant(k_values, in_bits, w_bits, out_bits, cout):
        # outputs spread over the out range: acc std ~ sqrt(K) * std(x) * std(w)
        acc_std = np.sqrt(k_values) * (2**in_bits / 3.5) * (2 ** (w_bits - 1) / 1.7)
        real = (2**out_bits / 5) / acc_std * rng.uniform(0.7, 1.4, cout)
        m, sh = zip(*(intmath.quantize_multiplier(float(r)) for r in real), strict=True)
        bias = rng.integers(-(2**in_bits) * 2 ** (w_bits - 1), 2**in_bits * 2 ** (w_bits - 1), cout)
        return np.concatenate([m, sh, bias]).astype(np.int32)

    steps, filters = [], []
    for k, (kind, ins, kk, st, pd, dl, wb) in enumerate(raw):
        src, out = ins[0], k + 1
        cin, cout = shapes[src][2], shapes[out][2]
        act = tuple(int_range(b) for b in bits[out])
        if kind == KIND_PAD:
            steps.append(StageStep(KIND_PAD, ins, pad=(pd, pd)))
            continue
        if kind == KIND_ADD:
            quant = tuple(
                np.array([20, 1 << 30, -1, 1 << 30, -1, 1 << 30, -20 + (8 - bits[out][v])])
                for v in (0, 1)
            )
            steps.append(StageStep(KIND_ADD, ins, act=act, quant=quant))
            continue
        kv = kk * kk * (cin if kind == KIND_CONV else 1)
        quant = tuple(requant(kv, bits[src][v], wb, bits[out][v], cout) for v in (0, 1))
        shape = (cout, kk, kk, cin) if kind == KIND_CONV else (1, kk, kk, cout)
        lo, hi = int_range(wb)
        filters.append(rng.integers(lo + 1, hi + 1, shape).astype(np.int8))
        steps.append(
            StageStep(kind, ins, (kk, kk), (st, st), (pd, pd), (dl, dl), wb, len(filters) - 1,
                      act, quant)
        )  # fmt: skip
    T, n = len(shapes), 2
    outlier = np.array([0, 1, 1, 0], dtype=bool)
    tensors = [StageTensor(*shapes[i], bits=bits[i], zp=zps[i]) for i in range(T)]
    regions = np.zeros((n * n, T, 4), dtype=np.int64)
    for p in range(n * n):
        i, j = divmod(p, n)
        regions[p, T - 1] = (3 * i, 3 * j, 3, 3)
        for k in range(T - 2, -1, -1):
            if not regions[p, k + 1, 2]:
                continue
            need = input_need(tensors, steps, k, tuple(int(a) for a in regions[p, k + 1]))
            for src in steps[k].inputs if need is not None else ():
                have = regions[p, src]
                if have[2]:
                    y0, x0 = min(have[0], need[0]), min(have[1], need[1])
                    y1 = max(have[0] + have[2], need[0] + need[2])
                    x1 = max(have[1] + have[3], need[1] + need[3])
                    need = (y0, x0, y1 - y0, x1 - x0)
                regions[p, src] = need
    offset = 0
    for i in range(1, T - 1):
        size = max(
            region_bytes(regions[p, i], shapes[i][2], bits[i][int(outlier[p])])
            for p in range(n * n)
        )
        tensors[i] = dataclasses.replace(tensors[i], offset=offset, size=size)
        offset += size
    program = StageProgram(tuple(tensors), tuple(steps), n, outlier, regions, offset)
    x = rng.integers(-128, 128, shapes[0]).astype(np.int8)
    expected = simulate.run_stage(program, filters, x)[0]
    return program, filters, x, expected


def _c_array(ctype: str, name: str, values) -> str:
    vals = [int(v) for v in np.asarray(values).reshape(-1)]
    if not vals:
        vals = [0]
    body = ", ".join(str(v) for v in vals)
    lines, line = [], "   "
    for tok in body.split(" "):
        if len(line) + len(tok) + 1 > 96:
            lines.append(line)
            line = "   "
        line += " " + tok
    lines.append(line)
    return f"static const {ctype} {name}[{len(vals)}] = {{\n" + "\n".join(lines) + "\n};\n"


def _packed_output(case: ConvCase, prefill: int) -> np.ndarray:
    """Unpacked output buffer after the call: prefill values, window overwritten."""
    p = case.params
    oc = case.output_shape[3]
    n = case.x.shape[0]
    reg = case.output_region or (0, 0, *case.output_hw)
    # prefill byte -> the values it holds at out_bits
    per = 8 // p.out_bits
    count = n * reg[2] * reg[3] * oc
    raw = np.full((count * p.out_bits + 7) // 8, prefill, np.uint8)
    buf = unpack(raw, p.out_bits, count).reshape(n, reg[2], reg[3], oc)
    win = case.window or (0, 0, *case.output_hw)
    y0, x0 = win[0] - reg[0], win[1] - reg[1]
    buf[:, y0 : y0 + win[2], x0 : x0 + win[3], :] = case.reference()
    packed = pack(buf, p.out_bits).view(np.uint8).copy()
    # tail bits past the last value keep the prefill
    tail = (count * p.out_bits) % 8
    if per > 1 and tail:
        keep = (0xFF << tail) & 0xFF
        packed[-1] = (int(packed[-1]) & (~keep & 0xFF)) | (prefill & keep)
    return packed.view(np.int8)


def _requant_cases(rng):
    edge = [
        (0, 1 << 30, 0),
        (1, 1 << 30, 0),
        (-1, 1 << 30, 0),
        (3, 1 << 30, -1),
        (-3, 1 << 30, -1),
        (5, 1 << 30, -1),
        (-5, 1 << 30, -1),
        (2**31 - 1, 2**31 - 1, 0),
        (-(2**31), 2**31 - 1, 0),
        (-(2**31), 1 << 30, -31),
        (2**31 - 1, 1 << 30, -31),
        (12345, 1518500250, 3),
        (-12345, 1518500250, 3),
        (100000, 1073741824, 30),
        (7, 2**31 - 1, 30),
        (-(2**31), 0, 0),
        (1 << 20, 1999999999, -20),
        (-(1 << 20), 1999999999, -20),
    ]
    for _ in range(14):
        edge.append(
            (
                int(rng.integers(-(2**31), 2**31)),
                int(rng.integers(1 << 30, 2**31)),
                int(rng.integers(-31, 8)),
            )
        )
    out = []
    for acc, m, s in edge:
        e = int(intmath.multiply_by_quantized_multiplier(acc, m, s))
        out.append((acc, m, s, e))
    return out


def render_header(seed: int = 20240601) -> str:
    """The text of golden_cases.h."""
    rng = np.random.default_rng(seed + 1)
    parts = [
        (
            "/* golden_cases.h - GENERATED by `python -m tests.builders.golden --out\n"
            " * tflm_ops/tests/golden_cases.h` from the NumPy reference; do not edit. */\n"
        ),
        (
            "#ifndef EDGEPLUS_GOLDEN_CASES_H\n#define EDGEPLUS_GOLDEN_CASES_H\n\n"
            '#include "golden_types.h"\n\n'
        ),
    ]
    entries = []
    for i, case in enumerate(golden_conv_cases(seed)):
        p = case.params
        prefill = int(rng.integers(0, 256))
        xin = pack(case.x, p.in_bits)
        wp = pack(case.w, p.w_bits)
        exp = _packed_output(case, prefill)
        parts.append(f"/* {case.name} */\n")
        parts.append(_c_array("int8_t", f"g{i}_input", xin))
        parts.append(_c_array("int8_t", f"g{i}_filter", wp))
        if case.bias is not None:
            parts.append(_c_array("int32_t", f"g{i}_bias", case.bias))
        parts.append(_c_array("int32_t", f"g{i}_mult", case.multiplier))
        parts.append(_c_array("int32_t", f"g{i}_shift", case.shift))
        parts.append(_c_array("int8_t", f"g{i}_expected", exp))
        n, ih, iw, c = case.input_shape
        fd = case.w.shape
        on, oh, ow, oc = case.output_shape
        win = case.window or (0, 0, oh, ow)
        ir = case.input_region or (0, 0, ih, iw)
        orr = case.output_region or (0, 0, oh, ow)
        pf = ", ".join(str(int(getattr(p, f.name))) for f in dataclasses.fields(p))
        entries.append(
            f'    {{"{case.name}", {int(case.depthwise)}, {{{pf}}},\n'
            f"     {{{n}, {ih}, {iw}, {c}}}, {{{fd[0]}, {fd[1]}, {fd[2]}, {fd[3]}}}, "
            f"{{{on}, {oh}, {ow}, {oc}}},\n"
            f"     {{{win[0]}, {win[1]}, {win[2]}, {win[3]}}}, "
            f"{int(case.input_region is not None)}, {{{ir[0]}, {ir[1]}, {ir[2]}, {ir[3]}}}, "
            f"{int(case.output_region is not None)}, {{{orr[0]}, {orr[1]}, {orr[2]}, {orr[3]}}},\n"
            f"     g{i}_input, {xin.size}, g{i}_filter, {wp.size}, "
            f"{f'g{i}_bias' if case.bias is not None else 'NULL'}, g{i}_mult, g{i}_shift, "
            f"{prefill}, g{i}_expected, {exp.size}}},\n"
        )
    parts.append(
        "static const golden_conv_case golden_conv_cases[] = {\n"
        + "".join(entries)
        + "};\n#define GOLDEN_CONV_COUNT "
        "((int)(sizeof(golden_conv_cases) / sizeof(golden_conv_cases[0])))\n\n"
    )

    rq = _requant_cases(rng)
    parts.append(
        "static const golden_requant_case golden_requant_cases[] = {\n"
        + "".join(
            f"    {{{a}, {m}, {s}, {e}}},\n".replace("-2147483648", "INT32_MIN")
            for a, m, s, e in rq
        )
        + "};\n#define GOLDEN_REQUANT_COUNT "
        "((int)(sizeof(golden_requant_cases) / sizeof(golden_requant_cases[0])))\n\n"
    )

    pk = []
    for i, (bits, count) in enumerate([(4, 7), (4, 8), (2, 9), (2, 4)]):
        lo, hi = int_range(bits)
        vals = rng.integers(lo, hi + 1, count)
        vals[0], vals[-1] = lo, hi
        parts.append(_c_array("int8_t", f"gp{i}_values", vals))
        parts.append(_c_array("int8_t", f"gp{i}_packed", pack(vals, bits)))
        pk.append(f"    {{{bits}, {count}, gp{i}_values, gp{i}_packed}},\n")
    parts.append(
        "static const golden_pack_case golden_pack_cases[] = {\n"
        + "".join(pk)
        + "};\n#define GOLDEN_PACK_COUNT "
        "((int)(sizeof(golden_pack_cases) / sizeof(golden_pack_cases[0])))\n\n"
    )

    bf = []
    for i, (bits, count) in enumerate([(2, 11), (4, 13), (8, 9)]):
        lo, hi = int_range(bits)
        wv = rng.integers(lo, hi + 1, count)
        wv[:3] = (lo, hi, lo + 1)  # saturation at both ends and the -2^(b-1) case
        up = rng.integers(-1, 2, count)
        up[:3] = (0, 1, -1)
        new, changed = bitflip_apply(wv, up, bits)
        parts.append(_c_array("int8_t", f"gb{i}_weights", pack(wv, bits)))
        parts.append(_c_array("int8_t", f"gb{i}_update", up))
        parts.append(_c_array("int8_t", f"gb{i}_expected", pack(new, bits)))
        bf.append(
            f"    {{{bits}, {count}, gb{i}_weights, gb{i}_update, gb{i}_expected, {changed}}},\n"
        )
    parts.append(
        "static const golden_bitflip_case golden_bitflip_cases[] = {\n"
        + "".join(bf)
        + "};\n#define GOLDEN_BITFLIP_COUNT "
        "((int)(sizeof(golden_bitflip_cases) / sizeof(golden_bitflip_cases[0])))\n\n"
    )
    program, filters, x, expected = golden_stage_case(seed)
    parts.append("/* the patch stage of golden_stage_case() */\n")
    parts.append(_c_array("int32_t", "gs_program", program.to_words()))
    for i, f in enumerate(filters):
        wb = program.steps[program.slot_steps()[i]].w_bits
        parts.append(_c_array("int8_t", f"gs_filter{i}", pack(f, wb)))
    names = ", ".join(f"gs_filter{i}" for i in range(len(filters)))
    sizes = ", ".join(
        str(-(-f.size * program.steps[program.slot_steps()[i]].w_bits // 8))
        for i, f in enumerate(filters)
    )
    parts.append(f"static const int8_t *const gs_filters[{len(filters)}] = {{{names}}};\n")
    parts.append(f"static const int32_t gs_filter_bytes[{len(filters)}] = {{{sizes}}};\n")
    parts.append(_c_array("int8_t", "gs_input", x))
    parts.append(_c_array("int8_t", "gs_expected", expected))
    parts.append(
        "static const golden_stage_case golden_stage = {\n"
        f"    gs_program, {program.to_words().size}, {len(filters)}, gs_filters, "
        f"gs_filter_bytes,\n    gs_input, {x.size}, gs_expected, {expected.size}}};\n\n"
    )
    parts.append(_qcore_header(seed))
    parts.append("#endif /* EDGEPLUS_GOLDEN_CASES_H */\n")
    return "".join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="header to write")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if --out differs from what would be written",
    )
    args = ap.parse_args(argv)
    text = render_header(args.seed)
    if args.check:
        same = args.out.is_file() and args.out.read_text() == text
        print(f"{args.out}: {'up to date' if same else 'OUT OF DATE'}")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
