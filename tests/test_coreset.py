"""QuaRC coreset selection: score formulas, RES/random coresets, the fit dataset and callback."""

from __future__ import annotations

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import math

import numpy as np
import pytest

from tfmot_edgeplus._compat import keras, tf
from tfmot_edgeplus.coreset import (
    RandomCoreset,
    RESCoreset,
    cosine_weight,
    ds_scores,
    evs_scores,
    predict_logits,
    res_scores,
    selection_scores,
)

# ---------------------------------------------------------------------------------------
# scores


def test_res_is_kl_of_hand_computed_distributions():
    p_q = np.array([[0.5, 0.5], [0.9, 0.1]])
    p_f = np.array([[0.25, 0.75], [0.9, 0.1]])
    got = res_scores(np.log(p_q), np.log(p_f))
    expected0 = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    np.testing.assert_allclose(got, [expected0, 0.0], atol=1e-12)


def test_res_nonnegative_shift_invariant_and_stable(rng):
    q = rng.normal(size=(200, 7)) * 5
    f = rng.normal(size=(200, 7)) * 5
    d = res_scores(q, f)
    assert d.shape == (200,) and np.all(d >= 0)
    np.testing.assert_allclose(res_scores(q + 3.0, f - 11.0), d, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(res_scores(q, q), np.zeros(200))
    # Huge logits: no overflow, KL of near-one-hot distributions stays finite.
    big = res_scores(np.array([[1000.0, 0.0]]), np.array([[0.0, 1000.0]]))
    assert np.isfinite(big).all() and big[0] == pytest.approx(1000.0)


def test_evs_and_ds_hand_values():
    logits = np.log(np.array([[0.5, 0.5], [0.2, 0.8]]))
    np.testing.assert_allclose(
        evs_scores(logits, np.array([0, 1])), [math.sqrt(0.5), math.sqrt(0.08)]
    )
    teacher = np.log(np.array([[1.0 - 1e-12, 1e-12], [0.2, 0.8]]))
    np.testing.assert_allclose(ds_scores(logits, teacher), [math.sqrt(0.5), 0.0], atol=1e-9)


def test_cosine_schedule_endpoints_and_selection_score():
    assert cosine_weight(0, 10) == 1.0
    assert cosine_weight(10, 10) == pytest.approx(0.0, abs=1e-15)
    assert cosine_weight(5, 10) == pytest.approx(math.cos(math.pi / 4))
    evs, ds, res = np.array([1.0, 0.2]), np.array([0.0, 0.9]), np.array([0.1, 0.3])
    np.testing.assert_allclose(selection_scores(evs, ds, res, 0, 10), evs + res)
    np.testing.assert_allclose(selection_scores(evs, ds, res, 10, 10), ds + res, atol=1e-15)
    a = math.cos(math.pi / 4)
    np.testing.assert_allclose(selection_scores(evs, ds, res, 5, 10), a * evs + (1 - a) * ds + res)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: res_scores(np.zeros((3, 4)), np.zeros((3, 5))), "p_q_logits has shape"),
        (lambda: res_scores(np.zeros(4), np.zeros(4)), "p_q_logits must be logits of shape"),
        (lambda: res_scores(np.array([[0.0, np.nan]]), np.zeros((1, 2))), "non-finite"),
        (lambda: evs_scores(np.zeros((2, 3)), np.array([0, 3])), r"outside \[0, 3\)"),
        (lambda: evs_scores(np.zeros((2, 3)), np.array([0])), "1-D array of 2"),
        (lambda: ds_scores(np.zeros((2, 3)), np.full((2, 3), np.inf)), "p_t_logits has non-finite"),
        (lambda: cosine_weight(11, 10), "epoch must be in"),
        (lambda: cosine_weight(0, 0), "total_epochs must be > 0"),
        (lambda: selection_scores(np.ones(3), np.ones(2), np.ones(3), 0, 1), "d_ds has 2"),
    ],
)
def test_score_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---------------------------------------------------------------------------------------
# helpers: models whose logits are known in closed form


def _linear_model(weight: np.ndarray, name: str):
    """logits = x @ weight (no bias), a Functional model."""
    inputs = keras.Input((weight.shape[0],))
    layer = keras.layers.Dense(weight.shape[1], use_bias=False, name="dense")
    model = keras.Model(inputs, layer(inputs), name=name)
    layer.set_weights([weight.astype(np.float32)])
    return model


