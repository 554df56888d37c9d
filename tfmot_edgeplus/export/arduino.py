"""Arduino output: the EdgePlus library package and ready sketch folders for the Nano 33 BLE.

::

    export_library("build/arduino/EdgePlus")                  # `make arduino`
    sk = export_sketch(model_bytes, "out/MySketch", plan=plan, qcore="qcore.npz")
    print(sk.summary()); print(sk.commands)

**The library** is ``arduino/EdgePlus/`` (library.properties, ``src/EdgePlus.h``, the C++ API
in ``src/edgeplus/``, the examples) plus what it shares with the host build, copied byte for
byte by :func:`export_library` (never kept twice in the repository): the C kernels
(``tflm_ops/include/edgeplus/*.h`` to ``src/edgeplus/``, ``tflm_ops/src`` to
``src/edgeplus/kernels/``, each ``.c`` after one ``#include`` of ``kernel_optimize.h``, which
compiles the kernels at -O3 in the core's -Os build: :data:`KERNEL_PRELUDE`) and the TFLM glue (``tflm_ops/tflm`` to ``src/edgeplus/tflm/``,
``.cc`` renamed ``.cpp`` because the Arduino builder compiles only ``.c``/``.cpp``/``.S``; the
Python registerer stays out).

**A sketch** (:func:`export_sketch`) is a folder ``NAME/`` with ``NAME.ino`` (the template
``sketch_template.ino``: runs the model on a test input from flash, prints the class, the
latency and the arena used; with a QCore, classifies with the calibrated head and runs one
calibration on the test input) and the data it includes, as aligned C arrays whose banners
record what produced them:

- ``edgeplus_model.h/.cpp``: the flatbuffer the device's TFLM runs (with a plan: the stage
  rewritten into one ``EDGEPLUS_PATCH_STAGE`` op; with a QCore: the backbone, the head runs
  in :class:`edgeplus::QCoreCalibrator`; each int8 MEAN over the spatial axes as
  AVERAGE_POOL_2D, + QUANTIZE and RESHAPE where needed, because the Arduino TFLM's MEAN rounds
  otherwise than the host's: :func:`rewrite_means`), its tensor arena size, input/output
  quantization, a test input, and ``EdgePlusAddModelOps(resolver)`` for the model's builtin
  and custom ops;
- ``edgeplus_qcore.h/.cpp`` (with a QCore): the head layers, flip networks, QCore and its
  guard, new-data memory, settings and the RAM the calibrator needs
  (:func:`~tfmot_edgeplus.calibration.device.device_bytes`), as an ``edgeplus::QCoreSpec``.

**Budget.** What a sketch has on the Nano 33 BLE, from the mbed core's own files
(ArduinoCore-mbed): 983,040 B of flash (``boards.txt`` ``upload.maximum_size``: the
``linker_script.ld`` FLASH region 0xf0000 after the 64 KB bootloader) and 262,144 B of RAM
(``maximum_data_size``). mbed-os takes its share first (:data:`MBED_RAM`: its main-thread
stack alone is 32 KB); the sketch's code is TFLM's, EdgePlus's and the template's
(:data:`SKETCH_CODE_FLASH`, measured). What cannot be derived here (mbed-os's code and its other
static RAM: the core's ``libmbed.a``) is an estimate (:data:`MBED_ESTIMATES`). The export
refuses a sketch that cannot fit with the derived and measured shares alone, saying by how
much, and warns (``figures["warnings"]``, the summary) when it fits only if the estimates
are high. ``flash_reserve`` / ``sram_reserve`` are what your own code adds to the template.

**Arena.** Measured on the host: the smallest arena in which the pinned TFLM allocates the
model (bisection), plus ``arena_margin`` bytes (the host's 64-bit structs are larger than the
M4's, so the host figure errs high). A model with the patch stage op needs the glue library
(``EDGEPLUS_TFLM_ROOT``); without it the figure is an estimate (the rest's smallest arena +
the stage input, its scratch and the op's copy of the program), and the banner says so.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from pathlib import Path

import numpy as np

from tfmot_edgeplus._version import __version__
from tfmot_edgeplus.calibration.bundle import QCoreBundle, load_qcore, sha256
from tfmot_edgeplus.calibration.device import device_bytes
from tfmot_edgeplus.calibration.head import split_head
from tfmot_edgeplus.core.intmath import quantize
from tfmot_edgeplus.core.packing import pack
from tfmot_edgeplus.core.tflite import TFLiteGraph, builtin_names, finish_model
from tfmot_edgeplus.export import c_arrays as C
from tfmot_edgeplus.patching import PatchPlan
from tfmot_edgeplus.patching.deploy import deploy_model, rest_model
from tfmot_edgeplus.patching.lower import lower
from tfmot_edgeplus.patching.patch_runner import glue_registerer
from tfmot_edgeplus.runtime import TFLMRunner, kernels

__all__ = [
    "BOARD_FQBN",
    "FLASH_BYTES",
    "MBED_RAM",
    "SRAM_BYTES",
    "TFLM_LIBRARY",
    "ExportError",
    "SketchExport",
    "export_library",
    "export_sketch",
    "mean_ops",
    "rewrite_means",
    "write_sketch_data",
]

BOARD_FQBN = "arduino:mbed_nano:nano33ble"
# The TFLM library, as its library.properties spells its name (what `arduino-cli lib install`
# and depends= take); its header is <Chirale_TensorFlowLite.h>.
TFLM_LIBRARY = "Chirale_TensorFLowLite"
TFLM_LIBRARY_VERSION = "2.0.0"
# ArduinoCore-mbed boards.txt: nano33ble.upload.maximum_size / maximum_data_size.
FLASH_BYTES = 983_040
SRAM_BYTES = 262_144
# mbed-os's RAM, derived from the core's variants/ARDUINO_NANO33BLE files.
MBED_RAM = {
    "main-thread stack (mbed_config.h MBED_CONF_RTOS_MAIN_THREAD_STACK_SIZE)": 32_768,
    "ISR stack (ldflags.txt MBED_BOOT_STACK_SIZE; linker_script.ld's 0x400 under the top)": 1_024,
    "RAM_NVIC + RAM_CRASH_DATA (linker_script.ld 0x100 + 0x100)": 512,
    "idle-thread stack (mbed_config.h 512 + 256 tickless extra)": 768,
    "timer-thread stack (mbed_config.h MBED_CONF_RTOS_TIMER_THREAD_STACK_SIZE)": 768,
}
# Code of TFLM (Chirale_TensorFLowLite 2.0.0 at the core's -Os), EdgePlus and the template's
# setup(): the largest linked for a test model was 139,976 B (an exported patch-stage sketch, once the
# conv kernels gained their lean and 2-bit paths; tests/test_arduino.py measures it, with
# newlib printf in place of the core's Serial, and fails when a model needs more).
SKETCH_CODE_FLASH = 140 * 1024
# Not derivable without the core's libmbed.a (absent from the sources we build against):
# mbed-os's and the Arduino core's code, and their other .data/.bss (USB serial, RTX objects,
# heap in use). Estimates, used only to warn.
MBED_ESTIMATES = {"flash": 96 * 1024, "ram": 12 * 1024}
# What the user's own code adds to the template (the export's --flash-reserve/--sram-reserve).
FLASH_RESERVE = 16 * 1024
SRAM_RESERVE = 4 * 1024
ARENA_MARGIN = 1024
MARKER = ".edgeplus-export"
_REPO = Path(__file__).resolve().parents[2]
_LIBRARY = _REPO / "arduino" / "EdgePlus"
_OPS = _REPO / "tflm_ops"
_TEMPLATE = Path(__file__).resolve().parent / "sketch_template.ino"
_GLUE = ("edgeplus_conv_mp.cc", "edgeplus_patch_stage_op.cc")
# Put in front of each copied kernel .c (src/edgeplus/kernels/): the kernels' own optimisation
# level in the core's -Os build (arduino/EdgePlus/src/edgeplus/kernel_optimize.h says why).
KERNEL_PRELUDE = b'#include "../kernel_optimize.h" /* added by edgeplus export arduino-library */\n'
# TFLM's own custom ops -> the name of their MicroMutableOpResolver Add<Name>() method
_TFLM_CUSTOM = {"TFLM_DECODE": "DECODE"}


class ExportError(ValueError):
    """An export that cannot be done as asked; the message says why and what to do."""


# ----------------------------------------------------------------------------- folders


def _check_folder(out: Path, force: bool, what: str) -> None:
    """Refuse an existing ``out`` unless ``force`` and an earlier export made it (its marker
    file), so nothing else is ever deleted."""
    if not out.exists():
        return
    if not force:
        raise ExportError(
            f"{what} folder {str(out)!r} already exists; pass --force (force=True) to "
            "replace it, or choose another folder"
        )
    if not (out / MARKER).is_file():
        raise ExportError(
            f"{str(out)!r} exists and was not written by an edgeplus export (no {MARKER} "
            "file), so --force will not delete it; remove it yourself or choose another folder"
        )


def _prepare_folder(out: Path, force: bool, what: str) -> None:
    """Create ``out`` empty (but for the marker), after :func:`_check_folder`."""
    _check_folder(out, force, what)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text(f"written by tfmot_edgeplus {what} export; safe to replace\n")


def library_files() -> dict[str, Path]:
    """Destination (relative to the library root) -> source file, for :func:`export_library`."""
    if not (_LIBRARY / "library.properties").is_file() or not (_OPS / "src").is_dir():
        raise ExportError(
            f"the EdgePlus library sources are not beside this package ({_LIBRARY}, "
            f"{_OPS}); export from a checkout of tfmot_edgeplus (pip install -e .)"
        )
    files = {
        str(p.relative_to(_LIBRARY)): p
        for p in sorted(_LIBRARY.rglob("*"))
        if p.is_file() and p.name != MARKER
    }
    for p in sorted((_OPS / "include" / "edgeplus").glob("*.h")):
        files[f"src/edgeplus/{p.name}"] = p
    for p in sorted((_OPS / "src").iterdir()):
        if p.suffix in (".c", ".h"):
            files[f"src/edgeplus/kernels/{p.name}"] = p
    for p in sorted((_OPS / "tflm").glob("*.h")):
        files[f"src/edgeplus/tflm/{p.name}"] = p
    for name in _GLUE:
        files[f"src/edgeplus/tflm/{Path(name).stem}.cpp"] = _OPS / "tflm" / name
    return files


def library_file_bytes(rel: str, src: Path) -> bytes:
    """What :func:`export_library` writes at ``rel`` from ``src``: its bytes, after
    :data:`KERNEL_PRELUDE` for a kernel .c."""
    data = src.read_bytes()
    if rel.startswith("src/edgeplus/kernels/") and rel.endswith(".c"):
        return KERNEL_PRELUDE + data
    return data


def export_library(out, force: bool = False) -> Path:
    """Write the installable EdgePlus library into folder ``out`` (see the module doc)."""
    out = Path(out)
    files = library_files()
    _prepare_folder(out, force, "Arduino library")
    for rel, src in files.items():
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(library_file_bytes(rel, src))
    return out


# ----------------------------------------------------------------------------- model facts


def _camel(builtin: str) -> str:
    """CONV_2D -> Conv2D, DEPTHWISE_CONV_2D -> DepthwiseConv2D: TFLM's Add<Op> names."""
    return "".join(
        part if part[:1].isdigit() else part[:1] + part[1:].lower() for part in builtin.split("_")
    )


