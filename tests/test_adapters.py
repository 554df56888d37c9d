"""CoRa residual adapters: SVD initialisation, graph surgery, calibration, deployment."""

from __future__ import annotations

import numpy as np
import pytest

from tfmot_edgeplus import _tfmot, adapters
from tfmot_edgeplus._compat import keras, tf
from tfmot_edgeplus.adapters import svd as svd_lib
from tfmot_edgeplus.models import small_cnn
from tfmot_edgeplus.quantization import (
    EdgePlusQuantizeScheme,
    calibrate_activation_ranges,
    quantize_model,
    quantize_scope,
)

# ---------------------------------------------------------------- fixtures


def _qat(fp, bits, x, learnable_scales=False, per_layer=None):
    scheme = EdgePlusQuantizeScheme(bits, learnable_scales=learnable_scales, per_layer=per_layer)
    qat = quantize_model(fp, scheme)
    calibrate_activation_ranges(qat, x)
    return qat


def _kernel(layer):
    """The float kernel variable of a plain or wrapped layer."""
    return _tfmot.kernel_variable(layer).numpy()


def _accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0, batch_size=256), -1) == y))


# ---------------------------------------------------------------- the SVD math
@pytest.mark.parametrize("shape", [(3, 3, 4, 6), (5, 3, 8), (20, 7), (1, 1, 16, 32)])
def test_svd_factors_are_the_truncated_residual(shape):
    rng = np.random.default_rng(1)
    w = rng.normal(size=shape)
    q = np.round(w * 2) / 2  # a coarse quantizer
    scale = rng.uniform(0.5, 2.0, size=shape[-1])
    svd = svd_lib.residual_svd(w, q, scale)
    residual = svd_lib.as_matrix(w - q) * scale[None, :]
    full = svd.max_rank
    assert full == min(int(np.prod(shape[:-1])), shape[-1]) == svd_lib.max_rank(shape)
    for rank in range(1, full + 1):
        a, b = svd.factors(rank)
        assert a.shape == tuple(shape[:-1]) + (rank,) and b.shape == (rank, shape[-1])
        product = a.reshape(-1, rank).astype(np.float64) @ b
        np.testing.assert_allclose(product, svd.truncation(rank), atol=1e-5)
        error = np.linalg.norm(residual - product)
        assert error == pytest.approx(svd.tail_error(rank), abs=1e-4)
    a, b = svd.factors(full)
    np.testing.assert_allclose(a.reshape(-1, full) @ b, residual, atol=1e-5)  # exact at full rank
    with pytest.raises(ValueError, match="rank must be in"):
        svd.factors(full + 1)


def test_allocate_ranks_respects_budget_and_prefers_energy_per_parameter():
    rng = np.random.default_rng(0)
    cheap = svd_lib.residual_svd(rng.normal(size=(9, 4)), np.zeros((9, 4)))       # 13 / rank
    dear = svd_lib.residual_svd(rng.normal(size=(90, 40)), np.zeros((90, 40)))    # 130 / rank
    for budget in (0, 12, 13, 60, 200, 400):
        ranks = svd_lib.allocate_ranks({"cheap": cheap, "dear": dear}, budget)
        cost = 13 * ranks["cheap"] + 130 * ranks["dear"]
        assert cost <= budget
        # Nothing that still fits was left out.
        left = budget - cost
        assert left < 13 or ranks["cheap"] == 2
    assert svd_lib.allocate_ranks({"cheap": cheap, "dear": dear}, 13) == {"cheap": 1, "dear": 0}
    # No adapter grows past its kernel's size: floor(36 / 13) = 2, floor(3600 / 130) = 27.
    assert svd_lib.useful_rank((9, 4)) == 2 and svd_lib.useful_rank((90, 40)) == 27
    assert svd_lib.allocate_ranks({"cheap": cheap, "dear": dear}, 10**6) == {"cheap": 2, "dear": 27}


