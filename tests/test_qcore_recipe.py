"""QCore end to end on the IMU watch data (``qcore_continual``), the stream runner's metrics,
``edgeplus qcore`` and the calibrated flatbuffer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfmot_edgeplus.calibration import METHODS, Chunk, StreamResult, run_stream
from tfmot_edgeplus.recipes.qcore import QCoreConfig, qcore_continual
from tfmot_edgeplus.recipes.qcore_streams import split_recordings

TINY = QCoreConfig(
    fp_epochs=3, stream_subjects=(7, 8), chunks_per_domain=1, episodes=4, max_steps=4
)


@pytest.fixture(scope="module")
def tiny_run():
    from tfmot_edgeplus import datasets

    try:
        return qcore_continual(TINY, verbose=0)
    except datasets.DatasetNotFoundError as err:
        pytest.skip(str(err))


@pytest.mark.slow
def test_every_method_runs_and_reports_the_documented_metrics(tiny_run):
    assert list(tiny_run.results) == list(METHODS)
    assert [c.domain for c in tiny_run.chunks] == ["subject7", "subject8"]
    for method, result in tiny_run.results.items():
        m = result.metrics()
        assert set(m) == {
            "avg_acc",
            "final_acc",
            "forgetting",
            "adapted_acc",
            "before_acc",
            "old_acc",
            "step_wall_s",
            "memory_bytes",
        }
        assert result.accuracy.shape == (3, 3)  # before + 2 chunks; old, subject7, subject8
        # The metrics are what the accuracy matrix says (rows: before, after each chunk).
        acc = {name: result.accuracy[:, i] for i, name in enumerate(result.eval_names)}
        s7, s8 = acc["subject7"], acc["subject8"]
        assert m["before_acc"] == pytest.approx((s7[0] + s8[0]) / 2)
        assert m["adapted_acc"] == pytest.approx((s7[1] + s8[2]) / 2)
        assert m["final_acc"] == pytest.approx((s7[2] + s8[2]) / 2)
        assert m["forgetting"] == pytest.approx(max(s7[1:]) - s7[2])
        assert m["old_acc"] == pytest.approx(acc["old"][-1])
        assert m["before_acc"] == tiny_run.results["none"].metrics()["before_acc"]
        if method == "none":
            assert m["memory_bytes"] == 0 and m["forgetting"] == 0.0
            assert np.all(result.accuracy == result.accuracy[0])
        else:
            assert m["memory_bytes"] > 0 and m["step_wall_s"] > 0
    assert len(tiny_run.results["qcore_bitflip"].reports) == 2


@pytest.mark.slow
def test_qcore_never_lowers_accuracy_on_new_samples_nor_breaks_the_guard(tiny_run):
    cal = tiny_run.calibrator
    n_old = len(cal.old_y)
    assert n_old == TINY.core_size
    # old_tolerance 0: the guard is the QCore items the deployed weights get right
    deployed = cal.head.forward(cal.old_x, cal.head.weights()).argmax(axis=1) == cal.old_y
    assert cal.guard_min_correct == int(deployed.sum())
    for i, report in enumerate(tiny_run.results["qcore_bitflip"].reports):
        assert report.accuracy_after >= report.accuracy_before
        assert report.guard_items == n_old and report.guard_correct >= cal.guard_min_correct
        memory = min(TINY.memory_size, i * TINY.chunk_size)  # QCore, memory, chunk
        for step in report.steps:
            assert step.guard == n_old and step.n == n_old + memory + TINY.chunk_size
            if step.kept:
                assert step.guard_correct_after >= cal.guard_min_correct
            else:
                assert (
                    step.guard_correct_after < cal.guard_min_correct
                    or step.correct_after < step.correct_before
                    or (
                        step.correct_after == step.correct_before
                        and step.margin_after <= step.margin_before
                    )
                )
    # the QCore never changes; the memory holds at most memory_size new samples
    assert len(cal.mem_y) == min(TINY.memory_size, 2 * TINY.chunk_size)


@pytest.mark.slow
def test_qcore_fits_in_the_memory_target(tiny_run):
    from tfmot_edgeplus.calibration.device import device_bytes

    cal = tiny_run.calibrator
    mem = cal.memory(TINY.chunk_size)
    ram = {k: v for k, v in mem.items() if k not in ("total_bytes", "flipnet_bytes")}
    assert mem["total_bytes"] == sum(ram.values())  # the flip networks stay in flash
    assert mem == device_bytes(
        cal.head, cal.nets, TINY.core_size, TINY.memory_size, TINY.max_steps, TINY.chunk_size
    )
    assert mem["scratch_bytes"] > 0 and mem["total_bytes"] <= 32 * 1024
    row = {r["method"]: r for r in tiny_run.rows()}["qcore_bitflip"]
    assert row["memory_bytes"] == mem["total_bytes"]


@pytest.mark.slow
def test_calibrated_flatbuffer_runs_in_tflm_like_the_calibrated_head(tiny_run):
    import copy

    from tfmot_edgeplus.runtime import TFLMRunner

    cal = copy.copy(tiny_run.calibrator)  # unguarded, so that the tiny model's steps are kept
    cal.guard_min_correct, cal.guard_slack = 0, len(cal.old_y)
    x = tiny_run.chunks[0].x
    for chunk in tiny_run.chunks:
        cal.calibrate(chunk.x, chunk.y)
    assert any(not np.array_equal(w, l.weights) for w, l in zip(cal.weights, cal.head.layers)), (
        "calibration should have changed the head (else this test checks nothing)"
    )
    calibrated = cal.model_bytes()
    assert len(calibrated) == len(tiny_run.model_bytes)  # written in place
    logits = TFLMRunner(calibrated).predict(x, dequantize=False).reshape(len(x), -1)
    np.testing.assert_array_equal(logits, cal.predict(x))
    untouched = TFLMRunner(tiny_run.model_bytes).predict(x, dequantize=False)
    np.testing.assert_array_equal(untouched.reshape(len(x), -1), cal.predict(x, cal.head.weights()))


@pytest.mark.slow
def test_stream_runner_refuses_bad_streams(tiny_run):
    cal = tiny_run.calibrator
    x, y = tiny_run.chunks[0].x, tiny_run.chunks[0].y
    with pytest.raises(ValueError, match="method must be one of"):
        run_stream(cal, [Chunk("a", x, y)], {"a": (x, y)}, "sgd")
    with pytest.raises(ValueError, match="chunk 0 .'a'. is empty"):
        run_stream(cal, [Chunk("a", x[:0], y[:0])], {"a": (x, y)}, "none")
    with pytest.raises(ValueError, match=r"no eval set; pass eval_sets\['b'\]"):
        run_stream(cal, [Chunk("b", x, y)], {"a": (x, y)}, "none")
    with pytest.raises(ValueError, match="needs replay_pool"):
        run_stream(cal, [Chunk("a", x, y)], {"a": (x, y)}, "replay")
    weights = [w.copy() for w in cal.weights]
    with pytest.raises(ValueError, match=r"chunk's labels must be class indices in \[0, 7\)"):
        cal.calibrate(x, y + 7)
    assert all(np.array_equal(a, b) for a, b in zip(weights, cal.weights))


def test_stream_metrics_follow_their_definitions():
    # eval sets: old, a, b; chunks a, a, b; rows: before, after each chunk
    acc = np.array(
        [
            [0.9, 0.5, 0.4],
            [0.8, 0.6, 0.4],
            [0.8, 0.7, 0.5],
            [0.7, 0.6, 0.8],
        ]
    )
    r = StreamResult("x", ["old", "a", "b"], ["a", "a", "b"], acc, [1.0, 2.0, 3.0], 10)
    m = r.metrics()
    np.testing.assert_allclose(r.seen_accuracy(), [0.6, 0.7, 0.7])
    assert m["avg_acc"] == pytest.approx(2.0 / 3)
    assert m["final_acc"] == pytest.approx(0.7)
    assert m["adapted_acc"] == pytest.approx((0.7 + 0.8) / 2)
    assert m["forgetting"] == pytest.approx(0.1)  # a: best 0.7 after its chunks, ends 0.6
    assert m["before_acc"] == pytest.approx(0.45)
    assert m["old_acc"] == pytest.approx(0.7)
    assert m["step_wall_s"] == pytest.approx(2.0) and m["memory_bytes"] == 10


def test_recordings_split_in_time_without_overlap():
    from tfmot_edgeplus.datasets.imu_watch import imu_watch

    ds = imu_watch(overlap=0.5)
    ds = ds.select(ds.subject == 7)
    first, second = split_recordings(ds, 0.5)
    for rec in np.unique(ds.recording):
        idx = np.flatnonzero(ds.recording == rec)
        a = np.flatnonzero(first.recording == rec)
        b = np.flatnonzero(second.recording == rec)
        assert len(a) + len(b) == len(idx) - 1  # one window dropped at the seam
        # the windows of `second` start at least a full window after the last of `first`
        assert np.array_equal(first.x[a], ds.x[idx[: len(a)]])
        assert np.array_equal(second.x[b], ds.x[idx[len(a) + 1 :]])


def test_config_names_the_bad_value():
    with pytest.raises(ValueError, match="weight_bits must be 4 or 8"):
        QCoreConfig(weight_bits=2)
    with pytest.raises(ValueError, match="disjoint"):
        QCoreConfig(stream_subjects=(4, 7))
    with pytest.raises(ValueError, match="methods must be some of"):
        QCoreConfig(methods=("none", "ewc"))
    with pytest.raises(ValueError, match="chunk_size must be an int >= 1, got 0"):
        QCoreConfig(chunk_size=0)
    with pytest.raises(ValueError, match=r"old_tolerance must be a number in \[0, 1\].*got 1.5"):
        QCoreConfig(old_tolerance=1.5)
    with pytest.raises(ValueError, match="stream must be one of imu_watch, fashion_shift"):
        QCoreConfig(stream="cifar")


def test_fashion_shifts_are_what_they_say():
    from tfmot_edgeplus.recipes.qcore_streams import shift_images

    x = np.zeros((1, 28, 28, 1), np.float32)
    x[0, 10:14, 5:9] = 1.0
    np.testing.assert_array_equal(shift_images(x, 0.0, 1.0, (0, 0)), x)
    low = shift_images(x, 0.0, 0.5, (0, 0))
    assert low.min() == 0.25 and low.max() == 0.75
    moved = shift_images(x, 0.0, 1.0, (3, 3))
    np.testing.assert_array_equal(moved[0, 13:17, 8:12], 1.0)
    assert moved.sum() == x.sum()
    turned = shift_images(x, 90.0, 1.0, (0, 0))
    assert turned[0, 10:14, 5:9].sum() < 4 and abs(turned.sum() - x.sum()) < 1


@pytest.mark.slow
def test_qcore_command_writes_models_report_and_plot(tmp_path):
    from click.testing import CliRunner

    from tfmot_edgeplus.cli import main

    result = CliRunner().invoke(
        main,
        [
            "qcore",
            "--bits",
            "8",
            "--stream-subjects",
            "9",
            "--chunks-per-domain",
            "1",
            "--fp-epochs",
            "2",
            "--methods",
            "none,qcore_bitflip",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "qcore_bitflip" in result.output
    files = {p.name for p in tmp_path.iterdir()}
    assert {
        "imu_watch_w8a8.tflite",
        "imu_watch_w8a8_qcore.tflite",
        "qcore.npz",
        "qcore.json",
        "qcore.png",
    } <= files
    record = json.loads((tmp_path / "qcore.json").read_text())
    assert [r["method"] for r in record["rows"]] == ["none", "qcore_bitflip"]
    assert record["chunks"] == ["subject9"]
    # the bundle goes with the calibrated model into a sketch
    sketch = tmp_path / "ImuSketch"
    model = tmp_path / "imu_watch_w8a8_qcore.tflite"
    args = ["export", "arduino", "--model", str(model), "--qcore", str(tmp_path / "qcore.npz")]
    result = CliRunner().invoke(main, [*args, "--out", str(sketch)])
    assert result.exit_code == 0, result.output
    assert "arduino-cli compile --fqbn arduino:mbed_nano:nano33ble" in result.output
    assert (sketch / "edgeplus_qcore.cpp").is_file() and (sketch / "ImuSketch.ino").is_file()
    assert "edgeplus_input_mean" in (sketch / "edgeplus_qcore.h").read_text()


def test_qcore_command_refuses_bad_subjects():
    from click.testing import CliRunner

    from tfmot_edgeplus.cli import main

    result = CliRunner().invoke(main, ["qcore", "--stream-subjects", "1,7"])
    assert result.exit_code != 0 and "disjoint" in result.output
    result = CliRunner().invoke(main, ["qcore", "--stream-subjects", "seven"])
    assert result.exit_code != 0 and "comma-separated integers" in result.output
    result = CliRunner().invoke(main, ["qcore", "--old-tolerance", "-0.1"])
    assert result.exit_code != 0 and "old_tolerance must be a number in [0, 1]" in result.output
