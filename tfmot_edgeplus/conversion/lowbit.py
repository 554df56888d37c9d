"""Store 1-, 2- and 3-bit weights of a converted .tflite in 1, 2 or 3 bits per weight.

TF 2.21 writes 2- and 3-bit CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED filters into
the 4-bit container (TFLite INT4, two weights per byte). This module rewrites chosen
filters into **TFLite Micro's LUT compression**: a bitstream of ``bits``-wide indices plus
one small value table per quantization channel, decoded at run time by TFLM's own
``TFLM_DECODE`` operator.

Why TFLM's LUT format and not our own packed format read by our own ops
------------------------------------------------------------------------
Checked against the pinned TFLM (commit 90b983c, the ``tflite-micro`` wheel we pin):

* The pinned TFLM compresses by inserting a ``TFLM_DECODE`` custom operator in front of
  each consumer of a compressed tensor (``compression/decode_insert.py``); the kernel
  (``micro/kernels/decode.cc``, ``decode_state_lut.cc``) writes the decoded int8 filter
  into the arena, and the unchanged CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED kernels
  (CMSIS-NN on the Cortex-M4) read it. Every op resolver registers it with ``AddDecode()``;
  the Python interpreter always does (``python/tflite_micro/python_ops_resolver.cc``).
  (The older per-kernel path, ``COMPRESSION_METADATA`` + ``USE_TFLM_COMPRESSION``, is gone
  from the wheel: ``python/tflite_micro/test_compression_unsupported.py``.)
* It is lossless: the table of a channel holds exactly the int8 values the converter
  wrote, so TFLM outputs are bit-identical to the uncompressed model (our tests check it).
* No conv / depthwise / FC kernels of our own to write and keep bit-exact with TFLite's.

Costs, stated plainly: the decoded int8 filter of the layer about to run occupies the
arena for that one operator (the memory planner gives it a one-operator lifetime), unless
the application hands TFLM alternate decompression memory
(``MicroInterpreter::SetDecompressionMemory``; Python: ``alt_decompression_memory_size``).
TFLM's INT4 path pays the same: it unpacks INT4 filters into an int8 scratch buffer.
``TFLM_DECODE`` re-decodes on every ``Invoke`` (time, not memory). On the device the
sketch's op resolver must call ``AddDecode()``.

Formats (from the pinned TFLM sources)
--------------------------------------
* Indices: one MSB-first bitstream over the whole tensor in row-major order, not
  restarted per channel. ``micro/kernels/decode_state_lut.cc``: ``GetNextTableIndexWidth3``
  returns ``indices[0] >> 5`` for element 0 and ``GetNextTableIndexWidth4`` the high nibble
  for even elements; ``compression/lut.py`` ``pack_indices`` writes it with a big-endian
  ``bitarray``. Size: ``ceil(n * bits / 8)`` bytes.
* Ancillary ("table") tensor, UINT8: 16-byte DECODE common metadata (``compression/decode.py``:
  byte 0 decode type 0 = LUT, byte 1 version 1, byte 4 LUT version 1, byte 5 index bits,
  byte 6 table stride) followed by ``channels * stride`` int8 values, ``stride`` = the most
  distinct values any channel has. Channels are the tensor's quantization channels:
  axis 0 for CONV_2D and per-channel FULLY_CONNECTED, the last axis for DEPTHWISE_CONV_2D
  (``decode_state_lut.cc`` ``use_alternate_axis_``), one table for per-tensor weights.
* The compression tool cannot read INT4 tensors (``compression/tensor_type.py`` has no
  INT4 dtype) and ``TFLM_DECODE`` cannot output INT4 (``DecodeStateLut::Decode``), so INT4
  filters are first unpacked to INT8, low nibble first, as TFLite does
  (``tensorflow/lite/kernels/internal/portable_tensor_utils.cc``,
  ``UnpackDenseInt4IntoInt8``).
* Buffers are re-aligned with the wheel's C++ aligner, as ``compression/compress.py``
  does: the decoders read the index stream 32/64 bits at a time.

We drive the wheel's own pieces (``model_editor``, ``lut.LutCompressor``,
``decode_insert``, the aligner) rather than its ``compress()`` front end so that one pass
does the INT4 unpacking, the checks with errors that name the Keras layer, and leaves the
two tensors TFLM adds per compressed filter unnamed (names cost flash and TFLM never reads
them). Nothing is copied from TFLM into this package.

4-bit weights are not touched: TFLite INT4 already stores them in ``ceil(n / 2)`` bytes, and a
4-bit LUT would only add its table.

Exact levels (:func:`restore_int4_levels`, a step of its own before packing): TF 2.21 maps a
``b``-bit fake-quant range ``[-L*s, L*s]`` (``L = 2**(b-1) - 1``) onto INT4's ``[-7, 7]``,
i.e. stores ``round(7 * level / L)`` with scale ``L * s / 7``. For 3 bits (``L = 3``) the
stored values leave the quantizer's grid: levels -3..3 become -7, -5, -2, 0, 2, 5, 7 (levels 1
and 2 off by 14 % / 7 %), and the converted model drifts from the Keras fake-quant model
(measured: 98.6 % -> 100 % class agreement once restored, 3-bit digits CNN). We store the
levels themselves, multiply the filter scale by ``7 / L`` and the int32 bias by ``L / 7``
(rounded: half a unit of the bias scale, far below one output step).

Flash overhead beyond data + table: each packed tensor adds a DECODE operator, a decoded
tensor (shape + quantization) and an ancillary tensor to the graph, about 200-250 bytes;
``skip_if_not_smaller`` compares data + table only.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from tfmot_edgeplus.core import tflite
from tfmot_edgeplus.core.packing import pack_int4

__all__ = [
    "FILTER_OPS",
    "LowBitStorageError",
    "describe_weights",
    "lut_storage_bytes",
    "pack_lowbit_weights",
    "restore_int4_levels",
    "weight_bytes",
]

#: Builtin operators whose input 1 is the weight tensor this module describes / packs.
FILTER_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")

#: Index widths this module writes. 4 and 8 stay TFLite INT4 / INT8 (see module doc).
LUT_BITS = (1, 2, 3)

_DECODE_OP = "TFLM_DECODE"  # compression/decode_insert.py DECODE_CUSTOM_OP_NAME
_DCM_BYTES = 16  # compression/decode.py: DECODE common metadata size
_DCM_TYPE_LUT = 0
_DCM_BITS_OFFSET = 5  # decode_state_lut.h kDcmParamsOffset (low 3 bits: index width)
_DCM_STRIDE_OFFSET = 6  # decode_state_lut.h kDcmValueTableStrideOffset
_QAT_PREFIX = "quant_"  # TF-MOT's QuantizeWrapper names a layer "quant_<layer name>"


class LowBitStorageError(ValueError):
    """A model or a request cannot be stored in low-bit LUT form; the message says why."""


def _compression():
    """The pinned TFLM wheel's LUT compressor, DECODE inserter and compression spec (lazily:
    they pull numpy and bitarray only; TensorFlow is never imported by this module)."""
    try:
        from tflite_micro.tensorflow.lite.micro.compression import decode_insert, lut, spec
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            "tfmot_edgeplus.conversion.lowbit needs the pinned TFLM wheel "
            "(pip install --pre 'tflite-micro==0.dev20260820164721'); importing it failed: "
            f"{err}"
        ) from err
    return lut, decode_insert, spec


# ----------------------------------------------------------------------------- reading


def _read(model_bytes: bytes):
    """``model_bytes`` as a checked ``model_editor`` model; a bad model is a
    :class:`LowBitStorageError`."""
    try:
        return tflite.read(model_bytes)
    except tflite.TFLiteModelError as err:
        raise LowBitStorageError(str(err)) from None


class _Site:
    """One weight input of one CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED operator."""

    def __init__(self, sg_index, op_index, op_name, op, weight, decode_op=None, pair=None):
        self.sg_index = sg_index
        self.op_index = op_index
        self.op_name = op_name
        self.op = op
        self.weight = weight  # the tensor the operator reads (a DECODE output when packed)
        self.decode_op = decode_op  # the TFLM_DECODE op producing ``weight``, if any
        self.pair = pair  # (encoded tensor, ancillary tensor) when packed

    @property
    def stored(self):
        """The tensor holding the bytes in flash."""
        return self.pair[0] if self.pair else self.weight

    @property
    def name(self) -> str:
        return self.stored.name or f"<unnamed tensor {self.stored.index}>"


def _sites(model) -> list[_Site]:
    """Constant weight inputs of the filter ops, following TFLM_DECODE back to its inputs."""
    found = []
    for sg_index, sg in enumerate(model.subgraphs):
        producer = {}
        for op in sg.operators:
            for out in op.outputs:
                producer[id(out)] = op
        for op_index, op in enumerate(sg.operators):
            op_name = tflite.editor_op_name(model, op)
            if op_name not in FILTER_OPS or len(op.inputs) < 2 or op.inputs[1] is None:
                continue
            weight = op.inputs[1]
            if weight.buffer is not None and len(weight.buffer.data) > 0:
                found.append(_Site(sg_index, op_index, op_name, op, weight))
                continue
            src = producer.get(id(weight))
            if src is not None and src.custom_code == _DECODE_OP:
                k = next(i for i, t in enumerate(src.outputs) if t is weight)
                pair = tuple(src.inputs[2 * k : 2 * k + 2])
                if len(pair) < 2 or any(t is None or t.buffer is None for t in pair):
                    raise LowBitStorageError(
                        f"{op_name} {op_index} (subgraph {sg_index}) reads its weights from a "
                        f"{_DECODE_OP} operator without its encoded data and table tensors: the "
                        "model is damaged."
                    )
                found.append(_Site(sg_index, op_index, op_name, op, weight, src, pair))
            # else: a weight computed at run time (not a constant): nothing stored.
    return found


def _type_bits(type_name: str) -> int:
    if type_name in ("INT4", "UINT4"):
        return 4
    if type_name == "INT2":
        return 2
    digits = "".join(ch for ch in type_name if ch.isdigit())
    return int(digits) if digits else 8


def _describe_site(site: _Site) -> dict[str, Any]:
    shape = tuple(int(d) for d in site.weight.shape)
    n = int(np.prod(shape)) if shape else 1
    type_name = tflite.type_name(site.weight)
    channels = _channels(site.weight)
    row = {
        "subgraph": site.sg_index,
        "op_index": site.op_index,
        "op": site.op_name,
        "tensor": site.name,
        "shape": shape,
        "type": type_name,
        "n_weights": n,
        "channels": channels,
    }
    if site.pair is None:
        data = len(site.weight.buffer.data)
        row.update(storage="dense", bits=_type_bits(type_name), data_bytes=data, table_bytes=0)
        return row
    encoded, ancillary = site.pair
    adt = ancillary.buffer.data if ancillary.buffer is not None else b""
    if len(adt) < _DCM_BYTES or adt[0] != _DCM_TYPE_LUT:
        kind = adt[0] if adt else None
        row.update(
            storage=f"decode_type_{kind}",
            bits=None,
            data_bytes=len(encoded.buffer.data),
            table_bytes=len(adt),
        )
        return row
    row.update(
        storage="lut",
        bits=adt[_DCM_BITS_OFFSET] & 0x07,
        data_bytes=len(encoded.buffer.data),
        table_bytes=len(adt),
        table_stride=int(adt[_DCM_STRIDE_OFFSET]),
    )
    return row


def _channels(tensor) -> int:
    q = tflite.quantization(tensor)
    return 1 if q is None else len(q.scales)


def describe_weights(model_bytes: bytes) -> list[dict[str, Any]]:
    """Describe how every constant weight tensor of CONV_2D / DEPTHWISE_CONV_2D /
    FULLY_CONNECTED is stored, one dict per operator, in graph order.

    Keys: ``subgraph``, ``op_index``, ``op`` (e.g. ``"CONV_2D"``), ``tensor`` (name of the
    tensor holding the bytes), ``shape``, ``type`` (the TFLite type the kernel computes
    with: ``INT8``, ``INT4``, ``FLOAT32``...), ``storage`` (``"dense"`` or ``"lut"``),
    ``bits`` (stored bits per weight: 8 / 4 / 32 for dense types, the index width for LUT),
    ``n_weights``, ``channels`` (quantization channels), ``data_bytes`` (the weight or index
    buffer), ``table_bytes`` (the LUT ancillary tensor: 16-byte header + value tables; 0 for
    dense) and, for LUT, ``table_stride`` (values per channel table).
    """
    model = _read(model_bytes)
    return [_describe_site(s) for s in _sites(model)]


def weight_bytes(model_bytes: bytes) -> int:
    """Flash taken by the weights of CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED:
    data + table bytes, each buffer counted once even if several operators share it."""
    model = _read(model_bytes)
    seen: set[int] = set()
    total = 0
    for site in _sites(model):
        tensors = site.pair if site.pair else (site.weight,)
        for t in tensors:
            if t.buffer is not None and id(t.buffer) not in seen:
                seen.add(id(t.buffer))
                total += len(t.buffer.data)
    return total


def lut_storage_bytes(n_weights: int, bits: int, channels: int, levels: int) -> tuple[int, int]:
    """(index bytes, table bytes) of a LUT-packed tensor: ``ceil(n * bits / 8)`` and
    16 + ``channels * levels`` (int8 values), ``levels`` = most distinct values in a channel."""
    return math.ceil(n_weights * bits / 8), _DCM_BYTES + channels * levels


# ----------------------------------------------------------------------------- packing


def _components(tensor_name: str) -> set[str]:
    """Path components of a converter tensor name ("model/quant_conv1/Conv2D;model/...")."""
    return {c for part in tensor_name.split(";") for c in part.split("/") if c}


def _match(sites: list[_Site], key: str) -> _Site:
    """The one weight tensor ``key`` names (see ``pack_lowbit_weights``); a tensor read by
    several operators counts once."""
    unique: dict[int, _Site] = {}
    for s in sites:
        unique.setdefault(id(s.stored), s)
    sites = list(unique.values())
    exact = [s for s in sites if s.stored.name == key]
    if len(exact) == 1:
        return exact[0]
    if not exact:
        exact = [
            s
            for s in sites
            if s.stored.name
            and {key, _QAT_PREFIX + key} & _components(s.stored.name)
        ]
    if len(exact) == 1:
        return exact[0]
    if not exact:
        listing = "\n  ".join(f"{s.op_name}: {s.name}" for s in sites[:30])
        raise LowBitStorageError(
            f"no CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED weight tensor matches {key!r}. "
            "Keys are Keras layer names (matched as a path component 'NAME' or 'quant_NAME' of "
            "the tensor name the converter writes, e.g. 'model/quant_conv1/Conv2D' for layer "
            f"'conv1') or full tensor names. The model's weight tensors are:\n  {listing}"
        )
    listing = "\n  ".join(f"op {s.op_index} {s.op_name}: {s.name}" for s in exact)
    raise LowBitStorageError(
        f"key {key!r} matches {len(exact)} weight tensors; pass the full tensor name of the one "
        f"you mean:\n  {listing}"
    )


def _check_bits(key: str, bits: Any) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise TypeError(
            f"bits for {key!r} must be an int in {LUT_BITS}, got {bits!r} ({type(bits).__name__})."
        )
    bits = int(bits)
    if bits in (4, 8):
        raise LowBitStorageError(
            f"bits={bits} for {key!r}: {bits}-bit weights are already stored in {bits} bits "
            f"(TFLite INT{bits}); a LUT would only add its table. Leave {key!r} out of "
            "bits_by_tensor."
        )
    if bits not in LUT_BITS:
        raise LowBitStorageError(
            f"bits={bits} for {key!r} is not supported: pass one of {LUT_BITS} "
            "(ceil(log2(levels)) of the layer's weight quantizer)."
        )
    return bits


def _int8_values(site: _Site) -> np.ndarray:
    """The weight values as int8 in the tensor's shape (INT4 unpacked low nibble first)."""
    t = site.weight
    type_name = tflite.type_name(t)
    if type_name not in ("INT8", "INT4"):
        raise LowBitStorageError(
            f"tensor {site.name!r} of {site.op_name} is {type_name}; only INT8 and INT4 weights "
            "of a full-integer model can be packed. Convert with a representative dataset and "
            "target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]."
        )
    try:
        return tflite.int_values(t.buffer.data, type_name, t.shape, f"tensor {site.name!r}")
    except tflite.TFLiteModelError as err:
        raise LowBitStorageError(str(err)) from None


