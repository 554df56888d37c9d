"""EDGEPLUS_PATCH_STAGE in the real TFLM interpreter (tflm_ops/tflm/edgeplus_patch_stage_op.cc):
the deployed model equals the int8 model (8-bit plan) and the split runner (mixed plan);
one-op models (tests/builders/tflite_models.build_patch_stage_model) of random programs with INT8,
INT4 and packed 2-bit filters and per-variant low-bit tensors equal the NumPy spec
(patching.simulate.run_stage) bit for bit; malformed options, programs and tensors are refused
with the op's message (the M4 build of the glue: test_tflm_glue.py)."""

from __future__ import annotations

import numpy as np
import pytest
from builders.tflite_models import build_patch_stage_model
from stage_helpers import random_input, random_program

from tfmot_edgeplus import patching
from tfmot_edgeplus.conversion.op_schema import PATCH_STAGE
from tfmot_edgeplus.core.program import HEADER_WORDS, STEP_WORDS, TENSOR_WORDS
from tfmot_edgeplus.core.tflite import schema_py_generated
from tfmot_edgeplus.patching import lower, simulate
from tfmot_edgeplus.patching.deploy import patch_stage_options
from tfmot_edgeplus.patching.patch_runner import PatchStageRunner
from tfmot_edgeplus.runtime import tflm_ops
from tfmot_edgeplus.runtime.tflm import TFLMError, TFLMRunner

needs_tflm = pytest.mark.skipif(
    bool(tflm_ops.missing_env()),
    reason="the TFLM glue needs the TFLM sources: set "
    + ", ".join(tflm_ops.missing_env() or ["-"])
    + " (checkouts of tflite-micro 90b983c, flatbuffers v25.9.23, gemmlowp fda83bdc)",
)


@pytest.fixture(scope="module")
def registerer():
    return tflm_ops.load()


def _model(program, filters, **kwargs):
    return build_patch_stage_model(program, filters, input_scale=0.05, output_scale=0.1, **kwargs)


def _run(model, registerer, x):
    return TFLMRunner(model, custom_op_registerers=[registerer]).predict(x, dequantize=False)


@needs_tflm
def test_deployed_model_in_tflm(mbv2_int8, registerer):
    _, tfl, xc, xt, _ = mbv2_int8
    full = TFLMRunner(tfl)
    ref = full.predict(xt, dequantize=False)
    p8 = PatchStageRunner(tfl, patching.plan(tfl, None, grid=3), backend="tflm")
    np.testing.assert_array_equal(p8.predict(xt, dequantize_output=False), ref)
    assert p8.activation_bytes > p8.stage_scratch_bytes > 0
    mixed = patching.plan(tfl, xc, grid=2, outlier_sample_fraction=0.5, lam=0.2)
    assert min(mixed.bits.values()) < 8
    got = PatchStageRunner(tfl, mixed, backend="tflm").predict(xt, dequantize_output=False)
    split = PatchStageRunner(tfl, mixed, backend="split").predict(xt, dequantize_output=False)
    np.testing.assert_array_equal(got, split)


@needs_tflm
def test_lowered_program_fits_the_deployed_ops_inputs(mbv2_int8):
    _, tfl, *_ = mbv2_int8
    low = lower.lower(tfl, patching.plan(tfl, None, grid=2))
    assert len(low.filter_tensors) == low.program.num_slots


@needs_tflm
@pytest.mark.parametrize("w_bits", [8, 4, None], ids=["int8", "int4", "mixed"])
def test_one_op_models_match_numpy(registerer, w_bits):
    """w_bits None: 2/4/8-bit weights per slot, 2/4/8-bit tensors per variant, outliers."""
    rng = np.random.default_rng(10 + (w_bits or 0))
    seen_bits, low_bit_variants = set(), 0
    for _ in range(6):
        program, filters = random_program(rng, w_bits=w_bits)
        x = random_input(rng, program, 2)
        got = _run(_model(program, filters), registerer, x)
        np.testing.assert_array_equal(got, simulate.run_stage(program, filters, x))
        seen_bits |= {program.steps[k].w_bits for k in program.slot_steps()}
        low_bit_variants += sum(t.bits[0] != t.bits[1] for t in program.tensors)
    if w_bits is None:
        assert seen_bits == {2, 4, 8} and low_bit_variants > 0


@needs_tflm
def test_eight_bit_programs_match_numpy(registerer):
    rng = np.random.default_rng(3)
    for grid in (1, 3):
        program, filters = random_program(rng, grid=grid, eight_bit=True, w_bits=8)
        x = random_input(rng, program, 1)
        np.testing.assert_array_equal(
            _run(_model(program, filters), registerer, x), simulate.run_stage(program, filters, x)
        )


