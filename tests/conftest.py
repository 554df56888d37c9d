"""Shared fixtures. Keras 2 (tf_keras) must be selected before anything imports TensorFlow."""

from __future__ import annotations

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest


@pytest.fixture(scope="session")
def fashion_small():
    """A real Fashion-MNIST slice: 10000 train / 2000 test images (stratified, seeded)."""
    from tfmot_edgeplus import datasets

    return datasets.fashion_mnist(limit_train=10000, limit_test=2000, seed=0)


@pytest.fixture(scope="session")
def trained_fp_model(fashion_small):
    """The demo's small CNN trained on ``fashion_small`` (about 85 % test accuracy, ~30 s).

    Well enough trained that few test images sit on a near-tie between two classes, which
    is what class agreement between Keras and TFLM is sensitive to."""
    from tfmot_edgeplus._compat import tf
    from tfmot_edgeplus.models import compile_classifier, small_cnn

    tf.keras.utils.set_random_seed(0)
    model = compile_classifier(small_cnn(), learning_rate=3e-3)
    model.fit(fashion_small.x_train, fashion_small.y_train, epochs=5, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="module")
def digits_fp():
    """small_cnn on the 8x8 digits, with non-trivial BatchNorm statistics (~5 s); one per
    test module, since tests wrap and calibrate copies of it."""
    from tfmot_edgeplus import datasets
    from tfmot_edgeplus._compat import tf
    from tfmot_edgeplus.models import compile_classifier, small_cnn

    data = datasets.digits()
    tf.keras.utils.set_random_seed(0)
    model = compile_classifier(small_cnn(input_shape=(8, 8, 1), width=8), learning_rate=3e-3)
    model.fit(data.x_train, data.y_train, epochs=8, batch_size=64, verbose=0)
    return model, data


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module", params=("plain", "emudsp"))
def k(request):
    """The C kernels built as plain C and with the DSP path emulated in C (both variants)."""
    from tfmot_edgeplus.runtime import kernels

    try:
        return kernels.get_kernels(request.param)
    except kernels.KernelBuildError as e:  # pragma: no cover - machines without a compiler
        pytest.skip(f"C kernels unavailable: {e}")
