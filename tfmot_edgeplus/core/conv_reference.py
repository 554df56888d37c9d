"""NumPy reference of the tflm_ops conv kernels, bit-exact with the C.

It mirrors ``tflm_ops/include/edgeplus/edgeplus_ops.h``: low-bit (2/4/8) asymmetric
activations in NHWC, symmetric per-output-channel weights (OHWI for conv, 1HWO for
depthwise), TFLite's per-channel requantization (``MultiplyByQuantizedMultiplier`` with the
reference kernels' double rounding), a fused clamp, output at any bit-width, and the patch
("window") variants that compute one output window from a buffer holding only a region of
the input. The arithmetic below is written after TFLite's own formulas (nudge and
truncating division), independently of the C's shortcuts, so agreement is a real check.

All arrays here are *unpacked* integers (use :mod:`tfmot_edgeplus.core.packing` for
the packed storage). Argument errors raise :class:`ConvArgumentError`, which carries the C
status the kernel returns for the same arguments and the name of the offending argument.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from tfmot_edgeplus.core.intmath import (
    INT32_MAX,
    SUPPORTED_BITS,
    int_range,
    multiply_by_quantized_multiplier,
    wrap32,
)

__all__ = [
    "ConvArgumentError",
    "ConvParams",
    "Window",
    "check_conv_args",
    "conv2d",
    "conv2d_accumulators",
    "conv_geometry",
    "conv_input_region",
    "depthwise_conv2d",
    "make_conv_params",
    "max_kc",
    "requantize",
]

Window = tuple[int, int, int, int]
"""``(y, x, h, w)``: rows ``[y, y+h)`` and cols ``[x, x+w)`` of a tensor."""


class ConvArgumentError(ValueError):
    """Invalid kernel arguments; ``status`` is the C status name, ``argument`` the culprit."""

    def __init__(self, status: str, argument: str, message: str):
        super().__init__(f"{status}: {argument}: {message}")
        self.status = status
        self.argument = argument


@dataclasses.dataclass(frozen=True)
class ConvParams:
    """Python twin of ``edgeplus_conv_params`` (same field names and meaning)."""

    stride_h: int = 1
    stride_w: int = 1
    pad_h: int = 0
    pad_w: int = 0
    dilation_h: int = 1
    dilation_w: int = 1
    input_zero_point: int = 0
    output_zero_point: int = 0
    act_min: int = -128
    act_max: int = 127
    in_bits: int = 8
    w_bits: int = 8
    out_bits: int = 8
    bias_frac_bits: int = 0  # the bias counts 2**-bias_frac_bits accumulator steps

    def replace(self, **changes) -> ConvParams:
        return dataclasses.replace(self, **changes)


MAX_BIAS_FRAC_BITS = 16  # EDGEPLUS_MAX_BIAS_FRAC_BITS


def max_kc(in_bits: int, w_bits: int, bias_frac_bits: int = 0) -> int:
    """Largest K*C whose int32 accumulator cannot overflow, also times
    ``2**bias_frac_bits`` (``EDGEPLUS_MAX_KC(in_bits, w_bits) >> bias_frac_bits``)."""
    return (INT32_MAX // (((1 << in_bits) - 1) * (1 << (w_bits - 1)))) >> bias_frac_bits


# ----------------------------------------------------------------------------- requant


def requantize(acc, bias, multiplier, shift, params: ConvParams) -> np.ndarray:
    """int32 accumulators (channels last) -> output integers at ``params.out_bits``: the
    requantization reads ``acc * 2**params.bias_frac_bits + bias``."""
    acc = np.asarray(acc, dtype=np.int64) << params.bias_frac_bits
    if bias is not None:
        acc = wrap32(acc + np.asarray(bias, dtype=np.int64))
    y = multiply_by_quantized_multiplier(acc, multiplier, shift) + params.output_zero_point
    return np.clip(y, params.act_min, params.act_max).astype(np.int8)


# ----------------------------------------------------------------------------- geometry


def _pair(v, name: str) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    if isinstance(v, Sequence) and len(v) == 2:
        return int(v[0]), int(v[1])
    raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}")


def conv_geometry(input_hw, kernel_hw, stride=1, padding="SAME", dilation=1):
    """TFLite's output size and top/left padding.

    ``padding`` is ``"SAME"``, ``"VALID"`` or explicit ``(pad_h, pad_w)`` (then the output
    size assumes the same padding at the bottom/right). Returns
    ``((out_h, out_w), (pad_h, pad_w))``.
    """
    ih, iw = _pair(input_hw, "input_hw")
    kh, kw = _pair(kernel_hw, "kernel_hw")
    sh, sw = _pair(stride, "stride")
    dh, dw = _pair(dilation, "dilation")
    out, pads = [], []
    for i, k, s, d in ((ih, kh, sh, dh), (iw, kw, sw, dw)):
        eff = (k - 1) * d + 1
        if isinstance(padding, str):
            mode = padding.upper()
            if mode == "SAME":
                o = (i + s - 1) // s
            elif mode == "VALID":
                o = (i + s - eff) // s
            else:
                raise ValueError(
                    f"padding must be 'SAME', 'VALID' or (pad_h, pad_w), got {padding!r}"
                )
            total = max((o - 1) * s + eff - i, 0)
            p = total // 2
        else:
            p = _pair(padding, "padding")[len(out)]
            o = (i + 2 * p - eff) // s + 1
        if o < 1:
            raise ValueError(
                f"input {i} is smaller than the effective kernel {eff} (padding {padding!r})"
            )
        out.append(o)
        pads.append(p)
    return (out[0], out[1]), (pads[0], pads[1])


def make_conv_params(
    input_hw,
    kernel_hw,
    *,
    stride=1,
    padding="SAME",
    dilation=1,
    in_bits=8,
    w_bits=8,
    out_bits=8,
    input_zero_point=0,
    output_zero_point=0,
    act_min=None,
    act_max=None,
    bias_frac_bits=0,
):
    """Build ``(ConvParams, output_hw)`` the way TFLite lays out a conv.

    ``act_min``/``act_max`` default to the full range of ``out_bits`` (no fused activation).
    """
    (oh, ow), (ph, pw) = conv_geometry(input_hw, kernel_hw, stride, padding, dilation)
    sh, sw = _pair(stride, "stride")
    dh, dw = _pair(dilation, "dilation")
    lo, hi = int_range(out_bits) if out_bits in SUPPORTED_BITS else (-128, 127)
    params = ConvParams(
        stride_h=sh,
        stride_w=sw,
        pad_h=ph,
        pad_w=pw,
        dilation_h=dh,
        dilation_w=dw,
        input_zero_point=int(input_zero_point),
        output_zero_point=int(output_zero_point),
        act_min=lo if act_min is None else int(act_min),
        act_max=hi if act_max is None else int(act_max),
        in_bits=int(in_bits),
        w_bits=int(w_bits),
        out_bits=int(out_bits),
        bias_frac_bits=int(bias_frac_bits),
    )
    return params, (oh, ow)


def _span(o0, count, stride, pad, k, dil, size):
    a = o0 * stride - pad
    b = (o0 + count - 1) * stride - pad + (k - 1) * dil
    a, b = max(a, 0), min(b, size - 1)
    return a, (b - a + 1 if b >= a else 0)


def conv_input_region(params: ConvParams, input_hw, kernel_hw, window: Window) -> Window:
    """Input rows/cols (clipped to the input) that output ``window`` reads."""
    ih, iw = _pair(input_hw, "input_hw")
    kh, kw = _pair(kernel_hw, "kernel_hw")
    y, x, h, w = (int(v) for v in window)
    dh = params.dilation_h or 1
    dw = params.dilation_w or 1
    ry, rh = _span(y, h, params.stride_h, params.pad_h, kh, dh, ih)
    rx, rw = _span(x, w, params.stride_w, params.pad_w, kw, dw, iw)
    if rh == 0 or rw == 0:
        raise ConvArgumentError("EDGEPLUS_ERR_WINDOW", "window", f"{window} reads no input")
    return ry, rx, rh, rw


# ----------------------------------------------------------------------------- checks


def _window_inside(win, h, w) -> bool:
    y, x, wh, ww = win
    return wh > 0 and ww > 0 and y >= 0 and x >= 0 and y + wh <= h and x + ww <= w


def _contains(outer, inner) -> bool:
    return (
        inner[0] >= outer[0]
        and inner[1] >= outer[1]
        and inner[0] + inner[2] <= outer[0] + outer[2]
        and inner[1] + inner[3] <= outer[1] + outer[3]
    )


def check_conv_args(
    params: ConvParams,
    input_shape,
    filter_shape,
    output_shape,
    *,
    depthwise: bool = False,
    multiplier=None,
    shift=None,
    window: Window | None = None,
    input_region: Window | None = None,
    output_region: Window | None = None,
) -> None:
    """Raise :class:`ConvArgumentError` exactly where the C kernel returns an error.

    Checks run in the C's order, so the status matches the C's for the same arguments.
    Shapes are NHWC / OHWI (1HWO for depthwise) tuples of the LOGICAL tensors.
    """

    def err(status, arg, msg):
        raise ConvArgumentError(f"EDGEPLUS_ERR_{status}", arg, msg)

    p = params
    for name in ("in_bits", "w_bits", "out_bits"):
        if getattr(p, name) not in SUPPORTED_BITS:
            err("BITS", name, f"must be one of {SUPPORTED_BITS}, got {getattr(p, name)}")
    for name, shape in (("input", input_shape), ("filter", filter_shape), ("output", output_shape)):
        if len(shape) != 4 or any(int(d) <= 0 for d in shape) or math.prod(shape) > INT32_MAX:
            err("DIMS", f"{name} shape", f"must be 4 positive dims (NHWC/OHWI), got {tuple(shape)}")
    n, ih, iw, ic = (int(d) for d in input_shape)
    fo, kh, kw, fc = (int(d) for d in filter_shape)
    on, oh, ow, oc = (int(d) for d in output_shape)
    for name in ("stride_h", "stride_w"):
        if getattr(p, name) < 1:
            err("ARG", name, f"must be >= 1, got {getattr(p, name)}")
    for name in ("pad_h", "pad_w", "dilation_h", "dilation_w"):
        if getattr(p, name) < 0:
            err("ARG", name, f"must be >= 0, got {getattr(p, name)}")
    for name, bits in (
        ("input_zero_point", p.in_bits),
        ("output_zero_point", p.out_bits),
        ("act_min", p.out_bits),
        ("act_max", p.out_bits),
    ):
        lo, hi = int_range(bits)
        if not lo <= getattr(p, name) <= hi:
            err("ARG", name, f"must lie in [{lo}, {hi}] at {bits} bits, got {getattr(p, name)}")
    if p.act_min > p.act_max:
        err("ARG", "act_min", f"act_min {p.act_min} > act_max {p.act_max}")
    if on != n:
        err("DIMS", "output shape", f"batch {on} != input batch {n}")
    if depthwise:
        if fo != 1 or fc != ic or oc != ic:
            err(
                "DIMS",
                "filter shape",
                f"depthwise needs filter 1HWO with O == input channels == output channels "
                f"(multiplier 1); got filter {tuple(filter_shape)}, input C={ic}, output C={oc}",
            )
        kc = kh * kw
    else:
        if fc != ic or fo != oc:
            err(
                "DIMS",
                "filter shape",
                f"OHWI filter {tuple(filter_shape)} needs I == input C ({ic}) "
                f"and O == output C ({oc})",
            )
        kc = kh * kw * fc
    if not 0 <= p.bias_frac_bits <= MAX_BIAS_FRAC_BITS:
        err("ARG", "bias_frac_bits",
            f"must lie in [0, {MAX_BIAS_FRAC_BITS}], got {p.bias_frac_bits}")
    bound = max_kc(p.in_bits, p.w_bits, p.bias_frac_bits)
    if kc > bound:
        err(
            "DIMS",
            "filter shape",
            f"K*C={kc} exceeds the int32 bound {bound} (bias_frac_bits {p.bias_frac_bits})",
        )
    if kh * kw * ic > INT32_MAX // 8:
        err("DIMS", "filter shape", "im2col column too long")
    dh, dw = p.dilation_h or 1, p.dilation_w or 1
    if p.pad_h >= (kh - 1) * dh + 1:
        err("ARG", "pad_h", f"{p.pad_h} >= effective kernel height {(kh - 1) * dh + 1}")
    if p.pad_w >= (kw - 1) * dw + 1:
        err("ARG", "pad_w", f"{p.pad_w} >= effective kernel width {(kw - 1) * dw + 1}")
    if (oh - 1) * p.stride_h - p.pad_h > ih - 1 or (ow - 1) * p.stride_w - p.pad_w > iw - 1:
        err("DIMS", "output shape", f"{tuple(output_shape)} reads past input {tuple(input_shape)}")
    if multiplier is not None or shift is not None:
        m = np.asarray(multiplier).reshape(-1)
        s = np.asarray(shift).reshape(-1)
        if m.size != oc or s.size != oc:
            err("DIMS", "multiplier/shift", f"need {oc} entries, got {m.size}/{s.size}")
        if (m < 0).any():
            err("ARG", "multiplier", f"must be >= 0, got {int(m.min())}")
        if (s > 30).any() or (s < -31).any():
            err("ARG", "shift", f"must lie in [-31, 30], got {s.min()}..{s.max()}")
    in_reg = tuple(input_region) if input_region is not None else (0, 0, ih, iw)
    out_reg = tuple(output_region) if output_region is not None else (0, 0, oh, ow)
    if input_region is not None and not _window_inside(in_reg, ih, iw):
        err("WINDOW", "input_region", f"{in_reg} is not inside the input ({ih}x{iw})")
    if output_region is not None and not _window_inside(out_reg, oh, ow):
        err("WINDOW", "output_region", f"{out_reg} is not inside the output ({oh}x{ow})")
    win = tuple(window) if window is not None else (0, 0, oh, ow)
    if not _window_inside(win, oh, ow):
        err("WINDOW", "window", f"{win} is not inside the output ({oh}x{ow})")
    if not _contains(out_reg, win):
        err("WINDOW", "window", f"{win} is not inside output_region {out_reg}")
    need = conv_input_region(p, (ih, iw), (kh, kw), win)
    if not _contains(in_reg, need):
        err(
            "WINDOW",
            "input_region",
            f"{in_reg} does not hold the input rows/cols {need} the window reads",
        )


# ----------------------------------------------------------------------------- kernels


def _accumulate(
    x, w, params, output_hw, window, input_region, input_hw, depthwise, multiplier=None, shift=None
):
    x = np.asarray(x)
    w = np.asarray(w)
    if x.ndim != 4 or w.ndim != 4:
        raise ConvArgumentError("EDGEPLUS_ERR_DIMS", "x/w", "x must be NHWC and w OHWI/1HWO")
    n, rh, rw, c = x.shape
    ih, iw = _pair(input_hw, "input_hw") if input_hw is not None else (rh, rw)
    if input_region is not None and (input_region[2], input_region[3]) != (rh, rw):
        raise ConvArgumentError(
            "EDGEPLUS_ERR_WINDOW", "input_region", f"{input_region} does not match x {x.shape}"
        )
    oh, ow = _pair(output_hw, "output_hw")
    oc = c if depthwise else w.shape[0]
    check_conv_args(
        params,
        (n, ih, iw, c),
        w.shape,
        (n, oh, ow, oc),
        depthwise=depthwise,
        multiplier=multiplier,
        shift=shift,
        window=window,
        input_region=input_region,
    )
    wy, wx, wh, ww = window if window is not None else (0, 0, oh, ow)
    ry, rx = (input_region[0], input_region[1]) if input_region is not None else (0, 0)
    p = params
    dh, dw = p.dilation_h or 1, p.dilation_w or 1
    kh, kw = w.shape[1], w.shape[2]
    xs = x.astype(np.int64) - p.input_zero_point
    acc = np.zeros((n, wh, ww, oc), dtype=np.int64)
    oy = np.arange(wy, wy + wh)
    ox = np.arange(wx, wx + ww)
    wt = w.astype(np.int64)
    for ky in range(kh):
        iy = oy * p.stride_h - p.pad_h + ky * dh
        vy = (iy >= 0) & (iy < ih)
        for kx in range(kw):
            ix = ox * p.stride_w - p.pad_w + kx * dw
            vx = (ix >= 0) & (ix < iw)
            patch = np.zeros((n, wh, ww, c), dtype=np.int64)
            sel = xs[:, (iy[vy] - ry)][:, :, (ix[vx] - rx)]
            patch[:, np.flatnonzero(vy)[:, None], np.flatnonzero(vx)[None, :]] = sel
            if depthwise:
                acc += patch * wt[0, ky, kx, :]
            else:
                acc += np.tensordot(patch, wt[:, ky, kx, :], axes=([3], [1]))
    if (np.abs(acc) > INT32_MAX).any():  # pragma: no cover - excluded by max_kc
        raise AssertionError("int32 accumulator overflow despite the K*C bound")
    return acc


def conv2d_accumulators(
    x,
    w,
    params: ConvParams,
    *,
    output_hw,
    window=None,
    input_region=None,
    input_hw=None,
    depthwise=False,
) -> np.ndarray:
    """The int32 accumulators ``sum w * (x - input_zp)`` of the output window (no bias)."""
    return _accumulate(x, w, params, output_hw, window, input_region, input_hw, depthwise)


def _conv(
    x, w, bias, multiplier, shift, params, output_hw, window, input_region, input_hw, depthwise
):
    acc = _accumulate(
        x, w, params, output_hw, window, input_region, input_hw, depthwise, multiplier, shift
    )
    return requantize(acc, bias, np.asarray(multiplier), np.asarray(shift), params)


def conv2d(
    x,
    w,
    bias,
    multiplier,
    shift,
    params: ConvParams,
    *,
    output_hw,
    window=None,
    input_region=None,
    input_hw=None,
) -> np.ndarray:
    """Reference low-bit Conv2D; returns the output ``window`` (default: all) as int8.

    ``x``: NHWC integers (the whole input, or the ``input_region`` buffer, then
    ``input_hw`` is the logical input size); ``w``: OHWI integers; ``bias``: int32 per
    output channel or None; ``multiplier``/``shift``: per output channel (TFLite form).
    """
    return _conv(
        x,
        w,
        bias,
        multiplier,
        shift,
        params,
        output_hw,
        window,
        input_region,
        input_hw,
        depthwise=False,
    )


def depthwise_conv2d(
    x,
    w,
    bias,
    multiplier,
    shift,
    params: ConvParams,
    *,
    output_hw,
    window=None,
    input_region=None,
    input_hw=None,
) -> np.ndarray:
    """Reference depthwise Conv2D (multiplier 1, filter 1HWO); see :func:`conv2d`."""
    return _conv(
        x,
        w,
        bias,
        multiplier,
        shift,
        params,
        output_hw,
        window,
        input_region,
        input_hw,
        depthwise=True,
    )
