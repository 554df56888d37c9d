"""The edgeplus QAT scheme: quantizers, configs, registry, scheme, quantize_model, scope."""

from __future__ import annotations

import numpy as np
import pytest

from tfmot_edgeplus import EdgePlusQuantizeScheme, _tfmot, quantize_model, quantize_scope
from tfmot_edgeplus._compat import KerasVersionError, keras, tf, tfmot
from tfmot_edgeplus.quantization import (
    ActivationRangeQuantizer,
    EdgePlusOutputQuantizeConfig,
    EdgePlusQuantizeRegistry,
    EdgePlusWeightQuantizeConfig,
    LearnedScaleWeightQuantizer,
    calibrate_activation_ranges,
)
from tfmot_edgeplus.quantization.quantizers import q_max

# ---------------------------------------------------------------- round trips (one table)

ROUND_TRIP_CASES = [
    LearnedScaleWeightQuantizer(2),
    LearnedScaleWeightQuantizer(3, channel_axis=2),
    LearnedScaleWeightQuantizer(4, channel_axis=None),
    LearnedScaleWeightQuantizer(8),
    EdgePlusWeightQuantizeConfig("kernel", 2, 8, learnable_scales=False),
    EdgePlusWeightQuantizeConfig("kernel", 3, 4, learnable_scales=True),
    EdgePlusWeightQuantizeConfig("depthwise_kernel", 4, 8, learnable_scales=True, channel_axis=2),
    EdgePlusWeightQuantizeConfig("kernel", 8, 8, channel_axis=None),
    ActivationRangeQuantizer(4),
    ActivationRangeQuantizer(8, ema_decay=0.9),
    EdgePlusOutputQuantizeConfig(["activation"], False, 4),
    EdgePlusOutputQuantizeConfig(),
    EdgePlusQuantizeScheme(),
    EdgePlusQuantizeScheme(2, 4, per_layer={"conv1": {"weight_bits": 8}}, learnable_scales=True),
]


def _case_id(obj) -> str:
    """The same id in every process (pytest -n: a repr with an address would differ)."""
    return f"{type(obj).__name__}{obj.get_config()}"


@pytest.mark.parametrize("obj", ROUND_TRIP_CASES, ids=_case_id)
def test_get_config_from_config_round_trip(obj):
    clone = type(obj).from_config(obj.get_config())
    assert clone == obj
    assert clone.get_config() == obj.get_config()


@pytest.mark.parametrize("obj", ROUND_TRIP_CASES[:-2], ids=_case_id)
def test_serializes_through_keras_registry(obj):
    with quantize_scope():
        config = keras.utils.serialize_keras_object(obj)
        clone = keras.utils.deserialize_keras_object(config)
    assert clone == obj


def test_configs_with_different_bits_differ():
    assert EdgePlusWeightQuantizeConfig(weight_bits=2) != EdgePlusWeightQuantizeConfig(weight_bits=4)
    assert LearnedScaleWeightQuantizer(2) != LearnedScaleWeightQuantizer(2, channel_axis=2)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, match", [
    ({"weight_bits": 5}, r"weight_bits must be one of \[2, 3, 4, 8\], got 5"),
    ({"weight_bits": 1}, r"weight_bits must be one of"),
    ({"weight_bits": True}, r"weight_bits must be one of"),
    ({"activation_bits": 3}, r"activation_bits must be one of \[2, 4, 8\], got 3"),
    ({"per_layer": {"conv1": {"weight_bits": 6}}}, r"per_layer\['conv1'\]\['weight_bits'\] must be one of"),
    ({"per_layer": {"conv1": {"bits": 4}}}, r"unknown keys \['bits'\]"),
])
def test_scheme_rejects_bad_bits(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EdgePlusQuantizeScheme(**kwargs)


def _tiny_model():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="relu1")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = keras.layers.Flatten(name="flat")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="fc")(x), name="tiny")