def _model_ops(model_bytes: bytes) -> tuple[list[str], list[str]]:
    """(builtin operator names, custom codes) the model uses."""
    g = TFLiteGraph(model_bytes)
    known = set(builtin_names().values())
    names = {g.op_name(op) for op in g.operators}
    return sorted(names & known), sorted(names - known)


def mean_ops(model_bytes: bytes) -> int:
    """How many MEAN ops the model has. Chirale_TensorFLowLite 2.0.0's int8 MEAN (an older
    TFLM's) rescales in float, or divides the raw sum with truncation when input and output
    quantization are equal, where the pinned TFLM of the host uses an integer multiplier
    (QuantizedMeanOrSum): the board's outputs after a MEAN can differ from the host's by 1, and
    by more after the layers that follow (tests/test_arduino.py measures it)."""
    g = TFLiteGraph(model_bytes)
    return sum(g.op_name(op) == "MEAN" for op in g.operators)


# Why the export rewrites MEAN (the summary and the banner say it).
MEAN_REWRITE_WHY = (
    f"{TFLM_LIBRARY} {TFLM_LIBRARY_VERSION}'s int8 MEAN (an older TFLM's) rounds otherwise "
    "than the host's, while AVERAGE_POOL_2D, QUANTIZE and RESHAPE are the same code in both: "
    "the board's outputs match the host's bit for bit"
)


