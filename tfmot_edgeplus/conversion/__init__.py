"""From a QAT model to a TFLite flatbuffer that keeps its low bits."""

from tfmot_edgeplus.conversion.converter import convert
from tfmot_edgeplus.conversion.edgeplus_kernels import Placement, describe_placement
from tfmot_edgeplus.conversion.lowbit import LowBitStorageError, describe_weights, weight_bytes
from tfmot_edgeplus.conversion.report import ConversionReport, conversion_report

__all__ = [
    "ConversionReport",
    "LowBitStorageError",
    "Placement",
    "conversion_report",
    "convert",
    "describe_placement",
    "describe_weights",
    "weight_bytes",
]
