"""2- and 3-bit weights stored in 2 / 3 bits per weight (TFLM LUT), run in the pinned TFLM.

Per bit-width: TF-MOT QAT (``default_n_bit``, 1 epoch on 512 digits) -> full-integer
TFLiteConverter -> ``pack_lowbit_weights`` -> the tflite-micro interpreter. Checks stored
types and byte sizes (INT4 = ceil(n/2); 2-bit = ceil(n/4) + table; 3-bit = ceil(3n/8) +
table), TFLM outputs identical before / after packing, agreement with the Keras fake-quant
model, and the errors on bad input.
"""

from __future__ import annotations

import math
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
import pytest

from tfmot_edgeplus.conversion.lowbit import (
    LowBitStorageError,
    describe_weights,
    lut_storage_bytes,
    pack_lowbit_weights,
    restore_int4_levels,
    weight_bytes,
)

runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")

pytestmark = pytest.mark.slow  # trains three small QAT models (about 5 s each)

LAYERS = ("conv1", "dw1", "fc1")
N_EVAL = 300


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    return x, d.target.astype(np.int64)


def _build(keras):
    # 3 filters -> the conv and depthwise filters hold 27 and 54 weights: the odd count
    # exercises the INT4 tail nibble and a bitstream that does not end on a byte.
    i = keras.Input((8, 8, 1), name="image")
    h = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="conv1")(i)
    h = keras.layers.DepthwiseConv2D(
        3, padding="same", depth_multiplier=2, activation="relu", name="dw1"
    )(h)
    h = keras.layers.Flatten(name="flat")(h)
    o = keras.layers.Dense(10, name="fc1")(h)
    return keras.Model(i, o, name="model")


_CACHE: dict[int, tuple] = {}


def _qat_model(bits: int, digits):
    """(keras QAT model, converted .tflite bytes) at ``bits`` weight bits, cached."""
    if bits in _CACHE:
        return _CACHE[bits]
    from tfmot_edgeplus._compat import keras, tf, tfmot

    x, y = digits
    keras.utils.set_random_seed(bits)
    qk = tfmot.quantization.keras
    scheme = qk.experimental.default_n_bit.DefaultNBitQuantizeScheme(
        num_bits_weight=bits, num_bits_activation=8
    )
    with qk.quantize_scope():
        q = qk.quantize_apply(qk.quantize_annotate_model(_build(keras)), scheme=scheme)
    q.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    q.fit(x[:512], y[:512], epochs=1, batch_size=32, verbose=0)
    conv = tf.lite.TFLiteConverter.from_keras_model(q)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[k : k + 1]] for k in range(100))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    _CACHE[bits] = (q, bytes(conv.convert()))
    return _CACHE[bits]


