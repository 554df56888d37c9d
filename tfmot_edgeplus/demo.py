"""The end-to-end pipeline on bundled real data: `edgeplus demo`, `make demo`, `edgeplus qat`,
`edgeplus cora`.

Fashion-MNIST by default: train a small float CNN (or load yours), quantize it, convert it
with real low-bit weights, run it in the TFLM interpreter, and report. The quantization
stage is one of

* ``method="quarc"`` (default): little-data QAT with QuaRC (a RES coreset of 10 % of the
  data, KD + cascaded layer correction, :func:`tfmot_edgeplus.recipes.quarc.quarc_qat`);
* ``method="cora"``: PTQ + CoRa residual adapters calibrated for a few hundred steps on
  1,600 samples (:func:`tfmot_edgeplus.recipes.cora.cora_ptq`); the adapters deploy as builtin
  int8 ops beside the low-bit layers.

Then (``calibration=True``, the default of ``edgeplus demo``) the on-device calibration
part on the IMU watch data: a model trained on four subjects meets new ones, loses
accuracy (the shift), and its deployed integer head recalibrates on each chunk of labeled
windows with QCore bit flips, next to no calibration and back-propagation fine-tuning
(:func:`tfmot_edgeplus.recipes.qcore.qcore_continual`, as ``edgeplus qcore``). Its files go to
``<out>/qcore``, and a sketch that goes on calibrating on an Arduino Nano 33 BLE to
``<out>/arduino/ImuQCoreSketch`` (``edgeplus export arduino``).

Then (``patching=True``, the default of ``edgeplus demo``) patch-based inference
(QuantMCU): a MobileNetV2-style model on Fashion-MNIST upsampled to 96x96 is trained,
QAT-converted to int8 and planned within the Nano's 256 KB (the lowest-peak 8-bit patch
plan, then VDPC + VDQS mixed precision on calibration images); the deployed model, its
patch stage one ``EDGEPLUS_PATCH_STAGE`` operator, runs on the host
(:class:`~tfmot_edgeplus.patching.patch_runner.PatchStageRunner`) and its peak SRAM and
accuracy are compared with layer-by-layer TFLM (:mod:`tfmot_edgeplus.recipes.quantmcu`, as
``edgeplus plan``). Its files go to ``<out>/patching``, its sketch to
``<out>/arduino/FashionPatchSketch``.

``edgeplus qat`` and ``edgeplus cora`` run the quantization pipeline alone, with the
settings given on their command line.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from tfmot_edgeplus import datasets
from tfmot_edgeplus._compat import agg_pyplot, keras, tf
from tfmot_edgeplus.conversion import conversion_report, convert
from tfmot_edgeplus.export.arduino import ExportError, export_sketch
from tfmot_edgeplus.models import compile_classifier, reference_model
from tfmot_edgeplus.patching import lower
from tfmot_edgeplus.patching.deploy import deploy_model
from tfmot_edgeplus.patching.patch_runner import PatchStageRunner
from tfmot_edgeplus.quantization.best_weights import describe_best
from tfmot_edgeplus.recipes.cora import CoRaConfig, cora_ptq
from tfmot_edgeplus.recipes.qcore import QCoreConfig, qcore_continual, write_run
from tfmot_edgeplus.recipes.qcore import summary_table as qcore_summary_table
from tfmot_edgeplus.recipes.quantmcu import QuantMCUConfig, accuracy, quantmcu_pipeline
from tfmot_edgeplus.recipes.quarc import QuaRCConfig, quarc_qat
from tfmot_edgeplus.runtime import TFLMRunner


@dataclass
class DemoConfig:
    """Settings of :func:`run_demo`. ``model_path`` loads a trained float model instead of
    training the reference one. ``method`` picks the quantization stage: ``"quarc"``
    (``coreset``/``fraction``/``beta``/``qat_epochs``, see
    :class:`tfmot_edgeplus.recipes.quarc.QuaRCConfig`) or ``"cora"`` (``budget``/``rank_search``/
    ``cora_steps``/``calib_samples``, see :class:`tfmot_edgeplus.recipes.cora.CoRaConfig`)."""

    task: str = "fashion_mnist"
    method: str = "quarc"
    train_samples: int | None = 20000  # None: every training sample
    test_samples: int | None = None  # None: the whole test set
    model_path: str | None = None
    fp_epochs: int = 4
    qat_epochs: int = 10
    batch_size: int = 64
    weight_bits: int = 4
    activation_bits: int = 8
    coreset: str = "res"
    fraction: float = 0.1
    beta: float = 1.0
    reselect_every: int | None = None
    budget: float = 0.05
    rank_search: str = "greedy"
    cora_steps: int = 250
    calib_samples: int = 1600
    calibration: bool = False
    qcore_fp_epochs: int = 30
    patching: bool = False
    patching_train_samples: int = 6000
    patching_epochs: int = 3
    patching_input_size: int = 96
    seed: int = 0

    @classmethod
    def quick(cls) -> DemoConfig:
        return cls(train_samples=4000, test_samples=1000, fp_epochs=3, qat_epochs=6,
                   qcore_fp_epochs=10, patching_train_samples=2000, patching_epochs=2)

    def quantmcu(self):
        """The patch-based inference part's settings (MobileNetV2-style, Fashion-MNIST)."""

        return QuantMCUConfig(
            input_size=self.patching_input_size, train_samples=self.patching_train_samples,
            test_samples=min(self.test_samples or 1000, 1000), calib_samples=128,
            epochs=self.patching_epochs, phi=0.9999, outlier_sample_fraction=0.1, seed=self.seed)

    def qcore(self):
        """The on-device calibration part's settings (IMU watch, W4 head)."""

        return QCoreConfig(weight_bits=4, fp_epochs=self.qcore_fp_epochs, seed=self.seed,
                           methods=("none", "qcore_bitflip", "bp_finetune"))

    def stage(self) -> QuaRCConfig | CoRaConfig:
        """The quantization stage's validated settings."""
        if self.method == "quarc":
            return self.quarc()
        if self.method == "cora":
            return self.cora()
        raise ValueError(f"method must be 'quarc' or 'cora', got {self.method!r}.")

    def cora(self) -> CoRaConfig:
        return CoRaConfig(
            weight_bits=self.weight_bits, activation_bits=self.activation_bits,
            budget=self.budget, rank_search=self.rank_search, steps=self.cora_steps,
            calib_samples=self.calib_samples, batch_size=self.batch_size, seed=self.seed)

    def quarc(self) -> QuaRCConfig:
        return QuaRCConfig(
            weight_bits=self.weight_bits, activation_bits=self.activation_bits,
            coreset=self.coreset, fraction=self.fraction, beta=self.beta,
            epochs=self.qat_epochs, batch_size=self.batch_size,
            reselect_every=self.reselect_every, seed=self.seed)


