"""Helpers shared by the QCore tests: a small converted model with a two-layer head, and
the random int8 flip network of builders.golden."""

from __future__ import annotations

import numpy as np
from builders.golden import random_flipnet

__all__ = ["converted_mlp", "random_flipnet"]


def converted_mlp(bits: int, seed: int = 0) -> tuple[bytes, np.ndarray, np.ndarray]:
    """A 16 -> 24 (ReLU) -> 12 (ReLU) -> 5 Dense model on a learnable synthetic task, trained
    briefly, PTQ-quantized at ``bits`` and converted full-integer: ``(bytes, x, y)``."""
    from tfmot_edgeplus._compat import keras, tf
    from tfmot_edgeplus.conversion import convert
    from tfmot_edgeplus.recipes.cora import ptq_model

    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1, (5, 16)).astype(np.float32)
    y = rng.integers(0, 5, 600)
    x = centers[y] + rng.normal(0, 0.9, (600, 16)).astype(np.float32)
    tf.keras.utils.set_random_seed(seed)
    inputs = keras.Input((16,))
    h = keras.layers.Dense(24, activation="relu", name="body")(inputs)
    h = keras.layers.Dense(12, activation="relu", name="fc")(h)
    model = keras.Model(inputs, keras.layers.Dense(5, name="logits")(h))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=3, verbose=0)
    q = ptq_model(model, bits, 8, x[:256])
    return convert(q, x[:128]), x, y
