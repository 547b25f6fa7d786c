# coord: set-up, code generation and tests. Every target that needs Python packages
# depends on the virtualenv, so a fresh clone needs nothing but python3 and make.

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
# Written once the project is installed into $(VENV); rebuilt when pyproject.toml changes.
STAMP := $(VENV)/.installed

PYTEST_ARGS ?=
BENCH_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help $(VENV) proto proto-check test sim bench clean

# help: list the targets (the default goal).
help:
	@echo "make test          set up $(VENV) if needed, check generated stubs, run all tests"
	@echo "                   (extra pytest arguments: make test PYTEST_ARGS='-k kv')"
	@echo "make proto         regenerate coord/** stubs from protos/ (commit the result)"
	@echo "make proto-check   fail if the committed stubs differ from what protos/ generates"
	@echo "make sim           run the Raft simulation tests (SEED=S replays one, SEEDS=N runs N)"
	@echo "make bench         run the load generator (bench/)"
	@echo "make .venv         create .venv and install coord with its dev extras"
	@echo "make clean         remove $(VENV) and build leftovers"

# .venv: create the virtualenv and install the project (editable) with its dev tools.
$(VENV): $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet -e '.[dev]'
	@touch $@

# proto: regenerate the committed stubs (coord/v1, coord/raft/v1 and their __init__.py)
# from protos/ with the pinned grpcio-tools and mypy-protobuf; see tools/protogen.py.
proto: $(STAMP)
	$(VPY) tools/protogen.py

# proto-check: regenerate into a temporary directory and fail, naming each stale, missing
# or extra file, when the committed stubs differ from it.
proto-check: $(STAMP)
	$(VPY) tools/protogen.py --check

# test: the whole suite, after proto-check. This is what CI runs (.ci/run).
test: proto-check
	$(VPY) -m pytest -q $(PYTEST_ARGS)

# sim: the seeded Raft simulation tests; SEED=S replays one seed, SEEDS=N runs N seeds.
sim: $(STAMP)
	$(VPY) -m pytest tests/sim -q $(if $(SEED),--seed $(SEED)) $(if $(SEEDS),--seeds $(SEEDS))

# bench: the load generator and comparisons (bench/__main__.py); options in BENCH_ARGS.
bench: $(STAMP)
	$(VPY) -m bench $(BENCH_ARGS)

# clean: remove the virtualenv and packaging leftovers (build/, dist/, *.egg-info).
clean:
	rm -rf $(VENV) build dist *.egg-info
