"""QuantMCU: plan a CNN's memory-heavy first layers patch by patch, with fewer bits for the
patches and feature maps that allow it, and run the result in TFLite Micro as one custom op.

1. A small MobileNetV2-style CNN (``models.mbv2_micro``) on Fashion-MNIST, quantized to a
   full-integer int8 .tflite (8-bit PTQ).
2. ``patching.plan`` reads the .tflite: the leading stage, the split tensor and the n x n
   grid with the lowest peak SRAM within ``--sram`` (the 8-bit patch plan), then on
   calibration images VDPC (patches whose maps hold outliers stay 8-bit) and VDQS (4- or
   2-bit maps for the other patches, by entropy and BitOPs).
3. Each plan is lowered to a stage program and deployed: the stage becomes one
   ``EDGEPLUS_PATCH_STAGE`` operator, the rest stays builtin. ``PatchStageRunner`` runs it in
   the TFLM interpreter with our op (needs ``EDGEPLUS_TFLM_ROOT`` and siblings, see README;
   without them the split runner: the stage in our C kernels, the rest in TFLM, same outputs).

Needs: tfmot_edgeplus with matplotlib for the plan's figure (``make setup``, or
``pip install -e '.[plots]'``) and Debian's ``dataset-fashion-mnist``.

Run:  python examples/quantmcu_patch_plan.py --out out/quantmcu [--quick] [--sram 16384]
      [--model float.h5]
      (--model: your trained float Keras 2 model of 28x28x1 images whose first layers are
      convolutions, else mbv2_micro is trained first; --quick: 2,000 images, 2 epochs)

Prints the plan (memory, bits and BitOPs per layer), then for layer-by-layer TFLM, the
8-bit patches and VDPC + VDQS: peak SRAM, accuracy and agreement with the int8 model (the
8-bit patches give its outputs bit for bit). Writes ``<out>/fashion_int8.tflite``,
``<out>/<plan>_plan.json`` / ``.png``, ``<out>/fashion_<plan>.tflite`` (deployed) and
``results.json``. Measured (full run with the TFLM glue, 2,000 test images, about a minute):
6x6 patches up to ``quant_b2_add``; TFLM's activations and scratch 9,408 B layer by layer,
6,992 B patched (the planner's peak: 5,424 B), but the whole arena grows from 16,032 B to
19,312 B (8-bit) / 19,888 B (mixed): on a model this small the op's own data outweighs the
saving (``python -m benchmarks.patching``: MobileNetV2 at 96x96, where it pays 3.6x).
Accuracy 0.8285 layer by layer and with 8-bit patches (bit for bit), 0.8215 with VDPC + VDQS
(21 of 36 patches outliers, the first map at 2 bits, stage BitOPs 1.18x fewer; the int8
model's class on 96.8 % of the images).
"""

import argparse  # noqa: I001  (tfmot_edgeplus before tf_keras: it selects Keras 2)
import json
import os

import numpy as np

import tfmot_edgeplus as ep
import tf_keras as keras
from tfmot_edgeplus import patching
from tfmot_edgeplus.models import compile_classifier, mbv2_micro
from tfmot_edgeplus.patching.deploy import deploy_model
from tfmot_edgeplus.patching.lower import lower
from tfmot_edgeplus.patching.patch_runner import PatchStageRunner
from tfmot_edgeplus.recipes.cora import ptq_model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="out/quantmcu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, same code path")
    parser.add_argument("--model", help="a trained float Keras model (.h5); default: train one")
    parser.add_argument("--sram", type=int, default=256 * 1024, help="activation budget (bytes)")
    parser.add_argument("--phi", type=float, default=0.9999,
                        help="VDPC: quantile of |v| above which a value is an outlier")
    parser.add_argument("--outlier-sample-fraction", type=float, default=0.1,
                        help="VDPC: share of calibration images in which a patch must exceed phi")
    args = parser.parse_args(argv)
    n_train, n_test, epochs = (2000, 300, 2) if args.quick else (10000, 2000, 5)
    os.makedirs(args.out, exist_ok=True)
    keras.utils.set_random_seed(0)
    data = ep.datasets.fashion_mnist(limit_train=n_train, limit_test=n_test, seed=0)
    x, y, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    x_calib = x[-128:]

    if args.model:
        fp = keras.models.load_model(args.model, compile=False)
    else:
        fp = compile_classifier(mbv2_micro((28, 28, 1), 10, width=2), learning_rate=3e-3)
        fp.fit(x, y, epochs=epochs, batch_size=8 if args.quick else 32, verbose=0)
    int8 = ep.convert(ptq_model(fp, 8, 8, x_calib), x_calib)
    layer = ep.runtime.TFLMRunner(int8)
    reference = layer.predict(x_test, dequantize=False)
    with open(os.path.join(args.out, "fashion_int8.tflite"), "wb") as f:
        f.write(int8)

    plan8 = patching.plan(int8, None, sram_budget=args.sram)
    mixed = patching.plan(int8, x_calib, sram_budget=args.sram, phi=args.phi,
                          outlier_sample_fraction=args.outlier_sample_fraction,
                          split=plan8.split, grid=plan8.grid)
    print(mixed.summary())
    results = {"layer_int8": {"peak_sram_bytes": layer.arena_bytes,
                              "activation_bytes": layer.arena_head_bytes,
                              "acc": float(np.mean(reference.argmax(1) == y_test))}}
    for name, plan in (("patch_int8", plan8), ("patch_vdpc_vdqs", mixed)):
        lowered = lower(int8, plan)
        runner = PatchStageRunner(int8, lowered)  # TFLM + our op when the glue builds
        out = runner.predict(x_test, dequantize_output=False)
        results[name] = {
            "backend": runner.backend, "grid": plan.grid, "split": plan.split,
            "peak_sram_bytes": runner.peak_sram_bytes,
            "activation_bytes": runner.activation_bytes,
            "planned_peak_bytes": plan.peak_planned, "stage_bitops_ratio": plan.bitops_ratio,
            "outlier_share": plan.outlier_share, "bits": {k: int(v) for k, v in plan.bits.items()},
            "acc": float(np.mean(out.argmax(1) == y_test)),
            "same_class_as_int8": float(np.mean(out.argmax(1) == reference.argmax(1))),
            "bit_exact_with_int8": bool(np.array_equal(out, reference)),
        }
        with open(os.path.join(args.out, f"{name}_plan.json"), "w") as f:
            f.write(plan.to_json())
        plan.plot(os.path.join(args.out, f"{name}_plan.png"))
        with open(os.path.join(args.out, f"fashion_{name}.tflite"), "wb") as f:
            f.write(deploy_model(int8, lowered))

    print(f"{'':16s} {'peak SRAM':>10s} {'activations':>12s} {'accuracy':>9s} {'= int8':>7s}")
    for name, r in results.items():
        print(f"{name:16s} {r['peak_sram_bytes']:>10,} {r['activation_bytes']:>12,} "
              f"{r['acc']:>9.4f} {r.get('same_class_as_int8', 1.0):>7.1%}"
              + (f"  ({r['backend']} runner, {r['grid']}x{r['grid']} patches up to "
                 f"{r['split']!r}, stage BitOPs {r['stage_bitops_ratio']:.2f}x fewer)"
                 if "backend" in r else "  (TFLM, layer by layer)"))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {', '.join(sorted(os.listdir(args.out)))} in {args.out}")
    return results


if __name__ == "__main__":
    main()
