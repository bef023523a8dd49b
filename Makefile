# sam_bench developer commands. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.sam_bench-installed
SCALE_STAMP := $(VENV)/.sam_bench-scale-installed

.PHONY: help install install-cuda-ext install-scale quickstart test test-full test-gpu bench lint format typecheck wheel clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

install: $(STAMP)  ## create ./.venv and install sam_bench with its dependencies (and the runtimes extra)

# sam2's optional CUDA extension (sam2._C: connected components for min_mask_region_area and
# video hole filling) is built when a CUDA toolkit is found (nvcc on PATH or
# $(CUDA_HOME)/bin/nvcc)
# `make install SAM2_BUILD_CUDA=0|1` overrides; without it sam_bench runs the same step on the CPU.
SAM2 := sam2==1.1.0
NVCC := $(or $(shell command -v nvcc 2>/dev/null),$(if $(CUDA_HOME),$(wildcard $(CUDA_HOME)/bin/nvcc)))
# ...and a GPU is visible (nvidia-smi lists one): a CPU machine with a toolkit gains nothing
# from the kernel and would spend minutes compiling it.
GPU_SEEN := $(shell nvidia-smi -L 2>/dev/null | head -n 1)
SAM2_BUILD_CUDA ?= $(if $(and $(NVCC),$(GPU_SEEN)),1,0)
# after a build: whether the extension loads (what result.json records as cuda_extension)
SAM2_EXT_CHECK = $(BIN)/python -c "from sam_bench.environment import cuda_extension_status as s; \
	ok, err = s(); print('sam2 CUDA extension (sam2._C):', 'loads' if ok else f'not used ({err or \"not built\"})')"

# torch and torchvision are installed together so pip picks a matching pair; sam2 is an sdist
# built against that torch (no build isolation: no second torch download), with its CUDA
# extension when SAM2_BUILD_CUDA=1 (no pip cache then: a cached wheel may lack it).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch torchvision
	SAM2_BUILD_CUDA=$(SAM2_BUILD_CUDA) $(BIN)/pip install --quiet --no-build-isolation \
		$(if $(filter 1,$(SAM2_BUILD_CUDA)),--no-cache-dir) "$(SAM2)"
	$(BIN)/pip install --quiet -e ".[dev,runtimes]"
	@$(SAM2_EXT_CHECK)
	@$(if $(filter 1,$(SAM2_BUILD_CUDA)),$(BIN)/python -c "import sam2._C" 2>/dev/null || \
		echo "  (built with SAM2_BUILD_CUDA=1: make install-cuda-ext shows the compiler's error)")
	@touch $@

install-cuda-ext: install  ## (re)build sam2 with its CUDA extension (needs nvcc, a CUDA torch)
	@test -n "$(NVCC)" || { echo "install-cuda-ext: no CUDA toolkit (nvcc on PATH or CUDA_HOME)" >&2; exit 1; }
	SAM2_BUILD_CUDA=1 SAM2_BUILD_ALLOW_ERRORS=0 $(BIN)/pip install --quiet --no-build-isolation \
		--no-cache-dir --no-deps --force-reinstall "$(SAM2)"
	@$(SAM2_EXT_CHECK)

install-scale: $(SCALE_STAMP)  ## add the `scale` extra: Ray, submitit and their Hydra launchers

$(SCALE_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e ".[dev,runtimes,scale]"
	@touch $@

quickstart: install  ## install, then run the quickstart sweep (~5 min on 2 CPU cores)
	$(BIN)/python -m sam_bench sweep=quickstart

test: install  ## the CI test suite (no slow tests)
	$(BIN)/python -m pytest -m "not slow" -q

test-full: install install-scale  ## every test, slow ones included (with the `scale` extra)
	$(BIN)/python -m pytest -q

# Tests marked gpu run only where torch can use CUDA; elsewhere each is skipped, and -rs
# prints the reason (no CUDA build, no driver, driver too old for torch's CUDA, ...).
# `make test-gpu REQUIRE_GPU=1` (a machine that should have CUDA) fails when no gpu test ran.
test-gpu: install  ## the CUDA tests (marked gpu), or why they skip; REQUIRE_GPU=1: fail if none ran
	REQUIRE_GPU="$(REQUIRE_GPU)" $(BIN)/python -m pytest -m gpu -rs -q

bench: install  ## every benchmark, then one table of ratios (~1 h; BENCH_ARGS=--quick: ~10 min)
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

lint: install  ## ruff lint + format check + mypy + the import layers (lint-imports)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-logo

format: install  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: install  ## mypy
	$(BIN)/mypy

wheel: install  ## build a wheel into dist/
	$(BIN)/pip wheel --no-deps --no-build-isolation . -w dist

clean:  ## remove build outputs (keeps .venv)
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache .mypy_cache
