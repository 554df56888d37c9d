"""VDPC and VDQS (QuantMCU, ALGORITHMS.md section 4) from calibration data.

Both work on the *stage feature maps* of a patch plan: the materialized outputs of the
stage's steps (:mod:`~tfmot_edgeplus.patching.planner`; a BN/activation fused into a conv
is one map, its post-activation values, which are what gets quantized), the split tensor
included. The float model's stage runs as one Keras sub-model, batched, over the ``N``
calibration samples; every figure below is accumulated batch by batch in three passes
(ranges and per-patch maxima, the ``|v|`` histograms, the value histograms of the normal
patches), so the calibration set never has to fit in memory as feature maps.

VDPC (value-driven patch classification)
----------------------------------------
* ``phi_i`` per map ``i`` = the ``phi`` quantile of ``|v|`` over all calibration values of
  the map, read from a ``bins``-bin histogram on ``[0, max |v|]`` (the upper edge of the
  bin where the cumulative count reaches ``phi``: within ``max|v| / bins``, rounded up).
* In sample ``s``, patch ``p`` *exceeds* when some map has ``|v| > phi_i`` inside the
  patch's region of that map (its receptive-field region, halo included).
* ``p`` is an **outlier patch** when it exceeds in more than ``outlier_sample_fraction`` of
  the calibration samples (``outlier_sample_fraction=1`` disables VDPC). It is a share of
  *samples*, judged per patch, not a share of patches: with ``phi=0.999`` most patches of
  centred images hold one of a map's top 0.1 % values in more than 10 % of the samples, so
  ``0.1`` can make most patches outliers (29 of 36 on Fashion-MNIST at 96x96); the plan
  reports the share it got (``PatchPlan.outlier_share``). Outlier patches keep 8-bit
  activations on every map (their branch); the other patches are *normal* and go to VDQS.

VDQS (value-driven quantization search), for the normal patches
-----------------------------------------------------------------
Decision units: a map and the maps that copy it (``ZeroPadding2D``, pooling: a copy keeps
its input's bits). The split tensor stays at 8 bits (the rest of the model is int8), and so
does any unit it belongs to; the model input is 8-bit. For each other unit ``i`` and
``b`` in ``{8, 4, 2}``:

* ``[a_b(i), c_b(i)]``: the range the normal patches' values of map ``i`` are quantized
  on at ``b`` bits: the clipping (from a few low/high quantiles of a ``bins``-bin histogram
  of those values, widened to contain 0) with the least quantization MSE. Normal patches
  hold no outliers, so clipping costs them little, and a b-bit grid on their own range is
  much finer than on the int8 tensor's.
* ``H_b(i)``: entropy (bits) of the map's values over the normal patches' regions,
  quantized uniformly to ``2**b`` levels on ``[a_b, c_b]``;
  ``Omega_raw(i, b) = max(H_8(i) - H_b(i), 0)``, the information lost.
* ``Phi_raw(i, b)``: what the ops that read ``i`` save in the normal patches (the op writing
  ``i`` is unchanged), counted as ``saving`` says:

  - ``"bitops"`` (the paper's): ``BitOPs = MACs x w_bits x a_bits``, so
    ``sum over readers and normal patches of MACs(region) * w_bits * (8 - b)``;
  - ``"instructions"``: our kernels' modeled M4 instructions
    (:mod:`~tfmot_edgeplus.patching.cost_model`),
    ``sum of MACs(region) * (instr_per_mac(op, w_bits, 8) - instr_per_mac(op, w_bits, b))``:
    a bit-width whose kernels are not measured faster saves nothing, and one measured slower
    has a negative ``Phi``, so it is never chosen for speed.
* Both are normalised by their maximum over every unit and ``b`` (one scale for all maps,
  so maps compare with each other; ``b = 8`` gives 0; if nothing is saved anywhere,
  ``Phi = 0``), and ``S(i, b) = -lambda * Omega(i, b) + (1 - lambda) * Phi(i, b)``;
  ``S(i, 8) = 0``.

The search: units are visited in decreasing order of their best score ``max_b S(i, b)``
(ties: earlier map first); for each, the candidates ``b`` in ``low_bits`` (default ``{4, 2}``)
are tried best score first, and the first with ``S(i, b) > S(i, 8)`` whose plan keeps the
patch-based peak SRAM within ``sram_budget`` is taken (else the unit stays at 8 bits).
Scores do not depend on the other units' bits under either model, so one pass is the whole
search. Lowering bits never raises the modeled peak (outlier patches stay 8-bit), so the
budget only binds if the 8-bit plan was already over it, which the plan search excludes; it
is checked anyway.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from tfmot_edgeplus._compat import keras
from tfmot_edgeplus.patching.cost_model import instr_per_mac, op_kind
from tfmot_edgeplus.patching.planner import COPY_KINDS, PatchPlanner

__all__ = [
    "CANDIDATE_BITS",
    "SAVINGS",
    "StageRunner",
    "VDPCResult",
    "VDQSResult",
    "bit_units",
    "check_saving",
    "check_calib_data",
    "entropy_bits",
    "vdpc",
    "vdqs",
]

CANDIDATE_BITS = (8, 4, 2)
SAVINGS = ("bitops", "instructions")


def check_calib_data(calib_data, input_shape) -> np.ndarray:
    """``calib_data`` as a float32 array of ``N >= 1`` samples of ``input_shape``."""
    try:
        x = np.asarray(calib_data, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"calib_data must be an array of N samples of the model input "
            f"(shape (N, {', '.join(map(str, input_shape))})): {e}"
        ) from None
    want = tuple(int(d) for d in input_shape)
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want or x.shape[0] < 1:
        raise ValueError(
            f"calib_data must have shape (N, {', '.join(map(str, want))}) (N >= 1 samples of "
            f"the model input), got {tuple(x.shape)}."
        )
    if not np.isfinite(x).all():
        raise ValueError("calib_data contains NaN or infinite values.")
    return x


def _check_fraction(value, name, lo_open, hi_open):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    ok = ok and math.isfinite(value)
    if ok:
        ok = (value > 0 if lo_open else value >= 0) and (value < 1 if hi_open else value <= 1)
    if not ok:
        rng = ("(0" if lo_open else "[0") + ", " + ("1)" if hi_open else "1]")
        raise ValueError(f"{name} must be a number in {rng}, got {value!r}.")
    return float(value)


def entropy_bits(counts) -> float:
    """Shannon entropy (bits) of a histogram."""
    c = np.asarray(counts, dtype=np.float64)
    c = c[c > 0]
    if c.size == 0:
        return 0.0
    p = c / c.sum()
    return float(-(p * np.log2(p)).sum())


class StageRunner:
    """The float model's stage (up to ``split``) as one Keras sub-model, run in batches."""

    def __init__(self, model, planner: PatchPlanner, split: str, calib_data, batch_size=16):
        self.planner = planner
        self.split = split
        self.maps = planner.stage_tensors(split)[1:]
        self.x = check_calib_data(calib_data, planner.graph.input_shape)
        self.batch_size = int(batch_size)
        outputs = [model.get_layer(t).output for t in self.maps]
        self.model = keras.Model(model.inputs, outputs, name=f"{model.name}_stage")

    def batches(self):
        """Yield ``{map: float array (B, H, W, C)}`` per batch."""
        for start in range(0, len(self.x), self.batch_size):
            outs = self.model(self.x[start : start + self.batch_size], training=False)
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            yield {t: np.asarray(o) for t, o in zip(self.maps, outs, strict=True)}