@dataclass
class DemoResult:
    fp_acc: float
    qat_acc: float
    tflm_acc: float
    tflm_keras_agreement: float
    flatbuffer_bytes: int
    weight_bytes: int
    int8_weight_bytes: int
    arena_bytes: int
    seconds: dict = field(default_factory=dict)
    conversion: dict = field(default_factory=dict)
    qat: dict = field(default_factory=dict)
    cora: dict = field(default_factory=dict)
    qcore: dict = field(default_factory=dict)
    patching: dict = field(default_factory=dict)


def _say(text: str) -> None:
    print(text, flush=True)


def demo_steps(config: DemoConfig) -> tuple[str, ...]:
    """The demo's numbered steps, in order, for ``config``: the one source of "[i/n]"."""
    return (("float", "quantize", "convert", "tflm")
            + ("qcore",) * config.calibration + ("patching",) * config.patching)


def _step(config: DemoConfig, name: str) -> str:
    steps = demo_steps(config)
    return f"[{steps.index(name) + 1}/{len(steps)}]"


def run_demo(out_dir: str | None = None, config: DemoConfig | None = None, verbose: int = 2) -> DemoResult:
    """Run the demo; with ``out_dir``, write the .tflite, ``report.json`` and ``report.png``."""
    config = config or DemoConfig()
    stage = config.stage()  # validates the quantization settings before any training
    if config.calibration:
        config.qcore()
    if out_dir is not None:
        agg_pyplot()  # the report's figure needs the plots extra: say so before training
    tf.keras.utils.set_random_seed(config.seed)
    seconds = {}
    data = datasets.classification_task(
        config.task, limit_train=config.train_samples, limit_test=config.test_samples,
        seed=config.seed,
    )
    start = time.perf_counter()
    if config.model_path:
        _say(f"{_step(config, 'float')} float model: {config.model_path}")
        fp_model = compile_classifier(keras.models.load_model(config.model_path, compile=False))
    else:
        _say(f"{_step(config, 'float')} float training: reference model on {len(data.x_train)} {config.task} samples")
        fp_model = compile_classifier(reference_model(data.input_shape, data.num_classes))
        fp_model.fit(data.x_train, data.y_train, epochs=config.fp_epochs,
                     batch_size=config.batch_size, verbose=verbose)
    fp_acc = float(fp_model.evaluate(data.x_test, data.y_test, verbose=0)[1])
    seconds["fp_train"] = time.perf_counter() - start
    _say(f"      float accuracy {fp_acc:.4f}")

    if isinstance(stage, CoRaConfig):
        qat_model, stage_summary = _cora_stage(fp_model, data, stage, config, verbose)
    else:
        qat_model, stage_summary = _quarc_stage(fp_model, data, stage, config, verbose)
    qat_acc = float(qat_model.evaluate(data.x_test, data.y_test, verbose=0)[1])
    seconds[config.method] = sum(stage_summary["seconds"].values())
    _say(f"      accuracy {qat_acc:.4f}")

    _say(f"{_step(config, 'convert')} conversion to a full-integer TFLite flatbuffer")
    start = time.perf_counter()
    model_bytes = convert(qat_model, data.x_train[:300])
    report = conversion_report(model_bytes, qat_model)
    seconds["convert"] = time.perf_counter() - start
    _say(report.table())

    _say(f"{_step(config, 'tflm')} TFLM interpreter on {len(data.x_test)} test samples")
    start = time.perf_counter()
    runner = TFLMRunner(model_bytes)
    tflm_pred = runner.predict(data.x_test).argmax(axis=1)
    keras_pred = qat_model.predict(data.x_test, verbose=0).argmax(axis=1)
    seconds["tflm_eval"] = time.perf_counter() - start
    int8_bytes = sum(row["n_weights"] for row in report.weights)
    result = DemoResult(
        fp_acc=fp_acc,
        qat_acc=qat_acc,
        tflm_acc=float(np.mean(tflm_pred == data.y_test)),
        tflm_keras_agreement=float(np.mean(tflm_pred == keras_pred)),
        flatbuffer_bytes=len(model_bytes),
        weight_bytes=report.weight_bytes,
        int8_weight_bytes=int8_bytes,
        arena_bytes=runner.arena_bytes,
        seconds={k: round(v, 2) for k, v in seconds.items()},
        conversion=report.to_dict(),
        **{"cora" if config.method == "cora" else "qat": stage_summary},
    )
    _say(summary_table(result, config))
    if out_dir:
        _write(out_dir, model_bytes, result, config)
    if config.calibration:
        result.qcore = _qcore_stage(config, out_dir)
    if config.patching:
        result.patching = _patching_stage(config, out_dir)
    return result


