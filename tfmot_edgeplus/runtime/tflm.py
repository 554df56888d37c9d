"""Run a TFLite flatbuffer on the host with the TFLite-Micro interpreter.

:class:`TFLMRunner` wraps ``tflite_micro.python.tflite_micro.runtime.Interpreter`` (the PyPI
wheel ``tflite-micro``, pinned in setup.cfg) with what the rest of the package needs: a
Keras-like ``predict`` over many samples, float <-> integer (de)quantization done exactly as
TFLite does it, the arena the model really uses, and errors that say what went wrong.
This module imports only NumPy and tflite-micro (no TensorFlow), so it loads in a fraction
of a second.

Choices, and why:

- **Model check before the interpreter sees it.** The interpreter casts the bytes to a
  flatbuffer with no verification, so garbage or a truncated file can crash the process.
  We first require the ``TFL3`` file identifier, then decode the whole model with the
  flatbuffer schema that ships in the wheel and check the indices the interpreter follows
  (tensors, buffers, operator codes). Anything off is a ``ValueError`` naming what was
  received.
- **Arena.** ``arena_size=None`` (default) sizes the arena automatically: start at 64 KiB or,
  if larger, the next power of two above twice the model's non-constant tensor bytes plus
  1 KiB per operator, and double while TFLM reports that memory ran out (up to 1 GiB). The
  generous start matters: when a kernel's *persistent* allocation fails in Prepare, this
  TFLM build can crash instead of reporting it (seen with a 64 KiB arena for a
  MobileNetV2 tail: "Failed to allocate tail memory", then a segfault in ConvPrepare). An explicit
  ``arena_size`` is used as is and must be at least ``MIN_ARENA_SIZE`` = 2048 bytes (plus
  128 per resource variable): with less, TFLM may not even fit its allocator objects in the
  arena, and then the interpreter crashes the process instead of failing (measured with
  this wheel: a crash below about 470 bytes, a clean allocation error above). Above the
  floor, an arena too small can still crash it (a kernel's persistent allocation failing in
  Init/Prepare, e.g. at 3.5-6.4 KB for a 96x96 MobileNetV2 that needs 60 KB): an explicit
  ``arena_size`` is first tried in a forked child process, and a crash there is a
  ``TFLMError``; :meth:`min_arena_size` tries every size in a child.
  :attr:`arena_bytes` is the arena TFLM actually used after allocation (its ``RecordingMicroAllocator`` total, head +
  tail). That is less than the smallest arena that *works*, because kernels' Prepare also
  needs temporary space; :meth:`min_arena_size` finds that one by bisection. Both are
  host (64-bit) figures: pointers and TFLM structs are smaller on the Cortex-M4, so they are
  upper bounds there.
- **TFLM's messages.** TFLM prints its errors (``MicroPrintf``) on the C ``stderr``. While it
  allocates and runs, we redirect file descriptor 2 to a temporary file; on failure the text
  goes into the exception, on success it is written back to ``sys.stderr`` (nothing is lost).
  The redirection is process-wide for that moment, so another thread's stderr output can land
  in it: do not share a process between runners and chatty threads if that matters.
- **Quantization.** Float input is quantized like TFLite's QUANTIZE kernel:
  ``clamp(round_half_away_from_zero(float32(x) / float32(scale)) + zero_point)``. Input that
  already has the model's integer dtype is passed through untouched. Outputs are
  dequantized as ``(q - zero_point) * scale`` in float32 unless ``dequantize=False``.
- **Batches.** TFLM tensors have a fixed batch dimension ``B`` (usually 1); ``predict`` runs
  the samples ``B`` at a time (padding the last group with zeros and dropping the padded
  results). The interpreter is not reset between samples, so stateful models keep state;
  call :meth:`reset` to clear it.
"""

from __future__ import annotations

import contextlib
import faulthandler
import io
import numbers
import os
import re
import signal
import sys
import tempfile
import threading
import time
import warnings

import numpy as np

from tfmot_edgeplus.core.intmath import dequantize, quantize
from tfmot_edgeplus.core.tflite import TFLITE_FILE_IDENTIFIER, check_model, describe_received

__all__ = [
    "MIN_ARENA_SIZE",
    "TFLITE_FILE_IDENTIFIER",
    "TFLMError",
    "TFLMRunner",
]

