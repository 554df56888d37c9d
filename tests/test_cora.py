"""cora_ptq (PTQ + CoRa adapters + calibration in one call) and its settings."""

from __future__ import annotations

import numpy as np
import pytest

from tfmot_edgeplus.recipes.cora import CoRaConfig, cora_ptq, ptq_model, qat_same_steps


def test_cora_ptq_uses_only_its_calibration_samples_and_reports(digits_fp):
    """With the learned (Butterworth) ranks; the default greedy ranks run in test_demo's cora
    command, the CoRa example and benchmarks/cora's test."""
    fp, data = digits_fp
    fp_weights = [w.copy() for w in fp.get_weights()]
    config = CoRaConfig(weight_bits=2, budget=0.2, rank_search="butterworth", search_steps=20,
                        steps=60, calib_samples=300, learning_rate=3e-3)
    run = cora_ptq(fp, data.x_train, data.y_train, config,
                   validation_data=(data.x_test, data.y_test))
    for before, after in zip(fp_weights, fp.get_weights()):
        np.testing.assert_array_equal(before, after)
    summary = run.summary()
    assert summary["calib_samples"] == 300
    assert 0 < summary["adapter_param_fraction"] <= 0.2
    assert summary["cutoffs"] is not None
    assert set(summary["seconds"]) == {"quantize", "ranks", "calibrate"}
    best = summary["best_weights"]  # 30 of the 300 held out, judged before and every 12 steps
    assert best["heldout_samples"] == 30 and len(run.history.history["heldout_accuracy"]) == 5
    assert best["best_accuracy"] >= best["start_accuracy"]
    assert summary["rolled_back"] == (best["best_epoch"] == 0)
    # Ternary weights lose a lot on this tiny model; the adapters win part of it back.
    assert run.accuracy["cora"] > run.accuracy["ptq"]
    logits = run.model.predict(data.x_test, verbose=0)
    assert run.accuracy["cora"] == pytest.approx(np.mean(logits.argmax(1) == data.y_test))


@pytest.mark.parametrize("kwargs, match", [
    ({"rank_search": "svd"}, r"rank_search must be one of 'greedy', 'butterworth', got 'svd'"),
    ({"steps": 0}, r"steps must be an int >= 1, got 0 \(CoRa uses a few hundred"),
    ({"calib_samples": 2.5}, r"calib_samples must be an int >= 1, got 2\.5"),
    ({"budget": 0.0}, r"budget must be in \(0, 1\]"),
    ({"weight_bits": 5}, r"weight_bits"),
    ({"adapter_bits": 16}, r"adapter_bits"),
    ({"holdout": -0.1}, r"holdout must be in \[0, 1\), got -0.1"),
])
def test_cora_config_rejects_bad_settings(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        CoRaConfig(**kwargs)


def test_qat_same_steps_starts_from_the_same_ptq_and_never_ends_below_it(digits_fp):
    fp, data = digits_fp
    config = CoRaConfig(weight_bits=2, steps=5, calib_samples=300, holdout=0.2)
    model = qat_same_steps(fp, data.x_train, data.y_train, config, learning_rate=1.0)
    pick = np.random.default_rng(0).permutation(len(data.x_train))[:300]
    x_calib = data.x_train[pick]
    ptq = ptq_model(fp, 2, 8, x_calib)
    assert model is not fp and model.count_params() == ptq.count_params()

    def top1(m, x, y):
        return np.mean(m.predict(x, verbose=0).argmax(1) == y)

    from tfmot_edgeplus.quantization import holdout_split

    held = pick[holdout_split(300, 0.2, 0)[1]]  # the slice it was judged on
    x_held, y_held = data.x_train[held], data.y_train[held]
    # a learning rate of 1.0 wrecks the weights: the PTQ start is kept, bit for bit
    assert top1(model, x_held, y_held) >= top1(ptq, x_held, y_held)
    for a, b in zip(model.get_weights(), ptq.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_cora_ptq_rejects_mismatched_labels(digits_fp):
    fp, data = digits_fp
    with pytest.raises(ValueError, match=r"x has 100 samples but y has 99 labels"):
        cora_ptq(fp, data.x_train[:100], data.y_train[:99])
