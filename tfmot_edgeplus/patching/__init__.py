"""QuantMCU patch-based inference. For now: the NumPy reference of the tflm_ops conv kernels
(bit-exact with the C), on whole tensors and on patch windows."""

from tfmot_edgeplus.patching.reference import (
    ConvArgumentError,
    ConvParams,
    conv2d,
    conv_geometry,
    conv_input_region,
    depthwise_conv2d,
    make_conv_params,
    quantize_multiplier,
)

__all__ = [
    "ConvArgumentError",
    "ConvParams",
    "conv2d",
    "conv_geometry",
    "conv_input_region",
    "depthwise_conv2d",
    "make_conv_params",
    "quantize_multiplier",
]
