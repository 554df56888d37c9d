"""The scripts in examples/, each run in its --quick form in-process (their main(argv)),
and what they write and report checked against the package: files, TFLM agreeing with Keras,
the patch-stage op bit-exact with the int8 model, the sketch folder, calibration that keeps
what it changes only when it helps."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"examples_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_example(name: str, out: Path, *argv: str) -> dict:
    return load_example(name).main(["--quick", "--out", str(out), *argv])


def agree(a, b) -> float:
    return float(np.mean(np.argmax(a, -1) == np.argmax(b, -1)))


@pytest.fixture(scope="module")
def small_cnn_h5(trained_fp_model, tmp_path_factory):
    """conftest's small_cnn (trained once per session, shared with test_convert and
    test_adapters), saved for the examples' --model."""
    path = tmp_path_factory.mktemp("models") / "small_cnn.h5"
    trained_fp_model.save(path)
    return str(path)


@pytest.fixture(scope="module")
def end_to_end(tmp_path_factory):
    """The chain's quick run; its float model (float.h5) also feeds the QuantMCU example."""
    out = tmp_path_factory.mktemp("end_to_end")
    return out, run_example("end_to_end", out)


def test_every_example_says_what_it_needs_and_how_to_run_it():
    for path in sorted(EXAMPLES.glob("*.py")):
        doc = load_example(path.stem).__doc__
        assert "Needs:" in doc and "Run:" in doc and "--quick" in doc, path.name
        assert f"python examples/{path.name}" in doc, path.name


def test_quarc_coreset_qat(small_cnn_h5, tmp_path):
    from tfmot_edgeplus.conversion import describe_weights

    r = run_example("quarc_coreset_qat", tmp_path, "--model", small_cnn_h5)
    assert r["res_samples"] == r["random_samples"] == 90  # 5 % of 2,000 images less 10 % held out
    tflite = (tmp_path / "fashion_w4a8_res.tflite").read_bytes()
    assert len(tflite) == r["flatbuffer_bytes"]
    assert {row["type"] for row in describe_weights(tflite)} == {"INT4"}
    # QAT from a trained float model stays near it; TFLM runs the RES model like Keras
    assert min(r["res_acc"], r["random_acc"]) >= r["float_acc"] - 0.15
    assert r["tflm_keras_agreement"] >= 0.95
    assert abs(r["tflm_acc"] - r["res_acc"]) <= 1 - r["tflm_keras_agreement"] + 1e-6
    assert json.loads((tmp_path / "results.json").read_text()) == r


def test_cora_adapters(small_cnn_h5, tmp_path):
    from tfmot_edgeplus.conversion import conversion_report

    r = run_example("cora_adapters", tmp_path, "--model", small_cnn_h5)
    tflite = (tmp_path / "fashion_w3a8_cora.tflite").read_bytes()
    report = conversion_report(tflite)
    assert {row["bits"] for row in report.weights} >= {3, 8}  # 3-bit layers, int8 adapters
    assert r["ranks"] and 0 < r["adapter_param_fraction"] <= 0.05
    assert 0 < r["adapters"]["parameter_bytes"] < r["adapters"]["bytes"]
    assert r["tflm_keras_agreement"] >= 0.95
    assert abs(r["tflm_acc"] - r["cora_acc"]) <= 1 - r["tflm_keras_agreement"] + 1e-6
    # KD on the adapters only, the best by held-out calibration samples: never far below PTQ
    assert r["cora_acc"] >= r["ptq_acc"] - 0.02


