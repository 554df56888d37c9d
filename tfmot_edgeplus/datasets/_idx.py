"""Reader of the IDX format (MNIST, Fashion-MNIST), with NumPy only.

Format (http://yann.lecun.com/exdb/mnist/): a 4-byte magic number ``00 00 TT DD`` where
``TT`` is the element type code and ``DD`` the number of dimensions, then ``DD`` big-endian
uint32 sizes, then the elements in C order (big-endian when wider than a byte). Files may be
gzip-compressed (name ending in ``.gz``).

Every inconsistency (bad magic, unknown type, header or payload shorter or longer than the
sizes say, a damaged gzip stream) raises :class:`DatasetCorruptError` naming the file.
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from ._errors import DatasetCorruptError

__all__ = ["IDX_DTYPES", "parse_idx", "read_idx"]

# type code -> big-endian numpy dtype
IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(data: bytes, name: str = "<bytes>", fix: str = "") -> np.ndarray:
    """Parse the bytes of an (uncompressed) IDX file into an array.

    ``name`` and ``fix`` only feed the error message.
    """
    hint = f" {fix}" if fix else ""
    if len(data) < 4:
        raise DatasetCorruptError(
            f"{name}: only {len(data)} bytes, too short for an IDX header (4-byte magic)." + hint
        )
    zero0, zero1, type_code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0 or type_code not in IDX_DTYPES or ndim == 0:
        raise DatasetCorruptError(
            f"{name}: bad IDX magic number 0x{data[:4].hex()} (expected 0x0000TTDD with a "
            f"known type TT in {sorted(hex(k) for k in IDX_DTYPES)} and DD >= 1 dimensions)." + hint
        )
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DatasetCorruptError(
            f"{name}: header announces {ndim} dimensions but the file ends after "
            f"{len(data)} bytes." + hint
        )
    shape = tuple(int(s) for s in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    payload = len(data) - header_len
    if payload != expected:
        raise DatasetCorruptError(
            f"{name}: header says shape {shape} of {dtype.name} ({expected} bytes of data) but "
            f"the file holds {payload} bytes after the header (truncated or damaged)." + hint
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | os.PathLike, fix: str = "") -> np.ndarray:
    """Read an IDX file (gzip-compressed if its name ends in ``.gz``) into an array."""
    path = os.fspath(path)
    hint = f" {fix}" if fix else ""
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DatasetCorruptError(
            f"{path}: damaged gzip stream ({type(exc).__name__}: {exc})." + hint
        ) from exc
    return parse_idx(data, name=path, fix=fix)
