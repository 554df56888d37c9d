"""QuaRC end to end: quantize, calibrate, pick a coreset, train with KD (+ CLC).

One function, :func:`quarc_qat`, runs the whole little-data QAT recipe of ALGORITHMS.md
section 1 with the building blocks of :mod:`tfmot_edgeplus.coreset` and
:mod:`tfmot_edgeplus.distillation`; the CLI (``edgeplus qat``), the demo and
``benchmarks/coreset_qat.py`` all go through it::

    config = QuaRCConfig(weight_bits=2, coreset="res", fraction=0.01, beta=1.0, epochs=10)
    run = quarc_qat(fp_model, x_train, y_train, config)
    run.qat_model        # trained QAT model: convert() it as usual
    run.history.history  # loss, kd_loss, clc_loss, accuracy, coreset_*, heldout_* per epoch
    run.best             # held-out top-1 before training, at the end, the best; restored?

Steps (each timed in ``run.seconds``; the coreset's scoring passes count in ``train``):

0. The held-out slice: a seeded random ``holdout`` fraction (default 10 %) of ``(x, y)``
   (:func:`~tfmot_edgeplus.quantization.holdout_split`, ``seed``) is set aside: never
   trained on, never in the coreset, never used for the ranges. Everything below uses the
   rest.
1. ``quantize_model(fp_model, EdgePlusQuantizeScheme(..., learnable_scales=True))``.
2. ``calibrate_activation_ranges`` on ``calibration_samples`` random training samples, so
   the first p_Q is that of the fake-quantized pretrained model (the paper's definition),
   not of placeholder ranges. ``calibrate_bn=True`` then re-estimates the BatchNorm
   statistics of the quantized model on the same samples (``calibrate_batchnorm``), so
   that p_Q, the coreset scores and the first QAT step start from a calibrated model; and
   once more after training, since training mode leaves the statistics of the last few
   batches, i.e. of a small coreset, in the moving averages.
3. The data: ``coreset="res"`` a :class:`RESCoreset` (per-class quotas, ``sampling``),
   ``"random"`` a :class:`RandomCoreset`, ``"full"`` every sample, shuffled each epoch.
4. :class:`CLCTrainer`: L = L_KD + beta * L_CLC with the FP model as teacher and
   correction model (``beta=0``: KD only), Adam at ``learning_rate`` for ``epochs``, or
   for ``steps`` optimizer steps (a fixed budget, whatever the coreset's size).
5. A QAT run never ends worse than it started: :class:`~tfmot_edgeplus.quantization.BestWeights`
   measures top-1 on the held-out slice before the first step (the fake-quantized model)
   and after every epoch, and puts the best weights back at the end (``run.best``; printed
   when ``verbose``). ``holdout=0`` turns this off: every sample trains, the last weights stay.

Deviations from the paper (QuaRC: RES coresets + cascaded layer correction, ALGORITHMS.md 1):

* RES keeps per-class quotas and samples by weight (``per_class=True``,
  ``sampling="weighted"``) instead of ranking all samples together and keeping the top k
  (``per_class=False, sampling="top"`` is the paper's rule); see :class:`RESCoreset`.
* The coreset is selected once by default (``reselect_every=None``); the paper re-selects
  during training (``reselect_every=R`` does).
* ``beta`` is on our scale (per-position mean KL summed over layers), not the paper's
  1e5 / 3e3 (see :class:`CLCTrainer`), and the feature maps become distributions by a
  channel softmax at ``feature_temperature`` (``feature_softmax="positions"``: a softmax
  over positions per channel; the paper does not say which).
* ``calibrate_bn=True`` (ours, off by default) re-estimates the quantized model's
  BatchNorm statistics before scoring and after training; the paper's p_Q is the FP
  model's weights fake-quantized with the FP statistics.
* The paper trains 200 epochs on its coreset (about 1,600 steps at 1 % of CIFAR-100);
  ``steps`` gives such a fixed step budget, ``epochs=10`` (the default) far fewer steps.
* The best weights by a held-out slice of the training data (step 5) are ours; the paper
  keeps the last weights and trains on all of its data.
"""

from __future__ import annotations