@dataclass(frozen=True)
class VDPCResult:
    """Per-map thresholds and the outlier patches (``n x n`` arrays, row-major)."""

    maps: tuple[str, ...]
    phi_values: dict
    value_range: dict
    exceed_fraction: np.ndarray
    outlier: np.ndarray


def _patch_max(a: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """``a`` (B, H, W) -> (B, n, n): max over each patch's region (0 if no region)."""
    n = reg.shape[1]
    out = np.zeros((a.shape[0], n, n), dtype=np.float32)
    for i in range(n):
        y, h = reg[0, i], reg[1, i]
        if not h:
            continue
        rows = a[:, y : y + h, :].max(axis=1)
        for j in range(n):
            x, w = reg[2, j], reg[3, j]
            if w:
                out[:, i, j] = rows[:, x : x + w].max(axis=1)
    return out


def vdpc(runner: StageRunner, grid: int, phi=0.999, outlier_sample_fraction=0.1,
         bins=4096) -> VDPCResult:
    """Mark the outlier patches of the ``grid x grid`` plan (rule in the module docstring):
    those exceeding ``phi`` in more than ``outlier_sample_fraction`` of the samples."""
    phi = _check_fraction(phi, "phi", True, True)
    outlier_sample_fraction = _check_fraction(
        outlier_sample_fraction, "outlier_sample_fraction", False, False)
    reg = runner.planner.regions(runner.split, grid)
    maps = runner.maps
    lo = dict.fromkeys(maps, np.inf)
    hi = dict.fromkeys(maps, -np.inf)
    patch_max = {t: [] for t in maps}
    for batch in runner.batches():  # pass 1: ranges and per-patch max |v|
        for t, v in batch.items():
            lo[t] = min(lo[t], float(v.min()))
            hi[t] = max(hi[t], float(v.max()))
            patch_max[t].append(_patch_max(np.abs(v).max(axis=-1), reg[t]))
    max_abs = {t: max(abs(lo[t]), abs(hi[t])) for t in maps}
    hist = {t: np.zeros(bins, dtype=np.int64) for t in maps}
    for batch in runner.batches():  # pass 2: |v| histograms
        for t, v in batch.items():
            if max_abs[t] > 0:
                k = np.minimum((np.abs(v) * (bins / max_abs[t])).astype(np.int64), bins - 1)
                hist[t] += np.bincount(k.ravel(), minlength=bins)
    phi_values, exceed = {}, None
    for t in maps:
        if max_abs[t] > 0:
            cum = np.cumsum(hist[t])
            k = int(np.searchsorted(cum, phi * cum[-1]))
            phi_values[t] = float(min(k + 1, bins) * max_abs[t] / bins)
        else:
            phi_values[t] = 0.0
        over = np.concatenate(patch_max[t]) > phi_values[t]
        exceed = over if exceed is None else exceed | over
    fraction = exceed.mean(axis=0)
    return VDPCResult(
        maps=tuple(maps),
        phi_values=phi_values,
        value_range={t: (lo[t], hi[t]) for t in maps},
        exceed_fraction=fraction,
        outlier=fraction > outlier_sample_fraction,
    )


@dataclass(frozen=True)
class VDQSResult:
    """Bits of the normal patches per stage map, and the scores behind them.

    ``scores[unit]`` holds ``entropy``, ``omega``, ``phi`` and ``score``, each a tuple over
    ``CANDIDATE_BITS`` (8, 4, 2); ``order`` the units in the order they were visited;
    ``ranges[unit]`` the real ``[lo, hi]`` its normal patches are quantized on at its chosen
    bits (units below 8 bits only).
    """

    bits: dict
    units: dict
    scores: dict
    order: tuple[str, ...]
    ranges: dict


def bit_units(planner: PatchPlanner, split: str) -> tuple[dict, set]:
    """``({root map: (maps sharing its bits)}, fixed roots)`` over the stage."""
    root = {planner.graph.input_name: planner.graph.input_name}
    for s in planner.stage(split):
        root[s.output] = root[s.inputs[0]] if s.kind in COPY_KINDS else s.output
    units: dict[str, tuple] = {}
    for t, r in root.items():
        units[r] = (*units.get(r, ()), t)
    fixed = {planner.graph.input_name, root[split]}
    return units, fixed


def vdqs(
    runner: StageRunner,
    grid: int,
    vdpc_result: VDPCResult,
    lam=0.5,
    sram_budget: int | None = None,
    bins=4096,
    low_bits=(4, 2),
    saving="bitops",
) -> VDQSResult:
    """Bits per stage map for the normal patches (rule in the module docstring)."""
    lam = _check_fraction(lam, "lam", False, False)
    check_saving(saving)
    planner, split = runner.planner, runner.split
    units, fixed = bit_units(planner, split)
    bits = dict.fromkeys(runner.maps, 8)
    normal = ~np.asarray(vdpc_result.outlier, dtype=bool)
    candidates = [r for r in units if r not in fixed]
    if not normal.any() or not candidates:
        return VDQSResult(bits, units, {}, (), {})

    reg = planner.regions(split, grid)
    masks = {}
    for r in candidates:
        h, w = planner.shapes[r][:2]
        m = np.zeros((h, w), dtype=bool)
        a = reg[r]
        for i, j in zip(*np.nonzero(normal), strict=True):
            m[a[0, i] : a[0, i] + a[1, i], a[2, j] : a[2, j] + a[3, j]] = True
        masks[r] = m
    hist = {r: np.zeros(bins, dtype=np.int64) for r in candidates}
    for batch in runner.batches():  # pass 3: value histograms of the normal patches
        for r in candidates:
            lo, hi = vdpc_result.value_range[r]
            if hi <= lo:
                continue
            v = batch[r][:, masks[r], :]
            k = np.clip(((v - lo) * (bins / (hi - lo))).astype(np.int64), 0, bins - 1)
            hist[r] += np.bincount(k.ravel(), minlength=bins)

    ranges = {r: _clip_ranges(hist[r], *vdpc_result.value_range[r]) for r in candidates}
    entropy = {r: _entropies(hist[r], *vdpc_result.value_range[r], ranges[r]) for r in candidates}
    readers = {
        r: [s for s in planner.stage(split) if s.macs_per_pixel and s.inputs[0] in units[r]]
        for r in candidates
    }
    saved = {r: _saved(planner, reg, normal, readers[r], saving) for r in candidates}
    omega_raw = {r: tuple(max(entropy[r][0] - e, 0.0) for e in entropy[r]) for r in candidates}
    o_max = max(max(v) for v in omega_raw.values()) or 1.0
    p_max = max(max(v) for v in saved.values()) or 1  # nothing saved anywhere: Phi = 0
    scores = {}
    for r in candidates:
        omega = tuple(v / o_max for v in omega_raw[r])
        phi_ = tuple(v / p_max for v in saved[r])
        score = tuple(-lam * o + (1 - lam) * p for o, p in zip(omega, phi_, strict=True))
        scores[r] = {"entropy": entropy[r], "omega": omega, "phi": phi_, "score": score}

    position = {t: k for k, t in enumerate(runner.maps)}
    order = sorted(candidates, key=lambda r: (-max(scores[r]["score"][1:]), position[r]))
    budget = None if sram_budget is None else int(sram_budget)
    outlier = ~normal
    for r in order:
        score = dict(zip(CANDIDATE_BITS, scores[r]["score"], strict=True))
        for b in sorted(low_bits, key=lambda b: -score[b]):
            if score[b] <= score[8]:
                break
            trial = {**bits, **dict.fromkeys(units[r], b)}
            trial.pop(planner.graph.input_name, None)
            if budget is None or planner.patch_peak(split, grid, trial, outlier) <= budget:
                bits = trial
                break
    chosen = {r: list(ranges[r][bits[r]]) for r in candidates if bits[r] < 8}
    return VDQSResult(bits, units, scores, tuple(order), chosen)


def check_saving(saving) -> str:
    """``saving`` as VDQS's Phi counts it: ``"bitops"`` or ``"instructions"``."""
    if saving not in SAVINGS:
        raise ValueError(
            f"saving must be one of {SAVINGS} (what VDQS's Phi counts), got {saving!r}."
        )
    return saving


def _saved(planner, reg, normal, readers, saving) -> tuple:
    """``Phi_raw`` of one unit per ``CANDIDATE_BITS``: the BitOPs or the modeled M4
    instructions its readers save in the normal patches (negative: lower bits cost more)."""
    out = np.zeros(len(CANDIDATE_BITS))
    for s in readers:
        macs = int((np.outer(reg[s.output][1], reg[s.output][3]) * normal).sum())
        macs *= s.macs_per_pixel
        op = op_kind(s.kind, s.kernel)
        for k, b in enumerate(CANDIDATE_BITS):
            if saving == "bitops":
                out[k] += macs * planner.weight_bits * (8 - b)
            elif op is not None:
                w = planner.weight_bits
                out[k] += macs * (instr_per_mac(op, w, 8) - instr_per_mac(op, w, b))
    return tuple(float(v) for v in out)


def _clip_ranges(hist: np.ndarray, lo: float, hi: float) -> dict:
    """``{bits: (a, c)}``: the clipping range of the normal patches' values at ``bits`` that
    minimises the quantization MSE over the histogram (``a`` from the 0/0.1/1 % quantiles,
    ``c`` from the 100/99.99/99.9/99.5/99/98/95 % ones; widened to contain 0)."""
    total = hist.sum()
    if total == 0 or hi <= lo:
        return {b: (min(lo, 0.0), max(hi, 0.0)) for b in CANDIDATE_BITS}
    width = (hi - lo) / hist.size
    centers = lo + (np.arange(hist.size) + 0.5) * width
    cum = np.cumsum(hist) / total

    def quantile(q):
        k = int(np.searchsorted(cum, q))
        return lo + min(k + 1, hist.size) * width

    lows = sorted({lo} | {quantile(q) - width for q in (0.001, 0.01)})
    highs = sorted({hi} | {quantile(q) for q in (0.9999, 0.999, 0.995, 0.99, 0.98, 0.95)})
    out = {}
    for bits in CANDIDATE_BITS:
        levels = (1 << bits) - 1
        best = None
        for a in lows:
            for c in highs:
                a0, c0 = min(a, 0.0), max(c, 0.0)
                if c0 <= a0:
                    continue
                step = (c0 - a0) / levels
                q = np.clip(np.round((centers - a0) / step), 0, levels) * step + a0
                mse = float((hist * (q - centers) ** 2).sum())
                if best is None or mse < best[0]:
                    best = (mse, (float(a0), float(c0)))
        out[bits] = best[1]
    return out


def _entropies(hist: np.ndarray, lo: float, hi: float, ranges: dict) -> tuple[float, ...]:
    """Entropy of the values at 8/4/2 bits, each quantized on its range in ``ranges``."""
    if hist.sum() == 0 or hi <= lo:
        return (0.0,) * len(CANDIDATE_BITS)
    width = (hi - lo) / hist.size
    centers = lo + (np.arange(hist.size) + 0.5) * width
    out = []
    for bits in CANDIDATE_BITS:
        a, b = ranges[bits]
        levels = (1 << bits) - 1
        q = np.clip(np.round((centers - a) / (b - a) * levels), 0, levels).astype(np.int64)
        out.append(entropy_bits(np.bincount(q, weights=hist, minlength=levels + 1)))
    return tuple(out)
