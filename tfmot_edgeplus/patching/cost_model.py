"""The planner's instruction cost model: our kernels' instructions per MAC on the Cortex-M4.

A conv, depthwise or 1x1 step of the patch stage costs, per patch and step,
``STAGE_SCALE * instr_per_mac(op, w_bits, a_bits) * MACs + STEP_CALL_INSTRUCTIONS``
instructions, ``a_bits`` the bits of the activation the step reads in that patch. Steps
without MACs (pad, add, pooling) are not counted apart: :data:`STAGE_SCALE` carries them.

:data:`INSTR_PER_MAC` holds the measured figures, copied from the committed run
``benchmarks/results/kernels_m4_bench.json`` (``python -m benchmarks.kernels_m4 --flags bench``:
-Ofast, hard float, the flags the patch stage's M4 benchmark ``benchmarks/_stage_m4.py``
builds with; the ``default`` scratch rows): ``conv`` is its 3x3 layer (``conv3x3_32x32x16_32``),
``pointwise`` its 1x1 (``pw1x1_16x16x64_64``), ``depthwise`` its 3x3 (``dw3x3_48x48x32``).
``tests/test_planner_cost_model.py`` checks that the table equals that JSON, so it cannot
drift: when the kernels change, re-run the benchmark and copy its figures here.

A pair the benchmark does not measure costs what the same weights cost at 8-bit
activations, and, if those are not measured either, what W8A8 costs: a bit-width is never
assumed to save instructions that no measurement shows (VDQS then does not choose it for
speed). The patch stage runs 8-bit weights with 4- or 2-bit activations (W8A4, W8A2),
which ``kernels_m4`` does not measure: on that stage a lower bit-width saves memory, not
instructions, until it does.

:data:`STAGE_SCALE` and :data:`STEP_CALL_INSTRUCTIONS` turn the kernels' figures into the patch
stage's: the stage runs the same kernels on other shapes (1-channel first conv, narrow
windows, its own scratch), region copies, pads and adds, so it costs more per MAC than the
benchmark layers, and each kernel call has a fixed cost (argument checks, requantization
and weight layout per call). Both are a least-squares fit of
``instructions = STAGE_SCALE * sum(instr_per_mac * MACs) + STEP_CALL_INSTRUCTIONS * calls``
to the patch stage of MobileNetV2 alpha 0.35 at 96x96x1 (TF-MOT 8-bit, split
``block_3_depthwise``) measured on the emulated M4 by ``benchmarks._stage_m4.m4_stage_cost``
(-Ofast, the kernels of 27fd623) at grids 1, 2, 3, 4, 6: 19,846,520, 26,506,600,
34,261,600, 43,129,600 and 64,286,080 instructions for 11, 44, 99, 176 and 396 calls (within
2.7 % of the fit at every grid). The halo bound compares plans of one model, so only their
ratio matters to the search.
"""

from __future__ import annotations

__all__ = [
    "INSTR_PER_MAC",
    "KERNELS_M4_JSON",
    "OP_KINDS",
    "SOURCE_LAYERS",
    "STAGE_SCALE",
    "STEP_CALL_INSTRUCTIONS",
    "instr_per_mac",
    "op_kind",
]

KERNELS_M4_JSON = "benchmarks/results/kernels_m4_bench.json"
OP_KINDS = ("conv", "pointwise", "depthwise")
SOURCE_LAYERS = {
    "conv": "conv3x3_32x32x16_32",
    "pointwise": "pw1x1_16x16x64_64",
    "depthwise": "dw3x3_48x48x32",
}
"""The ``kernels_m4`` layer each op kind's figures are read from."""

# (op kind, weight bits, activation bits) -> instructions per MAC, from KERNELS_M4_JSON
INSTR_PER_MAC = {
    ("conv", 8, 8): 1.505,
    ("conv", 4, 4): 1.091,
    ("conv", 2, 2): 0.877,
    ("conv", 4, 8): 1.498,
    ("pointwise", 8, 8): 1.751,
    ("pointwise", 4, 4): 1.279,
    ("pointwise", 2, 2): 1.08,
    ("pointwise", 4, 8): 1.745,
    ("depthwise", 8, 8): 2.289,
    ("depthwise", 4, 4): 2.567,
    ("depthwise", 2, 2): 2.557,
    ("depthwise", 4, 8): 2.293,
}

STAGE_SCALE = 3.274
"""Patch-stage instructions per instruction of the kernels' table (module docstring)."""
STEP_CALL_INSTRUCTIONS = 31_557
"""Fixed instructions of one kernel call in the patch stage (module docstring)."""


def op_kind(kind: str, kernel) -> str | None:
    """The cost-table kind of a planner step (``conv`` with a 1x1 kernel is ``pointwise``),
    or None for a step our kernels do not run as a conv."""
    if kind == "depthwise":
        return "depthwise"
    if kind == "conv":
        return "pointwise" if tuple(kernel) == (1, 1) else "conv"
    return None


def instr_per_mac(op: str, w_bits: int, a_bits: int) -> float:
    """Instructions per MAC of ``op`` (one of :data:`OP_KINDS`) at ``w_bits`` weights and
    ``a_bits`` activations; unmeasured pairs fall back as the module docstring says."""
    if op not in OP_KINDS:
        raise ValueError(f"op must be one of {OP_KINDS}, got {op!r}")
    for bits in ((w_bits, a_bits), (w_bits, 8), (8, 8)):
        if (op, *bits) in INSTR_PER_MAC:
            return INSTR_PER_MAC[(op, *bits)]
    raise AssertionError("unreachable: every op kind has a W8A8 figure")
