"""The Arduino side: the EdgePlus library package, sketch export, and builds for the Nano 33
BLE's Cortex-M4F (tests/arduino_build.py says how they compile without the Arduino IDE).

The model is ``mbv2_int8`` (conftest.py) with a mixed-precision patch plan and a QCore
calibrator of its Dense head fitted on a label shift, calibrated once on the host (its memory
holds new samples): one export exercises the stage op, the backbone cut and the QCore arrays
together. Builds are skipped, with the reason, without
arm-none-eabi-gcc / qemu-system-arm; those that need TFLM headers, without
EDGEPLUS_TFLM_ROOT (and siblings).
"""

from __future__ import annotations

import copy
import dataclasses
import filecmp
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from arduino_build import (
    M4,
    ROOT,
    STANDINS,
    BuildError,
    arduino_core,
    arduino_tflm,
    arduino_tflm_library,
    build_host_sanitized,
    compile_all,
    compile_one,
    compile_with_core,
    harness_sources,
    library_sources,
    link,
    missing_tools,
    run_host,
    run_qemu,
    sketch_jobs,
    tflm_includes,
    warnings_in,
)

from benchmarks.deploy_m4 import parse_output
from tfmot_edgeplus import patching
from tfmot_edgeplus.calibration import BitFlipCalibrator, load_qcore, save_qcore
from tfmot_edgeplus.calibration.device import device_bytes
from tfmot_edgeplus.export import c_arrays as C
from tfmot_edgeplus.export.arduino import (
    FLASH_BYTES,
    FLASH_RESERVE,
    KERNEL_PRELUDE,
    MARKER,
    MBED_RAM,
    SKETCH_CODE_FLASH,
    SRAM_BYTES,
    SRAM_RESERVE,
    TFLM_LIBRARY,
    ExportError,
    export_library,
    export_sketch,
    library_files,
    mean_ops,
)
from tfmot_edgeplus.patching import lower, simulate

needs_m4 = pytest.mark.skipif(
    bool(missing_tools()),
    reason=f"{', '.join(missing_tools())} not installed (apt-get install gcc-arm-none-eabi "
    "libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm); `make test` "
    "installs them on CI",
)
TFLM = tflm_includes()
needs_tflm = pytest.mark.skipif(
    TFLM is None,
    reason="EDGEPLUS_TFLM_ROOT, EDGEPLUS_FLATBUFFERS_ROOT and EDGEPLUS_GEMMLOWP_ROOT are not all "
    "set: the examples and the TFLM glue need TFLM headers (TOOLCHAIN.md); the TFLM-free parts "
    "are built by the other tests",
)

try:
    CORE, ARDUINO_TFLM, CORE_PROBLEM = arduino_core(), arduino_tflm(), None
except BuildError as e:  # set but wrong: skipped, saying what is wrong
    CORE, ARDUINO_TFLM, CORE_PROBLEM = None, None, str(e)
needs_core = pytest.mark.skipif(
    CORE is None or ARDUINO_TFLM is None,
    reason=CORE_PROBLEM or "EDGEPLUS_ARDUINO_CORE (an ArduinoCore-mbed checkout; "
    "EDGEPLUS_ARDUINO_API or a sibling ArduinoCore-API for its api/) and EDGEPLUS_ARDUINO_TFLM "
    "(the Chirale_TensorFLowLite library) are not both set: the build with the real core and "
    "the Arduino TFLM is skipped (tests/arduino_build.py, README)",
)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    return export_library(tmp_path_factory.mktemp("lib") / "EdgePlus")


def _runner_up(cal, x) -> np.ndarray:
    """The class the deployed model ranks second on each of ``x``."""
    logits = cal.predict(x, cal.head.weights()).astype(int)
    return np.argsort(logits, axis=1, kind="stable")[:, -2]


@pytest.fixture(scope="module")
def case(mbv2_int8, tmp_path_factory):
    """The mixed plan, a fitted calibrator's bundle after one calibration on the host (its
    memory not empty), and the sketch exported from them and the calibrated model.

    The model is weak (8 % on the test digits), so the QCore is labeled with what it
    predicts (the "old domain" it must keep) and new data with its runner-up class: a shift
    that the guard has to hold back (the M4 test checks that it refuses a level)."""
    _, tfl, xc, xt, yt = mbv2_int8
    plan = patching.plan(tfl, xc, grid=2, outlier_sample_fraction=1.0, lam=0.2)
    cal = BitFlipCalibrator(tfl, core_size=8, memory_size=6, hidden=8, max_steps=4, tries=4,
                            seed=3)  # fmt: skip
    cal.fit((xt[:8], cal.predict(xt[:8]).argmax(1)), [(xt[8:40], _runner_up(cal, xt[8:40]))],
            chunk_size=16, episodes=3, epochs=3)  # fmt: skip
    cal.calibrate(xt[8:16], _runner_up(cal, xt[8:16]))
    d = tmp_path_factory.mktemp("sketch")
    bundle = load_qcore(save_qcore(cal, d / "qcore.npz"))
    sk = export_sketch(cal.model_bytes(), d / "MbV2Sketch", plan=plan, qcore=bundle, chunk=8,
                       test_input=xt[40], test_label=int(yt[40]))  # fmt: skip
    return {"tfl": tfl, "plan": plan, "cal": cal, "bundle": bundle, "sketch": sk, "x": xt,
            "y": yt, "dir": d}  # fmt: skip


