"""benchmarks/coreset_qat.py on a tiny real configuration (IMU watch, W2, one seed)."""

from __future__ import annotations

import json
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import pytest

from benchmarks import coreset_qat

TINY = coreset_qat.Config.full(datasets=("imu_watch",), weight_bits=(2,), fractions=(0.05,),
                               seeds=(0,), qat_epochs=2, fp_epochs={"imu_watch": 3})


@pytest.fixture(scope="module")
def tiny_run():
    from tfmot_edgeplus import datasets

    try:
        return coreset_qat.run(TINY)
    except datasets.DatasetNotFoundError as err:
        pytest.skip(str(err))


@pytest.mark.slow
def test_rows_cover_every_method_with_the_documented_keys(tiny_run):
    rows, env = tiny_run
    assert [r["method"] for r in rows] == ["random", "res", "res_clc", "full_kd"]
    n_train = env["train_samples"]["imu_watch"]
    for row in rows:
        assert tuple(row) == coreset_qat.ROW_KEYS
        assert row["dataset"] == "imu_watch" and row["weight_bits"] == 2 and row["seeds"] == 1
        assert row["acc_std"] == 0.0  # one seed
        assert row["wall_s"] > 0 and row["time_vs_full"] > 0
        expected = n_train if row["method"] == "full_kd" else round(0.05 * n_train)
        assert row["train_samples"] == expected
        assert row["fraction"] == (1.0 if row["method"] == "full_kd" else 0.05)
    full = rows[-1]
    assert full["time_vs_full"] == 1.0
    assert full["acc_mean"] > 0.3  # 7 classes: chance is about 0.14
    assert 0.3 < env["fp_acc"]["imu_watch"] <= 1.0


@pytest.mark.slow
def test_write_produces_json_markdown_and_plot(tiny_run, tmp_path):
    rows, env = tiny_run
    out = tmp_path / "coreset_qat.json"
    coreset_qat.write(rows, True, out, env)
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "coreset_qat" and doc["rows"] == rows
    assert doc["env"]["config"]["fractions"] == [0.05]
    assert "| dataset | weight_bits | fraction | method |" in out.with_suffix(".md").read_text()
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("overrides, match", [
    ({"datasets": ("cifar",)}, r"datasets must be .* got \('cifar',\)"),
    ({"fractions": (0.1, 1.0)}, r"fractions must be in \(0, 1\) .* got \(0.1, 1.0\)"),
    ({"methods": ("acs",)}, r"methods must be .* got \('acs',\)"),
    ({"seeds": ()}, "seeds must name at least one seed"),
])
def test_bad_config_is_refused_with_the_value(overrides, match):
    with pytest.raises(ValueError, match=match):
        coreset_qat.Config.full(**overrides)


def test_presets_differ_only_in_size():
    full, quick = coreset_qat.Config.full(), coreset_qat.Config.quick()
    assert full.seeds == (0, 1, 2) and quick.seeds == (0,)
    assert full.fractions == quick.fractions == (0.01, 0.1)
    assert full.weight_bits == quick.weight_bits == (2, 4)
    assert full.methods == quick.methods == coreset_qat.METHODS