def test_unknown_per_layer_name_is_named():
    with pytest.raises(ValueError, match=r"per_layer names layers that are not in model 'tiny': \['nope'\]"):
        quantize_model(_tiny_model(), EdgePlusQuantizeScheme(per_layer={"nope": {"weight_bits": 2}}))


def test_unsupported_layer_is_named_with_supported_list():
    inputs = keras.Input((6, 4))
    x = keras.layers.LSTM(4, name="my_lstm")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    with pytest.raises(ValueError, match=r"my_lstm \(LSTM\).*Conv1D, Conv2D, DepthwiseConv2D, Dense"):
        quantize_model(model)


def _conv1d_bn(conv_kwargs, before_bn=None):
    inputs = keras.Input((16, 3))
    x = keras.layers.Conv1D(4, 3, name="conv1", **conv_kwargs)(inputs)
    if before_bn is not None:
        x = before_bn(x)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    return keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)), name="imu")


@pytest.mark.parametrize("conv_kwargs, before_bn, match", [
    ({"activation": "relu"}, None, r"bn1 \('conv1' has activation 'relu' before it \(move the activation"),
    ({"padding": "causal"}, None, r"bn1 \(padding='causal' \(use 'same' or 'valid'"),
    ({}, keras.layers.ReLU(name="act"), r"bn1 \(it follows 'act' \(ReLU\), not one of Conv1D"),
])
def test_batchnorm_the_scheme_cannot_fold_is_refused_naming_it(conv_kwargs, before_bn, match):
    with pytest.raises(ValueError, match=match):
        quantize_model(_conv1d_bn(conv_kwargs, before_bn))


def test_conv1d_batchnorm_becomes_a_conv2d_on_rows_with_the_same_outputs(rng):
    """quantize_model runs Conv1D -> BN as Conv2D (kernel 1 x k, per-channel 8-bit weights)
    -> BN between two reshapes: at 8 bits the QAT model computes what the float one does."""
    keras.utils.set_random_seed(0)  # the same weights whichever tests ran before in the process
    model = _conv1d_bn({"padding": "same", "use_bias": False})
    x = rng.normal(0, 1, (64, 16, 3)).astype(np.float32)
    h = model.get_layer("conv1")(x).numpy()  # moving statistics = those of x: training-mode
    model.get_layer("bn1").set_weights(  # calibration and inference then normalize alike
        [rng.uniform(0.5, 2, 4), rng.normal(0, 1, 4), h.mean((0, 1)), h.var((0, 1))])
    qat = quantize_model(model, EdgePlusQuantizeScheme(8, 8))
    conv = qat.get_layer("quant_conv1")
    assert type(conv.layer) is keras.layers.Conv2D and conv.layer.kernel_size == (1, 3)
    assert conv.quantize_config.channel_axis == -1
    assert isinstance(_configs(qat)["bn1"], EdgePlusOutputQuantizeConfig)
    calibrate_activation_ranges(qat, x)
    expected = model.predict(x, verbose=0)
    # within 3 % of the outputs' scale: about four 8-bit steps of an output range of +-10 (over
    # seeds 0-5 the largest difference was 0.8 % to 2.3 % of it; an absolute 0.1, one step, was
    # exceeded on some initializations)
    np.testing.assert_allclose(qat.predict(x, verbose=0), expected,
                               atol=0.03 * np.abs(expected).max())
    with quantize_scope():  # the rewritten model serializes
        assert [type(l.layer).__name__ for l in keras.models.model_from_json(qat.to_json()).layers[2:6]] == [
            "StepsAsRows", "Conv2D", "BatchNormalization", "StepsAsRows"]


def test_subclassed_model_is_refused():
    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(2)

        def call(self, x):
            return self.d(x)

    model = Sub()
    model(np.zeros((1, 3), np.float32))
    with pytest.raises(TypeError, match="subclassed model.*Sequential or Functional"):
        quantize_model(model)


def test_non_model_is_refused():
    with pytest.raises(TypeError, match="must be a tf_keras.Model, got 'str'"):
        quantize_model("model.h5")