# ----------------------------------------------------------------------------- the package


def test_library_is_the_repo_files_plus_byte_identical_copies(library):
    files = library_files()
    for rel, src in files.items():
        if rel.startswith("src/edgeplus/kernels/") and rel.endswith(".c"):  # + the -O3 include
            assert (library / rel).read_bytes() == KERNEL_PRELUDE + src.read_bytes(), rel
        else:
            assert filecmp.cmp(library / rel, src, shallow=False), rel
    assert (library / "src/edgeplus/kernel_optimize.h").is_file()
    assert (library / "src/edgeplus/kernels/edgeplus_patch_stage.c").is_file()
    assert (library / "src/edgeplus/tflm/edgeplus_patch_stage_op.cpp").is_file()
    assert not list(library.rglob("*python_registerer*"))
    # the library specification: one header at the src root, examples/<Name>/<Name>.ino
    assert [p.name for p in (library / "src").iterdir() if p.is_file()] == ["EdgePlus.h"]
    props = dict(
        line.split("=", 1) for line in (library / "library.properties").read_text().splitlines()
    )
    assert props["name"] == "EdgePlus" and props["architectures"] == "mbed_nano"
    assert props["depends"].split(", ")[0] == f"{TFLM_LIBRARY} (>=2.0.0)"  # as it spells itself
    assert "Arduino_LSM9DS1" in props["depends"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", props["version"])
    for ex in (library / "examples").iterdir():
        assert (ex / f"{ex.name}.ino").is_file(), ex


def test_library_export_refuses_to_overwrite(tmp_path):
    out = export_library(tmp_path / "EdgePlus")
    with pytest.raises(ExportError, match="already exists; pass --force"):
        export_library(out)
    (out / "mine.txt").write_text("kept?")
    export_library(out, force=True)  # an earlier export: replaced
    assert not (out / "mine.txt").exists() and (out / MARKER).is_file()
    other = tmp_path / "NotAnExport"
    other.mkdir()
    (other / "precious.txt").write_text("x")
    with pytest.raises(ExportError, match="was not written by an edgeplus export"):
        export_library(other, force=True)
    assert (other / "precious.txt").read_text() == "x"


# ----------------------------------------------------------------------------- the sketch


def test_exported_sketch_files_banner_and_commands(case):
    sk = case["sketch"]
    names = sorted(p.name for p in sk.folder.iterdir())
    assert names == sorted([MARKER, "MbV2Sketch.ino", "edgeplus_model.h", "edgeplus_model.cpp",
                            "edgeplus_qcore.h", "edgeplus_qcore.cpp"])  # fmt: skip
    model_h = (sk.folder / "edgeplus_model.h").read_text()
    assert "Generated by tfmot_edgeplus" in model_h
    assert "sha256" in model_h and "split " in model_h
    assert "#define EDGEPLUS_HAS_PATCH_STAGE 1" in model_h
    assert "edgeplus::AddOps(resolver)" in model_h
    # the MEAN became an AVERAGE_POOL_2D (+ QUANTIZE, RESHAPE): the resolver adds those
    assert "resolver.AddMean()" not in model_h and "resolver.AddAveragePool2D()" in model_h
    assert "resolver.AddReshape()" in model_h  # keep_dims false (the scales are equal)
    assert "rewrote 1 int8 MEAN op(s)" in model_h and "rewrote 1 int8 MEAN" in sk.summary()
    assert "resolver.AddFullyConnected()" not in model_h  # the head runs in the calibrator
    assert (
        "alignas(16) const unsigned char edgeplus_model["
        in (sk.folder / "edgeplus_model.cpp").read_text()
    )
    f = sk.figures
    assert f["flash_data_bytes"] < FLASH_BYTES and f["arena_bytes"] % 16 == 0
    # one formula: the calibrator's device bytes are the export's (the M4 test: the library's)
    assert f["qcore_ram_bytes"] == case["cal"].memory(8)["total_bytes"]
    assert f"#define EDGEPLUS_QCORE_RAM_BYTES {f['qcore_ram_bytes']}\n" in (
        sk.folder / "edgeplus_qcore.h").read_text()  # fmt: skip
    assert "arduino:mbed_nano:nano33ble" in sk.commands and str(sk.folder) in sk.commands
    assert f"arduino-cli lib install {TFLM_LIBRARY}@2.0.0 " in sk.commands
    assert f"{f['flash_data_bytes']:,} B of 983,040" in sk.summary()
    # the board budget: mbed-os's stacks and TFLM's code counted
    assert f["ram_bytes"] == f["sram_data_bytes"] + sum(MBED_RAM.values()) + SRAM_RESERVE
    assert sum(MBED_RAM.values()) == 35_840 and f["mbed_ram_bytes"] == 35_840
    assert f["flash_bytes"] == f["flash_data_bytes"] + SKETCH_CODE_FLASH + FLASH_RESERVE
    assert f["means_rewritten"] == 1 and not any("MEAN" in w for w in f["warnings"])


def test_budget_refuses_by_how_much_and_warns_within_the_estimates(case, tmp_path):
    tfl, plan = case["tfl"], case["plan"]
    f = export_sketch(tfl, tmp_path / "Plain", plan=plan).figures
    assert not [w for w in f["warnings"] if w.startswith(("SRAM", "flash"))], f["warnings"]
    fits = SRAM_BYTES - (f["ram_bytes"] - SRAM_RESERVE)  # the largest reserve that fits
    with pytest.raises(ExportError, match=r"SRAM: .* over the board's 262,144 B by 1 B"):
        export_sketch(tfl, tmp_path / "Over", plan=plan, sram_reserve=fits + 1)
    sk = export_sketch(tfl, tmp_path / "Tight", plan=plan, sram_reserve=fits)
    assert sk.figures["ram_bytes"] == SRAM_BYTES  # fits, but not with mbed-os's other RAM
    assert [w for w in sk.figures["warnings"] if w.startswith("SRAM")], sk.figures["warnings"]


def test_export_refuses_bad_input(case, tmp_path, mbv2_int8):
    tfl, plan, bundle = case["tfl"], case["plan"], case["bundle"]
    with pytest.raises(
        ExportError, match=r"too large for the Arduino Nano 33 BLE:\n  SRAM: .* by "
    ):
        export_sketch(tfl, tmp_path / "Big", plan=plan, sram_reserve=262_000)
    with pytest.raises(ExportError, match="flash: .* by "):
        export_sketch(tfl, tmp_path / "Big", flash_reserve=FLASH_BYTES - 1000)
    assert not (tmp_path / "Big").exists()  # nothing written on an error
    # a QCore made for other weights
    other = copy.deepcopy(bundle)
    other.head_weights[0] = other.head_weights[0].copy()
    other.head_weights[0][0, 0] ^= 1
    with pytest.raises(ExportError, match="holds other weights than the bundle's"):
        export_sketch(tfl, tmp_path / "Q", qcore=other)
    other.backbone_sha256 = "0" * 64
    with pytest.raises(ExportError, match="belongs to another model"):
        export_sketch(tfl, tmp_path / "Q", qcore=other)
    # a QCore stored for another head: other classes, other features
    calibrated = case["cal"].model_bytes()
    other = dataclasses.replace(bundle, classes=bundle.classes + 1)
    with pytest.raises(ExportError, match=r"for 11 classes \(.*\), this model.s head has 10"):
        export_sketch(calibrated, tmp_path / "Q", qcore=other)
    other = dataclasses.replace(bundle, memory_x=bundle.memory_x[:, :-1])
    with pytest.raises(ExportError, match="its memory items have .* features, the head"):
        export_sketch(calibrated, tmp_path / "Q", qcore=other)
    with pytest.raises(ValueError, match="memory_size must be an int >= 0, got -1"):
        device_bytes(bundle.check_model(calibrated), bundle.nets, 8, -1, 4, 8)
    # a plan made for another input size
    bad = dataclasses.replace(plan, input_shape=(32, 32, 1))
    with pytest.raises(ExportError, match="the plan does not fit this model"):
        export_sketch(tfl, tmp_path / "P", plan=bad)
    with pytest.raises(ExportError, match="already exists; pass --force"):
        export_sketch(tfl, case["sketch"].folder)
    with pytest.raises(ExportError, match="not a valid Arduino sketch name"):
        export_sketch(tfl, tmp_path / "has space")
    with pytest.raises(ExportError, match="the test input has 5 values"):
        export_sketch(tfl, tmp_path / "T", test_input=np.zeros(5))


@pytest.fixture(scope="module")
def imu_int8():
    """A small imu_cnn (its GlobalAveragePooling1D converts to a MEAN over axis 1 of an NLC
    tensor) fitted briefly on random windows, EdgePlus 8-bit, int8 .tflite; and the windows."""
    from tfmot_edgeplus import EdgePlusQuantizeScheme, quantize_model
    from tfmot_edgeplus._compat import keras
    from tfmot_edgeplus.conversion.converter import convert
    from tfmot_edgeplus.models import imu_cnn

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(96, 25, 6)).astype(np.float32)
    y = (x[:, :, 0].mean(1) > 0).astype(np.int32) + 2 * (x[:, :, 1].mean(1) > 0)
    m = imu_cnn(window=25, channels=6, classes=4, width=4)
    m.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    m.fit(x, y, epochs=2, batch_size=32, verbose=0)
    return convert(quantize_model(m, EdgePlusQuantizeScheme(8, 8)), x[:32]), x[32:]