def _tflm_outputs(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    it = runtime.Interpreter.from_bytes(model_bytes, arena_size=64 * 1024)
    q = it.get_input_details(0)["quantization_parameters"]
    scale, zero = float(q["scales"][0]), int(q["zero_points"][0])
    outs = []
    for k in range(len(x)):
        xq = np.clip(np.round(x[k : k + 1] / scale) + zero, -128, 127).astype(np.int8)
        it.set_input(xq, 0)
        it.invoke()
        outs.append(np.array(it.get_output(0), copy=True))
    return np.concatenate(outs)


def _by_layer(rows):
    out = {}
    for r in rows:
        layer = next(name for name in LAYERS if f"quant_{name}/" in r["tensor"])
        out[layer] = r
    return out


def _decode_ops(model_bytes: bytes) -> int:
    from tflite_micro.tensorflow.lite.micro.compression import model_editor

    m = model_editor.read(model_bytes)
    return sum(op.custom_code == "TFLM_DECODE" for sg in m.subgraphs for op in sg.operators)


# ------------------------------------------------------------------------ per bit-width


@pytest.mark.parametrize("bits", [2, 3])
def test_lowbit_storage_types_sizes_and_identical_outputs(bits, digits):
    x, _ = digits
    _, int4_model = _qat_model(bits, digits)

    before = _by_layer(describe_weights(int4_model))
    assert set(before) == set(LAYERS)
    for r in before.values():  # TF 2.21 puts 2/3-bit filters into the INT4 container
        assert (r["type"], r["storage"], r["bits"]) == ("INT4", "dense", 4)
        assert r["data_bytes"] == math.ceil(r["n_weights"] / 2)

    packed = pack_lowbit_weights(int4_model, {name: bits for name in LAYERS})

    after = _by_layer(describe_weights(packed))
    assert set(after) == set(LAYERS)
    assert _decode_ops(packed) == 3
    for name, r in after.items():
        assert r["storage"] == "lut" and r["bits"] == bits
        assert r["type"] == "INT8"  # what TFLM_DECODE hands the kernel
        assert r["shape"] == before[name]["shape"] and r["op"] == before[name]["op"]
        assert r["data_bytes"] == math.ceil(r["n_weights"] * bits / 8)
        assert 1 <= r["table_stride"] <= 2**bits
        tables = r["channels"]  # per-channel tables (conv, depthwise), one per-tensor (FC)
        assert r["table_bytes"] == 16 + tables * r["table_stride"]
        assert (r["data_bytes"], r["table_bytes"]) == lut_storage_bytes(
            r["n_weights"], bits, tables, r["table_stride"]
        )
    assert weight_bytes(packed) == sum(r["data_bytes"] + r["table_bytes"] for r in after.values())
    # The point of the exercise: W2 weights take about half the flash of the INT4 ones.
    ratio = weight_bytes(packed) / weight_bytes(int4_model)
    assert ratio < {2: 0.6, 3: 0.85}[bits], ratio

    # Lossless: the tables hold exactly the converter's int8 values.
    xs = x[-N_EVAL:]
    ref = _tflm_outputs(int4_model, xs)
    np.testing.assert_array_equal(_tflm_outputs(packed, xs), ref)


def _keras_quantized_weights(qat) -> dict:
    """The QAT model's fake-quant weights (what Keras computes with), in TFLite layout."""
    out = {}
    for layer in qat.layers:
        for w, quantizer, qvars in getattr(layer, "_weight_vars", []):
            wq = quantizer(w, False, qvars).numpy()
            name = layer.name.removeprefix("quant_")
            if name == "conv1":  # Keras HWIO -> TFLite OHWI
                wq = wq.transpose(3, 0, 1, 2)
            elif name == "dw1":  # Keras (H, W, C, M) -> TFLite (1, H, W, C*M)
                wq = wq.reshape((1,) + wq.shape[:2] + (-1,))
            else:  # Dense (in, out) -> FULLY_CONNECTED (out, in)
                wq = wq.T
            out[name] = wq
    return out


def _decode_lut_weights(model_bytes: bytes) -> dict:
    """Independent reader of the packed format (MSB-first index bitstream, per-channel int8
    tables after a 16-byte header): {layer: (real weights, real bias)}."""
    from tflite_micro.tensorflow.lite.micro.compression import model_editor

    m = model_editor.read(model_bytes)
    sg = m.subgraphs[0]
    out = {}
    for op in sg.operators:
        if op.custom_code != "TFLM_DECODE":
            continue
        enc, anc, dec = op.inputs[0], op.inputs[1], op.outputs[0]
        layer = next(n for n in LAYERS if f"quant_{n}/" in enc.name)
        adt = np.frombuffer(anc.buffer.data, np.uint8)
        bits, stride = int(adt[5] & 7), int(adt[6])
        tables = adt[16:].view(np.int8).reshape(-1, stride)
        shape = tuple(int(d) for d in dec.shape)
        n = int(np.prod(shape))
        bitstream = np.unpackbits(np.frombuffer(enc.buffer.data, np.uint8))[: n * bits]
        idx = bitstream.reshape(n, bits) @ (1 << np.arange(bits)[::-1])
        scales = np.asarray(dec.quantization.scales, np.float64)
        channel = np.zeros(n, np.int64)
        if len(scales) > 1:
            axis = dec.quantization.axis or 0
            channel = np.indices(shape)[axis].ravel()
        values = tables[channel, idx].astype(np.float64) * scales[channel]
        consumer = next(c for c in sg.consumers_of(dec))
        b = consumer.inputs[2]
        bias_scale = np.asarray(b.quantization.scales, np.float64)
        bias = np.frombuffer(b.buffer.data, np.int32) * bias_scale
        out[layer] = (values.reshape(shape), bias, bias_scale)
    return out


def _top_levels(bits: int) -> dict:
    return {n: 2 ** (bits - 1) - 1 for n in LAYERS}


@pytest.mark.parametrize("bits", [2, 3])
def test_restored_levels_store_the_keras_quantizer_weights(bits, digits):
    """TF 2.21 re-rounds 3-bit levels onto the INT4 grid (levels 1, 2 -> 2/7*3, 5/7*3);
    ``restore_int4_levels`` then packing stores exactly the Keras fake-quant weights, with
    the filter scale and the int32 bias rescaled so the bias keeps its real value."""
    qat, int4_model = _qat_model(bits, digits)
    keras_w = _keras_quantized_weights(qat)
    restored = restore_int4_levels(int4_model, _top_levels(bits))
    exact = _decode_lut_weights(pack_lowbit_weights(restored, {n: bits for n in LAYERS}))
    as_converted = _decode_lut_weights(pack_lowbit_weights(int4_model, {n: bits for n in LAYERS}))
    for name in LAYERS:
        np.testing.assert_allclose(exact[name][0], keras_w[name], rtol=1e-5, atol=1e-8)
        # The bias keeps its real value to half a unit of its new scale (the rounding).
        error = np.abs(exact[name][1] - as_converted[name][1])
        assert np.all(error <= 0.5 * exact[name][2] + 1e-9), (name, error)
    worst = max(
        np.max(np.abs(as_converted[n][0] - keras_w[n])) / np.max(np.abs(keras_w[n])) for n in LAYERS
    )
    if bits == 2:  # symmetric 2-bit levels -1, 0, 1 land on -7, 0, 7: already exact
        assert worst < 1e-5
    else:  # the converter's INT4 values are off the 3-bit grid by up to 1/7 of a level
        assert worst > 0.02


def test_restored_levels_run_in_tflm_and_follow_keras_at_least_as_well(digits):
    x, _ = digits
    qat, w3 = _qat_model(3, digits)
    xs = x[-N_EVAL:]
    keras_cls = np.argmax(qat.predict(xs, verbose=0), axis=1)
    exact = _tflm_outputs(pack_lowbit_weights(restore_int4_levels(w3, _top_levels(3)), {n: 3 for n in LAYERS}), xs)
    converted = _tflm_outputs(w3, xs)
    assert not np.array_equal(exact, converted)
    assert np.mean(exact.argmax(1) == keras_cls) >= np.mean(converted.argmax(1) == keras_cls)


def test_restore_leaves_exact_grids_alone_and_rejects_bad_levels(digits):
    _, w4 = _qat_model(4, digits)
    assert restore_int4_levels(w4, {n: 7 for n in LAYERS}) == w4
    with pytest.raises(LowBitStorageError, match="top levels must be in 1..7"):
        restore_int4_levels(w4, {"conv1": 9})
    with pytest.raises(LowBitStorageError, match="top levels given for a tensor with"):
        restore_int4_levels(w4, {"conv1": [3, 3]})
    packed = pack_lowbit_weights(restore_int4_levels(w4, {"conv1": 3}), {"conv1": 3})
    with pytest.raises(LowBitStorageError, match="not an INT4 filter"):
        restore_int4_levels(packed, {"conv1": 3})


def test_w4_stays_int4_and_is_not_repacked(digits):
    _, w4 = _qat_model(4, digits)
    rows = describe_weights(w4)
    assert len(rows) == 3
    for r in rows:
        assert (r["type"], r["storage"], r["bits"], r["table_bytes"]) == ("INT4", "dense", 4, 0)
        assert r["data_bytes"] == math.ceil(r["n_weights"] / 2)
    assert weight_bytes(w4) == sum(math.ceil(r["n_weights"] / 2) for r in rows)
    assert pack_lowbit_weights(w4, {}) == w4
    with pytest.raises(LowBitStorageError, match=r"INT4.*Leave 'conv1' out"):
        pack_lowbit_weights(w4, {"conv1": 4})


def test_partial_packing_keeps_other_layers_and_outputs(digits):
    x, _ = digits
    _, w2 = _qat_model(2, digits)
    fc_name = _by_layer(describe_weights(w2))["fc1"]["tensor"]
    packed = pack_lowbit_weights(w2, {fc_name: 2})  # full tensor name as the key
    rows = _by_layer(describe_weights(packed))
    assert rows["fc1"]["storage"] == "lut"
    assert rows["conv1"]["type"] == rows["dw1"]["type"] == "INT4"
    assert _decode_ops(packed) == 1
    np.testing.assert_array_equal(_tflm_outputs(packed, x[:100]), _tflm_outputs(w2, x[:100]))


def test_skip_if_not_smaller_keeps_tiny_layers_int4(digits):
    _, w2 = _qat_model(2, digits)
    packed = pack_lowbit_weights(w2, {n: 2 for n in LAYERS}, skip_if_not_smaller=True)
    rows = _by_layer(describe_weights(packed))
    for name, r in rows.items():
        int4_bytes = math.ceil(r["n_weights"] / 2)
        lut = lut_storage_bytes(r["n_weights"], 2, r["channels"], 4)
        if sum(lut) < int4_bytes:  # even a full 4-entry table is smaller: must be packed
            assert r["storage"] == "lut", name
        if r["storage"] == "lut":
            assert r["data_bytes"] + r["table_bytes"] < int4_bytes, name
        else:
            assert r["type"] == "INT4", name
    assert rows["fc1"]["storage"] == "lut"  # 3840 weights: 960 + 16 + <=4 bytes vs 1920
    assert rows["conv1"]["storage"] == "dense"  # 27 weights: 7 + 16 + 3*3 bytes vs 14


def test_lut_index_buffers_are_16_byte_aligned(digits):
    """TFLM's decoders read the index stream 32 / 64 bits at a time (a Cortex-M4 LDRD of an
    unaligned address faults): the packed flatbuffer keeps the schema's 16-byte alignment."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    _, w3 = _qat_model(3, digits)
    packed = pack_lowbit_weights(w3, {n: 3 for n in LAYERS})
    m = schema.Model.GetRootAs(packed, 0)
    sizes = {r["data_bytes"] for r in describe_weights(packed)}
    checked = 0
    for i in range(m.BuffersLength()):
        buf = m.Buffers(i)
        o = flatbuffers.number_types.UOffsetTFlags.py_type(buf._tab.Offset(4))
        if o and buf.DataLength() in sizes:
            assert buf._tab.Vector(o) % 16 == 0
            checked += 1
    assert checked >= 3


# ------------------------------------------------------------------------------- errors


def test_too_many_levels_for_bits_names_the_tensor(digits):
    _, w3 = _qat_model(3, digits)  # 3-bit weights: up to 7 values per channel
    with pytest.raises(LowBitStorageError, match=r"'fc1'.*quant_fc1.*distinct values.*2\*\*2 = 4"):
        pack_lowbit_weights(w3, {"fc1": 2})


def test_unknown_and_ambiguous_names(digits):
    _, w2 = _qat_model(2, digits)
    with pytest.raises(LowBitStorageError, match=r"'conv9'.*quant_conv1/Conv2D"):
        pack_lowbit_weights(w2, {"conv9": 2})
    with pytest.raises(LowBitStorageError, match=r"'model' matches 3 weight tensors"):
        pack_lowbit_weights(w2, {"model": 2})


@pytest.mark.parametrize(
    "bits, err, msg",
    [
        (0, LowBitStorageError, r"bits=0 .* not supported"),
        (5, LowBitStorageError, r"bits=5 .* not supported"),
        (8, LowBitStorageError, r"bits=8 .*INT8"),
        (2.0, TypeError, r"must be an int"),
        (True, TypeError, r"must be an int"),
    ],
)
def test_bad_bits(bits, err, msg, digits):
    _, w2 = _qat_model(2, digits)
    with pytest.raises(err, match=msg):
        pack_lowbit_weights(w2, {"conv1": bits})


def test_bad_model_and_arguments(digits):
    _, w2 = _qat_model(2, digits)
    with pytest.raises(LowBitStorageError, match="not a TFLite flatbuffer"):
        pack_lowbit_weights(b"definitely not a model", {"conv1": 2})
    with pytest.raises(TypeError, match="model_bytes must be the bytes"):
        describe_weights("model.tflite")
    with pytest.raises(TypeError, match="bits_by_tensor must be a mapping"):
        pack_lowbit_weights(w2, [("conv1", 2)])
    with pytest.raises(TypeError, match="keys must be str"):
        pack_lowbit_weights(w2, {0: 2})
    with pytest.raises(LowBitStorageError, match="name the same tensor"):
        pack_lowbit_weights(w2, {"conv1": 2, "quant_conv1": 2})
    packed = pack_lowbit_weights(w2, {"fc1": 2})
    with pytest.raises(LowBitStorageError, match="already LUT-packed"):
        pack_lowbit_weights(packed, {"fc1": 2})


def test_a_lut_model_exports_to_a_sketch_that_adds_the_decode_op(digits, tmp_path):
    from tfmot_edgeplus.export.arduino import export_sketch

    _, int4_model = _qat_model(2, digits)
    packed = pack_lowbit_weights(int4_model, {name: 2 for name in LAYERS})
    sk = export_sketch(packed, tmp_path / "LutSketch", test_input=digits[0][0])
    h = (sk.folder / "edgeplus_model.h").read_text()
    assert "resolver.AddDecode()" in h  # TFLM_DECODE, a custom op of TFLM itself
    assert "#define EDGEPLUS_HAS_PATCH_STAGE 0" in h
    assert sk.figures["model_bytes"] == len(packed)
