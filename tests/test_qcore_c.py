"""tflm_ops' ``edgeplus_qcore_step`` and ``edgeplus_qcore_refresh`` (through the ctypes binding,
plain C and the emulated-DSP build) against the NumPy reference
:mod:`tfmot_edgeplus.calibration.step`, bit for bit: every :class:`StepResult` field, the
weights and the correctness masks, on synthetic heads built directly as ``HeadLayer``s
(W4 and W8, 1 to 3 layers, with and without ReLU clamps, random in-range requantization,
biases and zero points, flip nets on some layers; then the extremes of every range) and on
the converted model of ``tests/test_qcore_step.py``; the int32 bound of the gradient sums
at its edge; the refresh; and the C statuses surfacing as ``KernelError``s that name the
argument. The C tests of the same functions (hand-checked cases, every error status, the
weights untouched after an error) run in ``make -C tflm_ops test-host test-asan`` and on
the emulated M4 (``make -C tflm_ops/m4 test``).
"""

from __future__ import annotations

import numpy as np
import pytest
from builders.golden import random_flipnet, random_int_head
from qcore_helpers import converted_mlp

from tfmot_edgeplus.calibration.head import HeadLayer, IntHead
from tfmot_edgeplus.calibration.step import FlipNet, qcore_refresh, qcore_step
from tfmot_edgeplus.runtime import kernels

_FIELDS = (
    "kept",
    "changed",
    "level",
    "correct_before",
    "correct_after",
    "margin_before",
    "margin_after",
    "n",
    "guard",
    "guard_correct_before",
    "guard_correct_after",
)


def _assert_same(ref, got, what=""):
    for f in _FIELDS:
        assert getattr(got, f) == getattr(ref, f), (
            f"{what}: {f} {getattr(got, f)} != reference {getattr(ref, f)}"
        )
    assert len(got.weights) == len(ref.weights)
    for l, (a, b) in enumerate(zip(ref.weights, got.weights)):
        assert b.dtype == np.int8 and b.shape == a.shape
        np.testing.assert_array_equal(b, a, err_msg=f"{what}: weights of layer {l}")
    np.testing.assert_array_equal(got.correct_mask_before, ref.correct_mask_before)
    np.testing.assert_array_equal(got.correct_mask_after, ref.correct_mask_after)


def _outcome(r) -> tuple[str, int]:
    return ("kept" if r.kept else "rolled back" if r.changed else "nothing flips", r.level)


def _case(seed, extreme=False):
    rng = np.random.default_rng(seed)
    depth = int(rng.integers(1, 4))
    dims = [int(rng.integers(1 if extreme else 3, 20))]
    dims += [int(rng.integers(2, 12)) for _ in range(depth)]
    bits = int(rng.choice([4, 8]))
    n = int(rng.integers(1, 40))
    head, x = random_int_head(rng, dims, bits, n, extreme)
    y = rng.integers(0, dims[-1], n)
    if extreme and rng.random() < 0.2:
        y[:] = 0
    hidden = int(np.exp(rng.uniform(0, np.log(1024)))) if extreme else int(rng.integers(1, 12))
    nets = {l: random_flipnet(rng, hidden, extreme) for l in range(depth) if rng.random() < 0.7}
    margin = int(rng.integers(1, 256 if extreme else 40))
    tries = int(rng.integers(1, 17 if extreme else 8))
    return head, nets, x, y, margin, tries


# ----------------------------------------------------------------------------- step


def _guard(seed, n) -> dict:
    """The old-domain guard of a random case: none for even seeds, else the first
    ``guard`` of the n samples with a random ``guard_min_correct`` in [0, guard]."""
    rng = np.random.default_rng((seed, 21))
    if seed % 2 == 0 or n < 2:
        return {}
    guard = int(rng.integers(1, n))
    return {"guard": guard, "guard_min_correct": int(rng.integers(0, guard + 1))}


def _guard_refused(r) -> bool:
    """The last level tried raised the unguarded score, but the guard refused it."""
    gain = (r.correct_after, r.margin_after) > (r.correct_before, r.margin_before)
    return not r.kept and r.changed > 0 and gain