def test_keras3_session_gets_a_clear_error(tmp_path):
    """TensorFlow imported with Keras 3 first: importing tfmot_edgeplus says what to do."""
    import subprocess
    import sys

    script = "import tensorflow, tfmot_edgeplus\n"
    env = {k: v for k, v in __import__("os").environ.items() if k != "TF_USE_LEGACY_KERAS"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False,
                         timeout=300)
    assert out.returncode != 0
    assert "KerasVersionError" in out.stderr
    assert "TF_USE_LEGACY_KERAS=1" in out.stderr


def test_keras3_model_gets_a_clear_error():
    from tfmot_edgeplus._compat import check_keras2_model

    class FakeKeras3Model:  # what a keras 3 model looks like from here: another class tree
        pass

    FakeKeras3Model.__module__ = "keras.src.models.functional"
    with pytest.raises(KerasVersionError, match="Keras 3 model.*TF_USE_LEGACY_KERAS=1"):
        check_keras2_model(FakeKeras3Model())


# ---------------------------------------------------------------- TF-MOT internals, extras


def test_a_missing_tfmot_internal_is_named_with_the_pinned_version(monkeypatch):
    with pytest.raises(_tfmot.TFMOTVersionError,
                       match=r"quantize_layer\.NoSuchLayer.*tensorflow-model-optimization==0\.8\.1"):
        _tfmot._internal("quantize_layer", "NoSuchLayer")
    registry = _tfmot.NBitQuantizeRegistry(num_bits_weight=8, num_bits_activation=4)
    assert _tfmot.weightless_quantize_info(registry, keras.layers.ReLU()) == ([], True)
    assert _tfmot.weightless_quantize_info(registry, keras.layers.Conv2D(1, 1)) is None
    monkeypatch.delattr(registry, "_layer_quantize_map")  # as a TF-MOT that renamed it
    with pytest.raises(_tfmot.TFMOTVersionError, match="_layer_quantize_map.*==0\\.8\\.1"):
        _tfmot.weightless_quantize_info(registry, keras.layers.ReLU())


def test_wrapper_internals_are_read_through_the_adapter(monkeypatch):
    qat = quantize_model(_tiny_model(), EdgePlusQuantizeScheme(4, 4))
    wrapper = qat.get_layer("quant_conv1")
    ((kernel, quantizer, _),) = _tfmot.weight_vars(wrapper)
    assert kernel is _tfmot.kernel_variable(wrapper) and quantizer.num_bits == 4
    assert _tfmot.weight_vars(qat.get_layer("quant_relu1")) == []
    assert [q.num_bits for q in _tfmot.activation_quantizers(qat.get_layer("quant_relu1"))] == [4]
    (input_layer,) = [layer for layer in qat.layers if layer.name.startswith("quantize_layer")]
    assert isinstance(input_layer, _tfmot.QuantizeLayer)
    (input_quantizer,) = _tfmot.activation_quantizers(input_layer)
    assert input_quantizer.num_bits == 4  # the model input, at the activation bits
    assert _tfmot.activation_quantizers(keras.layers.ReLU()) == []
    monkeypatch.delattr(wrapper, "_weight_vars")
    with pytest.raises(_tfmot.TFMOTVersionError, match="QuantizeWrapper._weight_vars"):
        _tfmot.weight_vars(wrapper)


def test_a_missing_optional_dependency_names_its_extra(monkeypatch):
    from tfmot_edgeplus._compat import agg_pyplot

    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # import fails
    with pytest.raises(ImportError, match=r"matplotlib cannot be imported.*pip install 'tfmot_edgeplus\[plots\]'"):
        agg_pyplot()


# ---------------------------------------------------------------- registry and scheme


