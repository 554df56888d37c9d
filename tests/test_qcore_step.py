"""QCore's on-device step: the integer head read from a deployed model, the reference step
(flip, saturate, roll back), the QCore refresh, and the offline-trained calibrator."""

from __future__ import annotations

import numpy as np
import pytest
from qcore_helpers import converted_mlp, random_flipnet

from tfmot_edgeplus.calibration.backprop import bp_finetune
from tfmot_edgeplus.calibration.calibrator import BitFlipCalibrator
from tfmot_edgeplus.calibration.head import split_head
from tfmot_edgeplus.calibration.step import (
    FlipNet,
    miss_counts,
    qcore_refresh,
    qcore_step,
    score,
    xorshift32,
)


@pytest.fixture(scope="module", params=(4, 8))
def converted(request):
    return (request.param, *converted_mlp(request.param))


def test_backbone_plus_integer_head_equals_tflm_bit_for_bit(converted):
    from tfmot_edgeplus.runtime import TFLMRunner

    bits, model_bytes, x, _ = converted
    head = split_head(model_bytes, layers=2)
    assert [layer.bits for layer in head.layers] == [bits, bits]
    assert [layer.shape for layer in head.layers] == [(12, 24), (5, 12)]
    assert head.layers[0].name == "fc" and head.layers[0].relu and not head.layers[1].relu
    full = TFLMRunner(model_bytes).predict(x[:200], dequantize=False).reshape(200, -1)
    feats = TFLMRunner(head.backbone).predict(x[:200], dequantize=False).reshape(200, -1)
    assert feats.shape == (200, 24)
    np.testing.assert_array_equal(head.forward(feats), full)


def test_split_head_names_what_the_model_does_not_have(converted):
    _, model_bytes, _, _ = converted
    with pytest.raises(ValueError, match="ends with 3 FULLY_CONNECTED"):
        split_head(model_bytes, layers=4)
    with pytest.raises(ValueError, match="layers must be an int >= 1"):
        split_head(model_bytes, layers=0)
    with pytest.raises(ValueError, match="TFL3"):
        split_head(b"not a model at all", layers=1)


def _head_inputs(converted, n: int):
    """The converted model's 2-layer head, and the head inputs (backbone outputs in TFLM)
    and labels of its first n samples."""
    from tfmot_edgeplus.runtime import TFLMRunner

    _, model_bytes, x, y = converted
    head = split_head(model_bytes, layers=2)
    feats = TFLMRunner(head.backbone).predict(x[:n], dequantize=False).reshape(n, -1)
    return head, feats, y[:n]


def test_step_never_lowers_the_score_and_restores_weights_exactly(converted):
    bits = converted[0]
    head, feats, y = _head_inputs(converted, 60)
    rng = np.random.default_rng(1)
    outcomes = set()
    for trial in range(12):
        nets = {l: random_flipnet(rng) for l in (0, 1)}
        before = head.weights()
        r = qcore_step(head, nets, feats, y)
        _, c0, m0 = score(head.forward(feats), y)
        _, c1, m1 = score(head.forward(feats, r.weights), y)
        assert (c1, m1) >= (c0, m0)
        assert (r.correct_before, r.margin_before) == (c0, m0)
        if r.kept:
            assert (c1, m1) > (c0, m0) and r.changed > 0
        else:
            for w0, w1 in zip(before, r.weights):
                np.testing.assert_array_equal(w0, w1)
        qmax = 2 ** (bits - 1) - 1
        assert all(np.abs(w).max() <= qmax for w in r.weights)
        outcomes.add(r.kept)
    assert outcomes == {True, False}, "the random nets should give both kept and rolled-back steps"


