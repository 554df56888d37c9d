"""QAT -> convert -> TFLM, per weight bit-width: stored types and bytes, agreement with Keras."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tfmot_edgeplus import EdgePlusQuantizeScheme, conversion_report, convert, quantize_model
from tfmot_edgeplus._compat import tfmot
from tfmot_edgeplus.conversion import LowBitStorageError, describe_weights, weight_bytes
from tfmot_edgeplus.models import compile_classifier
from tfmot_edgeplus.runtime import TFLMRunner

pytestmark = pytest.mark.slow  # one short QAT per bit-width on real Fashion-MNIST

_QAT = {}


def _qat(bits, fp_model, data):
    """The fixture model fine-tuned for 1 epoch at W{bits}A8 (LSQ steps), converted; cached."""
    if bits not in _QAT:
        from tfmot_edgeplus._compat import tf

        tf.keras.utils.set_random_seed(bits)
        scheme = EdgePlusQuantizeScheme(bits, 8, learnable_scales=True)
        qat = compile_classifier(quantize_model(fp_model, scheme), learning_rate=5e-4)
        qat.fit(data.x_train, data.y_train, epochs=1, batch_size=64, verbose=0)
        _QAT[bits] = (qat, convert(qat, data.x_train[:300]))
    return _QAT[bits]


EXPECTED_STORAGE = {  # bits -> (TFLite type the kernel reads, storage, stored bits/weight)
    8: ("INT8", "dense", 8),
    4: ("INT4", "dense", 4),
    3: ("INT8", "lut", 3),  # TFLM_DECODE hands the kernel int8
    2: ("INT8", "lut", 2),
}


@pytest.mark.parametrize("bits", [8, 4, 2])  # 3 bits: test_lowbit_storage, the CoRa example
def test_stored_types_and_bytes(bits, trained_fp_model, fashion_small):
    _, model_bytes = _qat(bits, trained_fp_model, fashion_small)
    rows = describe_weights(model_bytes)
    assert [r["op"] for r in rows] == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "CONV_2D", "FULLY_CONNECTED"]
    for row in rows:
        assert (row["type"], row["storage"], row["bits"]) == EXPECTED_STORAGE[bits], row
        assert row["data_bytes"] == math.ceil(row["n_weights"] * bits / 8), row
        if row["storage"] == "lut":  # 16-byte header + one int8 table per channel
            assert row["table_bytes"] == 16 + row["channels"] * row["table_stride"]
            assert row["table_stride"] <= 2**bits
        else:
            assert row["table_bytes"] == 0


def test_w2_weights_take_about_half_the_flash_of_w4(trained_fp_model, fashion_small):
    w4 = weight_bytes(_qat(4, trained_fp_model, fashion_small)[1])
    w2 = weight_bytes(_qat(2, trained_fp_model, fashion_small)[1])
    assert w2 < 0.6 * w4, (w2, w4)


@pytest.mark.parametrize("bits", [8, 4, 2])  # 3 bits: test_lowbit_storage, the CoRa example
def test_tflm_agrees_with_keras_on_99_percent(bits, trained_fp_model, fashion_small):
    qat, model_bytes = _qat(bits, trained_fp_model, fashion_small)
    x = fashion_small.x_test
    keras_class = qat.predict(x, verbose=0).argmax(axis=1)
    runner = TFLMRunner(model_bytes)
    tflm_class = runner.predict(x).argmax(axis=1)
    agreement = float(np.mean(tflm_class == keras_class))
    assert agreement >= 0.99, f"W{bits}: TFLM agrees with Keras on {agreement:.4f} of {len(x)}"
    assert np.mean(tflm_class == fashion_small.y_test) > 0.7  # a real classifier, not chance
    assert runner.arena_bytes > 0


def test_tfmot_own_scheme_converts_through_ours(trained_fp_model, fashion_small):
    qk = tfmot.quantization.keras
    scheme = qk.experimental.default_n_bit.DefaultNBitQuantizeScheme(num_bits_weight=2, num_bits_activation=8)
    with qk.quantize_scope():
        qat = qk.quantize_apply(qk.quantize_annotate_model(trained_fp_model), scheme)
    model_bytes = convert(qat, fashion_small.x_train[:100])
    assert {r["storage"] for r in describe_weights(model_bytes)} == {"lut"}
    assert TFLMRunner(model_bytes).predict(fashion_small.x_test[:5]).shape == (5, 10)


def test_a4_model_converts_with_int8_activations_and_the_report_says_so(trained_fp_model, fashion_small):
    qat = compile_classifier(quantize_model(trained_fp_model, EdgePlusQuantizeScheme(4, 4)))
    qat.fit(fashion_small.x_train[:2000], fashion_small.y_train[:2000], epochs=1, verbose=0)
    model_bytes = convert(qat, fashion_small.x_train[:100])
    runner = TFLMRunner(model_bytes)
    assert all(d["dtype"] == np.int8 for d in runner.input_details + runner.output_details)
    acc = np.mean(runner.predict(fashion_small.x_test).argmax(1) == fashion_small.y_test)
    assert acc > 0.7, acc
    # the Keras model keeps its 4-bit activations after conversion
    assert qat.get_layer("quant_relu1")._output_quantizers[0].num_bits == 4
    report = conversion_report(model_bytes, qat)
    assert report.qat_activation_bits["conv3"] == 4
    assert any("run them in int8" in note for note in report.notes)
    assert report.flatbuffer_bytes == len(model_bytes)
    assert "| CONV_2D |" in report.table()


# ---------------------------------------------------------------- bad input


def test_float_model_is_refused(trained_fp_model, fashion_small):
    with pytest.raises(ValueError, match="no quantized layers.*quantize_model"):
        convert(trained_fp_model, fashion_small.x_train[:10])


@pytest.mark.parametrize("data, match", [
    (np.zeros((0, 28, 28, 1), np.float32), r"representative_data is empty \(shape \(0, 28, 28, 1\)\)"),
    (np.zeros((10, 32, 32, 1), np.float32), r"samples of shape \(32, 32, 1\).*model's input is \(28, 28, 1\)"),
    (np.full((10, 28, 28, 1), np.nan, np.float32), r"NaN or infinite"),
])
def test_bad_representative_data_is_named(data, match, trained_fp_model, fashion_small):
    qat, _ = _qat(4, trained_fp_model, fashion_small)
    with pytest.raises(ValueError, match=match):
        convert(qat, data)


def test_corrupted_tflite_gets_a_clear_error():
    with pytest.raises(LowBitStorageError):
        conversion_report(b"this is not a flatbuffer")
    with pytest.raises(ValueError, match="TFL3"):
        TFLMRunner(b"\x00" * 64)


def test_cli_inspect(tmp_path, trained_fp_model, fashion_small):
    from click.testing import CliRunner

    from tfmot_edgeplus.cli import main

    _, model_bytes = _qat(2, trained_fp_model, fashion_small)
    path = tmp_path / "m.tflite"
    path.write_bytes(model_bytes)
    result = CliRunner().invoke(main, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    assert "LUT" in result.output and f"weights: {weight_bytes(model_bytes)} bytes" in result.output
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"garbage")
    result = CliRunner().invoke(main, ["inspect", str(bad)])
    assert result.exit_code != 0


def test_conv1d_imu_model_deploys_with_int4_weights():
    """Conv1D on the real smartwatch IMU windows: per-tensor 4-bit kernels stored as INT4."""
    from tfmot_edgeplus import datasets
    from tfmot_edgeplus.models import imu_cnn

    data = datasets.imu_watch()
    stats = datasets.channel_stats(data)
    x, y = stats.apply(data).x, data.y
    model = compile_classifier(imu_cnn(classes=data.num_classes))
    model.fit(x[:2000], y[:2000], epochs=2, batch_size=64, verbose=0)
    qat = compile_classifier(quantize_model(model, EdgePlusQuantizeScheme(4, 8, learnable_scales=True)))
    qat.fit(x[:2000], y[:2000], epochs=1, batch_size=64, verbose=0)
    model_bytes = convert(qat, x[:200])
    rows = describe_weights(model_bytes)
    assert [r["type"] for r in rows] == ["INT4"] * 4
    tflm = TFLMRunner(model_bytes).predict(x[2000:2400]).argmax(1)
    keras_class = qat.predict(x[2000:2400], verbose=0).argmax(1)
    assert np.mean(tflm == keras_class) > 0.95


def test_bare_quantize_apply_with_unset_lsq_steps_converts_unchanged(fashion_small):
    """quantize_apply without quantize_model leaves LSQ steps unset until training; inference
    derives them, and convert() stores exactly those (predictions do not change)."""
    from tfmot_edgeplus import quantize_scope
    from tfmot_edgeplus.models import small_cnn

    qk = tfmot.quantization.keras
    with quantize_scope():
        qat = qk.quantize_apply(
            qk.quantize_annotate_model(small_cnn()), EdgePlusQuantizeScheme(2, 8, learnable_scales=True)
        )
    x = fashion_small.x_test[:50]
    before = qat.predict(x, verbose=0)
    model_bytes = convert(qat, fashion_small.x_train[:50])
    np.testing.assert_allclose(qat.predict(x, verbose=0), before, atol=1e-5)
    assert {r["storage"] for r in describe_weights(model_bytes)} == {"lut"}


# ------------------------------------------------- Conv1D + BatchNorm (IMU-style models)


@pytest.fixture(scope="module")
def imu_bn():
    """``(fp model, x, y)``: Conv1D -> BN -> ReLU, Conv1D -> BN -> Activation('relu'),
    Conv1D -> BN, pooling, Dense on real smartwatch IMU windows (the three Conv1D + BN
    patterns), trained briefly."""
    from tfmot_edgeplus import datasets
    from tfmot_edgeplus._compat import keras, tf

    data = datasets.imu_watch()
    x, y = datasets.channel_stats(data).apply(data).x[:1600], data.y[:1600]
    tf.keras.utils.set_random_seed(0)
    layers = keras.layers
    inputs = keras.Input(x.shape[1:])
    h = layers.Conv1D(8, 5, strides=2, padding="same", use_bias=False, name="conv1")(inputs)
    h = layers.ReLU(name="relu1")(layers.BatchNormalization(name="bn1")(h))
    h = layers.Conv1D(12, 5, strides=2, padding="same", use_bias=False, name="conv2")(h)
    h = layers.Activation("relu", name="act2")(layers.BatchNormalization(name="bn2")(h))
    h = layers.Conv1D(12, 3, padding="valid", name="conv3")(h)
    h = layers.GlobalAveragePooling1D(name="gap")(layers.BatchNormalization(name="bn3")(h))
    model = compile_classifier(keras.Model(inputs, layers.Dense(data.num_classes, name="logits")(h)))
    model.fit(x[:1200], y[:1200], epochs=2, batch_size=64, verbose=0)
    return model, x, y


def _op_names(model_bytes) -> list[str]:
    from tfmot_edgeplus.core.tflite import TFLiteGraph

    g = TFLiteGraph(model_bytes)
    return [g.op_name(op) for op in g.operators]


def _assert_logits_agree(model_bytes, qat, x):
    """TFLM's dequantized logits within one output step of Keras's for 99 % of the values,
    within three for all (rounding of the folded BatchNorm and requantization)."""
    runner = TFLMRunner(model_bytes)
    steps = np.abs(runner.predict(x) - qat.predict(x, verbose=0)) / runner.output_details[0]["quantization"][0]
    assert np.percentile(steps, 99) <= 1.01 and steps.max() <= 3.01, np.percentile(steps, [50, 99, 100])


# Each Conv1D + BN (+ ReLU) is one CONV_2D between the reshapes Keras puts around a Conv1D.
IMU_BN_OPS = ["EXPAND_DIMS", "CONV_2D", "RESHAPE"] * 3 + ["MEAN", "FULLY_CONNECTED"]


def test_conv1d_batchnorm_folds_into_one_conv_2d_and_qcore_calibrates_it(imu_bn):
    """Conv1D -> BatchNorm goes through quantize_model, QAT and convert like Conv2D -> BN:
    no MUL/ADD left for the BatchNorm, per-channel 4-bit kernels, TFLM agrees with Keras;
    QCore takes the deployed model's head."""
    from tfmot_edgeplus._compat import tf
    from tfmot_edgeplus.calibration import BitFlipCalibrator

    fp, x, y = imu_bn
    tf.keras.utils.set_random_seed(1)
    qat = compile_classifier(quantize_model(fp, EdgePlusQuantizeScheme(4, 8)), learning_rate=5e-4)
    qat.fit(x[:1200], y[:1200], epochs=1, batch_size=64, verbose=0)
    model_bytes = convert(qat, x[:100])
    assert _op_names(model_bytes) == IMU_BN_OPS
    rows = describe_weights(model_bytes)
    assert [(r["op"], r["type"]) for r in rows] == [("CONV_2D", "INT4")] * 3 + [("FULLY_CONNECTED", "INT4")]
    assert [tuple(r["shape"]) for r in rows[:3]] == [(8, 1, 5, 6), (12, 1, 5, 8), (12, 1, 3, 12)]
    _assert_logits_agree(model_bytes, qat, x[1200:])
    # QAT trained through the folded layers: well above chance on held-out windows.
    assert np.mean(qat.predict(x[1200:], verbose=0).argmax(1) == y[1200:]) > 2 / fp.output_shape[-1]
    head = BitFlipCalibrator(model_bytes).head
    assert [layer.weights.shape for layer in head.layers] == [(fp.output_shape[-1], 12)]