def test_registry_applies_defaults_and_overrides():
    registry = EdgePlusQuantizeRegistry(4, 8, per_layer={"dw": {"weight_bits": 2, "activation_bits": 4}})
    model = _tiny_model()
    conv = registry.get_quantize_config(model.get_layer("conv1"))
    dw = registry.get_quantize_config(model.get_layer("dw"))
    fc = registry.get_quantize_config(model.get_layer("fc"))
    assert (conv.weight_bits, conv.activation_bits, conv.channel_axis) == (4, 8, -1)
    assert (dw.weight_bits, dw.activation_bits, dw.weight_attr) == (2, 4, "depthwise_kernel")
    assert fc.channel_axis is None  # Dense is per tensor (see configs.py)


def _configs(qat):
    return {layer.layer.name: layer.quantize_config for layer in qat.layers if hasattr(layer, "quantize_config")}


def test_quantize_apply_accepts_the_scheme_and_per_layer_bits_reach_the_layers():
    model = _tiny_model()
    scheme = EdgePlusQuantizeScheme(4, 8, per_layer={"conv1": {"weight_bits": 2}, "relu1": {"activation_bits": 4}})
    with quantize_scope():
        qat = tfmot.quantization.keras.quantize_apply(
            tfmot.quantization.keras.quantize_annotate_model(model), scheme
        )
    configs = _configs(qat)
    assert configs["conv1"].weight_bits == 2
    assert configs["dw"].weight_bits == 4
    # Conv -> BN -> ReLU: the ReLU outputs the activation, so its bits are the chain's.
    assert configs["relu1"].get_output_quantizers(None)[0].num_bits == 4
    assert configs["dw"].activation_quantizer.num_bits == 8


def test_activation_bits_of_a_conv_reach_its_folded_batchnorm():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, name="conv1")(inputs)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.Flatten(name="flat")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="fc")(x))
    qat = quantize_model(model, EdgePlusQuantizeScheme(4, 8, per_layer={"conv1": {"activation_bits": 4}}))
    assert _configs(qat)["bn1"].get_output_quantizers(None)[0].num_bits == 4


def test_quantized_weights_take_at_most_2_pow_bits_levels_per_channel():
    model = _tiny_model()
    for bits in (2, 3, 4):
        qat = quantize_model(model, EdgePlusQuantizeScheme(bits, learnable_scales=True))
        layer = qat.get_layer("quant_conv1")
        kernel, quantizer, qvars = _tfmot.weight_vars(layer)[0]
        wq = quantizer(kernel, False, qvars).numpy().reshape(-1, kernel.shape[-1])
        for c in range(wq.shape[1]):
            assert len(np.unique(np.round(wq[:, c], 6))) <= 2 * q_max(bits) + 1


# ---------------------------------------------------------------- the LSQ quantizer


class _Holder(keras.layers.Layer):
    pass


def _built(quantizer, shape):
    holder = _Holder()
    weights = quantizer.build(shape, "w", holder)
    return holder, weights


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_lsq_training_and_inference_paths_agree(bits, rng):
    w = tf.constant(rng.normal(size=(3, 3, 4, 6)).astype(np.float32))
    quantizer = LearnedScaleWeightQuantizer(bits)
    _, weights = _built(quantizer, w.shape)
    trained = quantizer(w, True, weights).numpy()  # first call sets the step
    inferred = quantizer(w, False, weights).numpy()
    np.testing.assert_allclose(trained, inferred, atol=1e-6)
    scale = weights["scale"].numpy()
    levels = np.round(trained / scale)
    np.testing.assert_allclose(levels * scale, trained, atol=1e-5)
    assert np.abs(levels).max() <= q_max(bits)


def test_lsq_depthwise_with_multiplier_has_one_step_per_output_channel(rng):
    w = tf.constant(rng.normal(size=(3, 3, 5, 2)).astype(np.float32))
    quantizer = LearnedScaleWeightQuantizer(4, channel_axis=2)
    _, weights = _built(quantizer, w.shape)
    assert weights["scale"].shape == (10,)
    out = quantizer(w, True, weights).numpy().reshape(-1, 10)
    np.testing.assert_allclose(quantizer(w, False, weights).numpy().reshape(-1, 10), out, atol=1e-6)


