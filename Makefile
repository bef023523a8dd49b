# sam_bench developer commands. `make help` lists them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.sam_bench-installed
SCALE_STAMP := $(VENV)/.sam_bench-scale-installed

.PHONY: help install install-scale quickstart test test-full test-gpu lint format typecheck wheel clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

install: $(STAMP)  ## create ./.venv and install sam_bench with its dependencies

# torch and torchvision are installed together so pip picks a matching pair; sam2 is an sdist
# built against that torch (no build isolation: no second torch download) without its optional
# CUDA extension (SAM2_BUILD_CUDA=0; sam_bench supplies the CPU connected-components step).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch torchvision
	SAM2_BUILD_CUDA=0 $(BIN)/pip install --quiet --no-build-isolation "sam2==1.1.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@

install-scale: $(SCALE_STAMP)  ## add the `scale` extra: Ray, submitit and their Hydra launchers

$(SCALE_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -e ".[dev,scale]"
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
