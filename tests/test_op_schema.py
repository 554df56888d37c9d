"""The custom-op options schema: one definition shared by Python and the C++ glue."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from tfmot_edgeplus.conversion import op_schema
from tfmot_edgeplus.conversion.op_schema import CONV_MP, CustomOpSchema, OptionField

GLUE = op_schema.HEADER_PATH.parent / "edgeplus_conv_mp.cc"


def _good() -> dict:
    return {
        "in_bits": 4,
        "w_bits": 2,
        "out_bits": 8,
        "depthwise": False,
        "in_channels": 16,
        "out_channels": 32,
        "kernel_h": 3,
        "kernel_w": 3,
        "stride_h": 1,
        "stride_w": 2,
        "pad_h": 1,
        "pad_w": 0,
        "dilation_h": 1,
        "dilation_w": 1,
        "act_min": -128,
        "act_max": 127,
        "bias_frac_bits": 0,
        "lean_scratch": True,
    }


def test_committed_header_is_generated_from_the_schema():
    assert op_schema.HEADER_PATH.read_text() == op_schema.render_header(), (
        f"{op_schema.HEADER_PATH} is stale: run "
        "`python -m tfmot_edgeplus.conversion.op_schema --header "
        "--out tflm_ops/tflm/edgeplus_op_schema.h`"
    )
    assert op_schema.main(["--check"]) == 0


def test_header_lists_exactly_the_schema_keys_with_bounds():
    text = op_schema.render_header()
    entries = re.findall(
        r'X\((\w+), "(\w+)", (INT|BOOL|BLOB), \((-?\d+)\), \((-?\d+)\)\)', text
    )
    schemas = (CONV_MP, op_schema.PATCH_STAGE)
    assert [e[1] for e in entries] == [k for sch in schemas for k in sch.keys]
    fields = [f for sch in schemas for f in sch.fields]
    for (field, key, kind, lo, hi), f in zip(entries, fields, strict=True):
        assert field == key == f.key
        assert kind == f.kind.upper()
        if f.kind in ("int", "blob"):
            assert (int(lo), int(hi)) == (f.minimum, f.maximum)
    for sch in schemas:
        assert f"#define {sch.custom_code}_NUM_OPTIONS {len(sch.fields)}" in text
    assert "const uint8_t *program;" in text and "int32_t program_bytes;" in text


def test_blob_options_are_checked():
    words = np.arange(8, dtype="<i4").tobytes()
    opts = {"version": 1, "program": words}
    assert op_schema.PATCH_STAGE.decode(op_schema.PATCH_STAGE.encode(opts)) == opts
    with pytest.raises(TypeError, match="'program' must be bytes"):
        op_schema.PATCH_STAGE.encode({"version": 1, "program": 5})
    with pytest.raises(ValueError, match="must hold 32..16777216 bytes, got 4"):
        op_schema.PATCH_STAGE.encode({"version": 1, "program": words[:4]})


def test_c_parser_reads_keys_only_through_the_generated_x_macro():
    """The glue must not hard-code a key: every read goes through EDGEPLUS_CONV_MP_OPTIONS,
    so it reads exactly the schema's keys (behaviour checked in test_tflm_glue.py)."""
    src = GLUE.read_text()
    assert "EDGEPLUS_DEFINE_OPTIONS_PARSER(EDGEPLUS_CONV_MP_OPTIONS," in src
    parser = (GLUE.parent / "edgeplus_options.h").read_text()
    body = parser[parser.index("#define EDGEPLUS_DEFINE_OPTIONS_PARSER") :]
    assert body.count("OPTIONS_MACRO(") >= 2  # unknown-key check + the reads
    for key in CONV_MP.keys:
        assert f'"{key}"' not in src, f"{GLUE.name} hard-codes the key {key!r}"


def test_encode_decode_round_trip():
    opts = _good()
    assert CONV_MP.decode(CONV_MP.encode(opts)) == opts
    # numpy integers are accepted and normalised
    opts_np = dict(opts, in_channels=np.int64(16), pad_h=np.int32(1))
    assert CONV_MP.decode(CONV_MP.encode(opts_np)) == opts


@pytest.mark.parametrize(
    "change,error,needle",
    [
        ({"in_bits": 3}, ValueError, "'in_bits' must be one of [2, 4, 8], got 3"),
        ({"stride_h": 0}, ValueError, "'stride_h' must be in [1, 255], got 0"),
        ({"depthwise": 1}, TypeError, "'depthwise' must be a bool"),
        ({"lean_scratch": 0}, TypeError, "'lean_scratch' must be a bool"),
        ({"kernel_h": True}, TypeError, "'kernel_h' must be an int, got the bool"),
        ({"kernel_w": 3.0}, TypeError, "'kernel_w' must be an int"),
        ({"groups": 2}, ValueError, "unknown keys ['groups']"),
    ],
)
def test_validate_names_key_and_value(change, error, needle):
    with pytest.raises(error) as info:
        CONV_MP.validate(dict(_good(), **change))
    assert needle in str(info.value)