# ---------------------------------------------------------------- the graph surgery
def test_full_rank_adapters_restore_the_fp_kernel_through_bn(digits_fp):
    fp, data = digits_fp
    # dw2 (DepthwiseConv2D) gets no adapter: keep it at 8 bits so that the end-to-end check
    # below sees only adapted layers (at 2 bits it alone moves the logits).
    qat = _qat(fp, 2, data.x_train, per_layer={"dw2": {"weight_bits": 8}})
    names_before = [layer.name for layer in qat.layers]
    ranks = {"conv1": 8, "pw2": 8, "conv3": 16, "logits": 10}  # full rank everywhere
    model = adapters.add_residual_adapters(qat, fp, rank=ranks, adapter_bits=None)
    assert [layer.name for layer in qat.layers] == names_before  # qat graph untouched
    record = model.cora
    assert model.adapter_ranks == ranks
    assert record.placement == {"conv1": "after_bn:quant_bn1", "pw2": "after_bn:quant_bn2",
                                "conv3": "split_activation", "logits": "after_layer"}
    assert "dw2" in record.skipped and "rank" in record.skipped["dw2"]
    assert record.adapter_params == sum(
        svd_lib.adapter_params(fp.get_layer(n).kernel.shape, r) for n, r in ranks.items())

    for name in ranks:
        w = fp.get_layer(name).kernel.numpy()
        wrapper = qat.get_layer(f"quant_{name}")
        weight, quantizer, qvars = _tfmot.weight_vars(wrapper)[0]
        quantized = quantizer(weight, training=False, weights=qvars).numpy()
        scale = np.ones(w.shape[-1])
        if record.placement[name].startswith("after_bn"):
            bn = qat.get_layer(record.placement[name].split(":")[1]).layer
            scale = bn.gamma.numpy() / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
            assert not np.allclose(scale, 1.0)  # the test would not see a missing scale
        a = _kernel(model.get_layer(f"{name}_cora_a"))
        b = _kernel(model.get_layer(f"{name}_cora_b"))
        adapter = a.reshape(-1, a.shape[-1]) @ b.reshape(b.shape[-2], b.shape[-1])
        main = svd_lib.as_matrix(quantized) * scale
        target = svd_lib.as_matrix(w) * scale
        assert np.abs(target - main).max() > 1e-2  # W2 really is lossy
        np.testing.assert_allclose(main + adapter, target, atol=2e-5 * np.abs(target).max())

    # The rebuilt main layer (conv3, activation split off) carries qat's kernel, bias, ranges.
    rebuilt, original = model.get_layer("quant_conv3"), qat.get_layer("quant_conv3")
    assert rebuilt is not original
    np.testing.assert_array_equal(_kernel(rebuilt), _kernel(original))
    np.testing.assert_array_equal(rebuilt.layer.bias.numpy(), original.layer.bias.numpy())
    for key, variable in _tfmot.weight_vars(original)[0][2].items():
        np.testing.assert_array_equal(_tfmot.weight_vars(rebuilt)[0][2][key].numpy(),
                                      variable.numpy())

    # End to end: the block's pre-activation equals the FP one up to activation quantization.
    calibrate_activation_ranges(model, data.x_train)
    x = data.x_test[:200]
    fp_bn1 = keras.Model(fp.inputs, fp.get_layer("bn1").output)(x, training=False).numpy()
    cora_bn1 = keras.Model(model.inputs, model.get_layer("quant_conv1_cora_add").output)(x).numpy()
    ptq_bn1 = keras.Model(qat.inputs, qat.get_layer("quant_bn1").get_output_at(0))(x).numpy()
    # (mean, not max: a calibrated int8 range may clip a rare test-set extreme)
    step = (fp_bn1.max() - fp_bn1.min()) / 255
    cora_error, ptq_error = np.abs(cora_bn1 - fp_bn1).mean(), np.abs(ptq_bn1 - fp_bn1).mean()
    assert cora_error < step, (cora_error, step)
    assert ptq_error > 4 * cora_error, (ptq_error, cora_error)
    # and the logits agree with the FP model far better than plain W2 PTQ does
    fp_pred = np.argmax(fp.predict(x, verbose=0), -1)
    assert np.mean(np.argmax(model.predict(x, verbose=0), -1) == fp_pred) >= 0.95
    assert np.mean(np.argmax(qat.predict(x, verbose=0), -1) == fp_pred) < 0.9


