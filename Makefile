# The README's commands. Each target does its own set-up on a fresh machine:
# Debian packages (when root; otherwise it prints the one apt-get line to run),
# a Python 3.13 venv in .venv, and the package with its pinned dependencies.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_PACKAGES := dataset-fashion-mnist gcc-arm-none-eabi libnewlib-arm-none-eabi \
                libstdc++-arm-none-eabi-newlib qemu-system-arm g++ make clang-14 libclang-rt-14-dev \
                libflatbuffers-dev

# Python 3.13: on PATH, or a pyenv install whose shim is not active.
PYTHON313 ?= $(shell for p in python3.13 $$HOME/.pyenv/versions/3.13*/bin/python3.13 \
                 /usr/local/bin/python3.13 /usr/bin/python3.13; do \
                 $$p -c 'import sys; assert sys.version_info[:2] == (3, 13)' >/dev/null 2>&1 \
                 && { echo $$p; break; }; done)

.PHONY: demo test bench arduino fuzz setup system-deps clean

demo: setup
	$(VENV)/bin/edgeplus demo --out out/demo

test: setup
	$(PY) -m pytest -q -n auto --dist loadfile --durations=20

bench: setup
	$(PY) -m benchmarks.qat_bits --out benchmarks/results/qat_bits.json
	$(PY) -m benchmarks.kernels_m4 --out benchmarks/results/kernels_m4.json
	$(PY) -m benchmarks.coreset_qat --out benchmarks/results/coreset_qat.json
	$(PY) -m benchmarks.cora --out benchmarks/results/cora.json
	$(PY) -m benchmarks.continual --out benchmarks/results/continual.json
	$(PY) -m benchmarks.patching --out benchmarks/results/patching.json

# Coverage-guided fuzzing (tflm_ops/fuzz, libFuzzer + ASan/UBSan; tests/test_fuzz_python.py,
# hypothesis): each target for FUZZ_SECONDS, printing the inputs it executed. The custom-op
# options target takes EDGEPLUS_FLATBUFFERS_ROOT, else Debian's libflatbuffers-dev. Crashes: build/fuzz/artifacts.
# E.g. the issue's run: EDGEPLUS_FUZZ_EXAMPLES=100000 make fuzz FUZZ_SECONDS=3600
# FUZZ_FLAGS=-runs=10000000 (each C target stops at 10^7 inputs, each Python one runs >= 10^5).
FUZZ_SECONDS ?= 60
fuzz: setup
	$(MAKE) -C tflm_ops/fuzz run FUZZ_SECONDS=$(FUZZ_SECONDS)
	EDGEPLUS_FUZZ_SECONDS=$(FUZZ_SECONDS) $(PY) -m pytest -q -p no:warnings tests/test_fuzz_python.py

# The EdgePlus Arduino library (arduino/EdgePlus + the kernels and TFLM glue of tflm_ops,
# copied in), ready for arduino-cli compile --library build/arduino/EdgePlus or ~/Arduino/libraries.
arduino: setup
	$(VENV)/bin/edgeplus export arduino-library --out build/arduino/EdgePlus --force

setup: system-deps $(STAMP)

system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages: $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	  else \
	    echo "Missing Debian packages. Run as root:"; \
	    echo "  sudo apt-get install -y --no-install-recommends $$missing"; \
	    exit 1; \
	  fi; \
	fi

# The package with the extras the tests, the demo and the benchmarks need (setup.cfg).
$(STAMP): setup.cfg pyproject.toml
	@if [ -z "$(PYTHON313)" ]; then \
	  echo "Python 3.13 not found (the pinned tflite-micro wheel needs it). Install it, e.g."; \
	  echo "  pyenv install 3.13   or   apt-get install python3.13 (where available)"; \
	  echo "then run make again, or pass PYTHON313=/path/to/python3.13."; exit 1; fi
	$(PYTHON313) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,plots,datasets]'
	touch $@

clean:
	rm -rf build out .pytest_cache
