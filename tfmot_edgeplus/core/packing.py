"""Packing of low-bit integer tensors: the one layout shared by Python and tflm_ops.

Integers at ``bits`` bits are signed two's complement in ``[-2**(bits-1), 2**(bits-1)-1]``.

* 8 bits: one value per byte.
* 4 bits: two values per byte, LOW nibble first (element ``2i`` in bits 0..3 of byte ``i``,
  element ``2i+1`` in bits 4..7): TFLite's INT4 convention.
* 2 bits: four values per byte, lowest bits first (element ``4i+k`` in bits ``2k..2k+1``).

Packing runs over the flat (C-order) index of the whole array: NHWC activations, OHWI conv
filters, 1HWO depthwise filters. An odd tail is padded with zero bits. Packed buffers are
``np.int8`` arrays, like the C API (``int8_t *``) and TFLite's INT4 buffers.
This module is the NumPy twin of ``tflm_ops/src/edgeplus_pack*.c``.
"""

from __future__ import annotations

import numpy as np

from tfmot_edgeplus.core.intmath import check_bits, int_range

__all__ = [
    "pack",
    "pack_int2",
    "pack_int4",
    "packed_nbytes",
    "unpack",
    "unpack_int2",
    "unpack_int4",
]


def packed_nbytes(count: int, bits: int) -> int:
    """Bytes holding ``count`` values at ``bits`` bits: ``ceil(count * bits / 8)``."""
    bits = check_bits(bits)
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return (count * bits + 7) // 8


def _as_int_array(values, bits: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"values must be an integer array, got dtype {arr.dtype}")
    flat = arr.reshape(-1).astype(np.int64)
    lo, hi = int_range(bits)
    if flat.size and (flat.min() < lo or flat.max() > hi):
        bad = int(np.flatnonzero((flat < lo) | (flat > hi))[0])
        raise ValueError(
            f"values must lie in [{lo}, {hi}] for {bits}-bit packing; "
            f"flat index {bad} holds {int(flat[bad])}"
        )
    return flat


def pack(values, bits: int) -> np.ndarray:
    """Pack integer ``values`` (any shape, flattened in C order) at ``bits`` bits."""
    bits = check_bits(bits)
    flat = _as_int_array(values, bits)
    if bits == 8:
        return flat.astype(np.int8)
    per_byte = 8 // bits
    n = flat.size
    padded = np.zeros(packed_nbytes(n, bits) * per_byte, dtype=np.uint8)
    padded[:n] = (flat & ((1 << bits) - 1)).astype(np.uint8)
    fields = padded.reshape(-1, per_byte)
    out = np.zeros(fields.shape[0], dtype=np.uint8)
    for k in range(per_byte):
        out |= fields[:, k] << np.uint8(k * bits)
    return out.view(np.int8)


def unpack(packed, bits: int, count: int | None = None) -> np.ndarray:
    """Unpack ``count`` values (default: all the bytes hold) into a flat int8 array."""
    bits = check_bits(bits)
    raw = np.asarray(packed).reshape(-1)
    if raw.dtype not in (np.int8, np.uint8):
        raise TypeError(f"packed must be an int8 or uint8 array, got dtype {raw.dtype}")
    raw = raw.view(np.uint8)
    per_byte = 8 // bits
    capacity = raw.size * per_byte
    if count is None:
        count = capacity
    if count < 0 or count > capacity:
        raise ValueError(f"count={count} is outside [0, {capacity}] for {raw.size} bytes")
    if bits == 8:
        return raw[:count].view(np.int8).copy()
    mask = (1 << bits) - 1
    sign = 1 << (bits - 1)
    fields = np.stack([(raw >> np.uint8(k * bits)) & np.uint8(mask) for k in range(per_byte)], 1)
    u = fields.reshape(-1)[:count].astype(np.int16)
    return ((u ^ sign) - sign).astype(np.int8)


def pack_int4(values) -> np.ndarray:
    """Two values per byte, low nibble first (TFLite INT4)."""
    return pack(values, 4)


def unpack_int4(packed, count: int | None = None) -> np.ndarray:
    return unpack(packed, 4, count)


def pack_int2(values) -> np.ndarray:
    """Four values per byte, lowest bits first."""
    return pack(values, 2)


def unpack_int2(packed, count: int | None = None) -> np.ndarray:
    return unpack(packed, 2, count)
