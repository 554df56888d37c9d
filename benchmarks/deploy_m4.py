"""Whole converted models in TFLM on the emulated Cortex-M4F: accuracy, flash, arena, instructions.

    python -m benchmarks.deploy_m4 [--quick] [--out FILE.json] [--models reference_cnn,...]

Models (``MODELS``): the reference CNN (``models.reference_model``: ``small_cnn``) and
MobileNetV2 alpha 0.35 (``models.mobilenet_v2``, input 32x32x1: Fashion-MNIST upsampled by
``recipes.quantmcu.upsample``) on Fashion-MNIST, the IMU net (``models.imu_cnn``) on
``imu_watch``. Each is trained in float once, then QAT-fine-tuned per bit pair with
``quantize_model(fp, EdgePlusQuantizeScheme(w, a, learnable_scales=True))``
(``benchmarks.qat_bits.build_qat``) and converted with ``tfmot_edgeplus.convert``. Full run:
5000 train / 1000 test Fashion-MNIST images (class-stratified, seed 0), every imu_watch window,
float 5 epochs (MobileNetV2 3, IMU 30), QAT 2 epochs (MobileNetV2 1), 3 M4 samples per model;
``--quick``: 2000 / 300 images, 1500 / 300 windows, float 1 epoch (IMU 3), QAT 1, 2 samples.
Conversions:

- backend ``builtin_cmsis_nn``: the plain converter, every layer a TFLM builtin, on the board
  Chirale_TensorFLowLite's CMSIS-NN kernels. Configs ``int8`` (W8A8), ``w4a8`` (INT4 filters:
  CMSIS-NN's s4 kernels) and ``w2a2`` (converted with ``lowbit_storage=False``: 2-bit levels in
  the INT4 container, because the board's TFLM, Chirale 2.0.0, has no DECODE op for the LUT form;
  its activations run at 8 bits over their trained 2-bit ranges, as the plain converter does);
- backend ``edgeplus``: ``convert(..., kernels="edgeplus")``: the conv,
  depthwise and fully connected layers below 8 bits as ``EDGEPLUS_CONV_MP`` ops on our kernels,
  activations packed at their trained bits between two of them; ``int8_edgeplus`` is the W8A8
  model with ``kernels="edgeplus_all"`` (its int8 layers on our kernels too). A layer our
  kernels cannot run stays builtin: ``layers_on_ours`` counts them, ``env["builtin_layers"]``
  names each with why (``conversion.edgeplus_kernels.describe_placement``).
- config ``mixed`` (backend ``edgeplus``): the QuantMCU recipe's plan
  (``recipes.quantmcu``) on the W8A8 model converted by the plain converter: the 8-bit patch
  plan within 256 KB whose patch stage costs at most ``Config.max_halo`` times its modeled
  layer-by-layer M4 instructions (``patching.plan``), then VDPC/VDQS tuned by
  ``recipes.quantmcu.tune_plan`` over ``Config.mixed_search`` on ``calib_samples`` training
  images (top-1 agreement with the int8 model at least ``min_agreement``; VDQS's Phi in
  modeled instructions), lowered and deployed with the stage as one ``EDGEPLUS_PATCH_STAGE``
  op on our kernels and the rest as TFLM builtins. Its ``activation_bits`` is the lowest
  bit-width of the stage maps' normal patches; ``env["mixed_plans"]`` has the split, grid and
  bits, ``env["mixed_skipped"]`` names a model the patch stage cannot run and why (the IMU
  net's Conv1D has no image stage).

Per row, on the model the device runs (``export.arduino.write_sketch_data``: MEANs rewritten as
the Arduino export does):

  acc              top-1 on the test slice in the host TFLM (pip ``tflite-micro`` + our glue,
                   ``patching.patch_runner.glue_registerer``, when the model has our ops)
  keras_acc        the QAT Keras model's top-1 on the same slice
  agreement        the host TFLM's top-1 agreement with the QAT Keras model
  flash_bytes      the M4 program's flash (text + data of the linked ELF: TFLM, our library, the
                   model and one test input as in an exported sketch, startup code; the
                   benchmark's input samples subtracted)
  model_bytes      the flatbuffer's size
  arena_bytes      ``MicroInterpreter::arena_used_bytes()`` on the M4 after AllocateTensors
  m4_instructions  one Invoke, mean over ``m4_samples`` test inputs (SysTick around Invoke in
                   ``qemu-system-arm -M mps2-an386 -icount shift=0``: instructions, not cycles)
  operators        the model's builtin and custom ops
  layers_on_ours   conv / depthwise / fully connected layers on EDGEPLUS_CONV_MP, of all

The M4 program is ``tflm_ops/m4/model_bench_main.cc`` with the model's ``edgeplus_model.h/.cpp``
and the samples, compiled with the Nano 33 BLE core's recipes (ArduinoCore-mbed: -Os,
softfp), linked with Chirale_TensorFLowLite (its TFLM and CMSIS-NN, built once under
``build/arduino`` by ``benchmarks._tflm_m4.arduino_tflm_library``) and the EdgePlus library as
``export_library`` writes it, for the Nano's memory map (``nano33ble.ld``). Nothing is reported
unless it is right: every M4 output must equal the host TFLM's for the same input, else
:class:`DeployError`. Needs EDGEPLUS_ARDUINO_CORE, EDGEPLUS_ARDUINO_API, EDGEPLUS_ARDUINO_TFLM
(README) and arm-none-eabi-gcc / qemu-system-arm; a model with our ops also EDGEPLUS_TFLM_ROOT
and its siblings for the host glue.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from benchmarks import _tflm_m4 as bed
from benchmarks._report import write_report
from benchmarks.kernels_m4 import INSTR_PER_TICK

NAME = "deploy_m4"
MODELS = ("reference_cnn", "mobilenet_v2_035", "imu_cnn")
# (weight bits, activation bits) of each QAT model
BITS = {"int8": (8, 8), "w4a8": (4, 8), "w4a4": (4, 4), "w2a2": (2, 2)}
MIXED = "mixed"
# QAT model -> [(config, backend, convert() keyword arguments)] (module doc)
CONVERSIONS = {
    "int8": [("int8", "builtin_cmsis_nn", {}),
             ("int8_edgeplus", "edgeplus", {"kernels": "edgeplus_all"})],
    "w4a8": [("w4a8", "builtin_cmsis_nn", {}), ("w4a8", "edgeplus", {"kernels": "edgeplus"})],
    "w4a4": [("w4a4", "edgeplus", {"kernels": "edgeplus"})],
    "w2a2": [("w2a2", "builtin_cmsis_nn", {"lowbit_storage": False}),
             ("w2a2", "edgeplus", {"kernels": "edgeplus"})],
}  # fmt: skip
ROW_KEYS = (
    "model",
    "config",
    "backend",
    "weight_bits",
    "activation_bits",
    "keras_acc",
    "agreement",
    "acc",
    "flash_bytes",
    "model_bytes",
    "arena_bytes",
    "m4_instructions",
    "m4_samples",
    "operators",
    "layers_on_ours",
)


class DeployError(RuntimeError):
    """A build, a run or an M4-vs-host check failed; the message says which and why."""


def say(text: str) -> None:
    print(text, flush=True)


@dataclass(frozen=True)
class Config:
    """Budget of one run; :meth:`full` and :meth:`quick` are the two presets."""

    models: tuple[str, ...] = MODELS
    fashion_train: int | None = 5000
    fashion_test: int | None = 1000
    imu_train: int | None = None  # None: every window of the training subjects
    imu_test: int | None = None
    fp_epochs: tuple[tuple[str, int], ...] = (
        ("reference_cnn", 5), ("mobilenet_v2_035", 3), ("imu_cnn", 30))  # fmt: skip
    qat_epochs: tuple[tuple[str, int], ...] = (
        ("reference_cnn", 2), ("mobilenet_v2_035", 1), ("imu_cnn", 2))  # fmt: skip
    batch_size: int = 64
    qat_learning_rate: float = 5e-4
    m4_samples: int = 3
    representative_samples: int = 200
    calib_samples: int = 128
    # (phi, outlier_sample_fraction, lam, low_bits): one candidate, since on 8-bit weights
    # no lower activation bit-width is measured faster (VDQS then keeps every map at 8 bits)
    mixed_search: tuple = ((0.999, 1.0, 0.5, (4, 2)),)
    min_agreement: float = 0.95
    max_halo: float = 1.5
    seed: int = 0

    @classmethod
    def full(cls, **overrides) -> Config:
        return replace(cls(), **overrides)

    @classmethod
    def quick(cls, **overrides) -> Config:
        return replace(
            cls(fashion_train=2000, fashion_test=300, imu_train=1500, imu_test=300,
                fp_epochs=(("reference_cnn", 1), ("mobilenet_v2_035", 1), ("imu_cnn", 3)),
                qat_epochs=(("reference_cnn", 1), ("mobilenet_v2_035", 1), ("imu_cnn", 1)),
                m4_samples=2, representative_samples=100, calib_samples=64),
            **overrides,
        )  # fmt: skip


# ----------------------------------------------------------------------------- the M4 bed


def _check_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise ValueError(f"run name {name!r} must be letters, digits and underscores")
    return name


@dataclass
class M4Bed:
    """Chirale_TensorFLowLite and the EdgePlus library compiled once with the Nano 33 BLE
    core's recipes; :meth:`run` links one model into ``model_bench_main.cc`` and runs it."""

    core: bed.ArduinoCore
    tflm: Path
    work: Path
    library: Path
    objs: list[Path]

    @classmethod
    def build(cls, work: Path, cache: Path | None = None) -> M4Bed:
        """Runs in ``work``; Chirale's library and ours are compiled once into ``cache``
        (default ``build/arduino``, shared with the tests), ours keyed by its files' bytes and
        the recipe."""
        import hashlib

        from tfmot_edgeplus.export.arduino import (
            export_library,
            library_file_bytes,
            library_files,
        )

        missing = [t for t in ("arm-none-eabi-g++", "arm-none-eabi-size", "arm-none-eabi-ar",
                               "qemu-system-arm") if shutil.which(t) is None]  # fmt: skip
        if missing:
            raise DeployError(
                f"{', '.join(missing)} not found: apt-get install gcc-arm-none-eabi "
                "libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm"
            )
        try:
            core, tflm = bed.arduino_core(), bed.arduino_tflm()
        except bed.BuildError as e:
            raise DeployError(str(e)) from None
        if core is None or tflm is None:
            raise DeployError(
                "EDGEPLUS_ARDUINO_CORE (an ArduinoCore-mbed checkout, with EDGEPLUS_ARDUINO_API "
                "an ArduinoCore-API one) and EDGEPLUS_ARDUINO_TFLM (the Chirale_TensorFLowLite "
                "library 2.0.0) must be set: the M4 program is built with the board's core "
                "recipes and TFLM (README)"
            )
        cache = Path(cache or bed.ROOT / "build" / "arduino")
        lib_a = bed.arduino_tflm_library(core, tflm, cache)
        h = hashlib.sha256(str(lib_a).encode())
        for rel, src in sorted(library_files().items()):
            h.update(rel.encode() + b"\0" + library_file_bytes(rel, src))
        harness = [bed.M4 / "startup.c", bed.M4 / "m4_timer.c", bed.M4 / "m4_harness.h"]
        for path in harness:
            h.update(path.read_bytes())
        h.update(" ".join(core.command(Path("x.cpp"), Path("x.o"), [])).encode())
        ours = cache / f"edgeplus_{h.hexdigest()[:16]}"
        library = ours / "EdgePlus"
        done = ours / "done"
        if not done.is_file():
            export_library(library, force=True)
        includes = [library / "src", tflm / "src", core.bundled_library("Wire")]
        jobs = [(src, ours / "obj" / f"{i}_{src.stem}.o", includes)
                for i, src in enumerate(bed.library_sources(library, tflm=True))]  # fmt: skip
        jobs += [(p, ours / "harness" / f"{p.stem}.o", [bed.M4]) for p in harness[:2]]
        if not done.is_file():
            _compile(core, jobs)
            done.write_text("compiled\n")
        return cls(core, tflm, Path(work), library, [o for _, o, _ in jobs] + [lib_a])

    def run(self, name: str, model_bytes: bytes, samples: np.ndarray) -> dict:
        """Run ``model_bytes`` on each int8 sample of ``samples`` (N, *input shape) on the M4:
        {"arena_used", "arena_size", "instructions": [N], "outputs": int8 (N, outputs),
        "flash_bytes", "device_model": the flatbuffer run (MEANs rewritten)}."""
        from tfmot_edgeplus.export import c_arrays as C
        from tfmot_edgeplus.export.arduino import rewrite_means, write_sketch_data

        samples = np.asarray(samples)
        if samples.dtype != np.int8 or samples.ndim < 2 or len(samples) == 0:
            raise ValueError(f"samples must be int8 (N>=1, ...), got {samples.dtype} "
                             f"{samples.shape}")  # fmt: skip
        case = self.work / "cases" / _check_name(name)
        if case.exists():
            shutil.rmtree(case)
        case.mkdir(parents=True)
        try:
            write_sketch_data(case, model_bytes, test_input=samples[0])
        except ValueError as e:  # ExportError: too large for the Nano, unknown ops, ...
            raise DeployError(f"{name}: {e}") from None
        n, per = len(samples), int(samples[0].size)
        (case / "bench_samples.h").write_text(
            "#ifndef BENCH_SAMPLES_H_\n#define BENCH_SAMPLES_H_\n#include <stdint.h>\n"
            f"#define BENCH_SAMPLES {n}u\n#define BENCH_SAMPLE_ELEMENTS {per}u\n"
            + C.declaration("int8_t", "bench_samples", n * per) + "#endif\n"
        )
        # the model's arrays and the samples in one unit, without the TFLM headers (the
        # header's EdgePlusAddModelOps is for model_bench_main.cc): seconds less per model
        (case / "bench_data.cpp").write_text(
            '#define EDGEPLUS_NO_TFLM\n#include "edgeplus_model.cpp"\n#include "bench_samples.h"\n'
            + C.definition("int8_t", "bench_samples", samples)
        )
        includes = [case, bed.M4, self.tflm / "src", self.library / "src"]
        objs = _compile(self.core, [
            (bed.M4 / "model_bench_main.cc", case / "model_bench_main.o", includes),
            (case / "bench_data.cpp", case / "bench_data.o", includes),
        ])  # fmt: skip
        elf = case / f"{name}.elf"
        try:
            sizes = bed.link([*objs, *self.objs], elf, float_abi="softfp")
            text = bed.run_qemu(elf, timeout=600)
        except bed.BuildError as e:
            raise DeployError(f"{name}: {e}") from None
        got = parse_output(text, n)
        got["flash_bytes"] = sizes["flash"] - n * per
        got["device_model"] = rewrite_means(bytes(model_bytes))[0]
        return got