def test_rank_r_branch_is_the_rank_r_truncation(digits_fp):
    fp, data = digits_fp
    qat = _qat(fp, 3, data.x_train)
    model = adapters.add_residual_adapters(qat, fp, rank=2, layers=["conv3", "quant_logits"])
    assert model.adapter_ranks == {"conv3": 2, "logits": 2}
    for name in ("conv3", "logits"):
        w = fp.get_layer(name).kernel.numpy()
        weight, quantizer, qvars = _tfmot.weight_vars(qat.get_layer(f"quant_{name}"))[0]
        svd = svd_lib.residual_svd(w, quantizer(weight, training=False, weights=qvars).numpy())
        a = _kernel(model.get_layer(f"quant_{name}_cora_a"))
        b = _kernel(model.get_layer(f"quant_{name}_cora_b"))
        product = a.reshape(-1, 2) @ b.reshape(2, -1)
        np.testing.assert_allclose(product, svd.truncation(2), atol=1e-5)
        residual = svd_lib.as_matrix(w - quantizer(weight, training=False, weights=qvars).numpy())
        assert np.linalg.norm(residual - product) == pytest.approx(svd.tail_error(2), rel=1e-4)


def test_budget_allocation_stays_within_budget(digits_fp):
    fp, data = digits_fp
    qat = _qat(fp, 4, data.x_train)
    for budget in (0.05, 0.2):
        model = adapters.add_residual_adapters(qat, fp, budget=budget)
        record = model.cora
        assert record.budget == budget and record.adapter_params > 0
        assert record.adapter_params <= budget * record.adapted_kernel_params
        assert record.adapted_kernel_params == sum(
            int(np.prod(fp.get_layer(n).kernel.shape)) for n in ("conv1", "pw2", "conv3", "logits"))
        assert record.adapter_bytes == record.adapter_params  # int8


def test_adapted_model_round_trips_through_config(digits_fp):
    fp, data = digits_fp
    qat = _qat(fp, 4, data.x_train)
    model = adapters.add_residual_adapters(qat, fp, rank=1)
    with quantize_scope():
        clone = keras.Model.from_config(model.get_config())
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]
    assert [type(layer) for layer in clone.layers] == [type(layer) for layer in model.layers]
    assert clone.get_config() == model.get_config()
    # (weights are not compared: TF-MOT's QuantizeLayer rebuilt from config creates its
    # quantizer variables twice, for the model's input quantizer as much as for ours)


# ---------------------------------------------------------------- bad input
def test_bad_input_errors(digits_fp):
    fp, data = digits_fp
    qat = _qat(fp, 4, data.x_train)
    cases = [
        ({"rank": 9}, ValueError, r"rank 9 for layer 'conv1'.*\[1, 8\]"),
        ({"rank": {"logits": 11}}, ValueError, r"rank 11 for layer 'logits'.*\[0, 10\]"),
        ({"rank": {"nope": 1}}, ValueError, r"rank names layers that are not adapted: \['nope'\]"),
        ({"rank": True}, TypeError, "must be an int"),
        ({"budget": 0.0}, ValueError, r"budget must be in \(0, 1\].*got 0.0"),
        ({"budget": 1.5}, ValueError, r"budget must be in \(0, 1\].*got 1.5"),
        ({"budget": "5%"}, TypeError, "budget must be a number"),
        ({"budget": 1e-4}, ValueError, "cheapest rank-1 adapter"),
        ({"layers": ["dw2"]}, ValueError, "'dw2'.*DepthwiseConv2D.*no rank to cut"),
        ({"layers": ["relu1"]}, ValueError, "'relu1'.*not a quantized Conv1D/Conv2D/Dense"),
        ({"layers": "conv1"}, TypeError, "layers must be 'all' or a list"),
        ({"adapter_bits": 5}, ValueError, "adapter_bits must be one of"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            adapters.add_residual_adapters(qat, fp, **kwargs)
    with pytest.raises(ValueError, match="not quantized.*quantize_model"):
        adapters.add_residual_adapters(fp, fp)
    other = small_cnn(input_shape=(8, 8, 1), width=4)
    with pytest.raises(ValueError, match="fp_model layer 'conv1'.*kernel"):
        adapters.add_residual_adapters(qat, other)
    model = adapters.add_residual_adapters(qat, fp, rank=1)
    with pytest.raises(ValueError, match="already has CoRa adapter layers"):
        adapters.add_residual_adapters(model, fp)
    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):
        adapters.calibrate(model, data.x_train, steps=0)
    with pytest.raises(ValueError, match="no learnable steps"):
        adapters.calibrate(model, data.x_train, steps=1, train_scales=True)
    inputs = keras.Input((8, 8, 1))
    plain = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs)))
    no_bn = adapters.add_residual_adapters(_qat(plain, 4, data.x_train[:64]), plain, rank=1)
    with pytest.raises(ValueError, match="train_bn=True, but the model has no BatchNormalization"):
        adapters.calibrate(no_bn, data.x_train, steps=1, train_bn=True)
    with pytest.raises(ValueError, match=r"data has shape \(10, 28, 28, 1\)"):
        adapters.calibrate(model, np.zeros((10, 28, 28, 1), np.float32), steps=1)
    with pytest.raises(ValueError, match="has no CoRa adapters"):
        adapters.calibrate(qat, data.x_train, steps=1)


