"""benchmarks/cora.py on a tiny real configuration (IMU watch, W3, 30 steps)."""

from __future__ import annotations

import json
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import pytest

from benchmarks import cora

TINY = cora.Config.full(tasks=("imu_watch",), weight_bits=(3,), steps=30, budgets=(None,),
                        full_qat_epochs=1, fp_epochs={"imu_watch": 3}, tflm_test=500)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from dataclasses import replace

    from tfmot_edgeplus import datasets

    try:
        return cora.run(replace(TINY, cache_dir=str(tmp_path_factory.mktemp("cache"))))
    except datasets.DatasetNotFoundError as err:
        pytest.skip(str(err))


@pytest.mark.slow
def test_rows_cover_every_method_with_the_documented_keys(tiny_run):
    rows, env = tiny_run
    assert [r["method"] for r in rows] == list(cora.METHODS)
    n_train = env["train_samples"]["imu_watch"]
    n_calib = min(1600, n_train)
    assert env["calib_samples"]["imu_watch"] == n_calib
    for row in rows:
        assert tuple(row) == cora.ROW_KEYS
        assert row["task"] == "imu_watch" and row["weight_bits"] == 3
        assert 0.25 < row["acc"] <= 1.0 and 0.25 < row["tflm_acc"] <= 1.0  # chance ~0.14
        assert 0.9 <= row["tflm_agreement"] <= 1.0
        assert row["flatbuffer_bytes"] > 1000
        assert row["wall_s"] > 0 and row["time_vs_full"] > 0
    ptq, qat, adapted, full = rows
    assert (ptq["steps"], ptq["calib_samples"]) == (0, n_calib)
    assert (qat["steps"], qat["calib_samples"]) == (30, n_calib)
    assert (adapted["steps"], adapted["calib_samples"]) == (30, n_calib)
    n_trained = n_train - round(0.1 * n_train)  # the recipe holds out 10 % of the pool
    assert full["calib_samples"] == n_train
    assert full["steps"] == -(-n_trained // 64)  # 1 epoch
    assert full["time_vs_full"] == 1.0
    for row in (ptq, qat, full):
        assert row["adapter_bytes_frac"] == row["adapter_param_frac"] == 0.0
        assert row["budget"] is None and row["flatbuffer_overhead_frac"] == 0.0
    assert adapted["budget"] == pytest.approx(0.05 * 3 / 8)
    assert 0.0 < adapted["adapter_param_frac"] <= adapted["budget"]
    assert 0.0 < adapted["adapter_bytes_frac"] <= 0.05  # int8 adapters, 5 % of the bytes
    # The whole flatbuffer, op and tensor metadata included, against the PTQ model's.
    assert adapted["flatbuffer_overhead_frac"] == pytest.approx(
        adapted["flatbuffer_bytes"] / ptq["flatbuffer_bytes"] - 1)
    assert adapted["flatbuffer_overhead_frac"] > 0
    (room,) = env["room"]
    assert room["full_minus_ptq"] == pytest.approx(full["acc"] - ptq["acc"])
    assert room["cora_minus_qat_same_steps"] == pytest.approx(adapted["acc"] - qat["acc"])
    assert 0.3 < env["fp_acc"]["imu_watch"] <= 1.0
    (detail,) = env["cora"].values()
    assert sum(detail["ranks"].values()) > 0


@pytest.mark.slow
def test_write_produces_json_markdown_and_plot(tiny_run, tmp_path):
    rows, env = tiny_run
    out = tmp_path / "cora.json"
    cora.write(rows, True, out, env)
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "cora" and doc["rows"] == rows
    assert doc["env"]["config"]["steps"] == 30
    assert ("| task | method | weight_bits | acc | steps | flatbuffer_overhead_frac |"
            ) in out.with_suffix(".md").read_text()
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("overrides, match", [
    ({"tasks": ("cifar",)}, r"Unknown benchmark task 'cifar'"),
    ({"weight_bits": (4, 5)}, r"weight_bits must be .* got \(4, 5\)"),
    ({"steps": 0}, r"steps must be an int >= 1, got 0"),
    ({"calib_samples": -1}, r"calib_samples must be an int >= 1, got -1"),
    ({"budgets": (None, 1.5)}, r"budgets must be .* got \(None, 1.5\)"),
    ({"budgets": (0.0,)}, r"budgets must be .* got \(0.0,\)"),
    ({"budgets": ()}, r"budgets must be .* got \(\)"),
    ({"rank_method": "svd"}, r"rank_method must be one of \('greedy', 'butterworth'\), got 'svd'"),
    ({"methods": ("lora",)}, r"methods must be .* got \('lora',\)"),
    ({"methods": ("cora",)}, r"'cora' without 'ptq'.*add 'ptq'"),
    ({"qat_lr": 0}, r"qat_lr must be a number > 0, got 0"),
    ({"train_bn": 1}, r"train_bn must be True or False, got 1"),
    ({"tflm_test": 0}, r"tflm_test must be None .* got 0"),
])
def test_bad_config_is_refused_with_the_value(overrides, match):
    with pytest.raises(ValueError, match=match):
        cora.Config.full(**overrides)


def test_presets_follow_the_issue():
    full, quick = cora.Config.full(), cora.Config.quick()
    for config in (full, quick):
        assert config.weight_bits == (3, 2) and config.methods == cora.METHODS
        assert config.calib_samples == 1600 and config.steps <= 250
    assert full.tasks == ("fashion_mnist", "imu_watch", "fashion_mbv2", "imu_deep")
    assert quick.tasks == ("imu_deep",)
    assert full.budgets == (None, 0.05) and quick.budgets == (None,)
    assert cora.ROW_KEYS[:6] == ("task", "method", "weight_bits", "acc", "steps",
                                 "flatbuffer_overhead_frac")


@pytest.mark.parametrize("bits, expected", [(4, 0.025), (3, 0.01875), (2, 0.0125), (8, 0.05)])
def test_default_budget_is_five_percent_of_the_weight_bytes(bits, expected):
    assert cora.budget_fraction(None, bits) == pytest.approx(expected)
    assert cora.budget_fraction(0.05, bits) == 0.05
