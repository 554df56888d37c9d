"""Patch stages on the emulated Cortex-M4F (``benchmarks/_stage_m4.py`` on
``tflm_ops/m4/stage_bench_main.c``): the M4 and host builds must reproduce the NumPy spec bit
for bit or nothing is reported, and the counts come back per program. Skipped, with the
reason, without arm-none-eabi-gcc / qemu-system-arm."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from stage_helpers import random_input, random_program

from benchmarks import _stage_m4
from benchmarks.kernels_m4 import BenchmarkError

_missing = [t for t in ("arm-none-eabi-gcc", "qemu-system-arm", "make") if shutil.which(t) is None]
pytestmark = pytest.mark.skipif(
    bool(_missing),
    reason=f"{', '.join(_missing)} not installed (apt-get install gcc-arm-none-eabi "
    "libnewlib-arm-none-eabi qemu-system-arm); `make test` installs them on CI",
)


def _programs():
    """Three programs over one set of 8-bit weights: grid 1 and grid 3 at 8 bits, and grid 3
    with low-bit tensors (same seed: same steps and shapes)."""
    out = {}
    for name, kw in (("layer", {"grid": 1, "eight_bit": True}),
                     ("patch8", {"grid": 3, "eight_bit": True})):  # fmt: skip
        out[name], filters = random_program(
            np.random.default_rng(21), steps=5, size=14, w_bits=8, **kw
        )
    mixed, _ = random_program(np.random.default_rng(21), steps=5, size=14, w_bits=8, grid=3)
    assert [s.kind for s in mixed.steps] == [s.kind for s in out["layer"].steps]
    out["mixed"] = mixed
    return out, filters


def test_stage_instruction_counts_are_checked_and_reported():
    programs, filters = _programs()
    x = random_input(np.random.default_rng(2), programs["layer"], 1)[0]
    cost = _stage_m4.m4_stage_cost(programs, filters, x, opt="-O2")
    assert set(cost) == set(programs)
    assert all(c["instructions"] > 0 and c["text_bytes"] > 0 for c in cost.values())
    # the 1x1 grid holds whole tensors: the most scratch
    assert cost["layer"]["scratch_bytes"] > cost["patch8"]["scratch_bytes"]


def test_a_wrong_reference_is_refused(monkeypatch):
    programs, filters = _programs()
    x = random_input(np.random.default_rng(2), programs["layer"], 1)[0]
    real = _stage_m4._fnv1a
    monkeypatch.setattr(_stage_m4, "_fnv1a", lambda data: real(data) ^ 1)
    with pytest.raises(BenchmarkError, match="ok=0"):  # the M4 program fails itself
        _stage_m4.m4_stage_cost({"patch8": programs["patch8"]}, filters, x, opt="-O2")
