"""QuaRC's cascaded layer correction (CLC) + knowledge distillation (KD) for QAT in model.fit.

    trainer = CLCTrainer(qat_model, fp_model, layers="all", beta=1.0, temperature=1.0)
    trainer.compile(optimizer="adam", metrics=["accuracy"])
    trainer.fit(x, y, epochs=5)   # trains qat_model in place

The transforms (feature map -> channel-softmax distribution, KL, KD cross-entropy) are public
so that coreset scoring and tests use the same definitions.

Deviations from the paper (QuaRC's CLC + KD, ALGORITHMS.md 1):

* The paper does not say how a feature map becomes a distribution; ours is a softmax over
  channels at each position, at ``feature_temperature``
  (:mod:`~tfmot_edgeplus.distillation.distributions`), and L_CLC is the per-position mean KL
  summed over layers, so ``beta`` is on our scale: the paper's 1e5 / 3e3 do not carry over
  (:class:`CLCTrainer`).
* The compared tensor is the named layer's own output in both models, i.e. a conv's output
  before its BatchNorm (:mod:`~tfmot_edgeplus.distillation.matching`); ``layers="all"``
  corrects every Conv/Dense but the last, as the paper's "all intermediate layers".
* An optional hard-label term (``alpha``, default 0 as in the paper) is ours.
"""

from tfmot_edgeplus.distillation.distributions import (
    clc_divergence,
    feature_distribution,
    feature_log_distribution,
    kd_cross_entropy,
)
from tfmot_edgeplus.distillation.matching import default_layer_names, match_layers
from tfmot_edgeplus.distillation.trainer import CLCTrainer

__all__ = [
    "CLCTrainer",
    "clc_divergence",
    "default_layer_names",
    "feature_distribution",
    "feature_log_distribution",
    "kd_cross_entropy",
    "match_layers",
]
