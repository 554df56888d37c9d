"""Host runners: the TFLM interpreter wrapper, and the ctypes binding of tflm_ops."""

from tfmot_edgeplus.runtime.tflm import TFLMError, TFLMRunner

__all__ = ["TFLMError", "TFLMRunner"]