def test_step_matches_the_reference_on_random_heads(k):
    seen, kinds, refused = {}, set(), 0
    for seed in range(300):
        head, nets, x, y, margin, tries = _case(seed)
        guard = _guard(seed, len(x))
        ref = qcore_step(head, nets, x, y, margin=margin, tries=tries, **guard)
        got = k.qcore_step(head, nets, x, y, margin=margin, tries=tries, **guard)
        _assert_same(ref, got, f"seed {seed} {guard}")
        seen[_outcome(ref)] = seen.get(_outcome(ref), 0) + 1
        kinds.add((head.layers[0].bits, len(head.layers)))
        refused += _guard_refused(ref)
    assert kinds == {(b, d) for b in (4, 8) for d in (1, 2, 3)}
    assert refused >= 3, f"the guard refused a level in only {refused} random cases"
    rolled_levels = {lv for kind, lv in seen if kind == "rolled back"}
    kept_levels = {lv for kind, lv in seen if kind == "kept"}
    assert ("nothing flips", 0) in seen, seen
    assert 0 in kept_levels and len(kept_levels) >= 2, seen
    assert len(rolled_levels) >= 4, seen


def test_step_matches_the_reference_at_the_extremes(k):
    """Any multiplier/shift (G's rounding shift up to 61), stored -8 / -128 weights (the W
    feature wraps like the reference's int8 cast, and saturate to the narrow range even
    when not flipped), int32-wrapping biases, hidden sizes up to 1024, margin up to 255,
    tries up to 16, single-class label sets."""
    seen = set()
    for seed in range(150):
        head, nets, x, y, margin, tries = _case(10_000 + seed, extreme=True)
        guard = _guard(seed, len(x))
        ref = qcore_step(head, nets, x, y, margin=margin, tries=tries, **guard)
        got = k.qcore_step(head, nets, x, y, margin=margin, tries=tries, **guard)
        _assert_same(ref, got, f"extreme seed {seed} {guard}")
        seen.add(_outcome(ref)[0])
    assert seen == {"kept", "rolled back", "nothing flips"}


