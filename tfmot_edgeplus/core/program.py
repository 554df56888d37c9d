"""The patch-stage program: the one description of a planned patch stage that the NumPy
simulator (:mod:`~tfmot_edgeplus.patching.simulate`), the C executor
(``edgeplus_patch_stage`` in ``tflm_ops/src``) and the ``EDGEPLUS_PATCH_STAGE`` custom op all
run. This docstring is the spec of its words; :meth:`StageProgram.to_words` writes them and
:meth:`StageProgram.from_words` reads and checks them (the C checks the same rules).

A program is a flat array of little-endian ``int32`` words, made of sections in this order:

Header (8 words)
    ``magic`` = 0x31535045 ("EPS1"), ``version`` = 1, ``T`` tensors (2..256), ``S`` steps
    (= ``T - 1``), ``n`` grid (1..64, ``P = n*n`` patches), ``arena_bytes`` (bytes of the region
    buffers, >= 0), ``words`` (the program's total length), ``0`` (reserved).
Tensors (``T`` records of 9 words)
    ``h, w, c, bits_normal, bits_outlier, zp_normal, zp_outlier, offset, size``. Tensor 0 is
    the stage input, tensor ``T-1`` the split tensor (the output); step ``k`` writes tensor
    ``k+1``. Activations are NHWC, batch 1, asymmetric at ``bits`` (2, 4, 8) with zero point
    ``zp``, packed over the flat index of the buffer that holds them (``edgeplus_ops.h``).
    *Variant* 0 is a normal patch, variant 1 an outlier patch (VDPC): every tensor has a bit
    width and zero point per variant. Tensors 0 and ``T-1`` are 8-bit in both variants with
    one zero point, ``offset = -1`` and ``size = 0``: the caller holds them whole. Every
    other tensor has a region buffer at ``offset`` (bytes into the arena) of ``size`` bytes,
    ``offset + size <= arena_bytes``.
Steps (``S`` records of 20 words)
    ``kind, in0, in1, kh, kw, sh, sw, ph, pw, dh, dw, w_bits, slot, act_min0, act_max0,
    act_min1, act_max1, quant0, quant1, 0``. ``kind``: 1 conv (filter OHWI), 2 depthwise
    (filter 1HWO, multiplier 1), 3 pad, 4 add. ``in0`` (and for add ``in1``; else -1) are
    tensor indices ``<= k``. Conv/depthwise: kernel ``kh x kw``, stride ``sh, sw``, top/left
    padding ``ph, pw`` (the rows/cols past the input read the input zero point, as TFLite's
    SAME/VALID), dilation ``dh, dw``; weights at ``w_bits`` (2, 4, 8) in weight ``slot``
    (slots count 0, 1, ... over the conv/depthwise steps in order). Pad: ``ph, pw``
    top/left zeros (bottom/right follow from the output size; the pad value is the zero
    point), in and out with the same bits and zero point per variant; kernel, stride and
    dilation are 1, ``w_bits = 8``, ``slot = -1``. Add: same-shaped inputs and output;
    kernel, stride and dilation 1, pads 0, ``w_bits = 8``, ``slot = -1``.
    ``act_min/max v``: the fused clamp of variant ``v`` in the output's integer domain
    (ignored for pad). ``quant v``: the word offset (from the start of the program) of
    variant ``v``'s requantization block, -1 for pad: conv/depthwise ``multiplier[C_out]``,
    ``shift[C_out]`` (TFLite's ``QuantizeMultiplier`` form) and ``bias[C_out]`` (int32, in
    units of the variant's input scale times the filter scale: a low-bit input has its own
    scale, so each variant has its own bias); add ``left_shift, m1, s1, m2, s2, m_out,
    s_out`` (TFLite's int8 ADD: ``(x - zp) << left_shift`` per input, each scaled by
    ``MultiplyByQuantizedMultiplier(., m, s)``, summed, scaled by ``(m_out, s_out)``, plus
    ``zp_out``, clamped). Every multiplier is ``>= 0``, every shift in ``[-31, 30]``,
    ``left_shift`` in ``[0, 22]`` (so ``(x - zp) << left_shift`` fits in int32).
Patches (``P`` records of ``1 + 4T`` words), row-major over the grid
    ``outlier`` (0 or 1, the variant), then per tensor its region ``y, x, h, w`` in that
    patch (``h = w = 0``: the patch does not need it). Tensor ``T-1``'s region is the patch's
    window of the split tensor; tensor 0's is what the first steps read from the input.
    **Coverage**: the windows tile the split tensor as the ``n x n`` grid, row-major: patch
    ``(r, c)`` (record ``r*n + c``) has the rows of patch ``(r, 0)`` and the columns of patch
    ``(0, c)``, both non-empty, and the row (column) bands follow each other from 0 to the
    tensor's height (width): every output element is written by exactly one patch.
Quant blocks
    the blocks the steps point at (variants with equal blocks may share one).
Limits (those of the C kernels; integer sizes stay in int32)
    ``h * w * c <= 2**27`` per tensor; kernel, stride and dilation in ``1..255``, pads in
    ``0..255``; a conv/depthwise pad is below the dilated kernel extent ``(k - 1) * d + 1``
    (each output reads the input: TFLite's SAME/VALID always are); per variant
    ``K = kh * kw * (c_in for conv, 1 for depthwise) <= EDGEPLUS_MAX_KC(in_bits, w_bits)``
    (``edgeplus_ops.h``: the int32 accumulators cannot overflow) and
    ``kh * kw * c_in <= (2**31 - 1) // 8``; filters hold at most ``2**31 - 1`` values.
    (``edgeplus_patch_stage_get_buffer_size`` also refuses a program whose scratch would not
    fit in int32, far beyond any MCU; the check does not.)

Execution of one patch ``p`` with variant ``v``: for ``k = 0 .. S-1`` with a non-empty
region ``R`` of tensor ``k+1``: compute ``R`` from the input regions (conv/depthwise: the
``_window`` kernel with ``window = R``; pad: copy or zero point; add: elementwise) into the
region buffer of tensor ``k+1`` (for ``T-1``: straight into the whole split tensor). Region
buffers are reused across patches; a buffer holds its tensor's region in the current patch.
``size`` covers that region at the variant's bits in every patch.

**Buffers** may share bytes only between tensors never alive at the same step: tensor ``i``
(``0 < i < T-1``) is alive from step ``i-1``, which writes it, to the last step reading it
(step ``i-1`` if none does); two tensors whose spans of steps intersect must have disjoint
``[offset, offset + size)`` (empty buffers share nothing). The builder
(:mod:`~tfmot_edgeplus.patching.lower`) packs the buffers by this rule. With it every output
element is written and the result does not depend on the scratch given.

Check order (``check``, and ``edgeplus_patch_stage_check`` returning the same status as
:attr:`ProgramError.status`): header; tensors in order; steps in order; buffers (pairs
``i < j`` in order); patches in order (flag, regions, what each step reads); coverage.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from tfmot_edgeplus.core.intmath import SUPPORTED_BITS, int_range
from tfmot_edgeplus.core.packing import packed_nbytes

__all__ = [
    "KIND_ADD",
    "KIND_CONV",
    "KIND_DEPTHWISE",
    "KIND_PAD",
    "MAGIC",
    "ProgramError",
    "StageProgram",
    "StageStep",
    "StageTensor",
    "input_need",
    "live_steps",
]

MAGIC = 0x31535045
VERSION = 1
HEADER_WORDS = 8
TENSOR_WORDS = 9
STEP_WORDS = 20
MAX_TENSORS = 256
MAX_GRID = 64
KIND_CONV, KIND_DEPTHWISE, KIND_PAD, KIND_ADD = 1, 2, 3, 4
KIND_NAMES = {KIND_CONV: "conv", KIND_DEPTHWISE: "depthwise", KIND_PAD: "pad", KIND_ADD: "add"}
ADD_QUANT_WORDS = 7
MAX_ELEMS = 1 << 27
MAX_GEOMETRY = 255
MAX_ADD_LEFT_SHIFT = 22
_INT32_MAX = (1 << 31) - 1


def max_kc(in_bits: int, w_bits: int) -> int:
    """``EDGEPLUS_MAX_KC``: the largest ``K`` whose int32 accumulator cannot overflow."""
    return _INT32_MAX // (((1 << in_bits) - 1) * (1 << (w_bits - 1)))


# The edgeplus_status names edgeplus_patch_stage_check returns for the rules (edgeplus_types.h)
DIMS, BITS, WINDOW = "EDGEPLUS_ERR_DIMS", "EDGEPLUS_ERR_BITS", "EDGEPLUS_ERR_WINDOW"
ARG, COVERAGE, OVERLAP = "EDGEPLUS_ERR_ARG", "EDGEPLUS_ERR_COVERAGE", "EDGEPLUS_ERR_OVERLAP"


class ProgramError(ValueError):
    """A stage program breaks a rule of the spec. The message names the field; ``status`` is
    the ``edgeplus_status`` name the C check returns for the same program (it checks the rules
    in the same order)."""

    def __init__(self, message: str, status: str):
        super().__init__(f"{message} [{status}]")
        self.status = status


@dataclasses.dataclass(frozen=True)
class StageTensor:
    h: int
    w: int
    c: int
    bits: tuple[int, int]
    zp: tuple[int, int]
    offset: int = -1
    size: int = 0

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.h, self.w, self.c)


@dataclasses.dataclass(frozen=True)
class StageStep:
    """One step; ``quant[v]`` is variant ``v``'s block as an int32 array (see the spec)."""

    kind: int
    inputs: tuple[int, ...]
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    pad: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    w_bits: int = 8
    slot: int = -1
    act: tuple[tuple[int, int], tuple[int, int]] = ((-128, 127), (-128, 127))
    quant: tuple = (None, None)

    @property
    def kind_name(self) -> str:
        return KIND_NAMES.get(self.kind, str(self.kind))


