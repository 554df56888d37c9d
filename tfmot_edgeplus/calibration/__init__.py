"""QCore on-device calibration (ALGORITHMS.md section 2), in integers.

- :func:`split_head` / :class:`IntHead`: the trailing FULLY_CONNECTED layers of a deployed
  model, run in integers bit for bit like TFLM, and the backbone before them.
- :mod:`~tfmot_edgeplus.calibration.step`: the reference of one device step
  (:func:`qcore_step`: error signal, per-weight features, int8 :class:`FlipNet`, saturated
  -1/0/+1 update, roll back unless the score rose) and of the QCore refresh
  (:func:`qcore_refresh`).
- :func:`bp_finetune`: back-propagation calibration of the head, re-quantized to its grid
  (the flip networks' teacher, and a baseline).
- :class:`BitFlipCalibrator`: trains the flip networks offline and runs the device loop.
- :func:`bitflip_apply` / :func:`bitflip_apply_packed`: the NumPy reference of tflm_ops'
  ``edgeplus_bitflip_apply``.
"""

from tfmot_edgeplus.calibration.backprop import bp_finetune
from tfmot_edgeplus.calibration.bitflip_reference import bitflip_apply, bitflip_apply_packed
from tfmot_edgeplus.calibration.calibrator import BitFlipCalibrator, ChunkReport
from tfmot_edgeplus.calibration.head import HeadLayer, IntHead, split_head
from tfmot_edgeplus.calibration.step import FlipNet, StepResult, qcore_refresh, qcore_step

__all__ = [
    "BitFlipCalibrator",
    "ChunkReport",
    "FlipNet",
    "HeadLayer",
    "IntHead",
    "StepResult",
    "bitflip_apply",
    "bitflip_apply_packed",
    "bp_finetune",
    "qcore_refresh",
    "qcore_step",
    "split_head",
]