def _means_note(count: int) -> str:
    return (
        f"rewrote {count} int8 MEAN op(s) over the spatial axes as AVERAGE_POOL_2D (+ QUANTIZE, "
        f"RESHAPE): {MEAN_REWRITE_WHY}"
    )


def _builtin_opcode(g, name: str) -> int:
    """The index of builtin ``name``'s operator code in ``g``, added when the model has none."""
    code = int(getattr(g.schema.BuiltinOperator, name))
    for k, c in enumerate(g.model.operatorCodes):
        if max(int(c.builtinCode or 0), int(c.deprecatedBuiltinCode or 0)) == code:
            return k
    c = g.schema.OperatorCodeT()
    c.builtinCode, c.deprecatedBuiltinCode, c.version = code, min(code, 127), 1
    g.model.operatorCodes.append(c)
    return len(g.model.operatorCodes) - 1


def _spatial_mean(g, op) -> tuple[int, ...] | None:
    """The input as NHWC, (N, H, W, C), when ``op`` is an int8 MEAN over H and W of an NHWC
    tensor (axes {1, 2}) or over L of an NLC one (axis 1: H = L, W = 1), with one scale and
    zero point in and out; else None."""
    if g.op_name(op) != "MEAN" or len(op.inputs) != 2:
        return None
    x, axes, y = int(op.inputs[0]), int(op.inputs[1]), int(op.outputs[0])
    rank, data = len(g.shape(x)), g.data(axes)
    if (g.type_name(x), g.type_name(y), g.type_name(axes)) != ("INT8", "INT8", "INT32"):
        return None
    if data is None or rank not in (3, 4) or any(len(g.quant(t)[0]) != 1 for t in (x, y)):
        return None
    axes = sorted({int(a) % rank for a in data.view(np.int32)})
    if axes != list(range(1, rank - 1)) or len(data) // 4 != len(axes):
        return None
    nhwc = g.shape(x) if rank == 4 else (*g.shape(x)[:2], 1, g.shape(x)[2])
    n, _, _, c = nhwc
    if g.shape(y) not in ((n, 1, 1, c), (n, 1, c), (n, c)):
        return None
    return nhwc


