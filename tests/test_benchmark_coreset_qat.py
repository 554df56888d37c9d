"""benchmarks/coreset_qat.py: its summary arithmetic, its recipes, and a tiny real run."""

from __future__ import annotations

import json
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import pytest

from benchmarks import coreset_qat
from benchmarks._report import paired_interval


def _runs(accs, wall=1.0, samples=10):
    return [{"acc": a, "wall_s": wall, "train_samples": samples} for a in accs]


def test_summary_pairs_each_seed_with_the_stratified_baseline_and_reports_the_room():
    config = coreset_qat.Config.full(tasks=("imu_deep",), weight_bits=(2,), fractions=(0.01,),
                                     seeds=(0, 1, 2))
    runs = {
        (2, "random", 0.01): _runs([0.50, 0.60, 0.55], wall=2.0),
        (2, "random_stratified", 0.01): _runs([0.52, 0.61, 0.58], wall=2.0),
        (2, "res", 0.01): _runs([0.56, 0.64, 0.60], wall=3.0),
        (2, "full_kd", 1.0): _runs([0.80, 0.82, 0.81], wall=10.0, samples=1000),
    }
    rows, room = coreset_qat.summarize("imu_deep", runs, {2: [0.30, 0.35, 0.40]}, config)
    by = {r["method"]: r for r in rows}
    for row in rows:
        assert tuple(row) == coreset_qat.ROW_KEYS and row["seeds"] == 3
    res = by["res"]
    mean, lo, hi = paired_interval([0.04, 0.03, 0.02])
    assert res["diff_vs_random_stratified"] == pytest.approx({"mean": mean, "lo": lo, "hi": hi})
    assert mean == pytest.approx(0.03)
    assert 0 < lo < 0.03 < hi
    assert by["random_stratified"]["diff_vs_random_stratified"]["mean"] == 0.0
    assert by["full_kd"]["diff_vs_random_stratified"] is None and by["full_kd"]["fraction"] == 1.0
    assert res["time_vs_full"] == pytest.approx(0.3) and by["full_kd"]["time_vs_full"] == 1.0
    assert res["acc_mean"] == pytest.approx(0.60) and res["train_samples"] == 10
    (entry,) = room
    assert entry["full_kd"] == pytest.approx(0.81) and entry["ptq"] == pytest.approx(0.35)
    assert entry["random_1pct"] == pytest.approx(0.55)
    assert entry["full_minus_random_1pct"] == pytest.approx(0.26)
    assert entry["full_minus_ptq"] == pytest.approx(0.46)
    assert entry["full_minus_ptq_lo"] < 0.46 < entry["full_minus_ptq_hi"]


def test_every_coreset_row_trains_with_the_same_kd_loss_and_quotas():
    config = coreset_qat.Config.full()
    made = {m: coreset_qat.quarc_config(m, 2, 0.01, 1, config) for m in coreset_qat.METHODS}
    assert {m: c.beta for m, c in made.items()} == {
        "random": 0.0, "random_stratified": 0.0, "res_top": 0.0, "res": 0.0,
        "res_clc": config.beta, "full_kd": 0.0}
    assert {c.temperature for c in made.values()} == {1.0}
    assert {(c.epochs, c.holdout, c.seed, c.weight_bits) for c in made.values()} == {
        (10, 0.0, 1, 2)}
    assert [m for m, c in made.items() if c.per_class] == [
        "random_stratified", "res_top", "res", "res_clc", "full_kd"]
    assert made["res_top"].sampling == "top" and made["res"].sampling == "weighted"
    assert made["full_kd"].coreset == "full" and made["full_kd"].fraction == 1.0
    # the same step budget for every coreset row; full_kd passes over the pool qat_epochs times
    assert {m: c.steps for m, c in made.items()} == {
        **{m: config.qat_steps for m in coreset_qat.METHODS}, "full_kd": None}


@pytest.mark.slow
def test_a_tiny_real_run_writes_rows_json_and_plot(tmp_path):
    from tfmot_edgeplus import datasets

    tiny = coreset_qat.Config.full(
        tasks=("imu_watch",), weight_bits=(2,), fractions=(0.05,), seeds=(0,), qat_epochs=1,
        qat_steps=3,
        fp_epochs={"imu_watch": 2}, methods=("random_stratified", "res_clc", "full_kd"),
        cache_dir=str(tmp_path / "cache"))
    try:
        rows, env = coreset_qat.run(tiny)
    except datasets.DatasetNotFoundError as err:
        pytest.skip(str(err))
    assert [r["method"] for r in rows] == ["random_stratified", "res_clc", "full_kd"]
    n_train = env["train_samples"]["imu_watch"]
    for row in rows:
        assert row["task"] == "imu_watch" and row["weight_bits"] == 2 and row["acc_std"] == 0.0
        assert row["train_samples"] == (n_train if row["method"] == "full_kd"
                                        else round(0.05 * n_train))
        assert 0.2 < row["acc_mean"] <= 1.0  # 7 classes: chance is about 0.14
    assert rows[1]["diff_vs_random_stratified"]["lo"] is None  # one seed: no interval
    assert rows[-1]["time_vs_full"] == 1.0 and rows[0]["time_vs_full"] > 0
    (room,) = env["room"]
    assert room["full_minus_ptq"] == pytest.approx(room["full_kd"] - room["ptq"])
    assert list(tmp_path.joinpath("cache").glob("imu_watch-s0-*.h5"))
    out = tmp_path / "coreset_qat.json"
    coreset_qat.write(rows, True, out, env)
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "coreset_qat" and doc["quick"] is True and doc["rows"] == rows
    assert doc["env"]["room"] == env["room"] and doc["env"]["seeds"] == [0]
    assert "| task | method | weight_bits | fraction |" in out.with_suffix(".md").read_text()
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("overrides, match", [
    ({"tasks": ("cifar",)}, r"Unknown benchmark task 'cifar'"),
    ({"fractions": (0.1, 1.0)}, r"fractions must be in \(0, 1\) .* got \(0.1, 1.0\)"),
    ({"methods": ("acs",)}, r"methods must be .* got \('acs',\)"),
    ({"weight_bits": (5,)}, r"weight_bits must be .* got \(5,\)"),
    ({"seeds": ()}, "seeds must name at least one seed"),
])
def test_bad_config_is_refused_with_the_value(overrides, match):
    with pytest.raises(ValueError, match=match):
        coreset_qat.Config.full(**overrides)


def test_presets():
    full, quick = coreset_qat.Config.full(), coreset_qat.Config.quick()
    assert full.seeds == (0, 1, 2) and len(quick.seeds) == 2
    assert full.tasks == ("fashion_mnist", "imu_watch", "fashion_mbv2", "imu_deep")
    assert full.fractions == (0.01, 0.1) and full.weight_bits == (2, 3)
    assert full.methods == quick.methods == coreset_qat.METHODS
    assert quick.tasks == ("imu_deep",)
