"""The C tests of tflm_ops on the host: `make -C tflm_ops test-host` and `test-asan`.

Each target builds tflm_ops/tests/*.c with the kernels twice (plain C, and the DSP path with
SMLAD & co emulated in C) and runs them: golden vectors from the NumPy reference, bad input
(NULL, zero/negative dims, bits outside {2,4,8}, windows outside the tensor, scratch too
small), and tile-by-tile == whole-tensor equivalence. test-asan adds
-fsanitize=address,undefined (any report aborts the run).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    shutil.which("make") is None or shutil.which("cc") is None,
    reason="needs make and a C compiler (apt-get install make gcc)",
)


def _run(target: str) -> str:
    proc = subprocess.run(
        ["make", "-C", str(REPO / "tflm_ops"), target],
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"make {target} failed (exit {proc.returncode}):\n{out[-6000:]}"
    return out


def _check_summaries(out: str, expected_runs: int) -> None:
    runs = re.findall(r"^ctests: (\d+) passed, (\d+) failed$", out, re.MULTILINE)
    assert len(runs) == expected_runs, out[-3000:]
    for passed, failed in runs:
        assert int(failed) == 0 and int(passed) > 500, out[-3000:]
    assert "FAIL " not in out


def test_c_tests_host():
    out = _run("test-host")
    _check_summaries(out, 2)
    assert "plain C path" in out and "emulated DSP path" in out


def test_c_tests_asan_ubsan():
    out = _run("test-asan")
    _check_summaries(out, 2)
    assert "runtime error" not in out and "AddressSanitizer" not in out
