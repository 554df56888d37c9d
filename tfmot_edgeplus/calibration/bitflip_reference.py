"""NumPy reference of QCore's on-device bit-flip step (``edgeplus_bitflip_apply`` in C).

The bit-flip network outputs an update tensor of -1/0/+1 shaped like a layer's integer
weights; the device adds it and saturates to the bit-width's narrow symmetric range
``[-(2**(b-1)-1), 2**(b-1)-1]`` (every result lies in that range, so a stored
``-2**(b-1)`` becomes ``-(2**(b-1)-1)`` even under a 0 update). Bit-exact with the C.
"""

from __future__ import annotations

import numpy as np

from tfmot_edgeplus.core.intmath import check_bits, narrow_range
from tfmot_edgeplus.core.packing import pack, unpack

__all__ = ["bitflip_apply", "bitflip_apply_packed"]


def _check_update(update, shape) -> np.ndarray:
    u = np.asarray(update)
    if u.dtype.kind not in "iu":
        raise TypeError(f"update must be an integer array, got dtype {u.dtype}")
    if u.shape != tuple(shape):
        raise ValueError(f"update shape {u.shape} != weights shape {tuple(shape)}")
    if u.size and (u.min() < -1 or u.max() > 1):
        bad = int(np.flatnonzero((u < -1) | (u > 1))[0])
        raise ValueError(
            f"update values must be -1, 0 or +1; flat index {bad} holds {int(u.reshape(-1)[bad])}"
        )
    return u.astype(np.int64)


def bitflip_apply(weights, update, bits: int) -> tuple[np.ndarray, int]:
    """Return ``(new_weights, changed)`` for unpacked integer weights at ``bits`` bits."""
    bits = check_bits(bits)
    w = np.asarray(weights)
    if w.dtype.kind not in "iu":
        raise TypeError(f"weights must be an integer array, got dtype {w.dtype}")
    u = _check_update(update, w.shape)
    lo, hi = narrow_range(bits)
    new = np.clip(w.astype(np.int64) + u, lo, hi)
    changed = int(np.count_nonzero(new != w))
    return new.astype(np.int8), changed


def bitflip_apply_packed(packed, update, bits: int) -> tuple[np.ndarray, int]:
    """Same on packed weights (``update`` flat or shaped, ``update.size`` values)."""
    u = np.asarray(update).reshape(-1)
    w = unpack(packed, bits, u.size)
    new, changed = bitflip_apply(w, u, bits)
    out = np.asarray(packed).reshape(-1).view(np.int8).copy()
    repacked = pack(new, bits)
    out[: repacked.size] = repacked
    if bits != 8 and (u.size * bits) % 8:
        # keep the tail bits of the last byte that the values do not cover
        used = (u.size * bits) % 8
        keep = np.uint8((0xFF << used) & 0xFF)
        last = repacked.size - 1
        orig = np.asarray(packed).reshape(-1).view(np.uint8)[last]
        out.view(np.uint8)[last] = (repacked.view(np.uint8)[last] & ~keep) | (orig & keep)
    return out, changed