def test_step_chains_weights_and_leaves_the_inputs_alone(k):
    """Steps fed the previous step's weights (as on the device) stay equal; the caller's
    arrays are never modified."""
    head, nets, x, y, _, _ = _case(3)
    rng = np.random.default_rng(5)
    nets = {l: random_flipnet(rng, 8) for l in range(len(head.layers))}
    w_ref = w_c = head.weights()
    originals = [w.copy() for w in w_c]
    for step in range(6):
        idx = rng.choice(len(x), size=max(1, len(x) // 2), replace=False)
        ref = qcore_step(head, nets, x[idx], y[idx], weights=w_ref)
        got = k.qcore_step(head, nets, x[idx], y[idx], weights=w_c)
        _assert_same(ref, got, f"step {step}")
        w_ref, w_c = ref.weights, got.weights
    for w, w0 in zip(head.weights(), originals):
        np.testing.assert_array_equal(w, w0)


@pytest.fixture(scope="module")
def converted_head():
    """The W4 model of tests/test_qcore_step.py, split into backbone + 2-layer head, and the
    head inputs (backbone outputs in TFLM) of 60 samples with their labels."""

    from tfmot_edgeplus.calibration.head import split_head
    from tfmot_edgeplus.runtime import TFLMRunner

    model_bytes, x, y = converted_mlp(4)
    head = split_head(model_bytes, layers=2)
    feats = TFLMRunner(head.backbone).predict(x[:60], dequantize=False).reshape(60, -1)
    return head, feats, y[:60]


def test_step_matches_the_reference_on_the_converted_model(k, converted_head):

    head, feats, y = converted_head
    assert [layer.bits for layer in head.layers] == [4, 4]
    rng = np.random.default_rng(1)
    seen = set()
    for trial in range(12):
        nets = {l: random_flipnet(rng) for l in (0, 1) if trial % 3 or l == 1}
        ref = qcore_step(head, nets, feats, y)
        got = k.qcore_step(head, nets, feats, y)
        _assert_same(ref, got, f"trial {trial}")
        seen.add(ref.kept)
    assert seen == {True, False}


def _bound_case(n):
    """1 -> 128 classes at W8: labels 0 get z = -128 against 127 for every rival, so with
    margin 255 the label's error is -127 * 510 = -64770: n * 64770 * 255 fits int32 up to
    n = 130."""
    w = np.full((128, 1), 127, np.int8)
    w[0] = -127
    layer = HeadLayer(
        "fc",
        w,
        8,
        np.zeros(128, np.int32),
        np.full(128, 1 << 30, np.int32),
        np.ones(128, np.int32),
        0,
        0,
        -128,
        127,
        1.0,
        np.ones(128, np.float32),
        1.0,
        False,
    )
    net = FlipNet([[1, 0, 0, 0], [-1, 0, 0, 0]], [0, 0], 1 << 30, 1, [-1, 1], 0, 50)
    return IntHead([layer], b""), {0: net}, np.full((n, 1), 127, np.int8), np.zeros(n, np.int64)


def test_the_int32_bound_of_the_sums_matches_the_reference(k):
    head, nets, x, y = _bound_case(130)
    _assert_same(
        qcore_step(head, nets, x, y, margin=255, tries=2),
        k.qcore_step(head, nets, x, y, margin=255, tries=2),
    )
    head, nets, x, y = _bound_case(131)
    with pytest.raises(ValueError, match="could overflow"):
        qcore_step(head, nets, x, y, margin=255, tries=2)
    with pytest.raises(kernels.KernelDimsError, match="could overflow") as e:
        k.qcore_step(head, nets, x, y, margin=255, tries=2)
    assert e.value.argument == "x" and e.value.status == "EDGEPLUS_ERR_DIMS"


def _raises(cls, argument, fn, *args, **kwargs):
    with pytest.raises(cls) as e:
        fn(*args, **kwargs)
    assert e.value.argument == argument, str(e.value)
    assert e.value.function.startswith("edgeplus_qcore_"), str(e.value)
    return e.value


def test_step_errors_name_the_argument(k):
    head, _, x, y, _, _ = _case(4)
    nets = {l: random_flipnet(np.random.default_rng(l), 4) for l in range(len(head.layers))}
    depth, classes = len(head.layers), head.num_classes
    assert depth == 3
    A, B, D = kernels.KernelArgumentError, kernels.KernelBitsError, kernels.KernelDimsError
    step = k.qcore_step
    n = len(x)
    for cls, argument, kwargs in (
        (A, "guard", {"guard": -1}),
        (A, "guard", {"guard": n}),
        (A, "guard", {"guard": 1.0}),
        (A, "guard_min_correct", {"guard": 2, "guard_min_correct": 3}),
        (A, "guard_min_correct", {"guard_min_correct": -1}),
        (A, "margin", {"margin": 0}),
        (A, "margin", {"margin": 256}),
        (A, "tries", {"tries": 17}),
        (A, "tries", {"tries": 1.5}),
        (kernels.KernelScratchError, "scratch_bytes", {"scratch_bytes": 64}),
    ):
        _raises(cls, argument, step, head, nets, x, y, **kwargs)
    bad_y = y.copy()
    bad_y[2] = classes
    err = _raises(A, "y", step, head, nets, x, bad_y)
    assert f"y[2] = {classes}: must lie in [0, {classes - 1}]" in str(err)
    _raises(D, "x", step, head, nets, x[:0], y[:0])
    _raises(D, "x", step, head, nets, x[:, 1:], y)
    _raises(D, "y", step, head, nets, x, y[1:])
    _raises(D, "nets", step, head, {depth: nets[0]}, x, y)

    first, mid, last = head.layers
    one_class = {"weights": last.weights[:1], "bias": last.bias[:1]}
    one_class |= {"multiplier": last.multiplier[:1], "shift": last.shift[:1]}
    for cls, argument, l, changes in (
        (B, "head.layers[0].bits", 0, {"bits": 2}),
        (A, "head.layers[1].input_zero_point", 1, {"input_zero_point": 128}),
        (A, "head.layers[2].act_min", 2, {"act_min": 100, "act_max": 99}),
        (A, "head.layers[2].act_max", 2, {"act_max": 128}),
        (A, "head.layers[0].multiplier", 0, {"multiplier": -first.multiplier}),
        (A, "head.layers[2].shift", 2, {"shift": last.shift * 0 + 31}),
        (D, "head.layers[1]", 1, {"weights": mid.weights[:, 1:]}),  # chain
        (D, "head.layers[2]", 2, one_class),
        (D, "head.layers[0].multiplier", 0, {"multiplier": first.multiplier[1:]}),
    ):
        layers = list(head.layers)
        layers[l] = HeadLayer(**{**layers[l].__dict__, **changes})
        labels = np.zeros_like(y) if argument == "head.layers[2]" else y
        _raises(cls, argument, step, IntHead(layers, b""), nets, x, labels)

    b1 = nets[0].b1.copy()
    b1[0] = 2**30 + 1
    wide = {"w1": np.zeros((1025, 4), np.int8), "b1": np.zeros(1025, np.int32)}
    wide["w2"] = np.zeros(1025, np.int8)
    for cls, argument, l, changes in (
        (A, "nets[1].threshold", 1, {"threshold": 0}),
        (A, "nets[0].threshold", 0, {"threshold": 2**30 + 1}),
        (A, "nets[2].m1", 2, {"m1": -1}),
        (A, "nets[2].m1", 2, {"m1": 2**31}),
        (A, "nets[0].s1", 0, {"s1": 31}),
        (A, "nets[1].b2", 1, {"b2": -(2**30) - 1}),
        (A, "nets[0].b1", 0, {"b1": b1}),
        (D, "nets[1].w1", 1, wide),
        (D, "nets[1].b1", 1, {"b1": np.zeros(3, np.int32)}),
    ):
        net = FlipNet(**{f: getattr(nets[l], f) for f in FlipNet.__dataclass_fields__})
        for name, value in changes.items():  # past FlipNet's own checks
            setattr(net, name, value)
        _raises(cls, argument, step, head, {**nets, l: net}, x, y)


# ----------------------------------------------------------------------------- refresh


def test_refresh_matches_the_reference(k):
    history = [np.array(h, bool) for h in ([1, 0, 1, 0], [0, 1, 1, 0], [1, 0, 0, 0])]
    idx, counts, state = k.qcore_refresh([0, 2, 0, 0], history, 3, 1)
    assert idx.tolist() == [3, 0, 1] and counts.tolist() == [3, 1, 3] and state == 2647435461
    for seed in range(200):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(1, 50))
        steps = int(rng.integers(1, 8))
        hist = list(rng.random((steps, n)) < rng.uniform(0.1, 0.9))
        prior = rng.integers(0, 6, n) if seed % 5 else rng.integers(0, 2**31 - 1 - steps, n)
        size = int(rng.integers(1, n + 1))
        s = int(rng.integers(1, 2**32)) if seed % 7 else int(rng.integers(1, 2**40))
        ref = qcore_refresh(prior, hist, size, s)
        got = k.qcore_refresh(prior, hist, size, s)
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])
        assert got[2] == ref[2]


