"""Building the EdgePlus Arduino library, its examples and exported sketches with plain
arm-none-eabi-gcc/g++ for the Nano 33 BLE's core (tests/test_arduino.py).

The Arduino IDE compiles every .c/.cpp under a library's src/ and a sketch folder, with the
library's src/ on the include path and Arduino.h included first into the .ino. Here the same
files compile with the stand-ins of tests/arduino (Arduino.h, Arduino_LSM9DS1.h,
Chirale_TensorFlowLite.h) and, when EDGEPLUS_TFLM_ROOT and its siblings are set, the TFLM
headers of the pinned commit; without them only the TFLM-free parts (kernels, PatchStage,
QCoreCalibrator, the exported data) are compiled, and the programs linked and run in QEMU with
these stand-ins are the TFLM-free ones.

The second half (the real core) builds with ArduinoCore-mbed's own recipes and the
Chirale_TensorFLowLite library instead of stand-ins, and links that library's TFLM into a
bare-metal M4 program: the recipes, that library's build, the link and the QEMU run are in
benchmarks/_tflm_m4.py (the deploy benchmark uses them too; re-exported here), the sketch
steps (.ino -> .cpp, the sketch's jobs, warnings) below."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks._tflm_m4 import (  # noqa: F401  (re-exported for the tests)
    BOARD,
    CPU,
    M4,
    ROOT,
    ArduinoCore,
    BuildError,
    arduino_core,
    arduino_tflm,
    arduino_tflm_library,
    compile_with_core,
    library_sources,
    link,
    run_qemu,
)
from benchmarks._tflm_m4 import run_tool as _run

STANDINS = ROOT / "tests" / "arduino"
COMMON = [*CPU, "-O2", "-ffunction-sections", "-fdata-sections", "-Wall", "-Wextra",
          "-Wno-unused-parameter"]  # fmt: skip
CXX_FLAGS = ["-std=gnu++17", "-fno-exceptions", "-fno-rtti", "-fno-threadsafe-statics"]
TFLM_DEFS = ["-DTF_LITE_STATIC_MEMORY=1", "-DUSE_TFLM_COMPRESSION=1",
             "-DFLATBUFFERS_LOCALE_INDEPENDENT=0"]  # fmt: skip
TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-g++", "arm-none-eabi-size", "qemu-system-arm")


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def tflm_includes() -> list[str] | None:
    """-I flags of the TFLM, flatbuffers and gemmlowp sources, or None when not all are set."""
    dirs = [
        ("EDGEPLUS_TFLM_ROOT", "", "tensorflow/lite/micro/micro_common.h"),
        ("EDGEPLUS_FLATBUFFERS_ROOT", "include", "include/flatbuffers/flexbuffers.h"),
        ("EDGEPLUS_GEMMLOWP_ROOT", "", "fixedpoint/fixedpoint.h"),
    ]
    flags = []
    for var, sub, probe in dirs:
        root = os.environ.get(var)
        if not root or not (Path(root) / probe).is_file():
            return None
        flags.append(f"-I{Path(root) / sub}")
    return flags


def compile_one(src: Path, obj: Path, includes: list[str], defines=(), tflm=False) -> Path:
    obj.parent.mkdir(parents=True, exist_ok=True)
    if src.suffix == ".c":
        cmd = ["arm-none-eabi-gcc", "-std=c99", *COMMON]
    else:
        cmd = ["arm-none-eabi-g++", *CXX_FLAGS, *COMMON]
        if src.suffix == ".ino":  # what the Arduino builder does to a sketch
            cmd += ["-x", "c++", "-include", "Arduino.h"]
    cmd += [*(TFLM_DEFS if tflm else []), *defines, *includes, "-c", str(src), "-o", str(obj)]
    _run(cmd)
    return obj


def compile_all(jobs: list[tuple], workers: int = 2) -> list[Path]:
    """Compile ``(src, obj, includes, defines, tflm)`` jobs, two at a time."""
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda j: compile_one(*j), jobs))


def harness_sources() -> list[Path]:
    return [M4 / "startup.c", M4 / "m4_timer.c", STANDINS / "arduino_stub.cpp"]


SAN = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
       "-fno-omit-frame-pointer"]  # fmt: skip


def build_host_sanitized(sources: list[Path], includes: list[str], defines, out: Path) -> Path:
    """The same program natively (gcc/g++, the kernels' plain-C path) under AddressSanitizer
    and UBSan: a host reference that also catches out-of-bounds accesses."""
    objs = []
    for i, src in enumerate(sources):
        obj = out.parent / "host" / f"{i}_{src.stem}.o"
        obj.parent.mkdir(parents=True, exist_ok=True)
        cc = ["gcc", "-std=c99"] if src.suffix == ".c" else ["g++", "-std=gnu++17"]
        _run([*cc, *SAN, "-Wall", *defines, *includes, "-c", str(src), "-o", str(obj)])
        objs.append(obj)
    _run(["g++", *SAN, *map(str, objs), "-lm", "-o", str(out)])
    return out


def run_host(exe: Path) -> str:
    p = subprocess.run([str(exe)], capture_output=True, text=True, check=False, timeout=120)
    if p.returncode != 0:
        raise BuildError(f"{exe} exit status {p.returncode}:\n{p.stdout[-3000:]}\n{p.stderr}")
    return p.stdout


# The .ino -> .cpp step. arduino-cli runs ctags over the preprocessed sketch and declares, before
# the first function definition, every function defined at global scope (not in a class,
# struct or namespace) that has no prototype yet; #line keeps messages on the .ino's lines.
_FUNC = re.compile(r"^(?!(?:namespace|class|struct|union|enum|extern|template)\b)"
                   r"[A-Za-z_][\w:<>,\s\*&]*?\b([A-Za-z_]\w*)\s*\([^;{}]*\)\s*(?:const\s*)?$")


def _blank(m: re.Match) -> str:
    return re.sub(r"[^\n]", " ", m.group(0))


def _global_functions(text: str) -> list[tuple[int, str, str]]:
    """(line, name, prototype) of the functions defined at global scope, in order."""
    code = re.sub(r"//[^\n]*|/\*.*?\*/|\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'", _blank, text,
                  flags=re.DOTALL)  # fmt: skip
    code = re.sub(r"^[ \t]*#[^\n]*", _blank, code, flags=re.MULTILINE)  # preprocessor lines
    out, depth, start = [], 0, 0
    for i, ch in enumerate(code):
        if ch == "{" and depth == 0:
            head = code[start:i].strip()
            m = _FUNC.match(head)
            if m:
                line = code.count("\n", 0, start + len(code[start:i]) - len(code[start:i].lstrip()))
                out.append((line + 1, m.group(1), re.sub(r"\s+", " ", head) + ";"))
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if depth == 0 and ch in ";{}":
            start = i + 1
    return out


def ino_to_cpp(ino: Path, out: Path) -> Path:
    """Write ``out`` (NAME.ino.cpp) from the sketch ``ino`` as arduino-cli does."""
    text = ino.read_text()
    funcs = _global_functions(text)
    declared = set(re.findall(r"\b(\w+)\s*\([^;{}()]*\)\s*;", re.sub(r"\{[^{}]*\}", "", text)))
    protos = [(n, p) for n, name, p in funcs if name not in declared]
    lines = text.splitlines(keepends=True)
    where = f'"{ino}"'
    parts = ["#include <Arduino.h>\n", f"#line 1 {where}\n"]
    if protos:
        first = funcs[0][0]
        parts += lines[: first - 1]
        for n, p in protos:
            parts += [f"#line {n} {where}\n", f"{p}\n"]
        parts += [f"#line {first} {where}\n", *lines[first - 1 :]]
    else:
        parts += lines
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(parts))
    return out


_WARNING = re.compile(r"^(?P<file>[^\s:][^:]*):(?P<line>\d+):(?:\d+:)? warning: ", re.MULTILINE)


def warnings_in(messages: str, roots: list[Path]) -> list[str]:
    """The warning lines of ``messages`` about files under ``roots``."""
    roots = [str(r.resolve()) for r in roots]
    found = []
    for m in _WARNING.finditer(messages):
        path = str(Path(m.group("file")).resolve())
        if any(path.startswith(r) for r in roots):
            found.append(messages[m.start() : messages.find("\n", m.start())])
    return found


def sketch_jobs(folder: Path, build: Path) -> list[tuple[Path, Path]]:
    """(source, object) of a sketch folder as arduino-cli builds it: the folder copied to
    build/sketch, NAME.ino turned into NAME.ino.cpp there, every .c/.cpp compiled."""
    copy = build / "sketch"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(folder, copy)
    inos = sorted(copy.glob("*.ino"))
    main = copy / f"{folder.name}.ino"
    if main not in inos or len(inos) != 1:
        raise BuildError(f"{folder}: expected exactly one sketch file {folder.name}.ino")
    srcs = [ino_to_cpp(folder / main.name, copy / f"{main.name}.cpp")]
    srcs += sorted(p for p in copy.iterdir() if p.suffix in (".c", ".cpp") and p not in srcs)
    return [(s, build / "obj" / f"{s.name}.o") for s in srcs]

