"""CLCTrainer (QuaRC cascaded layer correction + KD): transforms, layer matching, training,
TF-MOT schemes, tf.distribute and bad input. Real Fashion-MNIST slice, tiny CNN."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import numpy as np
import pytest

from tfmot_edgeplus import EdgePlusQuantizeScheme, datasets, quantize_model
from tfmot_edgeplus._compat import keras, tf, tfmot
from tfmot_edgeplus.distillation import (
    CLCTrainer,
    clc_divergence,
    default_layer_names,
    feature_distribution,
    kd_cross_entropy,
    match_layers,
)
from tfmot_edgeplus.models import compile_classifier, imu_cnn, small_cnn

LOG_KEYS = {"loss", "kd_loss", "clc_loss"}


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def data():
    """1500 train / 300 test real Fashion-MNIST images."""
    return datasets.fashion_mnist(limit_train=1500, limit_test=300, seed=1)


@pytest.fixture(scope="module")
def fp_model(data):
    """small_cnn at width 8, briefly trained (a few seconds): a real, non-random teacher."""
    keras.utils.set_random_seed(0)
    model = compile_classifier(small_cnn(width=8, name="fp"), learning_rate=3e-3)
    model.fit(data.x_train, data.y_train, epochs=2, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def qat_w2(fp_model):
    """A W2A8 QAT copy, shared by the tests that only construct trainers (read-only)."""
    return _quantize(fp_model, "edgeplus_w2")


def _clone_fp(fp_model):
    clone = keras.models.clone_model(fp_model)
    clone.set_weights(fp_model.get_weights())
    return clone


def _quantize(fp_model, scheme_name: str):
    model = _clone_fp(fp_model)
    if scheme_name == "edgeplus_w2":
        return quantize_model(model, EdgePlusQuantizeScheme(weight_bits=2, activation_bits=8))
    if scheme_name == "edgeplus_w8":
        return quantize_model(model, EdgePlusQuantizeScheme(weight_bits=8, activation_bits=8))
    if scheme_name == "tfmot_default_8bit":
        return tfmot.quantization.keras.quantize_model(model)
    if scheme_name == "tfmot_default_n_bit":
        scheme = tfmot.quantization.keras.experimental.default_n_bit.DefaultNBitQuantizeScheme(
            num_bits_weight=4, num_bits_activation=8)
        annotated = tfmot.quantization.keras.quantize_annotate_model(model)
        return tfmot.quantization.keras.quantize_apply(annotated, scheme)
    raise AssertionError(scheme_name)


def _calibrate(qat, x):
    """Training-mode forward passes without weight updates: set the activation quantizers'
    ranges, which start at TF-MOT's defaults and only move in training mode."""
    for start in range(0, len(x), 64):
        qat(x[start:start + 64], training=True)


def _perturb_kernels(qat, rng, scale=0.4):
    """Multiplicative noise on every wrapped kernel: the student starts far from the FP
    features whatever the bit width, so that correction has something to correct."""
    kernels = [w for w in qat.trainable_weights if "kernel" in w.name]
    assert kernels
    for kernel in kernels:
        noise = 1.0 + scale * rng.normal(size=kernel.shape).astype(np.float32)
        kernel.assign(kernel * noise)


# ----------------------------------------------------------------------------- transforms
@pytest.mark.parametrize("shape,axis", [((2, 5, 5, 7), -1), ((3, 9, 4), -1), ((4, 6), -1),
                                        ((2, 7, 5, 5), 1)])
def test_feature_distribution_sums_to_one_over_channels(rng, shape, axis):
    feature = rng.normal(scale=3.0, size=shape).astype(np.float32)
    p = feature_distribution(feature, tau=1.0, channel_axis=axis).numpy()
    channels = shape[axis]
    positions = int(np.prod(shape[1:])) // channels
    assert p.shape == (shape[0], positions, channels)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, atol=1e-5)
    assert (p >= 0).all()
    # Matches a NumPy channel softmax at one position.
    moved = np.moveaxis(feature, axis, -1).reshape(shape[0], positions, channels)
    ref = np.exp(moved[1, 0]) / np.exp(moved[1, 0]).sum()
    np.testing.assert_allclose(p[1, 0], ref, rtol=1e-5)


