"""BestWeights: the held-out check before training and at each epoch end, the best weights put
back at the end (a deliberately harmful epoch is rolled back), holdout_split, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from tfmot_edgeplus._compat import keras, tf
from tfmot_edgeplus.quantization import BestWeights, holdout_split


@pytest.fixture(scope="module")
def digits_split():
    from tfmot_edgeplus import datasets

    data = datasets.digits()
    x = data.x_train.reshape(len(data.x_train), -1).astype(np.float32)
    train, held = holdout_split(len(x), 0.2, seed=0)
    return x[train], data.y_train[train], x[held], data.y_train[held]


def _tiny_model(learning_rate):
    tf.keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Input((64,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(10)])
    model.compile(keras.optimizers.SGD(learning_rate),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


class _Snapshots(keras.callbacks.Callback):
    """The weights before training and at each epoch end (listed before BestWeights)."""

    def on_train_begin(self, logs=None):
        self.weights = [self.model.get_weights()]

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())


def _same(a, b) -> bool:
    return all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))


def test_a_harmful_epoch_is_rolled_back_to_the_best_check(digits_split):
    x, y, x_held, y_held = digits_split
    model = _tiny_model(0.05)
    harm = keras.callbacks.LearningRateScheduler(lambda epoch: 0.05 if epoch < 3 else 50.0)
    snapshots, best = _Snapshots(), BestWeights(x_held, y_held)
    history = model.fit(x, y, epochs=4, batch_size=32, shuffle=False, verbose=0,
                        callbacks=[harm, snapshots, best])

    curve = history.history["heldout_accuracy"]
    assert len(curve) == 4 and curve[-1] < max(curve[:3]) - 0.2, curve  # epoch 4 did harm
    assert best.start_accuracy < 0.3 < best.best_accuracy  # it learned before the harm
    assert best.restored and 1 <= best.best_epoch <= 3
    assert best.best_accuracy == max([best.start_accuracy, *curve])
    assert history.history["best_heldout_accuracy"][-1] == best.best_accuracy
    assert history.history["best_epoch"][-1] == best.best_epoch
    assert _same(model.get_weights(), snapshots.weights[best.best_epoch])
    assert best.evaluate()[0] == best.best_accuracy
    assert "restored the weights of epoch" in best.describe()


def test_a_run_that_only_harms_ends_where_it_started(digits_split):
    x, y, x_held, y_held = digits_split
    model = _tiny_model(0.05)
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)  # a trained model ...
    start = model.get_weights()
    model.compile(model.optimizer.__class__(50.0), model.loss)  # ... then a harmful fit
    best = BestWeights(x_held, y_held)
    model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[best])
    assert best.restored and best.best_epoch == 0
    assert best.last_accuracy < best.start_accuracy == best.best_accuracy
    assert _same(model.get_weights(), start)
    assert "restored the weights from before training" in best.describe()

    first = best.summary()
    model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[best])  # state reset per fit
    assert best.summary() == first | {"last_accuracy": best.last_accuracy}
    assert _same(model.get_weights(), start)


def test_holdout_split_is_a_seeded_partition():
    train, held = holdout_split(1000, 0.1, seed=3)
    assert len(held) == 100 and len(train) == 900
    assert np.array_equal(np.sort(np.concatenate([train, held])), np.arange(1000))
    assert np.array_equal(held, holdout_split(1000, 0.1, seed=3)[1])
    assert not np.array_equal(held, holdout_split(1000, 0.1, seed=4)[1])
    assert held.max() - held.min() > 500  # spread over the set, not its tail
    assert len(holdout_split(5, 0.01)[1]) == 1 and len(holdout_split(2, 0.9)[0]) == 1


@pytest.mark.parametrize("args, match", [
    ((np.zeros((0, 4)), np.zeros(0, int)), "at least one held-out sample"),
    ((np.zeros((3, 4)), np.zeros(2, int)), "3 integer class labels"),
    ((np.zeros((3, 4)), np.zeros(3)), "dtype float64"),
])
def test_bad_heldout_data_names_it(args, match):
    with pytest.raises(ValueError, match=match):
        BestWeights(*args)


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        BestWeights(np.zeros((3, 4)), np.zeros(3, int), batch_size=0)
    with pytest.raises(ValueError, match="fraction must be in \\(0, 1\\), got 1.0"):
        holdout_split(10, 1.0)
    with pytest.raises(ValueError, match="n must be an int >= 2.*got 1"):
        holdout_split(1, 0.1)
