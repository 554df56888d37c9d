"""The device bytes of QCore calibration: one formula, the RAM ``edgeplus::QCoreCalibrator``
carves out in ``begin()`` (QCoreCalibrator.cpp ``plan``; tests/test_arduino.py checks the two
agree on the emulated M4). The calibrator's :meth:`~BitFlipCalibrator.memory`, its
``memory_budget`` and ``edgeplus export arduino --qcore`` all read it.

The items the steps see are the QCore's old part (``core_size`` at most), the new-data memory
(``memory_size`` at most) and the ``chunk`` samples labeled since the last calibration; the
refresh runs over the memory and the chunk only.
"""

from __future__ import annotations

from tfmot_edgeplus.runtime import kernels

__all__ = ["device_bytes"]


def _a4(v: int) -> int:
    return (int(v) + 3) // 4 * 4


def device_bytes(
    head, nets: dict, core_size: int, memory_size: int, max_steps: int, chunk: int
) -> dict:
    """RAM of ``edgeplus::QCoreCalibrator`` for a head (:class:`IntHead`), its flip networks
    (layer -> :class:`FlipNet`) and ``chunk`` new samples between calibrations, part by part
    (each 4-aligned, in begin()'s order) and ``"total_bytes"`` (+ 4 bytes of alignment slack
    of the RAM block's base); and ``"flipnet_bytes"``, the flip networks, which stay in
    flash (not in the total)."""
    for name, value, lo in (
        ("core_size", core_size, 0),
        ("memory_size", memory_size, 0),
        ("max_steps", max_steps, 1),
        ("chunk", chunk, 1),
    ):
        if not isinstance(value, int) or value < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
    k = kernels.get_kernels()
    cap = core_size + memory_size + chunk
    refreshed = memory_size + chunk
    inp = head.input_size
    widest, conv = inp, 0
    weights = 0
    for layer in head.layers:
        out, fan_in = layer.shape
        weights += _a4(-(-out * fan_in * layer.bits // 8))
        widest = max(widest, out)
        shapes = ((1, 1, 1, fan_in), (out, 1, 1, fan_in), (1, 1, 1, out))
        conv = max(conv, k.conv2d_get_buffer_size(layer.params(), *shapes))
    step = k.qcore_step_get_buffer_size(head, nets, cap)
    refresh = k.qcore_refresh_get_buffer_size(refreshed)
    parts = {
        "head_weight_bytes": weights,
        "item_bytes": _a4(cap * inp) + 4 * cap,  # int8 features, int32 label
        "prior_bytes": 4 * refreshed,  # the memory's miss counts, 0 for new samples
        "history_bytes": _a4((max_steps + 1) * cap),  # correctness before / after each step
        "refresh_bytes": 8 * memory_size + _a4(memory_size * inp) + 4 * memory_size,
        "predict_bytes": _a4(2 * widest),  # predict()'s two activation rows
        "scratch_bytes": max(step, refresh, conv),  # the kernels' shared scratch
        "align_bytes": 4,
    }
    flash = sum(net.nbytes for net in nets.values())  # in flash, with the QCore's settings
    return {**parts, "total_bytes": sum(parts.values()), "flipnet_bytes": flash}
