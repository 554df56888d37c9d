"""Low-bit quantization-aware training for TF-MOT: quantizers, QuantizeConfigs, a scheme."""

from tfmot_edgeplus.quantization.best_weights import BestWeights, holdout_split
from tfmot_edgeplus.quantization.calibrate import (
    calibrate_activation_ranges,
    calibrate_batchnorm,
)
from tfmot_edgeplus.quantization.configs import (
    EdgePlusOutputQuantizeConfig,
    EdgePlusWeightQuantizeConfig,
)
from tfmot_edgeplus.quantization.quantizers import (
    ACTIVATION_BITS,
    WEIGHT_BITS,
    ActivationRangeQuantizer,
    LearnedScaleWeightQuantizer,
)
from tfmot_edgeplus.quantization.registry import EdgePlusQuantizeRegistry
from tfmot_edgeplus.quantization.scheme import (
    EdgePlusQuantizeScheme,
    quantize_model,
    quantize_scope,
)

__all__ = [
    "ACTIVATION_BITS",
    "WEIGHT_BITS",
    "ActivationRangeQuantizer",
    "BestWeights",
    "EdgePlusOutputQuantizeConfig",
    "EdgePlusQuantizeRegistry",
    "EdgePlusQuantizeScheme",
    "EdgePlusWeightQuantizeConfig",
    "LearnedScaleWeightQuantizer",
    "calibrate_activation_ranges",
    "calibrate_batchnorm",
    "holdout_split",
    "quantize_model",
    "quantize_scope",
]
