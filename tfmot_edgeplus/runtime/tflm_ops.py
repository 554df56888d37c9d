"""Load the edgeplus custom ops into the host TFLM interpreter (pip ``tflite-micro``).

    from tfmot_edgeplus.runtime import tflm_ops
    from tflite_micro.python.tflite_micro import runtime

    registerer = tflm_ops.load()            # builds build/host/libedgeplus_tflm.so if needed
    interp = runtime.Interpreter.from_bytes(model, custom_op_registerers=[registerer])

The library is the C++ glue of ``tflm_ops/tflm`` plus the C kernels, compiled against
the TFLM headers of the commit the wheel was built from (``make -f
tflm_ops/Makefile.tflm host``; needs ``EDGEPLUS_TFLM_ROOT``,
``EDGEPLUS_FLATBUFFERS_ROOT`` and ``EDGEPLUS_GEMMLOWP_ROOT``). Choices:

* ``load()`` runs make whenever those variables are set (make rebuilds only what
  changed, so a stale library is never loaded); without them it loads an existing
  library and otherwise raises :class:`TflmOpsUnavailableError` saying what to set.
* The library is loaded with ``RTLD_GLOBAL``: the interpreter looks the registerer up
  by name (``dlsym``) in the global namespace.
* ``EDGEPLUS_TFLM_LIB`` may point at a prebuilt library instead.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import threading
from pathlib import Path

from tfmot_edgeplus.runtime.build_lock import build_lock

__all__ = ["REGISTERER", "TflmOpsUnavailableError", "build", "library_path", "load"]

REGISTERER = "EdgeplusRegister"
"""Name to pass in ``custom_op_registerers=[...]``."""

_ROOT = Path(__file__).resolve().parents[2]
_MAKEFILE = _ROOT / "tflm_ops" / "Makefile.tflm"
_ENV_VARS = ("EDGEPLUS_TFLM_ROOT", "EDGEPLUS_FLATBUFFERS_ROOT", "EDGEPLUS_GEMMLOWP_ROOT")
_lock = threading.Lock()
_loaded: dict[str, ctypes.CDLL] = {}


class TflmOpsUnavailableError(RuntimeError):
    """The custom-op library is neither built nor buildable here; the message says why."""


def library_path() -> Path:
    """Where the library is (``$EDGEPLUS_TFLM_LIB`` or ``build/host/libedgeplus_tflm.so``)."""
    override = os.environ.get("EDGEPLUS_TFLM_LIB")
    return Path(override) if override else _ROOT / "build" / "host" / "libedgeplus_tflm.so"


def missing_env() -> list[str]:
    """The source-location variables that are unset (empty list: can build)."""
    return [v for v in _ENV_VARS if not os.environ.get(v)]


def build(timeout: float = 900.0) -> Path:
    """Run ``make -f tflm_ops/Makefile.tflm host`` and return the library path."""
    missing = missing_env()
    if missing:
        raise TflmOpsUnavailableError(
            f"cannot build the edgeplus TFLM ops: {', '.join(missing)} not set. Point them at "
            "checkouts of tensorflow/tflite-micro 90b983c, google/flatbuffers v25.9.23 and "
            "google/gemmlowp fda83bdc (the sources of the pinned tflite-micro wheel)."
        )
    if not _MAKEFILE.exists():
        raise TflmOpsUnavailableError(
            f"{_MAKEFILE} not found: building the ops needs a source checkout of tfmot_edgeplus."
        )
    cmd = [
        "make",
        "-s",
        "-f",
        str(_MAKEFILE),
        "host",
        f"PYTHON={sys.executable}",
        f"BUILD={library_path().parent.parent}",
    ]
    try:
        with build_lock():
            proc = subprocess.run(
                cmd, check=False, capture_output=True, text=True, timeout=timeout, cwd=_ROOT
            )
    except FileNotFoundError as err:
        raise TflmOpsUnavailableError(
            "`make` not found; install make and a C++17 compiler."
        ) from err
    if proc.returncode != 0:
        raise TflmOpsUnavailableError(
            f"building the edgeplus TFLM ops failed ({' '.join(cmd)}):\n{proc.stderr[-4000:]}"
        )
    return library_path()


def load(build_if_possible: bool = True) -> str:
    """Load the library once per process (building it first when possible); return
    the registerer name for ``custom_op_registerers``."""
    with _lock:
        if _loaded:
            return REGISTERER
        override = os.environ.get("EDGEPLUS_TFLM_LIB")
        if build_if_possible and not override and not missing_env():
            path = build()
        else:
            path = library_path()
        if not path.exists():
            hint = (
                f"set {', '.join(missing_env())} so it can be built"
                if missing_env()
                else "run `make -f tflm_ops/Makefile.tflm host`"
            )
            raise TflmOpsUnavailableError(f"{path} does not exist; {hint}.")
        try:
            lib = ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
        except OSError as err:
            raise TflmOpsUnavailableError(f"cannot load {path}: {err}") from err
        if not hasattr(lib, REGISTERER):
            raise TflmOpsUnavailableError(f"{path} does not export {REGISTERER}.")
        _loaded[str(path)] = lib
        return REGISTERER
