"""QCore on-device calibration. For now: the NumPy reference of the bit-flip weight update
(bit-exact with tflm_ops' ``edgeplus_bitflip_apply``)."""

from tfmot_edgeplus.calibration.bitflip_reference import bitflip_apply, bitflip_apply_packed

__all__ = ["bitflip_apply", "bitflip_apply_packed"]