def test_lsq_init_beats_max_abs_at_two_bits(rng):
    w = tf.constant(rng.standard_t(3, size=(3, 3, 8, 16)).astype(np.float32))
    quantizer = LearnedScaleWeightQuantizer(2)
    _, weights = _built(quantizer, w.shape)
    lsq = quantizer(w, True, weights).numpy()
    max_abs = np.abs(w.numpy()).reshape(-1, 16).max(0)
    naive = np.clip(np.round(w.numpy() / max_abs), -1, 1) * max_abs
    assert np.sum((w.numpy() - lsq) ** 2) < np.sum((w.numpy() - naive) ** 2)


def test_lsq_step_gets_gradients_and_weights_get_straight_through(rng):
    w = tf.Variable(rng.normal(size=(3, 3, 2, 4)).astype(np.float32))
    quantizer = LearnedScaleWeightQuantizer(3)
    _, weights = _built(quantizer, w.shape)
    quantizer(w, True, weights)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(quantizer(w, True, weights) ** 2)
    grad_w, grad_s = tape.gradient(loss, [w, weights["scale"]])
    assert np.all(np.isfinite(grad_s.numpy())) and np.any(grad_s.numpy() != 0)
    assert np.any(grad_w.numpy() != 0)


def test_activation_range_starts_from_the_first_batch_then_follows_an_ema():
    quantizer = ActivationRangeQuantizer(8, ema_decay=0.5)
    _, weights = _built(quantizer, (None, 4))
    quantizer(tf.constant([[0.0, 1.0, 2.0, 10.0]]), True, weights)
    assert (weights["min_var"].numpy(), weights["max_var"].numpy()) == (0.0, 10.0)
    quantizer(tf.constant([[-2.0, 0.0, 1.0, 2.0]]), True, weights)
    assert (weights["min_var"].numpy(), weights["max_var"].numpy()) == (-1.0, 6.0)
    out = quantizer(tf.constant([[-1.0, 3.0, 100.0]]), False, weights).numpy()
    assert out[0, 2] == pytest.approx(6.0, abs=0.03)  # clipped at the stored range
    with pytest.raises(ValueError, match="ema_decay must be in"):
        ActivationRangeQuantizer(8, ema_decay=1.0)


def test_qat_trains_under_a_mirrored_strategy():
    """Two logical CPUs, MirroredStrategy: quantize_model + fit run unchanged (subprocess,
    since logical devices must be set before TensorFlow starts)."""
    import subprocess
    import sys

    script = """
import numpy as np
from tfmot_edgeplus._compat import tf, keras
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import tfmot_edgeplus as ep
from tfmot_edgeplus.models import small_cnn, compile_classifier
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert strategy.num_replicas_in_sync == 2
x = np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32)
y = np.arange(64) % 10
with strategy.scope():
    qat = ep.quantize_model(small_cnn(), ep.EdgePlusQuantizeScheme(2, 8, learnable_scales=True))
    compile_classifier(qat)
history = qat.fit(x, y, batch_size=16, epochs=1, verbose=0)
assert np.isfinite(history.history["loss"][0])
print("OK", qat.get_layer("quant_relu1").weights[0].numpy())
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "OK" in out.stdout


# ---------------------------------------------------------------- save and load


@pytest.mark.parametrize("learnable, fmt", [(False, "h5"), (False, "savedmodel"), (True, "savedmodel")])
def test_saved_qat_model_loads_under_quantize_scope(tmp_path, learnable, fmt, rng):
    model = _tiny_model()
    qat = quantize_model(model, EdgePlusQuantizeScheme(2, 8, learnable_scales=learnable))
    x = rng.normal(size=(4, 8, 8, 1)).astype(np.float32)
    expected = qat.predict(x, verbose=0)
    path = str(tmp_path / ("qat.h5" if fmt == "h5" else "qat_savedmodel"))
    qat.save(path)
    with quantize_scope():
        loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), expected, atol=1e-5)
    assert loaded.get_layer("quant_conv1").quantize_config == qat.get_layer("quant_conv1").quantize_config