MIN_ARENA_SIZE = 2048
_ARENA_PER_RESOURCE_VARIABLE = 128
_AUTO_ARENA_START = 64 * 1024
_AUTO_ARENA_MAX = 1 << 30
_ARENA_ALIGN = 16
_PIN = "tflite-micro==0.dev20260820164721"
# TFLM's messages when the arena is too small (micro_allocator.cc,
# single_arena_buffer_allocator.cc, greedy_memory_planner.cc: the planner's buffer table is
# carved from what is left of the arena, hence "Too many buffers").
_OUT_OF_ARENA = re.compile(
    r"Failed to (allocate|resize)|Unable to allocate|missing: \d+|too small|Too many buffers",
    re.IGNORECASE,
)
_ARENA_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")
_ARENA_HEAD = re.compile(r"Arena allocation head (\d+) bytes")
_stderr_lock = threading.RLock()


class TFLMError(RuntimeError):
    """The TFLM interpreter failed; the message carries TFLM's own log lines."""


def _runtime():
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"TFLMRunner needs the TFLite-Micro Python wheel: `pip install --pre {_PIN}` "
            f"(Python 3.13). Import failed: {exc}"
        ) from exc
    return runtime


@contextlib.contextmanager
def _captured_stderr():
    """Redirect fd 2 (C stdio and Python) to a temp file; yield a list that gets the text."""
    box = [""]
    with _stderr_lock, tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            try:
                yield box
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
        finally:
            os.close(saved)
            tmp.seek(0)
            box[0] = tmp.read().decode("utf-8", errors="replace")


def _echo(text: str) -> None:
    if text.strip():
        sys.stderr.write(text)
        sys.stderr.flush()


def _log_tail(text: str, limit: int = 2000) -> str:
    text = text.replace("\r\n", "\n").strip()
    if not text:
        return " (TFLM printed nothing)"
    if len(text) > limit:
        text = "..." + text[-limit:]
    return "\nTFLM log:\n" + text


# --------------------------------------------------------------------------- model checks


def _as_model_bytes(model) -> bytes:
    if isinstance(model, (str, os.PathLike)):
        raise TypeError(
            f"TFLMRunner takes the model's bytes, received a path {os.fspath(model)!r}. Use "
            "TFLMRunner.from_file(path) or TFLMRunner(open(path, 'rb').read())."
        )
    if not isinstance(model, (bytes, bytearray, memoryview)):
        raise TypeError(
            "TFLMRunner takes a TFLite flatbuffer as bytes, received "
            f"{describe_received(model)}. Pass the bytes returned by "
            "tf.lite.TFLiteConverter.convert()."
        )
    return bytes(model)


def _check_arena_size(arena_size, floor: int) -> int | None:
    if arena_size is None:
        return None
    if isinstance(arena_size, bool) or not isinstance(arena_size, numbers.Integral):
        raise TypeError(
            f"arena_size must be None (automatic) or an int number of bytes, got {arena_size!r}"
        )
    if arena_size < floor:
        raise ValueError(
            f"arena_size={arena_size} bytes is below the minimum of {floor} bytes "
            f"(MIN_ARENA_SIZE={MIN_ARENA_SIZE} + {_ARENA_PER_RESOURCE_VARIABLE} per resource "
            "variable): TFLM may not fit its allocator in so small an arena, and the "
            "interpreter would crash. Use arena_size=None to size it automatically."
        )
    return int(arena_size)


def _check_registerers(custom_op_registerers) -> list[str]:
    if isinstance(custom_op_registerers, str):
        custom_op_registerers = (custom_op_registerers,)
    try:
        names = list(custom_op_registerers)
    except TypeError as exc:
        raise TypeError(
            "custom_op_registerers must be a sequence of registerer function names (str), got "
            f"{custom_op_registerers!r}"
        ) from exc
    for name in names:
        if not isinstance(name, str) or not name:
            raise TypeError(
                f"custom_op_registerers must hold non-empty str names, got {name!r} in {names}"
            )
    return names


