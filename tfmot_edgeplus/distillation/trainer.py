"""CLCTrainer: QuaRC's cascaded layer correction + knowledge distillation inside model.fit.

    trainer = CLCTrainer(qat_model, fp_model, layers="all", beta=1.0, temperature=1.0)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    history = trainer.fit(dataset, epochs=5)      # logs: loss, kd_loss, clc_loss, accuracy
    qat_model  # trained in place; convert/save it as usual (the trainer is only a harness)

Loss per example (ALGORITHMS.md section 1, Eqs. 8 and 9)::

    L = L_KD + beta * L_CLC + alpha * CE(y, student)
    L_KD  = -sum_m p_T^m log p_Q^m      (softmax at `temperature`, times temperature**2)
    L_CLC = sum_c mean_pos KL(p_Q^c || p_F^c)   (channel softmax at `feature_temperature`)

The batch reduction is ``tf.nn.compute_average_loss`` (sum / global batch size), so gradients
summed across ``tf.distribute`` replicas equal the single-device ones. The logged figures are
``keras.metrics.Mean`` trackers fed per-example values, i.e. exact sample averages over the
epoch across replicas.

Choices stated:
  * Both models output logits (``from_logits=True``); with ``from_logits=False`` the outputs
    are probabilities and their logs are used.
  * ``alpha`` (hard-label cross-entropy weight) defaults to 0, as in the paper; labels are
    then optional (KD on unlabeled data works). Sparse or one-hot labels are accepted.
  * The teacher and correction model are frozen by construction: they run in inference mode
    (BatchNorm uses its moving statistics), their outputs pass through ``stop_gradient`` and
    only ``student.trainable_variables`` are given to the optimizer. Their ``trainable`` flags
    are left as they were (the caller's FP model is not mutated).
  * ``beta`` defaults to 1. The paper's 1e5 / 3e3 belong to its (unstated) distribution and
    reduction; ours is a per-position mean KL summed over layers (each term is O(0.1-1) for
    a W2 student), so beta is on a different scale. Sweep it (benchmarks); the tests use 1-5.
"""

from __future__ import annotations

from tfmot_edgeplus._compat import check_keras2_model, keras, tf
from tfmot_edgeplus.distillation.distributions import (
    check_over,
    clc_divergence,
    kd_cross_entropy,
)
from tfmot_edgeplus.distillation.matching import check_quantized, match_layers