def test_feature_temperature_flattens_or_sharpens(rng):
    feature = rng.normal(size=(2, 4, 4, 8)).astype(np.float32)

    def entropy(tau):
        p = feature_distribution(feature, tau=tau).numpy()
        return float(-(p * np.log(p + 1e-30)).sum(-1).mean())

    entropies = [entropy(t) for t in (0.05, 0.5, 1.0, 4.0, 100.0)]
    assert entropies == sorted(entropies)
    assert entropies[-1] == pytest.approx(np.log(8), rel=1e-3)  # near uniform
    sharp = feature_distribution(feature, tau=0.01).numpy()
    argmax = np.moveaxis(feature, -1, -1).reshape(2, 16, 8).argmax(-1)
    np.testing.assert_array_equal(sharp.argmax(-1), argmax)
    assert sharp.max(-1).min() > 0.9


def test_clc_divergence_zero_for_equal_and_matches_numpy(rng):
    a = rng.normal(size=(3, 5, 5, 6)).astype(np.float32)
    b = rng.normal(size=(3, 5, 5, 6)).astype(np.float32)
    np.testing.assert_allclose(clc_divergence(a, a, tau=2.0).numpy(), 0.0, atol=1e-6)
    # Adding a per-position constant to all channels leaves the distribution unchanged.
    shifted = a + rng.normal(size=(3, 5, 5, 1)).astype(np.float32)
    np.testing.assert_allclose(clc_divergence(a, shifted).numpy(), 0.0, atol=1e-5)
    kl = clc_divergence(a, b, tau=1.0).numpy()
    q = np.exp(a) / np.exp(a).sum(-1, keepdims=True)
    f = np.exp(b) / np.exp(b).sum(-1, keepdims=True)
    ref = (q * (np.log(q) - np.log(f))).sum(-1).reshape(3, -1).mean(-1)
    np.testing.assert_allclose(kl, ref, rtol=1e-4)
    assert (kl > 0).all()


def test_position_softmax_is_per_channel_and_its_kl_averages_channels(rng):
    a = rng.normal(size=(3, 4, 5, 6)).astype(np.float32)
    b = rng.normal(size=(3, 4, 5, 6)).astype(np.float32)
    p = feature_distribution(a, over="positions").numpy()
    assert p.shape == (3, 20, 6)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)  # over positions, per channel
    # Adding a per-channel constant at every position leaves it unchanged.
    shifted = a + rng.normal(size=(3, 1, 1, 6)).astype(np.float32)
    np.testing.assert_allclose(clc_divergence(a, shifted, over="positions").numpy(), 0.0,
                               atol=1e-5)
    q = np.exp(a.reshape(3, 20, 6)) / np.exp(a.reshape(3, 20, 6)).sum(1, keepdims=True)
    f = np.exp(b.reshape(3, 20, 6)) / np.exp(b.reshape(3, 20, 6)).sum(1, keepdims=True)
    ref = (q * (np.log(q) - np.log(f))).sum(1).mean(-1)
    np.testing.assert_allclose(clc_divergence(a, b, over="positions").numpy(), ref, rtol=1e-4)
    # A Dense output is one position: nothing to match over positions.
    np.testing.assert_allclose(clc_divergence(a[:, 0, 0], b[:, 0, 0], over="positions"), 0.0)
    with pytest.raises(ValueError, match="over must be one of 'channels', 'positions'"):
        clc_divergence(a, b, over="space")


