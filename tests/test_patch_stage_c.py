"""The C patch-stage executor (edgeplus_patch_stage*) against the NumPy spec
(patching/simulate.py, core/program.py): bit for bit on random programs, the same
answer at any grid when every tensor is 8-bit, a clear status for malformed programs, and
the C check accepting exactly the programs program.py accepts and refusing the others with
the status ProgramError names (corrupted words, truncations, and a table of malformed
programs: overflowing dims, overlapping buffers, patches not tiling the output).
The C side of the same checks, under ASan on the host and on the M4: tflm_ops/tests/
test_patch_stage.c."""

from __future__ import annotations

import collections
import ctypes
import re

import numpy as np
import pytest
from builders import golden
from stage_helpers import random_input, random_program

from tfmot_edgeplus.core.conv_reference import ConvParams
from tfmot_edgeplus.core.intmath import narrow_range
from tfmot_edgeplus.core.program import (
    HEADER_WORDS,
    KIND_CONV,
    KIND_DEPTHWISE,
    KIND_PAD,
    STEP_WORDS,
    TENSOR_WORDS,
    ProgramError,
    StageProgram,
)
from tfmot_edgeplus.patching import simulate
from tfmot_edgeplus.runtime import kernels

_I32P = ctypes.POINTER(ctypes.c_int32)


def _coverage(program: StageProgram, seen: collections.Counter) -> None:
    seen[f"grid {program.grid}"] += 1
    seen["outlier patch"] += int(program.outlier.sum())
    seen["normal patch"] += int((~program.outlier).sum())
    for t in program.tensors[1:-1]:
        for v in (0, 1):
            seen[f"variant {v} at {t.bits[v]} bits"] += 1
    for k, s in enumerate(program.steps):
        seen[s.kind_name] += 1
        if s.kind in (KIND_CONV, KIND_DEPTHWISE):
            seen[f"w{s.w_bits}"] += 1
            seen[f"stride {s.stride[0]}"] += 1
            seen[f"dilation {s.dilation[0]}"] += 1
            seen["pad 0" if s.pad[0] == 0 else "pad > 0"] += 1
        if s.kind == KIND_PAD:
            for p in range(program.grid**2):
                r = tuple(int(a) for a in program.regions[p, k + 1])
                if r[2] and program.input_need(k, r) is None:
                    seen["pad region all border"] += 1


def test_c_matches_numpy_on_random_programs(k):
    rng = np.random.default_rng(7)
    seen = collections.Counter()
    for i in range(44):
        program, filters = random_program(rng, low_bit_outliers=i >= 36)
        _coverage(program, seen)
        x = random_input(rng, program)
        np.testing.assert_array_equal(
            k.patch_stage(program, filters, x), simulate.run_stage(program, filters, x)
        )
    want = {"conv", "depthwise", "pad", "add", "w2", "w4", "w8", "stride 1", "stride 2"}
    want |= {"dilation 2", "pad 0", "pad > 0", "pad region all border"}
    want |= {"outlier patch", "normal patch", *(f"grid {n}" for n in (1, 2, 3, 4))}
    want |= {f"variant {v} at {b} bits" for v in (0, 1) for b in (2, 4, 8)}
    assert want <= set(seen), want - set(seen)


def test_patching_is_exact_at_8_bits():
    """All tensors 8-bit: every grid gives the stage run layer by layer (a 1x1 grid)."""
    rng = np.random.default_rng(3)
    for seed in range(6):
        program, filters = random_program(np.random.default_rng(seed), eight_bit=True, grid=1)
        x = random_input(rng, program)
        whole = kernels.get_kernels().patch_stage(program, filters, x)
        for grid in (2, 3):
            patched, f2 = random_program(np.random.default_rng(seed), eight_bit=True, grid=grid)
            assert [s.kind for s in patched.steps] == [s.kind for s in program.steps]
            assert patched.grid == min(grid, *patched.tensors[-1].shape[:2])
            np.testing.assert_array_equal(kernels.get_kernels().patch_stage(patched, f2, x), whole)


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
        ("buffer 1 byte short", lambda w: w.__setitem__(_tensor(2, 8), w[_tensor(2, 8)] - 1), kernels.KernelWindowError),
        ("output not 8-bit", lambda w: w.__setitem__(_tensor(int(w[2]) - 1, 3), 4), kernels.KernelArgumentError),
    ],
)  # fmt: skip
def test_malformed_programs_get_a_status(what, edit, error):
    _, _, words = _words()
    bad = words.copy()
    edit(bad)
    with pytest.raises(error):
        kernels.get_kernels().patch_stage_check(bad)
    with pytest.raises(ProgramError):
        StageProgram.from_words(bad)