@pytest.fixture(scope="module")
def digits_data():
    from tfmot_edgeplus import datasets

    return datasets.digits()


def _tiny_digits_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.Flatten(name="flat")(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    model = keras.Model(inputs, outputs, name="tiny")
    model.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        ["accuracy"],
    )
    return model


@pytest.fixture(scope="module")
def fp_digits(digits_data):
    model = _tiny_digits_model()
    model.fit(digits_data.x_train, digits_data.y_train, epochs=3, batch_size=64, verbose=0)
    return model


def _qat(fp):
    from tfmot_edgeplus import EdgePlusQuantizeScheme, quantize_model

    qat = quantize_model(fp, EdgePlusQuantizeScheme(weight_bits=2, activation_bits=8))
    qat.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        ["accuracy"],
    )
    return qat


# ---------------------------------------------------------------------------------------
# selection


def test_predict_logits_is_batched_and_matches_predict(fp_digits, digits_data):
    x = digits_data.x_test
    (got,) = predict_logits([fp_digits], x, batch_size=100)  # 449 = 4 full batches + 49
    np.testing.assert_allclose(got, fp_digits.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    ds = tf.data.Dataset.from_tensor_slices((x, digits_data.y_test)).batch(64)
    np.testing.assert_allclose(predict_logits(fp_digits, ds)[0], got, rtol=1e-5, atol=1e-5)


def test_res_coreset_takes_top_fraction_by_selection_score(rng):
    n, m = 300, 5
    x = rng.normal(size=(n, m)).astype(np.float32)
    y = rng.integers(0, m, size=n)
    q_w = np.eye(m) * 3.0
    f_w = np.eye(m) + rng.normal(size=(m, m)) * 0.5
    t_w = rng.normal(size=(m, m))
    qat, fp, teacher = _linear_model(q_w, "q"), _linear_model(f_w, "f"), _linear_model(t_w, "t")
    cs = RESCoreset(x, y, fp, fraction=0.1, qat_model=qat, teacher=teacher, batch_size=64)
    p_q, p_f, p_t = x @ q_w, x @ f_w, x @ t_w
    d_s = selection_scores(evs_scores(p_q, y), ds_scores(p_q, p_t), res_scores(p_q, p_f), 0, 1)
    expected = np.sort(np.argsort(-d_s)[:30])
    assert cs.size == 30
    np.testing.assert_array_equal(cs.indices, expected)
    assert d_s[cs.indices].min() >= np.delete(d_s, cs.indices).max() - 1e-6
    np.testing.assert_allclose(
        cs.stats()["coreset_mean_res"], res_scores(p_q, p_f)[expected].mean(), rtol=1e-4
    )
    # At t = T the schedule uses DS instead of EVS.
    cs.select(qat, epoch=4, total_epochs=4)
    d_s_end = selection_scores(evs_scores(p_q, y), ds_scores(p_q, p_t), res_scores(p_q, p_f), 4, 4)
    np.testing.assert_array_equal(cs.indices, np.sort(np.argsort(-d_s_end)[:30]))


def test_per_class_keeps_class_shares_and_top_scores_within_each(rng):
    n, m = 400, 4
    x = rng.normal(size=(n, m)).astype(np.float32)
    y = np.repeat(np.arange(m), [40, 60, 100, 200])
    qat, fp = _linear_model(np.eye(m) * 4.0, "q"), _linear_model(rng.normal(size=(m, m)), "f")
    cs = RESCoreset(x, y, fp, fraction=0.1, qat_model=qat, per_class=True)
    np.testing.assert_array_equal(np.bincount(y[cs.indices], minlength=m), [4, 6, 10, 20])
    d_s = cs.last_scores["d_s"]
    for c in range(m):
        members = np.nonzero(y == c)[0]
        chosen = np.intersect1d(members, cs.indices)
        assert (
            d_s[chosen].min()
            >= np.delete(d_s, chosen)[y[np.delete(np.arange(n), chosen)] == c].max()
        )
    with pytest.raises(TypeError, match="per_class must be True or False, got 'yes'"):
        RESCoreset(x, y, fp, fraction=0.1, per_class="yes")


def test_stratified_random_has_the_res_quotas_and_an_empty_class_is_an_error(rng):
    n, m = 400, 4
    x = rng.normal(size=(n, m)).astype(np.float32)
    y = np.repeat(np.arange(m), [12, 68, 120, 200])
    qat, fp = _linear_model(np.eye(m) * 4.0, "q"), _linear_model(rng.normal(size=(m, m)), "f")
    for fraction in (0.1, 0.25):
        res = RESCoreset(x, y, fp, fraction=fraction, qat_model=qat, per_class=True)
        a, b = (RandomCoreset(x, y, fraction=fraction, seed=s, stratified=True) for s in (0, 1))
        quotas = np.bincount(y[res.indices], minlength=m)
        for cs in (a, b):
            np.testing.assert_array_equal(np.bincount(y[cs.indices], minlength=m), quotas)
            assert len(np.unique(cs.indices)) == cs.size == res.size
        assert not np.array_equal(a.indices, b.indices)  # uniform within each class, seeded
    # 1 % of 400 is 4 samples; class 0 (12 of 400) gets none: refused, naming the fix.
    fix = r"fraction=0.01 of 400 samples \(4\) leaves class 0 \(12 samples\).*fraction >= 0.085"
    with pytest.raises(ValueError, match=fix):
        RandomCoreset(x, y, fraction=0.01, stratified=True)
    with pytest.raises(ValueError, match=fix):
        RESCoreset(x, y, fp, fraction=0.01, qat_model=qat, per_class=True)
    RandomCoreset(x, y, fraction=0.085, stratified=True)  # the fraction named is enough
    with pytest.raises(TypeError, match="stratified must be True or False, got 1"):
        RandomCoreset(x, y, fraction=0.1, stratified=1)


def test_weighted_sampling_keeps_quotas_is_seeded_and_favours_high_scores(rng):
    n, m = 2000, 4
    x = rng.normal(size=(n, m)).astype(np.float32)
    y = np.repeat(np.arange(m), [200, 300, 500, 1000])
    qat, fp = _linear_model(np.eye(m) * 4.0, "q"), _linear_model(rng.normal(size=(m, m)), "f")

    def make(seed):
        return RESCoreset(x, y, fp, fraction=0.1, qat_model=qat, per_class=True,
                          sampling="weighted", seed=seed)

    a, b, c = make(0), make(0), make(1)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert not np.array_equal(a.indices, c.indices)
    np.testing.assert_array_equal(np.bincount(y[a.indices], minlength=m), [20, 30, 50, 100])
    d_s = a.last_scores["d_s"]
    top = RESCoreset(x, y, fp, fraction=0.1, qat_model=qat, per_class=True)
    # Between random (the mean score) and top-k (the largest scores).
    assert d_s.mean() < d_s[a.indices].mean() < d_s[top.indices].mean()
    # Not the top-k: some typical samples stay in.
    assert len(np.setdiff1d(a.indices, top.indices)) > 20
    with pytest.raises(ValueError, match="sampling must be one of 'top', 'weighted', got 'best'"):
        RESCoreset(x, y, fp, fraction=0.1, sampling="best")


def test_scoring_an_uncalibrated_qat_model_warns_with_the_fix(fp_digits, digits_data):
    from tfmot_edgeplus.quantization import calibrate_activation_ranges

    x, y = digits_data.x_train, digits_data.y_train
    qat = _qat(fp_digits)
    with pytest.warns(UserWarning, match="activation ranges are still the placeholders.*"
                      "calibrate_activation_ranges"):
        RESCoreset(x, y, fp_digits, fraction=0.1, qat_model=qat)
    calibrate_activation_ranges(qat, x)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RESCoreset(x, y, fp_digits, fraction=0.1, qat_model=qat, per_class=True)


def test_dataset_content_follows_selection_without_rebuilding(rng):
    x = np.arange(50, dtype=np.float32)[:, None]
    y = np.arange(50) % 5
    cs = RandomCoreset(x, y, fraction=0.2, seed=0)
    ds = cs.dataset(4)
    assert ds.cardinality().numpy() == 3  # 10 samples: 4 + 4 + 2

    def content():
        got = [(xb[:, 0].astype(int), yb) for xb, yb in ds.as_numpy_iterator()]
        for xb, yb in got:
            np.testing.assert_array_equal(xb % 5, yb)  # x and y stay paired
        return np.sort(np.concatenate([xb for xb, _ in got]))

    np.testing.assert_array_equal(content(), cs.indices)
    old = cs.indices
    cs.select()
    assert not np.array_equal(old, cs.indices)
    np.testing.assert_array_equal(content(), cs.indices)
    dropped = cs.dataset(4, drop_remainder=True)
    assert dropped.cardinality().numpy() == 2
    assert sum(len(b[1]) for b in dropped.as_numpy_iterator()) == 8
    with pytest.raises(ValueError, match="leaves no batch at all"):
        cs.dataset(16, drop_remainder=True)


def test_numpy_and_tf_data_inputs_select_the_same(fp_digits, digits_data):
    x, y = digits_data.x_train, digits_data.y_train
    qat = _qat(fp_digits)
    ref = RESCoreset(x, y, fp_digits, fraction=0.05, qat_model=qat)
    per_sample = tf.data.Dataset.from_tensor_slices((x, y))
    batched = per_sample.batch(100)
    for ds in (per_sample, batched):
        cs = RESCoreset(dataset=ds, fp_model=fp_digits, fraction=0.05, qat_model=qat)
        np.testing.assert_array_equal(cs.indices, ref.indices)
        np.testing.assert_array_equal(cs.x, x)


def test_callback_reselects_every_r_epochs_and_logs(fp_digits, digits_data):
    qat = _qat(fp_digits)
    cs = RESCoreset(
        digits_data.x_train, digits_data.y_train, fp_digits, fraction=0.1, reselect_every=2
    )
    assert cs.indices is None  # no qat_model: the callback selects in on_train_begin
    history = qat.fit(cs.dataset(32), epochs=5, callbacks=[cs.callback()], verbose=0).history
    for key in ("coreset_mean_res", "coreset_size", "coreset_class_entropy", "coreset_swapped"):
        assert len(history[key]) == 5, key
    assert history["coreset_size"] == [135.0] * 5
    swapped = history["coreset_swapped"]
    # Re-selected at the ends of epochs 2 and 4 (1-based); never after the last epoch.
    assert swapped[1] > 0 and swapped[3] > 0
    assert swapped[0] == swapped[2] == swapped[4] == 0.0
    assert cs.selections == 3
    assert all(0.0 <= h <= math.log(10) + 1e-9 for h in history["coreset_class_entropy"])
    assert all(r >= 0 for r in history["coreset_mean_res"])
    assert history["coreset_mean_res"][1] != history["coreset_mean_res"][0]
    # The same callback serves a second fit (state reset in on_train_begin).
    callback = cs.callback()
    for _ in range(2):
        again = qat.fit(cs.dataset(32), epochs=3, callbacks=[callback], verbose=0).history
        assert again["coreset_swapped"][1] > 0 and again["coreset_swapped"][2] == 0.0
    assert cs.selections == 5


class _RecordingModel(keras.Model):
    """Functional model that counts, per sample id (last input feature), the samples fit sees."""

    def __init__(self, num_samples, **kwargs):
        super().__init__(**kwargs)
        self.seen = tf.Variable(tf.zeros([num_samples], tf.int32), trainable=False)

    def train_step(self, data):
        x, _ = data
        ids = tf.cast(x[:, -1], tf.int32)
        self.seen.assign(tf.tensor_scatter_nd_add(self.seen, ids[:, None], tf.ones_like(ids)))
        return super().train_step(data)


def _recording_model(n, features, classes):
    keras.utils.set_random_seed(1)
    inputs = keras.Input((features + 1,))
    feats = keras.layers.Lambda(lambda t: t[:, :-1], name="drop_id")(inputs)
    outputs = keras.layers.Dense(classes, name="logits")(feats)
    model = _RecordingModel(n, inputs=inputs, outputs=outputs)
    model.compile(
        keras.optimizers.SGD(0.5), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    return model


class _PerEpochSeen(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seen, self.selected = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.model.seen.assign(tf.zeros_like(self.model.seen))
        self.selected.append(set(self._coreset.indices.tolist()))

    def on_epoch_end(self, epoch, logs=None):
        counts = self.model.seen.numpy()
        assert counts.max() == 1, "a sample was seen twice in one epoch"
        self.seen.append(set(np.nonzero(counts)[0].tolist()))


@pytest.mark.parametrize("kind", ["res", "random"])
def test_fit_trains_on_the_swapped_subset(digits_data, kind):
    x = digits_data.x_train.reshape(len(digits_data.x_train), -1)
    n = len(x)
    x = np.concatenate([x, np.arange(n, dtype=np.float32)[:, None]], axis=1)
    y = digits_data.y_train
    model = _recording_model(n, 64, 10)
    fp = _recording_model(n, 64, 10)
    fp.fit(x, y, epochs=2, batch_size=64, verbose=0)
    if kind == "res":
        cs = RESCoreset(x, y, fp, fraction=0.1, reselect_every=1)
    else:
        cs = RandomCoreset(x, y, fraction=0.1, seed=3, reselect_every=1)
    probe = _PerEpochSeen()
    probe._coreset = cs
    # The coreset's callback comes first: it selects in on_train_begin before the probe reads.
    history = model.fit(
        cs.dataset(16), epochs=4, callbacks=[cs.callback(), probe], verbose=0
    ).history
    assert len(probe.seen) == 4
    for seen, selected in zip(probe.seen, probe.selected):
        assert seen == selected and len(seen) == cs.size
    assert any(a != b for a, b in zip(probe.selected, probe.selected[1:])), "never swapped"
    assert max(history["coreset_swapped"]) > 0


def test_random_coreset_seeded_and_redrawn(digits_data):
    x, y = digits_data.x_train, digits_data.y_train
    a = RandomCoreset(x, y, fraction=0.2, seed=7)
    b = RandomCoreset(x, y, fraction=0.2, seed=7)
    c = RandomCoreset(x, y, fraction=0.2, seed=8)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert not np.array_equal(a.indices, c.indices)
    assert a.size == round(0.2 * len(x)) == len(np.unique(a.indices))
    first = a.indices
    a.select()
    assert not np.array_equal(first, a.indices)
    stats = a.stats()
    assert stats["coreset_size"] == a.size and math.isnan(stats["coreset_mean_res"])
    assert 2.0 < stats["coreset_class_entropy"] <= math.log(10) + 1e-9  # near balanced
    full = RandomCoreset(x, y, fraction=1.0)
    np.testing.assert_array_equal(full.indices, np.arange(len(x)))


def test_random_coreset_fit_with_fp_model_logs_res(fp_digits, digits_data):
    qat = _qat(fp_digits)
    cs = RandomCoreset(
        digits_data.x_train,
        digits_data.y_train,
        fraction=0.1,
        seed=0,
        reselect_every=1,
        fp_model=fp_digits,
    )
    assert math.isnan(cs.stats()["coreset_mean_res"])  # drawn at construction, no model yet
    history = qat.fit(cs.dataset(32), epochs=3, callbacks=[cs.callback()], verbose=0).history
    swapped = history["coreset_swapped"]
    # A fresh random 10 % shares about 10 % with the previous one; nothing after the last epoch.
    assert swapped[0] > 0.5 and swapped[1] > 0.5 and swapped[2] == 0.0
    assert cs.selections == 3
    mean_res = np.array(history["coreset_mean_res"])
    assert np.isfinite(mean_res).all() and (mean_res >= 0).all()


def test_mirrored_strategy_fit(fp_digits, digits_data):
    from tfmot_edgeplus import EdgePlusQuantizeScheme, quantize_model

    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        fp = _tiny_digits_model()
        fp.set_weights(fp_digits.get_weights())
        qat = quantize_model(fp, EdgePlusQuantizeScheme(weight_bits=4, activation_bits=8))
        qat.compile(
            keras.optimizers.Adam(1e-2),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            ["accuracy"],
        )
    cs = RESCoreset(digits_data.x_train, digits_data.y_train, fp, fraction=0.2, reselect_every=1)
    history = qat.fit(cs.dataset(32), epochs=3, callbacks=[cs.callback()], verbose=0).history
    assert history["coreset_size"] == [float(cs.size)] * 3
    assert history["coreset_swapped"][0] > 0 and history["coreset_swapped"][2] == 0.0
    assert cs.selections == 3
    assert np.isfinite(history["loss"]).all()


_TWO_REPLICAS = """
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np
from tfmot_edgeplus._compat import tf, keras
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tfmot_edgeplus import datasets, quantize_model, EdgePlusQuantizeScheme
from tfmot_edgeplus.coreset import RESCoreset
d = datasets.digits()
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert strategy.num_replicas_in_sync == 2
keras.utils.set_random_seed(0)
def build():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Flatten()(keras.layers.MaxPooling2D()(x))
    return keras.Model(inputs, keras.layers.Dense(10)(x))
loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
with strategy.scope():
    fp = build()
    fp.compile(keras.optimizers.Adam(1e-2), loss)
fp.fit(d.x_train, d.y_train, epochs=2, batch_size=64, verbose=0)
with strategy.scope():
    qat = quantize_model(fp, EdgePlusQuantizeScheme(weight_bits=4, activation_bits=8))
    qat.compile(keras.optimizers.Adam(1e-2), loss)
cs = RESCoreset(d.x_train, d.y_train, fp, fraction=0.2, reselect_every=1)
h = qat.fit(cs.dataset(30), epochs=3, callbacks=[cs.callback()], verbose=0).history
assert h["coreset_size"] == [270.0] * 3, h
assert h["coreset_swapped"][0] > 0 and h["coreset_swapped"][2] == 0.0, h
assert np.isfinite(h["loss"]).all(), h
print("TWO_REPLICAS_OK", cs.selections)
"""


def test_two_replica_mirrored_strategy_fit_in_subprocess():
    """Two logical CPU replicas (must be configured before TF starts: a fresh process)."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _TWO_REPLICAS],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert proc.returncode == 0 and "TWO_REPLICAS_OK 3" in proc.stdout, proc.stderr[-3000:]


# ---------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"fraction": 0.0}, r"fraction must be in \(0, 1\], got 0.0"),
        ({"fraction": 1.5}, r"fraction must be in \(0, 1\], got 1.5"),
        ({"fraction": True}, "fraction must be in"),
        ({"fraction": 1e-5}, "empty selection"),
        ({"reselect_every": 0}, "reselect_every must be an int >= 1, got 0"),
        ({"reselect_every": 1.5}, "reselect_every must be an int >= 1, got 1.5"),
        ({"batch_size": 0}, "batch_size must be an int >= 1"),
    ],
)
@pytest.mark.parametrize("cls", [RESCoreset, RandomCoreset])
def test_bad_arguments(cls, kwargs, match):
    x = np.zeros((100, 4), np.float32)
    y = np.arange(100) % 4
    extra = {"fp_model": _linear_model(np.eye(4), "f")} if cls is RESCoreset else {}
    with pytest.raises(ValueError, match=match):
        cls(x, y, **extra, **kwargs)


def test_bad_data():
    fp = _linear_model(np.eye(4), "f")
    x = np.zeros((10, 4), np.float32)
    with pytest.raises(ValueError, match="y must hold integer class indices, got dtype float"):
        RandomCoreset(x, np.full(10, 0.5), fraction=0.5)
    float_labels = RandomCoreset(x, np.arange(10, dtype=np.float32), fraction=0.5)
    assert float_labels.y.dtype == np.int64
    with pytest.raises(ValueError, match="x has 10 samples but y has 9 labels"):
        RESCoreset(x, np.zeros(9, int), fp, fraction=0.5)
    with pytest.raises(ValueError, match="not both"):
        RandomCoreset(
            x, np.zeros(10, int), dataset=tf.data.Dataset.from_tensor_slices((x, x[:, 0]))
        )
    with pytest.raises(ValueError, match="infinite"):
        RandomCoreset(dataset=tf.data.Dataset.from_tensor_slices((x, np.zeros(10, int))).repeat())
    with pytest.raises(TypeError, match="fp_model must be a tf_keras Model"):
        RESCoreset(x, np.zeros(10, int), "model", fraction=0.5)
    with pytest.raises(ValueError, match="3 classes but fp_model"):
        RESCoreset(
            x, np.zeros(10, int), fp, fraction=0.5, qat_model=_linear_model(np.ones((4, 3)), "q")
        )


def test_nan_outputs_while_scoring_raise():
    x = np.ones((20, 4), np.float32)
    nan_model = _linear_model(np.full((4, 4), np.nan), "nan")
    with pytest.raises(ValueError, match="model 'nan' gave non-finite .* for 20 of 20 samples"):
        RESCoreset(
            x, np.arange(20) % 4, _linear_model(np.eye(4), "f"), fraction=0.5, qat_model=nan_model
        )


def test_warnings_and_missing_selection():
    x = np.zeros((100, 4), np.float32)
    y = np.arange(100) % 10
    with pytest.warns(UserWarning, match="fewer than the 10 classes"):
        cs = RandomCoreset(x, y, fraction=0.05)
    with pytest.warns(UserWarning, match="fewer than one batch of 32"):
        cs.dataset(32)
    with pytest.warns(UserWarning, match=r"misses \d+ of the 10 classes"):
        cs.select()
    lazy = RESCoreset(x[:, :4], y % 4, _linear_model(np.eye(4), "f"), fraction=0.5)
    with pytest.raises(Exception, match="no selection yet"):
        next(iter(lazy.dataset(8)))
