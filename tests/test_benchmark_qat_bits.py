"""benchmarks/qat_bits.py on a tiny real configuration (600 Fashion-MNIST images, 1 epoch)."""

from __future__ import annotations

import argparse
import json
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import pytest

from benchmarks import qat_bits

TINY = qat_bits.Config.full(
    train_samples=600,
    test_samples=200,
    fp_epochs=2,
    qat_epochs=1,
    fp_learning_rate=3e-3,
    representative_samples=50,
)
# Every kind of row in two QAT runs: TF-MOT W2 converted both ways (ours: LUT2; TF's: the
# INT4 container, i.e. exactly what a W4 model takes) and ours at W2. The W4 and W8 rows take
# the same code path (see the --quick run); conversions dominate the time of this test.
CASES = (("tfmot", 2), ("edgeplus", 2))


@pytest.fixture(scope="module")
def tiny_run():
    """The benchmark's row functions on TINY (about 45 s on 2 cores): (rows, env)."""
    pytest.importorskip("matplotlib")
    from tfmot_edgeplus import datasets

    try:
        data = qat_bits.load_data(TINY)
    except datasets.DatasetNotFoundError as err:
        pytest.skip(str(err))
    fp_model, fp_s = qat_bits.train_float(data, TINY)
    rows = [qat_bits.float_row(fp_model, data)]
    for scheme, bits in CASES:
        rows += qat_bits.qat_rows(fp_model, data, scheme, bits, TINY)
    return rows, {"fp_train_s": round(fp_s, 2)}


def _row(rows, scheme, bits, conversion="edgeplus"):
    found = [r for r in rows if r["scheme"] == scheme and r["weight_bits"] == bits
             and r["conversion"] == conversion]
    assert len(found) == 1, (scheme, bits, conversion, rows)
    return found[0]


@pytest.mark.slow
def test_rows_have_the_documented_keys_and_types(tiny_run):
    rows, _ = tiny_run
    assert [(r["scheme"], r["weight_bits"], r["conversion"]) for r in rows] == [
        ("float", 32, "tf"), ("tfmot", 2, "edgeplus"), ("tfmot", 2, "tf"),
        ("edgeplus", 2, "edgeplus")]
    for row in rows:
        assert tuple(row) == qat_bits.ROW_KEYS
        for key in ("weight_bits", "activation_bits", "flatbuffer_bytes", "weight_bytes",
                    "arena_bytes"):
            assert isinstance(row[key], int) and row[key] > 0, (key, row)
        # Accuracies on one test set: TFLM's and Keras's differ by at most their disagreement,
        # and each is a count of the 200 test images.
        assert abs(row["keras_acc"] - row["tflm_acc"]) <= 1 - row["agreement"] + 1e-9, row
        for key in ("keras_acc", "tflm_acc", "agreement"):
            count = row[key] * 200
            assert isinstance(row[key], float) and abs(count - round(count)) < 1e-4, (key, row)
        assert isinstance(row["storage"], str)
        assert row["weight_bytes"] < row["flatbuffer_bytes"]
        if row["scheme"] == "float":
            assert row["qat_s"] is None
        else:
            assert isinstance(row["qat_s"], float) and row["qat_s"] > 0
            assert row["activation_bits"] == 8


@pytest.mark.slow
def test_storage_and_bytes_follow_the_bits(tiny_run):
    rows, _ = tiny_run
    fp = _row(rows, "float", 32, "tf")
    assert fp["storage"] == "FLOAT32" and fp["activation_bits"] == 32
    # TF's own conversion of TF-MOT's W2 model keeps the INT4 container: 4 bits per weight,
    # an eighth of float32 (every filter of small_cnn has an even number of weights).
    raw = _row(rows, "tfmot", 2, "tf")
    assert raw["storage"] == "INT4"
    assert raw["weight_bytes"] * 8 == fp["weight_bytes"]
    for scheme in ("tfmot", "edgeplus"):
        w2 = _row(rows, scheme, 2)
        assert w2["storage"] == "LUT2"
        # 2-bit indices + per-channel tables: below INT4 (= W4), above a quarter of INT8.
        assert fp["weight_bytes"] // 16 < w2["weight_bytes"] < raw["weight_bytes"]
        assert w2["flatbuffer_bytes"] < raw["flatbuffer_bytes"]
    # One QAT model, and the LUT is lossless: the two conversions predict alike.
    ours = _row(rows, "tfmot", 2)
    assert (raw["keras_acc"], raw["tflm_acc"], raw["agreement"]) == (
        ours["keras_acc"], ours["tflm_acc"], ours["agreement"])


@pytest.mark.slow
def test_tflm_agrees_with_keras(tiny_run):
    rows, _ = tiny_run
    for row in rows:
        # The float .tflite runs the same math; the int8 models differ only by rounding.
        assert row["agreement"] >= (0.99 if row["scheme"] == "float" else 0.9), row
        assert row["keras_acc"] > 0.2, row  # above chance (0.1)


@pytest.mark.slow
def test_write_produces_json_markdown_and_plot(tiny_run, tmp_path, capsys):
    rows, env = tiny_run
    env = {**env, "config": {"train_samples": 600}}
    out = tmp_path / "nested" / "qat_bits.json"
    json_path = qat_bits.write(rows, True, out, env)
    assert json_path == out
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "qat_bits" and doc["quick"] is True
    assert doc["rows"] == rows
    assert doc["env"]["fp_train_s"] == env["fp_train_s"]
    assert doc["env"]["config"] == env["config"]
    assert "tensorflow" in doc["env"]
    md = out.with_suffix(".md").read_text()
    assert md.startswith("# qat_bits (quick)")
    assert "| scheme | conversion | weight_bits |" in md
    assert md.count("\n| ") == len(rows) + 1  # header + one line per row
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| tfmot | tf | 2 | 8 | INT4 |" in capsys.readouterr().out


# ------------------------------------------------------------------ configuration errors


@pytest.mark.parametrize("overrides, match", [
    ({"weight_bits": (5,)}, r"weight_bits must be .* got \(5,\)"),
    ({"weight_bits": ()}, r"weight_bits must be a non-empty"),
    ({"schemes": ("tfmot", "lsq")}, r"schemes must be .* got \('tfmot', 'lsq'\)"),
    ({"activation_bits": 4}, r"activation_bits=4"),
    ({"qat_epochs": 0}, r"qat_epochs must be a positive int, got 0"),
])
def test_bad_config_is_refused_with_the_value(overrides, match):
    with pytest.raises(ValueError, match=match):
        qat_bits.Config.full(**overrides)


def test_presets():
    full, quick = qat_bits.Config.full(), qat_bits.Config.quick()
    assert (full.train_samples, full.test_samples, full.fp_epochs, full.qat_epochs) == (
        20000, None, 5, 2)
    assert (quick.train_samples, quick.test_samples, quick.fp_epochs, quick.qat_epochs) == (
        4000, 1000, 3, 1)
    assert full.weight_bits == quick.weight_bits == (8, 4, 2)
    assert full.batch_size == quick.batch_size and full.seed == quick.seed == 0


def test_bits_argument():
    assert qat_bits._bits_arg("8,4,2") == (8, 4, 2)
    with pytest.raises(argparse.ArgumentTypeError, match=r"--bits .* got '8,5'"):
        qat_bits._bits_arg("8,5")
    with pytest.raises(argparse.ArgumentTypeError, match="got 'x'"):
        qat_bits._bits_arg("x")


def test_unknown_scheme_is_refused():
    with pytest.raises(ValueError, match=r"scheme must be one of .* got 'lsq'"):
        qat_bits.build_qat(None, "lsq", 4)