def test_guard_refuses_a_level_that_loses_a_guarded_sample(converted):
    """Sample 0 guarded: where the unguarded score rises but sample 0 turns wrong, the guard
    with guard_min_correct = 1 (its count before) refuses that level: a later level is kept
    with sample 0 right, or the step is rolled back."""
    head, feats, y = _head_inputs(converted, 60)
    rng = np.random.default_rng(5)
    outcomes = set()
    for trial in range(300):
        nets = {l: random_flipnet(rng) for l in (0, 1)}
        r = qcore_step(head, nets, feats, y)
        lost = np.flatnonzero(r.correct_mask_before & ~r.correct_mask_after)
        if not lost.size:
            continue
        order = np.r_[lost[0], np.delete(np.arange(60), lost[0])]
        gx, gy = feats[order], y[order]
        free = qcore_step(head, nets, gx, gy, guard=1, guard_min_correct=0)
        if not (free.kept and free.guard_correct_after == 0):
            continue
        assert free.guard == 1 and free.n == 60 and free.guard_correct_before == 1
        assert (free.correct_after, free.margin_after) > (free.correct_before, free.margin_before)
        assert free.correct_before == int(free.correct_mask_before[1:].sum())
        g = qcore_step(head, nets, gx, gy, guard=1, guard_min_correct=1)
        assert (g.correct_before, g.margin_before) == (free.correct_before, free.margin_before)
        if g.kept:
            assert g.level > free.level and g.guard_correct_after == 1
            assert g.correct_mask_after[0] and (g.correct_after, g.margin_after) > (
                g.correct_before,
                g.margin_before,
            )
        else:
            for w0, w1 in zip(head.weights(), g.weights):
                np.testing.assert_array_equal(w0, w1)
            assert g.accuracy_after == g.correct_before / 59
        outcomes.add(g.kept)
        if outcomes == {True, False}:
            break
    assert outcomes == {True, False}, f"found only {outcomes} in {trial + 1} random flip nets"


def test_step_rejects_bad_guard_arguments(converted):
    _, model_bytes, _, _ = converted
    head = split_head(model_bytes, layers=1)
    nets = {0: random_flipnet(np.random.default_rng(0))}
    x, y = np.zeros((3, 12), np.int8), np.array([1, 2, 0])
    for guard, gmc, match in (
        (3, 0, r"guard must be an int in \[0, n - 1\] = \[0, 2\] .* got 3"),
        (-1, 0, r"guard must be an int in \[0, n - 1\] = \[0, 2\] .* got -1"),
        (1.0, 0, r"guard must be an int .* got 1\.0"),
        (2, 3, r"guard_min_correct must be an int in \[0, guard\] = \[0, 2\] .* got 3"),
        (2, -1, r"guard_min_correct must be an int in \[0, guard\] = \[0, 2\] .* got -1"),
    ):
        with pytest.raises(ValueError, match=match):
            qcore_step(head, nets, x, y, guard=guard, guard_min_correct=gmc)


def test_step_rejects_bad_samples(converted):
    _, model_bytes, _, _ = converted
    head = split_head(model_bytes, layers=1)
    nets = {0: random_flipnet(np.random.default_rng(0))}
    with pytest.raises(ValueError, match="empty"):
        qcore_step(head, nets, np.zeros((0, 12), np.int8), np.zeros(0, np.int64))
    with pytest.raises(ValueError, match=r"label 7 is outside the head's class range \[0, 5\)"):
        qcore_step(head, nets, np.zeros((2, 12), np.int8), np.array([1, 7]))
    with pytest.raises(ValueError, match=r"shape \(N, 12\)"):
        qcore_step(head, nets, np.zeros((2, 11), np.int8), np.array([1, 2]))
    with pytest.raises(ValueError, match="layers 0..0"):
        qcore_step(head, {3: nets[0]}, np.zeros((2, 12), np.int8), np.array([1, 2]))
    with pytest.raises(ValueError, match=r"margin must be an int in \[1, 255\], got 0"):
        qcore_step(head, nets, np.zeros((2, 12), np.int8), np.array([1, 2]), margin=0)
    with pytest.raises(ValueError, match=r"tries must be an int in \[1, 16\]"):
        qcore_step(head, nets, np.zeros((2, 12), np.int8), np.array([1, 2]), tries=0)