# --------------------------------------------------------------------------- the runner


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def _details(raw: dict, index: int, name: str) -> dict:
    qp = raw["quantization_parameters"]
    scales = np.asarray(qp["scales"], dtype=np.float32)
    zero_points = np.asarray(qp["zero_points"], dtype=np.int64)
    quantized = scales.size > 0 and bool((scales > 0).all())
    return {
        "index": index,
        "name": name,
        "shape": tuple(int(s) for s in raw["shape"]),
        "dtype": np.dtype(raw["dtype"]),
        # tf.lite.Interpreter convention: (scale, zero_point), (0.0, 0) when not quantized
        "quantization": (float(scales[0]), int(zero_points[0])) if quantized else (0.0, 0),
        "quantization_parameters": {
            "scales": scales,
            "zero_points": zero_points,
            "quantized_dimension": int(qp["quantized_dimension"]),
        },
    }


def _broadcast_params(details: dict, ndim: int):
    qp = details["quantization_parameters"]
    scales, zps = qp["scales"], qp["zero_points"]
    if scales.size == 1:
        return scales[0], (zps[0] if zps.size else 0)
    shape = [1] * ndim
    shape[qp["quantized_dimension"]] = scales.size
    zps = zps if zps.size == scales.size else np.zeros(scales.size, np.int64)
    return scales.reshape(shape), zps.reshape(shape)


# A probe (one interpreter construction in a forked child) takes well under a second; a child
# still running after this long is stuck (fork in a process with threads) and is killed.
PROBE_TIMEOUT_S = 120


def _wait_child(pid: int, timeout: float) -> int | None:
    """The wait status of child ``pid``, or None after killing it when ``timeout`` s pass."""
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        done, wait_status = os.waitpid(pid, os.WNOHANG)
        if done:
            return wait_status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


