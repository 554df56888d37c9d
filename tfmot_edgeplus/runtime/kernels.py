"""ctypes binding of the tflm_ops C kernels (``build/host/libedgeplus_ops.so``) for the host.

The library is built from ``tflm_ops/src`` with ``make -C tflm_ops host``; on first use the
binding runs that itself when the library is missing or older than the sources, and says
clearly what to install when there is no compiler. ``EDGEPLUS_OPS_LIB`` points at a
prebuilt library instead.

Functions take and return *unpacked* NumPy integer arrays (packing to 2/4 bits happens
inside, with the C packer) and mirror :mod:`tfmot_edgeplus.core.conv_reference`::

    params, out_hw = reference.make_conv_params((16, 16), (3, 3), stride=1, padding="SAME",
                                                in_bits=4, w_bits=4, out_bits=8)
    y = kernels.conv2d(x, w, bias, multiplier, shift, params, output_hw=out_hw)

A non-OK status becomes a :class:`KernelError` subclass (``KernelBitsError`` ...) whose
message names the C status and the offending argument.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np

from tfmot_edgeplus.core import conv_reference as _ref
from tfmot_edgeplus.core.intmath import check_bits, int_range
from tfmot_edgeplus.core.packing import packed_nbytes

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
    "bitflip_apply",
    "bitflip_apply_packed",
    "conv2d",
    "conv2d_get_buffer_size",
    "conv2d_get_buffer_size_fast",
    "conv_input_region",
    "depthwise_conv2d",
    "depthwise_conv2d_get_buffer_size",
    "get_kernels",
    "library_path",
    "pack",
    "patch_stage",
    "patch_stage_check",
    "patch_stage_get_buffer_size",
    "qcore_refresh",
    "qcore_step",
    "qcore_step_get_buffer_size",
    "requantize",
    "status_str",
    "unpack",
]

_REPO = Path(__file__).resolve().parents[2]
_OPS_DIR = _REPO / "tflm_ops"
_LIB_NAMES = {"plain": "libedgeplus_ops.so", "emudsp": "libedgeplus_ops_emudsp.so"}

# ----------------------------------------------------------------------------- errors

STATUS_NAMES = {
    0: "EDGEPLUS_OK",
    -1: "EDGEPLUS_ERR_NULL",
    -2: "EDGEPLUS_ERR_DIMS",
    -3: "EDGEPLUS_ERR_BITS",
    -4: "EDGEPLUS_ERR_WINDOW",
    -5: "EDGEPLUS_ERR_SCRATCH",
    -6: "EDGEPLUS_ERR_ARG",
    -7: "EDGEPLUS_ERR_COVERAGE",
    -8: "EDGEPLUS_ERR_OVERLAP",
}


class KernelBuildError(RuntimeError):
    """The C library is missing and could not be built."""


class KernelError(ValueError):
    """A C kernel returned an error status.

    Attributes: ``status`` (name, e.g. ``"EDGEPLUS_ERR_BITS"``), ``code`` (int),
    ``function`` (C function), ``argument`` (the offending argument, when known).
    """

    def __init__(self, function: str, code: int, argument: str, detail: str):
        self.code = code
        self.status = STATUS_NAMES.get(code, f"EDGEPLUS_ERR_UNKNOWN({code})")
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


# ----------------------------------------------------------------------------- structs


class _Dims(ctypes.Structure):
    _fields_ = [
        ("n", ctypes.c_int32),
        ("h", ctypes.c_int32),
        ("w", ctypes.c_int32),
        ("c", ctypes.c_int32),
    ]


class _Window(ctypes.Structure):
    _fields_ = [
        ("y", ctypes.c_int32),
        ("x", ctypes.c_int32),
        ("h", ctypes.c_int32),
        ("w", ctypes.c_int32),
    ]


_PARAM_FIELDS = [f.name for f in dataclasses.fields(_ref.ConvParams)]


class _Params(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int32) for name in _PARAM_FIELDS]


class _Quant(ctypes.Structure):
    _fields_ = [
        ("multiplier", ctypes.POINTER(ctypes.c_int32)),
        ("shift", ctypes.POINTER(ctypes.c_int32)),
    ]


class _Context(ctypes.Structure):
    _fields_ = [("buf", ctypes.c_void_p), ("size", ctypes.c_int32)]


_P = ctypes.POINTER
_i8p = _P(ctypes.c_int8)
_i32p = _P(ctypes.c_int32)
_u8p = _P(ctypes.c_uint8)
_i32 = ctypes.c_int32


class _FCLayer(ctypes.Structure):
    _fields_ = [
        ("out_features", _i32),
        ("in_features", _i32),
        ("w_bits", _i32),
        ("weights", _i8p),
        ("bias", _i32p),
        ("multiplier", _i32p),
        ("shift", _i32p),
        ("input_zero_point", _i32),
        ("output_zero_point", _i32),
        ("act_min", _i32),
        ("act_max", _i32),
    ]


class _FlipNet(ctypes.Structure):
    _fields_ = [
        ("hidden", _i32),
        ("w1", _i8p),
        ("b1", _i32p),
        ("m1", _i32),
        ("s1", _i32),
        ("w2", _i8p),
        ("b2", _i32),
        ("threshold", _i32),
    ]


class _QCoreHead(ctypes.Structure):
    _fields_ = [
        ("num_layers", _i32),
        ("layers", _P(_FCLayer)),
        ("nets", _P(_P(_FlipNet))),
        ("margin", _i32),
        ("tries", _i32),
    ]


class _StepResult(ctypes.Structure):
    _fields_ = [
        (name, _i32)
        for name in (
            "kept",
            "level",
            "changed",
            "correct_before",
            "correct_after",
            "margin_before",
            "margin_after",
        )
    ]


_SIGNATURES = {
    "edgeplus_status_str": (ctypes.c_char_p, [ctypes.c_int]),
    "edgeplus_requantize": (_i32, [_i32, _i32, _i32]),
    "edgeplus_packed_bytes": (_i32, [_i32, _i32]),
    "edgeplus_pack": (ctypes.c_int, [_i8p, _i32, _i32, _i8p]),
    "edgeplus_unpack": (ctypes.c_int, [_i8p, _i32, _i32, _i8p]),
    "edgeplus_pack_int4": (ctypes.c_int, [_i8p, _i32, _i8p]),
    "edgeplus_pack_int2": (ctypes.c_int, [_i8p, _i32, _i8p]),
    "edgeplus_unpack_int4": (ctypes.c_int, [_i8p, _i32, _i8p]),
    "edgeplus_unpack_int2": (ctypes.c_int, [_i8p, _i32, _i8p]),
    "edgeplus_conv2d_get_buffer_size": (_i32, [_P(_Params), _P(_Dims), _P(_Dims), _P(_Dims)]),
    "edgeplus_conv2d_get_buffer_size_fast": (_i32, [_P(_Params), _P(_Dims), _P(_Dims), _P(_Dims)]),
    "edgeplus_depthwise_conv2d_get_buffer_size": (
        _i32,
        [_P(_Params), _P(_Dims), _P(_Dims), _P(_Dims)],
    ),
    "edgeplus_conv2d_window": (
        ctypes.c_int,
        [
            _P(_Context),
            _P(_Params),
            _P(_Quant),
            _P(_Dims),
            _P(_Window),
            _i8p,
            _P(_Dims),
            _i8p,
            _i32p,
            _P(_Dims),
            _P(_Window),
            _i8p,
            _P(_Window),
        ],
    ),
    "edgeplus_depthwise_conv2d_window": (
        ctypes.c_int,
        [
            _P(_Context),
            _P(_Params),
            _P(_Quant),
            _P(_Dims),
            _P(_Window),
            _i8p,
            _P(_Dims),
            _i8p,
            _i32p,
            _P(_Dims),
            _P(_Window),
            _i8p,
            _P(_Window),
        ],
    ),
    "edgeplus_conv2d": (
        ctypes.c_int,
        [
            _P(_Context),
            _P(_Params),
            _P(_Quant),
            _P(_Dims),
            _i8p,
            _P(_Dims),
            _i8p,
            _i32p,
            _P(_Dims),
            _i8p,
        ],
    ),
    "edgeplus_depthwise_conv2d": (
        ctypes.c_int,
        [
            _P(_Context),
            _P(_Params),
            _P(_Quant),
            _P(_Dims),
            _i8p,
            _P(_Dims),
            _i8p,
            _i32p,
            _P(_Dims),
            _i8p,
        ],
    ),
    "edgeplus_conv_input_region": (
        ctypes.c_int,
        [_P(_Params), _P(_Dims), _P(_Dims), _P(_Window), _P(_Window)],
    ),
    "edgeplus_bitflip_apply": (ctypes.c_int, [_i8p, _i8p, _i32, _i32, _i32p]),
    "edgeplus_qcore_step_get_buffer_size": (_i32, [_P(_QCoreHead), _i32]),
    "edgeplus_qcore_step": (
        ctypes.c_int,
        [_P(_Context), _P(_QCoreHead), _i8p, _i32p, _i32, _u8p, _u8p, _P(_StepResult)],
    ),
    "edgeplus_qcore_refresh_get_buffer_size": (_i32, [_i32]),
    "edgeplus_qcore_refresh": (
        ctypes.c_int,
        [
            _P(_Context),
            _i32p,
            _u8p,
            _i32,
            _i32,
            _i32,
            _P(ctypes.c_uint32),
            _i32p,
            _i32p,
        ],
    ),
    "edgeplus_patch_stage_check": (ctypes.c_int, [_i32p, _i32]),
    "edgeplus_patch_stage_get_buffer_size": (_i32, [_i32p, _i32]),
    "edgeplus_patch_stage_weight_size": (ctypes.c_int, [_i32p, _i32, _i32, _i32p]),
    "edgeplus_patch_stage": (
        ctypes.c_int,
        [_P(_Context), _i32p, _i32, _P(_i8p), _i8p, _i8p],
    ),
}

# ----------------------------------------------------------------------------- loading


def library_path(variant: str = "plain") -> Path:
    """Where the library is (``EDGEPLUS_OPS_LIB`` overrides the plain variant)."""
    if variant not in _LIB_NAMES:
        raise ValueError(f"variant must be one of {sorted(_LIB_NAMES)}, got {variant!r}")
    env = os.environ.get("EDGEPLUS_OPS_LIB")
    if env and variant == "plain":
        return Path(env)
    return _REPO / "build" / "host" / _LIB_NAMES[variant]


def _sources_newer_than(lib: Path) -> bool:
    if not _OPS_DIR.is_dir():
        return False
    t = lib.stat().st_mtime
    for pattern in ("src/*.c", "src/*.h", "include/edgeplus/*.h", "Makefile"):
        if any(p.stat().st_mtime > t for p in _OPS_DIR.glob(pattern)):
            return True
    return False


def _build() -> None:
    if not (_OPS_DIR / "Makefile").is_file():
        raise KernelBuildError(
            f"the tflm_ops sources are not at {_OPS_DIR}; build libedgeplus_ops.so there "
            "and point EDGEPLUS_OPS_LIB at it"
        )
    make = shutil.which("make")
    cc = os.environ.get("CC", "cc")
    if make is None or shutil.which(cc.split()[0]) is None:
        raise KernelBuildError(
            "building the edgeplus C kernels needs `make` and a C compiler "
            f"(looked for make and {cc!r}); install them (Debian: apt-get install make gcc) "
            f"or build elsewhere with `make -C {_OPS_DIR} host` and set EDGEPLUS_OPS_LIB"
        )
    proc = subprocess.run(
        [make, "-C", str(_OPS_DIR), "host"], check=False, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise KernelBuildError(
            f"`make -C {_OPS_DIR} host` failed (exit {proc.returncode}):\n"
            + (proc.stderr or proc.stdout)[-3000:]
        )


_LOCK = threading.Lock()
_CACHE: dict[str, Kernels] = {}


def _load_cdll(variant: str) -> ctypes.CDLL:
    path = library_path(variant)
    from_env = variant == "plain" and os.environ.get("EDGEPLUS_OPS_LIB")
    if not from_env and (not path.is_file() or _sources_newer_than(path)):
        _build()
    if not path.is_file():
        raise KernelBuildError(f"no edgeplus kernel library at {path}")
    lib = ctypes.CDLL(str(path))
    for name, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


def get_kernels(variant: str = "plain") -> Kernels:
    """The (cached) binding of one library variant: ``"plain"`` or ``"emudsp"``."""
    with _LOCK:
        if variant not in _CACHE:
            _CACHE[variant] = Kernels(_load_cdll(variant), variant)
        return _CACHE[variant]


# ----------------------------------------------------------------------------- helpers


def _i8(a: np.ndarray):
    return a.ctypes.data_as(_i8p)


def _scratch(nbytes) -> _Context:
    """An edgeplus_context of ``nbytes`` over a zeroed buffer (never zero-size) that the
    context keeps alive."""
    buf = np.zeros(max(int(nbytes), 1), np.uint8)
    ctx = _Context(buf.ctypes.data_as(ctypes.c_void_p), int(nbytes))
    ctx.buffer = buf
    return ctx


def _dims(shape) -> _Dims:
    return _Dims(*(int(v) for v in shape))


def _window(win) -> _Window | None:
    return None if win is None else _Window(*(int(v) for v in win))


def _ref_window(win):
    return None if win is None else tuple(int(v) for v in win)


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


def _qcore_first_error(layers, nets, margin: int, tries: int, n: int):
    """The first of ``edgeplus_qcore_step``'s head checks that fails, in the C's order:
    ``(status code, argument, detail)``, or None. ``layers``: the ``_FCLayer`` structs
    with their ``multiplier``/``shift`` arrays; ``nets``: layer -> ``_FlipNet`` with its
    ``b1`` array."""
    count = len(layers)
    if not 1 <= count <= 8:
        return -2, "head", f"{count} layers; the C step takes 1 to 8"
    if not 1 <= margin <= 255:
        return -6, "margin", f"must be in [1, 255], got {margin}"
    if not 1 <= tries <= 16:
        return -6, "tries", f"must be in [1, 16] (confidence levels), got {tries}"
    for l, (c, mult, shift) in enumerate(layers):
        p = f"head.layers[{l}]"
        if c.w_bits not in (4, 8):
            return -3, f"{p}.bits", f"must be 4 or 8, got {c.w_bits}"
        bound = _ref.max_kc(8, c.w_bits)
        if (
            c.out_features < 1
            or c.in_features < 1
            or c.in_features > bound
            or c.out_features * c.in_features > _INT32_MAX
        ):
            return (
                -2,
                f"{p}.weights",
                (
                    f"shape ({c.out_features}, {c.in_features}): need >= 1 rows and 1 to {bound} "
                    "columns (int32 accumulators)"
                ),
            )
        if l > 0 and c.in_features != layers[l - 1][0].out_features:
            return (
                -2,
                p,
                (
                    f"takes {c.in_features} inputs but layer {l - 1} gives "
                    f"{layers[l - 1][0].out_features}"
                ),
            )
        for f in ("input_zero_point", "output_zero_point", "act_min", "act_max"):
            if not -128 <= getattr(c, f) <= 127:
                return -6, f"{p}.{f}", f"must lie in [-128, 127], got {getattr(c, f)}"
        if c.act_min > c.act_max:
            return -6, f"{p}.act_min", f"act_min {c.act_min} > act_max {c.act_max}"
        m, s = mult[: c.out_features], shift[: c.out_features]
        if (m < 0).any():
            return -6, f"{p}.multiplier", f"must be >= 0, got {int(m.min())}"
        if (s < -31).any() or (s > 30).any():
            return -6, f"{p}.shift", f"must lie in [-31, 30], got {s.min()}..{s.max()}"
    classes = layers[-1][0].out_features
    if not 2 <= classes <= 1 << 21:
        return -2, f"head.layers[{count - 1}]", f"{classes} classes; need 2 to 2**21"
    for l in sorted(nets):
        c, b1 = nets[l]
        if not 1 <= c.hidden <= 1024:
            return -2, f"nets[{l}].w1", f"hidden size must be in [1, 1024], got {c.hidden}"
        if c.hidden and int(np.abs(b1[: c.hidden].astype(np.int64)).max()) > 1 << 30:
            return -6, f"nets[{l}].b1", "must lie in [-2**30, 2**30]"
        if c.m1 < 0:
            return -6, f"nets[{l}].m1", f"must be in [0, 2**31), got {c.m1}"
        if not -31 <= c.s1 <= 30:
            return -6, f"nets[{l}].s1", f"must be in [-31, 30], got {c.s1}"
        if abs(c.b2) > 1 << 30:
            return -6, f"nets[{l}].b2", f"must lie in [-2**30, 2**30], got {c.b2}"
        if not 1 <= c.threshold <= 1 << 30:
            return -6, f"nets[{l}].threshold", f"must be in [1, 2**30], got {c.threshold}"
    if not 1 <= n <= 8421504:
        return -2, "x", f"{n} samples; the step takes 1 to 8421504"
    return None


class Kernels:
    """NumPy-friendly wrappers of one loaded library."""

    def __init__(self, lib: ctypes.CDLL, variant: str):
        self.lib = lib
        self.variant = variant

    # -- misc -------------------------------------------------------------------------

    def status_str(self, code: int) -> str:
        return self.lib.edgeplus_status_str(int(code)).decode()

    def requantize(self, acc, multiplier, shift) -> np.ndarray:
        """Elementwise ``edgeplus_requantize`` (TFLite MultiplyByQuantizedMultiplier)."""
        acc, multiplier, shift = np.broadcast_arrays(
            np.asarray(acc, np.int64), np.asarray(multiplier, np.int64), np.asarray(shift, np.int64)
        )
        out = np.empty(acc.shape, np.int32)
        f = self.lib.edgeplus_requantize
        for idx in np.ndindex(acc.shape):
            out[idx] = f(int(acc[idx]), int(multiplier[idx]), int(shift[idx]))
        return out

    # -- packing ----------------------------------------------------------------------

    def pack(self, values, bits: int, name: str = "values") -> np.ndarray:
        """Pack integers (any shape, C order) at ``bits`` with the C packer."""
        check_bits(bits, "bits")
        v = np.asarray(values)
        if v.dtype.kind not in "iu":
            raise TypeError(f"{name} must be an integer array, got dtype {v.dtype}")
        lo, hi = int_range(bits)
        flat = v.reshape(-1)
        if flat.size and (flat.min() < lo or flat.max() > hi):
            bad = int(np.flatnonzero((flat < lo) | (flat > hi))[0])
            _raise(
                "edgeplus_pack",
                -6,
                name,
                f"values must lie in [{lo}, {hi}] at {bits} bits; flat index {bad} holds "
                f"{int(flat[bad])}",
            )
        src = np.ascontiguousarray(flat, dtype=np.int8)
        dst = np.zeros(max(packed_nbytes(src.size, bits), 1), np.int8)
        st = self.lib.edgeplus_pack(_i8(src), src.size, bits, _i8(dst))
        if st != 0:
            _raise("edgeplus_pack", st, name, f"{src.size} values at {bits} bits")
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
            _raise("edgeplus_unpack", st, "packed", f"{count} values at {bits} bits")
        return dst[:count]

    # -- conv -------------------------------------------------------------------------

    def _buffer_size(self, fname, params, input_shape, filter_shape, output_shape) -> int:
        p = _Params(*(int(getattr(params, f)) for f in _PARAM_FIELDS))
        size = getattr(self.lib, fname)(
            ctypes.byref(p),
            ctypes.byref(_dims(input_shape)),
            ctypes.byref(_dims(filter_shape)),
            ctypes.byref(_dims(output_shape)),
        )
        if size < 0:
            self._explain(
                fname,
                size,
                params,
                input_shape,
                filter_shape,
                output_shape,
                depthwise="depthwise" in fname,
            )
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

    def _explain(
        self,
        fname,
        code,
        params,
        input_shape,
        filter_shape,
        output_shape,
        *,
        depthwise,
        multiplier=None,
        shift=None,
        window=None,
        input_region=None,
        output_region=None,
        scratch_bytes=None,
    ):
        """Raise the KernelError for ``code``, naming the argument the reference blames."""
        if code == -5:
            _raise(
                fname,
                code,
                "scratch_bytes",
                f"{scratch_bytes} bytes of scratch is below the kernel's minimum",
            )
        try:
            _ref.check_conv_args(
                params,
                input_shape,
                filter_shape,
                output_shape,
                depthwise=depthwise,
                multiplier=multiplier,
                shift=shift,
                window=_ref_window(window),
                input_region=_ref_window(input_region),
                output_region=_ref_window(output_region),
            )
        except _ref.ConvArgumentError as e:
            detail = str(e).split(": ", 2)[-1]
            _raise(fname, code, e.argument, detail)
        _raise(
            fname,
            code,
            "unknown",
            "the C kernel rejected the arguments "
            f"(params={params}, input={tuple(input_shape)}, filter={tuple(filter_shape)}, "
            f"output={tuple(output_shape)}, window={window})",
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
        p = _Params(*(int(getattr(params, f)) for f in _PARAM_FIELDS))
        q = _Quant(mult.ctypes.data_as(_i32p), shf.ctypes.data_as(_i32p))
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
            self._explain(
                fname,
                st,
                params,
                in_shape,
                w.shape,
                out_shape,
                depthwise=depthwise,
                multiplier=mult,
                shift=shf,
                window=win,
                input_region=input_region,
                output_region=output_region,
                scratch_bytes=scratch_bytes,
            )
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
        p = _Params(*(int(getattr(params, f)) for f in _PARAM_FIELDS))
        res = _Window()
        st = self.lib.edgeplus_conv_input_region(
            ctypes.byref(p),
            ctypes.byref(_dims(input_shape)),
            ctypes.byref(_dims(filter_shape)),
            ctypes.byref(_window(window)),
            ctypes.byref(res),
        )
        if st != 0:
            _raise("edgeplus_conv_input_region", st, "window", f"{tuple(window)}")
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
            arg = {-3: "bits", -6: "update", -2: "update"}.get(st, "weights")
            _raise(
                "edgeplus_bitflip_apply",
                st,
                arg,
                "update values must be -1, 0 or +1" if st == -6 else f"bits={bits}",
            )
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
        ``keep``), checked in the C's order where the C cannot name the argument."""
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
        c_layers = (_FCLayer * max(count, 1))()
        checks = []
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
            checks.append((c, mult, shift))
            packed.append((wbuf, wp.size, bits, out, inp))
        c_nets = (_P(_FlipNet) * max(count, 1))()
        net_checks = {}
        for l, net in nets.items():
            w1 = np.asarray(net.w1)
            hidden = w1.shape[0] if w1.ndim == 2 else -1
            if w1.ndim != 2 or w1.shape[1] != 4:
                _raise(fname, -2, f"nets[{l}].w1", f"must be (hidden, 4), got {w1.shape}")
            w1 = _c_array(fname, f"nets[{l}].w1", w1, hidden * 4, np.int8)
            b1 = _c_array(fname, f"nets[{l}].b1", net.b1, hidden, np.int32)
            w2 = _c_array(fname, f"nets[{l}].w2", net.w2, hidden, np.int8)
            c = _FlipNet(
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
            net_checks[int(l)] = (c, b1)
        chead = _QCoreHead(count, c_layers, c_nets, margin, tries)
        return chead, c_layers, keep, checks, packed, net_checks

    def qcore_step_get_buffer_size(self, head, nets, n: int) -> int:
        """Scratch bytes of ``edgeplus_qcore_step`` for ``n`` samples (the C's
        ``_get_buffer_size``)."""
        fname = "edgeplus_qcore_step_get_buffer_size"
        chead, *_ = self._qcore_head(fname, head, nets, None, 16, 6)
        need = int(self.lib.edgeplus_qcore_step_get_buffer_size(ctypes.byref(chead), int(n)))
        if need < 0:
            _raise(fname, need, "head", f"the C refuses this head or n = {n}")
        return need

    def qcore_step(self, head, nets, x, y, weights=None, margin=16, tries=6, scratch_bytes=None):
        """``edgeplus_qcore_step``: the same arguments and the same
        :class:`~tfmot_edgeplus.calibration.step.StepResult` as
        :func:`tfmot_edgeplus.calibration.step.qcore_step` (``head`` an ``IntHead``,
        ``nets`` a dict layer index -> ``FlipNet``, ``weights`` unpacked, default the
        head's own); the weights are packed with the C packer for the call and the result's
        unpacked. ``scratch_bytes`` defaults to ``edgeplus_qcore_step_get_buffer_size``."""
        from tfmot_edgeplus.calibration.step import StepResult

        fname = "edgeplus_qcore_step"
        chead, c_layers, _buffers, checks, packed, net_checks = self._qcore_head(
            fname, head, nets, weights, margin, tries
        )
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
        res = _StepResult()
        st = self.lib.edgeplus_qcore_step(
            ctypes.byref(ctx),
            ctypes.byref(chead),
            _i8(xb),
            yb.ctypes.data_as(_i32p),
            n,
            mask_b.ctypes.data_as(_u8p),
            mask_a.ctypes.data_as(_u8p),
            ctypes.byref(res),
        )
        if st != 0:
            first = _qcore_first_error(checks, net_checks, margin, tries, n)
            classes = int(c_layers[len(head.layers) - 1].out_features)
            if first is not None and first[0] == st:
                _raise(fname, *first)
            elif st == -6 and ((y < 0) | (y >= classes)).any():
                bad = int(y[(y < 0) | (y >= classes)][0])
                _raise(
                    fname, st, "y", f"label {bad} is outside the head's class range [0, {classes})"
                )
            elif st == -5:
                _raise(
                    fname,
                    st,
                    "scratch_bytes",
                    f"{scratch_bytes} bytes of scratch; the step needs {need}",
                )
            elif st == -2 and need > 0:
                _raise(
                    fname,
                    st,
                    "x",
                    f"{n} samples could overflow the int32 gradient sums "
                    "of the step (n * max|error| * 255 > 2**31 - 1); calibrate on fewer "
                    "samples per step (or a smaller margin)",
                )
            _raise(fname, st, "unknown", "the C step rejected the arguments")
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
        )

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
        need = int(self.lib.edgeplus_qcore_refresh_get_buffer_size(n))
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
            if st == -2:
                if n < 1:
                    _raise(fname, st, "prior_counts", "no items to choose from")
                if steps * n > _INT32_MAX:
                    _raise(fname, st, "history", f"{steps} vectors of {n} items exceed int32")
                _raise(
                    fname, st, "size", f"must be in [1, {n}] (items in QCore U chunk), got {size}"
                )
            if st == -6:
                if state.value == 0:
                    _raise(
                        fname,
                        st,
                        "seed",
                        "must be a nonzero 32-bit value (xorshift32 never leaves 0)",
                    )
                _raise(
                    fname,
                    st,
                    "prior_counts",
                    f"counts must lie in [0, 2**31 - 1 - "
                    f"{steps}], got {prior.min()}..{prior.max()}",
                )
            if st == -5:
                _raise(
                    fname,
                    st,
                    "scratch_bytes",
                    f"{scratch_bytes} bytes of scratch; the refresh needs {need}",
                )
            _raise(fname, st, "unknown", "the C refresh rejected the arguments")
        return (
            chosen[:size].astype(np.int64),
            counts[:size].astype(np.int64),
            int(state.value),
        )


    # ------------------------------------------------------------------ patch stage

    @staticmethod
    def _program_words(program) -> np.ndarray:
        from tfmot_edgeplus.core.program import StageProgram

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
            _raise("edgeplus_patch_stage_check", st, "program", "the C check rejected it")

    def patch_stage_get_buffer_size(self, program) -> int:
        words = self._program_words(program)
        n = int(self.lib.edgeplus_patch_stage_get_buffer_size(words.ctypes.data_as(_i32p),
                                                              words.size))  # fmt: skip
        if n < 0:
            _raise("edgeplus_patch_stage_get_buffer_size", n, "program", "invalid program")
        return n

    def patch_stage_weight_size(self, program, slot: int) -> int:
        words = self._program_words(program)
        out = ctypes.c_int32(0)
        st = self.lib.edgeplus_patch_stage_weight_size(
            words.ctypes.data_as(_i32p), words.size, int(slot), ctypes.byref(out)
        )
        if st != 0:
            _raise("edgeplus_patch_stage_weight_size", st, "slot", f"slot {slot}")
        return int(out.value)

    def patch_stage(self, program, filters, x, scratch_bytes=None) -> np.ndarray:
        """``edgeplus_patch_stage`` over a batch: ``x`` int8 ``(N, H, W, C)`` or ``(H, W, C)``,
        ``filters`` the unpacked integer filters per weight slot (packed here at each step's
        ``w_bits``). Returns the split tensors like ``simulate.run_stage``."""
        from tfmot_edgeplus.core.program import StageProgram

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
                _raise(fname, st, "scratch_bytes" if st == -5 else "program",
                       f"status {st} (scratch {ctx.size} bytes, needs {need})")  # fmt: skip
            out[i] = oi
        return out[0] if single else out