def _qcore_stage(config: DemoConfig, out_dir: str | None) -> dict:

    qc = config.qcore()
    _say(f"{_step(config, 'qcore')} on-device calibration (QCore): the IMU watch model trained on subjects "
         f"{', '.join(map(str, qc.train_subjects))} meets subjects "
         f"{', '.join(map(str, qc.stream_subjects))}")
    run = qcore_continual(qc, verbose=0)
    new = [v for k, v in run.float_accuracy.items() if k != "old"]
    _say(f"      the shift: float accuracy {run.float_accuracy['old']:.3f} on held-out windows "
         f"of the training subjects, {min(new):.3f}-{max(new):.3f} on the new subjects")
    m = {k: r.metrics() for k, r in run.results.items()}
    _say(f"      deployed W{qc.weight_bits} head on each new subject after its chunks: "
         f"{m['none']['adapted_acc']:.3f} uncalibrated -> {m['qcore_bitflip']['adapted_acc']:.3f} "
         f"with QCore bit flips ({run.calibrator.memory(qc.chunk_size)['total_bytes']} B on "
         f"the device), {m['bp_finetune']['adapted_acc']:.3f} with back-propagation")
    _say(f"      the training subjects' held-out windows after the stream (what it knew): "
         f"{m['none']['old_acc']:.3f} uncalibrated, {m['qcore_bitflip']['old_acc']:.3f} with "
         f"QCore, {m['bp_finetune']['old_acc']:.3f} with back-propagation")
    _say(qcore_summary_table(run))
    if out_dir:
        folder = os.path.join(out_dir, "qcore")
        names = write_run(run, folder)
        _say(f"wrote {', '.join(names)} in {folder}")
        calibrated = next(n for n in names if n.endswith("_qcore.tflite"))
        _arduino_sketch(out_dir, "ImuQCoreSketch", os.path.join(folder, calibrated),
                        qcore=os.path.join(folder, "qcore.npz"))  # fmt: skip
    return run.summary()


