"""quarc_qat (the whole little-data QAT recipe) and activation-range calibration."""

from __future__ import annotations

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import numpy as np
import pytest

from tfmot_edgeplus._compat import keras
from tfmot_edgeplus.quantization import (
    EdgePlusQuantizeScheme,
    calibrate_activation_ranges,
    calibrate_batchnorm,
    holdout_split,
    quantize_model,
)
from tfmot_edgeplus.quantization.calibrate import uncalibrated_ranges
from tfmot_edgeplus.recipes import quarc
from tfmot_edgeplus.recipes.quarc import QuaRCConfig, quarc_qat


@pytest.fixture(scope="module")
def digits_task():
    from tfmot_edgeplus import datasets

    return datasets.digits()


@pytest.fixture(scope="module")
def fp_digits(digits_task):
    from tfmot_edgeplus.models import compile_classifier

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Flatten(name="flat")(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    model = compile_classifier(keras.Model(inputs, outputs, name="digits_fp"), 1e-2)
    model.fit(digits_task.x_train, digits_task.y_train, epochs=8, batch_size=64, verbose=0)
    return model


def _range_values(model):
    return {v.name: float(v.numpy()) for v in model.variables
            if v.name.split(":")[0].endswith(("_min", "_max"))}


def test_calibration_sets_ranges_from_data_and_changes_nothing_else(fp_digits, digits_task):
    x = digits_task.x_train
    qat = quantize_model(fp_digits, EdgePlusQuantizeScheme(2, 8, learnable_scales=True))
    assert uncalibrated_ranges(qat)
    before = _range_values(qat)
    # quantize_apply's placeholders: [-6, 6] for ours, [0, 0] for TF-MOT's input quantizer.
    assert set(before.values()) == {-6.0, 0.0, 6.0}
    others = {v.name: v.numpy().copy() for v in qat.variables
              if not v.name.split(":")[0].endswith(("_min", "_max", "_range_initialized"))}
    raw = qat.predict(x, verbose=0)

    assert calibrate_activation_ranges(qat, x, batch_size=100, batches=3) == 300
    assert uncalibrated_ranges(qat) == []
    after = _range_values(qat)
    assert all(after[name] != before[name] for name in before if name.endswith("_max:0"))
    (input_max,) = [v for name, v in after.items() if name.startswith("quantize_layer")
                    and name.endswith("_max:0")]
    assert input_max == pytest.approx(x[:300].max())
    # The logits' range now covers the float model's logits instead of clipping at 6.
    fp_logits = fp_digits.predict(x, verbose=0)
    top = max(v for name, v in after.items() if "logits" in name and name.endswith("_max:0"))
    assert fp_logits.max() > 6.0 and top > 6.0
    for v in qat.variables:  # BatchNorm statistics and everything else put back
        if v.name in others:
            np.testing.assert_array_equal(v.numpy(), others[v.name], err_msg=v.name)
    calibrated = qat.predict(x, verbose=0)
    agree_raw = np.mean(raw.argmax(1) == fp_logits.argmax(1))
    agree_cal = np.mean(calibrated.argmax(1) == fp_logits.argmax(1))
    assert agree_cal > agree_raw


def test_calibration_bad_input(fp_digits, digits_task):
    qat = quantize_model(fp_digits, EdgePlusQuantizeScheme(4, 8))
    with pytest.raises(ValueError, match="no activation-range variables .* not a QAT model"):
        calibrate_activation_ranges(fp_digits, digits_task.x_train)
    with pytest.raises(ValueError, match="batch_size and batches must be >= 1, got batch_size=0"):
        calibrate_activation_ranges(qat, digits_task.x_train, batch_size=0)
    with pytest.raises(ValueError, match="x is empty"):
        calibrate_activation_ranges(qat, digits_task.x_train[:0])


def test_batchnorm_calibration_sets_the_mean_batch_statistics(fp_digits, digits_task):
    x = digits_task.x_train[:300]
    qat = quantize_model(fp_digits, EdgePlusQuantizeScheme(2, 8, learnable_scales=True))
    calibrate_activation_ranges(qat, x)
    (norm,) = [m for m in qat.submodules if isinstance(m, keras.layers.BatchNormalization)]
    fp_mean = norm.moving_mean.numpy().copy()
    # The BatchNorm's input: the 2-bit convolution's output (a training-mode pass).
    conv = next(layer for layer in qat.layers if layer.name == "quant_conv")
    feed = keras.Model(qat.inputs, conv.output)
    stats = [feed(x[i: i + 100], training=True).numpy().reshape(-1, 8) for i in (0, 100, 200)]

    assert calibrate_batchnorm(qat, x, batch_size=100, batches=3) == 1
    want_mean = np.mean([s.mean(axis=0) for s in stats], axis=0)
    want_var = np.mean([s.var(axis=0, ddof=1) for s in stats], axis=0)
    np.testing.assert_allclose(norm.moving_mean.numpy(), want_mean, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(norm.moving_variance.numpy(), want_var, rtol=1e-2, atol=1e-5)
    assert not np.allclose(norm.moving_mean.numpy(), fp_mean)
    assert norm.momentum == fp_digits.get_layer("bn").momentum  # put back
    with pytest.raises(ValueError, match="x is empty"):
        calibrate_batchnorm(qat, x[:0])


@pytest.mark.parametrize("coreset, beta, holdout, budget", [
    ("res", 1.0, 0.1, False), ("random", 0.0, 0.1, True), ("full", 0.0, 0.0, False)])
def test_quarc_qat_trains_a_new_model_on_the_coreset(fp_digits, digits_task, coreset, beta,
                                                     holdout, budget, monkeypatch):
    x, y = digits_task.x_train, digits_task.y_train
    fp_weights = [w.copy() for w in fp_digits.get_weights()]
    fraction = 1.0 if coreset == "full" else 0.2
    held = round(holdout * len(x))
    per_pass = -(-round(0.2 * (len(x) - held)) // 32)  # steps per pass over the coreset
    # a step budget one step short of 4 passes trains 4 passes; else 3 epochs
    config = QuaRCConfig(weight_bits=4, coreset=coreset, fraction=fraction, beta=beta, epochs=3,
                         steps=4 * per_pass - 1 if budget else None, batch_size=32,
                         learning_rate=2e-3, calibration_samples=256, holdout=holdout,
                         calibrate_bn=budget)
    epochs = 4 if budget else 3
    bn_calls = []

    def spy(model, samples):
        bn_calls.append((model, samples))
        return calibrate_batchnorm(model, samples)

    monkeypatch.setattr(quarc, "calibrate_batchnorm", spy)
    run = quarc_qat(fp_digits, x, y, config)

    assert run.qat_model is not fp_digits
    for before, after in zip(fp_weights, fp_digits.get_weights()):
        np.testing.assert_array_equal(before, after)  # the float model is not touched
    assert run.train_samples == (len(x) if coreset == "full" else round(0.2 * (len(x) - held)))
    if holdout:  # the best of before training and each epoch, by the held-out slice
        best = run.summary()["best_weights"]
        assert best["heldout_samples"] == held
        assert best["best_accuracy"] == max(best["start_accuracy"],
                                            *run.history.history["heldout_accuracy"])
        assert best["restored"] == (best["best_accuracy"] > best["last_accuracy"])
    else:
        assert run.best is None and "heldout_accuracy" not in run.history.history
    assert (run.coreset is None) == (coreset == "full")
    history = run.history.history
    assert len(history["loss"]) == epochs and np.isfinite(history["loss"]).all()
    assert history["kd_loss"][-1] < history["kd_loss"][0]
    if coreset != "full":
        assert history["coreset_size"] == [float(run.train_samples)] * epochs
    if beta > 0:
        assert max(history["clc_loss"]) > 0
    else:
        assert max(history["clc_loss"]) == 0
    assert set(run.seconds) == {"quantize", "train"}
    # BatchNorm re-estimated on the calibration samples before scoring and after training
    train = holdout_split(len(x), holdout, config.seed)[0] if holdout else np.arange(len(x))
    calib = x[train][np.random.default_rng(config.seed).permutation(len(train))[:256]]
    assert len(bn_calls) == (2 if config.calibrate_bn else 0)
    for model, samples in bn_calls:
        assert model is run.qat_model
        np.testing.assert_array_equal(samples, calib)
    assert run.summary()["config"]["coreset"] == coreset
    acc = np.mean(run.qat_model.predict(digits_task.x_test, verbose=0).argmax(1)
                  == digits_task.y_test)
    assert acc > 0.8


@pytest.mark.parametrize("kwargs, match", [
    ({"coreset": "ace"}, r"coreset must be one of 'res', 'random', 'full', got 'ace'"),
    ({"coreset": "full", "fraction": 0.5}, r"coreset='full' .* fraction must be 1.0, got 0.5"),
    ({"fraction": 0.0}, r"fraction must be in \(0, 1\], got 0.0"),
    ({"fraction": 1.2}, r"fraction must be in \(0, 1\], got 1.2"),
    ({"epochs": 0}, "epochs must be an int >= 1, got 0"),
    ({"beta": -1.0}, "beta must be >= 0 .* got -1.0"),
    ({"temperature": 0.0}, "temperature must be > 0, got 0.0"),
    ({"learning_rate": 0}, "learning_rate must be > 0, got 0"),
    ({"weight_bits": 5}, "weight_bits"),
    ({"holdout": 1.0}, r"holdout must be in \[0, 1\), got 1.0"),
    ({"feature_softmax": "space"}, "feature_softmax must be one of 'channels', 'positions'"),
    ({"feature_temperature": 0}, "feature_temperature must be > 0, got 0"),
    ({"steps": 0}, r"steps must be an int >= 1 .* or None .* got 0"),
    ({"steps": 2.5}, r"steps must be an int >= 1 .* got 2.5"),
])
def test_bad_config_names_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        QuaRCConfig(**kwargs)


def test_a_step_budget_sets_the_passes_over_the_training_data():
    # 37 samples at batch 64: one step a pass; 3,675 samples: 58 steps a pass.
    assert QuaRCConfig(steps=300).epochs_for(37) == 300
    assert QuaRCConfig(steps=300).epochs_for(3675) == 6  # ceil(300 / 58)
    assert QuaRCConfig(steps=300, batch_size=10).epochs_for(100) == 30
    assert QuaRCConfig(epochs=7).epochs_for(37) == 7  # no budget: the epochs


def test_quarc_qat_bad_data(fp_digits, digits_task):
    with pytest.raises(ValueError, match="x has 20 samples but y has 19 labels"):
        quarc_qat(fp_digits, digits_task.x_train[:20], digits_task.y_train[:19])
