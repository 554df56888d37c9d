"""QCore on-device calibration (ALGORITHMS.md section 2), in integers.

- :func:`split_head` / :class:`IntHead`: the trailing FULLY_CONNECTED layers of a deployed
  model, run in integers bit for bit like TFLM, and the backbone before them;
  :func:`write_head` puts calibrated weights back into the flatbuffer.
- :mod:`~tfmot_edgeplus.calibration.step`: the reference of one device step
  (:func:`qcore_step`: error signal, per-weight features, int8 :class:`FlipNet`, saturated
  -1/0/+1 update at decreasing confidence levels, kept only if the score on the new samples
  rose and the QCore's guard holds, else rolled back) and of the memory refresh
  (:func:`qcore_refresh`). tflm_ops' ``edgeplus_qcore_step`` /
  ``edgeplus_qcore_refresh`` are the same in C, bit for bit.
- :func:`bp_flip_target`: what a back-propagation step does to the integer weights (the flip
  networks' teacher); :func:`bp_finetune`: back-propagation calibration re-quantized to the
  grid (the baselines).
- :class:`BitFlipCalibrator`: trains the flip networks offline and runs the device loop (its
  module doc has the old-domain guard and the deviations from the paper);
  :func:`device_bytes`: the device RAM it needs (one formula, the export's too).
- :func:`run_stream`: continual calibration over a stream of chunks, for QCore and the
  baselines (:data:`METHODS`), evaluated after every chunk.
- :func:`save_qcore` / :func:`load_qcore`: the QCore bundle (flip networks, QCore, settings)
  a device needs, for ``edgeplus export arduino --qcore``.
- :func:`bitflip_apply` / :func:`bitflip_apply_packed`: the NumPy reference of tflm_ops'
  ``edgeplus_bitflip_apply``.
"""

from tfmot_edgeplus.calibration.backprop import bp_finetune, bp_flip_target, bp_memory_bytes
from tfmot_edgeplus.calibration.bitflip_reference import bitflip_apply, bitflip_apply_packed
from tfmot_edgeplus.calibration.bundle import QCoreBundle, load_qcore, save_qcore
from tfmot_edgeplus.calibration.calibrator import (
    BitFlipCalibrator,
    ChunkReport,
    check_old_tolerance,
)
from tfmot_edgeplus.calibration.device import device_bytes
from tfmot_edgeplus.calibration.head import HeadLayer, IntHead, split_head, write_head
from tfmot_edgeplus.calibration.step import FlipNet, StepResult, qcore_refresh, qcore_step
from tfmot_edgeplus.calibration.stream import METHODS, Chunk, StreamResult, run_stream

__all__ = [
    "METHODS",
    "BitFlipCalibrator",
    "Chunk",
    "ChunkReport",
    "FlipNet",
    "HeadLayer",
    "IntHead",
    "QCoreBundle",
    "StepResult",
    "StreamResult",
    "bitflip_apply",
    "bitflip_apply_packed",
    "bp_finetune",
    "bp_flip_target",
    "bp_memory_bytes",
    "check_old_tolerance",
    "device_bytes",
    "load_qcore",
    "qcore_refresh",
    "qcore_step",
    "run_stream",
    "save_qcore",
    "split_head",
    "write_head",
]