def _compile(core, jobs: list[tuple[Path, Path, list[Path]]]) -> list[Path]:
    from concurrent.futures import ThreadPoolExecutor

    def one(job):
        src, obj, includes = job
        try:
            bed.compile_with_core(core, src, obj, includes)
        except bed.BuildError as e:
            raise DeployError(f"compiling {src.name} with the core's recipe failed:\n{e}") from None
        return obj

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(one, jobs))


_LINE = re.compile(r"^(CALIB|MODEL_ARENA|MODEL_RUN|MODEL_DONE|MODEL_ERROR)\b(.*)$")


def parse_output(text: str, samples: int) -> dict:
    """``model_bench_main.cc``'s lines -> {"arena_used", "arena_size", "instructions",
    "outputs"}; DeployError on an error line, a wrong counter or missing lines."""
    fields: dict[str, list[dict]] = {}
    for raw in text.splitlines():
        m = _LINE.match(raw.strip())
        if m:
            kv = dict(p.split("=", 1) for p in m.group(2).split() if "=" in p)
            fields.setdefault(m.group(1), []).append(kv)
    if "MODEL_ERROR" in fields:
        raise DeployError(f"the M4 program failed: {fields['MODEL_ERROR'][0].get('what')}\n"
                          f"{text[-2000:]}")  # fmt: skip
    calib = fields.get("CALIB", [{}])[0].get("instr_per_tick_x1000")
    if calib != str(INSTR_PER_TICK * 1000):
        raise DeployError(f"SysTick does not count {INSTR_PER_TICK} instructions per tick "
                          f"(calibration {calib}): run QEMU with -icount shift=0")  # fmt: skip
    runs = fields.get("MODEL_RUN", [])
    if "MODEL_DONE" not in fields or len(runs) != samples or "MODEL_ARENA" not in fields:
        raise DeployError(f"the M4 program's output is incomplete ({len(runs)} of {samples} "
                          f"runs):\n{text[-2000:]}")  # fmt: skip
    arena = fields["MODEL_ARENA"][0]
    return {
        "arena_used": int(arena["used"]),
        "arena_size": int(arena["size"]),
        "instructions": [int(r["instructions"]) for r in runs],
        "outputs": np.stack([np.frombuffer(bytes.fromhex(r["output"]), np.int8) for r in runs]),
    }


