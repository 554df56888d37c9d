"""The end-to-end demo on a tiny real slice: every stage runs and the report is consistent."""

from __future__ import annotations

import json
import re

import pytest

pytestmark = pytest.mark.slow


def _assert_steps_numbered(output: str, total: int) -> None:
    """The demo's step headers are [1/total] ... [total/total], in order."""
    headers = re.findall(r"^\[(\d+)/(\d+)\]", output, re.MULTILINE)
    assert headers == [(str(i), str(total)) for i in range(1, total + 1)], headers


def test_demo_writes_model_report_and_plot(tmp_path, capsys):
    from tfmot_edgeplus.conversion import describe_weights
    from tfmot_edgeplus.demo import DemoConfig, run_demo
    from tfmot_edgeplus.runtime import TFLMRunner

    config = DemoConfig(
        train_samples=1000,
        test_samples=300,
        fp_epochs=1,
        qat_epochs=2,
        calibration=True,
        qcore_fp_epochs=2,
    )
    result = run_demo(str(tmp_path), config, verbose=0)
    out = capsys.readouterr().out
    _assert_steps_numbered(out, 5)
    assert "held-out windows after the stream (what it knew)" in out
    model_path = tmp_path / "fashion_mnist_w4a8.tflite"
    report = json.loads((tmp_path / "report.json").read_text())
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert (
        report["result"]["flatbuffer_bytes"] == model_path.stat().st_size == result.flatbuffer_bytes
    )
    assert {row["type"] for row in describe_weights(model_path.read_bytes())} == {"INT4"}
    assert result.weight_bytes * 2 <= result.int8_weight_bytes + 8  # 4 bits: half of int8
    # TFLM runs the QAT model: it agrees with Keras, so their accuracies differ by at most
    # the disagreement, and the arena reported is the model's.
    assert result.tflm_keras_agreement >= 0.9
    assert abs(result.tflm_acc - result.qat_acc) <= 1 - result.tflm_keras_agreement + 1e-6
    assert result.arena_bytes == TFLMRunner(model_path.read_bytes()).arena_bytes
    assert report["result"]["tflm_acc"] == result.tflm_acc
    # The QAT stage is QuaRC: a RES coreset of 10 % of the data (less the held-out 10 %), KD +
    # CLC, the best weights kept by the held-out slice and said so.
    qat = report["result"]["qat"]
    assert qat["config"]["coreset"] == "res" and qat["config"]["beta"] > 0
    assert qat["train_samples"] == 90
    assert qat["history"]["coreset_size"] == [90.0, 90.0]
    assert qat["best_weights"]["heldout_samples"] == 100
    assert "best weights kept by a held-out 10 % of the training data (not the test set)" in out
    assert min(qat["history"]["clc_loss"]) > 0
    # Then the on-device calibration part (QCore on the IMU stream), with its own files.
    rows = {row["method"]: row for row in result.qcore["rows"]}
    assert list(rows) == ["none", "qcore_bitflip", "bp_finetune"]
    assert rows["qcore_bitflip"]["memory_bytes"] <= 32 * 1024
    assert {p.name for p in (tmp_path / "qcore").iterdir()} == {
        "imu_watch_w4a8.tflite",
        "imu_watch_w4a8_qcore.tflite",
        "qcore.npz",
        "qcore.json",
        "qcore.png",
    }
    # ... and a sketch for the Nano 33 BLE that calibrates on the device
    sketch = tmp_path / "arduino" / "ImuQCoreSketch"
    assert {"ImuQCoreSketch.ino", "edgeplus_model.cpp", "edgeplus_qcore.cpp"} <= {
        p.name for p in sketch.iterdir()
    }


