"""The Kernels API: the tflm_ops C kernels on NumPy arrays, through ctypes.

:func:`get_kernels` loads (building it first when needed, see
:mod:`~tfmot_edgeplus.runtime.kernel_library`) the host library and binds it from the C
headers (:mod:`~tfmot_edgeplus.runtime.kernel_abi`). Methods take and return *unpacked*
NumPy integer arrays (packing to 2/4 bits happens inside, with the C packer) and mirror
:mod:`tfmot_edgeplus.core.conv_reference`::

    params, out_hw = reference.make_conv_params((16, 16), (3, 3), stride=1, padding="SAME",
                                                in_bits=4, w_bits=4, out_bits=8)
    y = kernels.get_kernels().conv2d(x, w, bias, multiplier, shift, params, output_hw=out_hw)

A non-OK status becomes a :class:`KernelError` subclass (``KernelBitsError`` ...) naming
the argument the C refused, its value and the rule it breaks, as the C recorded them
(``edgeplus_last_error``); the binding only renames the C's argument to its own
(``filter_dims`` -> ``'filter shape'``, ``ctx->size`` -> ``'scratch_bytes'`` ...).
"""

from __future__ import annotations

import ctypes
import re
import threading

import numpy as np

from tfmot_edgeplus.core.intmath import check_bits, int_range
from tfmot_edgeplus.core.packing import packed_nbytes
from tfmot_edgeplus.core.program import StageProgram
from tfmot_edgeplus.runtime.kernel_abi import load_abi, status_name
from tfmot_edgeplus.runtime.kernel_library import (
    KernelBuildError,
    build,
    library_path,
    load_library,
)
from tfmot_edgeplus.runtime.qcore_step_result import StepResult

__all__ = [
    "KernelArgumentError",
    "KernelBitsError",
    "KernelBuildError",
    "KernelDimsError",
    "KernelError",
    "KernelNullError",
    "KernelScratchError",
    "KernelWindowError",
    "Kernels",
    "StepResult",
    "build",
    "get_kernels",
    "library_path",
]

# ----------------------------------------------------------------------------- errors


class KernelError(ValueError):
    """A C kernel returned an error status.

    Attributes: ``status`` (name, e.g. ``"EDGEPLUS_ERR_BITS"``), ``code`` (int),
    ``function`` (C function), ``argument`` (the offending argument, when known).
    """

    def __init__(self, function: str, code: int, argument: str, detail: str):
        self.code = code
        self.status = status_name(code)
        self.function = function
        self.argument = argument
        super().__init__(f"{function} returned {self.status}: argument {argument!r}: {detail}")


class KernelNullError(KernelError):
    pass


class KernelDimsError(KernelError):
    pass


class KernelBitsError(KernelError):
    pass


class KernelWindowError(KernelError):
    pass


class KernelScratchError(KernelError):
    pass


class KernelArgumentError(KernelError):
    pass


_ERROR_CLASSES = {
    -1: KernelNullError,
    -2: KernelDimsError,
    -3: KernelBitsError,
    -4: KernelWindowError,
    -5: KernelScratchError,
    -6: KernelArgumentError,
}


def _raise(function: str, code: int, argument: str, detail: str):
    raise _ERROR_CLASSES.get(code, KernelError)(function, code, argument, detail)


# The binding's names of the C's arguments, per family of functions: (C name with the
# prefixes params->, quant->, head-> and a trailing element index dropped, "->" read as
# "." -> this binding's argument), first full match wins; unlisted names stay.
_SCRATCH = [(r"ctx(\.size|\.buf)?", "scratch_bytes")]
_RENAMES = {
    "conv": _SCRATCH
    + [
        (r"input_dims", "input shape"),
        (r"filter_dims", "filter shape"),
        (r"output_dims", "output shape"),
        (r"input", "x"),
        (r"filter", "w"),
    ],
    "qcore_step": _SCRATCH
    + [
        (r"layers\[(\d+)\]\.w_bits", r"head.layers[\1].bits"),
        (r"layers\[(\d+)\]\.(in|out)_features", r"head.layers[\1]"),
        (r"layers\[(\d+)\]\.(.*)", r"head.layers[\1].\2"),
        (r"nets\[(\d+)\]\.hidden", r"nets[\1].w1"),
        (r"num_layers|layers", "head"),
        (r"n", "x"),
    ],
    "qcore_refresh": _SCRATCH
    + [(r"rng_state", "seed"), (r"n", "prior_counts"), (r"steps", "history")],
    "patch_stage": _SCRATCH
    + [(r"filters|slot", r"\g<0>"), (r"input", "x"), (r"output", "out"), (r".*", "program")],
    "bitflip": [(r"count", "update")],
}


def _family(function: str) -> str:
    for family in ("qcore_step", "qcore_refresh", "patch_stage", "bitflip"):
        if family in function:
            return family
    return "conv" if "conv" in function else "pack"


