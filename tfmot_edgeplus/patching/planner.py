"""Receptive fields, the peak-SRAM and BitOPs models, and the patch-plan search.

Execution steps
---------------
The planner works on *steps*, the ops as an int8 TFLite/TFLM model runs them: a
``BatchNormalization`` or activation whose input has no other reader is **fused** into the
step that produced that input (TFLite folds BN into the conv and fuses ReLU/ReLU6 into
conv/add; other activations would be separate TFLite ops that we treat as in place). A
step's output is the last fused op's output, a *materialized* tensor: only those occupy
memory and only those are feature maps for VDPC/VDQS. ``ZeroPadding2D`` stays its own step
(TFLite emits a ``PAD`` op). Tail layers (after the spatial prefix) are steps of their own.

Receptive fields
----------------
:func:`receptive_fields` maps a window of a tensor back to the window each earlier tensor
must provide: convs and pools through :func:`~tfmot_edgeplus.core.conv_reference.conv_input_region`
(stride, dilation, SAME/VALID padding as TFLite lays them out, clipped to the tensor),
``ZeroPadding2D`` by shifting (a window that lies entirely in the padding needs nothing),
``Add`` asks the same window of both inputs, BN and activations pass it through. A tensor
read by several ops must provide the bounding box of their windows.

Peak SRAM (bytes of activations, what MCUNetV2 counts)
------------------------------------------------------
A tensor of ``E`` elements at ``b`` bits takes ``ceil(E * b / 8)`` bytes.

*Layer by layer*: tensor ``t`` is alive from the step that produces it (the model input
from the start) to its last reader (model outputs to the end). The working set of a step
is the sum of the tensors alive while it runs: its input(s), its output and every tensor
produced earlier and read later (residual skips). Peak = max over steps.

*Patch based*, split tensor ``T``, ``n x n`` grid over T's H and W (row/col boundaries at
``i * H // n``): the *stage* is every step up to the one producing T. ``T`` is a valid split
only when no step after it reads a stage tensor other than T (no skip connection crosses
the split) and the stage holds no pooling step (:data:`STAGE_KINDS`: what the patch stage
program runs). Each patch runs the stage on its regions (the receptive fields of its window of
T, recomputing the overlaps); per stage step and patch, the working set is the regions of
the stage tensors alive in that patch at that step (same liveness rule as above) plus
**T whole** (the patches write into it) plus, with ``input_resident=True`` (default), the
**model input whole** (a camera frame in SRAM; with ``False`` only the input's region, as
when it is streamed patch by patch). After the stage, the remaining steps run layer by layer
with T as their input. Patch-based peak = max(stage peak over patches and steps, rest peak).
Activation bits are per tensor and, with VDPC, per patch (outlier patches at 8 bits).

Not counted: weights and biases (in flash), kernel scratch (im2col, CMSIS-NN buffers),
TFLM's arena overhead, alignment and the stack; no in-place or buffer-overlap tricks
(TinyEngine's in-place depthwise); the patch stage's bookkeeping (a few window indices).

Regions are computed per axis (the rows of patch ``(i, j)`` are those of patch ``(i, i)``,
the columns those of ``(j, j)``), which is exact for boxes; it can only over-count when a
window lies entirely inside a ``ZeroPadding2D`` border and its tensor has another reader.

BitOPs
------
``MACs x w_bits x a_bits`` per step, ``a_bits`` the bits of the activation it reads (its
main input). Only convs and depthwise convs in the prefix and ``Dense``/conv layers in the
tail have MACs (see :mod:`~tfmot_edgeplus.patching.graph`). Patch based: the stage steps'
MACs are summed over the patches' output regions, i.e. with the halo recomputation; with
``n = 1`` this equals the layer-by-layer count.

Search
------
:meth:`PatchPlanner.search` tries every valid split tensor of the spatial prefix and every
``n`` in ``1..min(max_grid, H_T, W_T)`` (or the forced ``split``/``grid``) with all
activations at 8 bits, and keeps the lowest patch-based peak within ``sram_budget``; ties go
to fewer BitOPs, then fewer patches, then the earlier split. With ``max_halo`` (and no forced
``grid``) only the choices whose stage costs at most ``max_halo`` times the modeled M4
instructions of the same stage layer by layer are kept (halo recomputation bounded: fewer,
larger patches where the budget allows; ``n = 1`` is always kept). If no plan fits it raises
:class:`PlanError` naming the smallest reachable peak and its plan (and, when only the halo
bound was in the way, the plan that fits and its halo).

M4 instructions
---------------
:meth:`PatchPlanner.patch_instructions`: per stage step and patch, our kernels' instructions
per MAC (:mod:`~tfmot_edgeplus.patching.cost_model`, by op kind, ``weight_bits`` and the bits
the step reads in that patch) times the patch's MACs, scaled to the stage's measured cost,
plus one kernel call's fixed cost.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from tfmot_edgeplus.core.conv_reference import Window, conv_input_region, make_conv_params
from tfmot_edgeplus.patching.cost_model import (
    STAGE_SCALE,
    STEP_CALL_INSTRUCTIONS,
    instr_per_mac,
    op_kind,
)
from tfmot_edgeplus.patching.graph import (
    POINTWISE_KINDS,
    WINDOWED_KINDS,
    ModelGraph,
    SpatialOp,
    read_graph,
)

__all__ = [
    "COPY_KINDS",
    "STAGE_KINDS",
    "Candidate",
    "PatchPlanner",
    "PlanError",
    "Step",
    "build_steps",
    "grid_bounds",
    "receptive_fields",
    "tensor_bytes",
]

COPY_KINDS = ("pad", "maxpool", "avgpool")
"""Steps whose output keeps the bits of their input (they copy or select values)."""
STAGE_KINDS = ("conv", "depthwise", "pad", "bn", "act", "add")
"""Step kinds a patch stage can hold (:mod:`~tfmot_edgeplus.core.program` runs conv,
depthwise, pad and add; BN and activations are fused): a pooling step ends the stage."""


class PlanError(ValueError):
    """No plan satisfies the request (the message names the closest one)."""


@dataclass(frozen=True)
class Step:
    """One execution step (an op plus the BN/activations fused into it)."""

    index: int
    name: str
    kind: str
    ops: tuple[str, ...]
    inputs: tuple[str, ...]
    output: str
    output_shape: tuple[int, ...]
    macs_per_pixel: int
    spatial: bool
    kernel: tuple[int, int] = (1, 1)

    @property
    def pixels(self) -> int:
        return int(np.prod(self.output_shape[:-1])) if len(self.output_shape) > 1 else 1

    @property
    def macs(self) -> int:
        return self.macs_per_pixel * self.pixels


@dataclass(frozen=True)
class Candidate:
    """A split/grid choice and its 8-bit figures: ``instructions`` the modeled M4
    instructions of its stage, ``halo`` those over the same stage's layer by layer (1x1)."""

    split: str
    grid: int
    peak: int
    bitops: int
    instructions: float
    halo: float


