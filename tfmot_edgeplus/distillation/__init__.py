"""QuaRC's cascaded layer correction (CLC) + knowledge distillation (KD) for QAT in model.fit.

    trainer = CLCTrainer(qat_model, fp_model, layers="all", beta=1.0, temperature=1.0)
    trainer.compile(optimizer="adam", metrics=["accuracy"])
    trainer.fit(x, y, epochs=5)   # trains qat_model in place

The transforms (feature map -> channel-softmax distribution, KL, KD cross-entropy) are public
so that coreset scoring and tests use the same definitions.
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