def _axis(site: _Site, values: np.ndarray) -> int | None:
    """Channel axis of the value tables, as TFLM's decoder expects it (see module doc)."""
    q = site.weight.quantization
    channels = _channels(site.weight)
    if q is None or channels == 1:
        return None
    axis = q.axis if q.axis is not None else 0
    if axis not in (0, values.ndim - 1) or values.shape[axis] != channels:
        raise LowBitStorageError(
            f"tensor {site.name!r}: {channels} quantization channels on axis {axis} of shape "
            f"{values.shape}; TFLM's LUT decoder supports channels on the first or last axis only."
        )
    return axis


def _check_levels(key: str, site: _Site, values: np.ndarray, axis: int | None, bits: int):
    """Refuse a tensor with more distinct values per channel than 2**bits: it was not
    quantized at that bit-width. Returns the most distinct values of any channel."""
    slices = [values] if axis is None else list(np.moveaxis(values, axis, 0))
    counts = [len(np.unique(s)) for s in slices]
    worst = int(np.argmax(counts))
    if counts[worst] > 2**bits:
        where = "the tensor" if axis is None else f"channel {worst} (axis {axis})"
        need = math.ceil(math.log2(counts[worst]))
        raise LowBitStorageError(
            f"{key!r} ({site.op_name} weight {site.name!r}) has {counts[worst]} distinct values in "
            f"{where}, more than 2**{bits} = {2**bits}: it was not quantized to {bits} bits. "
            f"Quantize that layer with a {bits}-bit weight quantizer, or pass bits={need} "
            f"(or leave it out to keep {'INT4' if counts[worst] <= 16 else 'INT8'} storage)."
        )
    return max(counts)


