"""EDGEPLUS_PATCH_STAGE in the real TFLM interpreter (tflm_ops/tflm/edgeplus_patch_stage_op.cc):
the deployed model equals the int8 model (8-bit plan) and the split runner (mixed plan); one-op
models on random programs with INT8 and INT4 filters equal the NumPy spec; malformed options,
programs and tensors are refused with the op's message."""

from __future__ import annotations

import numpy as np
import pytest
from stage_helpers import random_input, random_program

from tfmot_edgeplus import patching
from tfmot_edgeplus.conversion import op_schema
from tfmot_edgeplus.conversion.packing import pack
from tfmot_edgeplus.patching import lower, simulate
from tfmot_edgeplus.runtime import tflm_ops
from tfmot_edgeplus.runtime.patch_runner import PatchStageRunner
from tfmot_edgeplus.runtime.tflm import TFLMError, TFLMRunner

pytestmark = pytest.mark.skipif(
    bool(tflm_ops.missing_env()),
    reason="the TFLM glue needs the TFLM sources: set "
    + ", ".join(tflm_ops.missing_env() or ["-"])
    + " (checkouts of tflite-micro 90b983c, flatbuffers v25.9.23, gemmlowp fda83bdc)",
)


@pytest.fixture(scope="module")
def registerer():
    return tflm_ops.load()


def test_deployed_model_in_tflm(mbv2_int8, registerer):
    _, tfl, xc, xt, _ = mbv2_int8
    full = TFLMRunner(tfl)
    ref = full.predict(xt, dequantize=False)
    p8 = PatchStageRunner(tfl, patching.plan(tfl, None, grid=3), backend="tflm")
    np.testing.assert_array_equal(p8.predict(xt, dequantize_output=False), ref)
    assert p8.activation_bytes > p8.stage_scratch_bytes > 0
    mixed = patching.plan(tfl, xc, grid=2, outlier_rate=0.5, lam=0.2)
    assert min(mixed.bits.values()) < 8
    got = PatchStageRunner(tfl, mixed, backend="tflm").predict(xt, dequantize_output=False)
    split = PatchStageRunner(tfl, mixed, backend="split").predict(xt, dequantize_output=False)
    np.testing.assert_array_equal(got, split)


def _one_op_model(program, filters, *, options=None, zp_in=None, filter_bytes_cut=0):
    """A .tflite whose one operator is EDGEPLUS_PATCH_STAGE on ``program``."""
    import flatbuffers
    from flatbuffers import flexbuffers

    from tfmot_edgeplus.conversion.custom_ops import _buffer, _schema, _tensor, patch_stage_options

    schema = _schema()
    t0, tl = program.tensors[0], program.tensors[-1]
    buffers = [_buffer(schema, None), _buffer(schema, None), _buffer(schema, None)]
    zp0 = t0.zp[1] if zp_in is None else zp_in
    tensors = [
        _tensor(schema, "x", (1, *t0.shape), schema.TensorType.INT8, 1, [0.1], [zp0]),
        _tensor(schema, "y", (1, *tl.shape), schema.TensorType.INT8, 2, [0.1], [tl.zp[1]]),
    ]
    for slot, k in enumerate(program.slot_steps()):
        bits = program.steps[k].w_bits
        data = pack(np.asarray(filters[slot]).reshape(-1), bits).tobytes()
        kind = schema.TensorType.INT8 if bits == 8 else schema.TensorType.INT4
        shape = program.filter_shape(k)
        if slot == 0 and filter_bytes_cut:  # a filter tensor of the wrong size
            data = data[:-filter_bytes_cut]
            shape = (len(data) * 8 // bits,)
        buffers.append(_buffer(schema, data))
        tensors.append(_tensor(schema, f"f{slot}", shape, kind, len(buffers) - 1, [0.01], [0]))
    custom = patch_stage_options(program) if options is None else flexbuffers.Dumps(options)
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = op_schema.PATCH_STAGE.custom_code
    op = schema.OperatorT()
    op.opcodeIndex = 0
    op.inputs = [0, *range(2, len(tensors))]
    op.outputs = [1]
    op.customOptions = np.frombuffer(bytes(custom), dtype=np.uint8)
    op.customOptionsFormat = schema.CustomOptionsFormat.FLEXBUFFERS
    sg = schema.SubGraphT()
    sg.tensors, sg.inputs, sg.outputs, sg.operators = tensors, [0], [1], [op]
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, [code], [sg], buffers
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.mark.parametrize("w_bits", [8, 4])
def test_one_op_models_match_numpy(registerer, w_bits):
    rng = np.random.default_rng(w_bits)
    for _ in range(4):
        program, filters = random_program(rng, w_bits=w_bits)
        x = random_input(rng, program, 2)
        runner = TFLMRunner(_one_op_model(program, filters), custom_op_registerers=[registerer])
        np.testing.assert_array_equal(
            runner.predict(x, dequantize=False), simulate.run_stage(program, filters, x)
        )


def test_malformed_models_are_refused_with_the_ops_message(registerer):
    program, filters = random_program(np.random.default_rng(5), w_bits=8, steps=3)
    words = program.to_words()
    bad_words = words.copy()
    bad_words[0] = 0
    cases = {
        "unknown custom option 'extra'": {
            "options": {"version": 1, "program": words.tobytes(), "extra": 1}
        },
        "custom option 'version' = 2": {"options": {"version": 2, "program": words.tobytes()}},
        "stage program is invalid (EDGEPLUS_ERR_ARG)": {
            "options": {"version": 1, "program": bad_words.tobytes()}
        },
        "zero point differs": {"zp_in": program.tensors[0].zp[1] ^ 1},
        "does not hold the program's": {"filter_bytes_cut": 1},
    }
    for message, kwargs in cases.items():
        with pytest.raises(TFLMError, match=message.replace("(", r"\(").replace(")", r"\)")):
            TFLMRunner(
                _one_op_model(program, filters, **kwargs), custom_op_registerers=[registerer]
            )


def test_lowered_program_fits_the_deployed_ops_inputs(mbv2_int8):
    _, tfl, *_ = mbv2_int8
    low = lower.lower(tfl, patching.plan(tfl, None, grid=2))
    assert len(low.filter_tensors) == low.program.num_slots
