"""One Fashion-MNIST model through the whole chain, from float training to a sketch that
recalibrates itself on an Arduino Nano 33 BLE.

1. Float training of a small MobileNetV2-style CNN (``models.mbv2_micro``), with a
   ``QuantMissTracker`` counting the samples its 2-8-bit copies get wrong (QCore's source).
2. QuaRC: W4A8 QAT on a RES coreset (``--fraction`` of the data), KD + CLC from the float model.
3. CoRa: int8 low-rank residual adapters on the conv layers (not the Dense head, which QCore
   calibrates), calibrated by KD; then a full-integer .tflite (INT4 weights) run in TFLM.
4. QuantMCU: the leading stage planned patch by patch within ``--sram`` (8-bit patches: the
   device computes the int8 model's features bit for bit), deployed as one
   ``EDGEPLUS_PATCH_STAGE`` op.
5. QCore: the deployed Dense head split off, its flip network trained on the host on two
   offline "drifts" of training images (washed-out contrast; objects shifted).
6. The sketch folder for the Nano 33 BLE (model + patch stage + QCore), as
   ``edgeplus export arduino`` writes it.
7. The device's part, run on the host: a drifted stream (a camera with both drifts) arrives
   in labeled chunks and the head recalibrates by bit flips, without back-propagation.

Needs: tfmot_edgeplus (``make setup``, or ``pip install -e .``) and Debian's
``dataset-fashion-mnist``.
With ``EDGEPLUS_TFLM_ROOT`` (and siblings, see README) the sketch's arena is measured in TFLM
with the patch-stage op; without, it is an estimate (the banner says which).

Run:  python examples/end_to_end.py --out out/end_to_end [--quick] [--model float.h5]
      (--model: your trained float Keras 2 model of 28x28x1 images, convolutions first and
      a Dense classifier last; --quick: 2,000 images, 2 epochs, 4 chunks)

Prints each step's figures and writes ``<out>/``: ``float.h5``, ``fashion_w4a8_cora.tflite``,
``plan.json``, ``qcore.npz``, ``calibrated.tflite``, ``FashionEndToEnd/`` (the sketch) and
``results.json``. Measured (full run, 10,000 images, under two minutes on 2 busy cores):
accuracy float 0.816, W4A8 QAT on 500 RES images 0.549, with the adapters 0.794, TFLM 0.794;
peak SRAM 18,816 B layer by layer, 5,488 B in 3x3 patches; the sketch takes 29,256 B of
flash data and 36,712 B of SRAM (arena, estimated, + QCore); on 1,000 drifted images in 50
chunks the head goes from 0.094 to 0.306 on the held-out drifted images, while on clean
images it goes from 0.794 to 0.727 (the QCore's guard keeps what the clean images taught it;
without the guard, a QCore of 20 and one refreshed QCore, it fell to 0.365 while the
drifted images reached 0.403); the recalibrated .tflite in TFLM gives the calibrator's class
on 100 % of the images.
"""

import argparse  # noqa: I001  (tfmot_edgeplus before tf_keras: it selects Keras 2)
import json
import os

import numpy as np

import tfmot_edgeplus as ep
import tf_keras as keras
from tfmot_edgeplus import patching
from tfmot_edgeplus.export import export_sketch
from tfmot_edgeplus.models import compile_classifier, mbv2_micro


def drift(x, contrast=1.0, brightness=0.0, shift=0):
    """Images as another camera sees them: lower contrast, brighter, objects moved."""
    x = np.roll(x, (shift, shift), axis=(1, 2))
    return np.clip(contrast * x + brightness, 0.0, 1.0).astype(np.float32)