def test_refresh_errors_name_the_argument(k):
    history = [np.array([1, 0, 1], bool), np.array([0, 1, 1], bool)]
    refresh = k.qcore_refresh
    _raises(kernels.KernelArgumentError, "seed", refresh, [0, 0, 0], history, 2, 0)
    _raises(kernels.KernelArgumentError, "seed", refresh, [0, 0, 0], history, 2, 2**32)
    _raises(kernels.KernelDimsError, "size", refresh, [0, 0, 0], history, 0, 1)
    _raises(kernels.KernelDimsError, "size", refresh, [0, 0, 0], history, 4, 1)
    _raises(kernels.KernelArgumentError, "prior_counts", refresh, [0, -1, 0], history, 2, 1)
    _raises(kernels.KernelArgumentError, "prior_counts", refresh, [0, 2**31, 0], history, 2, 1)
    _raises(kernels.KernelDimsError, "history", refresh, [0, 0], history, 2, 1)
    _raises(kernels.KernelDimsError, "history", refresh, [0, 0, 0], [], 2, 1)
    err = _raises(
        kernels.KernelScratchError,
        "scratch_bytes",
        refresh,
        [0, 0, 0],
        history,
        2,
        1,
        scratch_bytes=8,
    )
    assert "EDGEPLUS_ERR_SCRATCH" in str(err)


@pytest.mark.parametrize("bits", (4, 8))
def test_step_scratch_size_follows_the_documented_formula(bits):
    """edgeplus_ops.h: 4 + n*S + 4*n*(F+2) + 6*T + Wc + max(4*Wm, Bc) + R, here one calibrated
    32 -> 7 layer (F = 7, Wm = Wc, R = 32 at W4, 0 at W8); 4 + n*S without flip networks."""
    qcore_step_get_buffer_size = kernels.get_kernels().qcore_step_get_buffer_size
    rng = np.random.default_rng(0)
    head, _ = random_int_head(rng, [32, 7], bits, 4)
    n, s, c, t, wc = 60, 7, 7, 32, 7 * 32
    r = 32 if bits == 4 else 0
    expected = 4 + n * s + 4 * n * (c + 2) + 6 * t + wc + max(4 * wc, wc * bits // 8) + r
    assert qcore_step_get_buffer_size(head, {0: random_flipnet(rng, 16)}, n) == expected
    assert qcore_step_get_buffer_size(head, {}, n) == 4 + n * s