def _c_error(lib: ctypes.CDLL, function: str, code: int, names: dict[str, str] | None = None):
    """Raise the KernelError of status ``code`` from what ``lib`` recorded
    (edgeplus_last_error), naming the argument as this binding does; ``names`` renames
    more (e.g. ``src`` -> the caller's argument)."""
    live = lib.edgeplus_last_error().contents
    rec = type(live).from_buffer_copy(live)  # the record, before the clear below
    lib.edgeplus_clear_error()
    c_arg = (rec.argument or b"").decode()
    if rec.status != code or not c_arg:
        _raise(function, code, "unknown", "the C recorded no argument for this refusal")
    index = f"[{rec.index}]" if rec.index >= 0 else "[]"
    shown = c_arg.replace("[]", index)
    if rec.min <= rec.max:
        if code == -5:
            detail = f"{shown} = {rec.value}: the call needs at least {rec.min} bytes of scratch"
        else:
            detail = f"{shown} = {rec.value}: must lie in [{rec.min}, {rec.max}]"
    else:
        value = f" = {rec.value}" if rec.value else ""
        detail = f"{shown}{value}: {(rec.expected or b'').decode()}"
    name = (c_arg.removesuffix("[]")).replace("[]", index)
    name = re.sub(r"^(params->|quant->|head->|\*)", "", name).replace("->", ".")
    if names and name in names:
        _raise(function, code, names[name], detail)
    for pattern, repl in _RENAMES.get(_family(function), []):
        if re.fullmatch(pattern, name):
            name = re.sub(pattern, repl, name)
            break
    _raise(function, code, name, detail)


# ----------------------------------------------------------------------------- structs


def _struct(name: str):
    return load_abi().struct(name)


_P = ctypes.POINTER
_i8p = _P(ctypes.c_int8)
_i32p = _P(ctypes.c_int32)
_u8p = _P(ctypes.c_uint8)

# ----------------------------------------------------------------------------- loading

_LOCK = threading.Lock()
_CACHE: dict[str, Kernels] = {}


def get_kernels(variant: str = "plain") -> Kernels:
    """The (cached) binding of one library variant: ``"plain"`` or ``"emudsp"``."""
    with _LOCK:
        if variant not in _CACHE:
            _CACHE[variant] = Kernels(load_library(variant), variant)
        return _CACHE[variant]


# ----------------------------------------------------------------------------- helpers


def _i8(a: np.ndarray):
    return a.ctypes.data_as(_i8p)


def _scratch(nbytes):
    """An edgeplus_context of ``nbytes`` over a zeroed buffer (never zero-size) that the
    context keeps alive."""
    buf = np.zeros(max(int(nbytes), 1), np.uint8)
    ctx = _struct("edgeplus_context")(buf.ctypes.data_as(ctypes.c_void_p), int(nbytes))
    ctx.buffer = buf
    return ctx


def _dims(shape):
    return _struct("edgeplus_dims")(*(int(v) for v in shape))


def _window(win):
    return None if win is None else _struct("edgeplus_window")(*(int(v) for v in win))


def _params(params):
    """The edgeplus_conv_params of a :class:`~tfmot_edgeplus.core.conv_reference.ConvParams`
    (field by field, by the header's names)."""
    cls = _struct("edgeplus_conv_params")
    return cls(*(int(getattr(params, f)) for f in load_abi().field_names(cls.__name__)))


_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1


def _c_int(function: str, name: str, value) -> int:
    """A scalar int32 argument of ``function``; KernelArgumentError naming it otherwise."""
    if not isinstance(value, int | np.integer):
        _raise(function, -6, name, f"must be an int, got {value!r}")
    if not _INT32_MIN <= int(value) <= _INT32_MAX:
        _raise(function, -6, name, f"{int(value)} does not fit the C's int32")
    return int(value)


def _c_array(function: str, name: str, values, size: int, dtype) -> np.ndarray:
    """``size`` integers as a contiguous ``dtype`` array (never empty: a spare 0 at the
    end), else a KernelError naming ``name``."""
    a = np.asarray(values)
    if a.dtype.kind not in "iu":
        _raise(function, -6, name, f"must be integers, got dtype {a.dtype}")
    a = a.reshape(-1)
    if a.size != size:
        _raise(function, -2, name, f"needs {size} entries, got {a.size}")
    info = np.iinfo(dtype)
    if a.size and (int(a.min()) < info.min or int(a.max()) > info.max):
        _raise(function, -6, name, f"values must fit {np.dtype(dtype).name}")
    return np.concatenate([a.astype(dtype), np.zeros(1, dtype)])