def test_qcore_on_device(tmp_path):
    from tfmot_edgeplus.calibration import load_qcore, split_head

    r = run_example("qcore_on_device", tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {
        "imu_w4a8.tflite", "imu_w4a8_qcore.tflite", "qcore.npz", "results.json"}
    assert r["tflm_agreement"] == 1.0  # the integer head is TFLM's, bit for bit
    for s, subject in r["subjects"].items():
        for chunk in subject["chunks"]:  # a step that would lower accuracy is rolled back
            assert chunk["accuracy_after"] >= chunk["accuracy_before"], (s, chunk)
    assert r["memory"]["total_bytes"] <= 32 * 1024
    deployed = (tmp_path / "imu_w4a8.tflite").read_bytes()
    calibrated = (tmp_path / "imu_w4a8_qcore.tflite").read_bytes()
    # the bundle for the board holds the head weights the calibrated .tflite holds
    bundle = load_qcore(str(tmp_path / "qcore.npz"))
    head = split_head(calibrated, 1)
    assert [w.tolist() for w in bundle.head_weights] == [w.tolist() for w in head.weights()]
    moved = sum(c["changed"] for s in r["subjects"].values() for c in s["chunks"])
    before = split_head(deployed, 1).weights()[0]
    assert (moved > 0) == (not np.array_equal(head.weights()[0], before))
    assert len(bundle.core_y) == 40
    assert len(calibrated) == len(deployed)  # the head is written in place
    # the guard ratchets (old_tolerance 0): what the QCore gets right after a chunk stays right
    guard = [c["guard_correct"] for s in r["subjects"].values() for c in s["chunks"]]
    assert guard == sorted(guard) and bundle.guard_min_correct == guard[-1]


def test_quantmcu_patch_plan(end_to_end, tmp_path):
    from tfmot_edgeplus.runtime import tflm_ops

    e2e_out, _ = end_to_end
    r = run_example("quantmcu_patch_plan", tmp_path, "--model", str(e2e_out / "float.h5"))
    expected = "split" if tflm_ops.missing_env() else "tflm"
    for name in ("patch_int8", "patch_vdpc_vdqs"):
        assert r[name]["backend"] == expected
        assert r[name]["planned_peak_bytes"] < r["layer_int8"]["activation_bytes"]
        if expected == "tflm":  # measured in TFLM's arena (the split runner's is a bound)
            assert r[name]["activation_bytes"] < r["layer_int8"]["activation_bytes"]
        deployed = (tmp_path / f"fashion_{name}.tflite").read_bytes()
        assert deployed.count(b"EDGEPLUS_PATCH_STAGE") == 1
        assert (tmp_path / f"{name}_plan.png").stat().st_size > 10_000
    assert r["patch_int8"]["bit_exact_with_int8"]  # 8-bit patches: the int8 model's outputs
    assert r["patch_vdpc_vdqs"]["same_class_as_int8"] >= 0.8  # fewer bits: a few answers move


def test_end_to_end(end_to_end):
    from tfmot_edgeplus.conversion import describe_weights
    from tfmot_edgeplus.export.arduino import FLASH_BYTES, SRAM_BYTES
    from tfmot_edgeplus.runtime import TFLMRunner

    out, r = end_to_end
    sketch = out / "FashionEndToEnd"
    assert {"FashionEndToEnd.ino", "edgeplus_model.cpp", "edgeplus_model.h", "edgeplus_qcore.cpp",
            "edgeplus_qcore.h"} <= {p.name for p in sketch.iterdir()}
    header = (sketch / "edgeplus_model.h").read_text()
    assert "#define EDGEPLUS_HAS_PATCH_STAGE 1" in header  # the stage runs as our op ...
    assert "FULLY_CONNECTED" not in header.split("The model's operators:")[1].split("*/")[0]
    assert "qcore: qcore.npz" in (sketch / "edgeplus_model.cpp").read_text()  # ... the head: QCore
    assert r["sketch"]["flash_bytes"] <= FLASH_BYTES and r["sketch"]["ram_bytes"] <= SRAM_BYTES
    assert r["peak_sram_patched"] < r["peak_sram_layer"]
    assert r["tflm_keras_agreement"] >= 0.9
    for chunk in r["chunks"]:
        assert chunk["accuracy_after"] >= chunk["accuracy_before"], chunk
    assert r["calibrated_tflm_agreement"] == 1.0  # the integer head is TFLM's, bit for bit
    assert json.loads((out / "results.json").read_text())["drift_acc_after"] == r["drift_acc_after"]
    model_bytes = (out / "fashion_w4a8_cora.tflite").read_bytes()
    rows = describe_weights(model_bytes)  # W4 main layers in INT4, the adapters in int8
    branch = [row for row in rows if "_cora_" in row["tensor"]]
    assert branch and all((row["type"], row["storage"]) == ("INT8", "dense") for row in branch)
    assert {(row["type"], row["bits"]) for row in rows if row not in branch} == {("INT4", 4)}
    deployed = TFLMRunner(model_bytes)
    calibrated = TFLMRunner((out / "calibrated.tflite").read_bytes())
    x = np.random.default_rng(0).random((64, 28, 28, 1), np.float32)
    moved = sum(chunk["changed"] for chunk in r["chunks"])
    assert (moved > 0) == (not np.array_equal(deployed.predict(x), calibrated.predict(x)))
