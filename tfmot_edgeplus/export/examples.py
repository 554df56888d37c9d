"""Regenerate the data of the EdgePlus library's examples, which the repository keeps (as
TFLM keeps its examples' models) so that the examples compile as installed::

    python -m tfmot_edgeplus.export.examples            # both; --only PatchInference

Each example folder gets ``edgeplus_model.h/.cpp`` (and ``edgeplus_qcore.h/.cpp``) from
:func:`~tfmot_edgeplus.export.arduino.write_sketch_data`, whose banners record this command,
the sources' hashes and the accuracies measured here. Real data, small models, a few minutes:

- **PatchInference**: :func:`~tfmot_edgeplus.models.mbv2_micro` (``width`` 2) at 48x48 on
  Fashion-MNIST (``train`` training images upsampled as the QuantMCU recipe does, ``epochs``
  of Adam, one epoch of TF-MOT's 8-bit QAT, full-integer conversion), planned with VDPC/VDQS
  on 128 calibration images, the settings chosen by
  :func:`~tfmot_edgeplus.recipes.quantmcu.tune_plan` (VDQS by BitOPs, the paper's; fewest
  BitOPs with ``agreement`` top-1 agreement with the int8 model on those images); the test
  input is the first test image.
  The deployed model (stage as one EDGEPLUS_PATCH_STAGE op) is scored on ``test`` test
  images through the split runner (bit-exact with the op), next to the int8 model.
- **MotionContinualCalibration**: the QCore recipe (:func:`~tfmot_edgeplus.qcore_continual`)
  at W4 with only the "none" method, so the calibrator is the offline-fitted one the device
  starts from; the bundle carries the training subjects' channel statistics.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tfmot_edgeplus import datasets, models, patching
from tfmot_edgeplus._compat import keras, tfmot
from tfmot_edgeplus.calibration import save_qcore
from tfmot_edgeplus.conversion.converter import convert
from tfmot_edgeplus.export.arduino import write_sketch_data
from tfmot_edgeplus.patching.patch_runner import PatchStageRunner
from tfmot_edgeplus.recipes.qcore import QCoreConfig, qcore_continual
from tfmot_edgeplus.recipes.quantmcu import accuracy, tune_plan, upsample
from tfmot_edgeplus.runtime.tflm import TFLMRunner

EXAMPLES = Path(__file__).resolve().parents[2] / "arduino" / "EdgePlus" / "examples"
COMMAND = "python -m tfmot_edgeplus.export.examples"


def patch_inference(
    folder: Path,
    train: int = 10000,
    test: int = 1000,
    epochs: int = 8,
    agreement: float = 0.95,
    width: int = 2,
) -> dict:

    data = datasets.fashion_mnist(limit_train=train + 128, limit_test=test, seed=0)
    x = upsample(data.x_train, 48)
    x_train, y_train, x_calib = x[:train], data.y_train[:train], x[train:]
    x_test, y_test = upsample(data.x_test, 48), np.asarray(data.y_test)
    keras.utils.set_random_seed(0)
    m = models.mbv2_micro((48, 48, 1), 10, name="fashion_mbv2_micro", width=width)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    m.compile(keras.optimizers.Adam(3e-3), loss, metrics=["accuracy"])
    m.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=2)
    q = tfmot.quantization.keras.quantize_model(m)
    q.compile(keras.optimizers.Adam(3e-4), loss, metrics=["accuracy"])
    q.fit(x_train, y_train, epochs=1, batch_size=64, verbose=2)
    tfl = convert(q, x_calib)
    plan, _ = tune_plan(tfl, x_calib, patching.plan(tfl, None), min_agreement=agreement, say=print,
                        saving="bitops")  # fmt: skip
    acc8 = accuracy(TFLMRunner(tfl).predict, x_test, y_test)
    acc = accuracy(PatchStageRunner(tfl, plan, backend="split").predict, x_test, y_test)
    print(plan.summary())
    _, figures = write_sketch_data(
        folder, tfl, plan, test_input=x_test[0], test_label=int(y_test[0]),
        class_names=data.class_names,
        provenance={"made by": COMMAND, "accuracy": f"{acc:.4f} deployed, {acc8:.4f} int8 layer "
                    f"by layer, on {test} Fashion-MNIST test images (48x48)"},
    )  # fmt: skip
    return {"accuracy": acc, "int8_accuracy": acc8, **figures}


def motion_calibration(folder: Path) -> dict:

    run = qcore_continual(QCoreConfig(weight_bits=4, methods=("none",)), verbose=1)
    bundle = folder.parent / ".qcore_bundle.npz"
    try:
        save_qcore(run.calibrator, bundle, run.input_stats)
        metrics = run.results["none"].metrics()
        _, figures = write_sketch_data(
            folder, run.model_bytes, qcore=bundle, chunk=20,
            provenance={"made by": COMMAND, "uncalibrated accuracy": f"old subjects "
                        f"{metrics['old_acc']:.4f}, new subjects (final) "
                        f"{metrics['final_acc']:.4f}"},
        )  # fmt: skip
    finally:
        bundle.unlink(missing_ok=True)
    return {"metrics": metrics, **figures}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(EXAMPLES), help="the library's examples folder")
    ap.add_argument("--only", choices=["PatchInference", "MotionContinualCalibration"])
    args = ap.parse_args(argv)
    out = Path(args.out)
    for name, make in (("PatchInference", patch_inference),
                       ("MotionContinualCalibration", motion_calibration)):  # fmt: skip
        if args.only in (None, name):
            (out / name).mkdir(parents=True, exist_ok=True)
            print(name, make(out / name))


if __name__ == "__main__":
    main()
