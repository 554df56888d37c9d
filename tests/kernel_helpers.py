"""Helpers shared by the kernel tests: run a golden case through the C, compare bit-exactly."""

from __future__ import annotations

import numpy as np
import pytest
from builders import golden


def assert_same(got: np.ndarray, want: np.ndarray, what: str = "") -> None:
    """Bit-exact comparison that prints the first differing positions."""
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    diff = np.argwhere(got != want)
    if diff.size:
        lines = [
            f"{tuple(int(i) for i in d)}: C {int(got[tuple(d)])} ref {int(want[tuple(d)])}"
            for d in diff[:8]
        ]
        pytest.fail(f"{what}: {len(diff)} of {got.size} values differ; first: " + "; ".join(lines))


def run_c(k, case: golden.ConvCase, **extra):
    f = k.depthwise_conv2d if case.depthwise else k.conv2d
    return f(
        case.x,
        case.w,
        case.bias,
        case.multiplier,
        case.shift,
        case.params,
        output_hw=case.output_hw,
        window=case.window,
        input_region=case.input_region,
        input_hw=case.input_hw,
        output_region=case.output_region,
        **extra,
    )


def window_of(full: np.ndarray, case: golden.ConvCase) -> np.ndarray:
    """The window's values out of the buffer the C returned (whole output or region)."""
    y, x, h, w = case.window or (0, 0, *case.output_hw)
    oy, ox = case.output_region[:2] if case.output_region else (0, 0)
    return full[:, y - oy : y - oy + h, x - ox : x - ox + w, :]