def test_flipnet_checks_its_shapes():
    with pytest.raises(ValueError, match="do not match"):
        FlipNet(np.zeros((8, 3)), np.zeros(8), 1 << 30, 0, np.zeros(8), 0, 10)
    with pytest.raises(ValueError, match=r"threshold must lie in \[1, 2\*\*30\]"):
        FlipNet(np.zeros((8, 4)), np.zeros(8), 1 << 30, 0, np.zeros(8), 0, 0)
    with pytest.raises(ValueError, match="b1 must lie in"):
        FlipNet(np.zeros((8, 4)), np.full(8, 2**30 + 1), 1 << 30, 0, np.zeros(8), 0, 9)
    with pytest.raises(ValueError, match="not a TFLite quantized multiplier"):
        FlipNet(np.zeros((8, 4)), np.zeros(8), 1 << 30, 31, np.zeros(8), 0, 9)


def test_miss_counts_count_forgetting_and_give_never_learned_the_maximum():
    history = [
        np.array([1, 0, 1, 0], bool),
        np.array([0, 1, 1, 0], bool),
        np.array([1, 0, 0, 0], bool),
    ]
    # item 0: right, wrong, right -> 1 miss; item 1: wrong, right, wrong -> 1;
    # item 2: right, right, wrong -> 1; item 3: never right -> 3 (the sequence length)
    np.testing.assert_array_equal(miss_counts(history), [1, 1, 1, 3])
    np.testing.assert_array_equal(miss_counts([np.array([1, 0], bool)]), [0, 1])


def test_refresh_is_seeded_distinct_and_follows_the_counts():
    prior = np.array([0, 0, 0, 0, 50, 50, 0, 0])
    history = [np.ones(8, bool)]
    a = qcore_refresh(prior, history, 4, seed=7)
    b = qcore_refresh(prior, history, 4, seed=7)
    np.testing.assert_array_equal(a[0], b[0])
    assert len(set(a[0].tolist())) == 4
    hits = np.zeros(8)
    state = 11
    for _ in range(300):
        idx, counts, state = qcore_refresh(prior, history, 1, seed=state)
        hits[idx] += 1
        assert counts[0] == prior[idx[0]]
    assert hits[4] + hits[5] > 0.85 * 300
    assert xorshift32(1) == 270369  # Marsaglia's xorshift32 (13, 17, 5) from state 1
    with pytest.raises(ValueError, match="size must be in"):
        qcore_refresh(prior, history, 9, seed=1)
    with pytest.raises(ValueError, match="nonzero"):
        qcore_refresh(prior, history, 2, seed=0)


def test_bp_finetune_lands_on_the_integer_grid_and_fits_the_samples(converted):
    bits = converted[0]
    head, feats, y = _head_inputs(converted, 80)
    yy = (y + 1) % 5  # a shift: every label moved, so the head must change to fit it
    before = score(head.forward(feats), yy)[1]
    new = bp_finetune(head, feats, yy, layers=[1], steps=60, learning_rate=0.05)
    np.testing.assert_array_equal(new[0], head.layers[0].weights)
    qmax = 2 ** (bits - 1) - 1
    assert new[1].dtype == np.int8 and np.abs(new[1]).max() <= qmax
    assert score(head.forward(feats, new), yy)[1] > before + 20


def test_calibrator_round_trip_never_lowers_accuracy_on_what_it_sees(converted):
    _, model_bytes, x, y = converted
    cal = BitFlipCalibrator(model_bytes, head_layers=2, calibrate="all", core_size=10)
    yy = (y + 1) % 5
    report = cal.fit(
        (x[:10], y[:10]), [(x[100:200], yy[100:200])], chunk_size=30, episodes=4, epochs=5
    )
    assert set(report) == {"fc", "fc1"}
    assert all(r["net_bytes"] == cal.nets[l].nbytes for l, r in zip((0, 1), report.values()))
    old_x = cal.old_x.copy()
    items_x = np.concatenate([cal.mem_x, cal.features(x[300:330])])
    items_y = np.concatenate([cal.mem_y, yy[300:330]])
    before = score(cal.head.forward(items_x, cal.weights), items_y)[1]
    chunk = cal.calibrate(x[300:330], yy[300:330])
    assert score(cal.head.forward(items_x, cal.weights), items_y)[1] >= before
    assert chunk.accuracy_after >= chunk.accuracy_before
    # the QCore is fixed and its guard holds
    np.testing.assert_array_equal(cal.old_x, old_x)
    assert score(cal.head.forward(old_x, cal.weights), cal.old_y)[1] >= cal.guard_min_correct
    assert len(cal.mem_y) == cal.memory_size and cal.mem_counts.shape == (cal.memory_size,)