def test_qat_command_runs_the_pipeline_with_its_options(tmp_path):
    from click.testing import CliRunner

    from tfmot_edgeplus.cli import main

    result = CliRunner().invoke(
        main,
        [
            "qat",
            "--data",
            "imu_watch",
            "--train-samples",
            "600",
            "--bits",
            "2",
            "--coreset",
            "random",
            "--fraction",
            "0.2",
            "--no-clc",
            "--epochs",
            "2",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "QAT W2A8 on a RANDOM coreset of 20% of the data, KD" in result.output
    _assert_steps_numbered(result.output, 4)
    report = json.loads((tmp_path / "report.json").read_text())
    qat = report["result"]["qat"]
    assert qat["config"]["coreset"] == "random" and qat["config"]["beta"] == 0.0
    assert qat["train_samples"] == 108  # 20 % of the 540 left after the 10 % held-out slice
    assert (tmp_path / "imu_watch_w2a8.tflite").stat().st_size == report["result"][
        "flatbuffer_bytes"
    ]
    assert {row["bits"] for row in report["result"]["conversion"]["weights"]} == {2}


def test_qat_command_refuses_a_bad_fraction():
    from click.testing import CliRunner

    from tfmot_edgeplus.cli import main

    result = CliRunner().invoke(main, ["qat", "--fraction", "1.5"])
    assert result.exit_code == 2
    assert "fraction must be in (0, 1], got 1.5" in result.output


def test_cora_command_runs_ptq_plus_adapters_and_deploys_them(tmp_path):
    from click.testing import CliRunner

    from tfmot_edgeplus.cli import main

    result = CliRunner().invoke(
        main,
        [
            "cora",
            "--data",
            "imu_watch",
            "--train-samples",
            "800",
            "--bits",
            "3",
            "--budget",
            "0.1",
            "--steps",
            "40",
            "--calib-samples",
            "400",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    _assert_steps_numbered(result.output, 4)
    assert (
        "PTQ W3A8 + CoRa adapters (budget 0.1, greedy ranks), 40 KD steps on 400" in result.output
    )
    report = json.loads((tmp_path / "report.json").read_text())
    cora = report["result"]["cora"]
    assert cora["calib_samples"] == 400 and cora["config"]["steps"] == 40
    assert 0 < cora["adapter_param_fraction"] <= 0.1 and cora["ranks"]
    assert set(cora["accuracy"]) == {"ptq", "cora"} and report["result"]["qat"] == {}
    tflite = (tmp_path / "imu_watch_w3a8_cora.tflite").read_bytes()
    rows = report["result"]["conversion"]["weights"]
    adapter_rows = [r for r in rows if "_cora_" in r["tensor"]]
    # One int8 A and B per adapted layer beside the 3-bit main layers.
    assert len(adapter_rows) == 2 * len(cora["ranks"])
    assert {r["bits"] for r in adapter_rows} == {8}
    assert {r["bits"] for r in rows if r not in adapter_rows} == {3}
    assert len(tflite) == report["result"]["flatbuffer_bytes"]
    # The report counts the adapters' flatbuffer bytes, parameters and metadata apart.
    overhead = report["result"]["conversion"]["adapters"]
    assert overhead["parameter_bytes"] == sum(r["data_bytes"] for r in adapter_rows)
    assert overhead["parameter_bytes"] == cora["adapter_bytes"]
    assert overhead["bytes"] > overhead["parameter_bytes"]
    # A, B and an ADD per adapter, plus any requantization of the main branch
    assert overhead["operators"] >= 3 * len(cora["ranks"])
    # with the model without its adapters, the whole flatbuffer (both re-serialized alike,
    # so up to layout: the deployed bytes keep signature and metadata)
    assert overhead["rest_bytes"] + overhead["bytes"] == pytest.approx(len(tflite), rel=0.05)
    assert "CoRa adapters:" in result.output
    # ``edgeplus inspect`` reads the same overhead back from the .tflite alone
    inspect = CliRunner().invoke(main, ["inspect", str(tmp_path / "imu_watch_w3a8_cora.tflite")])
    assert (
        f"CoRa adapters: {overhead['operators']} ops, {overhead['bytes']} flatbuffer bytes "
        f"({overhead['parameter_bytes']} of parameters" in inspect.output
    )


def test_cora_command_refuses_a_bad_budget():
    from click.testing import CliRunner

    from tfmot_edgeplus.cli import main

    result = CliRunner().invoke(main, ["cora", "--budget", "1.5"])
    assert result.exit_code == 2
    assert "budget must be in (0, 1]" in result.output and "1.5" in result.output