@pytest.mark.parametrize("entry", ["quarc", "cora"])
def test_conv1d_batchnorm_model_goes_through_quarc_and_cora(entry, imu_bn):
    fp, x, y = imu_bn
    if entry == "quarc":
        from tfmot_edgeplus.recipes.quarc import QuaRCConfig, quarc_qat

        run = quarc_qat(fp, x[:800], y[:800], QuaRCConfig(epochs=1, fraction=0.25, batch_size=64))
        assert min(run.summary()["history"]["clc_loss"]) > 0  # the Conv1D features are corrected
        qat = run.qat_model
    else:
        from tfmot_edgeplus.recipes.cora import CoRaConfig, cora_ptq

        run = cora_ptq(fp, x[:800], y[:800], CoRaConfig(budget=0.2, steps=5, calib_samples=128))
        assert {"conv1", "conv2", "conv3"} & set(run.model.adapter_ranks)  # Conv1D + BN adapted
        qat = run.model
    model_bytes = convert(qat, x[:100])
    ops = _op_names(model_bytes)
    if entry == "cora":  # the same ops plus one ADD per adapter
        ops = [op for op in ops if op != "ADD"]
        adapter_ops = 2 * len(run.model.adapter_ranks)
        assert sum(op in ("CONV_2D", "FULLY_CONNECTED") for op in ops) == 4 + adapter_ops
        ops = [op for op in ops if op not in ("CONV_2D", "FULLY_CONNECTED")]
        assert ops == [op for op in IMU_BN_OPS if op not in ("CONV_2D", "FULLY_CONNECTED")]
        assert _op_names(model_bytes).count("ADD") == len(run.model.adapter_ranks)
    else:
        assert ops == IMU_BN_OPS
    _assert_logits_agree(model_bytes, qat, x[1200:])