def _contains(outer, inner) -> bool:
    return (
        outer[2] > 0
        and inner[0] >= outer[0]
        and inner[1] >= outer[1]
        and inner[0] + inner[2] <= outer[0] + outer[2]
        and inner[1] + inner[3] <= outer[1] + outer[3]
    )


def _quant_block(k: int, v: int, q, words: int) -> np.ndarray:
    """Step ``k``'s variant-``v`` block as an array of ``words`` words (``None`` or the wrong
    length: the block is missing or lies outside the program)."""
    if q is None or np.shape(q) != (words,):
        raise ProgramError(
            f"step {k}: quant[{v}] must be a block of {words} words inside the program, got "
            f"{'none' if q is None else f'{np.size(q)} words'}",
            DIMS,
        )
    return np.asarray(q, dtype=np.int64)


def input_need(tensors, steps, k: int, region) -> tuple[int, int, int, int] | None:
    """The input window step ``k`` (of ``steps``, on ``tensors``) reads to produce ``region``
    of its output (None: nothing, a region entirely in a pad's border). For builders that
    do not have a whole program yet; see :meth:`StageProgram.input_need`."""
    s = steps[k]
    src = tensors[s.inputs[0]]
    y, x, h, w = region
    if s.kind == KIND_ADD:
        return (y, x, h, w)
    if s.kind == KIND_PAD:
        y0, y1 = max(y - s.pad[0], 0), min(y + h - s.pad[0], src.h)
        x0, x1 = max(x - s.pad[1], 0), min(x + w - s.pad[1], src.w)
        return None if y1 <= y0 or x1 <= x0 else (y0, x0, y1 - y0, x1 - x0)
    spans = []
    for o0, cnt, st, pd, kk, dl, size in (
        (y, h, s.stride[0], s.pad[0], s.kernel[0], s.dilation[0], src.h),
        (x, w, s.stride[1], s.pad[1], s.kernel[1], s.dilation[1], src.w),
    ):
        a = max(o0 * st - pd, 0)
        b = min((o0 + cnt - 1) * st - pd + (kk - 1) * dl, size - 1)
        if b < a:
            return None
        spans.append((a, b - a + 1))
    return (spans[0][0], spans[1][0], spans[0][1], spans[1][1])


