"""``search_ranks``: CoRa's differentiable rank search with a Butterworth cutoff per layer.

The method (ALGORITHMS.md section 3, Luo et al. 2024): every adapted layer gets a full-rank
adapter ``R = min(K, out)`` initialised from the SVD of its residual, and a learnable cutoff
``f_c`` in ``[1/R, 1]``. The ``i``-th singular direction (``i = 1..R``) is weighted by a
Butterworth low-pass

    T_i = 1 / sqrt(1 + ((i / R) / f_c) ** (2 n))

between ``A`` and ``B``. Only the cutoffs train, on

    loss = L_KD + gamma * exp(relu(sum_l f_c,l * w_l - budget)),

``w_l`` = the layer's full-rank adapter parameters / all adapted kernels' parameters (so
``sum_l f_c,l w_l`` is the adapter parameter fraction the cutoffs stand for), with Adam
(lr 0.01, gradient norm clipped at 0.2, batch 128). The final rank is ``ceil(R * f_c)``.

Choices stated (the paper is silent on them):

* **Task loss** = the KD cross-entropy from the FP model (as :func:`calibrate`), so no
  labels are needed and the search optimises what calibration will.
* **Start**: every ``f_c`` at the same value, ``budget / sum_l w_l`` (clipped to
  ``[1/R, 1]``), i.e. on the budget. Below the budget the penalty is a constant ``gamma``
  with no gradient, so the cutoffs rise with the KD gradient; above it the penalty pushes
  each one down in proportion to ``w_l``: layers whose KD gain per parameter is largest end
  higher.
* **The budget is a hard limit after rounding**: ``ceil``, a last step slightly over the
  budget, and the floor ``f_c >= 1/R`` (rank 1 for every layer can cost more than a small
  budget) can leave the ranks above it; then the rank increments are kept in decreasing
  Butterworth weight ``T_i`` while they fit ``floor(budget * kernel params)``, so the ones
  furthest past their layer's cutoff go first, and a layer can end at rank 0. Ranks stop
  at :func:`~tfmot_edgeplus.adapters.svd.useful_rank` (an adapter no larger than its
  kernel), as in the greedy allocation.
* **Nothing changes in the models**: the search model (float adapters at full rank, the
  gates) shares ``qat_model``'s layers, whose activation ranges are calibrated on ``data``
  for the search and then restored with every other variable of ``qat_model``.
  Forward passes run in inference mode (BatchNorm moving statistics, fixed ranges).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from tfmot_edgeplus._compat import keras, tf
from tfmot_edgeplus.adapters import svd as svd_lib
from tfmot_edgeplus.adapters.calibrate import _positive_int, _prepare_data
from tfmot_edgeplus.adapters.insert import _adapted_model, check_budget
from tfmot_edgeplus.distillation.distributions import kd_cross_entropy
from tfmot_edgeplus.quantization.calibrate import calibrate_activation_ranges


class ButterworthGate(keras.layers.Layer):
    """Scales channel ``i`` (1-based) of its input by ``1 / sqrt(1 + ((i/R)/f_c)^(2n))``."""

    def __init__(self, full_rank: int, order: int, initial_cutoff: float, **kwargs):
        super().__init__(**kwargs)
        self.full_rank = int(full_rank)
        self.order = int(order)
        self.initial_cutoff = float(initial_cutoff)
        self.cutoff = self.add_weight(
            name="cutoff", shape=(), trainable=True,
            initializer=keras.initializers.Constant(self.initial_cutoff))
        self._positions = tf.constant(
            np.arange(1, self.full_rank + 1, dtype=np.float32) / self.full_rank)

    def weights_per_rank(self):
        """``T_i`` for ``i = 1..R``."""
        ratio = self._positions / self.cutoff
        return tf.math.rsqrt(1.0 + tf.pow(ratio, 2.0 * self.order))

    def call(self, inputs):
        return inputs * self.weights_per_rank()

    def project(self):
        """Clip the cutoff back into ``[1/R, 1]`` (after an optimizer step)."""
        self.cutoff.assign(tf.clip_by_value(self.cutoff, 1.0 / self.full_rank, 1.0))

    def get_config(self):
        return {**super().get_config(), "full_rank": self.full_rank, "order": self.order,
                "initial_cutoff": self.initial_cutoff}


@dataclass(frozen=True)
class RankSearch:
    """What :func:`search_ranks` found.

    Attributes:
      ranks: ``{layer name: rank}``, to pass as ``add_residual_adapters(..., rank=ranks)``.
      cutoffs: ``{layer name: f_c}`` after the search.
      full_ranks: ``{layer name: R}``.
      budget: the parameter budget (fraction of the adapted kernels' parameters).
      param_fraction: adapter parameters of ``ranks`` / adapted kernel parameters.
      trimmed: rank increments of ``ceil(R f_c)`` dropped to meet the budget.
      history: per step ``kd``, ``penalty`` and ``fraction`` (``sum f_c w_l``).
    """

    ranks: dict
    cutoffs: dict
    full_ranks: dict
    budget: float
    param_fraction: float
    trimmed: int
    history: dict = field(repr=False)


def _fixed_ranks(cutoffs, full_ranks, costs, budget_params, order, caps=None):
    """``ceil(R * f_c)`` per layer (at most ``caps[name]``), then keep the strongest
    increments that fit the budget.

    Every increment ``i <= ceil(R f_c)`` of every layer is weighted by its ``T_i``; taken in
    decreasing weight (ties: cheaper first), each is kept if it is the next rank of its layer
    and still fits ``budget_params``. ``T_i`` decreases with ``i``, so a layer's increments
    come in order. Returns ``(ranks, dropped increments)``."""
    caps = caps or full_ranks
    ceiled = {n: min(caps[n], math.ceil(full_ranks[n] * cutoffs[n] - 1e-6)) for n in cutoffs}
    increments = []
    for name, top in ceiled.items():
        for i in range(1, top + 1):
            ratio = (i / full_ranks[name]) / cutoffs[name]
            weight = round(1.0 / math.sqrt(1.0 + ratio ** (2 * order)), 6)
            increments.append((-weight, costs[name], name, i))
    ranks = dict.fromkeys(cutoffs, 0)
    blocked, remaining = set(), budget_params
    for _, cost, name, i in sorted(increments):
        if name in blocked or i != ranks[name] + 1:
            continue
        if cost > remaining:
            blocked.add(name)
            continue
        ranks[name] = i
        remaining -= cost
    return ranks, sum(ceiled.values()) - sum(ranks.values())


def _positive_real(value, what, fix):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"{what} must be a number > 0, got {value!r}. {fix}")
    return float(value)


def search_ranks(qat_model, fp_model, data, budget=0.05, steps=100, order=4, gamma=1.0,
                 learning_rate=0.01, clipnorm=0.2, batch_size=128, layers="all", verbose=1,
                 seed=0, eval_samples=2048) -> RankSearch:
    """Learn one Butterworth cutoff per layer under ``budget``; return the fixed ranks.

    Args:
      qat_model, fp_model, layers: as for
        :func:`~tfmot_edgeplus.adapters.add_residual_adapters`.
      data: calibration inputs (NumPy ``x``, ``(x, y)`` or a ``tf.data.Dataset``), as for
        :func:`~tfmot_edgeplus.adapters.calibrate`; labels are not used.
      budget: adapter parameters as a fraction of the adapted kernels' parameters, (0, 1].
      steps: Adam steps on the cutoffs.
      order: the Butterworth order ``n`` (the paper uses 4 to 6).
      gamma: weight of the budget penalty.
      learning_rate, clipnorm, batch_size: the paper's 0.01, 0.2 and 128.
      verbose: 1 shows a progress bar.
      seed: shuffling seed of NumPy data.
      eval_samples: samples of ``data`` the search model's activation ranges are set from.

    Returns:
      A :class:`RankSearch`; ``add_residual_adapters(qat_model, fp_model,
      rank=result.ranks)`` builds the adapters.
    """
    budget = check_budget(budget)
    steps = _positive_int(steps, "steps")
    batch_size = _positive_int(batch_size, "batch_size")
    order = _positive_int(order, "order")
    gamma = _positive_real(gamma, "gamma", "It weighs the budget penalty; the default is 1.0.")
    learning_rate = _positive_real(learning_rate, "learning_rate", "The paper uses 0.01.")
    clipnorm = _positive_real(clipnorm, "clipnorm", "The paper clips gradients at 0.2.")

    gates = {}

    def make_gate(name, full_rank):
        gates[name] = ButterworthGate(full_rank, order, 1.0, name=f"{name}_cora_gate")
        return gates[name]

    saved = [(v, v.numpy()) for v in qat_model.variables]
    try:
        model = _adapted_model(qat_model, fp_model, budget, "full", layers, None, gate=make_gate)
        record = model.cora
        full_ranks = {n: g.full_rank for n, g in gates.items()}
        kernel_shapes = {n: tuple(fp_model.get_layer(n).kernel.shape) for n in gates}
        costs = {n: svd_lib.adapter_params(kernel_shapes[n], 1) for n in gates}
        total = record.adapted_kernel_params
        shares = {n: costs[n] * full_ranks[n] / total for n in gates}
        start = budget / sum(shares.values())
        for gate in gates.values():
            gate.cutoff.assign(min(max(start, 1.0 / gate.full_rank), 1.0))

        dataset, x_eval, _ = _prepare_data(data, model, batch_size, seed, eval_samples)
        calibrate_activation_ranges(model, x_eval, batch_size=min(256, len(x_eval)))
        names = list(gates)
        cutoffs = [gates[n].cutoff for n in names]
        share_vector = tf.constant([shares[n] for n in names], tf.float32)
        optimizer = keras.optimizers.Adam(learning_rate, clipnorm=clipnorm)

        @tf.function
        def step(x):
            teacher = fp_model(x, training=False)
            with tf.GradientTape() as tape:
                kd = tf.reduce_mean(kd_cross_entropy(model(x, training=False), teacher))
                fraction = tf.reduce_sum(tf.stack(cutoffs) * share_vector)
                penalty = gamma * tf.exp(tf.nn.relu(fraction - budget))
                loss = kd + penalty
            optimizer.apply_gradients(zip(tape.gradient(loss, cutoffs), cutoffs))
            for name in names:
                gates[name].project()
            return kd, penalty, fraction

        history = {"kd": [], "penalty": [], "fraction": []}
        progbar = keras.utils.Progbar(steps, verbose=verbose, stateful_metrics=["fraction"])
        for index, batch in enumerate(dataset.take(steps)):
            x = batch[0] if isinstance(batch, tuple) else batch
            kd, penalty, fraction = (float(v) for v in step(x))
            history["kd"].append(kd)
            history["penalty"].append(penalty)
            history["fraction"].append(fraction)
            progbar.update(index + 1, [("kd", kd), ("fraction", fraction)])
        found = {n: float(gates[n].cutoff.numpy()) for n in names}
    finally:
        for variable, value in saved:
            variable.assign(value)

    budget_params = math.floor(budget * total)
    caps = {n: svd_lib.useful_rank(kernel_shapes[n]) for n in names}
    ranks, trimmed = _fixed_ranks(found, full_ranks, costs, budget_params, order, caps)
    if not any(ranks.values()):
        raise ValueError(
            f"budget={budget} allows {budget_params} adapter parameters, less than the cheapest "
            f"rank-1 adapter ({min(costs.values())}): raise budget.")
    return RankSearch(
        ranks=ranks, cutoffs=found, full_ranks=full_ranks, budget=budget,
        param_fraction=sum(costs[n] * r for n, r in ranks.items()) / total,
        trimmed=trimmed, history=history)


__all__ = ["ButterworthGate", "RankSearch", "search_ranks"]
