"""QCore quantization-miss tracker: fake quantization, miss counting, the fit callback,
sampling the core, state round trip and input errors."""

from __future__ import annotations

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import numpy as np
import pytest

from tfmot_edgeplus._compat import keras, tf
from tfmot_edgeplus.coreset import FP_BITS, QuantMissTracker, count_misses, fake_quantize
from tfmot_edgeplus.coreset.quant_miss import _weight_axes

BITS = (2, 3, 4, 5, 8)


def _mlp(input_shape=(8, 8, 1), classes=10, seed=0):
    tf.keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(classes),
        ]
    )
    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


@pytest.fixture(scope="module")
def digits():
    from tfmot_edgeplus import datasets

    return datasets.digits(seed=0)


@pytest.fixture(scope="module")
def fitted(digits):
    """6 epochs with every=2: checks after epochs 1, 3 and 5."""
    model = _mlp()
    tracker = QuantMissTracker(digits.x_train, digits.y_train, bits=BITS, every=2)
    history = model.fit(
        digits.x_train, digits.y_train, epochs=6, batch_size=64, verbose=0, callbacks=[tracker]
    )
    return model, tracker, history


# ---------------------------------------------------------------------------------------
# fake quantization


def test_fake_quantize_8_bits_close_and_at_most_255_levels_per_channel(rng):
    w = rng.normal(0, 0.3, (64, 12)).astype(np.float32)
    w[:, 3] *= 20.0  # channels of very different ranges: per-channel scales matter
    q = fake_quantize(w, 8)
    assert q.dtype == np.float32 and q.shape == w.shape
    scale = np.abs(w).max(axis=0) / 127.0
    assert np.all(np.abs(q - w) <= scale / 2 * (1 + 1e-5))
    for c in range(w.shape[1]):
        levels = np.round(q[:, c] / scale[c])
        np.testing.assert_allclose(q[:, c], levels * scale[c], rtol=1e-5, atol=1e-7)
        assert len(np.unique(levels)) <= 255 and np.abs(levels).max() == 127


def test_fake_quantize_2_bits_is_ternary_per_channel(rng):
    w = rng.normal(0, 1.0, (3, 3, 4, 6)).astype(np.float32)  # Conv2D kernel (h, w, in, out)
    q = fake_quantize(w, 2)
    for c in range(6):
        s = np.abs(w[..., c]).max()
        assert set(np.unique(q[..., c]).tolist()) <= {-s, 0.0, s}
    # Depthwise kernel (h, w, c, m): one scale per (c, m) pair.
    dw = rng.normal(0, 1.0, (3, 3, 4, 2)).astype(np.float32)
    dq = fake_quantize(dw, 2, channel_axes=(-2, -1))
    for c in range(4):
        for m in range(2):
            s = np.abs(dw[:, :, c, m]).max()
            assert set(np.unique(dq[:, :, c, m]).tolist()) <= {-s, 0.0, s}


def test_fake_quantize_per_tensor_and_zero_channel():
    w = np.array([[0.0, 1.0], [0.0, -0.26]], np.float32)
    np.testing.assert_array_equal(fake_quantize(w, 2), [[0.0, 1.0], [0.0, 0.0]])
    # Per tensor at 3 bits: scale 1/3, levels -3..3.
    np.testing.assert_allclose(fake_quantize(w, 3, channel_axes=()), [[0, 1], [0, -1 / 3]])


def test_weight_axes_follow_the_layer_kind():
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.DepthwiseConv2D(3, depth_multiplier=2),
            keras.layers.BatchNormalization(),
            keras.layers.SeparableConv2D(4, 3),
            keras.layers.Conv2DTranspose(2, 3),
            keras.layers.Flatten(),
            keras.layers.Dense(5),
        ]
    )
    names = [w.name for w in model.weights]
    assert _weight_axes(model) == [
        (-2, -1),  # depthwise kernel (h, w, c, m): per (c, m)
        None,  # its bias
        None,
        None,
        None,
        None,  # BatchNorm gamma, beta, moving mean and variance
        (-2, -1),  # separable: depthwise kernel
        (-1,),  # separable: pointwise kernel
        None,
        (-2,),  # transpose kernel (h, w, out, in)
        None,
        (-1,),  # dense kernel
        None,
    ], names


# ---------------------------------------------------------------------------------------
# counting