def _non_negative(value, what: str, fix: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a number, got {value!r}.") from None
    if not value >= 0.0:  # also refuses NaN
        raise ValueError(f"{what} must be >= 0, got {value}. {fix}")
    return value


def _positive(value, what: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a number, got {value!r}.") from None
    if not value > 0.0:
        raise ValueError(f"{what} must be > 0, got {value}. Use 1.0 for plain softmax.")
    return value


def _single_output(model, what: str):
    if len(model.outputs) != 1:
        raise ValueError(
            f"{what} {model.name!r} has {len(model.outputs)} outputs; CLCTrainer needs a "
            "classifier with one logits output."
        )
    return model.outputs[0]


class CLCTrainer(keras.Model):
    """Train a QAT ``student`` with KD from ``teacher`` and CLC from ``correction_model``.

    Args:
      student: the quantized model (from ``tfmot_edgeplus.quantize_model`` or TF-MOT's
        ``quantize_model`` / ``quantize_apply``); trained in place.
      teacher: full-precision model giving the KD targets; same number of classes.
      layers: ``"all"`` (every Conv1D/Conv2D/DepthwiseConv2D/Dense but the last) or a list of
        layer names (FP names like ``"conv1"`` or wrapper names like ``"quant_conv1"``).
        See :mod:`tfmot_edgeplus.distillation.matching` for which tensor is compared.
      beta: weight of L_CLC (>= 0; 0 turns CLC off and builds no feature extractors).
      temperature: KD softmax temperature T (> 0); L_KD is scaled by T**2.
      correction_model: FP model with the student's architecture and layer names that gives
        the intermediate targets; default the teacher.
      feature_temperature: tau of the softmax turning feature maps into distributions.
      feature_softmax: what that softmax runs over: ``"channels"`` at each position (default)
        or ``"positions"`` for each channel (see :mod:`~tfmot_edgeplus.distillation.
        distributions`).
      alpha: weight of the hard-label cross-entropy (>= 0; default 0 = the paper).
      from_logits: whether student and teacher output logits (True) or probabilities.
    """

    def __init__(self, student, teacher, layers="all", beta: float = 1.0,
                 temperature: float = 1.0, correction_model=None,
                 feature_temperature: float = 1.0, feature_softmax: str = "channels",
                 alpha: float = 0.0,
                 from_logits: bool = True, name: str = "clc_trainer", **kwargs):
        super().__init__(name=name, **kwargs)
        check_quantized(student)
        check_keras2_model(teacher, "teacher")
        correction_model = teacher if correction_model is None else correction_model
        check_keras2_model(correction_model, "correction_model")
        self.beta = _non_negative(beta, "beta", "Use 0 to turn cascaded layer correction off.")
        self.alpha = _non_negative(alpha, "alpha", "Use 0 for pure distillation (the paper).")
        self.temperature = _positive(temperature, "temperature")
        self.feature_temperature = _positive(feature_temperature, "feature_temperature")
        self.feature_softmax = check_over(feature_softmax, "feature_softmax")
        self.from_logits = bool(from_logits)

        s_out = _single_output(student, "student")
        t_out = _single_output(teacher, "teacher")
        if tuple(s_out.shape[1:]) != tuple(t_out.shape[1:]):
            raise ValueError(
                f"teacher {teacher.name!r} outputs shape {tuple(t_out.shape[1:])} per example but "
                f"student {student.name!r} outputs {tuple(s_out.shape[1:])}; KD needs the same "
                "classes. Use the FP model the student was quantized from, or a teacher with "
                "the same output layer."
            )

        self.student = student
        self.teacher = teacher
        self.correction_model = correction_model
        self._correction_is_teacher = correction_model is teacher
        self.pairs = tuple(match_layers(student, correction_model, layers) if self.beta > 0 else ())

        # One forward pass per model yields the logits and every chosen feature map.
        self._student_extractor = keras.Model(
            student.inputs, [s_out] + [p.student_layer.output for p in self.pairs],
            name=f"{student.name}_clc_features")
        if self._correction_is_teacher:
            self._fp_extractor = keras.Model(
                teacher.inputs, [t_out] + [p.fp_layer.output for p in self.pairs],
                name=f"{teacher.name}_clc_features")
        else:
            self._fp_extractor = keras.Model(
                correction_model.inputs, [correction_model.outputs[0]] +
                [p.fp_layer.output for p in self.pairs],
                name=f"{correction_model.name}_clc_features")

        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.kd_tracker = keras.metrics.Mean(name="kd_loss")
        self.clc_tracker = keras.metrics.Mean(name="clc_loss")

    @property
    def layer_names(self) -> list[str]:
        """Original (FP) names of the corrected layers, in graph order."""
        return [pair.name for pair in self.pairs]

    # ---------------------------------------------------------------- Keras plumbing
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):
        """Like ``keras.Model.compile`` but without ``loss``: the trainer's loss is fixed
        (KD + beta * CLC + alpha * CE); use ``alpha`` for a hard-label term."""
        if loss is not None:
            raise ValueError(
                f"CLCTrainer.compile() got loss={loss!r}, but the trainer computes its own loss "
                "(L_KD + beta * L_CLC). Drop `loss`; pass alpha=... to CLCTrainer for an added "
                "hard-label cross-entropy."
            )
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)

    @property
    def metrics(self):
        out = [self.loss_tracker, self.kd_tracker, self.clc_tracker]
        if self._is_compiled and self.compiled_metrics is not None:
            out += self.compiled_metrics.metrics
        return out

    def call(self, inputs, training=None):
        """The student's prediction (``predict`` / ``__call__`` return student outputs)."""
        return self.student(inputs, training=training)

    def get_config(self):
        raise NotImplementedError(
            "CLCTrainer is a training harness and is not serialized; save trainer.student "
            "(the QAT model) instead."
        )

    # ---------------------------------------------------------------- the loss
    def _logits(self, outputs):
        if self.from_logits:
            return outputs
        return tf.math.log(tf.clip_by_value(tf.cast(outputs, tf.float32), 1e-12, 1.0))

    def _per_example_losses(self, x, y, training: bool):
        """(total, kd, clc, student_outputs), the first three of shape (batch,)."""
        student_out = self._student_extractor(x, training=training)
        fp_out = tf.nest.map_structure(tf.stop_gradient, self._fp_extractor(x, training=False))
        if not isinstance(student_out, (list, tuple)):
            student_out, fp_out = [student_out], [fp_out]
        student_pred = student_out[0]
        if self._correction_is_teacher:
            teacher_pred = fp_out[0]
        else:
            teacher_pred = tf.stop_gradient(self.teacher(x, training=False))
        kd = kd_cross_entropy(self._logits(student_pred), self._logits(teacher_pred),
                              self.temperature)
        clc = tf.zeros_like(kd)
        for pair, s_feat, f_feat in zip(self.pairs, student_out[1:], fp_out[1:]):
            s_feat = tf.reshape(s_feat, tf.shape(f_feat))  # a Conv1D run as a Conv2D: (1, steps)
            clc += clc_divergence(s_feat, tf.stop_gradient(f_feat), self.feature_temperature,
                                  pair.channel_axis, self.feature_softmax)
        total = kd + self.beta * clc
        if self.alpha > 0:
            if y is None:
                raise ValueError(
                    "alpha > 0 adds a hard-label cross-entropy but the data has no labels; "
                    "feed (x, y) or set alpha=0.")
            total += self.alpha * self._hard_label_ce(y, student_pred)
        return total, kd, clc, student_pred

    def _hard_label_ce(self, y, pred):
        y_rank, pred_rank = y.shape.rank, pred.shape.rank
        sparse = y_rank is not None and pred_rank is not None and (
            y_rank < pred_rank or (y_rank == pred_rank and y.shape[-1] == 1))
        if sparse:
            return keras.losses.sparse_categorical_crossentropy(
                y, pred, from_logits=self.from_logits)
        return keras.losses.categorical_crossentropy(y, pred, from_logits=self.from_logits)

    def _update_trackers(self, total, kd, clc, reg, sample_weight):
        self.loss_tracker.update_state(total + reg, sample_weight=sample_weight)
        self.kd_tracker.update_state(kd, sample_weight=sample_weight)
        self.clc_tracker.update_state(clc, sample_weight=sample_weight)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        variables = self.student.trainable_variables
        with tf.GradientTape() as tape:
            total, kd, clc, pred = self._per_example_losses(x, y, training=True)
            loss = tf.nn.compute_average_loss(total, sample_weight=sample_weight)
            reg = tf.constant(0.0)
            if self.student.losses:
                reg = tf.add_n([tf.cast(v, tf.float32) for v in self.student.losses])
                loss += tf.nn.scale_regularization_loss(reg)
        self.optimizer.minimize(loss, variables, tape=tape)
        self._update_trackers(total, kd, clc, reg, sample_weight)
        if y is not None:
            self.compiled_metrics.update_state(y, pred, sample_weight)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        """Evaluate the student: the same loss terms (as ``val_*`` in fit) and metrics."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        total, kd, clc, pred = self._per_example_losses(x, y, training=False)
        self._update_trackers(total, kd, clc, tf.constant(0.0), sample_weight)
        if y is not None:
            self.compiled_metrics.update_state(y, pred, sample_weight)
        return {m.name: m.result() for m in self.metrics}


__all__ = ["CLCTrainer"]
