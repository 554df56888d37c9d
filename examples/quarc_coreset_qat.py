"""QuaRC: quantization-aware training of a small CNN at W4A8 on a few percent of
Fashion-MNIST, on a RES coreset versus a random coreset of the same size.

Both coresets get the same recipe (``tfmot_edgeplus.quarc_qat``): the edgeplus TF-MOT scheme
with learned weight steps, activation ranges calibrated on training images, then knowledge
distillation + cascaded layer correction from the float model, on the coreset only. The RES
model is converted to a .tflite whose weights really are 4-bit (TFLite INT4) and run in the
TFLite Micro interpreter.

Needs: tfmot_edgeplus (``make setup``, or ``pip install -e .``) and Debian's
``dataset-fashion-mnist``.

Run:  python examples/quarc_coreset_qat.py --out out/quarc [--quick] [--bits 2]
      [--fraction 0.05] [--model float.h5]
      (--model: your trained float Keras 2 classifier of 28x28x1 images, else the package's
      small_cnn is trained first; --quick: 2,000 images and 1 epoch each)

Prints the float accuracy, the QAT accuracy on each coreset, the weight bytes per layer and
the TFLM accuracy and agreement with Keras; writes ``<out>/fashion_w4a8_res.tflite`` and
``<out>/results.json``. Measured (full run, W4A8, 5 %, 10,000 test images, about two minutes
on 2 busy cores): float 0.866, RES 0.863, random 0.858; TFLM 0.863, the same class as Keras on
99.6 % of the images; 14,288 B flatbuffer (6,448 B of INT4 weights), 19,056 B arena. With
``--bits 2``: RES 0.815, random 0.816 (a tie), TFLM 0.815, 3,595 B of 2-bit weights. One
seed: ``python -m benchmarks.coreset_qat`` compares the coresets over 3 seeds and at 1 %.
"""

import argparse  # noqa: I001  (tfmot_edgeplus before tf_keras: it selects Keras 2)
import json
import os

import numpy as np

import tfmot_edgeplus as ep
import tf_keras as keras
from tfmot_edgeplus.models import compile_classifier, small_cnn


def accuracy(predictions, y):
    return float(np.mean(np.argmax(predictions, axis=-1) == y))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="out/quarc")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, same code path")
    parser.add_argument("--model", help="a trained float Keras model (.h5); default: train one")
    parser.add_argument("--bits", type=int, default=4, choices=(2, 3, 4, 8), help="weight bits")
    parser.add_argument("--fraction", type=float, default=0.05, help="coreset share of the data")
    args = parser.parse_args(argv)
    n_train, n_test, fp_epochs, qat_epochs = (2000, 300, 1, 1) if args.quick else (
        20000, None, 5, 10)
    os.makedirs(args.out, exist_ok=True)
    keras.utils.set_random_seed(0)
    data = ep.datasets.fashion_mnist(limit_train=n_train, limit_test=n_test, seed=0)
    x, y, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test

    if args.model:
        fp = compile_classifier(keras.models.load_model(args.model, compile=False))
    else:
        fp = compile_classifier(small_cnn())
        fp.fit(x, y, epochs=fp_epochs, batch_size=64, verbose=0)
    results = {"float_acc": accuracy(fp.predict(x_test, verbose=0), y_test)}
    print(f"float model: accuracy {results['float_acc']:.4f} on {len(x_test)} test images")

    models = {}
    for coreset in ("res", "random"):
        config = ep.QuaRCConfig(weight_bits=args.bits, activation_bits=8, coreset=coreset,
                                fraction=args.fraction, epochs=qat_epochs, seed=0)
        run = ep.quarc_qat(fp, x, y, config)
        models[coreset] = run.qat_model
        results[f"{coreset}_acc"] = accuracy(run.qat_model.predict(x_test, verbose=0), y_test)
        results[f"{coreset}_samples"] = run.train_samples
        print(f"W{args.bits}A8 QAT on a {coreset.upper()} coreset of {run.train_samples} images "
              f"({args.fraction:.0%}): accuracy {results[f'{coreset}_acc']:.4f} "
              f"({run.seconds['train']:.1f} s)")

    tflite = ep.convert(models["res"], x[:300])
    print(ep.conversion_report(tflite, models["res"]).table())
    runner = ep.runtime.TFLMRunner(tflite)
    tflm = runner.predict(x_test)
    keras_pred = models["res"].predict(x_test, verbose=0)
    results.update(tflm_acc=accuracy(tflm, y_test), flatbuffer_bytes=len(tflite),
                   arena_bytes=runner.arena_bytes,
                   tflm_keras_agreement=float(np.mean(tflm.argmax(1) == keras_pred.argmax(1))))
    print(f"TFLM: accuracy {results['tflm_acc']:.4f}, same class as Keras on "
          f"{results['tflm_keras_agreement']:.1%} of the images, {len(tflite):,} B flatbuffer, "
          f"{runner.arena_bytes:,} B arena")

    name = f"fashion_w{args.bits}a8_res.tflite"
    with open(os.path.join(args.out, name), "wb") as f:
        f.write(tflite)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(f"wrote {args.out}/{name}, results.json")
    return results


if __name__ == "__main__":
    main()