def test_malformed_regions_steps_and_quant_offsets():
    _, _, words = _words()
    T, S = int(words[2]), int(words[3])
    steps = HEADER_WORDS + T * TENSOR_WORDS
    patches = steps + STEP_WORDS * S
    add = steps + STEP_WORDS  # step 1 is the add
    cases = {
        "kind 7": (steps, 7, kernels.KernelArgumentError),
        "input from the future": (steps + 1, 1, kernels.KernelDimsError),
        "quant past the end": (steps + 17, int(words.size) - 1, kernels.KernelDimsError),
        "outlier flag 2": (patches, 2, kernels.KernelArgumentError),
        "add with a stride": (add + 5, 2, kernels.KernelArgumentError),
        "add with weights": (add + 11, 4, kernels.KernelArgumentError),
        "add left shift 23": (int(words[add + 17]), 23, kernels.KernelArgumentError),
        "negative multiplier": (int(words[steps + 17]), -5, kernels.KernelArgumentError),
        "shift 31": (int(words[steps + 17]) + int(words[_tensor(1, 2)]), 31,
                     kernels.KernelArgumentError),
        # the split tensor's window of patch 0 grows past the tensor
        "region outside": (patches + 1 + 4 * (T - 1) + 2, 10_000, kernels.KernelWindowError),
    }  # fmt: skip
    for what, (index, value, error) in cases.items():
        bad = words.copy()
        bad[index] = value
        with pytest.raises(error):
            kernels.get_kernels().patch_stage_check(bad)
        with pytest.raises(ProgramError):
            StageProgram.from_words(bad)
        assert what
    # a region that does not hold what the next step reads: shrink tensor 0's region
    bad = words.copy()
    r0 = patches + 1
    assert bad[r0 + 2] > 1
    bad[r0 + 2] -= 1
    with pytest.raises(kernels.KernelWindowError):
        kernels.get_kernels().patch_stage_check(bad)
    kernels.get_kernels().patch_stage_check(words)  # the original is fine


def _check_status(k, words: np.ndarray) -> int:
    """The raw status of edgeplus_patch_stage_check on exactly these words."""
    w = np.ascontiguousarray(words, dtype=np.int32)
    return int(k.lib.edgeplus_patch_stage_check(w.ctypes.data_as(_I32P), w.size))


def _region(T, S, q, i, field):
    """Word index of patch q's region of tensor i (field 0..3: y, x, h, w)."""
    return HEADER_WORDS + T * TENSOR_WORDS + S * STEP_WORDS + q * (1 + 4 * T) + 1 + 4 * i + field


def _malformed_cases(words):
    """(what, {word index: value}, status, field the message names) on the golden program
    (tensors 12x12x3 -> 12x12x4 -> 13x13x4 -> 6x6x4 x3 -> 6x6x6, steps conv, pad, depthwise,
    conv, add of tensors 3 and 4, conv; a 2x2 grid of 3x3 output windows). The C twin of the
    overflow, overlap and coverage cases: test_stage_malformed in tflm_ops/tests."""
    T, S = int(words[2]), int(words[3])
    last, steps = T - 1, HEADER_WORDS + T * TENSOR_WORDS
    big = 1 << 30
    return [
        # the program: h * w * c = 2^64 wrapped an int64 product to 0, then 3 * c
        # went negative and the quant check read 2^30 words past the program
        ("dims 2^30 x 16 x 2^30", {_tensor(1, 0): big, _tensor(1, 1): 16, _tensor(1, 2): big},
         "EDGEPLUS_ERR_DIMS", "tensor 1: dims"),
        ("c = 2^30 (3 c past int32)", {_tensor(1, 2): big}, "EDGEPLUS_ERR_DIMS", "tensor 1: dims"),
        ("h * w = 2^32 (0 in int32)", {_tensor(3, 0): 1 << 16, _tensor(3, 1): 1 << 16},
         "EDGEPLUS_ERR_DIMS", "tensor 3: dims"),
        ("h * w * c = 2^28", {_tensor(last, 0): 1 << 14, _tensor(last, 1): 1 << 14,
                              _tensor(last, 2): 1}, "EDGEPLUS_ERR_DIMS", f"tensor {last}: dims"),
        ("negative channels", {_tensor(2, 2): -4}, "EDGEPLUS_ERR_DIMS", "tensor 2: dims"),
        ("buffers 1 and 2 overlap", {_tensor(2, 7): 439}, "EDGEPLUS_ERR_OVERLAP",
         "tensors 1 and 2"),
        ("buffers 3 and 5 overlap (the add reads 3)", {_tensor(5, 7): 924},
         "EDGEPLUS_ERR_OVERLAP", "tensors 3 and 5"),
        ("buffers 3 and 4 in tensor 1's bytes", {_tensor(3, 7): 0, _tensor(4, 7): 0},
         "EDGEPLUS_ERR_OVERLAP", "tensors 3 and 4"),
        ("patch 0's window 1 row short", {_region(T, S, 0, last, 2): 2},
         "EDGEPLUS_ERR_COVERAGE", "patch 1: output window"),
        ("patch 3 writes nothing", {_region(T, S, 3, last, 2): 0, _region(T, S, 3, last, 3): 0},
         "EDGEPLUS_ERR_COVERAGE", "patch 3: output window"),
        ("a column gap", {_region(T, S, 1, last, 1): 4, _region(T, S, 1, last, 3): 2},
         "EDGEPLUS_ERR_COVERAGE", "patch 1: output window"),
        ("the last column band short", {_region(T, S, 1, last, 3): 2,
                                        _region(T, S, 3, last, 3): 2},
         "EDGEPLUS_ERR_COVERAGE", "do not cover"),
        ("outlier flag 2 in patch 2", {_region(T, S, 2, 0, 0) - 1: 2}, "EDGEPLUS_ERR_ARG",
         "patch 2: outlier flag"),
        ("conv without a quant block", {steps + 17: -1}, "EDGEPLUS_ERR_DIMS", "step 0: quant[0]"),
        ("pad with a quant block outside", {steps + STEP_WORDS + 18: 1 << 30},
         "EDGEPLUS_ERR_ARG", "step 1: pad has no quant"),
        ("add reads a later tensor", {steps + 4 * STEP_WORDS + 2: 5}, "EDGEPLUS_ERR_DIMS",
         "step 4 (add): inputs"),
        ("conv K = 255 * 255 * 3 at W8", {steps + 3: 255, steps + 4: 255, steps + 11: 8},
         "EDGEPLUS_ERR_DIMS", "step 0: K = 195075"),
        ("pad 5 of a 3x3 kernel of dilation 2", {steps + 5 * STEP_WORDS + 7: 5},
         "EDGEPLUS_ERR_ARG", "step 5: pad 5"),
        # buffers of tensors never alive at the same step may share bytes (lower.py's arena)
        ("buffer 4 in tensor 1's bytes", {_tensor(4, 7): 0}, "EDGEPLUS_OK", None),
        ("buffers 3 and 5 in tensors 1 and 2's bytes", {_tensor(3, 7): 0, _tensor(5, 7): 440},
         "EDGEPLUS_OK", None),
    ]  # fmt: skip


