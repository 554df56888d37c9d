"""CoRa end to end: post-training quantization, residual adapters, a short KD calibration.

One function, :func:`cora_ptq`, runs the recipe of ALGORITHMS.md section 3 with the
building blocks of :mod:`tfmot_edgeplus.adapters`; ``edgeplus cora``, the demo
(``DemoConfig(method="cora")``) and ``benchmarks/cora.py`` go through it::

    config = CoRaConfig(weight_bits=3, budget=0.05, steps=250, calib_samples=1600)
    run = cora_ptq(fp_model, x_train, y_train, config, validation_data=(x_test, y_test))
    run.model            # quantized model + adapters: convert() it as usual
    run.accuracy         # {"ptq": before the adapters, "cora": after calibration}

Steps (each timed in ``run.seconds``):

1. ``calib_samples`` training samples drawn at random (``seed``): the only data used.
2. :func:`ptq_model`: ``quantize_model(fp_model, EdgePlusQuantizeScheme(...,
   learnable_scales=True))``; LSQ steps start at their minimum-MSE value, which is a good
   PTQ on its own; activation ranges are calibrated on all the samples. No weight is trained.
3. Ranks: ``rank_search="greedy"`` allocates them under ``budget`` from the residuals'
   singular values (:func:`~tfmot_edgeplus.adapters.allocate_ranks`, no data), or
   ``"butterworth"`` learns them with the paper's differentiable cutoff search
   (:func:`~tfmot_edgeplus.adapters.search_ranks`, ``search_steps`` steps).
4. :func:`~tfmot_edgeplus.adapters.add_residual_adapters` and
   :func:`~tfmot_edgeplus.adapters.calibrate` (KD from ``fp_model``, adapters only,
   ``steps`` steps; rolled back if the KD loss got worse).
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from tfmot_edgeplus import adapters
from tfmot_edgeplus._compat import check_keras2_model, keras, tf
from tfmot_edgeplus.quantization import (
    EdgePlusQuantizeScheme,
    calibrate_activation_ranges,
    quantize_model,
)
from tfmot_edgeplus.quantization.quantizers import WEIGHT_BITS, check_bits

__all__ = ["RANK_SEARCHES", "CoRaConfig", "CoRaRun", "cora_ptq", "ptq_model"]

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

    ``y`` (integer labels, optional) only feeds the accuracy metric of the calibration.
    ``validation_data=(x_val, y_val)`` fills ``run.accuracy`` with the plain PTQ model's
    accuracy (before the adapters) and the final one. ``fp_model`` is not modified.
    """
    config = config or CoRaConfig()
    check_keras2_model(fp_model, "fp_model")
    x = np.asarray(x)
    if y is not None and len(np.asarray(y)) != len(x):
        raise ValueError(f"x has {len(x)} samples but y has {len(np.asarray(y))} labels.")
    tf.keras.utils.set_random_seed(config.seed)
    seconds = {}
    pick = np.random.default_rng(config.seed).permutation(len(x))[: config.calib_samples]
    x_calib = x[pick]
    data = x_calib if y is None else (x_calib, np.asarray(y)[pick])

    start = time.perf_counter()
    ptq = ptq_model(fp_model, config.weight_bits, config.activation_bits, x_calib)
    seconds["quantize"] = time.perf_counter() - start
    accuracy = {}
    if validation_data is not None:
        accuracy["ptq"] = _accuracy(ptq, validation_data)

    start = time.perf_counter()
    search, ranks = None, None
    if config.rank_search == "butterworth":
        search = adapters.search_ranks(ptq, fp_model, x_calib, budget=config.budget,
                                       steps=config.search_steps, seed=config.seed,
                                       verbose=verbose)
        ranks = search.ranks
    model = adapters.add_residual_adapters(ptq, fp_model, budget=config.budget, rank=ranks,
                                           adapter_bits=config.adapter_bits)
    seconds["ranks"] = time.perf_counter() - start

    start = time.perf_counter()
    history = adapters.calibrate(model, data, steps=config.steps, batch_size=config.batch_size,
                                 learning_rate=config.learning_rate, verbose=verbose,
                                 seed=config.seed)
    seconds["calibrate"] = time.perf_counter() - start
    if validation_data is not None:
        accuracy["cora"] = _accuracy(model, validation_data)
    return CoRaRun(model, history, len(x_calib), seconds, accuracy, search, config)


def _accuracy(model, validation_data) -> float:
    x_val, y_val = validation_data
    logits = model.predict(np.asarray(x_val), batch_size=512, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == np.asarray(y_val)))