def rewrite_means(model_bytes: bytes) -> tuple[bytes, int]:
    """(the model with each int8 MEAN over H x W of an NHWC tensor (or over L of an NLC one,
    after a RESHAPE to N x L x 1 x C) as AVERAGE_POOL_2D over the whole H x W with the input's
    quantization, then QUANTIZE to the MEAN's output scale and zero point when they differ,
    then RESHAPE to the MEAN's output shape when it differs; how many were rewritten).
    Why: :data:`MEAN_REWRITE_WHY`. Other MEANs stay (:func:`mean_ops` counts them)."""
    g = TFLiteGraph(model_bytes)
    s, sg = g.schema, g.subgraph
    ops, count = [], 0
    for op in sg.operators:
        nhwc = _spatial_mean(g, op)
        if nhwc is None:
            ops.append(op)
            continue
        count += 1
        x, y = int(op.inputs[0]), int(op.outputs[0])
        n, h, w, c = nhwc
        (s_in, z_in), (s_out, z_out) = g.quant(x), g.quant(y)
        pooled = (n, 1, 1, c)
        steps = [] if g.shape(x) == nhwc else [("RESHAPE", nhwc, (s_in, z_in))]
        steps.append(("AVERAGE_POOL_2D", pooled, (s_in, z_in)))
        if (s_in[0], z_in[0]) != (s_out[0], z_out[0]):
            steps.append(("QUANTIZE", pooled, (s_out, z_out)))
        if g.shape(y) != pooled:
            steps.append(("RESHAPE", g.shape(y), (s_out, z_out)))
        src = x
        for k, (name, shape, (scale, zp)) in enumerate(steps):
            if k == len(steps) - 1:
                dst = y
            else:
                t = s.TensorT()
                t.shape, t.type = np.asarray(shape, np.int32), s.TensorType.INT8
                t.name = f"{g.tensor_name(y)}/edgeplus_{k}_{name.lower()}"
                t.quantization = s.QuantizationParametersT()
                t.quantization.scale = [float(scale[0])]
                t.quantization.zeroPoint = [int(zp[0])]
                sg.tensors.append(t)
                dst = len(sg.tensors) - 1
            new = s.OperatorT()
            new.opcodeIndex, new.inputs, new.outputs = _builtin_opcode(g, name), [src], [dst]
            if name == "AVERAGE_POOL_2D":
                o = s.Pool2DOptionsT()
                o.padding, o.strideW, o.strideH = s.Padding.VALID, 1, 1
                o.filterHeight, o.filterWidth = h, w
                new.builtinOptionsType, new.builtinOptions = s.BuiltinOptions.Pool2DOptions, o
            elif name == "RESHAPE":
                b = s.BufferT()
                b.data = np.asarray(shape, np.int32).view(np.uint8)
                g.model.buffers.append(b)
                t = s.TensorT()
                t.shape, t.type = np.asarray([len(shape)], np.int32), s.TensorType.INT32
                t.buffer = len(g.model.buffers) - 1
                t.name = f"{g.tensor_name(y)}/edgeplus_{k}_shape"
                sg.tensors.append(t)
                new.inputs = [src, len(sg.tensors) - 1]
                o = s.ReshapeOptionsT()
                o.newShape = list(shape)
                new.builtinOptionsType, new.builtinOptions = s.BuiltinOptions.ReshapeOptions, o
            ops.append(new)
            src = dst
    if not count:
        return bytes(model_bytes), 0
    sg.operators = ops
    return finish_model(g), count


def _io(runner, which: str) -> dict:
    d = (runner.input_details if which == "input" else runner.output_details)[0]
    scale, zp = d["quantization"]
    return {
        "shape": tuple(int(s) for s in d["shape"]),
        "elements": int(np.prod(d["shape"])),
        "dtype": np.dtype(d["dtype"]).name,
        "scale": float(scale),
        "zero_point": int(zp),
    }


@dataclasses.dataclass
class _Device:
    """What the device runs: the flatbuffer, its figures, and where they came from."""

    model: bytes
    arena_bytes: int
    arena_source: str
    input: dict
    output: dict
    builtins: list
    customs: list
    means_rewritten: int = 0


