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


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same Python, NumPy and TensorFlow seeds: its random weights
    do not depend on which tests ran before it in the same process (``pytest -n`` hands each
    worker another set of files)."""
    from tfmot_edgeplus._compat import keras

    keras.utils.set_random_seed(0)


@pytest.fixture(scope="module", params=("plain", "emudsp"))
def k(request):
    """The C kernels built as plain C and with the DSP path emulated in C (both variants)."""
    from tfmot_edgeplus.runtime import kernels

    try:
        return kernels.get_kernels(request.param)
    except kernels.KernelBuildError as e:  # pragma: no cover - machines without a compiler
        pytest.skip(f"C kernels unavailable: {e}")


# ----------------------------------------------------------------------------- QuantMCU


def mbv2_like(name="mbv2_like"):
    """``models.mbv2_micro`` at 24x24x1: the MobileNetV2 pattern (see its docstring)."""
    from tfmot_edgeplus.models import mbv2_micro

    return mbv2_micro((24, 24, 1), 10, name=name)


@pytest.fixture(scope="session")
def mbv2_int8():
    """``(QAT model, int8 .tflite, 64 calibration images, 48 test images, their labels)``:
    mbv2_like trained 3 epochs on the digits upsampled to 24x24, TF-MOT default 8-bit."""
    import tensorflow_model_optimization as tfmot

    from tfmot_edgeplus import datasets
    from tfmot_edgeplus._compat import keras
    from tfmot_edgeplus.conversion.converter import convert

    data = datasets.digits()
    x = np.kron(data.x_train, np.ones((1, 3, 3, 1), np.float32))
    xt = np.kron(data.x_test, np.ones((1, 3, 3, 1), np.float32))
    keras.utils.set_random_seed(0)
    m = mbv2_like()
    m.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    m.fit(x, data.y_train, epochs=3, batch_size=32, verbose=0)
    q = tfmot.quantization.keras.quantize_model(m)
    tfl = convert(q, x[:64])
    return q, tfl, x[:64], xt[:48], data.y_test[:48]


