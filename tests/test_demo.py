"""The end-to-end demo on a tiny real slice: every stage runs and the report is consistent."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def test_demo_writes_model_report_and_plot(tmp_path):
    from tfmot_edgeplus.conversion import describe_weights
    from tfmot_edgeplus.demo import DemoConfig, run_demo

    config = DemoConfig(train_samples=1000, test_samples=300, fp_epochs=1, qat_epochs=1)
    result = run_demo(str(tmp_path), config, verbose=0)
    model_path = tmp_path / "small_cnn_w4a8.tflite"
    report = json.loads((tmp_path / "report.json").read_text())
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert report["result"]["flatbuffer_bytes"] == model_path.stat().st_size == result.flatbuffer_bytes
    assert {row["type"] for row in describe_weights(model_path.read_bytes())} == {"INT4"}
    assert result.weight_bytes * 2 <= result.int8_weight_bytes + 8  # 4 bits: half of int8
    assert 0.0 <= result.tflm_keras_agreement <= 1.0 and result.arena_bytes > 0