def _arduino_sketch(out_dir: str, name: str, model, **kwargs) -> None:
    """Export a sketch folder for the Nano 33 BLE into ``<out>/arduino/<name>`` (replacing the
    one an earlier demo run wrote) and print its budget; a model too large is reported."""

    try:
        sk = export_sketch(model, os.path.join(out_dir, "arduino", name), force=True, **kwargs)
    except ExportError as err:
        _say(f"      no Arduino sketch: {err}")
        return
    _say("      Arduino " + sk.summary().replace("\n", "\n      "))


def _patching_stage(config: DemoConfig, out_dir: str | None) -> dict:

    qc = config.quantmcu()
    _say(f"{_step(config, 'patching')} patch-based inference (QuantMCU): MobileNetV2 (alpha "
         f"{qc.alpha}) on Fashion-MNIST at {qc.input_size}x{qc.input_size}, planned within "
         f"{qc.sram_budget // 1024} KB")
    run = quantmcu_pipeline(qc, verbose=0)
    layer = TFLMRunner(run.tflite)
    out = {"float_acc": run.float_acc, "qat_acc": run.qat_acc, "plans": {}}
    acc_layer = accuracy(layer.predict, run.x_test, run.y_test)
    _say(f"      layer by layer (TFLM): activations + scratch {layer.arena_head_bytes:,} B "
         f"(whole arena {layer.arena_bytes:,} B), accuracy {acc_layer:.4f}")
    out["layer_int8"] = {"activation_bytes": layer.arena_head_bytes,
                         "peak_sram_bytes": layer.arena_bytes, "acc": acc_layer}
    for name, plan in (("patch_int8", run.plan8), ("patch_vdpc_vdqs", run.plan)):
        lowered = lower.lower(run.tflite, plan)
        runner = PatchStageRunner(run.tflite, lowered)
        acc = accuracy(PatchStageRunner(run.tflite, lowered, "numpy").predict, run.x_test,
                       run.y_test)
        out["plans"][name] = {"activation_bytes": runner.activation_bytes,
                              "peak_sram_bytes": runner.peak_sram_bytes, "acc": acc,
                              "stage_bitops_ratio": plan.bitops_ratio,
                              "backend": runner.backend}
        _say(f"      {name}: {plan.grid}x{plan.grid} patches up to {plan.split!r}, activations "
             f"+ scratch {runner.activation_bytes:,} B (whole arena {runner.peak_sram_bytes:,} "
             f"B, {runner.backend} runner), stage BitOPs {plan.bitops_ratio:.2f}x fewer than "
             f"8-bit patches, accuracy {acc:.4f}")
        if out_dir:
            folder = os.path.join(out_dir, "patching")
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, f"{name}_plan.json"), "w") as f:
                f.write(plan.to_json())
            plan.plot(os.path.join(folder, f"{name}_plan.png"))
            with open(os.path.join(folder, f"fashion_mnist_mbv2_{name}.tflite"), "wb") as f:
                f.write(deploy_model(run.tflite, lowered))
    _say(run.plan.summary())
    if out_dir:
        folder = os.path.join(out_dir, "patching")
        with open(os.path.join(folder, "fashion_mnist_mbv2_int8.tflite"), "wb") as f:
            f.write(run.tflite)
        _say(f"wrote {', '.join(sorted(os.listdir(folder)))} in {folder}")
        _arduino_sketch(out_dir, "FashionPatchSketch", run.tflite, plan=run.plan,
                        test_input=run.x_test[0], test_label=int(run.y_test[0]))  # fmt: skip
    return out


def _quarc_stage(fp_model, data, stage: QuaRCConfig, config: DemoConfig, verbose: int):
    what = ("all the data" if stage.coreset == "full" else
            f"a {stage.coreset.upper()} coreset of {stage.fraction:.0%} of the data")
    clc = f" + {stage.beta:g} x CLC" if stage.beta > 0 else ""
    _say(f"{_step(config, 'quantize')} QAT W{config.weight_bits}A{config.activation_bits} on {what}, KD{clc}")
    run = quarc_qat(fp_model, data.x_train, data.y_train, stage, verbose=verbose)
    _say(f"      {run.train_samples} samples per epoch, {stage.epochs} epochs")
    if run.best:
        _say(f"      best weights kept by a held-out {stage.holdout * 100:.0f} % of the training "
             f"data (not the test set), {describe_best(run.best)}")
    return compile_classifier(run.qat_model), run.summary()