def _edit_mean(model: bytes, edit) -> bytes:
    """``model`` after ``edit(graph, its first MEAN)``."""
    from tfmot_edgeplus.core.tflite import TFLiteGraph, finish_model

    g = TFLiteGraph(model)
    edit(g, next(op for op in g.operators if g.op_name(op) == "MEAN"))
    return finish_model(g)


def _shift_output_zero_point(g, op):  # the FC after keeps its scales (TFLM checks them)
    zp = int(g.quant(op.outputs[0])[1][0])
    g.tensors[op.outputs[0]].quantization.zeroPoint = [zp + 1 if zp < 127 else zp - 1]


def _axes_1_3(g, op):
    g.model.buffers[g.tensors[op.inputs[1]].buffer].data = np.array([1, 3], np.int32).view(
        np.uint8)  # fmt: skip


def test_means_become_average_pools_that_agree_with_the_model(case, imu_int8, capsys):
    """rewrite_means on the test model (NHWC, axes {1, 2}, keep_dims false; as converted, and
    with the MEAN's output zero point moved: + QUANTIZE) and on a 1-D CNN's (NLC, axis 1): no
    MEAN left, runs in the host TFLM, and predicts the classes the MEAN model predicts, logits
    within a few steps (AVERAGE_POOL_2D rounds the mean half away from zero, MEAN through its
    own multiplier). A MEAN over other axes stays (the export warns about it)."""
    from tfmot_edgeplus.core.intmath import quantize
    from tfmot_edgeplus.export.arduino import _model_ops, rewrite_means
    from tfmot_edgeplus.runtime.tflm import TFLMRunner

    rows = []
    for name, model, xf, added in (
        ("mbv2", case["tfl"], case["x"], {"AVERAGE_POOL_2D", "RESHAPE"}),
        ("mbv2 zp+1", _edit_mean(case["tfl"], _shift_output_zero_point), case["x"],
         {"AVERAGE_POOL_2D", "QUANTIZE", "RESHAPE"}),
        ("imu", *imu_int8, {"AVERAGE_POOL_2D"}),  # its RESHAPEs to N x L x 1 x C and back
    ):  # fmt: skip
        new, count = rewrite_means(model)
        assert count == mean_ops(model) == 1 and mean_ops(new) == 0, name
        assert rewrite_means(new) == (new, 0)
        was, now = set(_model_ops(model)[0]), set(_model_ops(new)[0])
        assert (now - was, was - now) == (added, {"MEAN"}), (name, was, now)
        a, b = TFLMRunner(model), TFLMRunner(new)
        x = quantize(xf, *a.input_details[0]["quantization"], np.int8)
        want = a.predict(x, dequantize=False).astype(int)
        got = b.predict(x, dequantize=False).astype(int)
        agree = np.mean(want.argmax(-1) == got.argmax(-1))
        rows.append(f"{name}: classes agree on {agree:.0%} of {len(x)}, max logit step "
                    f"{np.abs(want - got).max()}")  # fmt: skip
        assert agree >= 0.95 and np.abs(want - got).max() <= 8, (name, rows[-1])
    with capsys.disabled():
        print("\n[arduino] MEAN -> AVERAGE_POOL_2D: " + "; ".join(rows))
    other = _edit_mean(case["tfl"], _axes_1_3)
    assert rewrite_means(other) == (other, 0) and mean_ops(other) == 1