def tensor_bytes(elements, bits) -> np.ndarray | int:
    """``ceil(elements * bits / 8)`` (arrays broadcast)."""
    out = (np.asarray(elements, dtype=np.int64) * np.asarray(bits, dtype=np.int64) + 7) // 8
    return int(out) if out.ndim == 0 else out


def grid_bounds(size: int, n: int) -> list[tuple[int, int]]:
    """``n`` ``(start, length)`` parts of ``range(size)``, boundaries at ``i * size // n``."""
    edges = [(i * size) // n for i in range(n + 1)]
    return [(edges[i], edges[i + 1] - edges[i]) for i in range(n)]


# ----------------------------------------------------------------------------- steps


def build_steps(graph: ModelGraph) -> tuple[Step, ...]:
    """The execution steps of ``graph`` (fusion rule in the module docstring)."""
    readers: dict[str, int] = {}
    for op in graph.all_ops:
        for t in op.inputs:
            readers[t] = readers.get(t, 0) + 1
    steps: list[dict] = []
    producer: dict[str, int] = {}
    for op in graph.ops:
        src = op.inputs[0] if len(op.inputs) == 1 else None
        if (
            op.kind in POINTWISE_KINDS
            and src in producer
            and readers.get(src, 0) == 1
            and src not in graph.outputs
        ):
            step = steps[producer.pop(src)]
            step["ops"] += (op.name,)
            step["output"] = op.output
            producer[op.output] = step["index"]
            continue
        producer[op.output] = len(steps)
        steps.append(_step_dict(len(steps), op, spatial=True))
    for op in graph.tail:
        producer[op.output] = len(steps)
        steps.append(_step_dict(len(steps), op, spatial=False))
    return tuple(Step(**s) for s in steps)


def _step_dict(index: int, op: SpatialOp, spatial: bool) -> dict:
    return {
        "index": index,
        "name": op.name,
        "kind": op.kind,
        "ops": (op.name,),
        "inputs": tuple(op.inputs),
        "output": op.output,
        "output_shape": tuple(op.output_shape),
        "macs_per_pixel": op.macs_per_pixel,
        "spatial": spatial,
        "kernel": tuple(int(k) for k in op.kernel),
    }


# ----------------------------------------------------------------------------- receptive fields


@lru_cache(maxsize=4096)
def _params(op: SpatialOp):
    return make_conv_params(
        op.input_shapes[0][:2],
        op.kernel,
        stride=op.stride,
        padding=op.padding,
        dilation=op.dilation,
    )[0]


def _input_window(op: SpatialOp, window: Window) -> Window | None:
    """The window of ``op``'s input(s) that ``window`` of its output reads (None: nothing)."""
    if op.kind in WINDOWED_KINDS:
        return conv_input_region(_params(op), op.input_shapes[0][:2], op.kernel, window)
    if op.kind == "pad":
        y, x, h, w = window
        (top, _), (left, _) = op.pads
        ih, iw = op.input_shapes[0][:2]
        y0, y1 = max(y - top, 0), min(y + h - top, ih)
        x0, x1 = max(x - left, 0), min(x + w - left, iw)
        if y1 <= y0 or x1 <= x0:
            return None
        return (y0, x0, y1 - y0, x1 - x0)
    return tuple(window)


def _union(a: Window | None, b: Window) -> Window:
    if a is None:
        return tuple(b)
    y0, x0 = min(a[0], b[0]), min(a[1], b[1])
    y1, x1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
    return (y0, x0, y1 - y0, x1 - x0)


def _check_window(window, shape, tensor) -> Window:
    try:
        y, x, h, w = (int(v) for v in window)
    except (TypeError, ValueError):
        raise ValueError(f"window must be (y, x, h, w), got {window!r}") from None
    if h < 1 or w < 1 or y < 0 or x < 0 or y + h > shape[0] or x + w > shape[1]:
        raise ValueError(
            f"window {(y, x, h, w)} is not inside tensor {tensor!r} of shape {tuple(shape)}"
        )
    return (y, x, h, w)


def receptive_fields(graph: ModelGraph, tensor: str, window: Window) -> dict[str, Window]:
    """For ``window = (y, x, h, w)`` of ``tensor`` (in the spatial prefix), the window every
    earlier tensor it depends on must provide, ``{tensor name: (y, x, h, w)}`` (including
    ``tensor`` itself and the model input). Tensors the window does not need are left out."""
    index = {op.output: k for k, op in enumerate(graph.ops)}
    if tensor != graph.input_name and tensor not in index:
        raise ValueError(
            f"tensor {tensor!r} is not in the spatial prefix of model {graph.name!r}; "
            f"it has {', '.join(op.output for op in graph.ops[:8])}"
            + (", ..." if len(graph.ops) > 8 else "")
        )
    need: dict[str, Window] = {tensor: _check_window(window, graph.shapes[tensor], tensor)}
    if tensor == graph.input_name:
        return need
    for op in reversed(graph.ops[: index[tensor] + 1]):
        out = need.get(op.output)
        if out is None:
            continue
        win = _input_window(op, out)
        if win is None:
            continue
        for t in op.inputs:
            need[t] = _union(need.get(t), win)
    return need


# ----------------------------------------------------------------------------- planner


def _check_int(value, name, lo, hi=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ValueError(f"{name} must be {rng}, got {value!r}")
    return int(value)


class PatchPlanner:
    """Peak-SRAM and BitOPs models of one model, layer by layer and patch based.

    ``model`` is a built tf_keras model or a :class:`ModelGraph`. ``weight_bits`` (2, 4 or 8)
    enters the BitOPs; ``input_resident`` says whether the model input is held whole in
    SRAM during the patch stage (see the module docstring).

    ``bits`` arguments map a materialized tensor to its activation bits for the normal
    (non-outlier) patches (missing: 8); ``outlier`` is an ``n x n`` bool array of the
    patches kept at 8 bits (None: none).
    """

    def __init__(self, model, *, weight_bits: int = 8, input_resident: bool = True):
        self.graph = model if isinstance(model, ModelGraph) else read_graph(model)
        if weight_bits not in (2, 4, 8):
            raise ValueError(f"weight_bits must be 2, 4 or 8, got {weight_bits!r}")
        self.weight_bits = int(weight_bits)
        self.input_resident = bool(input_resident)
        self.steps = build_steps(self.graph)
        g = self.graph
        self.shapes = {g.input_name: tuple(g.input_shape)}
        self.shapes.update({s.output: s.output_shape for s in self.steps})
        self.producer = {s.output: s.index for s in self.steps}
        self.first = {g.input_name: -1, **{s.output: s.index for s in self.steps}}
        self.last = dict(self.first)
        for s in self.steps:
            for t in s.inputs:
                self.last[t] = max(self.last[t], s.index)
        for t in g.outputs:
            self.last[t] = len(self.steps) - 1
        self.n_prefix = sum(s.spatial for s in self.steps)
        self._alive = [
            [t for t in self.shapes if self.first[t] <= s.index <= self.last[t]] for s in self.steps
        ]
        self._regions: dict = {}
        self._candidates: dict = {}
        self._splits: tuple[str, ...] | None = None

    # ------------------------------------------------------------------ structure

    @property
    def tensors(self) -> tuple[str, ...]:
        """Materialized tensors: the model input, then step outputs in step order."""
        return (self.graph.input_name, *(s.output for s in self.steps))

    def split_candidates(self) -> tuple[str, ...]:
        """Valid split tensors: prefix step outputs no skip connection crosses."""
        if self._splits is not None:
            return self._splits
        out = []
        for k in range(self.n_prefix):
            if self.steps[k].kind not in STAGE_KINDS:
                break
            stage = {self.graph.input_name, *(s.output for s in self.steps[: k + 1])}
            split = self.steps[k].output
            if all(t not in stage or t == split for s in self.steps[k + 1 :] for t in s.inputs):
                out.append(split)
        self._splits = tuple(out)
        return self._splits

    def check_split(self, split) -> int:
        """The index of the step producing ``split``; a clear error if it is not valid."""
        valid = self.split_candidates()
        if split in valid:
            return self.producer[split]
        shown = ", ".join(repr(v) for v in valid[:12]) + (", ..." if len(valid) > 12 else "")
        fused = next((s for s in self.steps if split in s.ops and s.output != split), None)
        if fused is not None:
            why = (
                f"layer {split!r} is fused into step {fused.name!r} whose output is "
                f"{fused.output!r} (BN/activations run inside the step)"
            )
        elif split in self.producer and self.producer[split] >= self.n_prefix:
            why = f"{split!r} is after the spatial prefix"
        elif split in self.producer and any(
            s.kind not in STAGE_KINDS for s in self.steps[: self.producer[split] + 1]
        ):
            pool = next(s for s in self.steps if s.kind not in STAGE_KINDS)
            why = (
                f"the stage up to {split!r} holds {pool.kind} step {pool.name!r}, which the "
                "patch stage does not run (split before it)"
            )
        elif split in self.producer:
            why = f"a skip connection crosses {split!r} (a later layer reads an earlier tensor)"
        else:
            why = f"there is no such tensor in model {self.graph.name!r}"
        raise ValueError(f"split={split!r} is not a valid split tensor: {why}. Valid: {shown}")

    def stage(self, split: str) -> tuple[Step, ...]:
        return self.steps[: self.check_split(split) + 1]

    def stage_tensors(self, split: str) -> tuple[str, ...]:
        """The model input and the stage's step outputs (the last is ``split``)."""
        return (self.graph.input_name, *(s.output for s in self.stage(split)))

    def max_grid(self, split: str) -> int:
        h, w = self.shapes[split][:2]
        return min(h, w)

    def grid_windows(self, split: str, n: int) -> list[Window]:
        """The ``n x n`` windows of ``split`` (row-major)."""
        h, w = self.shapes[split][:2]
        self._check_grid(split, n)
        rows, cols = grid_bounds(h, n), grid_bounds(w, n)
        return [(ry, cx, rh, cw) for ry, rh in rows for cx, cw in cols]

    def _check_grid(self, split, n):
        return _check_int(n, "grid", 1, self.max_grid(split))

    def regions(self, split: str, n: int) -> dict[str, np.ndarray]:
        """``{tensor: array (4, n)}``: row start, row length, col start, col length of each
        stage tensor's region for row part / col part ``i`` (length 0: not needed)."""
        key = (split, n)
        if key in self._regions:
            return self._regions[key]
        self.check_split(split)
        self._check_grid(split, n)
        h, w = self.shapes[split][:2]
        rows, cols = grid_bounds(h, n), grid_bounds(w, n)
        out = {t: np.zeros((4, n), dtype=np.int64) for t in self.stage_tensors(split)}
        for i in range(n):
            fields = receptive_fields(
                self.graph, split, (rows[i][0], cols[i][0], rows[i][1], cols[i][1])
            )
            for t, arr in out.items():
                if t in fields:
                    y, x, rh, cw = fields[t]
                    arr[:, i] = (y, rh, x, cw)
        self._regions[key] = out
        return out

    def patch_windows(self, split: str, n: int) -> dict[str, list[list[Window | None]]]:
        """``{tensor: [[window of patch (i, j)] ...]}`` over the stage (None: not needed)."""
        out = {}
        for t, a in self.regions(split, n).items():
            out[t] = [
                [
                    (int(a[0, i]), int(a[2, j]), int(a[1, i]), int(a[3, j]))
                    if a[1, i] and a[3, j]
                    else None
                    for j in range(n)
                ]
                for i in range(n)
            ]
        return out

    def _elements(self, t, reg) -> np.ndarray:
        a = reg[t]
        return np.outer(a[1], a[3]) * int(self.shapes[t][-1])

    # ------------------------------------------------------------------ memory

    def whole_bytes(self, t: str, bits: int = 8) -> int:
        return tensor_bytes(int(np.prod(self.shapes[t])), bits)

    def layer_memory(self, bits: dict | None = None) -> np.ndarray:
        """Working-set bytes of every step, layer by layer (peak = ``.max()``)."""
        bits = bits or {}
        size = {t: self.whole_bytes(t, bits.get(t, 8)) for t in self.shapes}
        return np.array([sum(size[t] for t in alive) for alive in self._alive], dtype=np.int64)

    def _bits_grid(self, t, n, bits, outlier) -> np.ndarray:
        b = np.full((n, n), int(bits.get(t, 8)), dtype=np.int64)
        if outlier is not None:
            b[np.asarray(outlier, dtype=bool)] = 8
        return b

    def patch_memory(self, split: str, n: int, bits: dict | None = None, outlier=None):
        """``(per-step bytes, per-patch stage peak)`` of the patch-based plan: stage steps
        carry their max over patches, later steps their layer-by-layer working set (the
        8-bit rest of the model); the per-patch array is ``n x n``."""
        bits = bits or {}
        k = self.check_split(split)
        reg = self.regions(split, n)
        fixed = self.whole_bytes(split, bits.get(split, 8))
        inp = self.graph.input_name
        if self.input_resident:
            fixed += self.whole_bytes(inp, 8)
        region = {}
        for t in self.stage_tensors(split):
            if t == split or (t == inp and self.input_resident):
                continue
            b = 8 if t == inp else self._bits_grid(t, n, bits, outlier)
            region[t] = tensor_bytes(self._elements(t, reg), b)
        per_patch = np.zeros((n, n), dtype=np.int64)
        per_step = self.layer_memory({t: b for t, b in bits.items() if t not in region})
        for s in range(k + 1):
            ws = np.full((n, n), fixed, dtype=np.int64)
            for t in self._alive[s]:
                if t in region:
                    ws += region[t]
            per_step[s] = ws.max()
            per_patch = np.maximum(per_patch, ws)
        return per_step, per_patch

    def patch_peak(self, split: str, n: int, bits: dict | None = None, outlier=None) -> int:
        return int(self.patch_memory(split, n, bits, outlier)[0].max())

    # ------------------------------------------------------------------ BitOPs

    def _a_bits(self, step, bits):
        return int(bits.get(step.inputs[0], 8)) if step.inputs else 8

    def layer_bitops(self, bits: dict | None = None) -> np.ndarray:
        """BitOPs of every step, layer by layer."""
        bits = bits or {}
        return np.array(
            [s.macs * self.weight_bits * self._a_bits(s, bits) for s in self.steps],
            dtype=np.int64,
        )

    def patch_macs(self, split: str, n: int) -> np.ndarray:
        """MACs of every step with the stage run patch by patch (halo recomputation)."""
        k = self.check_split(split)
        reg = self.regions(split, n)
        macs = np.array([s.macs for s in self.steps], dtype=np.int64)
        for s in self.steps[: k + 1]:
            a = reg[s.output]
            macs[s.index] = int(np.outer(a[1], a[3]).sum()) * s.macs_per_pixel
        return macs

    def patch_bitops(self, split: str, n: int, bits: dict | None = None, outlier=None):
        """BitOPs of every step with the stage run patch by patch (halo recomputation)."""
        bits = bits or {}
        k = self.check_split(split)
        reg = self.regions(split, n)
        out = self.layer_bitops(bits)
        for s in self.steps[: k + 1]:
            if not s.macs_per_pixel:
                out[s.index] = 0
                continue
            pixels, a_bits = self._patch_pixels_bits(s, reg, n, bits, outlier)
            out[s.index] = int((pixels * a_bits).sum()) * s.macs_per_pixel * self.weight_bits
        return out

    def _patch_pixels_bits(self, step, reg, n, bits, outlier):
        """``n x n`` arrays: the output pixels of ``step`` in each patch and the bits of the
        activation it reads there (the model input is 8-bit)."""
        a = reg[step.output]
        a_bits = self._bits_grid(step.inputs[0], n, bits, outlier)
        if step.inputs[0] == self.graph.input_name:
            a_bits[:] = 8
        return np.outer(a[1], a[3]), a_bits

    # ------------------------------------------------------------------ M4 instructions

    def patch_instructions(self, split: str, n: int, bits: dict | None = None,
                           outlier=None) -> np.ndarray:
        """Modeled M4 instructions of every stage step run patch by patch (halo
        recomputation, one kernel call per patch and step;
        :mod:`~tfmot_edgeplus.patching.cost_model`); ``n = 1`` is the stage layer by layer.
        Steps our kernels do not run as convs (pad, add, pooling) count 0."""
        bits = bits or {}
        k = self.check_split(split)
        reg = self.regions(split, n)
        out = np.zeros(k + 1)
        for s in self.steps[: k + 1]:
            op = op_kind(s.kind, s.kernel)
            if op is None or not s.macs_per_pixel:
                continue
            pixels, a_bits = self._patch_pixels_bits(s, reg, n, bits, outlier)
            cost = {b: instr_per_mac(op, self.weight_bits, int(b)) for b in np.unique(a_bits)}
            per_mac = np.vectorize(cost.__getitem__, otypes=[float])(a_bits)
            calls = int(np.count_nonzero(pixels))
            out[s.index] = STAGE_SCALE * (pixels * per_mac).sum() * s.macs_per_pixel + (
                calls * STEP_CALL_INSTRUCTIONS
            )
        return out

    # ------------------------------------------------------------------ search

    def candidates(self, *, split=None, grid=None, max_grid: int = 8) -> list[Candidate]:
        """Every split/grid choice with its 8-bit peak, BitOPs and modeled instructions."""
        max_grid = _check_int(max_grid, "max_grid", 1)
        key = (split, grid, max_grid)
        if key not in self._candidates:
            self._candidates[key] = self._candidates_uncached(split, grid, max_grid)
        return list(self._candidates[key])

    def _candidates_uncached(self, split, grid, max_grid) -> tuple[Candidate, ...]:
        if split is not None:
            self.check_split(split)
            splits = (split,)
            if grid is not None:
                self._check_grid(split, grid)
        else:
            splits = self.split_candidates()
            if not splits:
                first = self.steps[0]
                raise PlanError(
                    f"model {self.graph.name!r} has no split tensor: its first step "
                    f"{first.name!r} is a {first.kind}, which the patch stage does not run."
                )
            if grid is not None:
                _check_int(grid, "grid", 1)
                splits = tuple(t for t in splits if self.max_grid(t) >= grid)
                if not splits:
                    largest = max(self.max_grid(t) for t in self.split_candidates())
                    raise ValueError(
                        f"grid={grid} is larger than every split tensor allows (at most "
                        f"{largest}x{largest} patches)."
                    )
        out = []
        for t in splits:
            grids = (grid,) if grid is not None else range(1, min(max_grid, self.max_grid(t)) + 1)
            layer = float(self.patch_instructions(t, 1).sum())
            for n in grids:
                peak = self.patch_peak(t, n)
                instr = float(self.patch_instructions(t, n).sum())
                halo = instr / layer if layer else 1.0
                out.append(
                    Candidate(t, n, peak, int(self.patch_bitops(t, n).sum()), instr, halo)
                )
        return tuple(out)

    def search(self, sram_budget, *, split=None, grid=None, max_grid: int = 8,
               max_halo: float | None = None) -> Candidate:
        """The lowest-peak plan within ``sram_budget`` bytes and, unless ``grid`` is forced,
        within ``max_halo`` times the layer-by-layer instructions of its stage (None: no
        bound); rule in the module docstring."""
        budget = _check_int(sram_budget, "sram_budget", 1)
        if max_halo is not None and (
            isinstance(max_halo, bool) or not isinstance(max_halo, numbers.Real)
            or not max_halo >= 1
        ):  # fmt: skip
            raise ValueError(
                f"max_halo must be a number >= 1 (the patch stage's modeled instructions over "
                f"the same stage layer by layer) or None, got {max_halo!r}"
            )
        cands = self.candidates(split=split, grid=grid, max_grid=max_grid)
        order = {t: i for i, t in enumerate(self.tensors)}

        def key(c):
            return (c.peak, c.bitops, c.grid, order[c.split])

        bounded = cands
        if max_halo is not None and grid is None:
            bounded = [c for c in cands if c.halo <= max_halo]  # n = 1 always is
        best = min(bounded, key=key)
        if best.peak > budget:
            forced = []
            if split is not None:
                forced.append(f"split={split!r}")
            if grid is not None:
                forced.append(f"grid={grid}")
            among = f" with {', '.join(forced)}" if forced else ""
            unbounded = min(cands, key=key)
            if unbounded.peak <= budget:
                raise PlanError(
                    f"no patch plan{among} meets sram_budget={budget} bytes within "
                    f"max_halo={max_halo}: the smallest peak there is {best.peak} bytes (split "
                    f"{best.split!r}, {best.grid}x{best.grid} patches); split "
                    f"{unbounded.split!r} with {unbounded.grid}x{unbounded.grid} patches meets "
                    f"it at {unbounded.halo:.2f}x the layer-by-layer instructions. Raise "
                    f"max_halo to {math.ceil(unbounded.halo * 100) / 100} or sram_budget to "
                    f"{best.peak}."
                )
            raise PlanError(
                f"no patch plan{among} meets sram_budget={budget} bytes: the smallest "
                f"reachable peak is {best.peak} bytes (split {best.split!r}, "
                f"{best.grid}x{best.grid} patches; layer by layer: "
                f"{int(self.layer_memory().max())} bytes). Raise sram_budget to at least "
                f"{best.peak}" + (" or drop the forced choice." if forced else ".")
            )
        return best
