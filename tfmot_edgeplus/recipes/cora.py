"""CoRa end to end: post-training quantization, residual adapters, a short KD calibration.

One function, :func:`cora_ptq`, runs the recipe of ALGORITHMS.md section 3 with the
building blocks of :mod:`tfmot_edgeplus.adapters`; ``edgeplus cora``, the demo
(``DemoConfig(method="cora")``) and ``benchmarks/cora.py`` go through it::

    config = CoRaConfig(weight_bits=3, budget=0.05, steps=250, calib_samples=1600)
    run = cora_ptq(fp_model, x_train, y_train, config, validation_data=(x_test, y_test))
    run.model            # quantized model + adapters: convert() it as usual
    run.accuracy         # {"ptq": before the adapters, "cora": after calibration}

Steps (each timed in ``run.seconds``):

1. ``calib_samples`` training samples drawn at random (``seed``): the only data used. With
   labels ``y``, a seeded random ``holdout`` fraction of them (default 10 %: 160 of 1,600;
   :func:`~tfmot_edgeplus.quantization.holdout_split`) is held out of the KD steps and judges
   them (step 4); the activation ranges still see all of them (no label, no training).
2. :func:`ptq_model`: ``quantize_model(fp_model, EdgePlusQuantizeScheme(...,
   learnable_scales=True))``; LSQ steps start at their minimum-MSE value, which is a good
   PTQ on its own; activation ranges are calibrated on all the samples. No weight is trained.
3. Ranks: ``rank_search="greedy"`` allocates them under ``budget`` from the residuals'
   singular values (:func:`~tfmot_edgeplus.adapters.allocate_ranks`, no data), or
   ``"butterworth"`` learns them with the paper's differentiable cutoff search
   (:func:`~tfmot_edgeplus.adapters.search_ranks`, ``search_steps`` steps).
4. :func:`~tfmot_edgeplus.adapters.add_residual_adapters` and
   :func:`~tfmot_edgeplus.adapters.calibrate` (KD from ``fp_model``, adapters only,
   ``steps`` steps). It never ends worse than plain PTQ by the held-out slice: the best of
   before calibration and after each fifth of the steps, by held-out top-1, is kept
   (``run.summary()["best_weights"]``); without labels (or ``holdout=0``), the adapters are
   rolled back if the KD loss on the calibration samples got worse.

:func:`qat_same_steps` is the like-for-like baseline: the same samples, held-out slice and
PTQ start, plain QAT of every weight for the same ``steps``, the best weights kept the same way.

Deviations from the paper (CoRa, ALGORITHMS.md 3):

* The base quantizer: the paper's code quantizes per tensor, asymmetric, clipped at
  mean +- k std; ours is symmetric per output channel (zero point 0, as TFLite stores
  weights) with LSQ steps at their minimum-MSE value, and the residual is taken from it.
* ``rank_search="greedy"`` (the default) allocates ranks from the residuals' singular values
  without data (:func:`~tfmot_edgeplus.adapters.allocate_ranks`); the paper's learned
  Butterworth cutoffs are ``rank_search="butterworth"``, whose task loss is our KD loss.
* ``budget`` counts adapter parameters (not the "equivalent bits" or flatbuffer bytes).
* Depthwise and grouped convolutions get no adapter (rank 1 per channel; no builtin op for
  a grouped low-rank mix); a conv followed by BatchNormalization gets its residual scaled by
  the BN (the Add goes after the BN) so the converter still folds it
  (:mod:`~tfmot_edgeplus.adapters.insert`).
* The calibration is KD from the float model (no labels needed) and trains the adapters
  only; keeping the best weights by held-out top-1 (step 4) is ours.
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from tfmot_edgeplus import adapters
from tfmot_edgeplus._compat import check_keras2_model, keras, tf
from tfmot_edgeplus.adapters.calibrate import repeated_batches, step_parts
from tfmot_edgeplus.quantization import (
    BestWeights,
    EdgePlusQuantizeScheme,
    calibrate_activation_ranges,
    holdout_split,
    quantize_model,
)
from tfmot_edgeplus.quantization.best_weights import check_holdout, describe_best
from tfmot_edgeplus.quantization.quantizers import WEIGHT_BITS, check_bits

__all__ = ["RANK_SEARCHES", "CoRaConfig", "CoRaRun", "cora_ptq", "ptq_model", "qat_same_steps"]

RANK_SEARCHES = ("greedy", "butterworth")


@dataclass(frozen=True)
class CoRaConfig:
    """Settings of :func:`cora_ptq`, validated at construction.

    ``budget`` counts **parameters**: the adapters' weights may be at most this fraction of
    the adapted layers' kernel parameters (``run.summary()["adapter_param_fraction"]``). It
    does not count flatbuffer bytes: each adapter also adds two filter operators, an ADD and
    their tensors (names, shapes, quantization parameters), which on small models weigh far
    more than the int8 weights, e.g. +54 % flatbuffer bytes for 125 parameter bytes on the
    8x8 digits CNN at ``budget=0.05``. :func:`tfmot_edgeplus.conversion_report` (``.adapters``)
    and ``edgeplus inspect`` give that overhead in bytes.

    ``holdout``: the fraction of the labelled calibration samples held out of the KD steps to
    keep the best weights (module doc, steps 1 and 4); 0 turns it off.

    ``train_bn`` / ``train_scales``: the calibration also trains every BatchNormalization's
    gamma and beta (in inference mode) / the main layers' LSQ steps
    (:func:`~tfmot_edgeplus.adapters.calibrate`). Both fold into the per-channel scales and
    biases the converted model stores anyway: no flatbuffer byte (the same bytes, TFLM
    agreement 98.6-99.1 %, on ``imu_deep``). ``train_bn`` over the adapters alone, 250 steps,
    the 5 %-of-bytes budget: ``imu_deep`` W2 +1.3, +1.6, +2.3 points (seeds 0-2), W3 +0.2,
    +0.4, +0.5; ``fashion_mnist`` W2 +3.0, W3 +0.6 and the 8x8 digits (not in the bed) W2
    +6.9 (seed 0); but ``fashion_mbv2`` W3 -0.9 (seed 0, a 4k-image float model at 0.742), so
    it is off by default. ``train_scales`` was mixed (``imu_deep``, with ``train_bn``: W2
    +1.2, +4.6, +1.5 but below ``train_bn`` alone at seed 0; W3 -1.5 at seed 0).
    """

    weight_bits: int = 4
    activation_bits: int = 8
    budget: float = 0.05
    rank_search: str = "greedy"
    search_steps: int = 100
    steps: int = 250
    calib_samples: int = 1600
    batch_size: int = 64
    learning_rate: float = 1e-3
    adapter_bits: int = 8
    holdout: float = 0.1
    train_scales: bool = False
    train_bn: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.rank_search not in RANK_SEARCHES:
            raise ValueError(f"rank_search must be one of {', '.join(map(repr, RANK_SEARCHES))}, "
                             f"got {self.rank_search!r}.")
        for name in ("search_steps", "steps", "calib_samples", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}"
                                 + (" (CoRa uses a few hundred, e.g. 250)." if name == "steps"
                                    else "."))
        if not (isinstance(self.learning_rate, numbers.Real) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}.")
        EdgePlusQuantizeScheme(self.weight_bits, self.activation_bits)
        adapters.check_budget(self.budget)
        check_bits(self.adapter_bits, WEIGHT_BITS, "adapter_bits")
        check_holdout(self.holdout)


@dataclass
class CoRaRun:
    """What :func:`cora_ptq` returns."""

    model: keras.Model
    history: keras.callbacks.History
    calib_samples: int
    seconds: dict = field(default_factory=dict)
    accuracy: dict = field(default_factory=dict)
    search: adapters.RankSearch | None = None
    config: CoRaConfig | None = None

    def summary(self) -> dict:
        record = adapters.adapter_record(self.model)
        return {
            "config": asdict(self.config) if self.config else None,
            "calib_samples": self.calib_samples,
            "accuracy": dict(self.accuracy),
            "ranks": dict(self.model.adapter_ranks),
            "skipped": dict(record.skipped),
            "adapter_params": record.adapter_params,
            "adapter_param_fraction": record.param_fraction,
            "adapter_bytes": record.adapter_bytes,
            "cutoffs": None if self.search is None else self.search.cutoffs,
            "kd_before": float(self.history.history["cora_kd_before"][0]),
            "kd_after": float(self.history.history["cora_kd_after"][0]),
            "rolled_back": bool(self.history.history["cora_rolled_back"][0]),
            "best_weights": self.history.history.get("cora_best", [None])[0],
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


def ptq_model(fp_model, weight_bits: int, activation_bits: int, x_calib):
    """Post-training quantization: LSQ steps at their minimum-MSE value, activation ranges
    calibrated on every sample of ``x_calib``; no weight is trained. A new model."""
    model = quantize_model(fp_model, EdgePlusQuantizeScheme(weight_bits, activation_bits,
                                                            learnable_scales=True))
    calibrate_activation_ranges(model, x_calib, batches=math.ceil(len(x_calib) / 256))
    return model


def cora_ptq(fp_model, x, y=None, config: CoRaConfig | None = None, verbose: int = 0,
             validation_data=None) -> CoRaRun:
    """PTQ + CoRa adapters of ``fp_model`` from ``config.calib_samples`` samples of ``x``.

    ``y`` (integer labels, optional) feeds the accuracy metric of the calibration and, with
    ``config.holdout``, the held-out slice that keeps the best weights (module doc).
    ``validation_data=(x_val, y_val)`` (e.g. the test set) only fills ``run.accuracy`` with
    the plain PTQ model's accuracy (before the adapters) and the final one: it never chooses
    weights. ``fp_model`` is not modified.
    """
    config = config or CoRaConfig()
    check_keras2_model(fp_model, "fp_model")
    tf.keras.utils.set_random_seed(config.seed)
    seconds = {}
    x_calib, data, held = _calibration_split(x, y, config)

    start = time.perf_counter()
    ptq = ptq_model(fp_model, config.weight_bits, config.activation_bits, x_calib)
    seconds["quantize"] = time.perf_counter() - start
    accuracy = {}
    if validation_data is not None:
        accuracy["ptq"] = _accuracy(ptq, validation_data)

    start = time.perf_counter()
    search, ranks = None, None
    if config.rank_search == "butterworth":
        x_fit = data[0] if isinstance(data, tuple) else data  # not the held-out slice
        search = adapters.search_ranks(ptq, fp_model, x_fit, budget=config.budget,
                                       steps=config.search_steps, seed=config.seed,
                                       verbose=verbose)
        ranks = search.ranks
    model = adapters.add_residual_adapters(ptq, fp_model, budget=config.budget, rank=ranks,
                                           adapter_bits=config.adapter_bits)
    seconds["ranks"] = time.perf_counter() - start

    start = time.perf_counter()
    history = adapters.calibrate(model, data, steps=config.steps, batch_size=config.batch_size,
                                 learning_rate=config.learning_rate, verbose=verbose,
                                 seed=config.seed, validation_data=held,
                                 train_scales=config.train_scales, train_bn=config.train_bn)
    seconds["calibrate"] = time.perf_counter() - start
    if held is not None and verbose:
        print(f"[cora] held out a seeded random {config.holdout * 100:.0f} % of the calibration "
              f"samples ({len(held[1])}, not trained on): "
              f"{describe_best(history.history['cora_best'][0])}", flush=True)
    if validation_data is not None:
        accuracy["cora"] = _accuracy(model, validation_data)
    return CoRaRun(model, history, len(x_calib), seconds, accuracy, search, config)


def qat_same_steps(fp_model, x, y, config: CoRaConfig | None = None, learning_rate: float = 5e-4,
                   verbose: int = 0) -> keras.Model:
    """The like-for-like QAT baseline of :func:`cora_ptq`: the same ``calib_samples``, the same
    held-out slice and the same PTQ start, then plain QAT (sparse cross-entropy from logits on
    the labels, every weight and LSQ step trained, Adam at ``learning_rate``, batch
    ``config.batch_size``) for exactly ``config.steps`` steps, checked on the held-out slice
    before and after each fifth of the steps; the best weights are kept. A new model.

    ``learning_rate`` 5e-4 is what benchmarks/cora chose once on Fashion-MNIST W4 quick (test
    accuracy 1e-4: 0.798, 5e-4: 0.815; PTQ 0.807).
    """
    config = config or CoRaConfig()
    check_keras2_model(fp_model, "fp_model")
    if y is None:
        raise ValueError("qat_same_steps trains on labels: pass y (integer class labels).")
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real) \
            or not learning_rate > 0:
        raise ValueError(f"learning_rate must be a number > 0, got {learning_rate!r}.")
    tf.keras.utils.set_random_seed(config.seed)
    x_calib, (x_fit, y_fit), held = _calibration_split(x, y, config)
    model = ptq_model(fp_model, config.weight_bits, config.activation_bits, x_calib)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    parts = step_parts(config.steps) if held else 1
    callbacks = [BestWeights(*held)] if held else []
    model.fit(repeated_batches(x_fit, y_fit, config.batch_size, config.seed), epochs=parts,
              steps_per_epoch=config.steps // parts, verbose=verbose, callbacks=callbacks)
    if callbacks and verbose:
        print(f"[qat_same_steps] {callbacks[0].describe()}", flush=True)
    return model


def _calibration_split(x, y, config: CoRaConfig):
    """(the calibration inputs, the KD/QAT training data, the held-out (x, y) or None)."""
    x = np.asarray(x)
    if y is not None and len(np.asarray(y)) != len(x):
        raise ValueError(f"x has {len(x)} samples but y has {len(np.asarray(y))} labels.")
    pick = np.random.default_rng(config.seed).permutation(len(x))[: config.calib_samples]
    x_calib = x[pick]
    if y is None:
        return x_calib, x_calib, None
    y_calib = np.asarray(y)[pick]
    if not config.holdout:
        return x_calib, (x_calib, y_calib), None
    train, held = holdout_split(len(x_calib), config.holdout, config.seed)
    return x_calib, (x_calib[train], y_calib[train]), (x_calib[held], y_calib[held])


def _accuracy(model, validation_data) -> float:
    x_val, y_val = validation_data
    logits = model.predict(np.asarray(x_val), batch_size=512, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == np.asarray(y_val)))
