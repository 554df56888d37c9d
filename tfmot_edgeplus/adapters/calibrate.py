"""``calibrate``: a few hundred steps of KD that train only the CoRa adapters.

Choices stated:

* The loss is :class:`~tfmot_edgeplus.distillation.CLCTrainer`'s KD (``beta=0``, ``alpha=0``):
  labels are optional and only feed the ``accuracy`` metric.
* Only the adapter kernels are trained (plus the LSQ steps of the main layers when
  ``train_scales``, and every BatchNormalization's gamma and beta when ``train_bn``: both
  fold into the per-channel scales and biases the converted model stores anyway, so they
  cost no flatbuffer byte); every other layer is set non-trainable for the run, which also makes
  BatchNorm use its moving statistics, as the BN-scaled initialisation assumes. CLCTrainer
  trains ``student.trainable_variables``, and TF-MOT's wrapper lists its kernel there even
  when the wrapper is frozen, so a small subclass gives the optimizer the exact list.
  The flags are restored afterwards, also on error.
* Activation ranges still unset (the adapter branch's, right after
  ``add_residual_adapters``) are set from the data first
  (:func:`~tfmot_edgeplus.quantization.calibrate_activation_ranges`); during the steps all
  ranges follow their EMA, as in QAT.
* "A calibration step that makes things worse is rolled back". With ``validation_data``
  (labelled samples held out of ``data``; :func:`~tfmot_edgeplus.recipes.cora.cora_ptq`
  holds out 10 % of its calibration samples) that is judged on held-out top-1:
  :class:`~tfmot_edgeplus.quantization.BestWeights` measures it before the first step and
  after each of ``parts`` equal parts of the steps (``parts`` the largest divisor of
  ``steps`` up to 5: 50 steps each for 250) and the best of those weights is kept (ties: the
  lower held-out cross-entropy). Without it (unlabelled data), the KD loss is measured in
  inference mode on (up to ``eval_samples`` of) the data before and after, and if it got
  worse every variable of the model is put back. Either way a warning says when the
  adapters end as they were before calibration. The History gets ``cora_kd_before``,
  ``cora_kd_after`` (of the weights kept), ``cora_rolled_back``, and with
  ``validation_data`` the ``heldout_accuracy`` of each part and ``cora_best`` (the
  BestWeights summary; ``best_epoch`` counts parts, 0 = before calibration).
* ``data`` as a NumPy array / ``(x, y)`` tuple is shuffled (``seed``) and batched by
  ``batch_size``; a ``tf.data.Dataset`` whose elements have the model's input rank is taken
  as already batched, one rank less as single samples (then batched by ``batch_size``).
  Either is repeated as needed for ``steps`` optimizer steps (Adam, ``learning_rate``).
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from tfmot_edgeplus import _tfmot
from tfmot_edgeplus._compat import keras, tf
from tfmot_edgeplus.adapters.insert import adapter_record
from tfmot_edgeplus.distillation import CLCTrainer
from tfmot_edgeplus.quantization.best_weights import BestWeights
from tfmot_edgeplus.quantization.calibrate import (
    calibrate_activation_ranges,
    uncalibrated_ranges,
)
from tfmot_edgeplus.quantization.quantizers import LearnedScaleWeightQuantizer


class _AdapterKDTrainer(CLCTrainer):
    """CLCTrainer (KD only) whose optimizer updates an explicit list of variables."""

    def __init__(self, student, teacher, variables, **kwargs):
        super().__init__(student, teacher, layers="all", beta=0.0, **kwargs)
        self._adapter_variable_refs = [v.ref() for v in variables]

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        variables = [ref.deref() for ref in self._adapter_variable_refs]
        with tf.GradientTape() as tape:
            total, kd, clc, pred = self._per_example_losses(x, y, training=True)
            loss = tf.nn.compute_average_loss(total, sample_weight=sample_weight)
        self.optimizer.minimize(loss, variables, tape=tape)
        self._update_trackers(total, kd, clc, tf.constant(0.0), sample_weight)
        if y is not None:
            self.compiled_metrics.update_state(y, pred, sample_weight)
        return {m.name: m.result() for m in self.metrics}


def _positive_int(value, what):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be an int, got {value!r}.")
    if value <= 0:
        raise ValueError(f"{what} must be >= 1, got {value}. CoRa uses a few hundred (e.g. 250).")
    return int(value)


def _prepare_data(data, model, batch_size, seed, eval_samples):
    """(training dataset repeated forever, x_eval, y_eval or None)."""
    input_rank = len(model.inputs[0].shape)
    sample_shape = tuple(model.inputs[0].shape[1:])
    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        x_spec = spec[0] if isinstance(spec, tuple) else spec
        if x_spec.shape.rank == input_rank - 1:
            data = data.batch(batch_size)
        elif x_spec.shape.rank != input_rank:
            raise ValueError(
                f"data yields x of shape {x_spec.shape}, but the model takes batches shaped "
                f"(N, {', '.join(map(str, sample_shape))}); pass a Dataset of such (x) or (x, y).")
        xs, ys, count = [], [], 0
        for item in data:
            x = item[0] if isinstance(item, tuple) else item
            xs.append(np.asarray(x))
            if isinstance(item, tuple) and len(item) > 1:
                ys.append(np.asarray(item[1]))
            count += len(xs[-1])
            if count >= eval_samples:
                break
        if not xs:
            raise ValueError("data (a tf.data.Dataset) is empty; pass calibration samples.")
        x_eval = np.concatenate(xs)[:eval_samples]
        y_eval = np.concatenate(ys)[:eval_samples] if ys else None
        return data.repeat(), x_eval, y_eval
    y = None
    if isinstance(data, (tuple, list)) and len(data) == 2 and np.ndim(data[0]) == input_rank:
        data, y = data
    x = np.asarray(data, dtype=np.float32)
    if x.ndim != input_rank or tuple(x.shape[1:]) != tuple(
            s if d is None else d for d, s in zip(sample_shape, x.shape[1:])):
        raise ValueError(
            f"data has shape {x.shape}, but the model takes "
            f"(N, {', '.join(map(str, sample_shape))}); "
            "pass a NumPy array x, a tuple (x, y) or a tf.data.Dataset.")
    if len(x) == 0:
        raise ValueError("data is empty; pass calibration samples (e.g. 1,600 images).")
    if y is not None:
        y = np.asarray(y)
        if len(y) != len(x):
            raise ValueError(f"data = (x, y) with {len(x)} samples in x but {len(y)} labels in y.")
    return repeated_batches(x, y, batch_size, seed), x[:eval_samples], \
        None if y is None else y[:eval_samples]


def repeated_batches(x, y, batch_size: int, seed: int):
    """``x`` (and ``y``) shuffled (``seed``, again at each pass), repeated forever, batched;
    a full last batch whenever there are at least ``batch_size`` samples."""
    tensors = x if y is None else (x, y)
    return (tf.data.Dataset.from_tensor_slices(tensors)
            .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
            .repeat()
            .batch(batch_size, drop_remainder=len(x) >= batch_size))


def step_parts(steps: int, most: int = 5) -> int:
    """The number of equal parts (epochs) ``steps`` optimizer steps are split into so that
    the held-out accuracy is checked between them: the largest divisor of ``steps`` <= most."""
    return max(d for d in range(1, min(most, steps) + 1) if steps % d == 0)


def _trained_variables(model, record, train_scales, train_bn=False):
    adapter_layers = [model.get_layer(name) for name in record.adapter_layers]
    variables = [_tfmot.kernel_variable(layer) for layer in adapter_layers]
    if train_bn:
        norms = [getattr(layer, "layer", layer) for layer in model.layers]
        norms = [n for n in norms if isinstance(n, keras.layers.BatchNormalization)]
        if not norms:
            raise ValueError("train_bn=True, but the model has no BatchNormalization layer; "
                             "pass train_bn=False.")
        variables += [v for n in norms for v in (n.gamma, n.beta) if v is not None]
    if train_scales:
        scales = []
        for layer in model.layers:
            for _, quantizer, quantizer_vars in _tfmot.weight_vars(layer):
                if isinstance(quantizer, LearnedScaleWeightQuantizer) \
                        and layer.name not in record.adapter_layers:
                    scales.append(quantizer_vars["scale"])
        if not scales:
            raise ValueError(
                "train_scales=True, but the model's weight quantizers have no learnable steps "
                "(min/max ranges). Quantize with "
                "EdgePlusQuantizeScheme(..., learnable_scales=True) or pass train_scales=False.")
        variables += scales
    return adapter_layers, variables


def _kd_loss(trainer, x, batch_size):
    return float(trainer.evaluate(x, batch_size=batch_size, verbose=0, return_dict=True)["kd_loss"])


def calibrate(model, data, steps=250, teacher=None, learning_rate=1e-3, batch_size=64,
              train_scales=False, verbose=1, seed=0, eval_samples=2048, validation_data=None,
              train_bn=False):
    """Train the adapters of ``model`` for ``steps`` optimizer steps with KD; return the History.

    Args:
      model: a model from :func:`~tfmot_edgeplus.adapters.add_residual_adapters`.
      data: calibration inputs: NumPy ``x``, a tuple ``(x, y)`` (labels only feed the
        accuracy metric) or a ``tf.data.Dataset`` of ``x`` or ``(x, y)``.
      steps: optimizer steps (>= 1; the paper uses < 250).
      teacher: KD teacher; default the ``fp_model`` given to ``add_residual_adapters``.
      learning_rate: Adam's learning rate.
      batch_size: samples per step (NumPy data or an unbatched Dataset).
      train_scales: also train the main layers' LSQ steps (needs ``learnable_scales=True``).
      train_bn: also train every BatchNormalization's gamma and beta (in inference mode).
      verbose: Keras progress bar (1) or silent (0).
      seed: shuffling seed of NumPy data.
      eval_samples: samples of ``data`` on which the KD loss is compared before/after.
      validation_data: ``(x_held, y_held)``, labelled samples held out of ``data``: the
        weights kept are the best by their top-1 (module docstring); None: by the KD loss.
    """
    record = adapter_record(model)
    steps = _positive_int(steps, "steps")
    batch_size = _positive_int(batch_size, "batch_size")
    eval_samples = _positive_int(eval_samples, "eval_samples")
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real) or \
            not learning_rate > 0:
        raise ValueError(f"learning_rate must be a number > 0, got {learning_rate!r}.")
    teacher = record.fp_model if teacher is None else teacher
    dataset, x_eval, y_eval = _prepare_data(data, model, batch_size, seed, eval_samples)
    best = None if validation_data is None else _best_weights(validation_data)
    adapter_layers, variables = _trained_variables(model, record, train_scales, train_bn)

    if uncalibrated_ranges(model):
        calibrate_activation_ranges(model, x_eval, batch_size=min(256, len(x_eval)))

    flags = {id(layer): (layer, layer.trainable) for layer in model.layers}
    try:
        for layer in model.layers:
            layer.trainable = False
        for layer in adapter_layers:
            layer.trainable = True
        trainer = _AdapterKDTrainer(model, teacher, variables)
        trainer.compile(optimizer=keras.optimizers.Adam(learning_rate),
                        metrics=["accuracy"] if y_eval is not None else None)
        saved = [v.numpy() for v in model.variables]
        before = _kd_loss(trainer, x_eval, batch_size)
        if best is None:
            history = trainer.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=verbose)
        else:
            parts = step_parts(steps)
            history = trainer.fit(dataset, epochs=parts, steps_per_epoch=steps // parts,
                                  verbose=verbose, callbacks=[best])
        after = _kd_loss(trainer, x_eval, batch_size)
        if best is None:
            rolled_back = not after <= before  # also when the loss became NaN
            if rolled_back:
                for variable, value in zip(model.variables, saved):
                    variable.assign(value)
                why = f"the KD loss on the calibration data rose from {before:.4f} to {after:.4f}"
        else:
            rolled_back = best.best_epoch == 0
            why = (f"the held-out top-1 ({best.start_accuracy:.4f} before) was not beaten "
                   f"(last {best.last_accuracy:.4f})")
        if rolled_back:
            warnings.warn(
                f"CoRa calibrate: {why} after {steps} steps, so the adapters were restored "
                "to their values before calibration. Try a smaller learning_rate or more data.",
                RuntimeWarning, stacklevel=2)
    finally:
        for layer, trainable in flags.values():
            layer.trainable = trainable
    history.history["cora_kd_before"] = [before]
    history.history["cora_kd_after"] = [before if rolled_back and best is None else after]
    history.history["cora_rolled_back"] = [rolled_back]
    if best is not None:
        history.history["cora_best"] = [best.summary()]
    return history


def _best_weights(validation_data) -> BestWeights:
    if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
        raise ValueError(f"validation_data must be a tuple (x_held, y_held) of labelled samples "
                         f"held out of data, got {type(validation_data).__name__}.")
    return BestWeights(*validation_data)


__all__ = ["calibrate"]