def test_c_and_python_refuse_malformed_programs_alike(k):
    """Case by case: the C check's status is ProgramError.status, the message names the
    field; the valid sharings run in C to the simulator's output at their exact scratch."""
    program, filters, x, expected = golden.golden_stage_case()
    words = program.to_words()
    assert _check_status(k, words) == 0
    for what, edits, status, field in _malformed_cases(words):
        bad = words.copy()
        for i, v in edits.items():
            bad[i] = v
        assert k.status_str(_check_status(k, bad)) == status, what
        if status != "EDGEPLUS_OK":
            with pytest.raises(ProgramError, match=re.escape(field)) as e:
                StageProgram.from_words(bad)
            assert e.value.status == status, (what, str(e.value))
            with pytest.raises(kernels.KernelError, match=status):
                k.patch_stage_get_buffer_size(bad)
            continue
        shared = StageProgram.from_words(bad)
        np.testing.assert_array_equal(simulate.run_stage(shared, filters, x)[0], expected)
        np.testing.assert_array_equal(k.patch_stage(shared, filters, x), expected)


def test_truncated_programs_are_refused(k):
    _, _, words = _words()
    for cut in range(words.size):
        assert _check_status(k, words[:cut]) != 0, cut
        # even with the header's word count made to agree: tables or quant blocks missing
        fixed = words[:cut].copy()
        if cut > 6:
            fixed[6] = cut
            assert _check_status(k, fixed) != 0, cut
    assert _check_status(k, words) == 0


def _corrupt(rng, words: np.ndarray) -> np.ndarray:
    """1 or 2 words of ``words`` (in a section drawn uniformly: header, tensors, steps,
    patches, quant blocks) set to a nearby, an extreme or a random int32 value."""
    T, S, n = (int(v) for v in words[2:5])
    sizes = [HEADER_WORDS, T * TENSOR_WORDS, S * STEP_WORDS, n * n * (1 + 4 * T)]
    edges = [*np.cumsum([0, *sizes]).tolist(), int(words.size)]
    bad = words.copy()
    for _ in range(int(rng.integers(1, 3))):
        section = int(rng.integers(0, 5))
        i = int(rng.integers(edges[section], edges[section + 1]))
        old = int(bad[i])
        choice = int(rng.integers(0, 4))
        if choice == 0:
            new = old + int(rng.choice([-3, -2, -1, 1, 2, 3]))
        elif choice == 1:
            new = int(rng.choice([0, -1, 1, 3, 255, 256, 1 << 30, -(1 << 31), (1 << 31) - 1]))
        elif choice == 2:
            new = -old
        else:
            new = int(rng.integers(-(1 << 31), 1 << 31))
        bad[i] = min(max(new, -(1 << 31)), (1 << 31) - 1)
    return bad


