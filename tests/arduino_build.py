"""Building the EdgePlus Arduino library, its examples and exported sketches with plain
arm-none-eabi-gcc/g++ for the Nano 33 BLE's core (tests/test_arduino.py).

The Arduino IDE compiles every .c/.cpp under a library's src/ and a sketch folder, with the
library's src/ on the include path and Arduino.h included first into the .ino. Here the same
files compile with the stand-ins of tests/arduino (Arduino.h, Arduino_LSM9DS1.h,
Chirale_TensorFlowLite.h) and, when EDGEPLUS_TFLM_ROOT and its siblings are set, the TFLM
headers of the pinned commit; without them only the TFLM-free parts (kernels, PatchStage,
QCoreCalibrator, the exported data) are compiled. TFLM itself is never compiled here, so the
programs that are linked (and run in QEMU) are the TFLM-free ones."""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STANDINS = ROOT / "tests" / "arduino"
M4 = ROOT / "tflm_ops" / "m4"
CPU = ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"]
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


class BuildError(AssertionError):
    pass


def _run(cmd: list[str]) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise BuildError(f"{' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return p.stdout + p.stderr


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


def library_sources(lib: Path, tflm: bool) -> list[Path]:
    """Every source the Arduino builder would compile in the library (the glue only with
    TFLM), examples excluded."""
    src = lib / "src"
    files = sorted(p for p in src.rglob("*") if p.suffix in (".c", ".cpp"))
    return [p for p in files if tflm or "tflm" not in p.relative_to(src).parts]


def harness_sources() -> list[Path]:
    return [M4 / "startup.c", M4 / "m4_timer.c", STANDINS / "arduino_stub.cpp"]


def link(objs: list[Path], elf: Path) -> dict:
    """Link for the Nano's clamped memory map; return the sizes (text, data, bss; flash =
    text + data, ram = data + bss, before the script's stack and heap reserve)."""
    _run(["arm-none-eabi-g++", *CPU, "-T", str(M4 / "nano33ble.ld"), "--specs=nano.specs",
          "--specs=rdimon.specs", "-nostartfiles", "-Wl,--gc-sections",
          *map(str, objs), "-lm", "-o", str(elf)])  # fmt: skip
    line = _run(["arm-none-eabi-size", str(elf)]).splitlines()[1].split()
    text, data, bss = (int(v) for v in line[:3])
    return {"text": text, "data": data, "bss": bss, "flash": text + data, "ram": data + bss}


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


def run_qemu(elf: Path, timeout: int = 120) -> str:
    cmd = ["timeout", "--kill-after=5", str(timeout), "qemu-system-arm", "-M", "mps2-an386",
           "-nographic", "-monitor", "none", "-semihosting-config",
           "enable=on,target=native", "-icount", "shift=0", "-kernel", str(elf)]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise BuildError(f"QEMU exit status {p.returncode}:\n{p.stdout[-3000:]}\n{p.stderr}")
    return p.stdout
