"""benchmarks/continual.py on a tiny real configuration (IMU, W4, one seed, 2 float epochs, one
chunk per subject)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from benchmarks import continual

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run():
    from tfmot_edgeplus import datasets

    m4 = shutil.which("arm-none-eabi-gcc") is not None and shutil.which("qemu-system-arm")
    try:
        config = continual.Config.quick(fp_epochs=2, chunks_per_domain=1, m4=bool(m4))
        return continual.run(config), bool(m4)
    except datasets.DatasetNotFoundError as err:
        pytest.skip(str(err))


def test_rows_are_one_per_method_with_the_documented_keys(tiny_run):
    (rows, env), m4 = tiny_run
    assert [r["method"] for r in rows] == ["none", "qcore_bitflip", "bp_finetune", "replay"]
    for row in rows:
        assert tuple(row) == continual.ROW_KEYS
        assert row["weight_bits"] == 4 and row["task"] == "imu_watch"
        # One seed: avg_acc is the mean of the method's seen-subjects curve, final_acc its
        # last point (every stream subject seen after the last chunk).
        curve = env["curves"]["imu_watch/w4"][row["method"]]
        assert row["avg_acc"] == pytest.approx(np.mean(curve))
        assert row["final_acc"] == pytest.approx(curve[-1])
    none, qcore, bp, replay = rows
    assert none["device_bytes"] == 0 and none["m4_instructions_per_chunk"] is None
    assert none["old_drop"] == 0 and qcore["old_drop"] == pytest.approx(
        none["old_acc"] - qcore["old_acc"]
    )
    assert 0 < qcore["device_bytes"] <= 32 * 1024
    assert bp["device_bytes"] == replay["device_bytes"] > 0
    if m4:  # QCore: every chunk measured; the baselines: one measurement
        per_chunk = env["m4"]["imu_watch/w4"]["qcore_per_chunk"]
        assert len(per_chunk) == 4 and min(per_chunk) > 0
        assert qcore["m4_instructions_per_chunk"] == pytest.approx(np.mean(per_chunk))
        assert bp["m4_instructions_per_chunk"] == replay["m4_instructions_per_chunk"] > 0
    assert len(env["curves"]["imu_watch/w4"]["qcore_bitflip"]) == 4  # 4 subjects x 1 chunk


def test_report_and_plot_are_written(tiny_run, tmp_path):
    from benchmarks._report import write_report

    (rows, env), _ = tiny_run
    path = write_report(continual.NAME, True, rows, tmp_path / "c.json", env_extra=env)
    assert json.loads(path.read_text())["rows"] == rows
    assert continual.plot(env, tmp_path / "c.png").stat().st_size > 10_000
