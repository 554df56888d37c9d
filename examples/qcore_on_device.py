"""QCore: a deployed 4-bit IMU classifier meets new people and recalibrates its head on the
device, by bit flips, without back-propagation.

On the smartwatch exercise data (seglearn, 7 classes, 10 subjects):

1. a 1-D CNN with a two-layer Dense head trains on subjects 1-4 while a
   ``QuantMissTracker`` counts the windows its 2-8-bit copies get wrong;
2. it is quantized (W4A8 PTQ) and converted: the deployed full-integer .tflite;
3. ``BitFlipCalibrator`` splits the deployed head off (the backbone stays in TFLM, the last
   FULLY_CONNECTED runs in integers) and, on the host, trains the int8 flip network (160 B)
   on the QCore (40 windows drawn by misses) + subjects 5 and 6;
4. subjects 7-10 arrive one by one, in labeled chunks of ``--chunk`` windows: each chunk
   is one ``calibrate`` call, what ``edgeplus_qcore_step`` does on the board (weights move
   by -1/0/+1; a step is kept only if more new samples are right and the QCore, the
   training subjects' windows, stays right).

Needs: tfmot_edgeplus with its data sets (``make setup``, or
``pip install -e '.[datasets]'``: seglearn).

Run:  python examples/qcore_on_device.py --out out/qcore [--quick]
      (--quick: 3 epochs, one chunk per subject; ``edgeplus qcore`` runs the recipe with
      the baselines)

Prints the flip network's fit, each new subject's accuracy (its later windows) before and
after its chunks, the training subjects' held-out accuracy before and after the stream, and
the device memory; writes ``<out>/imu_w4a8.tflite`` (deployed), ``imu_w4a8_qcore.tflite``
(recalibrated), ``qcore.npz`` (for ``edgeplus export arduino --qcore``) and ``results.json``.
Measured (full run, 20 s): subjects 7 / 8 / 9 / 10 go from 0.715 / 0.683 / 0.761 / 0.715 to
0.795 / 0.683 / 0.810 / 0.715 after their two chunks (subjects 8 and 10: no step kept, the
QCore's guard or the new samples refused them), subjects 1-4 from 0.888 to 0.891; 11,648 B
on the device; the recalibrated .tflite in TFLM gives the calibrator's class on 100 % of the
windows. One seed: ``edgeplus qcore`` and
``python -m benchmarks.continual`` compare it with back-propagation over 5 seeds.
"""

import argparse  # noqa: I001  (tfmot_edgeplus before tf_keras: it selects Keras 2)
import json
import os

import numpy as np

import tfmot_edgeplus as ep
import tf_keras as keras
from tfmot_edgeplus.models import compile_classifier, imu_cnn
from tfmot_edgeplus.recipes.cora import ptq_model
from tfmot_edgeplus.recipes.qcore_streams import split_recordings


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="out/qcore")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, same code path")
    parser.add_argument("--chunk", type=int, default=40, help="labeled windows per chunk")
    args = parser.parse_args(argv)
    epochs, chunks_per_subject, episodes = (3, 1, 4) if args.quick else (30, 2, 24)
    os.makedirs(args.out, exist_ok=True)
    keras.utils.set_random_seed(0)
    ds = ep.datasets.imu_watch(overlap=0.5)
    train, old = split_recordings(ds.select(np.isin(ds.subject, (1, 2, 3, 4))), 0.25)
    stats = ep.datasets.channel_stats(train)  # normalisation from the training windows only
    train, old = stats.apply(train), stats.apply(old)
    subject = {s: stats.apply(ds.select(ds.subject == s)) for s in range(5, 11)}

    print(f"float training on {len(train)} windows of subjects 1-4, quantization misses tracked")
    fp = compile_classifier(imu_cnn(hidden=32))
    tracker = ep.coreset.QuantMissTracker(train.x, train.y, every=5)
    fp.fit(train.x, train.y, epochs=epochs, batch_size=32, callbacks=[tracker], verbose=0)
    tflite = ep.convert(ptq_model(fp, 4, 8, train.x[:800]), train.x[:200])

    cal = ep.calibration.BitFlipCalibrator(tflite, head_layers=1, core_size=40)
    core = tracker.sample(40)
    fit = cal.fit((train.x[core], train.y[core]), [(subject[s].x, subject[s].y) for s in (5, 6)],
                  chunk_size=args.chunk, episodes=episodes)
    print(f"deployed W4A8 model {len(tflite):,} B; head {cal.head.names} split off; flip "
          f"network {fit}")

    results = {"old_before": cal.evaluate(old.x, old.y), "subjects": {}}
    for s in (7, 8, 9, 10):
        seen, later = split_recordings(subject[s], 0.5)  # calibrate on the first half
        before = cal.evaluate(later.x, later.y)
        reports = [cal.calibrate(seen.x[i * args.chunk:(i + 1) * args.chunk],
                                 seen.y[i * args.chunk:(i + 1) * args.chunk]).summary()
                   for i in range(chunks_per_subject)]
        after = cal.evaluate(later.x, later.y)
        results["subjects"][s] = {"before": before, "after": after, "chunks": reports}
        print(f"subject {s}: accuracy {before:.3f} -> {after:.3f} after {len(reports)} chunk(s) "
              f"({', '.join(str(r['changed']) for r in reports)} weights changed)")
    results["old_after"] = cal.evaluate(old.x, old.y)
    results["memory"] = cal.memory(args.chunk)
    print(f"subjects 1-4 (held-out windows): {results['old_before']:.3f} -> "
          f"{results['old_after']:.3f}; device memory {results['memory']['total_bytes']:,} B "
          f"(QCore, new-data memory, chunk, step scratch)")

    calibrated = cal.model_bytes()  # the deployed model with the recalibrated INT4 head
    tflm = ep.runtime.TFLMRunner(calibrated).predict(old.x).argmax(1)
    results["tflm_agreement"] = float(np.mean(tflm == cal.predict(old.x).argmax(1)))
    print(f"the recalibrated .tflite in TFLM gives the calibrator's class on "
          f"{results['tflm_agreement']:.1%} of the windows")
    for name, data in (("imu_w4a8.tflite", tflite), ("imu_w4a8_qcore.tflite", calibrated)):
        with open(os.path.join(args.out, name), "wb") as f:
            f.write(data)
    ep.calibration.save_qcore(cal, os.path.join(args.out, "qcore.npz"), stats)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2, default=str)
    print(f"wrote {args.out}/imu_w4a8.tflite, imu_w4a8_qcore.tflite, qcore.npz, results.json")
    return results


if __name__ == "__main__":
    main()