def live_steps(num_tensors: int, steps) -> list[tuple[int, int]]:
    """``(first, last)`` step at which each tensor is alive (the spec's Buffers rule): from
    the step writing it (``i - 1``) to the last step reading it (``i - 1`` if none does);
    tensor 0: ``(-1, its last reader)``. Buffers of tensors whose spans intersect must not
    share bytes."""
    last = list(range(-1, num_tensors - 1))
    for k, s in enumerate(steps):
        for j in s.inputs:
            last[j] = k
    return [(i - 1, last[i]) for i in range(num_tensors)]


def region_bytes(region, channels: int, bits: int) -> int:
    """Packed bytes of ``region = (y, x, h, w)`` of a tensor with ``channels`` at ``bits``."""
    return packed_nbytes(int(region[2]) * int(region[3]) * int(channels), bits)


@dataclasses.dataclass(frozen=True)
class StageProgram:
    """A patch-stage program (see the module docstring). ``regions`` has shape
    ``(P, T, 4)``; ``outlier`` shape ``(P,)``."""

    tensors: tuple[StageTensor, ...]
    steps: tuple[StageStep, ...]
    grid: int
    outlier: np.ndarray
    regions: np.ndarray
    arena_bytes: int

    def __post_init__(self):
        # the flags stay integers until checked (from_words passes what the words hold)
        object.__setattr__(self, "outlier", np.asarray(self.outlier).astype(np.int64).ravel())
        object.__setattr__(self, "regions", np.asarray(self.regions, dtype=np.int64))
        self.check()
        object.__setattr__(self, "outlier", self.outlier.astype(bool))

    def __eq__(self, other):
        return isinstance(other, StageProgram) and np.array_equal(self.to_words(), other.to_words())

    __hash__ = None

    # ------------------------------------------------------------------ facts

    @property
    def num_slots(self) -> int:
        return sum(s.kind in (KIND_CONV, KIND_DEPTHWISE) for s in self.steps)

    def slot_steps(self) -> list[int]:
        """Step index of every weight slot."""
        return [k for k, s in enumerate(self.steps) if s.kind in (KIND_CONV, KIND_DEPTHWISE)]

    def filter_shape(self, step: int) -> tuple[int, int, int, int]:
        s = self.steps[step]
        cin = self.tensors[s.inputs[0]].c
        cout = self.tensors[step + 1].c
        if s.kind == KIND_CONV:
            return (cout, *s.kernel, cin)
        return (1, *s.kernel, cout)

    def variant(self, patch: int) -> int:
        return int(self.outlier[patch])

    # ------------------------------------------------------------------ checks

    def check(self) -> None:
        """Raise :class:`ProgramError` on the first broken rule of the spec, in the order of
        ``edgeplus_patch_stage_check``: header, tensors, steps, buffers, patches, coverage."""
        T, S, n = len(self.tensors), len(self.steps), int(self.grid)
        if not 2 <= T <= MAX_TENSORS or S != T - 1:
            raise ProgramError(
                f"tensors: need 2..{MAX_TENSORS} tensors and one step fewer, "
                f"got {T} tensors and {S} steps",
                DIMS,
            )
        if not 1 <= n <= MAX_GRID:
            raise ProgramError(f"grid must be in 1..{MAX_GRID}, got {n}", DIMS)
        if self.outlier.shape != (n * n,) or self.regions.shape != (n * n, T, 4):
            raise ProgramError(
                f"outlier/regions must have {n * n} patches of {T} regions, got "
                f"{self.outlier.shape} and {self.regions.shape}",
                DIMS,
            )
        arena = int(self.arena_bytes)
        if arena < 0:
            raise ProgramError(f"arena_bytes must be >= 0, got {arena}", DIMS)
        for i, t in enumerate(self.tensors):
            self._check_tensor(i, t, arena)
        for k, s in enumerate(self.steps):
            self._check_step(k, s)
        self._check_buffers()
        for p in range(n * n):
            self._check_patch(p)
        self._check_coverage()

    def _check_tensor(self, i: int, t: StageTensor, arena: int) -> None:
        T = len(self.tensors)
        if min(t.h, t.w, t.c) < 1 or t.h * t.w * t.c > MAX_ELEMS:
            raise ProgramError(
                f"tensor {i}: dims must be >= 1 with at most {MAX_ELEMS} values, got {t.shape}",
                DIMS,
            )
        for v in (0, 1):
            if t.bits[v] not in SUPPORTED_BITS:
                raise ProgramError(
                    f"tensor {i}: bits[{v}] must be 2, 4 or 8, got {t.bits[v]}", BITS
                )
            lo, hi = int_range(t.bits[v])
            if not lo <= t.zp[v] <= hi:
                raise ProgramError(
                    f"tensor {i}: zp[{v}] = {t.zp[v]} outside the {t.bits[v]}-bit range", ARG
                )
        if i in (0, T - 1):
            if t.bits != (8, 8) or t.zp[0] != t.zp[1] or t.offset != -1 or t.size != 0:
                raise ProgramError(
                    f"tensor {i} (stage {'input' if i == 0 else 'output'}) "
                    "must be 8-bit with one zero point, offset -1, size 0",
                    ARG,
                )
        elif t.offset < 0 or t.size < 0 or t.offset + t.size > arena:
            raise ProgramError(
                f"tensor {i}: buffer [{t.offset}, {t.offset + t.size}) "
                f"is outside the arena of {arena} bytes",
                WINDOW,
            )

    def _check_buffers(self) -> None:
        """Buffers of two tensors alive at the same step share no byte (else a step could
        overwrite what a later one reads, and a conv's result would depend on its pixel
        blocks, i.e. on the scratch given); empty buffers share nothing."""
        T = len(self.tensors)
        live = live_steps(T, self.steps)
        for i in range(1, T - 1):
            a = self.tensors[i]
            for j in range(i + 1, T - 1):
                if live[j][0] > live[i][1]:
                    break
                b = self.tensors[j]
                a_end, b_end = a.offset + a.size, b.offset + b.size
                if a.size and b.size and a.offset < b_end and b.offset < a_end:
                    raise ProgramError(
                        f"tensors {i} and {j}: buffers [{a.offset}, {a_end}) and "
                        f"[{b.offset}, {b_end}) share bytes, and both tensors are "
                        f"alive at step {j - 1}; give them disjoint bytes",
                        OVERLAP,
                    )

    def _check_patch(self, p: int) -> None:
        T = len(self.tensors)
        flag = int(self.outlier[p])
        if flag not in (0, 1):
            raise ProgramError(f"patch {p}: outlier flag must be 0 or 1, got {flag}", ARG)
        for i, t in enumerate(self.tensors):
            y, x, h, w = (int(a) for a in self.regions[p, i])
            if h == 0 and w == 0:
                continue
            if min(h, w) < 1 or y < 0 or x < 0 or y + h > t.h or x + w > t.w:
                raise ProgramError(
                    f"patch {p}: region {(y, x, h, w)} of tensor {i} is outside {t.shape}", WINDOW
                )
            if 0 < i < T - 1 and region_bytes((y, x, h, w), t.c, t.bits[flag]) > t.size:
                raise ProgramError(
                    f"patch {p}: region {(y, x, h, w)} of tensor {i} needs "
                    f"{region_bytes((y, x, h, w), t.c, t.bits[flag])} bytes, its buffer has "
                    f"{t.size}",
                    WINDOW,
                )
        for k, s in enumerate(self.steps):
            out_region = tuple(int(a) for a in self.regions[p, k + 1])
            if not out_region[2]:
                continue
            need = self.input_need(k, out_region)
            for j in s.inputs:
                have = tuple(int(a) for a in self.regions[p, j])
                if need is not None and not _contains(have, need):
                    raise ProgramError(
                        f"patch {p}: step {k} ({s.kind_name}) reads {need} of tensor {j}, "
                        f"its region there is {have}",
                        WINDOW,
                    )

    def _check_coverage(self) -> None:
        """The patches' windows of the output tile it as the ``n x n`` grid, row-major:
        patch ``(r, c)`` has the rows of patch ``(r, 0)`` and the columns of patch ``(0, c)``,
        both non-empty, and the row (column) bands follow each other from 0 to the output's
        height (width). So every output element is written, by exactly one patch."""
        n, out = int(self.grid), self.tensors[-1]
        win = [tuple(int(a) for a in self.regions[q, -1]) for q in range(n * n)]
        for q, (y, x, h, w) in enumerate(win):
            r, c = divmod(q, n)
            above, left = win[(r - 1) * n] if r else None, win[c - 1] if c else None
            want = (
                above[0] + above[2] if above else 0,
                left[1] + left[3] if left else 0,
                win[r * n][2],
                win[c][3],
            )
            if h < 1 or w < 1 or (y, x, h, w) != want:
                raise ProgramError(
                    f"patch {q}: output window {(y, x, h, w)} must be the grid cell "
                    f"({r}, {c}), {want} with h, w >= 1 (the windows tile the output "
                    f"{out.shape[:2]} row-major)",
                    COVERAGE,
                )
        y, x, h, w = win[-1]
        if (y + h, x + w) != (out.h, out.w):
            raise ProgramError(
                f"the patches' output windows end at {(y + h, x + w)}, the output is "
                f"{(out.h, out.w)}: they do not cover it",
                COVERAGE,
            )

    def input_need(self, k: int, region) -> tuple[int, int, int, int] | None:
        """The input window step ``k`` reads to produce ``region`` of its output (None:
        nothing, a region entirely in a pad's border)."""
        return input_need(self.tensors, self.steps, k, region)

    def _check_step(self, k: int, s: StageStep) -> None:
        out = self.tensors[k + 1]
        n_in = 2 if s.kind == KIND_ADD else 1
        if s.kind not in KIND_NAMES:
            raise ProgramError(f"step {k}: kind {s.kind} is not 1..4", ARG)
        if len(s.inputs) != n_in or any(not 0 <= j <= k for j in s.inputs):
            raise ProgramError(
                f"step {k} ({s.kind_name}): inputs {s.inputs} must be {n_in} tensor(s) in 0..{k}",
                DIMS,
            )
        src = self.tensors[s.inputs[0]]
        geometry = (*s.kernel, *s.stride, *s.pad, *s.dilation)
        if min(*s.kernel, *s.stride, *s.dilation) < 1 or min(s.pad) < 0:
            raise ProgramError(f"step {k}: kernel/stride/dilation must be >= 1 and pads >= 0", ARG)
        if max(geometry) > MAX_GEOMETRY:
            raise ProgramError(
                f"step {k}: kernel/stride/pad/dilation must be <= {MAX_GEOMETRY}, got {geometry}",
                ARG,
            )
        for v in (0, 1):
            lo, hi = int_range(out.bits[v])
            a, b = s.act[v]
            if s.kind != KIND_PAD and not lo <= a <= b <= hi:
                raise ProgramError(
                    f"step {k}: act[{v}] = {s.act[v]} not inside the output's "
                    f"{out.bits[v]}-bit range",
                    ARG,
                )
        if s.kind in (KIND_CONV, KIND_DEPTHWISE):
            self._check_conv_step(k, s, src, out)
            return
        if (
            (*s.kernel, *s.stride, *s.dilation) != (1,) * 6
            or s.w_bits != 8
            or s.slot != -1
            or (s.kind == KIND_ADD and s.pad != (0, 0))
        ):
            raise ProgramError(
                f"step {k} ({s.kind_name}): kernel, stride and dilation must be 1"
                f"{', pads 0' if s.kind == KIND_ADD else ''}, w_bits 8 and slot -1",
                ARG,
            )
        if s.kind == KIND_PAD:
            if any(q is not None for q in s.quant):
                raise ProgramError(f"step {k}: pad has no quant blocks (quant -1)", ARG)
            if out.c != src.c or out.h < src.h + s.pad[0] or out.w < src.w + s.pad[1]:
                raise ProgramError(
                    f"step {k}: pad needs the same channels in and out and an output at "
                    "least input + pads",
                    DIMS,
                )
            if src.bits != out.bits or src.zp != out.zp:
                raise ProgramError(
                    f"step {k}: pad needs the same bits and zero points in and out", ARG
                )
            return
        other = self.tensors[s.inputs[1]]
        if src.shape != out.shape or other.shape != out.shape:
            raise ProgramError(f"step {k}: add needs same-shaped inputs and output", DIMS)
        for v in (0, 1):
            q = _quant_block(k, v, s.quant[v], ADD_QUANT_WORDS)
            m, sh = q[1::2], q[2::2]
            if (
                not 0 <= q[0] <= MAX_ADD_LEFT_SHIFT
                or (m < 0).any()
                or (sh < -31).any()
                or (sh > 30).any()
            ):
                raise ProgramError(
                    f"step {k}: quant[{v}] needs left_shift in [0, {MAX_ADD_LEFT_SHIFT}], "
                    "multipliers >= 0 and shifts in [-31, 30]",
                    ARG,
                )

    def _check_conv_step(self, k: int, s: StageStep, src: StageTensor, out: StageTensor) -> None:
        """A conv/depthwise step: the C checks these per variant (quant block, then the
        kernel's argument checks, edgeplus__check_conv_args, in its order)."""
        if s.w_bits not in SUPPORTED_BITS:
            raise ProgramError(f"step {k}: w_bits must be 2, 4 or 8, got {s.w_bits}", BITS)
        if s.slot != self.slot_steps().index(k):
            raise ProgramError(
                f"step {k}: slot must be {self.slot_steps().index(k)} (slots count the "
                f"conv/depthwise steps in order), got {s.slot}",
                ARG,
            )
        shape = self.filter_shape(k)
        kc = s.kernel[0] * s.kernel[1] * (src.c if s.kind == KIND_CONV else 1)
        for v in (0, 1):
            q = _quant_block(k, v, s.quant[v], 3 * out.c)
            m, sh = q[: out.c], q[out.c : 2 * out.c]
            if (m < 0).any() or (sh < -31).any() or (sh > 30).any():
                raise ProgramError(
                    f"step {k}: quant[{v}] multipliers must be >= 0 and shifts in [-31, 30]", ARG
                )
            for axis, (i_sz, o_sz) in enumerate(((src.h, out.h), (src.w, out.w))):
                if (o_sz - 1) * s.stride[axis] - s.pad[axis] > i_sz - 1:
                    raise ProgramError(f"step {k}: output size {o_sz} reads past the input", DIMS)
            if math.prod(shape) > _INT32_MAX:
                raise ProgramError(
                    f"step {k}: filter {shape} holds more than 2**31 - 1 values", DIMS
                )
            if s.kind == KIND_DEPTHWISE and src.c != out.c:
                raise ProgramError(f"step {k}: depthwise needs in channels == out channels", DIMS)
            if kc > max_kc(src.bits[v], s.w_bits):
                raise ProgramError(
                    f"step {k}: K = {kc} is above {max_kc(src.bits[v], s.w_bits)} at "
                    f"{src.bits[v]}-bit inputs and {s.w_bits}-bit weights (the int32 "
                    "accumulator could overflow)",
                    DIMS,
                )
            if s.kernel[0] * s.kernel[1] * src.c > _INT32_MAX // 8:
                raise ProgramError(f"step {k}: filter {shape} is too large (im2col columns)", DIMS)
            for axis in (0, 1):
                if s.pad[axis] > (s.kernel[axis] - 1) * s.dilation[axis]:
                    raise ProgramError(
                        f"step {k}: pad {s.pad[axis]} is not below the dilated kernel extent "
                        f"{(s.kernel[axis] - 1) * s.dilation[axis] + 1}",
                        ARG,
                    )

    # ------------------------------------------------------------------ words

    def to_words(self) -> np.ndarray:
        """The program as ``int32`` words (the layout in the module docstring)."""
        T, S, n = len(self.tensors), len(self.steps), int(self.grid)
        P = n * n
        quant_start = HEADER_WORDS + T * TENSOR_WORDS + S * STEP_WORDS + P * (1 + 4 * T)
        blocks: list[np.ndarray] = []
        where: dict[bytes, int] = {}
        offsets = []
        pos = quant_start
        for s in self.steps:
            pair = []
            for v in (0, 1):
                if s.quant[v] is None:
                    pair.append(-1)
                    continue
                q = np.asarray(s.quant[v], dtype=np.int32)
                key = q.tobytes()
                if key not in where:
                    where[key] = pos
                    blocks.append(q)
                    pos += q.size
                pair.append(where[key])
            offsets.append(pair)
        words = [MAGIC, VERSION, T, S, n, int(self.arena_bytes), pos, 0]
        for t in self.tensors:
            words += [t.h, t.w, t.c, *t.bits, *t.zp, t.offset, t.size]
        for s, (q0, q1) in zip(self.steps, offsets, strict=True):
            ins = (*s.inputs, -1) if len(s.inputs) == 1 else s.inputs
            words += [
                s.kind,
                *ins,
                *s.kernel,
                *s.stride,
                *s.pad,
                *s.dilation,
                s.w_bits,
                s.slot,
                *s.act[0],
                *s.act[1],
                q0,
                q1,
                0,
            ]
        for p in range(P):
            words += [int(self.outlier[p]), *self.regions[p].ravel().tolist()]
        out = np.concatenate([np.asarray(words, dtype=np.int64), *blocks]).astype(np.int64)
        if out.size != pos:  # pragma: no cover - layout bug
            raise AssertionError("program layout")
        if out.min() < -(2**31) or out.max() > 2**31 - 1:
            raise ProgramError("a program word does not fit in int32", ARG)
        return out.astype("<i4")

    @classmethod
    def from_words(cls, words) -> StageProgram:
        """Read (and check) a program written by :meth:`to_words`."""
        w = np.asarray(words)
        if w.dtype.kind not in "iu" or w.ndim != 1:
            raise ProgramError("a program is a 1-D array of int32 words", DIMS)
        w = w.astype(np.int64)
        if w.size < HEADER_WORDS:
            raise ProgramError(f"a program has at least {HEADER_WORDS} words, got {w.size}", DIMS)
        if w[0] != MAGIC or w[1] != VERSION:
            raise ProgramError("not a stage program (magic 'EPS1', version 1 expected)", ARG)
        T, S, n, arena, total = (int(v) for v in w[2:7])
        if total != w.size:
            raise ProgramError(f"header says {total} words, got {w.size}", DIMS)
        P = n * n
        if not (2 <= T <= MAX_TENSORS and S == T - 1 and 1 <= n <= MAX_GRID):
            raise ProgramError(f"bad header counts: T={T}, S={S}, n={n}", DIMS)
        need = HEADER_WORDS + T * TENSOR_WORDS + S * STEP_WORDS + P * (1 + 4 * T)
        if w.size < need:
            raise ProgramError(
                f"program of {w.size} words is shorter than its tables ({need})", DIMS
            )
        pos = HEADER_WORDS
        tensors = []
        for _ in range(T):
            r = [int(v) for v in w[pos : pos + TENSOR_WORDS]]
            tensors.append(StageTensor(r[0], r[1], r[2], (r[3], r[4]), (r[5], r[6]), r[7], r[8]))
            pos += TENSOR_WORDS
        raw_steps = []
        for _ in range(S):
            raw_steps.append([int(v) for v in w[pos : pos + STEP_WORDS]])
            pos += STEP_WORDS
        records = w[pos : pos + P * (1 + 4 * T)].reshape(P, 1 + 4 * T)
        outlier, regions = records[:, 0], records[:, 1:].reshape(P, T, 4)
        steps = []
        for k, r in enumerate(raw_steps):
            kind = r[0]
            quant = []
            for off in r[17:19]:
                # -1: no block; outside the program: an empty block (the check names it)
                size = ADD_QUANT_WORDS if kind == KIND_ADD else 3 * tensors[k + 1].c
                inside = need <= off and size >= 0 and off + size <= w.size
                quant.append(
                    None if off == -1 else w[off : off + size if inside else off].astype(np.int32)
                )
            steps.append(
                StageStep(
                    kind=kind,
                    inputs=(r[1],) if r[2] == -1 else (r[1], r[2]),
                    kernel=(r[3], r[4]),
                    stride=(r[5], r[6]),
                    pad=(r[7], r[8]),
                    dilation=(r[9], r[10]),
                    w_bits=r[11],
                    slot=r[12],
                    act=((r[13], r[14]), (r[15], r[16])),
                    quant=tuple(quant),
                )
            )
        return cls(tuple(tensors), tuple(steps), n, outlier, regions, arena)