# ---------------------------------------------------------------- calibrate
def test_calibrate_trains_only_adapters_and_improves_kd(digits_fp):
    fp, data = digits_fp
    qat = _qat(fp, 2, data.x_train, learnable_scales=True)
    model = adapters.add_residual_adapters(qat, fp, budget=0.2)
    flags = {layer.name: layer.trainable for layer in model.layers}
    adapter_kernels = {n: _kernel(model.get_layer(n)) for n in model.cora.adapter_layers}
    main_kernels = {n: _kernel(qat.get_layer(f"quant_{n}")) for n in model.adapter_ranks}
    scales = [v.numpy() for v in model.variables if v.name.endswith("kernel_scale:0")]
    assert scales
    norms = [layer.layer for layer in model.layers
             if isinstance(getattr(layer, "layer", None), keras.layers.BatchNormalization)]
    assert norms
    norm_before = [(n.gamma.numpy(), n.beta.numpy(), n.moving_mean.numpy()) for n in norms]
    ds = tf.data.Dataset.from_tensor_slices((data.x_train, data.y_train))  # unbatched, labelled
    history = adapters.calibrate(model, ds, steps=60, verbose=0, train_scales=True,
                                 train_bn=True)
    assert {layer.name: layer.trainable for layer in model.layers} == flags
    assert not history.history["cora_rolled_back"][0]
    assert history.history["cora_kd_after"][0] < history.history["cora_kd_before"][0]
    assert "accuracy" in history.history
    for name, before in adapter_kernels.items():
        assert not np.allclose(_kernel(model.get_layer(name)), before)
    for name, before in main_kernels.items():
        np.testing.assert_array_equal(_kernel(qat.get_layer(f"quant_{name}")), before)
    after = [v.numpy() for v in model.variables if v.name.endswith("kernel_scale:0")]
    assert any(not np.allclose(a, b) for a, b in zip(after, scales))
    # train_bn: gamma and beta move, in inference mode (the moving statistics do not)
    for n, (gamma, beta, mean) in zip(norms, norm_before):
        assert not np.allclose(n.gamma.numpy(), gamma) and not np.allclose(n.beta.numpy(), beta)
        np.testing.assert_array_equal(n.moving_mean.numpy(), mean)


def test_calibrate_takes_a_quarc_coreset_as_its_data(digits_fp):
    """The RES coreset (QuaRC issue) picks the calibration samples; calibrate repeats it."""
    from tfmot_edgeplus.coreset import RESCoreset

    fp, data = digits_fp
    qat = _qat(fp, 2, data.x_train, learnable_scales=True)
    coreset = RESCoreset(data.x_train, data.y_train, fp, fraction=0.1, qat_model=qat,
                         per_class=True, sampling="weighted", seed=0)
    model = adapters.add_residual_adapters(qat, fp, budget=0.2)
    history = adapters.calibrate(model, coreset.dataset(32), steps=3 * coreset.size // 32,
                                 verbose=0)
    assert len(history.history["loss"]) == 1 and not history.history["cora_rolled_back"][0]
    assert history.history["cora_kd_after"][0] < history.history["cora_kd_before"][0]