def test_missing_key_is_named():
    opts = _good()
    del opts["pad_w"]
    with pytest.raises(ValueError, match=r"missing keys \['pad_w'\]"):
        CONV_MP.encode(opts)


def test_decode_rejects_garbage():
    with pytest.raises(ValueError, match="EDGEPLUS_CONV_MP"):
        CONV_MP.decode(b"\x01\x02")


def test_schema_definitions_are_checked():
    with pytest.raises(ValueError, match="duplicate"):
        CustomOpSchema("X", "", (OptionField("a", "int", ""), OptionField("a", "int", "")))
    with pytest.raises(ValueError, match="kind"):
        OptionField("a", "float", "")
    with pytest.raises(ValueError, match="identifier"):
        OptionField("Bad-Key", "int", "")
    with pytest.raises(KeyError, match="known"):
        op_schema.get_schema("NOPE")


# ------------------------------------------- the one-op model builder writes this schema


def _spec(**changes):
    from builders.tflite_models import ConvMPSpec

    rng = np.random.default_rng(0)
    kwargs = {
        "input_shape": (1, 6, 5, 3),
        "weights": rng.integers(-1, 2, size=(4, 3, 3, 3)),
        "in_bits": 4,
        "w_bits": 2,
        "out_bits": 2,
        "input_scale": 0.1,
        "input_zero_point": -1,
        "weight_scales": (0.5, 0.25, 0.5, 1.0),
        "output_scale": 0.3,
        "output_zero_point": 0,
        "bias": np.arange(4),
        "stride": 2,
    }
    kwargs.update(changes)
    return ConvMPSpec(**kwargs)


def test_model_builder_stores_packed_tensors_and_schema_options():
    from builders.tflite_models import build_conv_mp_model
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    spec = _spec()
    model = schema.ModelT.InitFromPackedBuf(bytearray(build_conv_mp_model(spec)), 0)
    (code,) = model.operatorCodes
    assert code.builtinCode == schema.BuiltinOperator.CUSTOM
    assert code.customCode in (b"EDGEPLUS_CONV_MP", "EDGEPLUS_CONV_MP")
    (op,) = model.subgraphs[0].operators
    assert CONV_MP.decode(bytes(op.customOptions)) == spec.options()
    # TFLite SAME, stride 2: H 6 -> 3 with pads (top 0, bottom 1); W 5 -> 3 with pads (1, 1)
    assert (spec.options()["pad_h"], spec.options()["pad_w"]) == (0, 1)
    assert spec.output_shape == (1, 3, 3, 4)
    tensors = {
        (t.name.decode() if isinstance(t.name, bytes) else t.name): t
        for t in model.subgraphs[0].tensors
    }
    assert list(tensors["input"].shape) == [1, 6, 5, 2]  # ceil(3 * 4 / 8)
    assert list(tensors["filter"].shape) == [4, 3, 3, 1]  # ceil(3 * 2 / 8)
    assert list(tensors["output"].shape) == [1, 3, 3, 1]  # ceil(4 * 2 / 8)
    filt = model.buffers[tensors["filter"].buffer].data
    assert len(filt) == 36  # 4*3*3 bytes: 108 2-bit values flat-packed = 27 bytes + spare
    assert list(tensors["filter"].quantization.scale) == list(spec.weight_scales)


def test_activation_packing_round_trips_with_spare_bytes():
    from builders.tflite_models import pack_activations, unpack_activations

    x = np.random.default_rng(1).integers(-2, 2, size=(2, 3, 3, 5))
    t = pack_activations(x, 2)
    assert t.shape == (2, 3, 3, 2) and t.dtype == np.int8  # 90 values -> 23 bytes + 13 spare
    assert np.array_equal(unpack_activations(t, x.shape, 2), x)
    assert not t.reshape(-1)[23:].any()


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"in_bits": 3}, "in_bits must be one of"),
        ({"weights": np.full((4, 3, 3, 3), 2)}, "weights must lie in [-1, 1]"),
        ({"weights": np.zeros((4, 3, 3, 2), int)}, "I = input channels 3"),
        ({"weight_scales": (0.5, 0.5)}, "weight_scales must be 4"),
        ({"input_zero_point": 8}, "input_zero_point=8 is outside the 4-bit range"),
        ({"bias": np.arange(3)}, "bias must be an integer array of shape (4,)"),
        ({"output_scale": 0.0}, "output_scale must be > 0"),
    ],
)
def test_spec_rejects_bad_arguments_with_the_culprit(change, needle):
    with pytest.raises(ValueError) as info:
        _spec(**change)
    assert needle in str(info.value)
