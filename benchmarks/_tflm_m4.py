"""Bare-metal Cortex-M4F programs with the Arduino TFLM: the Nano 33 BLE core's compile
recipes, the Chirale_TensorFlowLite library built once with them, the link for the Nano's
clamped memory map and the run in QEMU (``-icount shift=0``: one tick per instruction).

Shared by ``benchmarks/deploy_m4.py`` and the tests (``tests/arduino_build.py`` re-exports
these names), so that a benchmark never imports from ``tests/``."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import re
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tfmot_edgeplus.runtime.build_lock import build_lock

ROOT = Path(__file__).resolve().parents[1]
M4 = ROOT / "tflm_ops" / "m4"
CPU = ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"]

class BuildError(AssertionError):
    pass


def run_tool(cmd: list[str]) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise BuildError(f"{' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return p.stdout + p.stderr


def library_sources(lib: Path, tflm: bool) -> list[Path]:
    """Every source the Arduino builder would compile in the library (the glue only with
    TFLM), examples excluded."""
    src = lib / "src"
    files = sorted(p for p in src.rglob("*") if p.suffix in (".c", ".cpp"))
    return [p for p in files if tflm or "tflm" not in p.relative_to(src).parts]


def link(objs: list[Path], elf: Path, float_abi: str = "hard") -> dict:
    """Link for the Nano's clamped memory map (objects built with -mfloat-abi=``float_abi``:
    hard for ours, softfp for the core's recipes); return the sizes (text, data, bss; flash =
    text + data, ram = data + bss, before the script's stack and heap reserve)."""
    cpu = [*CPU[:-1], f"-mfloat-abi={float_abi}"]
    run_tool(["arm-none-eabi-g++", *cpu, "-T", str(M4 / "nano33ble.ld"), "--specs=nano.specs",
          "--specs=rdimon.specs", "-nostartfiles", "-Wl,--gc-sections",
          *map(str, objs), "-lm", "-o", str(elf)])  # fmt: skip
    line = run_tool(["arm-none-eabi-size", str(elf)]).splitlines()[1].split()
    text, data, bss = (int(v) for v in line[:3])
    return {"text": text, "data": data, "bss": bss, "flash": text + data, "ram": data + bss}


def run_qemu(elf: Path, timeout: int = 120) -> str:
    cmd = ["timeout", "--kill-after=5", str(timeout), "qemu-system-arm", "-M", "mps2-an386",
           "-nographic", "-monitor", "none", "-semihosting-config",
           "enable=on,target=native", "-icount", "shift=0", "-kernel", str(elf)]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise BuildError(f"QEMU exit status {p.returncode}:\n{p.stdout[-3000:]}\n{p.stderr}")
    return p.stdout


# ----------------------------------------------------------------------------- the real core
#
# arduino-cli's build of a sketch for arduino:mbed_nano:nano33ble, reproduced from the core's
# own files: the compile recipes of ArduinoCore-mbed's platform.txt with the board's properties
# from boards.txt, whose flags are the ARDUINO_NANO33BLE variant's @-files (defines.txt,
# cflags.txt, cxxflags.txt, includes.txt: -Os, -mfloat-abi=softfp, -std=gnu++14/gnu11, the mbed
# headers), at `--warnings all` (-Wall -Wextra). The .ino becomes a .cpp as arduino-cli makes
# it (#include <Arduino.h>, #line, prototypes of global functions). Compile only: the core's
# libmbed.a is needed to link a sketch. The compiler is the arm-none-eabi-g++ on the PATH (the
# core pins 7-2017q4, which is on no package registry).
#
# EDGEPLUS_ARDUINO_CORE  an ArduinoCore-mbed checkout (github:arduino/ArduinoCore-mbed)
# EDGEPLUS_ARDUINO_API   an ArduinoCore-API checkout (github:arduino/ArduinoCore-API): the
#                        core's cores/arduino/api is a link to its api/ folder; default: the
#                        link itself when it resolves, else an ArduinoCore-API folder beside
#                        the core
# EDGEPLUS_ARDUINO_TFLM  the Chirale_TensorFlowLite library (github:spaziochirale/
#                        Chirale_TensorFlowLite, 2.0.0), the TFLM the README tells users to install

BOARD = "nano33ble"


def _read_properties(path: Path, prefix: str = "") -> dict[str, str]:
    props = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        if key.startswith(prefix):
            props[key[len(prefix) :]] = value
    return props


def _expand(text: str, props: dict[str, str]) -> str:
    """Substitute {key} as arduino-cli does (repeatedly; unknown keys stay)."""
    for _ in range(20):
        new = re.sub(r"\{([^{}\s]+)\}", lambda m: props.get(m.group(1), m.group(0)), text)
        if new == text:
            return new
        text = new
    raise BuildError(f"property expansion does not end: {text[:200]}")