# ----------------------------------------------------------------------------- host side


def host_outputs(model_bytes: bytes, x_int8: np.ndarray) -> np.ndarray:
    """The host TFLM's int8 outputs (with our glue when the model has our ops)."""
    from tfmot_edgeplus.core.tflite import TFLiteGraph
    from tfmot_edgeplus.patching.patch_runner import glue_registerer
    from tfmot_edgeplus.runtime import TFLMRunner

    g = TFLiteGraph(model_bytes)
    ours = any(g.op_name(op).startswith("EDGEPLUS_") for op in g.operators)
    registerers = []
    if ours:
        reg = glue_registerer()
        if reg is None:
            raise DeployError(
                "the model has EDGEPLUS_ ops: the host TFLM needs our glue, set "
                "EDGEPLUS_TFLM_ROOT, EDGEPLUS_FLATBUFFERS_ROOT and EDGEPLUS_GEMMLOWP_ROOT (or "
                "EDGEPLUS_TFLM_LIB)"
            )
        registerers = [reg]
    runner = TFLMRunner(model_bytes, custom_op_registerers=registerers)
    out = runner.predict(x_int8, dequantize=False)
    return np.asarray(out).reshape(len(x_int8), -1)


def quantize_input(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    """``x`` quantized with the model's int8 input scale and zero point."""
    from tfmot_edgeplus.core.intmath import quantize
    from tfmot_edgeplus.core.tflite import TFLiteGraph

    g = TFLiteGraph(model_bytes)
    t = int(g.subgraph.inputs[0])
    if g.type_name(t) != "INT8":
        raise DeployError(f"the model's input is {g.type_name(t)}, the M4 program feeds int8: "
                          "convert with tfmot_edgeplus.convert (int8 input)")  # fmt: skip
    scales, zero_points = g.quant(t)
    return quantize(np.asarray(x, np.float32), float(scales[0]), int(zero_points[0]), np.int8)


def check_same_outputs(name: str, m4: np.ndarray, host: np.ndarray) -> None:
    """DeployError unless the M4's outputs are the host's first ``len(m4)`` rows exactly."""
    want = host[: len(m4)]
    if m4.shape != want.shape or not np.array_equal(m4, want):
        diff = np.abs(m4.astype(int) - want.astype(int)) if m4.shape == want.shape else None
        what = (f"on {np.count_nonzero(diff)} of {diff.size} values (max {diff.max()})"
                if diff is not None else f"in shape ({m4.shape} vs {want.shape})")  # fmt: skip
        raise DeployError(
            f"{name}: the M4's outputs differ from the host TFLM's {what}; no figure is reported"
        )


def deploy_row(m4: M4Bed, name: str, model_bytes: bytes, x_test_q, y_test, m4_samples: int,
               keras_pred: np.ndarray | None = None) -> dict:
    """The M4 and host figures of one converted model (see the module doc); with
    ``keras_pred``, the host TFLM's top-1 agreement with it too."""
    from tfmot_edgeplus.core.tflite import TFLiteGraph

    samples = x_test_q[:m4_samples]
    got = m4.run(name, model_bytes, samples)
    device = got["device_model"]
    host = host_outputs(device, x_test_q)
    check_same_outputs(name, got["outputs"], host)
    g = TFLiteGraph(device)
    row = {
        "acc": float(np.mean(host.argmax(1) == y_test)),
        "flash_bytes": int(got["flash_bytes"]),
        "model_bytes": len(device),
        "arena_bytes": got["arena_used"],
        "m4_instructions": int(round(float(np.mean(got["instructions"])))),
        "m4_samples": len(samples),
        "operators": "+".join(sorted({g.op_name(op) for op in g.operators})),
    }
    if keras_pred is not None:
        row["agreement"] = float(np.mean(host.argmax(1) == keras_pred))
    return row


# ----------------------------------------------------------------------------- models


def load_data(model: str, config: Config):
    from tfmot_edgeplus.datasets import classification_task

    if model == "imu_cnn":
        return classification_task("imu_watch", config.imu_train, config.imu_test,
                                   seed=config.seed)  # fmt: skip
    data = classification_task("fashion_mnist", config.fashion_train, config.fashion_test,
                               seed=config.seed)  # fmt: skip
    if model == "mobilenet_v2_035":
        from tfmot_edgeplus.recipes.quantmcu import upsample

        data = dataclasses.replace(
            data, x_train=upsample(data.x_train, 32), x_test=upsample(data.x_test, 32)
        )
    return data


def float_model(model: str, data):
    from tfmot_edgeplus import models

    if model == "mobilenet_v2_035":
        return models.mobilenet_v2(input_shape=(32, 32, 1), alpha=0.35, classes=data.num_classes)
    if model in ("reference_cnn", "imu_cnn"):
        return models.reference_model(data.input_shape, data.num_classes)
    raise ValueError(f"model {model!r}: choose from {', '.join(MODELS)}")


def mixed_model(int8_tflite: bytes, x_calib, config: Config) -> tuple[bytes, object, list]:
    """``(deployed model, plan, tune_plan's candidates)`` of the ``mixed`` config (module
    doc); :class:`DeployError` naming why when the model has no stage the patch stage runs."""
    from tfmot_edgeplus import patching
    from tfmot_edgeplus.patching import GraphError, PlanError, PlanMismatchError, lower
    from tfmot_edgeplus.patching.deploy import deploy_model
    from tfmot_edgeplus.recipes.quantmcu import tune_plan

    try:
        plan8 = patching.plan(int8_tflite, None, max_halo=config.max_halo)
        plan, tried = tune_plan(int8_tflite, x_calib, plan8, config.mixed_search,
                                config.min_agreement, saving="instructions")  # fmt: skip
        return deploy_model(int8_tflite, lower.lower(int8_tflite, plan)), plan, tried
    except (GraphError, PlanError, PlanMismatchError) as e:
        raise DeployError(f"no patch plan: {e}") from None


def run_model(model: str, config: Config, m4: M4Bed, builtin_layers: dict,
              mixed: dict | None = None) -> list[dict]:
    """Train, QAT, convert and deploy every configuration of ``model``; the layers our
    kernels could not run go to ``builtin_layers`` (row name -> "layer: why"), the mixed
    plan (or why there is none) to ``mixed`` (model -> dict or str)."""
    from benchmarks.qat_bits import build_qat
    from tfmot_edgeplus import convert
    from tfmot_edgeplus._compat import keras, tf
    from tfmot_edgeplus.conversion.edgeplus_kernels import describe_placement
    from tfmot_edgeplus.models import compile_classifier

    data = load_data(model, config)
    tf.keras.utils.set_random_seed(config.seed)
    fp = compile_classifier(float_model(model, data))
    start = time.perf_counter()
    fp.fit(data.x_train, data.y_train, epochs=dict(config.fp_epochs)[model],
           batch_size=config.batch_size, verbose=0)  # fmt: skip
    say(f"[{model}] float trained in {time.perf_counter() - start:.0f} s")
    rep = data.x_train[: config.representative_samples]
    rows = []
    for bits, convs in CONVERSIONS.items():
        w, a = BITS[bits]
        tf.keras.utils.set_random_seed(config.seed)
        qat = build_qat(fp, "edgeplus", w, a)
        qat.compile(optimizer=keras.optimizers.Adam(config.qat_learning_rate),
                    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=["accuracy"])  # fmt: skip
        qat.fit(data.x_train, data.y_train, epochs=dict(config.qat_epochs)[model],
                batch_size=config.batch_size, verbose=0)  # fmt: skip
        keras_pred = np.asarray(qat.predict(data.x_test, batch_size=256, verbose=0)).argmax(1)
        keras_acc = float(np.mean(keras_pred == data.y_test))
        for name, backend, kwargs in convs:
            model_bytes = convert(qat, rep, **kwargs)
            x_q = quantize_input(model_bytes, data.x_test)
            row = {"model": model, "config": name, "backend": backend, "weight_bits": w,
                   "activation_bits": a, "keras_acc": keras_acc}  # fmt: skip
            row.update(deploy_row(m4, f"{model}_{name}_{backend}", model_bytes, x_q,
                                  data.y_test, config.m4_samples, keras_pred))  # fmt: skip
            placed = describe_placement(model_bytes)
            row["layers_on_ours"] = f"{sum(not p.why for p in placed)}/{len(placed)}"
            if backend == "edgeplus":
                builtin_layers[f"{model}/{name}"] = [f"{p.layer}: {p.why}" for p in placed
                                                     if p.why]  # fmt: skip
            say(f"[{model}] {name} {backend}: acc {row['acc']:.3f} (keras {keras_acc:.3f}), "
                f"{row['m4_instructions']:,} instructions, arena {row['arena_bytes']:,} B, "
                f"flash {row['flash_bytes']:,} B")  # fmt: skip
            rows.append({k: row[k] for k in ROW_KEYS})
        if bits == "int8":
            row = _mixed_row(model, qat, data, config, m4, keras_pred, keras_acc, mixed)
            rows += [] if row is None else [row]
    return rows


def _mixed_row(model, qat, data, config, m4, keras_pred, keras_acc, mixed) -> dict | None:
    from tfmot_edgeplus import convert

    rep = data.x_train[: config.representative_samples]
    int8 = convert(qat, rep)
    start = time.perf_counter()
    try:
        deployed, plan, tried = mixed_model(int8, data.x_train[: config.calib_samples], config)
    except DeployError as e:
        if mixed is not None:
            mixed[model] = str(e)
        say(f"[{model}] {MIXED}: skipped, {e}")
        return None
    if mixed is not None:
        mixed[model] = {"split": plan.split, "grid": plan.grid, "bits": dict(plan.bits),
                        "halo_modeled": round(plan.halo, 3), "search": tried,
                        "plan_s": round(time.perf_counter() - start, 1)}  # fmt: skip
    x_q = quantize_input(deployed, data.x_test)
    row = {"model": model, "config": MIXED, "backend": "edgeplus", "weight_bits": 8,
           "activation_bits": min(plan.bits.values()), "keras_acc": keras_acc}  # fmt: skip
    row.update(deploy_row(m4, f"{model}_{MIXED}", deployed, x_q, data.y_test,
                          config.m4_samples, keras_pred))  # fmt: skip
    row["layers_on_ours"] = f"patch stage {plan.split!r} {plan.grid}x{plan.grid}"
    say(f"[{model}] {MIXED}: acc {row['acc']:.3f} (keras int8 {keras_acc:.3f}), "
        f"{row['m4_instructions']:,} instructions, arena {row['arena_bytes']:,} B")  # fmt: skip
    return {k: row[k] for k in ROW_KEYS}


def ratios(rows: list[dict]) -> dict:
    """Per model, each row's M4 instructions over the same model's int8 row of its backend
    (``int8_edgeplus`` for ours, ``int8`` for the builtin path) and over the builtin int8."""
    out = {}
    for r in rows:
        base = "int8_edgeplus" if r["backend"] == "edgeplus" else "int8"
        ref = {(q["config"], q["backend"]): q["m4_instructions"] for q in rows
               if q["model"] == r["model"]}  # fmt: skip
        key = f"{r['model']}/{r['config']}/{r['backend']}"
        own = ref.get((base, r["backend"]))
        builtin = ref.get(("int8", "builtin_cmsis_nn"))
        out[key] = {
            "vs_own_int8": round(r["m4_instructions"] / own, 3) if own else None,
            "vs_builtin_int8": round(r["m4_instructions"] / builtin, 3) if builtin else None,
        }
    return out


def run(config: Config, work: Path | None = None) -> tuple[list[dict], dict]:
    """Every model of ``config``: (rows, env)."""
    unknown = [m for m in config.models if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}: choose from {', '.join(MODELS)}")
    builtin_layers: dict[str, list[str]] = {}
    mixed: dict = {}
    seconds = {}
    with tempfile.TemporaryDirectory(prefix="deploy_m4_") as tmp:
        start = time.perf_counter()
        m4 = M4Bed.build(Path(work or tmp))
        seconds["m4_bed"] = round(time.perf_counter() - start, 1)
        rows = []
        for model in config.models:
            start = time.perf_counter()
            rows += run_model(model, config, m4, builtin_layers, mixed)
            seconds[model] = round(time.perf_counter() - start, 1)
    env = {
        "config": dataclasses.asdict(config),
        "ratios": ratios(rows),
        "builtin_layers": builtin_layers,
        "mixed_plans": {k: v for k, v in mixed.items() if isinstance(v, dict)},
        "mixed_skipped": {k: v for k, v in mixed.items() if isinstance(v, str)},
        "seconds": seconds,
        "m4": "qemu-system-arm -M mps2-an386 -icount shift=0; Chirale_TensorFLowLite "
        "(TFLM + CMSIS-NN) and EdgePlus compiled with ArduinoCore-mbed's nano33ble recipes",
    }
    return rows, env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.deploy_m4", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--quick", action="store_true",
                        help="small slices, 1 QAT epoch, 2 M4 samples (same code path)")
    parser.add_argument("--out", default=None,
                        help="JSON output (default benchmarks/results/deploy_m4.json)")
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated subset of {', '.join(MODELS)}")
    parser.add_argument("--work", default=None,
                        help="keep the M4 builds in this folder (default: a temporary one)")
    args = parser.parse_args(argv)  # fmt: skip
    models = tuple(m for m in args.models.split(",") if m)
    config = (Config.quick if args.quick else Config.full)(models=models)
    start = time.perf_counter()
    rows, env = run(config, Path(args.work) if args.work else None)
    env["total_s"] = round(time.perf_counter() - start, 1)
    write_report(NAME, args.quick, rows, args.out, env_extra=env)
    say(f"total {env['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