def accuracy(predictions, y):
    return float(np.mean(np.argmax(predictions, axis=-1) == y))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="out/end_to_end")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, same code path")
    parser.add_argument("--model", help="a trained float Keras model (.h5); default: train one")
    parser.add_argument("--fraction", type=float, default=0.05, help="coreset share of the data")
    parser.add_argument("--sram", type=int, default=256 * 1024, help="patch plan budget (bytes)")
    parser.add_argument("--chunk", type=int, default=20, help="labeled samples per chunk")
    args = parser.parse_args(argv)
    n_train, epochs, steps, episodes, n_chunks = ((2000, 2, 10, 4, 4) if args.quick
                                                 else (10000, 5, 200, 24, 50))
    os.makedirs(args.out, exist_ok=True)
    results = {}
    keras.utils.set_random_seed(0)
    data = ep.datasets.fashion_mnist(limit_train=n_train, limit_test=n_train // 3, seed=0)
    x, y, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test

    print("[1/7] float model, and the training images its 2-8-bit copies get wrong")
    tracker = ep.coreset.QuantMissTracker(x, y, every=epochs)
    if args.model:
        fp = compile_classifier(keras.models.load_model(args.model, compile=False))
        tracker.check(fp)  # one check of the trained model (the callback checks while training)
    else:
        fp = compile_classifier(mbv2_micro((28, 28, 1), 10, width=2), learning_rate=3e-3)
        fp.fit(x, y, epochs=epochs, batch_size=8 if args.quick else 32, callbacks=[tracker],
               verbose=0)
    fp.save(os.path.join(args.out, "float.h5"))
    results["float_acc"] = accuracy(fp.predict(x_test, verbose=0), y_test)

    print(f"[2/7] QuaRC: W4A8 QAT on a RES coreset of {args.fraction:.0%} of the data")
    quarc = ep.quarc_qat(fp, x, y, ep.QuaRCConfig(weight_bits=4, fraction=args.fraction,
                                                   epochs=epochs, calibration_samples=512))
    qat = quarc.qat_model
    results["qat_acc"] = accuracy(qat.predict(x_test, verbose=0), y_test)

    print("[3/7] CoRa: residual adapters on the conv layers, KD calibration, conversion")
    convs = [layer.name for layer in fp.layers if isinstance(layer, keras.layers.Conv2D)]
    model = ep.adapters.add_residual_adapters(qat, fp, budget=0.05, layers=convs)
    ep.adapters.calibrate(model, x, steps=steps)
    keras_pred = model.predict(x_test, verbose=0)
    results["cora_acc"] = accuracy(keras_pred, y_test)
    tflite = ep.convert(model, x[:300])
    tflm = ep.runtime.TFLMRunner(tflite).predict(x_test)
    results["tflm_acc"] = accuracy(tflm, y_test)
    results["tflm_keras_agreement"] = accuracy(tflm, keras_pred.argmax(1))
    with open(os.path.join(args.out, "fashion_w4a8_cora.tflite"), "wb") as f:
        f.write(tflite)
    print(f"      accuracy: float {results['float_acc']:.3f}, W4A8 QAT {results['qat_acc']:.3f}, "
          f"+ adapters {results['cora_acc']:.3f}, TFLM {results['tflm_acc']:.3f} "
          f"({len(tflite):,} B flatbuffer, adapter ranks {model.adapter_ranks})")

    print(f"[4/7] QuantMCU: 8-bit patch plan within {args.sram:,} B")
    # max_halo=None: the example always shows the patch stage. By default (max_halo=1.5) the
    # planner keeps this small model layer by layer when it fits the budget: its patches cost
    # more than 1.5x the stage's instructions (the per-call cost dominates 14x14 maps).
    plan = patching.plan(tflite, None, sram_budget=args.sram, max_halo=None)
    with open(os.path.join(args.out, "plan.json"), "w") as f:
        f.write(plan.to_json())
    print(plan.summary())

    print("[5/7] QCore: the Dense head split off, flip network trained on two offline drifts")
    cal = ep.calibration.BitFlipCalibrator(tflite, head_layers=1, core_size=40)
    half = len(x) // 2
    shifts = [(drift(x[:half], contrast=0.5, brightness=0.3), y[:half]),
              (drift(x[half:], shift=2), y[half:])]
    core = tracker.sample(40)
    fit = cal.fit((x[core], y[core]), shifts, chunk_size=args.chunk, episodes=episodes)
    ep.calibration.save_qcore(cal, os.path.join(args.out, "qcore.npz"))
    print(f"      head {[layer.name for layer in cal.head.layers]}; flip networks {fit}")

    print("[6/7] Arduino sketch folder for the Nano 33 BLE")
    sketch = export_sketch(tflite, os.path.join(args.out, "FashionEndToEnd"), plan=plan,
                           qcore=os.path.join(args.out, "qcore.npz"), chunk=args.chunk,
                           test_input=x_test[0], test_label=int(y_test[0]), force=True)
    print(sketch.summary())

    print("[7/7] on the device (run here): the drifted camera's images arrive in labeled chunks")
    seen = drift(x_test, contrast=0.5, brightness=0.3, shift=2)
    stream, held_out = slice(0, len(seen) // 2), slice(len(seen) // 2, None)
    results["drift_acc_before"] = cal.evaluate(seen[held_out], y_test[held_out])
    chunks = []
    for i in range(min(n_chunks, len(seen[stream]) // args.chunk)):
        part = slice(i * args.chunk, (i + 1) * args.chunk)
        report = cal.calibrate(seen[stream][part], y_test[stream][part])
        chunks.append(report.summary())
        print(f"      chunk {i + 1}: {report.kept} steps kept, {report.changed} weights changed, "
              f"accuracy on the new samples (memory + chunk) {report.accuracy_before:.2f} -> "
              f"{report.accuracy_after:.2f}, QCore {report.guard_correct}/{report.guard_items}")
    results["drift_acc_after"] = cal.evaluate(seen[held_out], y_test[held_out])
    results["clean_acc_after"] = cal.evaluate(x_test, y_test)
    calibrated = cal.model_bytes()  # the deployed model with the recalibrated INT4 head
    tflm = ep.runtime.TFLMRunner(calibrated).predict(seen[held_out])
    results["calibrated_tflm_agreement"] = accuracy(tflm, cal.predict(seen[held_out]).argmax(1))
    with open(os.path.join(args.out, "calibrated.tflite"), "wb") as f:
        f.write(calibrated)
    print(f"      held-out drifted images: {results['drift_acc_before']:.3f} before, "
          f"{results['drift_acc_after']:.3f} after calibration; clean images "
          f"{results['tflm_acc']:.3f} -> {results['clean_acc_after']:.3f}; the recalibrated "
          f".tflite in TFLM gives the calibrator's class on "
          f"{results['calibrated_tflm_agreement']:.1%} of them")
    results.update(peak_sram_layer=plan.peak_layer, peak_sram_patched=plan.peak_planned,
                   chunks=chunks, flip_networks=fit, sketch=sketch.figures)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2, default=str)
    return results


if __name__ == "__main__":
    main()