def test_bundle_round_trip(case, tmp_path):
    b, cal = case["bundle"], case["cal"]
    assert b.check_model(cal.model_bytes()).input_size == cal.head.input_size
    for got, want in ((b.core_x, cal.old_x), (b.core_y, cal.old_y), (b.memory_x, cal.mem_x),
                      (b.memory_y, cal.mem_y), (b.memory_counts, cal.mem_counts)):  # fmt: skip
        np.testing.assert_array_equal(got, want)
    assert len(b.memory_y) > 0 and b.classes == cal.head.num_classes
    assert (b.guard_min_correct, b.guard_slack, b.memory_size, b.old_tolerance, b.rng_state) == (
        cal.guard_min_correct, cal.guard_slack, cal.memory_size, cal.old_tolerance,
        cal._rng_state)  # fmt: skip
    assert sorted(b.nets) == sorted(cal.nets)
    with pytest.raises(ValueError, match="is not a QCore bundle"):
        load_qcore(case["dir"] / "MbV2Sketch" / "edgeplus_model.h")
    with np.load(case["dir"] / "qcore.npz") as z:  # a bundle of the first format
        old = {k: z[k] for k in z.files}
    old["format"] = np.array("edgeplus-qcore/1")
    np.savez(tmp_path / "old.npz", **old)
    with pytest.raises(ValueError, match=r"older format 'edgeplus-qcore/1'.*`edgeplus qcore`"):
        load_qcore(tmp_path / "old.npz")


# ----------------------------------------------------------------------------- builds


def _case_header(low, x_int8, fx, y) -> str:
    words = low.program.to_words()
    out_t = low.program.tensors[-1]
    parts = ["#include <stdint.h>\n", f"#define CASE_STAGE_WORDS {words.size}\n",
             f"#define CASE_STAGE_OUTPUT_BYTES {out_t.h * out_t.w * out_t.c}\n",
             f"#define CASE_CHUNK_N {len(y)}\n"]  # fmt: skip
    from tfmot_edgeplus.runtime import kernels

    scratch = kernels.get_kernels().patch_stage_get_buffer_size(words)
    parts.append(f"#define CASE_STAGE_SCRATCH_BYTES {scratch}\n")
    parts.append(C.definition("int32_t", "case_program", words, static=True))
    for s, f in enumerate(low.filters):
        parts.append(C.definition("int8_t", f"case_filter{s}", np.asarray(f).view(np.int8),
                                  static=True))  # fmt: skip
    refs = ", ".join(f"case_filter{s}" for s in range(len(low.filters)))
    parts.append(f"static const int8_t* const case_filters[] = {{{refs}}};\n")
    parts.append(C.definition("int8_t", "case_stage_input", x_int8, static=True))
    parts.append(C.definition("int8_t", "case_chunk_x", fx, static=True))
    parts.append(C.definition("int32_t", "case_chunk_y", y, static=True))
    return "".join(parts)


