"""Instruction counts of the edgeplus conv kernels on an emulated Cortex-M4F.

    python -m benchmarks.kernels_m4 [--quick] [--out FILE.json] [--flags core] [--opt -Os]

What it measures: ``tflm_ops/m4/bench_main.c`` built with arm-none-eabi-gcc for the
Nano 33 BLE's core (``-mcpu=cortex-m4 -mthumb -mfpu=fpv4-sp-d16``), with ``--flags bench``
(default: ``-mfloat-abi=hard -Ofast``, the flags of the reference figures in TOOLCHAIN.md) or
``--flags core`` (``-mfloat-abi=softfp -Os``: what the Arduino mbed core compiles a sketch's
libraries with, ArduinoCore-mbed ``variants/ARDUINO_NANO33BLE/cflags.txt``) or ``--flags
library`` (those, with the kernels at the level the EdgePlus library sets for them:
``kernel_optimize.h``; ``--opt`` overrides the -O flag of any), run in
``qemu-system-arm -M mps2-an386 -icount shift=0``. With ``-icount shift=0`` one
instruction is 1 ns of virtual time and the 25 MHz SysTick ticks once per 40
instructions, so SysTick read around each kernel call gives an exact, run-to-run
identical instruction count (resolution 40 instructions; checked at start against
an assembly loop of known length). These are instructions, not cycles: QEMU models
no pipeline and no flash wait states.

Layers (batch 1, stride 1): ``conv3x3_32x32x16_32`` (32x32x16 -> 32, 3x3, pad 1),
``dw3x3_48x48x32`` (depthwise 3x3, pad 1), ``pw1x1_16x16x64_64`` (1x1, 64 -> 64), each
at W8A8, W4A4, W2A2, W4A8. ``--quick`` runs the 1x1 layer at every bit-width plus the
3x3 conv at W8A8 (same programs, same code path).

Scratch: every case runs with the kernel's ``_get_buffer_size`` (``scratch_mode``
``default``) and with its ``_get_buffer_size_lean`` (``lean``: the CMSIS-NN-like small
scratch; the same kernel call, which takes its lean layout from the smaller ``ctx->size``).

Correctness guard: the same C file is built natively (the kernels' plain-C path) and
the FNV-1a checksum of every M4 output must equal the host's; any mismatch, kernel
error or fault aborts the benchmark with a non-zero exit instead of reporting a
speed.

Row keys: layer, weight_bits, activation_bits, scratch_mode, cflags, macs, instructions,
instr_per_mac, text_bytes (code linked in for that kernel: the .text of a --gc-sections link
rooted at the kernel and its _get_buffer_size, libc/libgcc helpers included; the same for
every bit-width since one function serves all), scratch_bytes (the kernel's
_get_buffer_size, or its _get_buffer_size_lean in the lean rows), target_instr_per_mac (the
issue's targets: int8 2.5, W4A4 1.6, W2A2 1.0; none for W4A8), meets_target.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks._report import write_report
from tfmot_edgeplus.runtime.build_lock import build_lock

NAME = "kernels_m4"
ROOT = Path(__file__).resolve().parent.parent
M4_DIR = ROOT / "tflm_ops" / "m4"
CPU_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16"]
INSTR_PER_TICK = 40
TARGETS = {(8, 8): 2.5, (4, 4): 1.6, (2, 2): 1.0}
KERNEL_ENTRY = {
    "conv": ("edgeplus_conv2d", "edgeplus_conv2d_get_buffer_size"),
    "depthwise": ("edgeplus_depthwise_conv2d", "edgeplus_depthwise_conv2d_get_buffer_size"),
}
_LINE = re.compile(r"^(BENCH|BENCH_ERROR|BENCH_DONE|CALIB)\b(.*)$")


class BenchmarkError(RuntimeError):
    """The benchmark could not produce trustworthy numbers (tool missing, mismatch, crash)."""


@dataclasses.dataclass(frozen=True)
class M4Flags:
    """The -O flag and float ABI an M4 build uses (tflm_ops/m4/Makefile's OPT and FLOAT_ABI)."""

    opt: str = "-Ofast"
    float_abi: str = "hard"
    # the kernels include the EdgePlus library's kernel_optimize.h, as its copies do
    library_pragma: bool = False

    def __post_init__(self):
        if not re.fullmatch(r"-O(0|1|2|3|s|z|fast|g)", self.opt):
            raise ValueError(f"opt must be a gcc -O flag such as -Ofast or -Os, got {self.opt!r}")
        if self.float_abi not in ("hard", "softfp"):
            raise ValueError(f"float_abi must be hard or softfp, got {self.float_abi!r}")

    @property
    def cpu(self) -> list[str]:
        return [*CPU_FLAGS, f"-mfloat-abi={self.float_abi}"]

    @property
    def label(self) -> str:
        pragma = " + kernel_optimize.h" if self.library_pragma else ""
        return f"{self.opt} -mfloat-abi={self.float_abi}{pragma}"

    @property
    def make_args(self) -> list[str]:
        kernel = f"-include {KERNEL_OPTIMIZE_H}" if self.library_pragma else ""
        return [f"OPT={self.opt}", f"FLOAT_ABI={self.float_abi}", f"KERNEL_CFLAGS={kernel}"]

    def build_dir(self, prefix: str) -> Path:
        abi = "" if self.float_abi == "hard" else f"-{self.float_abi}"
        return ROOT / "build" / f"{prefix}{self.opt}{abi}{'-pragma' if self.library_pragma else ''}"


KERNEL_OPTIMIZE_H = ROOT / "arduino" / "EdgePlus" / "src" / "edgeplus" / "kernel_optimize.h"


# --flags: "bench", the reference figures' (TOOLCHAIN.md); "core", the Arduino mbed core's
# (ArduinoCore-mbed variants/ARDUINO_NANO33BLE/cflags.txt and boards.txt: -Os, softfp);
# "library", the core's flags with the kernels at the level the EdgePlus library sets
# (arduino/EdgePlus/src/edgeplus/kernel_optimize.h): what a sketch runs.
FLAG_SETS = {
    "bench": M4Flags("-Ofast", "hard"),
    "core": M4Flags("-Os", "softfp"),
    "library": M4Flags("-Os", "softfp", library_pragma=True),
}


def flag_set(name: str, opt: str | None = None) -> M4Flags:
    """The flag set ``name`` of FLAG_SETS, with its -O flag replaced by ``opt`` if given."""
    if name not in FLAG_SETS:
        raise ValueError(f"flags must be one of {sorted(FLAG_SETS)}, got {name!r}")
    base = FLAG_SETS[name]
    return base if opt is None else dataclasses.replace(base, opt=opt)


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BenchmarkError(f"{name} not found on PATH; install the Debian package {package}.")
    return path


def _run(cmd: list[str], timeout: float, what: str) -> str:
    try:
        proc = subprocess.run(
            cmd, check=False, capture_output=True, text=True, timeout=timeout, cwd=ROOT
        )
    except subprocess.TimeoutExpired as err:
        raise BenchmarkError(f"{what} timed out after {timeout:.0f} s: {' '.join(cmd)}") from err
    if proc.returncode != 0:
        raise BenchmarkError(
            f"{what} failed with status {proc.returncode}: {' '.join(cmd)}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
        )
    return proc.stdout


def run_qemu(qemu: str, elf: Path, timeout: float) -> str:
    """Run a bare-metal ``elf`` on QEMU's Cortex-M4F (mps2-an386, semihosting, ``-icount
    shift=0`` so SysTick counts instructions); its output, or BenchmarkError."""
    cmd = [
        "timeout", "--kill-after=5", str(int(timeout)), qemu, "-M", "mps2-an386", "-nographic",
        "-monitor", "none", "-semihosting-config", "enable=on,target=native", "-icount",
        "shift=0", "-kernel", str(elf),
    ]  # fmt: skip
    return _run(cmd, timeout + 30, "QEMU run of " + elf.name)


def parse_bench_output(text: str) -> tuple[int | None, list[dict]]:
    """Parse bench_main.c's lines into (instr_per_tick_x1000, cases); raise on BENCH_ERROR."""
    calib = None
    cases = []
    errors = []
    done = False
    for raw in text.splitlines():
        m = _LINE.match(raw.strip())
        if not m:
            continue
        kind, rest = m.groups()
        fields = dict(tok.split("=", 1) for tok in rest.split() if "=" in tok)
        if kind == "CALIB":
            calib = int(fields["instr_per_tick_x1000"])
        elif kind == "BENCH_ERROR":
            errors.append(raw.strip())
        elif kind == "BENCH_DONE":
            done = True
        else:
            cases.append(fields)
    if errors:
        raise BenchmarkError("benchmark program reported errors:\n" + "\n".join(errors))
    if not done:
        raise BenchmarkError("benchmark program stopped before BENCH_DONE:\n" + text[-2000:])
    return calib, cases


def _text_bytes(obj_dir: Path, entries: tuple[str, ...], work: Path, flags: M4Flags) -> int:
    """.text of a --gc-sections link of the kernel objects rooted at ``entries``."""
    objs = sorted(str(p) for p in (obj_dir / "tflm_ops" / "src").glob("*.o"))
    if not objs:
        raise BenchmarkError(f"no kernel objects under {obj_dir}; did the build run?")
    elf = work / f"size_{entries[0]}.elf"
    cmd = [
        "arm-none-eabi-gcc",
        *flags.cpu,
        "-nostartfiles",
        "--specs=nano.specs",
        "-Wl,--gc-sections",
        f"-Wl,-e,{entries[0]}",
    ]
    cmd += [f"-Wl,-u,{e}" for e in entries[1:]]
    cmd += [*objs, "-o", str(elf)]
    _run(cmd, 120, "size link")
    out = _run(["arm-none-eabi-size", "-A", str(elf)], 60, "arm-none-eabi-size")
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == ".text":
            return int(parts[1])
    raise BenchmarkError(f"no .text in arm-none-eabi-size output:\n{out}")


def _versions() -> dict:
    def first_line(cmd):
        try:
            return subprocess.run(
                cmd, check=False, capture_output=True, text=True, timeout=30
            ).stdout.splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None

    return {
        "arm_gcc": first_line(["arm-none-eabi-gcc", "--version"]),
        "qemu": first_line(["qemu-system-arm", "--version"]),
    }


def run(
    quick: bool, flags: M4Flags = FLAG_SETS["bench"], timeout: float = 600.0
) -> tuple[list[dict], dict]:
    """Build, run on QEMU and on the host, check checksums; return (rows, env facts)."""
    _tool("arm-none-eabi-gcc", "gcc-arm-none-eabi (+ libnewlib-arm-none-eabi)")
    qemu = _tool("qemu-system-arm", "qemu-system-arm")
    _tool("make", "make")
    build = flags.build_dir("m4-bench")
    target = "bench-quick" if quick else "bench"
    with build_lock():
        _run(
            ["make", "-s", "-C", str(M4_DIR), target, f"BUILD={build}", *flags.make_args],
            600,
            "make " + target,
        )
    elf = build / ("bench_quick.elf" if quick else "bench.elf")
    host_exe = build / ("bench_quick_host" if quick else "bench_host")

    m4_out = run_qemu(qemu, elf, timeout)
    calib, m4_cases = parse_bench_output(m4_out)
    if calib is None or abs(calib - INSTR_PER_TICK * 1000) > 100:
        raise BenchmarkError(
            f"SysTick calibration gave {calib} instructions/tick x1000, expected "
            f"{INSTR_PER_TICK * 1000}: the counter is not an instruction count on this QEMU."
        )
    _, host_cases = parse_bench_output(_run([str(host_exe)], 600, "host reference run"))

    key = lambda c: (c["layer"], c["w_bits"], c["a_bits"], c["scratch_mode"])
    host = {key(c): c for c in host_cases}
    mismatches = []
    for c in m4_cases:
        h = host.get(key(c))
        if c["status"] != "EDGEPLUS_OK":
            mismatches.append(f"{key(c)}: M4 kernel returned {c['status']}")
        elif h is None:
            mismatches.append(f"{key(c)}: no host reference")
        elif h["checksum"] != c["checksum"]:
            mismatches.append(f"{key(c)}: M4 checksum {c['checksum']} != host {h['checksum']}")
    if mismatches or len(m4_cases) != len(host_cases):
        raise BenchmarkError(
            "M4 output differs from the host output; refusing to report speed:\n  "
            + "\n  ".join(
                mismatches or [f"{len(m4_cases)} M4 cases vs {len(host_cases)} host cases"]
            )
        )

    text = {
        kind: _text_bytes(build / "obj", entries, build, flags)
        for kind, entries in KERNEL_ENTRY.items()
    }
    rows = []
    for c in m4_cases:
        w, a = int(c["w_bits"]), int(c["a_bits"])
        macs, instr = int(c["macs"]), int(c["instructions"])
        ipm = instr / macs
        target = TARGETS.get((w, a))
        rows.append(
            {
                "layer": c["layer"],
                "weight_bits": w,
                "activation_bits": a,
                "scratch_mode": c["scratch_mode"],
                "cflags": flags.label,
                "macs": macs,
                "instructions": instr,
                "instr_per_mac": round(ipm, 3),
                "text_bytes": text["depthwise" if c["layer"].startswith("dw") else "conv"],
                "scratch_bytes": int(c["scratch_bytes"]),
                "target_instr_per_mac": target,
                "meets_target": None if target is None else ipm <= target,
            }
        )
    env = {
        **_versions(),
        "cflags": " ".join([*flags.cpu, flags.opt]),
        "counter": "QEMU mps2-an386 -icount shift=0; SysTick 25 MHz = 1 tick per 40 instructions",
        "checksums_match_host": True,
    }
    return rows, env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.kernels_m4", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="1x1 layer at every bit-width + 3x3 conv W8A8"
    )
    parser.add_argument(
        "--out", default=None, help="JSON output (default benchmarks/results/kernels_m4.json)"
    )
    parser.add_argument(
        "--flags", choices=sorted(FLAG_SETS), default="bench",
        help="bench: -Ofast -mfloat-abi=hard (the reference figures); core: -Os "
        "-mfloat-abi=softfp, as the Arduino mbed core builds a library; library: core with "
        "the kernels' own level (kernel_optimize.h), as the EdgePlus library builds them",
    )  # fmt: skip
    parser.add_argument(
        "--opt", default=None, help="replace the flag set's -O flag, written --opt=-O2"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="QEMU time limit in seconds")
    args = parser.parse_args(argv)
    try:
        rows, env = run(args.quick, flag_set(args.flags, args.opt), args.timeout)
    except (BenchmarkError, ValueError) as err:
        print(f"kernels_m4: {err}", file=sys.stderr)
        return 1
    write_report(NAME, args.quick, rows, args.out, env_extra=env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
