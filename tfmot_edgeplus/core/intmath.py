"""Integer arithmetic every layer shares: bit-width ranges, TFLite's fixed-point
requantization (gemmlowp's ``SaturatingRoundingDoublingHighMul``, ``RoundingDivideByPOT``,
``MultiplyByQuantizedMultiplier``, ``QuantizeMultiplier``) and TFLite's QUANTIZE/DEQUANTIZE.

The NumPy twin of ``tflm_ops/src/edgeplus_support.h``; vectorised throughout.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
SUPPORTED_BITS = (2, 4, 8)

__all__ = [
    "INT32_MAX",
    "INT32_MIN",
    "SUPPORTED_BITS",
    "check_bits",
    "dequantize",
    "int_range",
    "low_bit_params",
    "multiply_by_quantized_multiplier",
    "narrow_range",
    "quantize",
    "quantize_multiplier",
    "round_half_away",
    "rounding_divide_by_pot",
    "saturating_rounding_doubling_high_mul",
    "wrap32",
]


def check_bits(bits: int, name: str = "bits") -> int:
    """Return ``bits`` as int, or raise ValueError naming the argument."""
    if isinstance(bits, bool) or int(bits) != bits or int(bits) not in SUPPORTED_BITS:
        raise ValueError(f"{name} must be one of {SUPPORTED_BITS}, got {bits!r}")
    return int(bits)


def int_range(bits: int) -> tuple[int, int]:
    """Full signed range ``(-2**(b-1), 2**(b-1)-1)``."""
    bits = check_bits(bits)
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def narrow_range(bits: int) -> tuple[int, int]:
    """Symmetric (narrow) range ``(-(2**(b-1)-1), 2**(b-1)-1)`` used for weights."""
    lo, hi = int_range(bits)
    return lo + 1, hi


def wrap32(x: np.ndarray) -> np.ndarray:
    """Wrap int64 values to int32 two's complement (C's int32 overflow on the M4)."""
    x = np.asarray(x, dtype=np.int64)
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def saturating_rounding_doubling_high_mul(a, b) -> np.ndarray:
    """gemmlowp/TFLite ``SaturatingRoundingDoublingHighMul`` on int32 values."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    overflow = (a == b) & (a == INT32_MIN)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    s = ab + nudge
    # C integer division truncates toward zero.
    q = np.where(s >= 0, s // (1 << 31), -((-s) // (1 << 31)))
    return np.where(overflow, INT32_MAX, q).astype(np.int64)


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    """gemmlowp/TFLite ``RoundingDivideByPOT`` (round half away from zero)."""
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def multiply_by_quantized_multiplier(acc, multiplier, shift) -> np.ndarray:
    """TFLite ``MultiplyByQuantizedMultiplier`` (reference kernels, double rounding).

    The left shift wraps at 32 bits like the hardware (TFLite leaves it undefined).
    """
    acc = np.asarray(acc, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    x = wrap32(acc << left)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, multiplier), right)


def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """TFLite ``QuantizeMultiplier``: ``real = multiplier * 2**(shift - 31)``."""
    if real_multiplier < 0:
        raise ValueError(f"real_multiplier must be >= 0, got {real_multiplier}")
    if real_multiplier == 0.0:
        return 0, 0
    q, shift = math.frexp(real_multiplier)
    # TfLiteRound rounds half away from zero (Python's round() would round half to even);
    # q * 2**31 is exact in binary64.
    q_fixed = math.floor(q * (1 << 31) + 0.5)
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        shift, q_fixed = 30, (1 << 31) - 1
    return q_fixed, shift


def round_half_away(x) -> int:
    """Round a scalar to the nearest integer, halves away from zero (C's ``round``)."""
    return int(math.floor(abs(float(x)) + 0.5) * (1 if x >= 0 else -1))


def low_bit_params(bits: int, value_range) -> tuple[float, int]:
    """``(scale_b, zp_b)`` of a tensor at ``bits`` < 8 quantized on ``value_range = (lo, hi)``
    (widened to contain 0), computed in float32 as TF's fake quantization nudges its range:
    ``scale_b = (hi - lo) / (2**bits - 1)``, ``zp_b = round(qmin - lo / scale_b)`` clamped to
    the ``bits``-bit range."""
    lo, hi = (float(v) for v in value_range)
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi <= lo:
        raise ValueError(f"empty value range {value_range} for a {bits}-bit tensor")
    qmin, qmax = int_range(bits)
    sb = np.float32((hi - lo) / ((1 << bits) - 1))
    zb = round_half_away(np.float32(qmin) - np.float32(lo) / sb)
    return float(sb), int(min(max(zb, qmin), qmax))


def quantize(x, scale, zero_point, dtype) -> np.ndarray:
    """Quantize float ``x`` to integer ``dtype`` exactly like TFLite's QUANTIZE kernel.

    ``q = clamp(round(float32(x) / float32(scale)) + zero_point, dtype min, dtype max)`` with
    rounding half away from zero (``std::round``). ``scale``/``zero_point`` are scalars, or
    arrays broadcastable against ``x`` for per-channel parameters.
    """
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu":
        raise ValueError(f"quantize: dtype must be an integer type, got {dtype}")
    x = np.asarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(
            f"quantize: input has a non-finite value ({x[tuple(bad)]}) at index {tuple(bad)}"
        )
    scale = np.asarray(scale, dtype=np.float32)
    if (scale <= 0).any() or not np.isfinite(scale).all():
        raise ValueError(f"quantize: scale must be positive and finite, got {scale}")
    ratio = (x / scale).astype(np.float64)  # float32 division as in C, then exact rounding
    rounded = np.trunc(ratio + np.copysign(0.5, ratio))
    info = np.iinfo(dtype)
    q = np.clip(rounded + np.asarray(zero_point, dtype=np.float64), info.min, info.max)
    return q.astype(dtype)


def dequantize(q, scale, zero_point) -> np.ndarray:
    """``(q - zero_point) * scale`` in float32 (TFLite's DEQUANTIZE)."""
    q = np.asarray(q)
    diff = q.astype(np.int32) - np.asarray(zero_point, dtype=np.int32)
    return (diff.astype(np.float32) * np.asarray(scale, dtype=np.float32)).astype(np.float32)