def test_calibrator_bad_settings_name_the_value(converted):
    _, model_bytes, x, y = converted
    with pytest.raises(ValueError, match=r"calibrate must be 'all' or an int in \[1, 2\]"):
        BitFlipCalibrator(model_bytes, head_layers=2, calibrate=3)
    cal = BitFlipCalibrator(model_bytes, head_layers=1, core_size=4)
    with pytest.raises(ValueError, match="the QCore has 5 samples but core_size=4"):
        cal.set_core(x[:5], y[:5])
    with pytest.raises(RuntimeError, match="call fit"):
        cal.calibrate(x[:3], y[:3])


def test_write_head_puts_calibrated_weights_into_the_flatbuffer(converted):
    from tfmot_edgeplus.calibration.head import write_head
    from tfmot_edgeplus.runtime import TFLMRunner

    bits, model_bytes, x, _ = converted
    head = split_head(model_bytes, layers=2)
    qmax = 2 ** (bits - 1) - 1
    rng = np.random.default_rng(3)
    new = [
        np.clip(w.astype(int) + rng.integers(-1, 2, w.shape), -qmax, qmax).astype(np.int8)
        for w in head.weights()
    ]
    written = write_head(model_bytes, head, new)
    from tfmot_edgeplus.conversion import lowbit

    assert lowbit.weight_bytes(written) == lowbit.weight_bytes(model_bytes)  # INT4 stays packed
    # in place: the deployed weights give the very same bytes, others change only theirs
    assert write_head(model_bytes, head, head.weights()) == model_bytes
    assert len(written) == len(model_bytes)
    diff = np.frombuffer(written, np.uint8) != np.frombuffer(model_bytes, np.uint8)
    assert 0 < diff.sum() <= sum(-(-w.size * bits // 8) for w in new)
    feats = TFLMRunner(head.backbone).predict(x[:100], dequantize=False).reshape(100, -1)
    logits = TFLMRunner(written).predict(x[:100], dequantize=False).reshape(100, -1)
    np.testing.assert_array_equal(logits, head.forward(feats, new))
    assert not np.array_equal(logits, head.forward(feats))
    with pytest.raises(ValueError, match=rf"in \[-{qmax}, {qmax}\]"):
        write_head(model_bytes, head, [w * 0 + qmax + 1 for w in new])
    with pytest.raises(ValueError, match="1 weight arrays for a head of 2 layers"):
        write_head(model_bytes, head, new[:1])


def test_step_refuses_a_flip_net_trained_for_other_bits(converted):
    bits, model_bytes, _, _ = converted
    head = split_head(model_bytes, layers=1)
    net = random_flipnet(np.random.default_rng(0))
    other = 8 if bits == 4 else 4
    net.bits = other
    with pytest.raises(ValueError, match=f"trained for {other}-bit weights, but the layer uses"):
        qcore_step(head, {0: net}, np.zeros((2, 12), np.int8), np.array([1, 2]))


def test_calibrator_refuses_a_chunk_over_the_memory_budget(converted):
    _, model_bytes, x, y = converted
    cal = BitFlipCalibrator(model_bytes, head_layers=1, core_size=10, memory_budget=6000)
    cal.fit((x[:10], y[:10]), [(x[100:200], y[100:200])], chunk_size=20, episodes=2, epochs=2)
    assert all(net.bits == cal.head.layers[l].bits for l, net in cal.nets.items())
    before = [w.copy() for w in cal.weights]
    with pytest.raises(ValueError, match=r"needs \d+ device bytes, over memory_budget=6000"):
        cal.calibrate(x[:200], y[:200])
    for w0, w1 in zip(before, cal.weights):
        np.testing.assert_array_equal(w0, w1)
    assert cal.calibrate(x[:20], y[:20]).accuracy_after >= 0  # a small chunk fits
    with pytest.raises(ValueError, match="memory_budget must be an int >= 1"):
        BitFlipCalibrator(model_bytes, memory_budget=0)