def test_glue_registerer_uses_a_prebuilt_library_and_surfaces_its_errors(monkeypatch, tmp_path):
    from tfmot_edgeplus.patching.patch_runner import glue_registerer

    for var in ("EDGEPLUS_TFLM_LIB", "EDGEPLUS_TFLM_ROOT"):
        monkeypatch.delenv(var, raising=False)
    assert glue_registerer() is None  # nothing configured: the callers use the split runner
    monkeypatch.setattr(tflm_ops, "_loaded", {})  # as in a fresh process
    missing = tmp_path / "libedgeplus_tflm.so"
    monkeypatch.setenv("EDGEPLUS_TFLM_LIB", str(missing))
    with pytest.raises(tflm_ops.TflmOpsUnavailableError, match=f"{missing} does not exist"):
        glue_registerer()
    missing.write_bytes(b"not a shared library")
    with pytest.raises(tflm_ops.TflmOpsUnavailableError, match=f"cannot load {missing}"):
        glue_registerer()


def test_builder_stores_filters_at_their_bits():
    program, filters = random_program(np.random.default_rng(1), w_bits=None, steps=5)
    schema = schema_py_generated()
    model = schema.ModelT.InitFromPackedBuf(_model(program, filters), 0)
    (sg,) = model.subgraphs
    (op,) = sg.operators
    assert model.operatorCodes[0].customCode.decode() == PATCH_STAGE.custom_code
    assert bytes(op.customOptions) == patch_stage_options(program)
    assert list(op.inputs) == [0, *range(2, 2 + program.num_slots)]
    types = {schema.TensorType.INT8: 8, schema.TensorType.INT4: 4}
    for slot, k in enumerate(program.slot_steps()):
        t = sg.tensors[2 + slot]
        bits = program.steps[k].w_bits
        data = bytes(model.buffers[t.buffer].data)
        n = int(np.prod(program.filter_shape(k)))
        assert len(data) == -(-n * bits // 8)
        if bits == 2:
            assert types[t.type] == 8 and list(t.shape) == [len(data)]
        else:
            assert types[t.type] == bits and tuple(t.shape) == program.filter_shape(k)
    with pytest.raises(ValueError, match="weight slots"):
        _model(program, filters[:-1])
    bad = list(filters)
    bad[0] = np.full(program.filter_shape(program.slot_steps()[0]), 100, np.int8)
    if program.steps[program.slot_steps()[0]].w_bits < 8:
        with pytest.raises(ValueError, match="must lie in"):
            _model(program, bad)


def _edit(model_bytes, fn):
    """Decode a model, let ``fn(schema, model, subgraph, op)`` change it, encode it again."""
    import flatbuffers

    schema = schema_py_generated()
    model = schema.ModelT.InitFromPackedBuf(model_bytes, 0)
    sg = model.subgraphs[0]
    fn(schema, model, sg, sg.operators[0])
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _region_word(program, patch, tensor):
    """Word index of ``(y, x, h, w)`` of ``tensor`` in ``patch``'s record."""
    T, S = len(program.tensors), len(program.steps)
    start = HEADER_WORDS + T * TENSOR_WORDS + S * STEP_WORDS
    return start + patch * (1 + 4 * T) + 1 + 4 * tensor


def _bad_models(program, filters):
    """``{expected message: model}``, each model the good one with one thing wrong."""
    words = program.to_words().astype("<i4")
    T = len(program.tensors)
    last = program.tensors[-1]

    def opts(**changes):
        d = {"version": 1, "program": words.tobytes()}
        d.update(changes)
        return {k: v for k, v in d.items() if v is not None}

    bad_magic = words.copy()
    bad_magic[0] = 0
    outside = words.copy()  # the split tensor's region of patch 0 starts past its bottom
    outside[_region_word(program, 0, T - 1)] = last.h
    # the program: 2^30 x 16 x 2^30 wrapped the check's int64 product to 0, then
    # 3 * c went negative and the check read 2^30 words past the program (a segfault)
    huge = words.copy()
    huge[HEADER_WORDS + TENSOR_WORDS : HEADER_WORDS + TENSOR_WORDS + 3] = (1 << 30, 16, 1 << 30)
    overlap = words.copy()  # tensor 2's buffer on tensor 1's, both alive at step 1
    overlap[HEADER_WORDS + 2 * TENSOR_WORDS + 7] = program.tensors[1].offset
    uncovered = words.copy()  # the last patch writes nothing
    uncovered[_region_word(program, program.grid**2 - 1, T - 1) + 2 :][:2] = 0
    slot4 = next(s for s, k in enumerate(program.slot_steps()) if program.steps[k].w_bits == 4)
    good = _model(program, filters)

    def other(z):
        return z - 1 if z == 127 else z + 1

    def zp(which):
        def fn(schema, model, sg, op):
            q = sg.tensors[op.outputs[0] if which == "out" else op.inputs[0]].quantization
            q.zeroPoint = [other(int(q.zeroPoint[0]))]

        return fn

    z_in, z_out = program.tensors[0].zp[0], last.zp[0]

    def filter_cut(schema, model, sg, op):  # the INT4 one: TFLM sizes it 1 byte per element
        t = sg.tensors[op.inputs[1 + slot4]]
        b = model.buffers[t.buffer]
        b.data = b.data[:-1]
        t.shape = [len(b.data)] if t.type == schema.TensorType.INT8 else [2 * len(b.data)]

    def filter_type(schema, model, sg, op):
        sg.tensors[op.inputs[1 + slot4]].type = schema.TensorType.INT8

    def no_filter(schema, model, sg, op):
        op.inputs = [op.inputs[0], -1, *op.inputs[2:]]

    def extra_input(schema, model, sg, op):
        op.inputs = [*op.inputs, op.inputs[-1]]

    def input_dims(schema, model, sg, op):
        h, w, c = program.tensors[0].shape
        sg.tensors[op.inputs[0]].shape = [1, h + 1, w, c]

    def input_type(schema, model, sg, op):
        sg.tensors[op.inputs[0]].type = schema.TensorType.UINT8

    return {
        "unknown custom option 'extra'": _model(program, filters, options=opts(extra=1)),
        "custom option 'program' is missing": _model(program, filters, options=opts(program=None)),
        "custom option 'version' must be an int": _model(
            program, filters, options=opts(version="1")
        ),
        "custom option 'program' must be a blob": _model(program, filters, options=opts(program=7)),
        "custom option 'version' = 2 is outside [1, 1]": _model(
            program, filters, options=opts(version=2)
        ),
        "custom options are missing": _model(program, filters, options=b""),
        "not whole int32 words": _model(
            program, filters, options=opts(program=words.tobytes() + b"\0")
        ),
        "stage program is invalid (EDGEPLUS_ERR_ARG)": _model(
            program, filters, options=opts(program=bad_magic.tobytes())
        ),
        "stage program is invalid (EDGEPLUS_ERR_WINDOW)": _model(
            program, filters, options=opts(program=outside.tobytes())
        ),
        "stage program is invalid (EDGEPLUS_ERR_DIMS)": _model(
            program, filters, options=opts(program=huge.tobytes())
        ),
        "stage program is invalid (EDGEPLUS_ERR_OVERLAP)": _model(
            program, filters, options=opts(program=overlap.tobytes())
        ),
        "stage program is invalid (EDGEPLUS_ERR_COVERAGE)": _model(
            program, filters, options=opts(program=uncovered.tobytes())
        ),
        f"input tensor's zero point {other(z_in)} differs from the program's ({z_in})": _edit(
            good, zp("in")
        ),
        f"output tensor's zero point {other(z_out)} differs from the program's ({z_out})": _edit(
            good, zp("out")
        ),
        "input tensor must be [1, ": _edit(good, input_dims),
        "input tensor type UINT8 not supported": _edit(good, input_type),
        f"the filter of weight slot {slot4} holds": _edit(good, filter_cut),
        f"the filter of weight slot {slot4} has type INT8; its 4-bit weights must be INT4": _edit(
            good, filter_type
        ),
        "input 1, the filter of weight slot 0, is missing": _edit(good, no_filter),
        f"takes the stage input and {program.num_slots} filters": _edit(good, extra_input),
    }


def _program_with_int4_slot():
    rng = np.random.default_rng(5)
    while True:
        program, filters = random_program(rng, w_bits=None, steps=4)
        if any(program.steps[k].w_bits == 4 for k in program.slot_steps()):
            return program, filters


@needs_tflm
def test_malformed_models_are_refused_with_the_ops_message(registerer):
    program, filters = _program_with_int4_slot()
    x = random_input(np.random.default_rng(0), program, 1)
    # the good model runs, so each failure below is the one change
    np.testing.assert_array_equal(
        _run(_model(program, filters), registerer, x), simulate.run_stage(program, filters, x)
    )
    for message, model in _bad_models(program, filters).items():
        with pytest.raises(TFLMError) as err:
            TFLMRunner(model, custom_op_registerers=[registerer])
        text = str(err.value)
        assert message in text and "EDGEPLUS_PATCH_STAGE: " in text, (message, text)