@dataclasses.dataclass
class ArduinoCore:
    """The compile recipes of ArduinoCore-mbed for one board (see the section comment)."""

    core: Path
    api: Path
    board: str = BOARD
    warnings: str = "all"  # arduino-cli --warnings: none, default, more, all

    @property
    def variant(self) -> Path:
        return self.core / "variants" / self.props["build.variant"]

    @functools.cached_property
    def props(self) -> dict[str, str]:
        p = _read_properties(self.core / "platform.txt")
        p.update(_read_properties(self.core / "boards.txt", f"{self.board}."))
        core_path = self.core / "cores" / p["build.core"]
        p.update({
            "runtime.platform.path": str(self.core),
            "runtime.ide.version": "10607",
            "build.core.path": str(core_path),
            "build.variant.path": str(self.core / "variants" / p["build.variant"]),
            "build.arch": "MBED_NANO",  # the platform folder's name (mbed_nano), upper-cased
            "build.compiler_path": "",  # the arm-none-eabi toolchain on the PATH
            "compiler.warning_flags": p[f"compiler.warning_flags.{self.warnings}"],
        })  # fmt: skip
        return p

    def bundled_library(self, name: str) -> Path:
        """The include folder of a library the core ships (libraries/NAME, its src/ if any),
        as arduino-cli finds it for an #include <NAME.h>."""
        lib = self.core / "libraries" / name
        return lib / "src" if (lib / "src").is_dir() else lib

    def command(self, src: Path, obj: Path, includes: list[Path]) -> list[str]:
        """recipe.{c,cpp}.o.pattern for ``src`` with the libraries' folders ``includes``."""
        core_path = Path(self.props["build.core.path"])
        dirs = [core_path, self.variant, self.api, *includes]  # api: the core's api/ link
        props = {**self.props, "source_file": str(src), "object_file": str(obj),
                 "includes": " ".join(f'"-I{d}"' for d in dirs)}  # fmt: skip
        kind = "c" if src.suffix == ".c" else "cpp"
        cmd = shlex.split(_expand(props[f"recipe.{kind}.o.pattern"], props))
        left = [a for a in cmd if "{" in a]
        if left:
            raise BuildError(f"unresolved properties in the core's recipe: {left}")
        # cores/arduino/api is a link to ArduinoCore-API's api/: follow it to self.api
        api = str(core_path / "api")
        return [a.replace(api, str(self.api / "api")) if api in a else a for a in cmd]


def arduino_core() -> ArduinoCore | None:
    """The core of EDGEPLUS_ARDUINO_CORE (with its ArduinoCore-API), or None when not set."""
    root = os.environ.get("EDGEPLUS_ARDUINO_CORE")
    if not root or not (Path(root) / "platform.txt").is_file():
        return None
    core = Path(root)
    api = os.environ.get("EDGEPLUS_ARDUINO_API")
    candidates = (
        [Path(api)] if api else [core / "cores" / "arduino", core.parent / "ArduinoCore-API"]
    )
    for c in candidates:
        if (c / "api" / "ArduinoAPI.h").is_file():
            return ArduinoCore(core, c)
    raise BuildError(
        f"EDGEPLUS_ARDUINO_CORE={root} has no cores/arduino/api (a link to ArduinoCore-API's "
        f"api/ folder) and no ArduinoCore-API beside it; set EDGEPLUS_ARDUINO_API to an "
        f"ArduinoCore-API checkout (tried {', '.join(map(str, candidates))})"
    )


def arduino_tflm() -> Path | None:
    """The Chirale_TensorFlowLite library of EDGEPLUS_ARDUINO_TFLM, or None when not set."""
    root = os.environ.get("EDGEPLUS_ARDUINO_TFLM")
    if not root:
        return None
    lib = Path(root)
    if not (lib / "src" / "tensorflow" / "lite" / "micro" / "micro_interpreter.h").is_file():
        raise BuildError(
            f"EDGEPLUS_ARDUINO_TFLM={root} is not the Chirale_TensorFlowLite library (no "
            "src/tensorflow/lite/micro/micro_interpreter.h)"
        )
    return lib

def compile_with_core(core: ArduinoCore, src: Path, obj: Path, includes: list[Path]) -> str:
    """Compile ``src`` with the core's recipe; return the compiler's messages."""
    obj.parent.mkdir(parents=True, exist_ok=True)
    return run_tool(core.command(src, obj, includes))


def arduino_tflm_library(core: ArduinoCore, tflm: Path, build: Path, workers: int = 2) -> Path:
    """Chirale_TensorFlowLite's sources compiled with the core's recipes into a static library
    for a bare-metal program (no Arduino core: ARDUINO_EXCLUDE_CODE leaves out its Serial
    DebugLog, and peripherals/ is not compiled; the program defines DebugLog). Compiled once
    (about 215 files) and kept in ``build``, keyed by the recipe and the library's version."""
    quiet = dataclasses.replace(core, warnings="none")
    src = tflm / "src"
    files = sorted(p for p in src.rglob("*") if p.suffix in (".c", ".cpp")
                   and p.relative_to(src).parts[0] != "peripherals")  # fmt: skip
    version = _read_properties(tflm / "library.properties").get("version", "?")
    key = hashlib.sha256("\n".join([
        str(tflm.resolve()), version, *quiet.command(Path("x.cpp"), Path("x.o"), [src]),
        *quiet.command(Path("x.c"), Path("x.o"), [src]), *map(str, files)]).encode()
    ).hexdigest()[:16]  # fmt: skip
    lib = build / f"chirale_tflm_{version}_{key}" / "libtflm.a"
    with build_lock():  # another test process may be compiling it right now
        if lib.is_file():
            return lib
        objs_dir = lib.parent / "obj"

        def one(f: Path) -> Path:
            obj = objs_dir / f"{f.relative_to(src).with_suffix('')}.o"
            if not obj.is_file():
                obj.parent.mkdir(parents=True, exist_ok=True)
                cmd = quiet.command(f, obj.with_suffix(".tmp.o"), [src])
                run_tool([a for a in cmd if a != "-g3"] + ["-DARDUINO_EXCLUDE_CODE"])
                obj.with_suffix(".tmp.o").rename(obj)
            return obj

        with ThreadPoolExecutor(workers) as pool:
            objs = list(pool.map(one, files))
        run_tool(["arm-none-eabi-ar", "rcs", str(lib.with_suffix(".tmp.a")), *map(str, objs)])
        lib.with_suffix(".tmp.a").rename(lib)
        return lib
