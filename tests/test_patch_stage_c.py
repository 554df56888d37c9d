"""The C patch-stage executor (edgeplus_patch_stage*) against the NumPy spec
(patching/simulate.py, patching/program.py): bit for bit on random programs, the same
answer at any grid when every tensor is 8-bit, and a clear status for malformed programs."""

from __future__ import annotations

import numpy as np
import pytest
from stage_helpers import random_input, random_program

from tfmot_edgeplus.patching import simulate
from tfmot_edgeplus.patching.program import HEADER_WORDS, TENSOR_WORDS, ProgramError, StageProgram
from tfmot_edgeplus.runtime import kernels


def test_c_matches_numpy_on_random_programs(k):
    rng = np.random.default_rng(7)
    kinds = set()
    for _ in range(40):
        program, filters = random_program(rng)
        kinds |= {s.kind_name for s in program.steps}
        x = random_input(rng, program)
        np.testing.assert_array_equal(
            k.patch_stage(program, filters, x), simulate.run_stage(program, filters, x)
        )
    assert kinds == {"conv", "depthwise", "pad", "add"}


def test_patching_is_exact_at_8_bits():
    """All tensors 8-bit: every grid gives the stage run layer by layer (a 1x1 grid)."""
    rng = np.random.default_rng(3)
    for seed in range(6):
        program, filters = random_program(np.random.default_rng(seed), eight_bit=True, grid=1)
        x = random_input(rng, program)
        whole = kernels.patch_stage(program, filters, x)
        for grid in (2, 3):
            patched, f2 = random_program(np.random.default_rng(seed), eight_bit=True, grid=grid)
            assert [s.kind for s in patched.steps] == [s.kind for s in program.steps]
            np.testing.assert_array_equal(kernels.patch_stage(patched, f2, x), whole)


def _words():
    program, filters = random_program(np.random.default_rng(16), steps=4, grid=2)
    assert [s.kind_name for s in program.steps] == ["conv", "add", "depthwise", "depthwise"]
    return program, filters, program.to_words()


def _tensor(i, field):
    return HEADER_WORDS + i * TENSOR_WORDS + field


@pytest.mark.parametrize(
    ("what", "edit", "error"),
    [
        ("bad magic", lambda w: w.__setitem__(0, 0), kernels.KernelArgumentError),
        ("words count", lambda w: w.__setitem__(6, w.size + 1), kernels.KernelDimsError),
        ("3-bit tensor", lambda w: w.__setitem__(_tensor(1, 3), 3), kernels.KernelBitsError),
        ("buffer past arena", lambda w: w.__setitem__(_tensor(1, 7), w[5]), kernels.KernelWindowError),
        ("output not 8-bit", lambda w: w.__setitem__(_tensor(int(w[2]) - 1, 3), 4), kernels.KernelArgumentError),
    ],
)  # fmt: skip
def test_malformed_programs_get_a_status(what, edit, error):
    _, _, words = _words()
    bad = words.copy()
    edit(bad)
    with pytest.raises(error):
        kernels.patch_stage_check(bad)
    with pytest.raises(ProgramError):
        StageProgram.from_words(bad)


def test_malformed_regions_steps_and_quant_offsets():
    _, _, words = _words()
    T, S = int(words[2]), int(words[3])
    steps = HEADER_WORDS + T * TENSOR_WORDS
    patches = steps + 20 * S
    cases = {
        "kind 7": (steps, 7, kernels.KernelArgumentError),
        "input from the future": (steps + 1, 1, kernels.KernelDimsError),
        "quant past the end": (steps + 17, int(words.size) - 1, kernels.KernelDimsError),
        "outlier flag 2": (patches, 2, kernels.KernelArgumentError),
        # the split tensor's window of patch 0 grows past the tensor
        "region outside": (patches + 1 + 4 * (T - 1) + 2, 10_000, kernels.KernelWindowError),
    }
    for what, (index, value, error) in cases.items():
        bad = words.copy()
        bad[index] = value
        with pytest.raises(error):
            kernels.patch_stage_check(bad)
        assert what
    # a region that does not hold what the next step reads: shrink tensor 0's region
    bad = words.copy()
    r0 = patches + 1
    if bad[r0 + 2] > 1:
        bad[r0 + 2] -= 1
        with pytest.raises(kernels.KernelWindowError):
            kernels.patch_stage_check(bad)
    kernels.patch_stage_check(words)  # the original is fine


def test_scratch_size_is_the_minimum():
    program, filters, words = _words()
    x = random_input(np.random.default_rng(0), program, 1)
    need = kernels.patch_stage_get_buffer_size(words)
    ref = simulate.run_stage(program, filters, x)
    np.testing.assert_array_equal(
        kernels.get_kernels().patch_stage(program, filters, x, scratch_bytes=need), ref
    )
    with pytest.raises(kernels.KernelScratchError):
        kernels.get_kernels().patch_stage(program, filters, x, scratch_bytes=need - 9)
