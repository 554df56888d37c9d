"""The kernels and their C tests on an emulated Cortex-M4F (Nano 33 BLE core).

Runs the make targets of ``tflm_ops/m4`` (arm-none-eabi-gcc, QEMU mps2-an386 with
semihosting) and asserts they succeed: a test mismatch, a fault, a hang or a
RAM/flash overflow of the Nano's 256 KB / 1 MB fails here. Skipped, with the reason,
when the cross compiler or QEMU is missing (``make test`` installs both on CI).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tfmot_edgeplus.runtime.build_lock import build_lock

ROOT = Path(__file__).resolve().parent.parent
M4_DIR = ROOT / "tflm_ops" / "m4"
CPU = ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"]

_missing = [
    tool for tool in ("arm-none-eabi-gcc", "qemu-system-arm", "make") if shutil.which(tool) is None
]
pytestmark = pytest.mark.skipif(
    bool(_missing),
    reason=f"{', '.join(_missing)} not installed (apt-get install gcc-arm-none-eabi "
    "libnewlib-arm-none-eabi qemu-system-arm); `make test` installs them on CI",
)


def _make(target: str, build: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    with build_lock():  # and its runs: targets run what they build
        return subprocess.run(
            ["make", "-C", str(M4_DIR), target, f"BUILD={build}"],
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def _explain(proc: subprocess.CompletedProcess) -> str:
    return (
        f"status {proc.returncode}\n--- stdout ---\n{proc.stdout[-6000:]}\n"
        f"--- stderr ---\n{proc.stderr[-6000:]}"
    )


@pytest.fixture(scope="module")
def build_dir() -> Path:
    path = ROOT / "build" / "m4"
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_harness_selftest_and_fault_handling(build_dir):
    """printf, .data/.bss, FPU, DSP, the instruction counter; a failing main exits 1 and a
    deliberate crash exits 3 (reported, not hung), so make fails on either."""
    proc = _make("selftest", build_dir)
    assert proc.returncode == 0, _explain(proc)
    assert "SELFTEST OK" in proc.stdout, _explain(proc)
    assert "instr_per_tick_x1000=40000" in proc.stdout, _explain(proc)
    # startup.c's fault report goes through semihosting SYS_WRITE0 (QEMU: stderr).
    assert "M4 FAULT: BusFault" in proc.stdout + proc.stderr, _explain(proc)
    assert "failure self-test OK" in proc.stdout, _explain(proc)  # failing main -> status 1
    assert "fault self-test OK" in proc.stdout, _explain(proc)


def test_kernel_c_tests_pass_on_cortex_m4(build_dir):
    """tflm_ops/tests (edgeplus_run_tests) cross-compiled with the DSP path, run in QEMU."""
    proc = _make("run-tests", build_dir)
    assert proc.returncode == 0, _explain(proc)
    assert "M4 TESTS PASSED" in proc.stdout, _explain(proc)


def test_linker_script_rejects_what_overflows_the_nano(tmp_path):
    """A program whose static data exceeds 256 KB of RAM must fail at link time."""
    src = tmp_path / "big.c"
    src.write_text(
        "#include <stdio.h>\nvolatile char big[250 * 1024];\n"
        'int main(void) { big[7] = 1; printf("%d\\n", big[7]); return 0; }\n'
    )
    proc = subprocess.run(
        [
            "arm-none-eabi-gcc",
            *CPU,
            "-O2",
            f"-I{M4_DIR}",
            "-T",
            str(M4_DIR / "nano33ble.ld"),
            "--specs=nano.specs",
            "--specs=rdimon.specs",
            "-nostartfiles",
            str(src),
            str(M4_DIR / "startup.c"),
            str(M4_DIR / "m4_timer.c"),
            "-o",
            str(tmp_path / "big.elf"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0, "a 250 KB static array linked although the Nano has 256 KB of RAM"
    assert "RAM" in proc.stderr and "overflow" in proc.stderr, proc.stderr


def test_quick_benchmark_m4_output_matches_host(tmp_path):
    """The kernels' DSP path on the M4 gives the host's (plain-C) output on real layer
    sizes at every bit-width, and the benchmark writes its JSON + markdown report."""
    out = tmp_path / "kernels_m4.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.kernels_m4", "--quick", "--out", str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, _explain(proc)
    doc = json.loads(out.read_text())
    assert doc["benchmark"] == "kernels_m4" and doc["quick"] is True
    assert doc["env"]["checksums_match_host"] is True
    combos = {(r["layer"], r["weight_bits"], r["activation_bits"]) for r in doc["rows"]}
    assert {(w, a) for _, w, a in combos} == {(8, 8), (4, 4), (2, 2), (4, 8)}
    # every case with the default and the lean scratch, the lean one smaller
    scratch = {
        (r["layer"], r["weight_bits"], r["activation_bits"], r["scratch_mode"]): r["scratch_bytes"]
        for r in doc["rows"]
    }
    assert len(scratch) == len(doc["rows"]) == 2 * len(combos)
    for layer, w, a in combos:
        assert 0 < scratch[layer, w, a, "lean"] < scratch[layer, w, a, "default"], (layer, w, a)
    for row in doc["rows"]:
        assert row["instructions"] > 0 and row["instructions"] % 40 == 0, row
        assert row["text_bytes"] > 0 and row["scratch_bytes"] >= 0, row
        assert row["instr_per_mac"] == pytest.approx(row["instructions"] / row["macs"], abs=1e-3)
    assert out.with_suffix(".md").read_text().count("\n| ") == len(doc["rows"]) + 1