def test_calibrate_rolls_back_a_step_that_makes_things_worse(digits_fp):
    fp, data = digits_fp
    qat = _qat(fp, 4, data.x_train)
    model = adapters.add_residual_adapters(qat, fp, rank=2)
    calibrate_activation_ranges(model, data.x_train)
    before = [v.numpy() for v in model.variables]
    # judged by the KD loss on the calibration data (no labels), then by held-out top-1
    for held in (None, (data.x_train[-200:], data.y_train[-200:])):
        with pytest.warns(RuntimeWarning, match="KD loss" if held is None else "held-out top-1"):
            history = adapters.calibrate(model, data.x_train[:-200], steps=20,
                                         learning_rate=10.0, verbose=0, validation_data=held)
        assert history.history["cora_rolled_back"] == [True]
        for variable, value in zip(model.variables, before):
            np.testing.assert_array_equal(variable.numpy(), value)
    # before, then after each of 5 parts of 4 steps; the start was the best
    assert len(history.history["heldout_accuracy"]) == 5
    assert history.history["cora_best"][0]["best_epoch"] == 0


# ---------------------------------------------------------------- deployment
@pytest.mark.slow
# W4 (INT4 main layers, int8 adapters, TFLM vs Keras): tests/test_examples.py::test_end_to_end
def test_w2_adapters_deploy_to_tflm_and_beat_ptq(fashion_small, trained_fp_model):
    from tfmot_edgeplus import convert
    from tfmot_edgeplus.conversion import describe_weights
    from tfmot_edgeplus.runtime import TFLMRunner

    data, fp = fashion_small, trained_fp_model
    x_calib = data.x_train[:1600]
    x_val, y_val = data.x_test[:1000], data.y_test[:1000]       # accuracy
    x_agree = data.x_test[1000:2000]                             # TFLM vs Keras
    qat = _qat(fp, 2, x_calib)
    ptq_acc = _accuracy(qat, x_val, y_val)
    model = adapters.add_residual_adapters(qat, fp, budget=0.05)
    assert model.cora.param_fraction <= 0.05
    adapters.calibrate(model, x_calib, steps=250, verbose=0)
    cora_acc = _accuracy(model, x_val, y_val)
    assert cora_acc - ptq_acc > 0.10, (ptq_acc, cora_acc)

    tflite = convert(model, x_calib[:300])
    rows = describe_weights(tflite)
    main = [r for r in rows if "cora" not in r["tensor"]]
    branch = [r for r in rows if "_cora_" in r["tensor"]]
    assert len(branch) == 2 * len(model.adapter_ranks)
    assert all(r["type"] == "INT8" and r["bits"] == 8 and r["storage"] == "dense" for r in branch)
    for r in main:
        assert r["storage"] == "lut" and r["bits"] == 2, r
    keras_logits = model.predict(x_agree, verbose=0)
    keras_pred = np.argmax(keras_logits, -1)
    tflm_pred = np.argmax(TFLMRunner(tflite).predict(x_agree), -1)
    agreement = np.mean(keras_pred == tflm_pred)
    # Measured: 97.3-97.5 % at W2 (plain W2 without adapters: 98.7-99.2 %). The logits
    # differ by ~1 output step (int8 ADD requantisation of main + branch), and a W2 model
    # at ~60 % accuracy has many near-ties; away from ties the two agree.
    top2 = np.sort(keras_logits, -1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 0.3
    assert clear.mean() > 0.5, clear.mean()
    clear_agreement = np.mean((keras_pred == tflm_pred)[clear])
    assert clear_agreement >= 0.99, clear_agreement
    assert agreement >= 0.95, agreement


# ---------------------------------------------------------------- Butterworth rank search
def test_butterworth_gate_is_the_papers_low_pass():
    from tfmot_edgeplus.adapters import ButterworthGate

    gate = ButterworthGate(full_rank=20, order=4, initial_cutoff=0.25)
    weights = gate.weights_per_rank().numpy()
    i = np.arange(1, 21) / 20
    np.testing.assert_allclose(weights, 1 / np.sqrt(1 + (i / 0.25) ** 8), rtol=1e-6)
    assert weights[4] == pytest.approx(2 ** -0.5, rel=1e-6)  # i/R = f_c: half power
    assert np.all(np.diff(weights) < 0)
    np.testing.assert_allclose(gate(tf.ones((2, 20))).numpy(), np.tile(weights, (2, 1)))
    gate.cutoff.assign(-3.0)
    gate.project()
    assert float(gate.cutoff.numpy()) == pytest.approx(1 / 20)
    gate.cutoff.assign(7.0)
    gate.project()
    assert float(gate.cutoff.numpy()) == 1.0


def test_fixed_ranks_ceil_the_cutoffs_and_keep_the_strongest_increments_in_budget():
    from tfmot_edgeplus.adapters.rank_search import _fixed_ranks

    full = {"a": 10, "b": 10}
    costs = {"a": 10, "b": 30}
    cutoffs = {"a": 0.25, "b": 0.45}
    # A generous budget: exactly ceil(R * f_c).
    assert _fixed_ranks(cutoffs, full, costs, 10_000, 4) == ({"a": 3, "b": 5}, 0)
    # 100 parameters: b's first increments weigh most (furthest below its cutoff), then
    # a's; what does not fit is dropped, and a layer may end at rank 0.
    ranks, dropped = _fixed_ranks(cutoffs, full, costs, 100, 4)
    assert sum(costs[n] * r for n, r in ranks.items()) <= 100
    assert ranks == {"a": 1, "b": 3} and dropped == 4
    assert _fixed_ranks(cutoffs, full, costs, 25, 4)[0] == {"a": 2, "b": 0}


def test_search_ranks_meets_the_budget_and_changes_nothing(digits_fp):
    fp, data = digits_fp
    qat = _qat(fp, 2, data.x_train)
    before = [v.numpy().copy() for v in qat.variables]
    search = adapters.search_ranks(qat, fp, data.x_train, budget=0.2, steps=30, verbose=0)
    for old, variable in zip(before, qat.variables):
        np.testing.assert_array_equal(old, variable.numpy())
    assert set(search.ranks) == set(search.cutoffs) == {"conv1", "pw2", "conv3", "logits"}
    assert 0 < search.param_fraction <= 0.2
    assert all(1 / search.full_ranks[n] - 1e-6 <= c <= 1.0 for n, c in search.cutoffs.items())
    assert len(search.history["kd"]) == 30
    model = adapters.add_residual_adapters(qat, fp, rank=search.ranks)
    assert model.cora.param_fraction == pytest.approx(search.param_fraction)


def test_search_ranks_moves_cutoffs_apart_by_their_kd_gradients(digits_fp):
    """Every cutoff starts at 0.2 / sum(w_l) = 0.17, above every floor 1/R, so the fraction
    starts on the budget, where the penalty has no gradient. Under Adam, a penalty moves all
    cutoffs alike; only the per-layer KD gradients can spread them apart."""
    fp, data = digits_fp
    qat = _qat(fp, 2, data.x_train, learnable_scales=True)  # as cora_ptq quantizes
    search = adapters.search_ranks(qat, fp, data.x_train, budget=0.2, steps=60, verbose=0)
    assert search.history["fraction"][0] == pytest.approx(0.2, rel=1e-5)
    cutoffs = np.array(list(search.cutoffs.values()))
    assert np.ptp(cutoffs) > 0.02, search.cutoffs


@pytest.mark.parametrize("kwargs, error, match", [
    ({"steps": 0}, ValueError, r"steps must be >= 1, got 0"),
    ({"budget": 1.5}, ValueError, r"budget must be in \(0, 1\].*1\.5"),
    ({"gamma": -1.0}, ValueError, r"gamma must be a number > 0, got -1\.0"),
    ({"order": 0}, ValueError, r"order must be >= 1, got 0"),
])
def test_search_ranks_rejects_bad_settings(digits_fp, kwargs, error, match):
    fp, data = digits_fp
    with pytest.raises(error, match=match):
        adapters.search_ranks(_qat(fp, 4, data.x_train[:64]), fp, data.x_train[:64], **kwargs)