class TFLMRunner:
    """A TFLite flatbuffer loaded in the TFLite-Micro interpreter on the host.

    Args:
        model_bytes: the flatbuffer (``bytes`` from ``TFLiteConverter.convert()``).
        arena_size: tensor arena in bytes, or None to size it automatically (see module doc).
        custom_op_registerers: names of ``extern "C" bool NAME(tflite::PythonOpsResolver*)``
            functions registering custom ops; their shared library must already be loaded
            with ``ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)``.

    Example::

        runner = TFLMRunner(tflite_bytes)
        probs = runner.predict(x_test)            # float in, float out
        raw = runner.predict(x_test, dequantize=False)
        print(runner.arena_bytes, runner.input_details[0]["quantization"])
    """

    def __init__(self, model_bytes, arena_size=None, custom_op_registerers=()):
        self._model = _as_model_bytes(model_bytes)
        self._model_t = check_model(self._model)
        self._registerers = _check_registerers(custom_op_registerers)
        n_vars = _runtime().count_resource_variables(self._model_t)
        self._arena_floor = MIN_ARENA_SIZE + _ARENA_PER_RESOURCE_VARIABLE * n_vars
        requested = _check_arena_size(arena_size, self._arena_floor)
        self._interp, self._arena_size = self._build(requested)
        self._min_arena = None
        sub = self._model_t.subgraphs[0]
        names = [_text(t.name) for t in sub.tensors]
        self._input_details = [
            _details(self._interp.get_input_details(i), i, names[t])
            for i, t in enumerate(sub.inputs)
        ]
        self._output_details = [
            _details(self._interp.get_output_details(i), i, names[t])
            for i, t in enumerate(sub.outputs)
        ]
        self._arena_bytes, self._arena_head_bytes = self._recorded_arena_bytes()

    @classmethod
    def from_file(cls, path, arena_size=None, custom_op_registerers=()) -> TFLMRunner:
        """Load a ``.tflite`` file."""
        with open(os.fspath(path), "rb") as f:
            data = f.read()
        return cls(data, arena_size=arena_size, custom_op_registerers=custom_op_registerers)

    # ----------------------------------------------------------------- construction

    def _try_build(self, arena_size: int):
        """Return (interpreter, None) or (None, log) when the arena was too small."""
        runtime = _runtime()
        with _captured_stderr() as log, contextlib.redirect_stdout(io.StringIO()):
            try:
                interp = runtime.Interpreter.from_bytes(
                    self._model,
                    custom_op_registerers=list(self._registerers),
                    arena_size=int(arena_size),
                )
                error = None
            except RuntimeError as exc:
                interp, error = None, exc
        text = log[0]
        if interp is not None:
            _echo(text)
            return interp, None
        if "could not register custom op" in str(error):
            raise TFLMError(
                f"{error}. A custom op registerer must be an exported "
                '`extern "C" bool NAME(tflite::PythonOpsResolver*)` in a shared library '
                "loaded beforehand with ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL); "
                f"custom_op_registerers={self._registerers}." + _log_tail(text)
            ) from error
        if _OUT_OF_ARENA.search(text):
            return None, text
        hint = ""
        if "Failed to get registration" in text or "Didn't find op" in text:
            customs = sorted(
                {_text(c.customCode) for c in self._model_t.operatorCodes if c.customCode}
            )
            hint = (
                " The model uses an operator this interpreter does not know"
                + (f" (its custom ops: {customs})" if customs else "")
                + ": a custom op needs its registerer in custom_op_registerers (and its "
                "library loaded)."
            )
        raise TFLMError(
            f"TFLM could not prepare the model ({len(self._model)} bytes, arena "
            f"{arena_size} bytes): {error}.{hint}" + _log_tail(text)
        ) from error

    def _build(self, requested: int | None):
        if requested is not None:
            if hasattr(os, "fork") and self.probe_arena_size(requested) == "crashed":
                raise TFLMError(
                    f"arena_size={requested} bytes is too small for this model (TFLM crashes "
                    "in a kernel's Init/Prepare at that size instead of reporting it; tried in "
                    "a child process). Use arena_size=None (automatic) or a larger size; "
                    "TFLMRunner(model).min_arena_size() gives the smallest that works."
                )
            interp, log = self._try_build(requested)
            if interp is None:
                raise TFLMError(
                    f"arena_size={requested} bytes is too small for this model. Use "
                    "arena_size=None (automatic) or a larger size; TFLMRunner(model)"
                    ".min_arena_size() gives the smallest that works." + _log_tail(log)
                )
            return interp, requested
        size = max(_AUTO_ARENA_START, self._arena_floor)
        while size < self._arena_estimate() and size < _AUTO_ARENA_MAX:
            size *= 2
        while True:
            interp, log = self._try_build(size)
            if interp is not None:
                return interp, size
            if size >= _AUTO_ARENA_MAX:
                raise TFLMError(
                    f"The model does not fit in a {size}-byte arena (the automatic limit)."
                    + _log_tail(log)
                )
            size *= 2

    def _arena_estimate(self) -> int:
        """Twice the non-constant tensor bytes plus 1 KiB per operator (see module doc)."""
        sub = self._model_t.subgraphs[0]
        size = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 8, 17: 1}
        total = 0
        for t in sub.tensors:
            buf = self._model_t.buffers[t.buffer] if t.buffer < len(self._model_t.buffers) else None
            if buf is not None and buf.data is not None and len(buf.data):
                continue
            shape = [max(int(d), 1) for d in (t.shape if t.shape is not None else [])]
            total += int(np.prod(shape, dtype=np.int64)) * size.get(int(t.type), 4)
        return 2 * total + 1024 * len(sub.operators or [])

    def _recorded_arena_bytes(self) -> tuple[int, int]:
        """``(total, head)`` bytes from TFLM's allocation report."""
        with _captured_stderr() as log:
            self._interp.print_allocations()
        total, head = _ARENA_TOTAL.search(log[0]), _ARENA_HEAD.search(log[0])
        if not total or not head:
            raise TFLMError(
                "Could not read the arena usage from TFLM's allocation report." + _log_tail(log[0])
            )
        return int(total.group(1)), int(head.group(1))

    # ----------------------------------------------------------------- properties

    @property
    def input_details(self) -> list[dict]:
        """Per input: index, name, shape, dtype, quantization (scale, zero_point), params."""
        return [dict(d) for d in self._input_details]

    @property
    def output_details(self) -> list[dict]:
        return [dict(d) for d in self._output_details]

    @property
    def arena_bytes(self) -> int:
        """Arena bytes TFLM used after allocating tensors (host figure, see module doc)."""
        return self._arena_bytes

    @property
    def arena_head_bytes(self) -> int:
        """The arena's *head*: the memory-planned activation tensors and kernels' scratch
        buffers (what patch-based inference shrinks). The rest (the tail) is persistent:
        per-operator data such as per-channel multipliers, tensor structs."""
        return self._arena_head_bytes

    @property
    def arena_size(self) -> int:
        """Size of the arena this runner was given (chosen automatically or requested)."""
        return self._arena_size

    @property
    def model_bytes(self) -> bytes:
        return self._model

    def min_arena_size(self) -> int:
        """Smallest arena (multiple of 16 bytes) in which this model allocates, by bisection.

        Costs about log2(arena_size / 16) interpreter constructions, each in a forked child
        process (:meth:`probe_arena_size`): below the smallest arena, this TFLM build can
        crash instead of failing (a kernel's persistent allocation that fails in Init or
        Prepare is not checked), so no size under test is ever tried in this process. The
        result is cached. A host figure: the Cortex-M4 build needs somewhat less (32-bit
        structs).
        """
        if self._min_arena is None:
            floor = self._arena_floor
            lo = max(floor, self._arena_bytes) - _ARENA_ALIGN  # fails or is not allowed
            lo -= lo % _ARENA_ALIGN
            hi = self._arena_size  # known to work
            while hi - lo > _ARENA_ALIGN:
                mid = (lo + hi) // 2
                mid -= mid % _ARENA_ALIGN
                if mid <= lo:
                    break
                if self.probe_arena_size(max(mid, floor)) == "ok":
                    hi = max(mid, floor)
                else:
                    lo = mid
            self._min_arena = hi
        return self._min_arena

    def probe_arena_size(self, arena_size: int) -> str:
        """Whether this model allocates in ``arena_size`` bytes, tried in a forked child
        process: ``"ok"``, ``"too small"`` (TFLM reported it) or ``"crashed"`` (the child
        died of a signal, e.g. a segfault in a kernel whose persistent allocation failed).
        Only POSIX systems fork; elsewhere this raises ``TFLMError``."""
        arena_size = _check_arena_size(arena_size, self._arena_floor)
        if not hasattr(os, "fork"):
            raise TFLMError("probe_arena_size needs os.fork (a POSIX system)")
        runtime = _runtime()
        sys.stdout.flush()
        sys.stderr.flush()
        with warnings.catch_warnings():
            # A parent with threads (TensorFlow's) warns; the child only runs this code.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: no Python locks, no cleanup, only an exit code
            status = 1
            try:
                faulthandler.disable()  # a crash here is an answer, not a report (pytest's)
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                os.dup2(devnull, 2)
                runtime.Interpreter.from_bytes(
                    self._model, custom_op_registerers=list(self._registerers),
                    arena_size=int(arena_size))  # fmt: skip
                status = 0
            finally:
                os._exit(status)
        wait_status = _wait_child(pid, PROBE_TIMEOUT_S)
        if wait_status is None:
            raise TFLMError(
                f"probing arena_size={arena_size}: the child process did not finish in "
                f"{PROBE_TIMEOUT_S} s (killed). A forked child of a process with threads can "
                "deadlock; pass an explicit, generous arena_size to skip the probe."
            )
        if os.WIFSIGNALED(wait_status):
            return "crashed"
        return "ok" if os.WEXITSTATUS(wait_status) == 0 else "too small"

    def reset(self) -> None:
        """Reset the interpreter's variable tensors (state of stateful models)."""
        self._interp.reset()

    # ----------------------------------------------------------------- inference

    def _prepare_input(self, x, details: dict) -> np.ndarray:
        shape, dtype = details["shape"], details["dtype"]
        x = np.asarray(x)
        expected = ("N",) + shape[1:]
        if x.ndim != len(shape) or tuple(x.shape[1:]) != tuple(shape[1:]):
            fix = ""
            if tuple(x.shape) == tuple(shape[1:]):
                fix = " Add the batch axis: x[np.newaxis]."
            raise ValueError(
                f"input {details['index']} ({details['name']!r}) expects shape "
                f"{expected} (model tensor {shape}), received shape {tuple(x.shape)}.{fix}"
            )
        if x.dtype == dtype:
            return np.ascontiguousarray(x)
        if dtype.kind == "f":
            if x.dtype.kind not in "fiu":
                raise ValueError(
                    f"input {details['index']} is {dtype.name}; received dtype {x.dtype}"
                )
            return np.ascontiguousarray(x, dtype=dtype)
        if x.dtype.kind == "f":
            scales = details["quantization_parameters"]["scales"]
            if scales.size == 0 or not (scales > 0).all():
                raise ValueError(
                    f"input {details['index']} is {dtype.name} without quantization "
                    f"parameters, so float input cannot be converted; pass {dtype.name} data."
                )
            scale, zero_point = _broadcast_params(details, x.ndim)
            return quantize(x, scale, zero_point, dtype)
        raise ValueError(
            f"input {details['index']} ({details['name']!r}) is {dtype.name}; received "
            f"{x.dtype}. Pass float data (quantized for you with scale/zero point "
            f"{details['quantization']}) or already-quantized x.astype(np.{dtype.name})."
        )

    def predict(self, x, batch_size=None, dequantize: bool = True):
        """Run the model on every sample of ``x``.

        Args:
            x: an array (N, ...) matching the model input without its batch size, or a
                list of such arrays for a multi-input model. Float data are quantized with
                the input's scale/zero point; data of the input's own dtype pass through.
            batch_size: accepted for Keras-compatible call sites; TFLM tensors have a fixed
                batch size B, so only None or B is valid.
            dequantize: return float32 outputs (default) or the raw integer tensors.

        Returns:
            One array (N, ...) per output: an array for a single-output model, else a list.
        """
        n_in = len(self._input_details)
        if isinstance(x, (list, tuple)):
            xs = list(x)
        else:
            xs = [x]
        if len(xs) != n_in:
            raise ValueError(
                f"the model has {n_in} input(s) but predict received {len(xs)} array(s)"
            )
        xs = [self._prepare_input(a, d) for a, d in zip(xs, self._input_details)]
        n = len(xs[0])
        if any(len(a) != n for a in xs):
            raise ValueError(
                f"all inputs must hold the same number of samples, got {[len(a) for a in xs]}"
            )
        group = self._input_details[0]["shape"][0] if self._input_details[0]["shape"] else 1
        group = max(int(group), 1)
        if batch_size is not None and batch_size != group:
            raise ValueError(
                f"batch_size={batch_size!r}: this TFLM model has a fixed batch size of {group}; "
                "pass batch_size=None (samples run one batch of that size at a time)"
            )
        outs = [np.empty((n,) + d["shape"][1:], dtype=d["dtype"]) for d in self._output_details]
        if n:
            self._run(xs, outs, n, group)
        if dequantize:
            outs = [self._dequantize(o, d) for o, d in zip(outs, self._output_details)]
        return outs[0] if len(outs) == 1 else outs

    def _run(self, xs, outs, n, group) -> None:
        with _captured_stderr() as log:
            try:
                for start in range(0, n, group):
                    stop = min(start + group, n)
                    for i, a in enumerate(xs):
                        chunk = a[start:stop]
                        if len(chunk) < group:
                            pad = np.zeros((group - len(chunk),) + chunk.shape[1:], chunk.dtype)
                            chunk = np.concatenate([chunk, pad])
                        self._interp.set_input(chunk, i)
                    self._interp.invoke()
                    for j, out in enumerate(outs):
                        out[start:stop] = self._interp.get_output(j)[: stop - start]
                error = None
            except RuntimeError as exc:
                error = exc
        if error is not None:
            raise TFLMError(
                f"TFLM failed while running sample {start}: {error}" + _log_tail(log[0])
            ) from error
        _echo(log[0])

    @staticmethod
    def _dequantize(out: np.ndarray, details: dict) -> np.ndarray:
        scales = details["quantization_parameters"]["scales"]
        if details["dtype"].kind == "f" or scales.size == 0 or not (scales > 0).all():
            return out
        scale, zero_point = _broadcast_params(details, out.ndim)
        return dequantize(out, scale, zero_point)

    def __repr__(self) -> str:
        ins = ", ".join(f"{d['shape']} {d['dtype'].name}" for d in self._input_details)
        outs = ", ".join(f"{d['shape']} {d['dtype'].name}" for d in self._output_details)
        return (
            f"TFLMRunner({len(self._model)} bytes, inputs [{ins}], outputs [{outs}], "
            f"arena {self._arena_bytes}/{self._arena_size} bytes)"
        )