def test_clc_divergence_gradient_reaches_student_only(rng):
    a = tf.Variable(rng.normal(size=(2, 3, 4)).astype(np.float32))
    b = tf.Variable(rng.normal(size=(2, 3, 4)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(clc_divergence(a, b))
    grad_a, grad_b = tape.gradient(loss, [a, b])
    assert grad_b is None
    assert float(tf.reduce_max(tf.abs(grad_a))) > 0


def test_kd_cross_entropy_matches_formula_and_t2_scaling(rng):
    s = rng.normal(size=(4, 10)).astype(np.float32)
    t = rng.normal(size=(4, 10)).astype(np.float32)
    temperature = 3.0
    p_t = np.exp(t / temperature) / np.exp(t / temperature).sum(-1, keepdims=True)
    log_q = s / temperature - np.log(np.exp(s / temperature).sum(-1, keepdims=True))
    ref = -(p_t * log_q).sum(-1)
    np.testing.assert_allclose(kd_cross_entropy(s, t, temperature, scale_by_t2=False).numpy(),
                               ref, rtol=1e-5)
    np.testing.assert_allclose(kd_cross_entropy(s, t, temperature).numpy(),
                               ref * temperature**2, rtol=1e-5)
    # Cross-entropy form: at student == teacher it equals the teacher's entropy, its minimum.
    same = kd_cross_entropy(t, t, 1.0).numpy()
    p = np.exp(t) / np.exp(t).sum(-1, keepdims=True)
    np.testing.assert_allclose(same, -(p * np.log(p)).sum(-1), rtol=1e-5)
    assert (kd_cross_entropy(s, t, 1.0).numpy() > same).all()


# ----------------------------------------------------------------------------- matching
def test_all_layers_are_convs_and_dense_but_the_last(fp_model, qat_w2):
    qat = qat_w2
    assert default_layer_names(qat) == ["conv1", "dw2", "pw2", "conv3"]
    pairs = match_layers(qat, fp_model, "all")
    assert [p.student_layer.name for p in pairs] == ["quant_conv1", "quant_dw2", "quant_pw2",
                                                     "quant_conv3"]
    assert [p.fp_layer.name for p in pairs] == ["conv1", "dw2", "pw2", "conv3"]
    explicit = match_layers(qat, fp_model, ["quant_relu1", "pw2", "logits"])
    assert [p.name for p in explicit] == ["relu1", "pw2", "logits"]


def test_conv1d_models_are_matched():
    fp = imu_cnn(window=32, channels=6, classes=4, width=4)
    qat = quantize_model(_clone_fp(fp), EdgePlusQuantizeScheme(weight_bits=4))
    assert default_layer_names(qat) == ["conv1", "conv2", "conv3"]
    trainer = CLCTrainer(qat, fp)
    x = np.random.default_rng(0).normal(size=(8, 32, 6)).astype(np.float32)
    trainer.compile(keras.optimizers.Adam(1e-3))
    logs = trainer.evaluate(x, return_dict=True, verbose=0)
    assert LOG_KEYS <= set(logs) and logs["clc_loss"] > 0


# ----------------------------------------------------------------------------- training
@pytest.mark.slow
@pytest.mark.parametrize("scheme_name", ["edgeplus_w2", "tfmot_default_8bit",
                                         "tfmot_default_n_bit"])
def test_fit_logs_keys_and_clc_loss_decreases(data, fp_model, scheme_name):
    keras.utils.set_random_seed(1)
    qat = _quantize(fp_model, scheme_name)
    _perturb_kernels(qat, np.random.default_rng(3))
    trainer = CLCTrainer(qat, fp_model, layers="all", beta=5.0, temperature=2.0)
    trainer.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    _calibrate(qat, data.x_train[:256])
    before = trainer.evaluate(data.x_test, data.y_test, return_dict=True, verbose=0)
    history = trainer.fit(data.x_train[:512], data.y_train[:512], epochs=3, batch_size=64,
                          validation_data=(data.x_test, data.y_test), verbose=0)
    logs = history.history
    assert LOG_KEYS | {"accuracy"} <= set(logs)
    assert {"val_loss", "val_kd_loss", "val_clc_loss", "val_accuracy"} <= set(logs)
    for key in LOG_KEYS:
        assert np.isfinite(logs[key]).all(), (key, logs[key])
    # The logged total is exactly the weighted sum of its parts (alpha = 0).
    np.testing.assert_allclose(logs["loss"], np.array(logs["kd_loss"]) + 5.0 *
                               np.array(logs["clc_loss"]), rtol=1e-4)
    assert logs["clc_loss"][-1] < logs["clc_loss"][0]
    assert logs["val_clc_loss"][-1] < 0.8 * before["clc_loss"]


def test_lower_bits_give_larger_clc_loss(data, fp_model):
    results = {}
    for scheme_name in ("edgeplus_w8", "edgeplus_w2"):
        qat = _quantize(fp_model, scheme_name)
        _calibrate(qat, data.x_train[:256])
        trainer = CLCTrainer(qat, fp_model)
        trainer.compile(keras.optimizers.Adam(1e-3))
        results[scheme_name] = trainer.evaluate(data.x_test[:128], return_dict=True,
                                                verbose=0)["clc_loss"]
    assert 0 <= results["edgeplus_w8"] < 0.1 * results["edgeplus_w2"], results


def test_trainer_is_the_student_for_predict_and_evaluate(data, fp_model):
    qat = _quantize(fp_model, "edgeplus_w2")
    trainer = CLCTrainer(qat, fp_model, alpha=0.5, beta=0.0)
    assert trainer.layer_names == []
    x = data.x_test[:64]
    np.testing.assert_allclose(trainer.predict(x, verbose=0), qat.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-5)
    trainer.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    got = trainer.evaluate(x, data.y_test[:64], return_dict=True, verbose=0)
    compile_classifier(qat)
    want = qat.evaluate(x, data.y_test[:64], return_dict=True, verbose=0)
    assert got["accuracy"] == pytest.approx(want["accuracy"])
    assert got["clc_loss"] == 0.0
    # loss = kd + alpha * hard-label CE
    assert got["loss"] == pytest.approx(got["kd_loss"] + 0.5 * want["loss"], rel=1e-4)


def test_separate_correction_model_and_frozen_fp(data, fp_model):
    teacher = _clone_fp(fp_model)
    correction = _clone_fp(fp_model)
    qat = _quantize(fp_model, "edgeplus_w2")
    teacher_weights = [w.copy() for w in teacher.get_weights()]
    trainer = CLCTrainer(qat, teacher, correction_model=correction, layers=["conv1", "pw2"])
    assert teacher.trainable and correction.trainable  # the caller's models are not mutated
    correction_weights = [w.copy() for w in correction.get_weights()]
    student_before = [w.copy() for w in qat.get_weights()]
    trainer.compile(keras.optimizers.Adam(1e-3))
    logs = trainer.fit(data.x_train[:256], epochs=1, batch_size=64, verbose=0).history  # no labels
    assert LOG_KEYS <= set(logs)
    for before, after in zip(teacher_weights + correction_weights,
                             teacher.get_weights() + correction.get_weights()):
        np.testing.assert_array_equal(before, after)  # weights and BN statistics
    assert any(not np.array_equal(b, a) for b, a in zip(student_before, qat.get_weights()))


@pytest.mark.slow
def test_mirrored_strategy_matches_single_device(data, fp_model):
    x, y = data.x_train[:128], data.y_train[:128]
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        fp_in_scope = _clone_fp(fp_model)
        qat = _quantize(fp_in_scope, "edgeplus_w2")
        trainer = CLCTrainer(qat, fp_in_scope, beta=2.0)
        trainer.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    qat_single = _quantize(fp_model, "edgeplus_w2")
    single = CLCTrainer(qat_single, fp_model, beta=2.0)
    single.compile(keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    got = trainer.evaluate(x, y, batch_size=64, return_dict=True, verbose=0)
    want = single.evaluate(x, y, batch_size=64, return_dict=True, verbose=0)
    for key in ("loss", "kd_loss", "clc_loss", "accuracy"):
        assert got[key] == pytest.approx(want[key], rel=1e-4), key
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
    history = trainer.fit(dataset, epochs=2, verbose=0).history
    assert LOG_KEYS | {"accuracy"} <= set(history)
    assert np.isfinite(history["loss"]).all()


# Two CPU replicas need the logical devices configured before TensorFlow initialises, which
# has long happened in a pytest process: this runs in a fresh interpreter.
_TWO_REPLICA_SCRIPT = textwrap.dedent('''
import os, json, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np
from tfmot_edgeplus._compat import keras, tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tfmot_edgeplus import EdgePlusQuantizeScheme, quantize_model
from tfmot_edgeplus.distillation import CLCTrainer
from tfmot_edgeplus.models import imu_cnn

def build(fp_weights=None):
    keras.utils.set_random_seed(0)
    fp = imu_cnn(window=32, channels=6, classes=4, width=4)
    if fp_weights is not None:
        fp.set_weights(fp_weights)
    qat = quantize_model(fp, EdgePlusQuantizeScheme(weight_bits=4))
    trainer = CLCTrainer(qat, fp, beta=3.0, temperature=2.0, alpha=0.5)
    trainer.compile(keras.optimizers.SGD(0.5), metrics=["accuracy"])
    return trainer

rng = np.random.default_rng(0)
# Each batch of 16 is 8 samples twice, so each replica sees a batch with the same content
# (and the same activation-range statistics) as the single device: any difference left
# is the loss reduction across replicas.
half_x = rng.normal(size=(2, 8, 32, 6)).astype(np.float32)
half_y = rng.integers(0, 4, size=(2, 8))
x = np.concatenate([np.concatenate([h, h]) for h in half_x])
y = np.concatenate([np.concatenate([h, h]) for h in half_y])
single = build()
w0 = single.student.get_weights()
fpw = single.teacher.get_weights()
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    mirrored = build(fpw)
mirrored.student.set_weights(w0)
out = {"replicas": strategy.num_replicas_in_sync}
for name, trainer in (("single", single), ("mirrored", mirrored)):
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    logs = trainer.fit(ds, epochs=1, verbose=0).history
    out[name] = {"logs": {k: [float(v) for v in vals] for k, vals in logs.items()}}
names = [v.name for v in single.student.weights]
trainable = {v.name for v in single.student.trainable_weights}
idx = [i for i, n in enumerate(names) if n in trainable]
ws, wm = single.student.get_weights(), mirrored.student.get_weights()
out["trainable"] = [names[i] for i in idx]
out["max_weight_diff"] = max(float(np.max(np.abs(ws[i] - wm[i]))) for i in idx)
out["max_weight_change"] = max(float(np.max(np.abs(ws[i] - w0[i]))) for i in idx)
print("RESULT " + json.dumps(out))
''')


@pytest.mark.slow
def test_two_replica_step_equals_single_device():
    """MirroredStrategy over two CPU replicas takes exactly the single-device step (same
    weights after two steps, same logged losses): the loss is reduced by the global batch."""
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", _TWO_REPLICA_SCRIPT], capture_output=True,
                          text=True, env=env, timeout=300, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["replicas"] == 2
    for key in ("loss", "kd_loss", "clc_loss", "accuracy"):
        np.testing.assert_allclose(out["mirrored"]["logs"][key], out["single"]["logs"][key],
                                   rtol=1e-5, err_msg=key)
    assert out["max_weight_change"] > 1e-2  # the step did move the weights...
    assert out["max_weight_diff"] < 1e-3 * out["max_weight_change"]  # ...identically


# ----------------------------------------------------------------------------- bad input
def test_unquantized_student_is_refused(fp_model):
    with pytest.raises(ValueError, match="is not quantized.*quantize_model"):
        CLCTrainer(_clone_fp(fp_model), fp_model)


def test_teacher_output_mismatch_is_refused(fp_model, qat_w2):
    qat = qat_w2
    other = small_cnn(width=8, classes=5, name="five_classes")
    with pytest.raises(ValueError, match=r"teacher 'five_classes' outputs shape \(5,\).*\(10,\)"):
        CLCTrainer(qat, other)


def test_unknown_layer_names_list_the_valid_ones(fp_model, qat_w2):
    qat = qat_w2
    with pytest.raises(ValueError, match=r"\['conv9'\].*Valid names: \[.*'conv1'"):
        CLCTrainer(qat, fp_model, layers=["conv1", "conv9"])
    with pytest.raises(ValueError, match="'all' or a list"):
        CLCTrainer(qat, fp_model, layers="everything")
    with pytest.raises(ValueError, match="empty"):
        CLCTrainer(qat, fp_model, layers=[])


def test_correction_model_with_other_layers_is_refused(fp_model, qat_w2):
    qat = qat_w2
    other = small_cnn(width=8)  # same classes
    renamed = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(),
                                keras.layers.Dense(10, name="head")], name="other_arch")
    with pytest.raises(ValueError, match=r"no layers named \['conv1', 'dw2'.*same architecture"):
        CLCTrainer(qat, fp_model, correction_model=renamed)
    wider = small_cnn(width=16, name="wider")
    with pytest.raises(ValueError, match=r"'conv1' outputs shape \(28, 28, 8\).*\(28, 28, 16\)"):
        CLCTrainer(qat, other, correction_model=wider)


@pytest.mark.parametrize("kwargs,pattern", [
    ({"beta": -1.0}, "beta must be >= 0, got -1.0"),
    ({"beta": float("nan")}, "beta must be >= 0, got nan"),
    ({"temperature": 0.0}, "temperature must be > 0, got 0.0"),
    ({"temperature": -2}, "temperature must be > 0, got -2.0"),
    ({"feature_temperature": -1}, "feature_temperature must be > 0"),
    ({"alpha": -0.1}, "alpha must be >= 0"),
    ({"feature_softmax": "pixels"},
     "feature_softmax must be one of 'channels', 'positions' .* got 'pixels'"),
    ({"beta": "big"}, "beta must be a number"),
])
def test_bad_hyperparameters_are_refused(fp_model, qat_w2, kwargs, pattern):
    qat = qat_w2
    with pytest.raises((ValueError, TypeError), match=pattern):
        CLCTrainer(qat, fp_model, **kwargs)


def test_compile_with_a_loss_is_refused(fp_model, qat_w2):
    trainer = CLCTrainer(qat_w2, fp_model)
    with pytest.raises(ValueError, match="computes its own loss"):
        trainer.compile("adam", loss="sparse_categorical_crossentropy")


def test_alpha_without_labels_is_refused(data, fp_model, qat_w2):
    trainer = CLCTrainer(qat_w2, fp_model, alpha=1.0)
    trainer.compile(keras.optimizers.Adam(1e-3))
    with pytest.raises(ValueError, match="no labels"):
        trainer.fit(data.x_train[:64], epochs=1, batch_size=64, verbose=0)
