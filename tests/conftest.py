"""Shared fixtures. Keras 2 (tf_keras) must be selected before anything imports TensorFlow."""

from __future__ import annotations

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def fashion_small():
    """A real, small Fashion-MNIST slice: 3000 train / 1000 test images (stratified)."""
    from tfmot_edgeplus import datasets

    return datasets.fashion_mnist(limit_train=3000, limit_test=1000, seed=0)


@pytest.fixture(scope="session")
def trained_fp_model(fashion_small):
    """The demo's small CNN trained for a few epochs on ``fashion_small`` (about 10 s)."""
    from tfmot_edgeplus._compat import tf
    from tfmot_edgeplus.models import compile_classifier, small_cnn

    tf.keras.utils.set_random_seed(0)
    model = compile_classifier(small_cnn(), learning_rate=3e-3)
    model.fit(fashion_small.x_train, fashion_small.y_train, epochs=6, batch_size=64, verbose=0)
    return model


@pytest.fixture
def rng():
    return np.random.default_rng(0)