def _cora_stage(fp_model, data, stage: CoRaConfig, config: DemoConfig, verbose: int):
    _say(f"{_step(config, 'quantize')} PTQ W{config.weight_bits}A{config.activation_bits} + CoRa adapters "
         f"(budget {stage.budget:g}, {stage.rank_search} ranks), {stage.steps} KD steps on "
         f"{min(stage.calib_samples, len(data.x_train))} samples")
    run = cora_ptq(fp_model, data.x_train, data.y_train, stage, verbose=min(verbose, 1),
                   validation_data=(data.x_test, data.y_test))
    summary = run.summary()
    _say(f"      plain PTQ accuracy {run.accuracy['ptq']:.4f}; adapter ranks {summary['ranks']} "
         f"({summary['adapter_param_fraction']:.1%} of the adapted kernels' parameters)")
    if summary["best_weights"]:
        _say(f"      best weights kept by a held-out {stage.holdout * 100:.0f} % of the "
             f"calibration samples (not the test set), "
             f"{describe_best(summary['best_weights'])}")
    return compile_classifier(run.model), summary


def summary_table(result: DemoResult, config: DemoConfig) -> str:
    bits = f"W{config.weight_bits}A{config.activation_bits}"
    stage = "PTQ + CoRa" if config.method == "cora" else "QAT"
    rows = [("float accuracy (Keras)", f"{result.fp_acc:.4f}")]
    if result.cora:
        rows.append((f"{bits} plain PTQ accuracy (Keras)", f"{result.cora['accuracy']['ptq']:.4f}"))
    rows += [
        (f"{bits} {stage} accuracy (Keras)", f"{result.qat_acc:.4f}"),
        (f"{bits} accuracy (TFLM)", f"{result.tflm_acc:.4f}"),
        ("TFLM vs Keras same class", f"{result.tflm_keras_agreement:.4f}"),
        ("flatbuffer bytes", str(result.flatbuffer_bytes)),
        ("weight bytes (int8 would be)", f"{result.weight_bytes} ({result.int8_weight_bytes})"),
        ("TFLM arena bytes used", str(result.arena_bytes)),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"  {name:<{width}}  {value}" for name, value in rows)


def _write(out_dir: str, model_bytes: bytes, result: DemoResult, config: DemoConfig) -> None:
    os.makedirs(out_dir, exist_ok=True)
    method = "_cora" if config.method == "cora" else ""
    name = f"{config.task}_w{config.weight_bits}a{config.activation_bits}{method}.tflite"
    with open(os.path.join(out_dir, name), "wb") as f:
        f.write(model_bytes)
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump({"config": asdict(config), "result": asdict(result), "tflite": name}, f, indent=2)
    _plot(os.path.join(out_dir, "report.png"), result, config)
    _say(f"wrote {out_dir}/{name}, report.json, report.png")


def _plot(path: str, result: DemoResult, config: DemoConfig) -> None:
    plt = agg_pyplot()
    fig, (acc_ax, bytes_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
    stage = "CoRa" if config.method == "cora" else "QAT"
    labels = ["float", f"{stage} W{config.weight_bits}", "TFLM"]
    values = [result.fp_acc, result.qat_acc, result.tflm_acc]
    if result.cora:
        labels.insert(1, f"PTQ W{config.weight_bits}")
        values.insert(1, result.cora["accuracy"]["ptq"])
    acc_ax.bar(labels, values, color=["#888"] + ["#3a7"] * (len(values) - 2) + ["#37a"])
    acc_ax.set_ylim(0, 1)
    acc_ax.set_title(f"{config.task} test accuracy")
    for i, v in enumerate(values):
        acc_ax.text(i, v + 0.01, f"{v:.3f}", ha="center")
    rows = result.conversion["weights"]
    names = [row["tensor"].split(";")[0].split("/")[1].replace("quant_", "") for row in rows]
    x = np.arange(len(rows))
    bytes_ax.bar(x - 0.2, [row["n_weights"] for row in rows], 0.4, label="int8", color="#bbb")
    stored = [row["data_bytes"] + row["table_bytes"] for row in rows]
    bytes_ax.bar(x + 0.2, stored, 0.4, label="stored", color="#37a")
    bytes_ax.set_xticks(x, names, rotation=30)
    bytes_ax.set_title("weight bytes per layer")
    bytes_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
