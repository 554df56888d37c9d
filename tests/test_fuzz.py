"""The libFuzzer targets of the C kernels (tflm_ops/fuzz): built with clang-14 under ASan and
UBSan, every committed corpus input (seeds and the regression inputs of crashes found,
crash-*) replayed, then a short coverage-guided run per target. Any crash, sanitizer report,
failed property or timeout fails. ``make fuzz`` runs the same targets for longer.

Budget: at most about 60 s for the module, builds included (FUZZ_TEST_SECONDS per target)."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tfmot_edgeplus.runtime.build_lock import build_lock

ROOT = Path(__file__).resolve().parents[1]
FUZZ = ROOT / "tflm_ops" / "fuzz"
BUILD = ROOT / "build" / "fuzz-test"  # not build/fuzz: a `make fuzz` may be running there
FUZZ_TEST_SECONDS = 2
C_TARGETS = ("patch_stage", "conv", "qcore")
# The options parser against a flatbuffers checkout (v25.9.23, the glue's) when one is named,
# else against Debian's libflatbuffers-dev (2.0.8), which the Makefile installs.
FLATBUFFERS = os.environ.get("EDGEPLUS_FLATBUFFERS_ROOT") or (
    "/usr" if Path("/usr/include/flatbuffers/flexbuffers.h").is_file() else "")


def _libfuzzer_missing() -> str | None:
    if shutil.which("clang-14") is None:
        return "clang-14 is not installed (apt-get install clang-14 libclang-rt-14-dev)"
    runtime = subprocess.run(["clang-14", "--print-runtime-dir"], capture_output=True, text=True)
    lib = Path(runtime.stdout.strip()) / f"libclang_rt.fuzzer-{platform.machine()}.a"
    if not lib.exists():
        return f"libFuzzer is missing ({lib}; apt-get install libclang-rt-14-dev)"
    return None


pytestmark = pytest.mark.skipif(_libfuzzer_missing() is not None,
                                reason=str(_libfuzzer_missing()))  # fmt: skip

TARGETS = [*C_TARGETS, pytest.param("options", marks=pytest.mark.skipif(
    not FLATBUFFERS,
    reason="fuzz_options needs the flatbuffers headers: EDGEPLUS_FLATBUFFERS_ROOT is unset "
           "and Debian's libflatbuffers-dev is not installed"))]  # fmt: skip


@pytest.fixture(scope="module")
def binaries() -> Path:
    with build_lock():
        proc = subprocess.run(
            ["make", "-s", "-C", str(FUZZ), "-j2", "build", f"BUILD={BUILD}", "FUZZ_OPT=-O1",
             f"EDGEPLUS_FLATBUFFERS_ROOT={FLATBUFFERS}"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    assert proc.returncode == 0, f"building the fuzz targets failed:\n{proc.stdout}{proc.stderr}"
    return BUILD


# libFuzzer's RSS limit reads getrusage's peak RSS, which Linux carries over from the process
# that forked the fuzzer (pytest with TensorFlow loaded: about 3 GB): limit the fuzzer's own
# mallocs instead.
MEMORY_LIMIT = ("-rss_limit_mb=0", "-malloc_limit_mb=2048")


def _run(binary: Path, *args: str, timeout: float) -> str:
    cmd = [str(binary), *MEMORY_LIMIT, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "ERROR:" not in log and "runtime error" not in log, (
        f"{binary.name} {' '.join(args)} failed (exit {proc.returncode}):\n{log[-4000:]}"
    )
    return log


@pytest.mark.parametrize("target", TARGETS)
def test_corpus_replays_cleanly(binaries, target):
    corpus = FUZZ / "corpus" / target
    files = sorted(p for p in corpus.iterdir() if p.is_file())
    assert len(files) >= 5, f"{corpus}: expected a seed corpus"
    # each file on its own: libFuzzer runs them all, stops at the first failure
    log = _run(binaries / f"fuzz_{target}", *map(str, files), timeout=60)
    assert log.count("Executed ") == len(files), log[-2000:]


@pytest.mark.parametrize("target", TARGETS)
def test_short_fuzz_finds_nothing(binaries, target, tmp_path):
    log = _run(
        binaries / f"fuzz_{target}", f"-max_total_time={FUZZ_TEST_SECONDS}", "-timeout=10",
        "-seed=1", "-print_final_stats=1", f"-artifact_prefix={tmp_path}/", str(tmp_path),
        str(FUZZ / "corpus" / target), timeout=FUZZ_TEST_SECONDS + 60,
    )  # fmt: skip
    runs = int(re.search(r"stat::number_of_executed_units: (\d+)", log).group(1))
    assert runs > 1000, f"fuzz_{target} executed only {runs} inputs in {FUZZ_TEST_SECONDS} s"