def _parse(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(" ")
        if key == "ERROR":
            raise AssertionError(line)
        if key in ("LOGITS", "WEIGHTS", "REPORT", "CALIBRATE_US", "QCore:",
                   "WEIGHTS_AFTER_REFUSAL"):  # fmt: skip
            out.setdefault(key, []).append(rest.strip())
        else:
            out[key] = rest.strip()
    assert "DONE" in out, text[-2000:]
    return out


def _untimed(text: str) -> list[str]:
    return [line for line in text.splitlines() if "_US " not in line and " us" not in line]


def _h(a) -> str:
    return np.asarray(a).astype(np.int8).tobytes().hex()


@needs_m4
def test_sketch_paths_run_on_the_m4_like_the_host(case, library, tmp_path, capsys):
    from tfmot_edgeplus.core.intmath import quantize
    from tfmot_edgeplus.core.packing import pack
    from tfmot_edgeplus.runtime.tflm import TFLMRunner

    tfl, plan, cal, sk = case["tfl"], case["plan"], case["cal"], case["sketch"]
    low = lower.lower(tfl, plan)
    d = TFLMRunner(tfl).input_details[0]
    xq = quantize(case["x"][41:42], *d["quantization"], np.int8)
    x = np.concatenate([case["x"][:8], case["x"][32:40]])  # two chunks: the QCore's windows
    fx, y = cal.features(x), _runner_up(cal, x)  # first, then others, both shifted
    (tmp_path / "arduino_case.h").write_text(_case_header(low, xq, fx, y))
    inc = [f"-I{library / 'src'}", f"-I{STANDINS}", f"-I{sk.folder}", f"-I{tmp_path}",
           f"-I{ROOT / 'tflm_ops' / 'm4'}"]  # fmt: skip
    srcs = [*library_sources(library, tflm=False), *harness_sources(),
            sk.folder / "edgeplus_qcore.cpp", STANDINS / "qemu_main.cpp"]  # fmt: skip
    jobs = [(s, tmp_path / "obj" / f"{i}_{s.stem}.o", inc, ["-DEDGEPLUS_NO_TFLM=1"], False)
            for i, s in enumerate(srcs)]  # fmt: skip
    sizes = link(compile_all(jobs), tmp_path / "sketch_paths.elf")
    m4_text = run_qemu(tmp_path / "sketch_paths.elf")
    got = _parse(m4_text)
    # the same program on the host, under ASan/UBSan, prints the same (but for timings)
    srcs_host = [s for s in srcs if s.parent != ROOT / "tflm_ops" / "m4"]
    exe = build_host_sanitized(srcs_host, inc, ["-DEDGEPLUS_NO_TFLM=1"], tmp_path / "host.exe")
    assert _untimed(run_host(exe)) == _untimed(m4_text)
    f = sk.figures
    with capsys.disabled():  # the sizes, in make test's output
        print(f"\n[arduino] exported sketch data: flash {f['flash_data_bytes']:,} B, SRAM "
              f"{f['sram_data_bytes']:,} B | TFLM-free sketch paths linked for the Nano "
              f"(1 MB / 256 KB): flash {sizes['flash']:,} B, RAM {sizes['ram']:,} B | M4 "
              f"estimates (instructions / 64 MHz): patch stage {got['STAGE_US']}, calibrate "
              f"{', '.join(got['CALIBRATE_US'])}")  # fmt: skip

    # the patch stage: the NumPy reference (bit-exact with the C kernels and the custom op)
    want = simulate.run_stage(low.program, low.filters, xq)
    assert got["STAGE_OUTPUT"] == _h(want.reshape(-1))
    # the calibrator: head forward, then BitFlipCalibrator.calibrate_features, chunk by chunk
    ram = dict(kv.split("=") for kv in got["QCORE_RAM"].split())
    assert ram["bytes"] == ram["exported"], ram  # the export's figure is the library's
    ref, unguarded = copy.copy(cal), copy.copy(cal)  # cal (the fixture's) stays as it is
    unguarded.guard_min_correct, unguarded.guard_slack = 0, len(cal.old_y)  # never ratchets
    logits, reports = [], []
    for chunk in (slice(0, 8), slice(8, 16)):
        samples = len(ref.old_y) + len(ref.mem_y) + len(y[chunk])
        logits += [_h(v) for v in ref.head.forward(fx[chunk], ref.weights)]
        rep = ref.calibrate_features(fx[chunk], y[chunk])
        unguarded.calibrate_features(fx[chunk], y[chunk])
        reports.append((samples, rep))
    assert got["LOGITS"] == logits
    # the guard refused a level that the score on the new items alone would have kept
    assert any(not np.array_equal(a, b) for a, b in zip(ref.weights, unguarded.weights))
    assert len(reports[1][1].steps) and len(cal.mem_y) > 0  # the second chunk saw a memory
    for line, text, (samples, rep) in zip(got["REPORT"], got["QCore:"], reports):
        fields = {k: int(v) for k, v in (kv.split("=") for kv in line.split())}
        first, last = rep.steps[0], rep.steps[-1]
        assert fields == {
            "samples": samples, "steps": len(rep.steps), "kept": rep.kept,
            "rolled_back": rep.rolled_back, "changed": rep.changed,
            "correct_before": first.correct_before, "correct_after": last.correct_after,
            "guard_correct": rep.guard_correct, "guard_items": rep.guard_items,
            "memory_from_chunk": rep.memory_from_chunk,
        }  # fmt: skip
        assert text.startswith(  # edgeplus::printReport
            f"{rep.kept} of {len(rep.steps)} steps kept, {rep.changed} weights changed, "
            f"{first.correct_before} -> {last.correct_after} of {samples - rep.guard_items} new "
            f"right, old {rep.guard_correct}/{rep.guard_items}, "
        ), text
    weights = [pack(np.asarray(w, np.int8), layer.bits).tobytes().hex()
               for w, layer in zip(ref.weights, ref.head.layers)]  # fmt: skip
    assert got["WEIGHTS"] == weights and got["WEIGHTS_AFTER_REFUSAL"] == weights
    assert got["OTHER_HEAD"] == "EDGEPLUS_ERR_DIMS"
    assert got["CORE"] == (f"guard_min_correct={ref.guard_min_correct} labels="
                           + "".join(f"{v}," for v in ref.old_y))  # fmt: skip
    assert got["CORE_X"] == _h(ref.old_x.reshape(-1))
    memory = dict(kv.split("=") for kv in got["MEMORY"].split())
    assert int(memory["rng"]) == ref._rng_state
    assert memory["labels"] == "".join(f"{v}," for v in ref.mem_y)
    assert memory["counts"] == "".join(f"{v}," for v in ref.mem_counts)
    assert got["MEMORY_X"] == _h(ref.mem_x.reshape(-1))
    assert got["EMPTY_CHUNK"] == "EDGEPLUS_ERR_DIMS" and got["BAD_LABEL"] == "EDGEPLUS_ERR_ARG"
    assert dict(kv.split("=") for kv in got["REFUSE"].split()) == {
        "stage_run_before_begin": "EDGEPLUS_ERR_NULL",
        "stage_small_scratch": "EDGEPLUS_ERR_SCRATCH",
        "stage_truncated": "EDGEPLUS_ERR_DIMS",
        "qcore_small_ram": "EDGEPLUS_ERR_SCRATCH",
        "qcore_chunk_0": "EDGEPLUS_ERR_DIMS",
        "qcore_rng_0": "EDGEPLUS_ERR_ARG",
        "qcore_core_items": "EDGEPLUS_ERR_DIMS",
        "qcore_other_classes": "EDGEPLUS_ERR_DIMS",
        "qcore_guard_over_core": "EDGEPLUS_ERR_ARG",
        "qcore_guard_slack": "EDGEPLUS_ERR_ARG",
        "qcore_memory_null": "EDGEPLUS_ERR_NULL",
        "qcore_predict_before_begin": "EDGEPLUS_ERR_NULL",
    }


@needs_m4
def test_without_tflm_edgeplus_h_names_the_library_to_install(library, tmp_path):
    src = tmp_path / "NoTflm.ino"
    src.write_text("#include <EdgePlus.h>\nvoid setup() {}\nvoid loop() {}\n")
    with pytest.raises(BuildError) as e:
        compile_one(src, tmp_path / "x.o", [f"-I{library / 'src'}", f"-I{STANDINS}"])
    assert "#error" in str(e.value) and "Chirale_TensorFlowLite" in str(e.value)


@needs_m4
@needs_tflm
def test_examples_glue_and_exported_sketch_compile_with_tflm(case, library, tmp_path):
    inc = [f"-I{library / 'src'}", f"-I{STANDINS}", *TFLM]
    jobs = [(s, tmp_path / "lib" / f"{i}_{s.stem}.o", inc, [], True)
            for i, s in enumerate(library_sources(library, tflm=True))]  # fmt: skip
    folders = [*sorted((library / "examples").iterdir()), case["sketch"].folder]
    for folder in folders:
        for s in sorted(folder.glob("*.ino")) + sorted(folder.glob("*.cpp")):
            jobs.append((s, tmp_path / folder.name / f"{s.stem}.o", [f"-I{folder}", *inc], [],
                         True))  # fmt: skip
    objs = compile_all(jobs)
    assert len(objs) == len(jobs)


# ----------------------------------------------------------------------------- the real core


def _symbols(obj) -> str:
    import subprocess

    return subprocess.run(["arm-none-eabi-nm", "-C", str(obj)], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip


@pytest.fixture(scope="module")
def core_build(case, library, tmp_path_factory):
    """The library, both examples and two exported sketches (with a QCore, as the demo's
    ImuQCoreSketch; with a plan only, as its FashionPatchSketch) compiled as arduino-cli
    compiles them for arduino:mbed_nano:nano33ble with Chirale_TensorFLowLite, at --warnings
    all. Arduino_LSM9DS1 (the motion example's IMU) is its declarations' stand-in."""
    out = tmp_path_factory.mktemp("core")
    patch = export_sketch(case["tfl"], out / "sketches" / "PatchSketch", plan=case["plan"],
                          test_input=case["x"][41], test_label=int(case["y"][41]))  # fmt: skip
    imu = out / "libraries" / "Arduino_LSM9DS1" / "src"
    imu.mkdir(parents=True)
    (imu / "Arduino_LSM9DS1.h").write_bytes((STANDINS / "Arduino_LSM9DS1.h").read_bytes())
    # what arduino-cli's library discovery adds: EdgePlus, the TFLM, the core's Wire (which
    # <Chirale_TensorFlowLite.h> includes) and the IMU library
    includes = [library / "src", ARDUINO_TFLM / "src", CORE.bundled_library("Wire"), imu]
    jobs = [(src, out / "lib" / f"{i}_{src.stem}.o")
            for i, src in enumerate(library_sources(library, tflm=True))]  # fmt: skip
    sketches = [*sorted((library / "examples").iterdir()), case["sketch"].folder, patch.folder]
    for folder in sketches:
        jobs += sketch_jobs(folder, out / "build" / folder.name)
    # the check's own check: a sketch with one planted warning, which must be found
    planted = out / "sketches" / "Planted"
    planted.mkdir()
    (planted / "Planted.ino").write_text("#include <EdgePlus.h>\nstatic int unused() { return 1; }"
                                        "\nvoid setup() {}\nvoid loop() {}\n")  # fmt: skip
    jobs += sketch_jobs(planted, out / "build" / "Planted")
    with ThreadPoolExecutor(2) as pool:
        messages = list(pool.map(lambda j: compile_with_core(CORE, j[0], j[1], includes), jobs))
    return {"jobs": jobs, "messages": "".join(messages), "sketches": sketches, "out": out,
            "ours": [library, out, *sketches], "planted": planted}  # fmt: skip


@needs_m4
@needs_core
def test_library_examples_and_sketches_compile_with_the_arduino_core(core_build):
    """No error, no warning from our files at -Wall -Wextra, and the glue is not empty."""
    b = core_build
    found = warnings_in(b["messages"], b["ours"])
    planted = [w for w in found if w.startswith(str(b["planted"]))]
    assert len(planted) == 1 and "Planted.ino:2:" in planted[0], found  # the check works
    assert [w for w in found if w not in planted] == []
    objs = {o.name.split("_", 1)[1]: o for _, o in b["jobs"] if o.parent.name == "lib"}
    assert "Register_EDGEPLUS_CONV_MP()" in _symbols(objs["edgeplus_conv_mp.o"])
    assert "Register_EDGEPLUS_PATCH_STAGE()" in _symbols(objs["edgeplus_patch_stage_op.o"])
    for folder in b["sketches"]:  # every sketch's setup() and loop() were compiled
        syms = _symbols(b["out"] / "build" / folder.name / "obj" / f"{folder.name}.ino.cpp.o")
        assert re.search(r" T setup\b", syms) and re.search(r" T loop\b", syms), folder


@needs_m4
@needs_core
def test_glue_refuses_a_tflm_it_does_not_know(core_build, tmp_path):
    """A TFLM with the resolver but none of the APIs the glue knows: the #error says what was
    found and which library and version to install."""
    old = tmp_path / "src" / "tensorflow" / "lite" / "micro"
    old.mkdir(parents=True)
    (old / "micro_mutable_op_resolver.h").write_text("#pragma once\n")
    glue = next(s for s, _ in core_build["jobs"] if s.name == "edgeplus_conv_mp.cpp")
    with pytest.raises(BuildError) as e:
        compile_with_core(CORE, glue, tmp_path / "x.o", [glue.parents[2], tmp_path / "src"])
    assert "#error" in str(e.value) and "too old" in str(e.value)
    assert f"{TFLM_LIBRARY} 2.0.0" in str(e.value)


@needs_m4
@needs_core
@needs_tflm
def test_exported_models_run_in_the_arduino_tflm_on_the_m4_like_the_host(core_build, capsys):
    """Every exported model (both examples', both sketches') in Chirale_TensorFLowLite built
    with the core's recipes, on the emulated M4: the host TFLM's output bit for bit (the
    export rewrote the sketches' MEANs, which Chirale rounds otherwise: rewrite_means), within
    the exported arena, and its code within the export's SKETCH_CODE_FLASH."""
    from tfmot_edgeplus.patching.patch_runner import glue_registerer
    from tfmot_edgeplus.runtime.tflm import TFLMRunner

    b, out = core_build, core_build["out"]
    tflm_lib = arduino_tflm_library(CORE, ARDUINO_TFLM, ROOT / "build" / "arduino")
    lib_objs = [o for _, o in b["jobs"] if o.parent.name == "lib"]
    harness = [out / "m4" / "startup.o", out / "m4" / "m4_timer.o"]
    for obj in harness:
        compile_with_core(CORE, M4 / f"{obj.stem}.c", obj, [M4])
    rows, differ = [], {}
    for folder in b["sketches"]:
        model_cpp = b["out"] / "build" / folder.name / "obj" / "edgeplus_model.cpp.o"
        main = out / "m4" / folder.name / "model_bench_main.o"
        compile_with_core(CORE, M4 / "model_bench_main.cc", main,
                          [folder, M4, ARDUINO_TFLM / "src", b["ours"][0] / "src"])  # fmt: skip
        objs = [main, *harness, model_cpp, *lib_objs, tflm_lib]
        sizes = link(objs, out / "m4" / f"{folder.name}.elf", float_abi="softfp")
        got = parse_output(run_qemu(out / "m4" / f"{folder.name}.elf"), 1)
        cpp = (folder / "edgeplus_model.cpp").read_text()
        d = _defines((folder / "edgeplus_model.h").read_text())
        model = _array_bytes(cpp, "edgeplus_model")
        x = np.frombuffer(_array_bytes(cpp, "edgeplus_test_input"), np.int8)
        reg = [glue_registerer()] if b"EDGEPLUS_" in model else []
        assert None not in reg, "the host glue library did not build"
        r = TFLMRunner(model, custom_op_registerers=reg)
        want = r.predict(x.reshape(r.input_details[0]["shape"]), dequantize=False)
        diff = got["outputs"][0].astype(int) - want.reshape(-1).astype(int)
        if diff.any():
            differ[folder.name] = (_h(got["outputs"][0]), _h(want.reshape(-1)))
        if folder.parent != b["ours"][0] / "examples":  # exported here: no MEAN left
            assert mean_ops(model) == 0, folder.name
        assert got["arena_used"] <= got["arena_size"] == int(d["EDGEPLUS_ARENA_BYTES"])
        code = sizes["flash"] - len(model) - x.size
        assert code <= SKETCH_CODE_FLASH, (folder.name, code)
        rows.append(f"{folder.name}: {np.count_nonzero(diff)} of {diff.size} outputs differ (max "
                    f"{np.abs(diff).max()}) "
                    f"(MEAN ops: {mean_ops(model)}), arena {got['arena_used']}/"
                    f"{got['arena_size']} B, code {code:,} B, invoke "
                    f"{got['instructions'][0]:,} instructions")  # fmt: skip
    with capsys.disabled():
        print("\n[arduino] Chirale_TensorFLowLite on the M4 vs the host: " + "; ".join(rows))
    assert not differ, differ  # the M4's outputs, the host's


# ----------------------------------------------------------------------------- examples' data


def _defines(text: str) -> dict:
    return dict(re.findall(r"^#define (EDGEPLUS_\w+) (\S+)", text, re.MULTILINE))


def _array_bytes(text: str, name: str) -> bytes:
    body = re.search(rf"\b{name}\[\d+\] = \{{(.*?)\}};", text, re.DOTALL).group(1)
    return bytes(int(v, 0) & 0xFF for v in body.replace("\n", "").split(","))


@pytest.mark.parametrize("example", ["PatchInference", "MotionContinualCalibration"])
def test_committed_example_data_is_what_its_header_says(example):
    """The generated files the repository keeps are well formed and agree with each other."""
    from tfmot_edgeplus.export.arduino import _model_ops
    from tfmot_edgeplus.runtime.tflm import TFLMRunner

    folder = ROOT / "arduino" / "EdgePlus" / "examples" / example
    h, cpp = (folder / "edgeplus_model.h").read_text(), (folder / "edgeplus_model.cpp").read_text()
    d = _defines(h)
    assert "Generated by tfmot_edgeplus" in h and "made by: python -m" in h
    model = _array_bytes(cpp, "edgeplus_model")
    assert len(model) == int(d["EDGEPLUS_MODEL_BYTES"]) and model[4:8] == b"TFL3"
    builtins, customs = _model_ops(model)
    assert int(d["EDGEPLUS_MODEL_OPS"]) == len(builtins) + 2
    assert int(d["EDGEPLUS_HAS_PATCH_STAGE"]) == ("EDGEPLUS_PATCH_STAGE" in customs)
    x = np.frombuffer(_array_bytes(cpp, "edgeplus_test_input"), np.int8)
    assert x.size == int(d["EDGEPLUS_INPUT_ELEMENTS"])
    if not customs:  # runs in the pip interpreter as it is
        r = TFLMRunner(model)
        out = r.predict(x.reshape(r.input_details[0]["shape"]), dequantize=False)
        assert out.size == int(d["EDGEPLUS_OUTPUT_ELEMENTS"])
        assert r.arena_bytes <= int(d["EDGEPLUS_ARENA_BYTES"])
    if (folder / "edgeplus_qcore.h").exists():
        q = _defines((folder / "edgeplus_qcore.h").read_text())
        assert q["EDGEPLUS_QCORE_FEATURES"] == d["EDGEPLUS_OUTPUT_ELEMENTS"]


# ----------------------------------------------------------------------------- the commands


def test_export_commands(case, tmp_path):
    from click.testing import CliRunner

    from tfmot_edgeplus.cli import main

    lib = tmp_path / "EdgePlus"
    result = CliRunner().invoke(main, ["export", "arduino-library", "--out", str(lib)])
    assert result.exit_code == 0 and (lib / "src" / "EdgePlus.h").is_file(), result.output
    result = CliRunner().invoke(main, ["export", "arduino-library", "--out", str(lib)])
    assert result.exit_code != 0 and "pass --force" in result.output

    model, plan, x = tmp_path / "m.tflite", tmp_path / "m_plan.json", tmp_path / "x.npy"
    model.write_bytes(case["tfl"])
    plan.write_text(case["plan"].to_json())
    np.save(x, case["x"][3])
    args = ["export", "arduino", "--model", str(model), "--plan", str(plan), "--input", str(x),
            "--label", str(int(case["y"][3])), "--out", str(tmp_path / "Cli")]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "arduino-cli compile --fqbn arduino:mbed_nano:nano33ble" in result.output
    h = (tmp_path / "Cli" / "edgeplus_model.h").read_text()
    assert f"#define EDGEPLUS_TEST_LABEL {int(case['y'][3])}" in h
    result = CliRunner().invoke(main, [*args, "--sram-reserve", "250k"])
    assert result.exit_code != 0 and "already exists" in result.output
    result = CliRunner().invoke(main, [*args, "--sram-reserve", "250k", "--force"])
    assert result.exit_code != 0 and "too large for the Arduino Nano 33 BLE" in result.output
    assert (tmp_path / "Cli" / "Cli.ino").is_file()  # the refused export left the old one