def _channel_top_levels(key: str, top_levels, channels: int) -> np.ndarray:
    top = np.atleast_1d(np.asarray(top_levels, dtype=np.int64))
    if channels == 1:  # a per-tensor filter: its one channel's top level is the largest
        top = top.max(keepdims=True)
    if top.size == 1:
        top = np.full(channels, int(top[0]), dtype=np.int64)
    if top.size != channels:
        raise LowBitStorageError(
            f"{key!r}: {top.size} top levels given for a tensor with {channels} quantization "
            "channels; give one per channel (or one for all)."
        )
    if np.any((top < 1) | (top > 7)):
        raise LowBitStorageError(
            f"{key!r}: top levels must be in 1..7 (the largest |level| of an INT4 channel), got "
            f"{sorted(set(top.tolist()))}."
        )
    return top


def _apply_levels(model, sites, site: _Site, factors: np.ndarray) -> bool:
    """Rescale ``site``'s filter (scale / f) and the int32 bias of every operator reading it
    (bias * f, rounded) by the per-channel ``factors`` f; False if a bias cannot be rescaled."""
    t = site.weight
    q = t.quantization
    scales = np.asarray(q.scales if isinstance(q.scales, (list, tuple)) else [q.scales], np.float64)
    biases = []
    for other in sites:
        if other.weight is not t or len(other.op.inputs) < 3 or other.op.inputs[2] is None:
            continue
        b = other.op.inputs[2]
        if b.buffer is None or tflite.type_name(b) not in ("INT32", "INT64"):
            return False
        dtype = np.int32 if tflite.type_name(b) == "INT32" else np.int64
        data = np.frombuffer(b.buffer.data, dtype=dtype).astype(np.int64)
        f = factors if data.size == factors.size else np.full(data.size, factors.max())
        if data.size != factors.size and not np.all(factors == factors.max()):
            return False
        new = np.round(data * f)
        if np.any(np.abs(new) > np.iinfo(dtype).max):
            return False
        biases.append((other, b, new.astype(dtype), f))
    readers = {id(o.op) for o in sites if o.weight is t}
    done: dict[int, Any] = {}
    for other, b, new, f in biases:
        if id(b) in done:  # one bias tensor shared by several readers of ``t``
            other.op.inputs = [done[id(b)] if x is b else x for x in other.op.inputs]
            continue
        sg = model.subgraphs[other.sg_index]
        shared = any(id(c) not in readers for c in sg.consumers_of(b))
        nb = b
        if shared:  # the converter shares this bias with an operator we leave alone
            nb = b.copy()
            sg.tensors.append(nb)
            other.op.inputs = [nb if x is b else x for x in other.op.inputs]
        nb.buffer = tflite.new_buffer(new.tobytes())
        bq = b.quantization
        if bq is not None:
            bs = np.asarray(bq.scales if isinstance(bq.scales, (list, tuple)) else [bq.scales])
            nb.quantization = type(bq)(
                scales=[float(x) for x in (bs / f if bs.size == f.size else bs / f.max())],
                zero_points=bq.zero_points,
                axis=bq.axis,
            )
        done[id(b)] = nb
    new_scales = scales / factors if scales.size == factors.size else scales / factors.max()
    t.quantization = type(q)(
        scales=[float(x) for x in new_scales], zero_points=q.zero_points, axis=q.axis
    )
    return True