def _scratch_past_int32(k, program: StageProgram) -> bool:
    """Whether edgeplus_patch_stage_get_buffer_size's sum (4 + the arena + the largest
    conv/depthwise lean scratch at a 1x1 output) passes INT32_MAX."""
    most = 0
    for step in program.slot_steps():
        s, out = program.steps[step], program.tensors[step + 1]
        src = program.tensors[s.inputs[0]]
        dw = s.kind == KIND_DEPTHWISE
        size = k.depthwise_conv2d_get_buffer_size_lean if dw else k.conv2d_get_buffer_size_lean
        for v in (0, 1):
            params = ConvParams(*s.stride, *s.pad, *s.dilation, src.zp[v], out.zp[v], *s.act[v],
                                src.bits[v], s.w_bits, out.bits[v])  # fmt: skip
            try:
                most = max(most, size(params, (1, *src.shape), program.filter_shape(step),
                                      (1, 1, 1, out.c)))  # fmt: skip
            except kernels.KernelDimsError:
                return True
    return 4 + ((program.arena_bytes + 3) & ~3) + most > (1 << 31) - 1


def test_c_check_agrees_with_the_spec_on_corrupted_programs(k):
    """The C check accepts exactly what program.py accepts, and refuses the rest with the
    status program.py names; what it accepts runs (status OK at exactly the scratch it asks
    for) and matches the simulator."""
    rng = np.random.default_rng(11)
    statuses = collections.Counter()
    ran = 0
    for _ in range(40):
        program, _ = random_program(rng, steps=int(rng.integers(2, 5)))
        words = program.to_words()
        for _ in range(25):
            bad = _corrupt(rng, words)
            status = _check_status(k, bad)
            statuses[k.status_str(status)] += 1
            try:
                spec = StageProgram.from_words(bad)
            except ProgramError as e:
                assert k.status_str(status) == e.status, f"C says {k.status_str(status)}: {e}"
                continue
            assert status == 0, f"C refuses ({k.status_str(status)}) a valid program"
            try:
                k.patch_stage_get_buffer_size(bad)
            except kernels.KernelDimsError:
                assert _scratch_past_int32(k, spec)  # refused by the sizing, not the check
                continue
            filters = []
            for slot, step in enumerate(spec.slot_steps()):
                lo, hi = narrow_range(spec.steps[step].w_bits)
                filters.append(rng.integers(lo, hi + 1, spec.filter_shape(step)))
                assert k.patch_stage_weight_size(bad, slot) > 0
            x = random_input(rng, spec, 1)
            got = k.patch_stage(spec, filters, x)
            ran += 1
            np.testing.assert_array_equal(got, simulate.run_stage(spec, filters, x))
    assert ran >= 40, ran
    assert {"EDGEPLUS_ERR_ARG", "EDGEPLUS_ERR_DIMS", "EDGEPLUS_ERR_BITS"} <= set(statuses)
    assert {"EDGEPLUS_ERR_WINDOW", "EDGEPLUS_ERR_COVERAGE", "EDGEPLUS_ERR_OVERLAP"} <= set(statuses)


def test_scratch_size_is_the_minimum():
    program, filters, words = _words()
    x = random_input(np.random.default_rng(0), program, 1)
    need = kernels.get_kernels().patch_stage_get_buffer_size(words)
    ref = simulate.run_stage(program, filters, x)
    for extra in (0, 1, 1 << 16):  # more scratch: the convs take bigger pixel blocks
        got = kernels.get_kernels().patch_stage(program, filters, x, scratch_bytes=need + extra)
        np.testing.assert_array_equal(got, ref)
    for short in (1, 9):
        with pytest.raises(kernels.KernelScratchError):
            kernels.get_kernels().patch_stage(program, filters, x, scratch_bytes=need - short)


def test_binding_rejects_bad_filters_and_inputs():
    program, filters, words = _words()
    x = random_input(np.random.default_rng(0), program, 1)
    with pytest.raises(kernels.KernelDimsError, match="filters"):
        kernels.get_kernels().patch_stage(program, filters[:-1], x)
    with pytest.raises(kernels.KernelDimsError, match="'x'"):
        kernels.get_kernels().patch_stage(program, filters, x.astype(np.int16))
    with pytest.raises(kernels.KernelArgumentError):
        kernels.get_kernels().patch_stage_weight_size(words, program.num_slots)
    np.testing.assert_array_equal(  # words work as well as a StageProgram, (H, W, C) too
        kernels.get_kernels().patch_stage(words, filters, x[0]), simulate.run_stage(program, filters, x)[0]
    )
