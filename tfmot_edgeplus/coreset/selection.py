"""Coresets that ``model.fit`` trains on and that are re-selected during training.

Usage (QuaRC, ALGORITHMS.md section 1)::

    qat = tfmot_edgeplus.quantize_model(fp_model, scheme)
    qat.compile(...)
    coreset = RESCoreset(x, y, fp_model, fraction=0.01, reselect_every=R)
    qat.fit(coreset.dataset(batch_size), epochs=T, callbacks=[coreset.callback()])

Design choices:

- **Data.** ``x``/``y`` NumPy arrays, or ``dataset=`` a finite ``tf.data.Dataset`` of
  ``(x, y)`` (single samples or batches) that is materialised once into arrays at
  construction: every re-selection re-scores the *whole* set, so it must be re-readable
  and indexable. Labels are integer class indices.
- **Size.** ``round(fraction * N)`` samples, kept constant, so each epoch has the same
  number of steps.
- **The dataset swaps in place.** :meth:`dataset` is a generator-backed
  ``tf.data.Dataset`` (``from_generator``) yielding ``(x[b], y[b])`` batches of the
  *current* selection, shuffled per epoch by a seeded RNG. Keras re-creates the
  iterator at each epoch start, which re-enters the generator, which reads the
  selection at that moment; the callback swaps the selection in ``on_epoch_end``, i.e.
  before the next epoch's iterator exists, so the next epoch trains on the new subset
  without the dataset being rebuilt. The cardinality (batches per epoch) is asserted so
  Keras knows the epoch length. Under ``tf.distribute`` the dataset is distributed like
  any other: each global batch is split across replicas.
- **Initial selection.** RES scores need p_Q of the QAT model *before* any QAT step (the
  pretrained FP weights fake-quantized). Either pass ``qat_model=`` (the selection is
  made at construction, so :meth:`dataset` can be iterated at once), or leave it out and
  the callback makes it in ``on_train_begin`` with the model being fit (given to the
  callback by Keras through ``set_model``), before the first batch is drawn. Iterating
  :meth:`dataset` with no selection yet raises an error saying so.
- **Re-selection.** The callback re-scores every ``reselect_every`` epochs, at the end of
  the epochs ``e`` with ``(e + 1) % R == 0``, except after the last epoch (nothing would
  train on it). p_Q comes from the current model being trained; p_F (``fp_model``) and
  p_T (``teacher``, default ``fp_model``) are frozen, so their logits are computed
  once and cached.
- **Logs.** At each epoch end the callback writes into ``logs`` (so History, CSVLogger
  and TensorBoard see them): ``coreset_size``, ``coreset_class_entropy`` (entropy in
  nats of the class histogram of the selection; ``log(num_classes)`` when balanced),
  ``coreset_mean_res`` (mean KL(p_Q || p_F) over the selection, as scored at its
  selection; RES coreset, or a random one given ``fp_model``) and ``coreset_swapped``
  (share of the selection replaced at this epoch end, 0 when not re-selected).
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from tfmot_edgeplus._compat import keras, tf
from tfmot_edgeplus.coreset.scores import ds_scores, evs_scores, res_scores, selection_scores
from tfmot_edgeplus.coreset.scoring import LogitsPredictor, labeled_arrays, predict_logits
from tfmot_edgeplus.quantization.calibrate import uncalibrated_ranges

__all__ = ["CoresetCallback", "RESCoreset", "RandomCoreset"]

_SAMPLINGS = ("top", "weighted")


def _check_int(name: str, value, minimum: int, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral,)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}. {fix}")
    return int(value)


class _Coreset:
    """Data, selection state, the swapping dataset and the callback; subclasses pick."""

    def __init__(self, x, y, *, dataset, fraction, reselect_every, batch_size, seed):
        x, y = labeled_arrays(x, y, dataset, "the coreset needs at least one sample")
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, numbers.Real)
            or not 0.0 < float(fraction) <= 1.0
        ):
            raise ValueError(
                f"fraction must be in (0, 1], got {fraction!r}. Example: fraction=0.1 keeps 10 % "
                "of the samples."
            )
        size = round(float(fraction) * len(x))
        if size < 1:
            raise ValueError(
                f"fraction={fraction} of {len(x)} samples selects {size} samples (an empty "
                f"selection); use fraction >= {1.0 / len(x):.3g}."
            )
        if reselect_every is not None:
            reselect_every = _check_int(
                "reselect_every",
                reselect_every,
                1,
                "It is R, the number of epochs between re-selections; None selects once.",
            )
        self.x = x
        self.y = y
        self.fraction = float(fraction)
        self.size = size
        self.reselect_every = reselect_every
        self.batch_size = _check_int("batch_size", batch_size, 1, "It is the scoring batch size.")
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._shuffle_rng = np.random.default_rng(None if seed is None else seed + 1)
        self.classes = np.unique(y)
        self._indices: np.ndarray | None = None
        self._mean_res = float("nan")
        self.selections = 0
        self._predictors: dict[int, tuple[object, LogitsPredictor]] = {}
        if size < len(self.classes):
            warnings.warn(
                f"The coreset holds {size} samples (fraction={fraction} of {len(x)}), fewer than "
                f"the {len(self.classes)} classes: at least {len(self.classes) - size} classes "
                "cannot be represented. Raise fraction.",
                stacklevel=3,
            )

    # ----- selection ------------------------------------------------------------------
    @property
    def indices(self) -> np.ndarray | None:
        """Sorted indices (into x/y) of the current selection, or None before the first."""
        return None if self._indices is None else np.sort(self._indices)

    def _choose(self, model, epoch: int, total_epochs: int) -> tuple[np.ndarray, float]:
        raise NotImplementedError

    def _train_begin(self, model, total_epochs: int) -> None:
        """Called by the callback in ``on_train_begin``: make the first selection if none."""
        if self._indices is None:
            self.select(model, epoch=0, total_epochs=total_epochs)

    def select(self, model=None, epoch: int = 0, total_epochs: int = 1) -> np.ndarray:
        """(Re)select the subset now; returns its sorted indices.

        Args:
            model: the quantized model giving p_Q (the model being trained). RES needs it
                (or the ``qat_model`` given at construction).
            epoch: t, the 0-based index of the next epoch (0 before training).
            total_epochs: T, the total number of epochs.
        """
        indices, mean_res = self._choose(model, epoch, total_epochs)
        if len(indices) == 0:
            raise ValueError("The selection is empty; raise fraction.")
        self._indices = np.asarray(indices, dtype=np.int64)
        self._mean_res = float(mean_res)
        self.selections += 1
        missing = np.setdiff1d(self.classes, self.y[self._indices])
        if len(missing):
            warnings.warn(
                f"The coreset of {self.size} samples misses {len(missing)} of the "
                f"{len(self.classes)} classes ({missing.tolist()[:10]}); training will never see "
                "them in this round. Raise fraction.",
                stacklevel=2,
            )
        return self.indices

    def _groups(self, per_class: bool) -> list[np.ndarray]:
        """The index groups a selection draws from: one per class, or every sample."""
        if not per_class:
            return [np.arange(len(self.y))]
        return [np.nonzero(self.y == c)[0] for c in self.classes]

    def _quotas(self, groups) -> np.ndarray:
        """Samples per group: proportional to group size, largest-remainder rounding; the one
        quota rule of every per-class selection (RES ``per_class``, random ``stratified``).

        A group (class) whose quota rounds to 0 is an error naming the fraction that fixes it.
        """
        counts = np.array([len(g) for g in groups])
        quota = self.size * counts / counts.sum()
        take = np.floor(quota).astype(np.int64)
        left = self.size - int(take.sum())
        take[np.argsort(-(quota - take), kind="stable")[:left]] += 1
        if len(groups) > 1 and (take == 0).any():
            empty = int(np.argmax(take == 0))
            need = math.ceil(len(self.y) / counts.min()) / len(self.y)
            raise ValueError(
                f"fraction={self.fraction} of {len(self.y)} samples ({self.size}) leaves class "
                f"{self.classes[empty].item()!r} ({counts[empty]} samples) with no sample in a "
                f"per-class selection; use fraction >= {need:.3g} (one sample of the rarest "
                "class), or select without per-class quotas."
            )
        return take

    def stats(self) -> dict[str, float]:
        """The selection figures written into ``logs`` (see the module docstring)."""
        if self._indices is None:
            raise RuntimeError("No selection yet: call select(model) or fit with callback().")
        counts = np.bincount(self.y[self._indices]).astype(np.float64)
        p = counts[counts > 0] / counts.sum()
        return {
            "coreset_size": float(len(self._indices)),
            "coreset_class_entropy": float(-(p * np.log(p)).sum()),
            "coreset_mean_res": self._mean_res,
        }

    # ----- training data --------------------------------------------------------------
    def _predict(self, model, x) -> np.ndarray:
        """Logits of ``model`` on ``x``, with one traced predictor kept per model."""
        entry = self._predictors.get(id(model))
        if entry is None or entry[0] is not model:
            entry = (model, LogitsPredictor([model]))
            self._predictors[id(model)] = entry
        return entry[1](x, self.batch_size)[0]

    def _epoch_indices(self) -> np.ndarray:
        if self._indices is None:
            raise RuntimeError(
                f"{type(self).__name__} has no selection yet: pass qat_model= at construction, "
                "call select(model), or fit with callbacks=[coreset.callback()] (it selects in "
                "on_train_begin)."
            )
        return self._indices.copy()

    def dataset(
        self, batch_size: int = 32, shuffle: bool = True, drop_remainder: bool = False
    ) -> tf.data.Dataset:
        """A ``tf.data.Dataset`` of ``(x, y)`` batches of the current selection.

        Its content follows the selection: each new iteration (Keras starts one per epoch)
        reads the selection at that moment. ``shuffle`` reshuffles the subset each epoch
        (seeded). The last batch may be smaller unless ``drop_remainder``; under
        ``tf.distribute`` with several replicas, a last batch smaller than the replica
        count leaves a replica an empty batch (some TF kernels reject that): pick a
        batch size that divides the coreset size or pass ``drop_remainder=True``.
        """
        batch_size = _check_int("batch_size", batch_size, 1, "Example: coreset.dataset(32).")
        if drop_remainder and self.size < batch_size:
            raise ValueError(
                f"drop_remainder=True with batch_size={batch_size} and a coreset of {self.size} "
                "samples leaves no batch at all; lower batch_size or raise fraction."
            )
        if self.size < batch_size:
            warnings.warn(
                f"The coreset holds {self.size} samples, fewer than one batch of {batch_size}: "
                "every epoch is a single smaller step. Lower batch_size or raise fraction.",
                stacklevel=2,
            )
        x, y = self.x, self.y

        def generate():
            idx = self._epoch_indices()
            if shuffle:
                idx = self._shuffle_rng.permutation(idx)
            stop = len(idx) - len(idx) % batch_size if drop_remainder else len(idx)
            for start in range(0, stop, batch_size):
                b = idx[start : start + batch_size]
                yield x[b], y[b]

        signature = (
            tf.TensorSpec((None,) + x.shape[1:], tf.as_dtype(x.dtype)),
            tf.TensorSpec((None,), tf.as_dtype(y.dtype)),
        )
        ds = tf.data.Dataset.from_generator(generate, output_signature=signature)
        steps = self.size // batch_size if drop_remainder else math.ceil(self.size / batch_size)
        ds = ds.apply(tf.data.experimental.assert_cardinality(steps))
        return ds.prefetch(2)

    def callback(self, total_epochs: int | None = None) -> CoresetCallback:
        """The Keras callback that selects/re-selects during ``fit`` (see the module doc).

        Args:
            total_epochs: T of the cosine schedule; default the ``epochs`` given to fit.
        """
        return CoresetCallback(self, total_epochs=total_epochs)


class RESCoreset(_Coreset):
    """QuaRC's relative-entropy coreset: the top ``fraction`` of samples by
    ``d_S(t) = a(t) d_EVS + (1 - a(t)) d_DS + d_RES`` (QuaRC Eqs. 5-6).

    Args:
        x, y: samples ``(N, ...)`` and integer labels ``(N,)``; or ``dataset=``.
        fp_model: the pretrained full-precision model (p_F), frozen.
        fraction: share of samples kept, in (0, 1].
        reselect_every: R, epochs between re-selections; None selects only once.
        qat_model: the QAT model before training; if given, the initial selection is made
            here (else by the callback in ``on_train_begin`` with the model being fit).
        teacher: p_T for d_DS; default ``fp_model``.
        batch_size: scoring batch size.
        seed: seeds the per-epoch shuffle and ``sampling="weighted"`` draws (the scores have
            no randomness; with ``"top"`` ties keep index order).
        dataset: a finite ``tf.data.Dataset`` of ``(x, y)`` instead of x and y.
        per_class: our addition, off by default (the paper ranks all samples together).
            When True, each class keeps its share of the selection (sizes proportional
            to its frequency, largest-remainder rounding), so no class drops out of a
            small coreset; a fraction too small to give the rarest class one sample is an
            error naming the fraction that does.
        sampling: ``"top"`` (the paper) keeps the samples of largest ``d_S``;
            ``"weighted"`` (our addition) draws them without replacement with probability
            proportional to ``d_S`` (seeded), which still favours high scores but keeps
            some typical samples. On Fashion-MNIST at W2 with 1 % of the data the top
            ``d_S`` samples are mostly ambiguous or atypical images, and training on them
            alone fell below a random coreset (benchmarks/coreset_qat.py measures both).

    The quantized model must have calibrated activation ranges when it is first scored
    (see :func:`tfmot_edgeplus.quantization.calibrate_activation_ranges`); a warning says
    so when it has not.
    """

    def __init__(
        self,
        x=None,
        y=None,
        fp_model=None,
        fraction: float = 0.01,
        reselect_every: int | None = None,
        qat_model=None,
        teacher=None,
        batch_size: int = 256,
        seed: int = 0,
        *,
        dataset=None,
        per_class: bool = False,
        sampling: str = "top",
    ):
        super().__init__(
            x,
            y,
            dataset=dataset,
            fraction=fraction,
            reselect_every=reselect_every,
            batch_size=batch_size,
            seed=seed,
        )
        for name, m in (("fp_model", fp_model), ("qat_model", qat_model), ("teacher", teacher)):
            if m is None and name != "fp_model":
                continue
            if not isinstance(m, keras.Model):
                raise TypeError(
                    f"{name} must be a tf_keras Model giving (batch, classes) logits, got "
                    f"{type(m).__name__}."
                )
        if not isinstance(per_class, bool):
            raise TypeError(f"per_class must be True or False, got {per_class!r}.")
        if sampling not in _SAMPLINGS:
            raise ValueError(
                f"sampling must be one of {', '.join(map(repr, _SAMPLINGS))}, got {sampling!r}."
            )
        self.per_class = per_class
        self.sampling = sampling
        self.fp_model = fp_model
        self.teacher = fp_model if teacher is None else teacher
        self._frozen_logits: tuple[np.ndarray, np.ndarray] | None = None
        self.last_scores: dict[str, np.ndarray] = {}
        if qat_model is not None:
            self.select(qat_model, epoch=0, total_epochs=1)

    def _frozen(self) -> tuple[np.ndarray, np.ndarray]:
        if self._frozen_logits is None:
            models = (
                [self.fp_model] if self.teacher is self.fp_model else [self.fp_model, self.teacher]
            )
            outs = predict_logits(models, self.x, self.batch_size)
            self._frozen_logits = (outs[0], outs[-1])
        return self._frozen_logits

    def _choose(self, model, epoch, total_epochs):
        if model is None:
            raise ValueError(
                "RESCoreset.select needs the quantized model for p_Q: pass qat_model= or fit "
                "with callbacks=[coreset.callback()]."
            )
        p_f, p_t = self._frozen()
        p_q = self._predict(model, self.x)
        if p_q.shape != p_f.shape:
            raise ValueError(
                f"The quantized model {model.name!r} outputs {p_q.shape[1]} classes but fp_model "
                f"{self.fp_model.name!r} outputs {p_f.shape[1]}; they must be the same classifier."
            )
        if self.y.max() >= p_q.shape[1]:
            raise ValueError(
                f"y has class index {int(self.y.max())} but the models output "
                f"{p_q.shape[1]} classes."
            )
        d_res = res_scores(p_q, p_f)
        d_evs = evs_scores(p_q, self.y)
        d_ds = ds_scores(p_q, p_t)
        d_s = selection_scores(d_evs, d_ds, d_res, epoch, total_epochs)
        if epoch == 0 and uncalibrated_ranges(model):
            warnings.warn(
                f"Scoring with model {model.name!r} whose activation ranges are still the "
                "placeholders set by quantize_apply: p_Q, and so the selection, are not "
                "meaningful. Call tfmot_edgeplus.quantization.calibrate_activation_ranges"
                "(qat_model, x[:1024]) before building the coreset.",
                stacklevel=4,
            )
        groups = self._groups(self.per_class)
        order = np.concatenate([
            self._pick(members, d_s[members], k)
            for members, k in zip(groups, self._quotas(groups))
        ])
        self.last_scores = {"d_res": d_res, "d_evs": d_evs, "d_ds": d_ds, "d_s": d_s}
        return order, float(d_res[order].mean())

    def _pick(self, members: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
        if self.sampling == "top":
            return members[np.argsort(-scores, kind="stable")[:k]]
        weights = np.maximum(scores, 0.0) + 1e-12
        return self._rng.choice(members, size=k, replace=False, p=weights / weights.sum())


class RandomCoreset(_Coreset):
    """The baseline: a uniformly random ``fraction`` of the samples (seeded), re-drawn every
    ``reselect_every`` epochs (None: drawn once, at construction).

    ``stratified=True`` draws each class's quota uniformly within the class, with the very
    quotas of ``RESCoreset(per_class=True)`` (``_quotas``): the like-for-like baseline of a
    per-class RES coreset, so a gain over it is the scores' and not the quotas'.

    With ``fp_model`` (and a model at selection time) it also reports
    ``coreset_mean_res`` for comparison with :class:`RESCoreset`; otherwise that log is NaN.
    Same interface as :class:`RESCoreset`.
    """

    def __init__(
        self,
        x=None,
        y=None,
        fraction: float = 0.01,
        seed: int = 0,
        reselect_every: int | None = None,
        fp_model=None,
        batch_size: int = 256,
        *,
        dataset=None,
        stratified: bool = False,
    ):
        super().__init__(
            x,
            y,
            dataset=dataset,
            fraction=fraction,
            reselect_every=reselect_every,
            batch_size=batch_size,
            seed=seed,
        )
        if fp_model is not None and not isinstance(fp_model, keras.Model):
            raise TypeError(
                f"fp_model must be a tf_keras Model or None, got {type(fp_model).__name__}."
            )
        if not isinstance(stratified, bool):
            raise TypeError(f"stratified must be True or False, got {stratified!r}.")
        self.stratified = stratified
        self.fp_model = fp_model
        self._fp_logits: np.ndarray | None = None
        self.select(None)

    def _train_begin(self, model, total_epochs):
        # Drawn at construction without a model: fill in the mean RES of the draw now.
        if self.fp_model is not None and math.isnan(self._mean_res) and self._indices is not None:
            self._mean_res = self._subset_res(model, self._indices)

    def _subset_res(self, model, order) -> float:
        if self._fp_logits is None:
            (self._fp_logits,) = predict_logits([self.fp_model], self.x, self.batch_size)
        p_q = self._predict(model, self.x[order])
        return float(res_scores(p_q, self._fp_logits[order]).mean())

    def _choose(self, model, epoch, total_epochs):
        groups = self._groups(self.stratified)
        order = np.concatenate([
            self._rng.choice(members, size=k, replace=False)
            for members, k in zip(groups, self._quotas(groups))
        ])
        mean_res = float("nan")
        if self.fp_model is not None and model is not None:
            mean_res = self._subset_res(model, order)
        return order, mean_res


class CoresetCallback(keras.callbacks.Callback):
    """Selects (if needed) in ``on_train_begin`` and re-selects every R epochs.

    The model arrives through ``set_model``; state is reset in ``on_train_begin`` so one
    instance can serve several fits; only epoch hooks are used.
    """

    def __init__(self, coreset: _Coreset, total_epochs: int | None = None):
        super().__init__()
        if not isinstance(coreset, _Coreset):
            raise TypeError(
                f"coreset must be a RESCoreset or RandomCoreset, got {type(coreset).__name__}."
            )
        if total_epochs is not None:
            total_epochs = _check_int("total_epochs", total_epochs, 1, "It is T of the schedule.")
        self.coreset = coreset
        self.total_epochs = total_epochs
        self._total = None

    def _schedule_total(self) -> int:
        total = self.total_epochs or (self.params or {}).get("epochs")
        if not total:
            raise ValueError(
                "The cosine schedule needs the total number of epochs: pass "
                "coreset.callback(total_epochs=T)."
            )
        return int(total)

    def on_train_begin(self, logs=None):
        self._total = self._schedule_total()
        self.coreset._train_begin(self.model, self._total)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            logs = {}
        swapped = 0.0
        r = self.coreset.reselect_every
        next_epoch = epoch + 1
        if r is not None and next_epoch % r == 0 and next_epoch < self._total:
            old = self.coreset._indices
            self.coreset.select(self.model, epoch=next_epoch, total_epochs=self._total)
            kept = np.intersect1d(old, self.coreset._indices).size
            swapped = 1.0 - kept / self.coreset.size
        logs.update(self.coreset.stats())
        logs["coreset_swapped"] = swapped