def restore_int4_levels(model_bytes: bytes, top_levels: Mapping[str, Any]) -> bytes:
    """Put INT4 filters back on their quantizer's grid (see the module doc, "Exact levels").

    Args:
      model_bytes: a converted full-integer model.
      top_levels: ``{key: L}``, key as in :func:`pack_lowbit_weights`, ``L`` the largest
        |level| of each quantization channel of that filter in the QAT model (one int for
        all channels, or one per channel in TFLite's channel order; for a per-tensor
        filter, the largest is taken), in 1..7.

    Returns the model with each listed filter holding its levels (INT4), its scales times
    ``7 / L`` and its biases times ``L / 7``. Channels with ``L = 7`` are unchanged.
    """
    model = _read(model_bytes)
    sites = _sites(model)
    changed = False
    for key, top in top_levels.items():
        site = _match(sites, key)
        if site.pair is not None or tflite.type_name(site.weight) != "INT4":
            raise LowBitStorageError(
                f"{key!r} ({site.name!r}) is not an INT4 filter; restore levels right after "
                "conversion, before packing."
            )
        values = _int8_values(site)
        axis = _axis(site, values)
        moved = values[None] if axis is None else np.moveaxis(values, axis, 0)
        top = _channel_top_levels(key, top, moved.shape[0])
        if np.all(top == 7):
            continue
        flat = moved.reshape(moved.shape[0], -1).astype(np.float64)
        levels = np.clip(np.round(flat * top[:, None] / 7.0), -top[:, None], top[:, None])
        if not _apply_levels(model, sites, site, top / 7.0):
            continue  # a bias we cannot rescale: keep the converter's values
        restored = levels.astype(np.int8).reshape(moved.shape)
        restored = restored[0] if axis is None else np.moveaxis(restored, 0, axis)
        site.weight.buffer = tflite.new_buffer(pack_int4(restored.reshape(-1)).tobytes())
        changed = True
    return tflite.build(model) if changed else bytes(model_bytes)