import numbers
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from tfmot_edgeplus._compat import check_keras2_model, keras, tf
from tfmot_edgeplus.coreset import RandomCoreset, RESCoreset
from tfmot_edgeplus.distillation import CLCTrainer
from tfmot_edgeplus.distillation.distributions import check_over
from tfmot_edgeplus.quantization import (
    BestWeights,
    EdgePlusQuantizeScheme,
    calibrate_activation_ranges,
    calibrate_batchnorm,
    holdout_split,
    quantize_model,
)
from tfmot_edgeplus.quantization.best_weights import check_holdout

__all__ = ["CORESETS", "QuaRCConfig", "QuaRCRun", "quarc_qat"]

CORESETS = ("res", "random", "full")


@dataclass(frozen=True)
class QuaRCConfig:
    """Settings of :func:`quarc_qat`, validated at construction.

    ``per_class`` and ``sampling="weighted"`` are our defaults for RES (the paper ranks all
    samples together and keeps the top): see :class:`RESCoreset` for why. ``per_class`` gives
    a random coreset the same per-class quotas (``RandomCoreset(stratified=True)``).
    ``reselect_every=None`` selects once; re-selection re-scores the whole training set.
    ``holdout`` is the fraction of ``(x, y)`` held out to keep the best weights (module doc,
    steps 0 and 5); 0 turns it off. ``steps`` (None: ``epochs`` passes over the training
    data) is a fixed optimizer-step budget: the run makes ``ceil(steps / batches per epoch)``
    passes over the coreset (or the full data), so a 1 % coreset trains as long as a larger
    one; the cosine schedule and ``reselect_every`` count those passes.
    """

    weight_bits: int = 4
    activation_bits: int = 8
    coreset: str = "res"
    fraction: float = 0.1
    beta: float = 1.0
    temperature: float = 1.0
    feature_softmax: str = "channels"
    feature_temperature: float = 1.0
    epochs: int = 10
    steps: int | None = None
    batch_size: int = 64
    learning_rate: float = 5e-4
    reselect_every: int | None = None
    per_class: bool = True
    sampling: str = "weighted"
    calibration_samples: int = 1024
    calibrate_bn: bool = False
    holdout: float = 0.1
    seed: int = 0

    def __post_init__(self):
        if self.coreset not in CORESETS:
            raise ValueError(
                f"coreset must be one of {', '.join(map(repr, CORESETS))}, got {self.coreset!r}."
            )
        if self.coreset == "full" and self.fraction != 1.0:
            raise ValueError(
                f"coreset='full' trains on every sample, so fraction must be 1.0, got "
                f"{self.fraction!r}. Use coreset='random' or 'res' for a fraction of the data."
            )
        for name in ("epochs", "batch_size", "calibration_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}.")
        if self.steps is not None and (isinstance(self.steps, bool) or not isinstance(
                self.steps, numbers.Integral) or self.steps < 1):
            raise ValueError(f"steps must be an int >= 1 (an optimizer-step budget) or None "
                             f"(train for `epochs`), got {self.steps!r}.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}.")
        # fraction, beta, temperature, bits, sampling and reselect_every are checked by the
        # classes that use them, with their own messages; check them here, before training.
        EdgePlusQuantizeScheme(self.weight_bits, self.activation_bits)
        if self.coreset != "full" and not (
            isinstance(self.fraction, numbers.Real) and 0.0 < self.fraction <= 1.0
        ):
            raise ValueError(
                f"fraction must be in (0, 1], got {self.fraction!r}. Example: fraction=0.1 "
                "keeps 10 % of the samples."
            )
        if not self.beta >= 0:
            raise ValueError(f"beta must be >= 0 (0 turns CLC off), got {self.beta!r}.")
        for name in ("temperature", "feature_temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}.")
        check_over(self.feature_softmax, "feature_softmax")
        check_holdout(self.holdout)

    def epochs_for(self, train_samples: int) -> int:
        """Passes over ``train_samples`` samples: ``epochs``, or enough for ``steps``."""
        if self.steps is None:
            return self.epochs
        return -(-self.steps // -(-train_samples // self.batch_size))

    @property
    def scheme(self) -> EdgePlusQuantizeScheme:
        return EdgePlusQuantizeScheme(self.weight_bits, self.activation_bits, learnable_scales=True)


@dataclass
class QuaRCRun:
    """What :func:`quarc_qat` returns."""

    qat_model: keras.Model
    history: keras.callbacks.History
    coreset: RESCoreset | RandomCoreset | None
    train_samples: int
    seconds: dict = field(default_factory=dict)
    config: QuaRCConfig | None = None
    best: dict | None = None  # BestWeights.summary(); None with holdout=0

    def summary(self) -> dict:
        return {
            "config": asdict(self.config) if self.config else None,
            "train_samples": self.train_samples,
            "best_weights": self.best,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "history": {k: [float(v) for v in vs] for k, vs in self.history.history.items()},
        }


def quarc_qat(fp_model, x, y, config: QuaRCConfig | None = None, verbose: int = 0) -> QuaRCRun:
    """Little-data QAT of ``fp_model`` on ``(x, y)`` (integer labels); see the module doc.

    ``fp_model`` (a trained float Keras 2 classifier giving logits) is not modified; the
    returned ``qat_model`` is a new model. ``verbose`` is passed to ``fit`` (1: progress bar)
    and, when non-zero, the held-out slice and what it decided are printed.
    """
    config = config or QuaRCConfig()
    check_keras2_model(fp_model, "fp_model")
    x = np.asarray(x)
    y = np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)} labels.")
    tf.keras.utils.set_random_seed(config.seed)
    seconds = {}
    callbacks = []
    if config.holdout > 0:
        train, held = holdout_split(len(x), config.holdout, config.seed)
        callbacks.append(BestWeights(x[held], y[held]))
        x, y = x[train], y[train]
        _say(verbose, f"[quarc] held out a seeded random {config.holdout * 100:.0f} % of the "
                      f"training data ({len(held)} samples, not trained on) to keep the best "
                      "weights")

    start = time.perf_counter()
    qat_model = quantize_model(fp_model, config.scheme)
    calib = np.random.default_rng(config.seed).permutation(len(x))[: config.calibration_samples]
    calibrate_activation_ranges(qat_model, x[calib])
    if config.calibrate_bn:
        calibrate_batchnorm(qat_model, x[calib])
    seconds["quantize"] = time.perf_counter() - start

    start = time.perf_counter()
    trainer = CLCTrainer(qat_model, fp_model, beta=config.beta, temperature=config.temperature,
                         feature_temperature=config.feature_temperature,
                         feature_softmax=config.feature_softmax)
    trainer.compile(optimizer=keras.optimizers.Adam(config.learning_rate), metrics=["accuracy"])
    coreset = _make_coreset(fp_model, qat_model, x, y, config)
    train_samples = len(x) if coreset is None else coreset.size
    epochs = config.epochs_for(train_samples)
    if coreset is None:
        history = trainer.fit(x, y, batch_size=config.batch_size, epochs=epochs,
                              shuffle=True, verbose=verbose, callbacks=callbacks)
    else:
        history = trainer.fit(coreset.dataset(config.batch_size), epochs=epochs,
                              callbacks=[coreset.callback(), *callbacks], verbose=verbose)
    if config.calibrate_bn:  # the statistics of the last (coreset-sized) batches: re-estimate
        calibrate_batchnorm(qat_model, x[calib])
    seconds["train"] = time.perf_counter() - start
    best = callbacks[0].summary() if callbacks else None
    if callbacks:
        _say(verbose, f"[quarc] {callbacks[0].describe()}")
    return QuaRCRun(qat_model, history, coreset, train_samples, seconds, config, best)


def _say(verbose: int, text: str) -> None:
    if verbose:
        print(text, flush=True)


def _make_coreset(fp_model, qat_model, x, y, config: QuaRCConfig):
    if config.coreset == "full":
        return None
    if config.coreset == "random":
        return RandomCoreset(x, y, fraction=config.fraction, seed=config.seed,
                             reselect_every=config.reselect_every, stratified=config.per_class)
    return RESCoreset(x, y, fp_model, fraction=config.fraction,
                      reselect_every=config.reselect_every, qat_model=qat_model,
                      seed=config.seed, per_class=config.per_class, sampling=config.sampling)
