"""benchmarks/_tasks.py: the bed's task names, models, data and the float-model cache."""

from __future__ import annotations

import json
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"

from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks import _tasks


def _config(tmp_path, **overrides):
    base = {"fashion_train": 100, "fashion_test": 50, "fp_epochs": {"imu_watch": 1},
            "batch_size": 64, "cache_dir": str(tmp_path)}
    return SimpleNamespace(**{**base, **overrides})


def _imu_like(seed=0, n=140):
    from tfmot_edgeplus.datasets import ImageClassificationData

    rng = np.random.default_rng(seed)
    y = np.arange(n) % 7
    x = (rng.normal(size=(n, 100, 6)) + y[:, None, None]).astype(np.float32)
    return ImageClassificationData(x, y, x[:35], y[:35], tuple(f"c{i}" for i in range(7)))


def test_unknown_task_names_the_value_and_the_choices():
    with pytest.raises(ValueError, match=r"Unknown benchmark task 'cifar'; choose from "
                                         r"fashion_mnist, imu_watch, fashion_mbv2, imu_deep"):
        _tasks.check_tasks(("imu_watch", "cifar"))
    with pytest.raises(ValueError, match=r"tasks must name at least one task"):
        _tasks.check_tasks(())
    assert set(_tasks.DEEP_TASKS) < set(_tasks.TASKS)
    assert _tasks.TASKS[:2] == ("fashion_mnist", "imu_watch")  # today's names stay


def test_a_fraction_that_empties_a_class_is_refused_with_the_fix():
    data = _imu_like()  # 20 samples per class
    _tasks.check_fraction(data, 0.05, "imu_like")  # 7 samples, one per class
    with pytest.raises(ValueError, match=r"task 'imu_like': fraction=0.01 of 140 samples "
                                         r"\(1\) leaves class .* fraction >= 0.05"):
        _tasks.check_fraction(data, 0.01, "imu_like")


def test_deeper_models_have_their_depth_and_the_tasks_inputs():
    from tfmot_edgeplus._compat import keras

    imu = _tasks.build_model("imu_deep", _imu_like())
    convs = [layer for layer in imu.layers if isinstance(layer, keras.layers.Conv1D)]
    bns = [layer for layer in imu.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(convs) == len(bns) == 6 and imu.output_shape == (None, 7)
    images = SimpleNamespace(input_shape=(32, 32, 1), num_classes=10)
    mbv2 = _tasks.build_model("fashion_mbv2", images)
    assert mbv2.count_params() > 400_000 and mbv2.output_shape == (None, 10)
    assert sum(isinstance(layer, keras.layers.DepthwiseConv2D) for layer in mbv2.layers) == 17


def test_float_model_is_trained_once_per_seed_and_config_and_a_stale_cache_is_an_error(
        tmp_path):
    data, config = _imu_like(), _config(tmp_path)
    first = _tasks.train_float(data, "imu_watch", config, seed=0)
    (h5,) = tmp_path.glob("imu_watch-s0-*.h5")
    meta = json.loads(h5.with_suffix(".json").read_text())
    assert meta == _tasks.float_config("imu_watch", data, config, 0)
    stamp = h5.stat().st_mtime_ns
    again = _tasks.train_float(data, "imu_watch", config, seed=0)  # read, not retrained
    assert h5.stat().st_mtime_ns == stamp
    for a, b in zip(first.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(again.predict(data.x_test, verbose=0),
                               first.predict(data.x_test, verbose=0), atol=1e-5)
    # Another seed, other data: other keys, other files.
    _tasks.train_float(data, "imu_watch", config, seed=1)
    _tasks.train_float(_imu_like(seed=5), "imu_watch", config, seed=0)
    assert len(list(tmp_path.glob("imu_watch-*.h5"))) == 3
    # A config file that does not match its key (copied by hand) is refused with the fix.
    meta["fp_epochs"] = 7
    h5.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"written by another config: fp_epochs=7, this run "
                                         r"has fp_epochs=1\. Delete .*imu_watch-s0-.*\.h5"):
        _tasks.train_float(data, "imu_watch", config, seed=0)


def test_fashion_mbv2_is_fashion_mnist_at_32x32_in_minus_one_one(tmp_path):
    from tfmot_edgeplus import datasets

    try:
        small = _tasks.load("fashion_mnist", _config(tmp_path))
        big = _tasks.load("fashion_mbv2", _config(tmp_path))
    except datasets.DatasetNotFoundError as err:
        pytest.skip(str(err))
    assert big.x_train.shape == (100, 32, 32, 1) and big.x_test.shape == (50, 32, 32, 1)
    np.testing.assert_array_equal(big.y_train, small.y_train)
    assert big.x_train.min() == pytest.approx(-1.0) and big.x_train.max() <= 1.0
    assert small.x_train.min() >= 0.0
