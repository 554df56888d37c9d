"""Run a model whose patch stage was planned, on the host, the way the device runs it.

::

    runner = PatchStageRunner(tflite_bytes, plan)           # backend="auto"
    probs = runner.predict(x_test)
    runner.backend, runner.peak_sram_bytes

Backends:

``"tflm"``
    the deployed model (:func:`~tfmot_edgeplus.patching.deploy.deploy_model`: one
    ``EDGEPLUS_PATCH_STAGE`` operator + the rest as builtins) in the TFLM interpreter with
    our registerer (``libedgeplus_tflm.so``, built from ``tflm_ops/tflm`` against the TFLM
    sources in ``EDGEPLUS_TFLM_ROOT``). ``peak_sram_bytes`` is TFLM's arena use, which
    holds the model input, the split tensor, the rest's tensors and our op's scratch.
``"split"``
    the split runner, when the TFLM sources are absent: the patch stage in our C kernels
    (``kernels.patch_stage``, ctypes) and the rest
    (:func:`~tfmot_edgeplus.patching.deploy.rest_model`) in TFLM. Outputs are
    identical to ``"tflm"``'s. ``peak_sram_bytes`` = the rest's TFLM arena (which holds the
    split tensor) + the model input + the stage's scratch: the two halves do not share
    memory here, so it is an upper bound of the single-arena figure.
``"numpy"``
    the same split with the stage in :func:`~tfmot_edgeplus.patching.simulate.run_stage`
    (bit-exact with the C, batched, so fast on many samples; no SRAM figure of its own, it
    reports the ``"split"`` formula with the C scratch size).

``"auto"`` picks ``"tflm"`` when the registerer library can be built or loaded, else
``"split"``. Every backend gives the same integers for the same input.
"""

from __future__ import annotations

import os

import numpy as np

from tfmot_edgeplus.core.intmath import dequantize, quantize
from tfmot_edgeplus.patching.deploy import deploy_model, rest_model
from tfmot_edgeplus.patching.lower import Lowered, lower
from tfmot_edgeplus.patching.simulate import run_stage
from tfmot_edgeplus.runtime import kernels, tflm_ops
from tfmot_edgeplus.runtime.tflm import TFLMRunner

__all__ = ["BACKENDS", "PatchStageRunner", "glue_registerer"]

BACKENDS = ("auto", "tflm", "split", "numpy")


class PatchStageRunner:
    """The planned model on the host (see the module docstring).

    Args:
        model_bytes: the int8 .tflite of the planned model (layer by layer, as converted).
        plan: its :class:`~tfmot_edgeplus.patching.PatchPlan` (or an already
            :class:`~tfmot_edgeplus.patching.lower.Lowered` plan).
        backend: one of :data:`BACKENDS`.
    """

    def __init__(self, model_bytes, plan, backend: str = "auto"):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.lowered: Lowered = plan if isinstance(plan, Lowered) else lower(model_bytes, plan)
        self.model_bytes = bytes(model_bytes)
        if backend == "auto":
            backend = "tflm" if glue_registerer() is not None else "split"
        self.backend = backend
        if backend == "tflm":
            name = glue_registerer()
            if name is None:

                raise RuntimeError(
                    "backend='tflm' needs the TFLM glue library: set EDGEPLUS_TFLM_LIB to a "
                    f"prebuilt one, or {', '.join(tflm_ops.missing_env())} to build it. Or use "
                    "backend='split' (same outputs)."
                )
            self.deployed = deploy_model(self.model_bytes, self.lowered)
            self._tflm = TFLMRunner(self.deployed, custom_op_registerers=[name])
            self._rest = None
        else:
            self.deployed = None
            self._tflm = None
            self._rest = TFLMRunner(rest_model(self.model_bytes, self.lowered))

    # ------------------------------------------------------------------ figures

    @property
    def stage_scratch_bytes(self) -> int:

        return int(kernels.get_kernels().patch_stage_get_buffer_size(self.lowered.program))

    @property
    def peak_sram_bytes(self) -> int:
        """Measured peak SRAM of the whole model on the host (see the module docstring)."""
        if self._tflm is not None:
            return int(self._tflm.arena_bytes)
        t0 = self.lowered.program.tensors[0]
        return int(self._rest.arena_bytes) + t0.h * t0.w * t0.c + self.stage_scratch_bytes

    @property
    def activation_bytes(self) -> int:
        """Measured SRAM for activations and scratch: TFLM's arena head (the ``"tflm"``
        backend), or the rest's head + the model input + the stage's scratch (``"split"``)."""
        if self._tflm is not None:
            return int(self._tflm.arena_head_bytes)
        t0 = self.lowered.program.tensors[0]
        return int(self._rest.arena_head_bytes) + t0.h * t0.w * t0.c + self.stage_scratch_bytes

    @property
    def output_details(self) -> list[dict]:
        runner = self._tflm if self._tflm is not None else self._rest
        return runner.output_details

    # ------------------------------------------------------------------ running

    def quantize_input(self, x) -> np.ndarray:
        """Float (or already int8) input -> the stage's int8 input, as TFLite quantizes."""
        x = np.asarray(x)
        if x.dtype == np.int8:
            return x
        zp = self.lowered.program.tensors[0].zp[1]
        return quantize(x, self.lowered.input_scale, zp, np.int8)

    def stage(self, x) -> np.ndarray:
        """The split tensor for int8 inputs ``x`` (N, H, W, C), through this backend's stage."""
        xq = self.quantize_input(x)
        L = self.lowered
        if self.backend == "numpy":
            return run_stage(L.program, L.filters, xq)

        return kernels.get_kernels().patch_stage(L.program, L.filters, xq)

    def predict(self, x, batch_size=None, dequantize_output: bool = True) -> np.ndarray:
        """Model outputs for inputs ``x`` (float or int8), dequantized unless asked not to."""
        xq = self.quantize_input(x)
        if self._tflm is not None:
            return self._tflm.predict(xq, dequantize=dequantize_output)
        raw = self._rest.predict(self.stage(xq), dequantize=False)
        if not dequantize_output:
            return raw
        d = self._rest.output_details[0]
        scale, zp = d["quantization"]
        return dequantize(raw, scale, zp)


def glue_registerer() -> str | None:
    """The registerer of the edgeplus TFLM ops: from a prebuilt ``EDGEPLUS_TFLM_LIB``, or the
    library built from the sources ``EDGEPLUS_TFLM_ROOT`` and its siblings name; None when
    neither is configured (the callers then use the split runner). A configured library that
    fails to build or load raises :class:`~tfmot_edgeplus.runtime.tflm_ops.TflmOpsUnavailableError`
    with the compiler's or loader's message: it is never silently replaced by the estimate."""
    if not os.environ.get("EDGEPLUS_TFLM_LIB") and tflm_ops.missing_env():
        return None
    return tflm_ops.load()
