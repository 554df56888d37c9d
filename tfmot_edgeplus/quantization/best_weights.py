"""``BestWeights``: a QAT run never ends worse than it started.

    train, held = holdout_split(len(x), fraction=0.1, seed=0)
    best = BestWeights(x[held], y[held])
    qat.fit(x[train], y[train], epochs=10, callbacks=[best])
    best.best_accuracy, best.best_epoch    # epoch 0: the weights before training

Choices stated:

* **What is judged.** Top-1 accuracy of the model being fit (``predict``: for a
  :class:`~tfmot_edgeplus.distillation.CLCTrainer`, its student) on a held-out slice of the
  caller's own data, never its test set; ties go to the lower mean cross-entropy, which
  assumes the model gives logits (as every model of this package does). Integer labels.
* **When.** Once in ``on_train_begin``, so that "where it started" counts (the quantized
  model before any step, e.g. the float model fake-quantized, or plain PTQ), then at every
  epoch end. Only epoch hooks: batch hooks would slow every step. A run that wants more
  checks splits its steps into more epochs (``steps_per_epoch``).
* **What is kept.** ``model.get_weights()`` (every variable: kernels, LSQ steps, activation
  ranges, BatchNorm statistics) at the best check; in ``on_train_end`` they are put back
  when the last check was not the best. The optimizer's state is not restored.
* **Logs.** Each epoch end writes ``heldout_accuracy``, ``best_heldout_accuracy`` and
  ``best_epoch`` into ``logs`` (so History, CSVLogger and TensorBoard see them); after
  ``fit`` the attributes ``start_accuracy``, ``best_accuracy``, ``best_epoch``,
  ``last_accuracy``, ``restored`` and :meth:`summary` say what happened.
* State is reset in ``on_train_begin``: one instance can serve several ``fit`` calls.
* "Never worse" is by the held-out slice: on other data (a test set) the kept weights can
  still score below the start by the slice's sampling noise (a slice of n samples measures
  top-1 within about ``1 / sqrt(n)``).

The recipes share the rest: :func:`holdout_split` (which samples are held out: a seeded random
fraction), :func:`check_holdout` (their ``holdout`` setting) and :func:`describe_best` (the
log line).
"""

from __future__ import annotations

import numbers

import numpy as np

from tfmot_edgeplus._compat import keras

__all__ = ["BestWeights", "check_holdout", "describe_best", "holdout_split"]


def check_holdout(value, name: str = "holdout") -> float:
    """A recipe's held-out fraction: in [0, 1), 0 turning the held-out slice off."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}. Example: 0.1 keeps 10 % of "
                         "the data aside to keep the best weights; 0 turns that off.")
    return float(value)


def holdout_split(n: int, fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices) of ``n`` samples: a seeded random ``fraction`` of them
    (at least one) held out, both sorted. Random rather than the last ones, since a data set's
    order may follow its classes or subjects."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 2:
        raise ValueError(f"n must be an int >= 2 (one sample to train on, one to hold out), "
                         f"got {n!r}.")
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) \
            or not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}. Example: 0.1 holds "
                         "out 10 % of the samples.")
    held = min(max(1, round(fraction * n)), n - 1)
    order = np.random.default_rng(seed).permutation(int(n))
    return np.sort(order[held:]), np.sort(order[:held])


class BestWeights(keras.callbacks.Callback):
    """Keep the weights with the best top-1 on ``(x, y)``, held out of training; restore them
    when ``fit`` ends. See the module docstring.

    Args:
      x: held-out inputs (a slice of the training data the run does not train on).
      y: their integer class labels.
      batch_size: batch of the evaluation ``predict``.
    """

    def __init__(self, x, y, batch_size: int = 256):
        super().__init__()
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim < 1 or len(x) == 0:
            raise ValueError(f"x must hold at least one held-out sample, got shape {x.shape}.")
        if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"y must be {len(x)} integer class labels (one per sample of x), "
                             f"got shape {y.shape} of dtype {y.dtype}.")
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) \
                or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}.")
        self.x, self.y, self.batch_size = x, y, int(batch_size)
        self._reset()

    def _reset(self):
        self.start_accuracy = self.best_accuracy = self.last_accuracy = None
        self.best_epoch = 0
        self.restored = False
        self._best_key = None
        self._best_weights = None
        self._last_is_best = True

    def evaluate(self) -> tuple[float, float]:
        """(top-1, mean cross-entropy from logits) of the model on the held-out slice."""
        logits = np.asarray(self.model.predict(self.x, batch_size=self.batch_size, verbose=0),
                            np.float64)
        if logits.ndim != 2 or logits.shape[1] <= int(self.y.max()):
            raise ValueError(f"The model outputs shape {logits.shape} for {len(self.x)} held-out "
                             f"samples, but their labels go up to {int(self.y.max())}: "
                             "BestWeights needs a classifier giving one logit per class.")
        top = logits.max(axis=1)
        log_norm = top + np.log(np.exp(logits - top[:, None]).sum(axis=1))
        cross_entropy = float(np.mean(log_norm - logits[np.arange(len(self.y)), self.y]))
        return float(np.mean(logits.argmax(axis=1) == self.y)), cross_entropy

    def _check(self, epoch: int) -> None:
        accuracy, cross_entropy = self.evaluate()
        self.last_accuracy = accuracy
        key = (accuracy, -cross_entropy)  # NaN loses: a NaN comparison is False
        self._last_is_best = self._best_key is None or key > self._best_key
        if self._last_is_best:
            self._best_key, self.best_accuracy, self.best_epoch = key, accuracy, epoch
            self._best_weights = self.model.get_weights()

    def on_train_begin(self, logs=None):
        self._reset()
        self._check(0)
        self.start_accuracy = self.last_accuracy

    def on_epoch_end(self, epoch, logs=None):
        self._check(epoch + 1)
        if logs is not None:
            logs["heldout_accuracy"] = self.last_accuracy
            logs["best_heldout_accuracy"] = self.best_accuracy
            logs["best_epoch"] = self.best_epoch

    def on_train_end(self, logs=None):
        if not self._last_is_best:
            self.model.set_weights(self._best_weights)
            self.restored = True
        self._best_weights = None

    def summary(self) -> dict:
        """What the last ``fit`` did: held-out size, top-1 at the start, at the end and the
        best (epoch 0 = before training), and whether the best weights were put back."""
        return {"heldout_samples": len(self.y), "start_accuracy": self.start_accuracy,
                "last_accuracy": self.last_accuracy, "best_accuracy": self.best_accuracy,
                "best_epoch": self.best_epoch, "restored": self.restored}

    def describe(self) -> str:
        """One log line of :meth:`summary`."""
        return describe_best(self.summary())


def describe_best(summary: dict) -> str:
    """One log line of a :meth:`BestWeights.summary`."""
    s = summary
    if s["start_accuracy"] is None:
        return "BestWeights: no fit has run yet"
    kept = (f"restored the weights of epoch {s['best_epoch']}" if s["restored"]
            else "kept the last weights")
    if s["restored"] and s["best_epoch"] == 0:
        kept = "restored the weights from before training"
    return (f"held-out top-1 on {s['heldout_samples']} samples: {s['start_accuracy']:.4f} "
            f"before training, {s['last_accuracy']:.4f} at the end, best "
            f"{s['best_accuracy']:.4f}: {kept}")