class Kernels:
    """NumPy-friendly wrappers of one loaded library."""

    def __init__(self, lib: ctypes.CDLL, variant: str):
        self.lib = lib
        self.variant = variant

    # -- misc -------------------------------------------------------------------------

    def status_str(self, code: int) -> str:
        return self.lib.edgeplus_status_str(int(code)).decode()

    def requantize(self, acc, multiplier, shift) -> np.ndarray:
        """Elementwise ``edgeplus_requantize`` (TFLite MultiplyByQuantizedMultiplier) over
        the broadcast arrays, in one ``edgeplus_requantize_array`` call. Values wrap to
        int32 as the C's arguments do."""
        arrays = np.broadcast_arrays(
            np.asarray(acc, np.int64), np.asarray(multiplier, np.int64), np.asarray(shift, np.int64)
        )
        acc, multiplier, shift = (
            np.concatenate([a.reshape(-1).astype(np.int32), [0]]).astype(np.int32) for a in arrays
        )  # never a zero-size buffer
        out = np.zeros(acc.size, np.int32)
        count = acc.size - 1
        st = self.lib.edgeplus_requantize_array(
            acc.ctypes.data_as(_i32p),
            multiplier.ctypes.data_as(_i32p),
            shift.ctypes.data_as(_i32p),
            count,
            out.ctypes.data_as(_i32p),
        )
        if st != 0:
            _c_error(self.lib, "edgeplus_requantize_array", st)
        return out[:count].reshape(arrays[0].shape)

    # -- packing ----------------------------------------------------------------------

    def pack(self, values, bits: int, name: str = "values") -> np.ndarray:
        """Pack integers (any shape, C order) at ``bits`` with the C packer."""
        check_bits(bits, "bits")
        v = np.asarray(values)
        if v.dtype.kind not in "iu":
            raise TypeError(f"{name} must be an integer array, got dtype {v.dtype}")
        flat = v.reshape(-1)
        lo, hi = int_range(8)  # the C takes int8; it checks the narrower ranges itself
        if flat.size and (flat.min() < lo or flat.max() > hi):
            bad = int(np.flatnonzero((flat < lo) | (flat > hi))[0])
            _raise(
                "edgeplus_pack",
                -6,
                name,
                f"values must fit int8 (and lie in {int_range(bits)} at {bits} bits); flat "
                f"index {bad} holds {int(flat[bad])}",
            )
        src = np.ascontiguousarray(flat, dtype=np.int8)
        dst = np.zeros(max(packed_nbytes(src.size, bits), 1), np.int8)
        st = self.lib.edgeplus_pack(_i8(src), src.size, bits, _i8(dst))
        if st != 0:
            _c_error(self.lib, "edgeplus_pack", st, {"src": name})
        return dst[: packed_nbytes(src.size, bits)]

    def unpack(self, packed, bits: int, count: int) -> np.ndarray:
        """Unpack ``count`` values with the C unpacker (flat int8)."""
        check_bits(bits, "bits")
        src = np.ascontiguousarray(np.asarray(packed).reshape(-1)).view(np.int8)
        if packed_nbytes(count, bits) > src.size:
            _raise(
                "edgeplus_unpack",
                -2,
                "count",
                f"{count} values at {bits} bits need {packed_nbytes(count, bits)} bytes, "
                f"got {src.size}",
            )
        dst = np.zeros(max(count, 1), np.int8)
        st = self.lib.edgeplus_unpack(_i8(src) if src.size else None, count, bits, _i8(dst))
        if st != 0:
            _c_error(self.lib, "edgeplus_unpack", st, {"src": "packed"})
        return dst[:count]

    # -- conv -------------------------------------------------------------------------

    def _buffer_size(self, fname, params, input_shape, filter_shape, output_shape) -> int:
        size = getattr(self.lib, fname)(
            ctypes.byref(_params(params)),
            ctypes.byref(_dims(input_shape)),
            ctypes.byref(_dims(filter_shape)),
            ctypes.byref(_dims(output_shape)),
        )
        if size < 0:
            _c_error(self.lib, fname, size)
        return int(size)

    def conv2d_get_buffer_size(self, params, input_shape, filter_shape, output_shape) -> int:
        return self._buffer_size(
            "edgeplus_conv2d_get_buffer_size", params, input_shape, filter_shape, output_shape
        )

    def conv2d_get_buffer_size_fast(self, params, input_shape, filter_shape, output_shape) -> int:
        """Scratch with which the conv keeps all weight rows unpacked (faster)."""
        return self._buffer_size(
            "edgeplus_conv2d_get_buffer_size_fast", params, input_shape, filter_shape, output_shape
        )

    def conv2d_get_buffer_size_lean(self, params, input_shape, filter_shape, output_shape) -> int:
        """The lean scratch (CMSIS-NN-like small, a little slower); for a 1x1 output the
        smallest the conv accepts."""
        return self._buffer_size(
            "edgeplus_conv2d_get_buffer_size_lean", params, input_shape, filter_shape, output_shape
        )

    def depthwise_conv2d_get_buffer_size(
        self, params, input_shape, filter_shape, output_shape
    ) -> int:
        return self._buffer_size(
            "edgeplus_depthwise_conv2d_get_buffer_size",
            params,
            input_shape,
            filter_shape,
            output_shape,
        )

    def depthwise_conv2d_get_buffer_size_lean(
        self, params, input_shape, filter_shape, output_shape
    ) -> int:
        """The depthwise's lean scratch, also the smallest it accepts."""
        return self._buffer_size(
            "edgeplus_depthwise_conv2d_get_buffer_size_lean",
            params,
            input_shape,
            filter_shape,
            output_shape,
        )

    def _conv(
        self,
        depthwise,
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
        output_region,
        out,
        scratch_bytes,
    ):
        fname = "edgeplus_depthwise_conv2d_window" if depthwise else "edgeplus_conv2d_window"
        x = np.asarray(x)
        w = np.asarray(w)
        if x.ndim != 4:
            _raise(fname, -2, "x", f"must be NHWC (4 dims), got shape {x.shape}")
        if w.ndim != 4:
            _raise(fname, -2, "w", f"must be {'1HWO' if depthwise else 'OHWI'}, got {w.shape}")
        n, rh, rw, c = x.shape
        ih, iw = (int(v) for v in input_hw) if input_hw is not None else (rh, rw)
        if input_region is not None and (int(input_region[2]), int(input_region[3])) != (rh, rw):
            _raise(
                fname,
                -4,
                "input_region",
                f"{tuple(input_region)} does not match the buffer x of shape {x.shape}",
            )
        oh, ow = (int(v) for v in output_hw)
        oc = c if depthwise else w.shape[0]
        in_shape, out_shape = (n, ih, iw, c), (n, oh, ow, oc)
        win = tuple(int(v) for v in window) if window is not None else (0, 0, oh, ow)
        oreg_hw = (
            (int(output_region[2]), int(output_region[3]))
            if output_region is not None
            else (oh, ow)
        )
        mult = np.ascontiguousarray(np.asarray(multiplier, np.int64).reshape(-1), np.int32)
        shf = np.ascontiguousarray(np.asarray(shift, np.int64).reshape(-1), np.int32)
        for name, arr in (("multiplier", mult), ("shift", shf)):
            if arr.size != oc:
                _raise(fname, -2, name, f"needs {oc} entries (output channels), got {arr.size}")
        b = None
        if bias is not None:
            b = np.ascontiguousarray(np.asarray(bias, np.int64).reshape(-1), np.int32)
            if b.size != oc:
                _raise(fname, -2, "bias", f"needs {oc} entries, got {b.size}")
        out_buf_shape = (n, *oreg_hw, oc)
        if out is None:
            out = np.zeros(out_buf_shape, np.int8)
        else:
            out = np.asarray(out)
            if out.shape != out_buf_shape:
                _raise(fname, -2, "out", f"must have shape {out_buf_shape}, got {out.shape}")
        out_count = out.size
        bits_ok = all(b in (2, 4, 8) for b in (params.in_bits, params.w_bits, params.out_bits))
        if bits_ok:
            xp = self.pack(x, params.in_bits, "x")
            wp = self.pack(w, params.w_bits, "w")
            op = self.pack(out, params.out_bits, "out")
        else:  # the C rejects the bits before it reads any data
            xp = wp = op = np.zeros(0, np.int8)
            scratch_bytes = 0 if scratch_bytes is None else scratch_bytes
        op = np.concatenate([op, np.zeros(1, np.int8)])  # never a zero-size buffer
        xp = np.concatenate([xp, np.zeros(1, np.int8)])
        wp = np.concatenate([wp, np.zeros(1, np.int8)])
        if scratch_bytes is None:
            sized = (n, win[2], win[3], oc)
            scratch_bytes = self._buffer_size(
                "edgeplus_depthwise_conv2d_get_buffer_size"
                if depthwise
                else "edgeplus_conv2d_get_buffer_size",
                params,
                in_shape,
                w.shape,
                sized,
            )
        ctx = _scratch(scratch_bytes)
        p = _params(params)
        q = _struct("edgeplus_quant_params")(mult.ctypes.data_as(_i32p), shf.ctypes.data_as(_i32p))
        in_reg = _window(input_region)
        out_reg = _window(output_region)
        cwin = _window(win)
        st = getattr(self.lib, fname)(
            ctypes.byref(ctx),
            ctypes.byref(p),
            ctypes.byref(q),
            ctypes.byref(_dims(in_shape)),
            ctypes.byref(in_reg) if in_reg is not None else None,
            _i8(xp),
            ctypes.byref(_dims(w.shape)),
            _i8(wp),
            b.ctypes.data_as(_i32p) if b is not None else None,
            ctypes.byref(_dims(out_shape)),
            ctypes.byref(out_reg) if out_reg is not None else None,
            _i8(op),
            ctypes.byref(cwin),
        )
        if st != 0:
            _c_error(self.lib, fname, st)
        return self.unpack(op, params.out_bits, out_count).reshape(out_buf_shape)

    def conv2d(
        self,
        x,
        w,
        bias,
        multiplier,
        shift,
        params,
        *,
        output_hw,
        window=None,
        input_region=None,
        input_hw=None,
        output_region=None,
        out=None,
        scratch_bytes=None,
    ) -> np.ndarray:
        """``edgeplus_conv2d_window`` on unpacked arrays; same arguments as
        :func:`tfmot_edgeplus.core.conv_reference.conv2d`, plus ``output_region`` (the
        output buffer holds only that region), ``out`` (initial output buffer: values
        outside the window are kept) and ``scratch_bytes`` (default: the C's
        ``_get_buffer_size`` for the window; see also ``conv2d_get_buffer_size_fast``).
        Returns the whole output buffer as int8."""
        return self._conv(
            False,
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
            output_region,
            out,
            scratch_bytes,
        )

    def depthwise_conv2d(
        self,
        x,
        w,
        bias,
        multiplier,
        shift,
        params,
        *,
        output_hw,
        window=None,
        input_region=None,
        input_hw=None,
        output_region=None,
        out=None,
        scratch_bytes=None,
    ) -> np.ndarray:
        """``edgeplus_depthwise_conv2d_window``; see :meth:`conv2d`."""
        return self._conv(
            True,
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
            output_region,
            out,
            scratch_bytes,
        )

    def conv_input_region(self, params, input_shape, filter_shape, window):
        """``edgeplus_conv_input_region``: the input ``(y, x, h, w)`` a window reads."""
        res = _struct("edgeplus_window")()
        st = self.lib.edgeplus_conv_input_region(
            ctypes.byref(_params(params)),
            ctypes.byref(_dims(input_shape)),
            ctypes.byref(_dims(filter_shape)),
            ctypes.byref(_window(window)),
            ctypes.byref(res),
        )
        if st != 0:
            _c_error(self.lib, "edgeplus_conv_input_region", st)
        return res.y, res.x, res.h, res.w

    # -- bit-flip ---------------------------------------------------------------------

    def bitflip_apply_packed(self, packed, update, bits: int) -> tuple[np.ndarray, int]:
        """Apply ``update`` (-1/0/+1, ``update.size`` values) to packed weights; returns
        ``(new_packed, changed)`` (the input array is not modified)."""
        check_bits(bits, "bits")
        u = np.ascontiguousarray(np.asarray(update).reshape(-1), np.int8)
        wp = np.ascontiguousarray(np.asarray(packed).reshape(-1)).view(np.int8).copy()
        if packed_nbytes(u.size, bits) > wp.size:
            _raise(
                "edgeplus_bitflip_apply",
                -2,
                "update",
                f"{u.size} values need {packed_nbytes(u.size, bits)} packed bytes, got {wp.size}",
            )
        changed = ctypes.c_int32(0)
        wbuf = np.concatenate([wp, np.zeros(1, np.int8)])
        ubuf = np.concatenate([u, np.zeros(1, np.int8)])
        st = self.lib.edgeplus_bitflip_apply(
            _i8(wbuf), _i8(ubuf), u.size, bits, ctypes.byref(changed)
        )
        if st != 0:
            _c_error(self.lib, "edgeplus_bitflip_apply", st)
        return wbuf[: wp.size], int(changed.value)

    def bitflip_apply(self, weights, update, bits: int) -> tuple[np.ndarray, int]:
        """Unpacked weights in, unpacked weights out: ``(new_weights, changed)``."""
        w = np.asarray(weights)
        if np.asarray(update).shape != w.shape:
            _raise(
                "edgeplus_bitflip_apply",
                -2,
                "update",
                f"shape {np.asarray(update).shape} != weights shape {w.shape}",
            )
        packed, changed = self.bitflip_apply_packed(self.pack(w, bits, "weights"), update, bits)
        return self.unpack(packed, bits, w.size).reshape(w.shape), changed

    # -- QCore -------------------------------------------------------------------------

    def _qcore_head(self, fname, head, nets, weights, margin, tries):
        """The C structs of a head and its nets (every buffer they point into is in
        ``keep``); ``packed``: (buffer, bytes, bits, out, in) of each layer's weights."""
        layers = list(head.layers)
        count = len(layers)
        if count == 0:
            _raise(fname, -2, "head", "the head has no layers")
        nets = {l: net for l, net in dict(nets or {}).items() if net is not None}
        for l in nets:
            if not isinstance(l, int | np.integer) or not 0 <= l < count:
                _raise(
                    fname,
                    -2,
                    "nets",
                    f"flip net for layer {l!r}, but the head has layers 0..{count - 1}",
                )
        weights = [layer.weights for layer in layers] if weights is None else list(weights)
        if len(weights) != count:
            _raise(fname, -2, "weights", f"{len(weights)} arrays for {count} layers")
        margin = _c_int(fname, "margin", margin)
        tries = _c_int(fname, "tries", tries)
        keep = []  # every buffer the C structs point into
        c_layers = (_struct("edgeplus_fc_layer") * max(count, 1))()
        packed = []
        for l, (layer, w) in enumerate(zip(layers, weights)):
            p = f"head.layers[{l}]"
            w = np.asarray(w)
            if w.ndim != 2:
                _raise(fname, -2, f"weights[{l}]", f"must be (out, in), got shape {w.shape}")
            out, inp = w.shape
            bits = _c_int(fname, f"{p}.bits", layer.bits)
            # the C refuses other bits before it reads the weights
            wp = self.pack(w, bits, f"weights[{l}]") if bits in (4, 8) else np.zeros(0, np.int8)
            wbuf = np.concatenate([wp, np.zeros(1, np.int8)])
            mult = _c_array(fname, f"{p}.multiplier", layer.multiplier, out, np.int32)
            shift = _c_array(fname, f"{p}.shift", layer.shift, out, np.int32)
            bias = (
                None
                if layer.bias is None
                else _c_array(fname, f"{p}.bias", layer.bias, out, np.int32)
            )
            c = c_layers[l]
            c.out_features, c.in_features, c.w_bits = out, inp, bits
            c.weights = _i8(wbuf)
            c.bias = bias.ctypes.data_as(_i32p) if bias is not None else None
            c.multiplier = mult.ctypes.data_as(_i32p)
            c.shift = shift.ctypes.data_as(_i32p)
            for f in ("input_zero_point", "output_zero_point", "act_min", "act_max"):
                setattr(c, f, _c_int(fname, f"{p}.{f}", getattr(layer, f)))
            keep += [wbuf, mult, shift, bias]
            packed.append((wbuf, wp.size, bits, out, inp))
        flipnet = _struct("edgeplus_flipnet")
        c_nets = (_P(flipnet) * max(count, 1))()
        for l, net in nets.items():
            w1 = np.asarray(net.w1)
            hidden = w1.shape[0] if w1.ndim == 2 else -1
            if w1.ndim != 2 or w1.shape[1] != 4:
                _raise(fname, -2, f"nets[{l}].w1", f"must be (hidden, 4), got {w1.shape}")
            w1 = _c_array(fname, f"nets[{l}].w1", w1, hidden * 4, np.int8)
            b1 = _c_array(fname, f"nets[{l}].b1", net.b1, hidden, np.int32)
            w2 = _c_array(fname, f"nets[{l}].w2", net.w2, hidden, np.int8)
            c = flipnet(
                hidden,
                _i8(w1),
                b1.ctypes.data_as(_i32p),
                _c_int(fname, f"nets[{l}].m1", net.m1),
                _c_int(fname, f"nets[{l}].s1", net.s1),
                _i8(w2),
                _c_int(fname, f"nets[{l}].b2", net.b2),
                _c_int(fname, f"nets[{l}].threshold", net.threshold),
            )
            keep += [w1, b1, w2, c]
            c_nets[int(l)] = ctypes.pointer(c)
        chead = _struct("edgeplus_qcore_head")(count, c_layers, c_nets, margin, tries)
        return chead, c_layers, keep, packed

    def qcore_step_get_buffer_size(self, head, nets, n: int) -> int:
        """Scratch bytes of ``edgeplus_qcore_step`` for ``n`` samples (the C's
        ``_get_buffer_size``)."""
        fname = "edgeplus_qcore_step_get_buffer_size"
        chead, *_ = self._qcore_head(fname, head, nets, None, 16, 6)
        need = int(self.lib.edgeplus_qcore_step_get_buffer_size(ctypes.byref(chead), int(n)))
        if need < 0:
            _c_error(self.lib, fname, need)
        return need

    def qcore_step(
        self,
        head,
        nets,
        x,
        y,
        weights=None,
        margin=16,
        tries=6,
        guard=0,
        guard_min_correct=0,
        scratch_bytes=None,
    ):
        """``edgeplus_qcore_step``: the same arguments and the same
        :class:`~tfmot_edgeplus.calibration.step.StepResult` as
        :func:`tfmot_edgeplus.calibration.step.qcore_step` (``head`` an ``IntHead``,
        ``nets`` a dict layer index -> ``FlipNet``, ``weights`` unpacked, default the
        head's own; the first ``guard`` samples guarded); the weights are packed with the C
        packer for the call and the result's unpacked. ``scratch_bytes`` defaults to
        ``edgeplus_qcore_step_get_buffer_size``."""
        fname = "edgeplus_qcore_step"
        chead, c_layers, _buffers, packed = self._qcore_head(
            fname, head, nets, weights, margin, tries
        )
        guard = _c_int(fname, "guard", guard)
        guard_min_correct = _c_int(fname, "guard_min_correct", guard_min_correct)
        x = np.asarray(x)
        in0 = int(c_layers[0].in_features)
        if x.ndim != 2 or x.shape[1] != in0:
            _raise(
                fname, -2, "x", f"samples must be head inputs of shape (N, {in0}), got {x.shape}"
            )
        n = len(x)
        xb = np.concatenate([x.astype(np.int8).reshape(-1), np.zeros(1, np.int8)])
        y = np.asarray(y)
        if y.shape != (n,) or y.dtype.kind not in "iu":
            _raise(
                fname,
                -2,
                "y",
                f"labels must be {n} integer class indices, got shape {y.shape} dtype {y.dtype}",
            )
        yb = np.concatenate(
            [np.clip(y.astype(np.int64), _INT32_MIN, _INT32_MAX).astype(np.int32), [0]]
        ).astype(np.int32)
        need = int(self.lib.edgeplus_qcore_step_get_buffer_size(ctypes.byref(chead), n))
        if scratch_bytes is None:
            scratch_bytes = max(need, 0)
        ctx = _scratch(scratch_bytes)
        mask_b = np.zeros(max(n, 1), np.uint8)
        mask_a = np.zeros(max(n, 1), np.uint8)
        res = _struct("edgeplus_qcore_step_result")()
        st = self.lib.edgeplus_qcore_step(
            ctypes.byref(ctx),
            ctypes.byref(chead),
            _i8(xb),
            yb.ctypes.data_as(_i32p),
            n,
            guard,
            guard_min_correct,
            mask_b.ctypes.data_as(_u8p),
            mask_a.ctypes.data_as(_u8p),
            ctypes.byref(res),
        )
        if st != 0:
            _c_error(self.lib, fname, st)
        new_weights = [
            self.unpack(wbuf[:nbytes], bits, out * inp).reshape(out, inp)
            for wbuf, nbytes, bits, out, inp in packed
        ]
        return StepResult(
            kept=bool(res.kept),
            changed=int(res.changed),
            level=int(res.level),
            correct_before=int(res.correct_before),
            correct_after=int(res.correct_after),
            margin_before=int(res.margin_before),
            margin_after=int(res.margin_after),
            n=n,
            weights=new_weights,
            correct_mask_before=mask_b[:n].astype(bool),
            correct_mask_after=mask_a[:n].astype(bool),
            guard=guard,
            guard_correct_before=int(res.guard_correct_before),
            guard_correct_after=int(res.guard_correct_after),
        )

    def qcore_refresh_get_buffer_size(self, n: int) -> int:
        """Scratch bytes of ``edgeplus_qcore_refresh`` for ``n`` items (the C's
        ``_get_buffer_size``; negative: its status for a bad ``n``)."""
        return int(self.lib.edgeplus_qcore_refresh_get_buffer_size(int(n)))

    def qcore_refresh(self, prior_counts, history, size, seed, scratch_bytes=None):
        """``edgeplus_qcore_refresh`` with the arguments and results of
        :func:`tfmot_edgeplus.calibration.step.qcore_refresh`: ``(chosen item indices in
        draw order, their counts, next rng state)``."""
        fname = "edgeplus_qcore_refresh"
        prior = np.asarray(prior_counts)
        if prior.ndim != 1 or prior.dtype.kind not in "iu":
            _raise(
                fname,
                -2,
                "prior_counts",
                f"must be a vector of integer counts, got shape {prior.shape} dtype {prior.dtype}",
            )
        h = np.asarray(history, bool)
        if h.ndim != 2 or len(h) == 0:
            _raise(
                fname, -2, "history", "must be a non-empty list of equally long correctness vectors"
            )
        if h.shape[1] != prior.size:
            _raise(
                fname,
                -2,
                "history",
                f"history covers {h.shape[1]} items but prior_counts has {prior.size}",
            )
        steps, n = h.shape
        size = _c_int(fname, "size", size)
        if not isinstance(seed, int | np.integer):
            _raise(fname, -6, "seed", f"must be an int, got {seed!r}")
        state = ctypes.c_uint32(int(seed) & 0xFFFFFFFF)
        prior32 = np.concatenate(
            [np.clip(prior.astype(np.int64), _INT32_MIN, _INT32_MAX).astype(np.int32), [0]]
        ).astype(np.int32)
        hist = np.concatenate([h.astype(np.uint8).reshape(-1), np.zeros(1, np.uint8)])
        need = self.qcore_refresh_get_buffer_size(n)
        if scratch_bytes is None:
            scratch_bytes = max(need, 0)
        ctx = _scratch(scratch_bytes)
        chosen = np.zeros(max(size, 1), np.int32)
        counts = np.zeros(max(size, 1), np.int32)
        st = self.lib.edgeplus_qcore_refresh(
            ctypes.byref(ctx),
            prior32.ctypes.data_as(_i32p),
            hist.ctypes.data_as(_u8p),
            steps,
            n,
            size,
            ctypes.byref(state),
            chosen.ctypes.data_as(_i32p),
            counts.ctypes.data_as(_i32p),
        )
        if st != 0:
            _c_error(self.lib, fname, st)
        return (
            chosen[:size].astype(np.int64),
            counts[:size].astype(np.int64),
            int(state.value),
        )

    # ------------------------------------------------------------------ patch stage

    @staticmethod
    def _program_words(program) -> np.ndarray:
        words = program.to_words() if isinstance(program, StageProgram) else program
        words = np.ascontiguousarray(np.asarray(words), dtype=np.int32)
        if words.ndim != 1:
            _raise("edgeplus_patch_stage", -2, "program", "must be a 1-D array of int32 words")
        return words

    def patch_stage_check(self, program) -> None:
        """``edgeplus_patch_stage_check``: raise the status' KernelError unless valid."""
        words = self._program_words(program)
        st = self.lib.edgeplus_patch_stage_check(words.ctypes.data_as(_i32p), words.size)
        if st != 0:
            _c_error(self.lib, "edgeplus_patch_stage_check", st)

    def patch_stage_get_buffer_size(self, program) -> int:
        words = self._program_words(program)
        n = int(self.lib.edgeplus_patch_stage_get_buffer_size(words.ctypes.data_as(_i32p),
                                                              words.size))  # fmt: skip
        if n < 0:
            _c_error(self.lib, "edgeplus_patch_stage_get_buffer_size", n)
        return n

    def patch_stage_weight_size(self, program, slot: int) -> int:
        words = self._program_words(program)
        out = ctypes.c_int32(0)
        st = self.lib.edgeplus_patch_stage_weight_size(
            words.ctypes.data_as(_i32p), words.size, int(slot), ctypes.byref(out)
        )
        if st != 0:
            _c_error(self.lib, "edgeplus_patch_stage_weight_size", st)
        return int(out.value)

    def patch_stage(self, program, filters, x, scratch_bytes=None) -> np.ndarray:
        """``edgeplus_patch_stage`` over a batch: ``x`` int8 ``(N, H, W, C)`` or ``(H, W, C)``,
        ``filters`` the unpacked integer filters per weight slot (packed here at each step's
        ``w_bits``). Returns the split tensors like ``simulate.run_stage``."""
        fname = "edgeplus_patch_stage"
        prog = program if isinstance(program, StageProgram) else StageProgram.from_words(program)
        words = self._program_words(prog)
        x = np.asarray(x)
        single = x.ndim == 3
        xb = x[None] if single else x
        t0, last = prog.tensors[0], prog.tensors[-1]
        if xb.ndim != 4 or xb.shape[1:] != t0.shape or xb.dtype != np.int8:
            _raise(fname, -2, "x", f"must be int8 (N, {t0.h}, {t0.w}, {t0.c}), got "
                   f"{xb.dtype} {xb.shape}")  # fmt: skip
        steps = prog.slot_steps()
        if len(filters) != len(steps):
            _raise(fname, -2, "filters", f"{len(steps)} slots, got {len(filters)} filters")
        packed = []
        for slot, k in enumerate(steps):
            f = np.asarray(filters[slot])
            if f.shape != prog.filter_shape(k):
                _raise(fname, -2, "filters", f"slot {slot} must have shape "
                       f"{prog.filter_shape(k)}, got {f.shape}")  # fmt: skip
            packed.append(np.ascontiguousarray(self.pack(f.reshape(-1), prog.steps[k].w_bits)))
        table = (_i8p * max(len(packed), 1))(*[_i8(a) for a in packed])
        need = self.patch_stage_get_buffer_size(words)
        ctx = _scratch(need if scratch_bytes is None else scratch_bytes)
        out = np.zeros((len(xb), last.h, last.w, last.c), np.int8)
        for i in range(len(xb)):
            xi = np.ascontiguousarray(xb[i])
            oi = np.zeros((last.h, last.w, last.c), np.int8)
            st = self.lib.edgeplus_patch_stage(
                ctypes.byref(ctx), words.ctypes.data_as(_i32p), words.size, table, _i8(xi),
                _i8(oi),
            )  # fmt: skip
            if st != 0:
                _c_error(self.lib, fname, st)
            out[i] = oi
        return out[0] if single else out