def test_count_misses_hand_sequence():
    history = [
        [1, 1, 0, 0, 1, 0],
        [0, 1, 0, 1, 1, 0],
        [1, 0, 0, 1, 0, 0],
        [0, 0, 0, 1, 1, 0],
    ]
    # s0: 1->0, 1->0: two misses. s1: one. s2, s5: never correct -> 4 (checks).
    # s3: 0->1 only: none. s4: 1->0 then 0->1: one.
    got = count_misses(np.array(history, bool))
    np.testing.assert_array_equal(got, [2, 1, 4, 0, 1, 4])
    assert got.dtype == np.int64
    # Never-correct is the maximum: a sample is forgotten at most floor(checks / 2) times.
    assert got.max() == len(history) > (len(history) // 2)
    np.testing.assert_array_equal(count_misses([[True, False]]), [0, 1])
    with pytest.raises(ValueError, match=r"shape \(0,\)"):
        count_misses([])


def test_check_counts_equal_count_misses_of_the_correctness_history(digits):
    model = _mlp()
    tracker = QuantMissTracker(digits.x_train, digits.y_train, bits=(2, 8), every=1)
    seen = {b: [] for b in tracker.tracked_bits}
    for epoch in range(4):
        tracker.check(model, epoch=epoch)
        for b, v in tracker.last_correct.items():
            seen[b].append(v)
        model.fit(digits.x_train, digits.y_train, epochs=1, batch_size=128, verbose=0)
    for b in tracker.tracked_bits:
        np.testing.assert_array_equal(tracker.counts_per_bits[b], count_misses(seen[b]))
    np.testing.assert_array_equal(tracker.counts, sum(count_misses(s) for s in seen.values()))
    assert [h["epoch"] for h in tracker.history] == [0, 1, 2, 3]


def test_quantized_copies_hold_fake_quantized_kernels_and_float_biases(digits):
    model = _mlp()
    tracker = QuantMissTracker(digits.x_train[:50], digits.y_train[:50], bits=(2, 8))
    tracker.check(model)
    weights = model.get_weights()  # Dense kernel, bias, Dense kernel, bias
    for b in (2, 8):
        got = tracker._copies_of(model).clones[b].get_weights()
        for i, (w, g) in enumerate(zip(weights, got)):
            if i % 2 == 0:
                np.testing.assert_array_equal(g, fake_quantize(w, b))
            else:
                np.testing.assert_array_equal(g, w)
    # The FP entry is the model itself: its accuracy is the model's.
    pred = model.predict(digits.x_train[:50], verbose=0).argmax(1)
    assert tracker.history[0]["acc"][FP_BITS] == pytest.approx(np.mean(pred == digits.y_train[:50]))


# ---------------------------------------------------------------------------------------
# the fit callback


def test_fit_checks_every_2_epochs_and_logs_into_history(fitted, digits):
    _, tracker, history = fitted
    assert tracker.checks == 3
    assert [h["epoch"] for h in tracker.history] == [1, 3, 5]
    assert tracker.counts.shape == (len(digits.y_train),)
    assert tracker.counts.dtype == np.int64
    assert set(tracker.counts_per_bits) == {*BITS, FP_BITS}
    np.testing.assert_array_equal(tracker.counts, sum(tracker.counts_per_bits.values()))
    assert tracker.counts.max() <= 3 * len(tracker.tracked_bits)
    h = history.history
    keys = ["qcore_checks", "qcore_mean_misses"] + [f"qcore_acc_w{b}" for b in (*BITS, 32)]
    for key in keys:
        assert key in h and len(h[key]) == 6, key
    assert h["qcore_checks"] == [0.0, 1.0, 1.0, 2.0, 2.0, 3.0]
    acc8 = np.array(h["qcore_acc_w8"])
    assert np.isnan(acc8[[0, 2, 4]]).all() and np.isfinite(acc8[[1, 3, 5]]).all()
    assert acc8[5] == tracker.history[-1]["acc"][8]
    assert h["qcore_mean_misses"][-1] == pytest.approx(tracker.counts.mean())
    # At 2 bits the copy is worse than at 8 bits (a tiny trained MLP).
    assert tracker.history[-1]["acc"][2] < tracker.history[-1]["acc"][8]


def test_last_epoch_is_checked_and_counts_persist_across_fits(digits):
    x, y = digits.x_train[:300], digits.y_train[:300]
    model = _mlp()
    tracker = QuantMissTracker(x, y, bits=(4,), every=2, batch_size=128)
    model.fit(x, y, epochs=5, batch_size=64, verbose=0, callbacks=[tracker])
    assert [h["epoch"] for h in tracker.history] == [1, 3, 4]  # 4 is the last epoch
    before = tracker.state()
    model.fit(x, y, epochs=1, batch_size=64, verbose=0, callbacks=[tracker])
    assert tracker.checks == 4 and tracker.history[-1]["epoch"] == 0
    # The first check of the second fit is compared with the last check of the first.
    for b in tracker.tracked_bits:
        now = tracker.last_correct[b]
        misses = before["misses"][b] + (before["last_correct"][b] & ~now)
        ever = before["ever_correct"][b] | now
        np.testing.assert_array_equal(tracker.counts_per_bits[b], np.where(ever, misses, 4))
    tracker.reset()
    assert tracker.checks == 0 and tracker.history == [] and tracker.last_correct == {}
    assert not tracker.counts.any()


# ---------------------------------------------------------------------------------------
# sampling


def test_sample_reproducible_distinct_and_seed_dependent(fitted, digits):
    _, tracker, _ = fitted
    a = tracker.sample(20)
    assert a.shape == (20,) and len(np.unique(a)) == 20
    assert np.all(np.diff(a) > 0) and a.min() >= 0 and a.max() < len(digits.y_train)
    np.testing.assert_array_equal(a, tracker.sample(20))
    np.testing.assert_array_equal(a, tracker.sample(20, seed=0))
    assert not np.array_equal(a, tracker.sample(20, seed=1))
    assert np.all(tracker.counts[a] > 0)
    xc, yc = tracker.core(20)
    np.testing.assert_array_equal(xc, digits.x_train[a])
    np.testing.assert_array_equal(yc, digits.y_train[a])


def test_sample_of_all_nonzero_returns_exactly_them_and_fills_from_zeros(fitted):
    _, tracker, _ = fitted
    positive = np.flatnonzero(tracker.counts > 0)
    zeros = np.flatnonzero(tracker.counts == 0)
    assert 0 < len(positive) and len(zeros) >= 5
    np.testing.assert_array_equal(tracker.sample(len(positive)), positive)
    more = tracker.sample(len(positive) + 5, seed=3)
    assert np.isin(positive, more).all()
    assert np.isin(np.setdiff1d(more, positive), zeros).all()


def _tracker_with_counts(counts_fp):
    """A tracker over len(counts_fp) samples whose FP-key misses are ``counts_fp`` and
    whose one quantized bit-width was always correct (count 0)."""
    n = len(counts_fp)
    tracker = QuantMissTracker(np.zeros((n, 2), np.float32), np.zeros(n, np.int64), bits=(8,))
    state = tracker.state()
    state["checks"] = 20
    state["misses"] = {8: np.zeros(n, np.int64), FP_BITS: np.asarray(counts_fp, np.int64)}
    state["ever_correct"] = {8: np.ones(n, bool), FP_BITS: np.ones(n, bool)}
    state["last_correct"] = {8: np.ones(n, bool), FP_BITS: np.ones(n, bool)}
    tracker.load_state(state)
    return tracker


def test_sample_probability_follows_counts():
    tracker = _tracker_with_counts([0, 1, 3, 6])
    np.testing.assert_array_equal(tracker.counts, [0, 1, 3, 6])
    draws = np.concatenate([tracker.sample(1, seed=s) for s in range(3000)])
    freq = np.bincount(draws, minlength=4) / len(draws)
    np.testing.assert_allclose(freq, [0.0, 0.1, 0.3, 0.6], atol=0.03)
    # Two distinct items: the two heaviest come together most often.
    pairs = [tuple(tracker.sample(2, seed=s)) for s in range(1000)]
    assert max(set(pairs), key=pairs.count) == (2, 3)
    assert all(0 not in p for p in pairs)


# ---------------------------------------------------------------------------------------
# state, data inputs


def test_state_round_trip(fitted, digits):
    _, tracker, _ = fitted
    state = tracker.state()
    again = QuantMissTracker.from_state(state, digits.x_train, digits.y_train)
    assert again.bits == tracker.bits and again.every == 2 and again.checks == 3
    np.testing.assert_array_equal(again.counts, tracker.counts)
    for b in tracker.tracked_bits:
        np.testing.assert_array_equal(again.last_correct[b], tracker.last_correct[b])
    np.testing.assert_array_equal(again.sample(20), tracker.sample(20))
    assert again.history == tracker.history
    with pytest.raises(ValueError, match="state covers 1348 samples but this tracker has 10"):
        QuantMissTracker.from_state(state, digits.x_train[:10], digits.y_train[:10])
    other = QuantMissTracker(digits.x_train, digits.y_train, bits=(4,))
    with pytest.raises(ValueError, match=r"bits=\(2, 3, 4, 5, 8\)"):
        other.load_state(state)


def test_dataset_input_is_materialised_like_arrays(digits):
    x, y = digits.x_train[:100], digits.y_train[:100]
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    tracker = QuantMissTracker(dataset=ds, bits=(4,))
    np.testing.assert_array_equal(tracker.x, x)
    np.testing.assert_array_equal(tracker.y, y)
    with pytest.raises(ValueError, match="not both"):
        QuantMissTracker(x, y, dataset=ds)


# ---------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize(
    "bits, match",
    [
        ((), "bits is empty"),
        ((1,), "bits holds 1"),
        ((9,), "bits holds 9"),
        ((4, 32), "bits holds 32.*always tracked"),
        (("4",), "bits holds '4'"),
        ((4.0,), "bits holds 4.0"),
        ((True,), "bits holds True"),
        ((4, 4), r"bits=\(4, 4\) has duplicates"),
        (None, "bits must be a sequence.*got None"),
    ],
)
def test_bad_bits(bits, match):
    with pytest.raises(ValueError, match=match):
        QuantMissTracker(np.zeros((4, 2)), np.zeros(4, int), bits=bits)


