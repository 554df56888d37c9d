"""Building and loading the tflm_ops C kernels' host library (``build/host/*.so``).

``make -C tflm_ops host`` builds it from ``tflm_ops/src``; :func:`load_library` runs that
itself when the library is missing or older than the sources, says clearly what to install
when there is no compiler, and binds every prototype of the headers
(:mod:`tfmot_edgeplus.runtime.kernel_abi`). ``EDGEPLUS_OPS_LIB`` points at a prebuilt
library instead.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

from tfmot_edgeplus.runtime.build_lock import build_lock
from tfmot_edgeplus.runtime.kernel_abi import AbiError, load_abi

__all__ = ["VARIANTS", "KernelBuildError", "build", "library_path", "load_library"]

_REPO = Path(__file__).resolve().parents[2]
_OPS_DIR = _REPO / "tflm_ops"
VARIANTS = {"plain": "libedgeplus_ops.so", "emudsp": "libedgeplus_ops_emudsp.so"}


class KernelBuildError(RuntimeError):
    """The C library is missing and could not be built."""


def library_path(variant: str = "plain") -> Path:
    """Where the library is (``EDGEPLUS_OPS_LIB`` overrides the plain variant)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    env = os.environ.get("EDGEPLUS_OPS_LIB")
    if env and variant == "plain":
        return Path(env)
    return _REPO / "build" / "host" / VARIANTS[variant]


def _sources_newer_than(lib: Path) -> bool:
    if not _OPS_DIR.is_dir():
        return False
    t = lib.stat().st_mtime
    for pattern in ("src/*.c", "src/*.h", "include/edgeplus/*.h", "Makefile"):
        if any(p.stat().st_mtime > t for p in _OPS_DIR.glob(pattern)):
            return True
    return False


def build() -> None:
    """``make -C tflm_ops host``; KernelBuildError saying what is missing."""
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
    with build_lock():
        proc = subprocess.run(
            [make, "-C", str(_OPS_DIR), "host"], check=False, capture_output=True, text=True
        )
    if proc.returncode != 0:
        raise KernelBuildError(
            f"`make -C {_OPS_DIR} host` failed (exit {proc.returncode}):\n"
            + (proc.stderr or proc.stdout)[-3000:]
        )


def load_library(variant: str = "plain") -> ctypes.CDLL:
    """The library of ``variant`` (built first when missing or stale), every prototype of
    the headers bound."""
    path = library_path(variant)
    from_env = variant == "plain" and os.environ.get("EDGEPLUS_OPS_LIB")
    if not from_env:
        with build_lock():  # another test process may be building it right now
            if not path.is_file() or _sources_newer_than(path):
                build()
    if not path.is_file():
        raise KernelBuildError(f"no edgeplus kernel library at {path}")
    try:
        return load_abi().bind(ctypes.CDLL(str(path)))
    except AbiError as e:
        raise KernelBuildError(f"cannot bind {path}: {e}") from e