# ----------------------------------------------------------------------------- module API


def status_str(code: int) -> str:
    return get_kernels().status_str(code)


def requantize(acc, multiplier, shift) -> np.ndarray:
    return get_kernels().requantize(acc, multiplier, shift)


def pack(values, bits: int) -> np.ndarray:
    return get_kernels().pack(values, bits)


def unpack(packed, bits: int, count: int) -> np.ndarray:
    return get_kernels().unpack(packed, bits, count)


def conv2d(x, w, bias, multiplier, shift, params, **kwargs) -> np.ndarray:
    return get_kernels().conv2d(x, w, bias, multiplier, shift, params, **kwargs)


def depthwise_conv2d(x, w, bias, multiplier, shift, params, **kwargs) -> np.ndarray:
    return get_kernels().depthwise_conv2d(x, w, bias, multiplier, shift, params, **kwargs)


def conv2d_get_buffer_size(params, input_shape, filter_shape, output_shape) -> int:
    return get_kernels().conv2d_get_buffer_size(params, input_shape, filter_shape, output_shape)


def conv2d_get_buffer_size_fast(params, input_shape, filter_shape, output_shape) -> int:
    return get_kernels().conv2d_get_buffer_size_fast(
        params, input_shape, filter_shape, output_shape
    )


def depthwise_conv2d_get_buffer_size(params, input_shape, filter_shape, output_shape) -> int:
    return get_kernels().depthwise_conv2d_get_buffer_size(
        params, input_shape, filter_shape, output_shape
    )


def conv_input_region(params, input_shape, filter_shape, window):
    return get_kernels().conv_input_region(params, input_shape, filter_shape, window)


def bitflip_apply(weights, update, bits: int) -> tuple[np.ndarray, int]:
    return get_kernels().bitflip_apply(weights, update, bits)


def bitflip_apply_packed(packed, update, bits: int) -> tuple[np.ndarray, int]:
    return get_kernels().bitflip_apply_packed(packed, update, bits)


def qcore_step(head, nets, x, y, weights=None, margin=16, tries=6):
    return get_kernels().qcore_step(head, nets, x, y, weights=weights, margin=margin, tries=tries)


def qcore_refresh(prior_counts, history, size, seed):
    return get_kernels().qcore_refresh(prior_counts, history, size, seed)


def qcore_step_get_buffer_size(head, nets, n: int) -> int:
    return get_kernels().qcore_step_get_buffer_size(head, nets, n)


def patch_stage(program, filters, x) -> np.ndarray:
    return get_kernels().patch_stage(program, filters, x)


def patch_stage_get_buffer_size(program) -> int:
    return get_kernels().patch_stage_get_buffer_size(program)


def patch_stage_check(program) -> None:
    get_kernels().patch_stage_check(program)
