"""Batched model passes over a data set: stacked logits for the score functions.

Scoring is one tf.data pass per call: the inputs are batched by ``tf.data`` and every
model is evaluated on the same batch inside one ``tf.function`` (``training=False``, so
BatchNorm uses its moving statistics and TF-MOT's quantizers do not update their
ranges). The Python loop runs over batches, never over samples.

The models are called directly, outside any ``tf.distribute`` replica context, so this
works during ``model.fit`` under a ``MirroredStrategy`` too (mirrored variables read
their primary copy).
"""

from __future__ import annotations

import numpy as np

from tfmot_edgeplus._compat import tf

__all__ = ["LogitsPredictor", "as_arrays", "labeled_arrays", "predict_logits"]


def as_arrays(dataset, what: str = "dataset") -> tuple[np.ndarray, np.ndarray]:
    """Materialise a ``tf.data.Dataset`` of ``(x, y)`` into two NumPy arrays.

    The dataset may yield single samples or batches: integer class labels of rank 0 mean
    single samples (they are batched by 1024 here), labels of rank 1 mean batches. It
    must be finite (no ``repeat()``) and must yield ``(x, y)`` pairs.
    """
    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(
            f"{what} must be a tf.data.Dataset of (x, y), got {type(dataset).__name__}."
        )
    spec = dataset.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2):
        raise ValueError(
            f"{what} must yield (x, y) pairs, got elements {spec}. Example: "
            "tf.data.Dataset.from_tensor_slices((x, y))."
        )
    if dataset.cardinality() == tf.data.INFINITE_CARDINALITY:
        raise ValueError(f"{what} is infinite (repeat() without count); pass the finite data set.")
    y_rank = spec[1].shape.rank
    if y_rank == 0:
        dataset = dataset.batch(1024)
    elif y_rank != 1:
        raise ValueError(
            f"{what} labels must be integer class indices (one per sample, or a batch of them), "
            f"got label spec {spec[1]}. One-hot labels: map(lambda x, y: (x, tf.argmax(y, -1)))."
        )
    xs, ys = [], []
    for xb, yb in dataset.as_numpy_iterator():
        xs.append(xb)
        ys.append(yb)
    if not xs:
        raise ValueError(f"{what} is empty; the coreset needs at least one sample.")
    return np.concatenate(xs, axis=0), np.concatenate(ys, axis=0)


class LogitsPredictor:
    """Runs a fixed list of models over batches with one traced ``tf.function``.

    Traced once per input signature (the batch dimension is left unknown), so re-scoring
    every R epochs does not retrace. Keep one instance per model list.
    """

    def __init__(self, models):
        self.models = list(models) if isinstance(models, (list, tuple)) else [models]
        if not self.models:
            raise ValueError("models is empty; pass at least one Keras model.")
        self._step = None
        self._spec = None

    def _get_step(self, spec: tf.TensorSpec):
        if self._step is None or self._spec != spec:
            models = self.models

            @tf.function(input_signature=[spec], autograph=False)
            def step(xb):
                return [tf.cast(m(xb, training=False), tf.float32) for m in models]

            self._step, self._spec = step, spec
        return self._step

    def __call__(self, x, batch_size: int = 256) -> list[np.ndarray]:
        if (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, (int, np.integer))
            or batch_size < 1
        ):
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
        if isinstance(x, tf.data.Dataset):
            ds = x
            if isinstance(ds.element_spec, tuple):
                ds = ds.map(lambda *e: e[0])
        else:
            ds = tf.data.Dataset.from_tensor_slices(np.asarray(x)).batch(int(batch_size))
        elem = ds.element_spec
        spec = tf.TensorSpec((None,) + tuple(elem.shape[1:]), elem.dtype)
        step = self._get_step(spec)
        outs: list[list[np.ndarray]] = [[] for _ in self.models]
        for xb in ds.prefetch(tf.data.AUTOTUNE):
            for i, out in enumerate(step(xb)):
                outs[i].append(out.numpy())
        result = []
        for model, chunks in zip(self.models, outs):
            if not chunks:
                raise ValueError("x is empty; there is nothing to score.")
            logits = np.concatenate(chunks, axis=0)
            if logits.ndim != 2:
                raise ValueError(
                    f"model {model.name!r} outputs shape {logits.shape[1:]} per sample; scoring "
                    "needs a classifier with (batch, num_classes) logits."
                )
            bad = ~np.isfinite(logits).all(axis=1)
            if bad.any():
                raise ValueError(
                    f"model {model.name!r} gave non-finite (NaN or inf) logits for {int(bad.sum())} "
                    f"of {len(logits)} samples (first: sample {int(np.argmax(bad))}) while scoring. "
                    "The model diverged or the data holds NaN; lower the learning rate or clean "
                    "the data, then re-score."
                )
            result.append(logits)
        return result


def predict_logits(models, x, batch_size: int = 256) -> list[np.ndarray]:
    """Run every model in ``models`` over ``x`` in batches; return one ``(N, M)`` array each.

    Args:
        models: a Keras model or a sequence of them; all must accept ``x`` batches.
        x: a NumPy array ``(N, ...)``, or a ``tf.data.Dataset`` yielding ``(x, y)`` or ``x``
            batches (labels are ignored).
        batch_size: batch size for a NumPy ``x``.

    Raises:
        ValueError: a model's outputs are not ``(batch, classes)`` logits.

    One-off helper; code that scores repeatedly keeps a :class:`LogitsPredictor`.
    """
    return LogitsPredictor(models)(x, batch_size)


def labeled_arrays(x, y, dataset, needs: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` from NumPy arrays or ``dataset=`` a tf.data.Dataset of ``(x, y)``, checked:
    same length, not empty, ``y`` integer class indices >= 0 (whole-number float labels are
    cast). ``needs`` names the user in the empty-data message."""
    if dataset is not None:
        if x is not None or y is not None:
            raise ValueError(
                "Pass either x and y (NumPy arrays) or dataset= (a tf.data.Dataset of "
                "(x, y)), not both."
            )
        x, y = as_arrays(dataset, "dataset")
    elif x is None or y is None:
        raise ValueError(
            "x and y are required (NumPy arrays of samples and integer labels), or pass "
            "dataset= a tf.data.Dataset of (x, y)."
        )
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim < 1 or y.ndim != 1:
        raise ValueError(
            f"x must be (N, ...) and y (N,) integer class indices; got x shape {x.shape}, "
            f"y shape {y.shape}. One-hot y: pass y.argmax(axis=1)."
        )
    if len(x) != len(y):
        raise ValueError(
            f"x has {len(x)} samples but y has {len(y)} labels; they must match one to one."
        )
    if len(x) == 0:
        raise ValueError(f"x is empty (0 samples); {needs}.")
    if y.dtype.kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all():
        y = y.astype(np.int64)  # e.g. float32 labels from a tf.data pipeline
    if y.dtype.kind not in "iu":
        raise ValueError(
            f"y must hold integer class indices, got dtype {y.dtype}. One-hot or soft "
            "labels: pass y.argmax(axis=1)."
        )
    if y.min() < 0:
        raise ValueError(f"y has negative class index {int(y.min())}; labels must be >= 0.")
    return x, y