def test_bad_every_and_data():
    x, y = np.zeros((4, 2), np.float32), np.array([0, 1, 0, 1])
    for every in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=f"every must be an int >= 1, got {every!r}"):
            QuantMissTracker(x, y, every=every)
    with pytest.raises(ValueError, match="x has 4 samples but y has 3 labels"):
        QuantMissTracker(x, y[:3])
    with pytest.raises(ValueError, match=r"x is empty \(0 samples\)"):
        QuantMissTracker(x[:0], y[:0])
    with pytest.raises(ValueError, match="y must hold integer class indices, got dtype float64"):
        QuantMissTracker(x, np.array([0.0, 0.5, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"y shape \(4, 2\).*argmax"):
        QuantMissTracker(x, np.eye(2)[y])
    with pytest.raises(ValueError, match="negative class index -1"):
        QuantMissTracker(x, np.array([0, -1, 0, 1]))
    with pytest.raises(ValueError, match="x and y are required"):
        QuantMissTracker(x)
    # Integral float labels (e.g. from tf.data) are accepted.
    assert QuantMissTracker(x, y.astype(np.float32)).y.dtype == np.int64


def test_labels_beyond_the_model_outputs_fail_at_the_first_check():
    model = _mlp(input_shape=(2,), classes=3)
    tracker = QuantMissTracker(np.zeros((4, 2), np.float32), np.array([0, 1, 2, 3]), bits=(4,))
    with pytest.raises(ValueError, match=r"class index 3 but model .* outputs 3 classes"):
        tracker.check(model)
    assert tracker.checks == 0
    with pytest.raises(TypeError, match="tf_keras Model"):
        tracker.check("not a model")

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, inputs):
            return self.dense(inputs)

    sub = Subclassed()
    sub(np.zeros((1, 2), np.float32))
    with pytest.raises(TypeError, match="subclassed model .*Subclassed.*Sequential or Functional"):
        tracker.check(sub)


def test_bad_sample_calls(fitted):
    _, tracker, _ = fitted
    n = len(tracker.y)
    for size in (0, -3, n + 1, 2.0, True):
        with pytest.raises(ValueError, match=rf"size must be an int in \[1, {n}\].*got {size!r}"):
            tracker.sample(size)
    fresh = QuantMissTracker(tracker.x, tracker.y, bits=(4,))
    with pytest.raises(ValueError, match=r"checks=0.*call fit with the tracker first"):
        fresh.sample(20)
    with pytest.raises(ValueError, match="tracker.check"):
        fresh.core(20)