def pack_lowbit_weights(
    model_bytes: bytes,
    bits_by_tensor: Mapping[str, int],
    *,
    skip_if_not_smaller: bool = False,
) -> bytes:
    """Rewrite chosen filters of a full-integer .tflite into TFLM LUT form (1/2/3-bit indices).

    Args:
      model_bytes: a converted model (``TFLiteConverter.convert()``, full-integer path).
      bits_by_tensor: ``{key: bits}``, ``bits`` in (1, 2, 3) = ceil(log2(levels)) of the
        layer's weight quantizer. ``key`` is either the Keras layer name, matched as a path
        component ``NAME`` or ``quant_NAME`` (TF-MOT's wrapper) of the weight tensor's name
        (the converter writes e.g. ``"model/quant_conv1/Conv2D;model/quant_conv1/LastValueQuant/
        FakeQuantWithMinMaxVarsPerChannel"`` for layer ``conv1``), or that full tensor name.
        Layers not listed are left exactly as they are (INT4 / INT8).
      skip_if_not_smaller: leave a listed tensor in its current storage when the LUT form
        (indices + table) would not be smaller, e.g. a 3x3x1x8 first conv whose 8 tables
        outweigh the saving. Off by default: what is asked is done.

    Returns:
      The new flatbuffer (bytes). Weights not listed, all other tensors, operators, I/O and
      metadata are unchanged: packing is lossless (TFLM outputs are identical). Run
      :func:`restore_int4_levels` first to put 3-bit weights back on their grid. Each packed weight is read by the one ``TFLM_DECODE`` operator
      inserted in front of its consumer. Run it with the pinned TFLM (the Python interpreter
      registers ``TFLM_DECODE``; on a device, call ``op_resolver.AddDecode()``).

    Raises:
      LowBitStorageError: a key matches no (or several) weight tensors; a tensor has more
        distinct values per channel than ``2**bits``; bits is 4/8 or out of range; the weight
        is not INT8/INT4 or is already LUT-packed; the bytes are not a .tflite.
      TypeError: ``bits_by_tensor`` is not a mapping of str to int.
    """
    if not isinstance(bits_by_tensor, Mapping):
        raise TypeError(
            f"bits_by_tensor must be a mapping {{layer or tensor name: bits}}, got "
            f"{type(bits_by_tensor).__name__}."
        )
    model = _read(model_bytes)
    if not bits_by_tensor:
        return bytes(model_bytes)
    lut, decode_insert, spec = _compression()
    schema = tflite.schema_py_generated()
    sites = _sites(model)

    # Resolve and validate everything before touching the model.
    plan = []  # (key, site, bits, int8 values, channel axis)
    chosen: dict[int, str] = {}
    for key, bits in bits_by_tensor.items():
        if not isinstance(key, str):
            raise TypeError(f"bits_by_tensor keys must be str, got {key!r} ({type(key).__name__}).")
        bits = _check_bits(key, bits)
        site = _match(sites, key)
        if site.pair is not None:
            raise LowBitStorageError(
                f"{key!r} ({site.name!r}) is already LUT-packed ({_DECODE_OP}); "
                "pack each model once."
            )
        if id(site.weight) in chosen:
            raise LowBitStorageError(
                f"{key!r} and {chosen[id(site.weight)]!r} name the same tensor {site.name!r}; "
                "list it once."
            )
        chosen[id(site.weight)] = key
        values = _int8_values(site)
        axis = _axis(site, values)
        levels = _check_levels(key, site, values, axis, bits)
        if skip_if_not_smaller:
            tables = 1 if axis is None else values.shape[axis]
            data, table = lut_storage_bytes(values.size, bits, tables, levels)
            if data + table >= len(site.weight.buffer.data):
                continue
        plan.append((key, site, bits, values, axis))
    if not plan:
        return bytes(model_bytes)

    # A weight tensor may be read by several operators (shared weights): every consumer
    # gets its own DECODE; the tensor is compressed once.
    results = {}
    compressor = lut.LutCompressor()
    for _key, site, bits, values, axis in plan:
        t = site.weight
        # A fresh INT8 buffer per packed tensor: unpacks INT4, and dissolves any sharing of
        # the converter's buffer with a tensor we are not packing (which TFLM's inserter
        # would otherwise refuse to compress).
        t.dtype = schema.TensorType.INT8
        t.buffer = tflite.new_buffer(np.ascontiguousarray(values).tobytes())
        with contextlib.redirect_stderr(io.StringIO()):  # "index_bitwidth larger than necessary"
            results[(site.sg_index, t.index)] = compressor.compress(
                t, spec.LookUpTableCompression(index_bitwidth=bits)
            )
    decode_insert.insert_decode_operators(model, results)
    # TFLM never reads tensor names; the inserter names its two new tensors after the
    # (long) converter name. Drop those names: they would cost more flash than a small
    # layer's indices.
    decoded_ids = set()
    for sg in model.subgraphs:
        for op in sg.operators:
            if op.custom_code == _DECODE_OP:
                for t in list(op.outputs) + list(op.inputs[1::2]):
                    if id(t) not in decoded_ids:
                        decoded_ids.add(id(t))
                        t.name = None
    packed = tflite.build(model)

    # Verify the result says what was asked (the inserter skips, with only a warning, a
    # tensor it cannot rewrite).
    after = _sites(_read(packed))
    packed_bits = {}
    for s in after:
        if s.pair is not None and s.pair[1].buffer is not None:
            adt = s.pair[1].buffer.data
            packed_bits[(s.sg_index, s.name)] = adt[_DCM_BITS_OFFSET] & 0x07
    before = {id(s.stored) for s in sites if s.pair is not None}
    expected = len(before) + len(plan)
    n_packed = len({id(s.stored) for s in after if s.pair is not None})
    for _key, site, bits, _values, _ in plan:
        if site.stored.name and packed_bits.get((site.sg_index, site.name)) != bits:
            n_packed = -1
            break
    if n_packed != expected:
        raise RuntimeError(
            f"internal error: TFLM's DECODE inserter did not pack all of {sorted(bits_by_tensor)} "
            f"as asked ({n_packed} LUT tensors, expected {expected}). Please report it with the "
            "model."
        )
    return packed
