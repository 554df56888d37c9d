"""One machine-wide lock around every build of the C sources (``make`` into ``build/``).

The test suite runs in parallel processes (``pytest -n``, README) and a benchmark may run
beside it; two ``make`` runs writing one build folder at once would corrupt objects, and a
process could load a shared library that another is still writing. Every build (the host
kernels, the TFLM glue, the M4 and fuzz programs, the Arduino library) therefore runs inside
:func:`build_lock`: an exclusive ``flock`` on one file in the temporary directory, re-entrant
within a process, released when the build ends (or the process dies).
"""

from __future__ import annotations

import contextlib
import fcntl
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["build_lock"]

LOCK_PATH = Path(tempfile.gettempdir()) / "tfmot_edgeplus-build.lock"
_local = threading.RLock()
_depth = 0


@contextlib.contextmanager
def build_lock() -> Iterator[None]:
    """Hold the build lock for the ``with`` block (nested uses in one process are free)."""
    global _depth
    with _local:
        if _depth:
            _depth += 1
            try:
                yield
            finally:
                _depth -= 1
            return
        with open(LOCK_PATH, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            _depth = 1
            try:
                yield
            finally:
                _depth = 0
                fcntl.flock(handle, fcntl.LOCK_UN)