def _device_model(model_bytes: bytes, lowered, head) -> _Device:
    device = model_bytes if lowered is None else deploy_model(model_bytes, lowered)
    if head is not None:  # the backbone; check_model has cut the undeployed one already
        device = head.backbone if lowered is None else split_head(device, len(head.layers)).backbone
    device, means = rewrite_means(device)
    builtins, customs = _model_ops(device)
    builtins += [_TFLM_CUSTOM[c] for c in customs if c in _TFLM_CUSTOM]  # e.g. 2/3-bit weights
    customs = [c for c in customs if c not in _TFLM_CUSTOM]
    unknown = [c for c in customs if not c.startswith("EDGEPLUS_")]
    if unknown:
        raise ExportError(
            f"the model uses custom op(s) {unknown} that the EdgePlus library does not provide; "
            "register them yourself or convert the model without them"
        )
    registerer = glue_registerer() if customs else None
    if customs and registerer is None:
        # no glue library on this host: the rest after the split, plus what the op adds
        rest = TFLMRunner(rewrite_means(rest_model(model_bytes, lowered))[0])
        t0 = lowered.program.tensors[0]
        stage = kernels.get_kernels().patch_stage_get_buffer_size(lowered.program)
        program = 4 * lowered.program.to_words().size + 8 * len(lowered.filters)
        arena = rest.min_arena_size() + t0.h * t0.w * t0.c + stage + program
        source = (
            "estimate without the TFLM glue library: the rest's smallest arena + the stage "
            "input, scratch and program copy"
        )
        io_in, io_out = _io(TFLMRunner(model_bytes), "input"), _io(rest, "output")
    else:
        runner = TFLMRunner(device, custom_op_registerers=[registerer] if registerer else [])
        arena = runner.min_arena_size()
        source = "host TFLM: the smallest arena that allocates (bisection)"
        io_in, io_out = _io(runner, "input"), _io(runner, "output")
    if io_in["dtype"] != "int8":
        raise ExportError(
            f"the model's input is {io_in['dtype']}, the sketch feeds int8: convert it "
            "full-integer with int8 input (tfmot_edgeplus.convert does)"
        )
    arena = -(-(int(arena) + ARENA_MARGIN) // 16) * 16
    return _Device(device, arena, source, io_in, io_out, builtins, customs, means)


# ----------------------------------------------------------------------------- QCore


def _qcore_files(bundle, head, chunk: int, banner: str) -> tuple[str, str, dict]:
    """(edgeplus_qcore.h, edgeplus_qcore.cpp, figures)."""
    n = len(head.layers)
    ram = device_bytes(
        head, bundle.nets, bundle.core_size, bundle.memory_size, bundle.max_steps, chunk
    )["total_bytes"]
    flash = 0
    h = [
        banner,
        "#ifndef EDGEPLUS_QCORE_DATA_H_\n#define EDGEPLUS_QCORE_DATA_H_\n\n",
        "#include <EdgePlus.h>\n\n",
        "/* new samples kept between two calibrations (QCoreCalibrator::begin's chunk) */\n",
        f"#define EDGEPLUS_QCORE_CHUNK {chunk}\n",
        "/* RAM of QCoreCalibrator::begin for that chunk (== QCoreCalibrator::ramBytes) */\n",
        f"#define EDGEPLUS_QCORE_RAM_BYTES {ram}\n",
        f"#define EDGEPLUS_QCORE_FEATURES {head.input_size}\n",
        f"#define EDGEPLUS_QCORE_CLASSES {head.num_classes}\n",
        f"#define EDGEPLUS_QCORE_FEATURE_SCALE {C.c_float(head.layers[0].input_scale)}\n",
        f"#define EDGEPLUS_QCORE_FEATURE_ZERO_POINT {int(head.layers[0].input_zero_point)}\n",
    ]
    cpp = [banner, '#include "edgeplus_qcore.h"\n\n']
    if bundle.input_mean is not None:
        k = len(bundle.input_mean)
        h += [
            "\n/* per-channel input normalisation of the training data: (x - mean) / std */\n",
            f"#define EDGEPLUS_INPUT_CHANNELS {k}\n",
            C.declaration("float", "edgeplus_input_mean", k),
            C.declaration("float", "edgeplus_input_std", k),
        ]
        cpp += [
            C.definition("float", "edgeplus_input_mean", bundle.input_mean, align=4),
            C.definition("float", "edgeplus_input_std", bundle.input_std, align=4),
        ]
    h += ["\nextern const edgeplus::QCoreSpec kEdgePlusQCore;\n", "\n#endif\n"]
    specs = []
    for l, layer in enumerate(head.layers):
        out, fan_in = layer.shape
        packed = pack(np.asarray(layer.weights, np.int8), layer.bits)
        cpp += [
            f"\n/* head layer {l}: {layer.name}, {out} x {fan_in}, W{layer.bits} */\n",
            C.definition("int8_t", f"w{l}", packed, static=True),
            C.definition("int32_t", f"bias{l}", layer.bias, static=True),
            C.definition("int32_t", f"mult{l}", layer.multiplier, static=True),
            C.definition("int32_t", f"shift{l}", layer.shift, static=True),
        ]
        flash += packed.size + 12 * out
        net = bundle.nets.get(l)
        ref = "nullptr"
        if net is not None:
            cpp += [
                C.definition("int8_t", f"net{l}_w1", net.w1, static=True),
                C.definition("int32_t", f"net{l}_b1", net.b1, static=True),
                C.definition("int8_t", f"net{l}_w2", net.w2, static=True),
                (
                    f"static const edgeplus_flipnet net{l} = {{{net.hidden}, net{l}_w1, net{l}_b1, "
                    f"{C.c_int(net.m1)}, {C.c_int(net.s1)}, net{l}_w2, {C.c_int(net.b2)}, "
                    f"{C.c_int(net.threshold)}}};\n"
                ),
            ]
            flash += net.nbytes
            ref = f"&net{l}"
        specs.append(
            f"  {{{out}, {fan_in}, {layer.bits}, w{l}, bias{l}, mult{l}, shift{l}, "
            f"{int(layer.input_zero_point)}, {int(layer.output_zero_point)}, "
            f"{int(layer.act_min)}, {int(layer.act_max)}, {ref}}}"
        )
    k, m = len(bundle.core_y), len(bundle.memory_y)
    cpp += [
        "\nstatic const edgeplus::QCoreLayerSpec layers["
        + str(n)
        + "] = {\n"
        + ",\n".join(specs)
        + "\n};\n\n",
        (
            f"/* the QCore: {k} items of the training data (head inputs) and labels, fixed; a "
            f"step is kept only if {bundle.guard_min_correct} of them stay right, a guard that "
            f"ratchets up to the items right after each calibration less {bundle.guard_slack} "
            f"(old_tolerance {bundle.old_tolerance:g}) */\n"
        ),
        C.definition("int8_t", "core_x", bundle.core_x, static=True),
        C.definition("int32_t", "core_y", bundle.core_y, static=True),
    ]
    memory = "nullptr, nullptr, nullptr"
    if m:
        cpp += [
            f"/* the new-data memory: {m} items, labels and miss counts */\n",
            C.definition("int8_t", "memory_x", bundle.memory_x, static=True),
            C.definition("int32_t", "memory_y", bundle.memory_y, static=True),
            C.definition("int32_t", "memory_counts", bundle.memory_counts, static=True),
        ]
        memory = "memory_x, memory_y, memory_counts"
    cpp.append(
        "\nconst edgeplus::QCoreSpec kEdgePlusQCore = {\n"
        f"  {n}, layers, {bundle.margin}, {bundle.tries}, {bundle.max_steps},\n"
        f"  {bundle.core_x.shape[1]}, {bundle.classes},  /* what the items were stored for */\n"
        f"  {bundle.core_size}, {k}, core_x, core_y, {bundle.guard_min_correct}, "
        f"{bundle.guard_slack},\n"
        f"  {bundle.memory_size}, {m}, {memory},\n"
        f"  {bundle.rng_state & 0xFFFFFFFF}u\n"
        "};\n"
    )
    flash += bundle.core_x.size + 4 * k + bundle.memory_x.size + 8 * m
    return "".join(h), "".join(cpp), {"qcore_ram_bytes": ram, "qcore_flash_bytes": flash}


# ----------------------------------------------------------------------------- the sketch


def _model_files(dev: _Device, test_input, test_label: int, class_names, banner: str):
    h = [
        banner,
        "#ifndef EDGEPLUS_MODEL_DATA_H_\n#define EDGEPLUS_MODEL_DATA_H_\n\n#include <stdint.h>\n\n",
        f"#define EDGEPLUS_MODEL_BYTES {len(dev.model)}\n",
        f"/* TFLM tensor arena: {dev.arena_source}, + {ARENA_MARGIN} B, to 16 */\n",
        f"#define EDGEPLUS_ARENA_BYTES {dev.arena_bytes}\n",
        f"#define EDGEPLUS_INPUT_ELEMENTS {dev.input['elements']}\n",
        f"#define EDGEPLUS_INPUT_SCALE {C.c_float(dev.input['scale'])}\n",
        f"#define EDGEPLUS_INPUT_ZERO_POINT {dev.input['zero_point']}\n",
        f"#define EDGEPLUS_OUTPUT_ELEMENTS {dev.output['elements']}\n",
        f"#define EDGEPLUS_OUTPUT_SCALE {C.c_float(dev.output['scale'])}\n",
        f"#define EDGEPLUS_OUTPUT_ZERO_POINT {dev.output['zero_point']}\n",
        f"#define EDGEPLUS_HAS_PATCH_STAGE {int('EDGEPLUS_PATCH_STAGE' in dev.customs)}\n",
        "/* the test input's label (-1: unknown) */\n",
        f"#define EDGEPLUS_TEST_LABEL {int(test_label)}\n\n",
        C.declaration("unsigned char", "edgeplus_model", len(dev.model)),
        C.declaration("int8_t", "edgeplus_test_input", dev.input["elements"]),
        f"\n/* class names ({len(class_names)}; none: the sketch prints indices) */\n",
        f"#define EDGEPLUS_CLASS_COUNT {len(class_names)}\n",
        f"extern const char* const edgeplus_class_names[{max(len(class_names), 1)}];\n",
        "\n/* resolver slots of EdgePlusAddModelOps: the model's builtins + edgeplus::kNumOps */\n",
        f"#define EDGEPLUS_MODEL_OPS {len(dev.builtins) + 2}\n\n",
        "#if defined(__cplusplus) && !defined(EDGEPLUS_NO_TFLM)\n",
        "#include <EdgePlus.h>\n\n",
        f"/* The model's operators: {', '.join(dev.builtins + dev.customs)}. */\n",
        "template <unsigned int N>\n",
        "TfLiteStatus EdgePlusAddModelOps(tflite::MicroMutableOpResolver<N>& resolver) {\n",
    ]
    h += [
        f"  if (resolver.Add{_camel(b)}() != kTfLiteOk) return kTfLiteError;\n"
        for b in dev.builtins
    ]
    h += ["  return edgeplus::AddOps(resolver);\n}\n#endif\n\n#endif\n"]
    cpp = [
        banner,
        '#include "edgeplus_model.h"\n\n',
        C.definition("unsigned char", "edgeplus_model", np.frombuffer(dev.model, np.uint8)),
        "\n",
        C.definition("int8_t", "edgeplus_test_input", test_input),
        "\nconst char* const edgeplus_class_names[] = {"
        + (", ".join(_c_string(n) for n in class_names) or "nullptr")
        + "};\n",
    ]
    return "".join(h), "".join(cpp)


def _c_string(text: str) -> str:
    if not re.fullmatch(r"[ -~]*", text) or '"' in text or "\\" in text:
        raise ExportError(f"class name {text!r}: use printable ASCII without quotes or backslashes")
    return f'"{text}"'


@dataclasses.dataclass
class SketchExport:
    """What :func:`export_sketch` wrote and measured."""

    folder: Path
    files: list
    figures: dict
    commands: str

    def summary(self) -> str:
        f = self.figures
        lines = [f"sketch {self.folder}: {', '.join(self.files)}"]
        lines.append(
            f"  flash: model {f['model_bytes']:,} B + QCore {f['qcore_flash_bytes']:,} B + test "
            f"input {f['test_input_bytes']:,} B = {f['flash_data_bytes']:,} B of {FLASH_BYTES:,}"
        )
        lines.append(
            f"  SRAM: arena {f['arena_bytes']:,} B + QCore {f['qcore_ram_bytes']:,} B = "
            f"{f['sram_data_bytes']:,} B of {SRAM_BYTES:,}"
        )
        lines.append(
            f"  board: flash {f['flash_bytes']:,} B of {FLASH_BYTES:,} with TFLM/EdgePlus code "
            f"{f['code_flash_bytes']:,} B, RAM {f['ram_bytes']:,} B of {SRAM_BYTES:,} with "
            f"mbed-os stacks {f['mbed_ram_bytes']:,} B (+ your reserves); mbed-os's code "
            f"(~{MBED_ESTIMATES['flash']:,} B) and other RAM (~{MBED_ESTIMATES['ram']:,} B) are "
            "estimates"
        )
        if f.get("means_rewritten"):
            lines.append(f"  {_means_note(f['means_rewritten'])}")
        lines += [f"  WARNING {w}" for w in f["warnings"]]
        return "\n".join(lines)


def _commands(folder: Path) -> str:
    lib = _REPO / "build" / "arduino" / "EdgePlus"
    return "\n".join(
        [
            "arduino-cli core install arduino:mbed_nano",
            f"arduino-cli lib install {TFLM_LIBRARY}@{TFLM_LIBRARY_VERSION} Arduino_LSM9DS1",
            f"make arduino        # the EdgePlus library, into {lib}",
            f"arduino-cli compile --fqbn {BOARD_FQBN} --library {lib} {folder}",
            f"arduino-cli upload -p /dev/ttyACM0 --fqbn {BOARD_FQBN} {folder}",
            "arduino-cli monitor -p /dev/ttyACM0 -c baudrate=115200",
        ]
    )


def _load_inputs(model, plan, qcore):
    if isinstance(model, (str, os.PathLike)):
        if not os.path.isfile(model):
            raise ExportError(f"model file {os.fspath(model)!r} not found")
        with open(model, "rb") as f:
            model = f.read()
    model = bytes(model)
    if isinstance(plan, (str, os.PathLike)):
        path = os.fspath(plan)
        if not os.path.isfile(path):
            raise ExportError(f"plan file {path!r} not found")
        with open(path) as f:
            plan = PatchPlan.from_json(f.read())
    if qcore is not None and not isinstance(qcore, QCoreBundle):
        qcore = load_qcore(qcore)
    return model, plan, qcore


def write_sketch_data(
    folder,
    model,
    plan=None,
    qcore=None,
    *,
    chunk: int = 20,
    test_input=None,
    test_label: int = -1,
    class_names=(),
    flash_reserve: int = FLASH_RESERVE,
    sram_reserve: int = SRAM_RESERVE,
    provenance: dict | None = None,
) -> tuple[list[str], dict]:
    """Write ``edgeplus_model.h/.cpp`` (and ``edgeplus_qcore.h/.cpp`` with a QCore) into the
    existing ``folder``; return (file names, figures). See :func:`export_sketch`."""
    model, plan, bundle = _load_inputs(model, plan, qcore)
    head = None
    if bundle is not None:
        try:
            head = bundle.check_model(model)
        except ValueError as e:
            raise ExportError(str(e)) from None
        if not 1 <= int(chunk) <= 4096:
            raise ExportError(f"chunk must be in [1, 4096] samples per calibration, got {chunk}")
    lowered = None
    if plan is not None:
        try:
            plan.check(model)
            lowered = lower(model, plan)
        except ValueError as e:
            raise ExportError(f"the plan does not fit this model: {e}") from None
    dev = _device_model(model, lowered, head)
    if head is not None:  # the device model ends at the head's input
        dev.output = {**dev.output, "elements": head.input_size,
                      "scale": float(head.layers[0].input_scale),
                      "zero_point": int(head.layers[0].input_zero_point)}  # fmt: skip
    n_in = dev.input["elements"]
    if test_input is None:
        x = np.full(n_in, dev.input["zero_point"], np.int8)
    else:
        x = np.asarray(test_input)
        if x.size != n_in:
            raise ExportError(
                f"the test input has {x.size} values, the model's input {dev.input['shape']} "
                f"has {n_in}"
            )
        if x.dtype != np.int8:
            x = quantize(x.astype(np.float32), dev.input["scale"], dev.input["zero_point"], np.int8)
        x = np.asarray(x, np.int8).reshape(-1)
    sources = {"model": f"{len(model):,} B, sha256 {sha256(model)}"}
    if plan is not None:
        sources["plan"] = (
            f"split {plan.split}, grid {plan.grid}, sha256 {sha256(plan.to_json().encode())}"
        )
    if bundle is not None:
        sources["qcore"] = (
            f"{os.path.basename(bundle.path) or '(in memory)'}, backbone sha256 "
            f"{bundle.backbone_sha256}"
        )
    banner_fields = {"tool": f"tfmot_edgeplus {__version__}", "date": C.utc_now(), **sources}
    if dev.means_rewritten:
        banner_fields["rewritten"] = _means_note(dev.means_rewritten)
    banner_fields.update(provenance or {})
    files = {}
    files["edgeplus_model.h"], files["edgeplus_model.cpp"] = _model_files(
        dev,
        x,
        test_label,
        list(class_names),
        C.banner("The model the device runs, for TFLM.", banner_fields),
    )
    figures = {"qcore_ram_bytes": 0, "qcore_flash_bytes": 0}
    if bundle is not None:
        qh, qc, qf = _qcore_files(
            bundle, head, int(chunk), C.banner("The QCore calibrator's data.", banner_fields)
        )
        files["edgeplus_qcore.h"], files["edgeplus_qcore.cpp"] = qh, qc
        figures.update(qf)
    figures.update(
        model_bytes=len(dev.model),
        test_input_bytes=int(x.size),
        arena_bytes=dev.arena_bytes,
        arena_source=dev.arena_source,
        operators=dev.builtins + dev.customs,
        means_rewritten=dev.means_rewritten,
    )
    figures["flash_data_bytes"] = (
        figures["model_bytes"] + figures["qcore_flash_bytes"] + figures["test_input_bytes"]
    )
    figures["sram_data_bytes"] = figures["arena_bytes"] + figures["qcore_ram_bytes"]
    figures["warnings"] = []
    if mean_ops(dev.model):
        figures["warnings"].append(
            f"{mean_ops(dev.model)} MEAN op(s) not over the spatial axes stay MEAN: "
            f"{TFLM_LIBRARY} {TFLM_LIBRARY_VERSION}'s int8 MEAN rounds otherwise than the "
            "host's TFLM (float rescaling, or truncation): the board's outputs after it can "
            "differ from the host's by 1 or 2"
        )
    _check_budget(figures, flash_reserve, sram_reserve)
    for name, text in files.items():
        Path(folder, name).write_text(text)
    return list(files), figures


def _check_budget(f: dict, flash_reserve: int, sram_reserve: int) -> None:
    """Add the board totals to ``f`` (module doc, Budget); refuse a sketch that cannot fit with
    the derived and measured shares, warn when it fits only within mbed-os's estimates."""
    mbed_ram = sum(MBED_RAM.values())
    f["mbed_ram_bytes"], f["code_flash_bytes"] = mbed_ram, SKETCH_CODE_FLASH
    f["flash_bytes"] = f["flash_data_bytes"] + SKETCH_CODE_FLASH + flash_reserve
    f["ram_bytes"] = f["sram_data_bytes"] + mbed_ram + sram_reserve
    problems, warnings = [], f.setdefault("warnings", [])
    if f["flash_bytes"] > FLASH_BYTES:
        problems.append(
            f"flash: model {f['model_bytes']:,} B + QCore {f['qcore_flash_bytes']:,} B + test "
            f"input {f['test_input_bytes']:,} B + TFLM/EdgePlus code {SKETCH_CODE_FLASH:,} B + "
            f"--flash-reserve {flash_reserve:,} B = {f['flash_bytes']:,} B, over the board's "
            f"{FLASH_BYTES:,} B by {f['flash_bytes'] - FLASH_BYTES:,} B (mbed-os's code not "
            "counted yet)"
        )
    if f["ram_bytes"] > SRAM_BYTES:
        problems.append(
            f"SRAM: arena {f['arena_bytes']:,} B + QCore calibrator {f['qcore_ram_bytes']:,} B "
            f"+ mbed-os stacks {mbed_ram:,} B + --sram-reserve {sram_reserve:,} B = "
            f"{f['ram_bytes']:,} B, over the board's {SRAM_BYTES:,} B by "
            f"{f['ram_bytes'] - SRAM_BYTES:,} B"
        )
    if problems:
        raise ExportError(
            "too large for the Arduino Nano 33 BLE:\n  " + "\n  ".join(problems) + "\nShrink "
            "the model (lower bits, a patch plan: edgeplus plan), a smaller QCore chunk, or "
            "lower --flash-reserve / --sram-reserve if your sketch needs less"
        )
    for what, used, board in (("flash", f["flash_bytes"], FLASH_BYTES),
                              ("ram", f["ram_bytes"], SRAM_BYTES)):  # fmt: skip
        est = MBED_ESTIMATES[what]
        if used + est > board:
            warnings.append(
                f"{'flash' if what == 'flash' else 'SRAM'}: {used:,} B of {board:,} B leaves "
                f"{board - used:,} B for mbed-os's {'code' if what == 'flash' else 'other RAM'}, "
                f"estimated at {est:,} B: the sketch may not fit by {used + est - board:,} B; "
                "check arduino-cli compile's report"
            )


def export_sketch(
    model,
    out,
    plan=None,
    qcore=None,
    *,
    chunk: int = 20,
    test_input=None,
    test_label: int = -1,
    class_names=(),
    force: bool = False,
    flash_reserve: int = FLASH_RESERVE,
    sram_reserve: int = SRAM_RESERVE,
) -> SketchExport:
    """Write a ready sketch folder ``out`` for the Nano 33 BLE (see the module doc).

    ``model``: the int8 .tflite (bytes or path) the plan and the QCore were made for;
    ``plan``: a :class:`~tfmot_edgeplus.patching.PatchPlan` or its JSON file, or None;
    ``qcore``: a :class:`~tfmot_edgeplus.calibration.QCoreBundle` or its .npz, or None;
    ``chunk``: labeled samples the device keeps between calibrations; ``test_input``: one
    input (float, quantized with the model's input scale, or int8), default all zero points;
    ``class_names``: printed by the sketch instead of indices.
    Everything is checked before the folder is touched."""
    out = Path(out)
    name = out.name
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", name):
        raise ExportError(
            f"sketch folder name {name!r} is not a valid Arduino sketch name (letters, digits, "
            "_ - . , starting with a letter or digit, at most 63 characters)"
        )
    _check_folder(out, force, "sketch")  # before any work
    staging = out.with_name(f".{name}.staging")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        files, figures = write_sketch_data(
            staging, model, plan, qcore, chunk=chunk, test_input=test_input,
            test_label=test_label, class_names=class_names, flash_reserve=flash_reserve,
            sram_reserve=sram_reserve,
        )  # fmt: skip
        _prepare_folder(out, force, "sketch")
        for f in files:
            shutil.move(str(staging / f), str(out / f))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    shutil.copyfile(_TEMPLATE, out / f"{name}.ino")
    return SketchExport(out, [f"{name}.ino", *files], figures, _commands(out))
