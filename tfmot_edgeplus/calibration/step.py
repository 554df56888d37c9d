"""The on-device QCore step in integers: the NumPy reference of the device step and of the
QCore refresh. tflm_ops' ``edgeplus_qcore_step`` and ``edgeplus_qcore_refresh`` are the C
port, bit for bit (tests/test_qcore_c.py, the golden cases of tflm_ops/tests), so everything
here is integer arithmetic with one definition.

Notation: the head (:class:`~tfmot_edgeplus.calibration.head.IntHead`) has layers
``l = 0..L-1``; ``a_l`` is layer l's int8 input (``a_0`` = the backbone output kept for each
sample), ``z`` the int8 logits; ``x~ = a_l - input_zero_point``.

**Score.** ``pred = argmax z`` (first maximum), ``margin[n] = z[n, y] - max_{o != y} z[n, o]``
(int). A model's score on a set is ``(correct, sum of margins)``, compared
lexicographically.

**Error signal (no back-propagation).** At the output, for every class ``o != y`` that beats
the label or comes within ``margin`` int8 logit steps of it,
``e[n, o] = clamp(z[n, o] - z[n, y] + margin, 0, 2 * margin)``, and
``e[n, y] = -sum_{o != y} e[n, o]``: the gradient of a multi-class hinge loss, in integers.
A hidden layer's output gets the output error through a fixed random +-1 matrix (direct
feedback alignment: ``B_l[j, o] = +1`` if bit 0 of ``feedback_hash(l, j, o)`` is set, else
-1; never stored), gated by the unit being active (whether or not the layer has a fused ReLU):
``e_l[n, j] = clamp(sum_o B_l[j, o] e[n, o], -127, 127)`` where ``a_{l+1}[n, j] >
output_zero_point`` (the unit's real output is positive), else 0.

**Features per weight** (int8, 4 of them, for weight ``W[o, i]`` of a calibrated layer):
``G[o, i]`` is the first-order change of the error-weighted output if ``W[o, i]`` rose by one
step, in the layer's output units: ``g = sum_n e[n, o] x~[n, i]`` (int32; the step refuses
sets large enough to overflow it), scaled by the row's requantization multiplier relative
to the layer's largest one,
``G = RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(g, m[o]), smax - s[o])`` with
``smax = max_o s[o]`` (no left shift, so no overflow). ``A[i] = sum_n |x~[n, i]|``;
``E[o] = sum_n |e[n, o]|``. Each is normalised to [-127, 127] by ``v * 127 / max|v|`` with
C's truncating division (0 when the maximum is 0), and ``W[o, i] * 127 / qmax(bits)``
likewise. Feature order: ``(G, W, A, E)``.

**Flip network** (:class:`FlipNet`, int8, one per calibrated layer):
``acc1[h] = b1[h] + sum_k W1[h, k] f[k]``;
``hid[h] = clamp(MultiplyByQuantizedMultiplier(acc1[h], m1, s1), 0, 127)``;
``acc2 = b2 + sum_h W2[h] hid[h]`` (the network's confidence, int32). At level ``k`` the
update is ``+1`` if ``acc2 >= (k + 1) * threshold``, ``-1`` if
``acc2 <= -(k + 1) * threshold``, else 0. ``threshold`` is the ``acc2`` of a float network
output of 1/6, so level 2 is the float network's ``round(clamp(out, -1, 1))``; lower
levels flip more weights, higher ones only those the network is surer of.

**Step** (:func:`qcore_step`). Forward the QCore + new samples; compute every calibrated
layer's ``acc2`` from that one forward; then for ``k = 0 .. tries - 1``: add the level-k
updates with saturation to the narrow range (``edgeplus_bitflip_apply``), forward again,
and keep the new weights at the first level whose score is higher than before (more
samples right, or as many right with a larger total margin) and that passes the guard. If
no level is kept (or a level flips nothing) the step is rolled back: the weights stay as
they were, so a step never lowers the score on the samples it scores.

**Old-domain guard.** The first ``guard`` samples (``0 <= guard <= n - 1``) are *guarded*:
the QCore's old-domain part, items drawn from the training data, the device's memory of
what the model knew. The forward, the error signals, the features and the flip-net
confidences use all n samples as above; the score ``(correct, sum of margins)`` is taken
over the unguarded samples ``[guard, n)`` only, and the guard count is the number of
guarded samples ``[0, guard)`` predicted right. A level is kept iff its unguarded score is
higher than before AND its guard count is ``>= guard_min_correct``
(``0 <= guard_min_correct <= guard``). ``guard = 0`` is the unguarded step.

**Refresh** (:func:`qcore_refresh`; the calibrator refreshes its new-data memory from memory
U chunk, the QCore itself stays). Every item has a miss count: the memory items' counts
carried over plus, over the sequence of correctness vectors the chunk's
steps observed, its correct -> incorrect transitions; an item never right in that sequence
gets the sequence length (the most it could have). ``size`` items are drawn without
replacement with weights ``count + 1`` by an xorshift32 generator (``r = next() % total``,
then the first item whose running weight sum exceeds r).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from tfmot_edgeplus.core import intmath
from tfmot_edgeplus.core.intmath import narrow_range
from tfmot_edgeplus.runtime.qcore_step_result import StepResult

__all__ = [
    "FEATURES",
    "FlipNet",
    "StepResult",
    "error_signals",
    "feedback_sign",
    "flip_features",
    "qcore_refresh",
    "qcore_step",
    "score",
    "xorshift32",
]

FEATURES = ("G", "W", "A", "E")
MAX_HIDDEN = 1024
MAX_MARGIN = 255


def _norm127(v: np.ndarray) -> np.ndarray:
    """``v * 127 / max|v|`` truncated toward zero (C division), 0 if the maximum is 0."""
    v = np.asarray(v, np.int64)
    vmax = int(np.abs(v).max()) if v.size else 0
    if vmax == 0:
        return np.zeros(v.shape, np.int8)
    num = v * 127
    return (np.sign(num) * (np.abs(num) // vmax)).astype(np.int8)


def score(logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, int, int]:
    """``(correct per sample, number correct, sum of margins)`` of int8 logits."""
    z = np.asarray(logits, np.int32)
    y = np.asarray(y)
    n = np.arange(len(z))
    pred = z.argmax(axis=1)
    rival_z = z.copy()
    rival_z[n, y] = np.iinfo(np.int32).min
    margin = z[n, y] - rival_z.max(axis=1)
    correct = pred == y
    return correct, int(correct.sum()), int(margin.sum())


def _output_error(logits: np.ndarray, y: np.ndarray, margin: int) -> np.ndarray:
    z = np.asarray(logits, np.int32)
    n = np.arange(len(z))
    zy = z[n, y][:, None]
    e = np.clip(z - zy + margin, 0, 2 * margin)
    e[n, y] = 0
    e[n, y] = -e.sum(axis=1)
    return e.astype(np.int32)


def feedback_hash(layer: int, j, o) -> np.ndarray:
    """32-bit hash of (layer, unit, class) for the fixed feedback signs (murmur3 finaliser)."""
    h = (
        np.uint64(layer) * np.uint64(0x9E3779B1)
        + np.asarray(j, np.uint64) * np.uint64(0x85EBCA77)
        + np.asarray(o, np.uint64) * np.uint64(0xC2B2AE3D)
    ) & np.uint64(0xFFFFFFFF)
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x85EBCA6B)) & np.uint64(0xFFFFFFFF)
    h ^= h >> np.uint64(13)
    h = (h * np.uint64(0xC2B2AE35)) & np.uint64(0xFFFFFFFF)
    h ^= h >> np.uint64(16)
    return h


def feedback_sign(layer: int, units: int, classes: int) -> np.ndarray:
    """The (units, classes) +-1 feedback matrix of hidden layer ``layer``."""
    j, o = np.meshgrid(np.arange(units), np.arange(classes), indexing="ij")
    return np.where(feedback_hash(layer, j, o) & np.uint64(1), 1, -1).astype(np.int32)


def error_signals(head, acts: list[np.ndarray], y: np.ndarray, margin: int) -> list[np.ndarray]:
    """Per layer l, the int error of its output (N, out_l) (see the module doc)."""
    e_out = _output_error(acts[-1], y, margin)
    errors = []
    for l, layer in enumerate(head.layers):
        if l == len(head.layers) - 1:
            errors.append(e_out)
            continue
        b = feedback_sign(l, layer.shape[0], head.num_classes)
        proj = e_out @ b.T
        active = acts[l + 1].astype(np.int32) > layer.output_zero_point
        errors.append((np.clip(proj, -127, 127) * active).astype(np.int32))
    return errors


def _check_error_range(x: np.ndarray, e: np.ndarray) -> None:
    bound = len(x) * int(np.abs(e).max(initial=0)) * 255
    if bound > 2**31 - 1:
        raise ValueError(
            f"{len(x)} samples with errors up to {int(np.abs(e).max())} could overflow the int32 "
            "gradient sums of the step; calibrate on fewer samples per step (or a smaller margin)"
        )


def flip_features(layer, x: np.ndarray, e: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """int8 features (out, in, 4) of ``layer``'s (a HeadLayer) ``weights`` for its int8
    inputs ``x`` and output errors ``e``: (G, W, A, E), see the module doc."""
    xt = np.asarray(x, np.int64) - int(layer.input_zero_point)
    e = np.asarray(e, np.int64)
    _check_error_range(xt, e)
    out, inp = weights.shape
    shift = np.asarray(layer.shift, np.int64)
    g = intmath.saturating_rounding_doubling_high_mul(e.T @ xt, layer.multiplier[:, None])
    g = intmath.rounding_divide_by_pot(g, (shift.max() - shift)[:, None])
    qmax = narrow_range(layer.bits)[1]
    w = np.asarray(weights, np.int64)
    f = np.empty((out, inp, 4), np.int8)
    f[..., 0] = _norm127(g)
    f[..., 1] = (np.sign(w) * (np.abs(w) * 127 // qmax)).astype(np.int8)
    f[..., 2] = _norm127(np.abs(xt).sum(axis=0))[None, :]
    f[..., 3] = _norm127(np.abs(e).sum(axis=0))[:, None]
    return f


@dataclass
class FlipNet:
    """The int8 bit-flip network of one layer (see the module doc for its arithmetic)."""

    w1: np.ndarray  # int8 (H, 4)
    b1: np.ndarray  # int32 (H,)
    m1: int
    s1: int
    w2: np.ndarray  # int8 (H,)
    b2: int
    threshold: int
    bits: int | None = None  # weight bit-width it was trained for (None: any)

    def __post_init__(self):
        self.w1 = np.asarray(self.w1, np.int8)
        self.b1 = np.asarray(self.b1, np.int32)
        self.w2 = np.asarray(self.w2, np.int8).reshape(-1)
        h = self.w1.shape[0]
        if self.w1.shape != (h, len(FEATURES)) or self.b1.shape != (h,) or self.w2.shape != (h,):
            raise ValueError(
                f"FlipNet shapes w1 {self.w1.shape}, b1 {self.b1.shape}, w2 {self.w2.shape} "
                f"do not match: expected (H, {len(FEATURES)}), (H,), (H,)"
            )
        if not 1 <= h <= MAX_HIDDEN:
            raise ValueError(f"FlipNet hidden size must be in [1, {MAX_HIDDEN}], got {h}")
        for name, v, lo in (
            ("b1", int(np.abs(self.b1).max()), 0),
            ("b2", abs(int(self.b2)), 0),
            ("threshold", int(self.threshold), 1),
        ):
            if not lo <= v <= 2**30:
                raise ValueError(
                    f"FlipNet {name} must lie in [{lo}, 2**30] (magnitude), got {v}: the device "
                    "accumulates in int32"
                )
        if not 0 <= int(self.m1) < 2**31 or not -31 <= int(self.s1) <= 30:
            raise ValueError(
                f"FlipNet m1/s1 = {self.m1}/{self.s1} is not a TFLite quantized multiplier "
                "(m1 in [0, 2**31), s1 in [-31, 30])"
            )

    @property
    def hidden(self) -> int:
        return int(self.w1.shape[0])

    @property
    def nbytes(self) -> int:
        """Device bytes: int8 w1 and w2, int32 b1, and b2, m1, s1, threshold (int32 each)."""
        return self.w1.size + self.w2.size + 4 * self.b1.size + 4 * 4

    def confidence(self, features: np.ndarray) -> np.ndarray:
        """int32 ``acc2`` for int8 ``features`` (..., 4)."""
        f = np.asarray(features, np.int64)
        acc1 = f @ self.w1.astype(np.int64).T + self.b1
        hid = np.clip(intmath.multiply_by_quantized_multiplier(acc1, self.m1, self.s1), 0, 127)
        return hid @ self.w2.astype(np.int64) + int(self.b2)

    def decide(self, features: np.ndarray, level: int = 0) -> np.ndarray:
        """int8 update in {-1, 0, +1} at ``level`` (threshold ``(level + 1) * threshold``)."""
        return _updates(self.confidence(features), self.threshold, level)


def _updates(acc2: np.ndarray, threshold: int, level: int) -> np.ndarray:
    t = int(threshold) * (int(level) + 1)
    up = np.zeros(np.shape(acc2), np.int8)
    up[acc2 >= t] = 1
    up[acc2 <= -t] = -1
    return up


def _check_samples(head, x, y) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x)
    y = np.asarray(y)
    if len(x) == 0:
        raise ValueError("the calibration set is empty: pass at least one QCore or new sample")
    if x.ndim != 2 or x.shape[1] != head.input_size:
        raise ValueError(
            f"samples must be head inputs of shape (N, {head.input_size}), got {x.shape}"
        )
    if y.shape != (len(x),) or y.dtype.kind not in "iu":
        raise ValueError(
            f"labels must be {len(x)} integer class indices, got shape {y.shape} dtype {y.dtype}"
        )
    if y.min() < 0 or y.max() >= head.num_classes:
        bad = int(y[(y < 0) | (y >= head.num_classes)][0])
        raise ValueError(
            f"label {bad} is outside the head's class range [0, {head.num_classes}); pass class "
            "indices of the deployed model"
        )
    return x.astype(np.int8), y.astype(np.int64)


def _check_guard(n: int, guard, guard_min_correct) -> None:
    if not isinstance(guard, numbers.Integral) or not 0 <= guard <= n - 1:
        raise ValueError(
            f"guard must be an int in [0, n - 1] = [0, {n - 1}] (the first guard of the {n} "
            f"samples are guarded; at least one must be unguarded), got {guard!r}"
        )
    if not isinstance(guard_min_correct, numbers.Integral) or not 0 <= guard_min_correct <= guard:
        raise ValueError(
            f"guard_min_correct must be an int in [0, guard] = [0, {guard}] (guarded samples "
            f"that must stay right), got {guard_min_correct!r}"
        )


def _guarded_score(logits: np.ndarray, y, guard: int) -> tuple[np.ndarray, int, int, int]:
    """``(correct per sample over all n, correct and sum of margins over [guard, n),
    correct over [0, guard))``."""
    mask_g, c_g, _ = score(logits[:guard], y[:guard])
    mask_u, c_u, m_u = score(logits[guard:], y[guard:])
    return np.concatenate([mask_g, mask_u]), c_u, m_u, c_g


def qcore_step(
    head,
    nets: dict[int, FlipNet],
    x,
    y,
    weights=None,
    margin: int = 16,
    tries: int = 6,
    guard: int = 0,
    guard_min_correct: int = 0,
) -> StepResult:
    """One on-device calibration step on samples ``x`` (head inputs) with labels ``y``.

    ``nets`` maps a head layer index to its :class:`FlipNet` (the calibrated layers);
    ``weights`` are the current head weights (default: the head's own); ``tries`` is the
    number of confidence levels tried; the first ``guard`` samples are guarded: a level is
    kept only if at least ``guard_min_correct`` of them stay right (see the module doc).
    Returns a :class:`StepResult`; the input arrays are never modified.
    """
    if head.num_classes < 2:
        raise ValueError(f"the head has {head.num_classes} class; calibration needs at least 2")
    x, y = _check_samples(head, x, y)
    _check_guard(len(y), guard, guard_min_correct)
    guard, guard_min_correct = int(guard), int(guard_min_correct)
    if not isinstance(tries, numbers.Integral) or not 1 <= tries <= 16:
        raise ValueError(f"tries must be an int in [1, 16] (confidence levels), got {tries!r}")
    if not isinstance(margin, numbers.Integral) or not 1 <= margin <= MAX_MARGIN:
        raise ValueError(f"margin must be an int in [1, {MAX_MARGIN}], got {margin!r}")
    weights = head.weights() if weights is None else [np.array(w, np.int8) for w in weights]
    for l, net in nets.items():
        if not 0 <= l < len(head.layers):
            raise ValueError(
                f"flip net for layer {l}, but the head has layers 0..{len(head.layers) - 1}"
            )
        if net.bits is not None and net.bits != head.layers[l].bits:
            raise ValueError(
                f"the flip net for layer {l} ({head.layers[l].name!r}) was trained for "
                f"{net.bits}-bit weights, but the layer uses {head.layers[l].bits}-bit weights; "
                "fit the calibrator on this model"
            )
    acts = head.activations(x, weights)
    mask_b, c_b, m_b, g_b = _guarded_score(acts[-1], y, guard)
    errors = error_signals(head, acts, y, margin)
    conf = {
        l: net.confidence(flip_features(head.layers[l], acts[l], errors[l], weights[l]))
        for l, net in sorted(nets.items())
    }
    result = StepResult(
        False, 0, 0, c_b, c_b, m_b, m_b, len(y), weights, mask_b, mask_b, guard, g_b, g_b
    )
    for level in range(tries):
        new = [w.copy() for w in weights]
        changed = 0
        for l, acc2 in conf.items():
            layer = head.layers[l]
            lo, hi = narrow_range(layer.bits)
            up = _updates(acc2, nets[l].threshold, level)
            new[l] = np.clip(weights[l].astype(np.int32) + up, lo, hi).astype(np.int8)
            changed += int(np.count_nonzero(new[l] != weights[l]))
        if changed == 0:
            break
        mask_a, c_a, m_a, g_a = _guarded_score(head.forward(x, new), y, guard)
        kept = (c_a, m_a) > (c_b, m_b) and g_a >= guard_min_correct
        kept_weights = new if kept else weights
        result = StepResult(
            kept,
            changed,
            level,
            c_b,
            c_a,
            m_b,
            m_a,
            len(y),
            kept_weights,
            mask_b,
            mask_a,
            guard,
            g_b,
            g_a,
        )
        if kept:
            break
    return result


def xorshift32(state: int) -> int:
    """One xorshift32 step (Marsaglia): the generator of :func:`qcore_refresh`."""
    x = state & 0xFFFFFFFF
    x ^= (x << 13) & 0xFFFFFFFF
    x ^= x >> 17
    x ^= (x << 5) & 0xFFFFFFFF
    return x


def miss_counts(history: list[np.ndarray]) -> np.ndarray:
    """Correct -> incorrect transitions along ``history`` (a list of bool vectors); items
    never correct get ``len(history)``."""
    h = np.asarray(history, bool)
    if h.ndim != 2 or len(h) == 0:
        raise ValueError("history must be a non-empty list of equally long correctness vectors")
    misses = (h[:-1] & ~h[1:]).sum(axis=0)
    return np.where(h.any(axis=0), misses, len(h)).astype(np.int64)


def qcore_refresh(
    prior_counts, history: list[np.ndarray], size: int, seed: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Choose the next memory from memory U chunk (see the module doc).

    ``prior_counts``: one count per item (the memory's carried counts, 0 for new samples);
    ``history``: the correctness vectors the chunk's steps observed over those items.
    Returns ``(chosen item indices in draw order, their new counts, next rng state)``.
    """
    prior = np.asarray(prior_counts, np.int64)
    if prior.size and prior.min() < 0:
        raise ValueError(f"prior_counts must be >= 0, got {int(prior.min())}")
    counts = prior + miss_counts(history)
    if counts.shape != prior.shape:
        raise ValueError(f"history covers {counts.size} items but prior_counts has {prior.size}")
    if not 1 <= size <= len(counts):
        raise ValueError(f"size must be in [1, {len(counts)}] (memory U chunk items), got {size}")
    state = int(seed) & 0xFFFFFFFF
    if state == 0:
        raise ValueError("seed must be a nonzero 32-bit value (xorshift32 never leaves 0)")
    weight = counts + 1
    chosen = []
    for _ in range(size):
        state = xorshift32(state)
        r = state % int(weight.sum())
        k = int(np.searchsorted(np.cumsum(weight), r, side="right"))
        chosen.append(k)
        weight[k] = 0
    idx = np.asarray(chosen, np.int64)
    return idx, counts[idx], state
