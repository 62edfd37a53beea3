# equispike — `make test` and `make demo` set everything up from PyPI on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export AMARANTH_USE_YOSYS := builtin
export PYTHONHASHSEED := 0

.PHONY: test sim sim-random-init formal demo check bench synth synth-smoke lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

# (the deeper formal bounds and cover traces are left to `make formal`)
test: $(STAMP) lint
	$(BIN)/pytest -n 2 -m "not formal_full"

sim: $(STAMP)
	$(BIN)/pytest -n 2 -m sim

# Every cocotb run starts from randomized initial values (Verilator --x-initial unique, plusarg
# +verilator+rand+reset+2); make test and make sim use seed 1. This target runs every RTL test
# again with seeds 2, 3 and 4 (same builds: the seed is a run-time argument).
sim-random-init: $(STAMP)
	EQUISPIKE_INIT_SEEDS=2,3,4 $(BIN)/pytest -n 2 -m sim

# every SymbiYosys proof (Yices 2), the fast subset of `make test` included
formal: $(STAMP)
	$(BIN)/pytest -n 2 -m formal

# the main job, then the exported model on the core in simulation (3 test images, every spike
# compared with the golden model, cycles per image beside the ideal)
demo: $(STAMP)
	$(BIN)/equispike demo
	$(BIN)/equispike core run --images 3

check: $(STAMP)
	$(BIN)/equispike check --random 50 --json
	$(BIN)/equispike check --arch sdt --random 50 --json

bench: $(STAMP)
	$(BIN)/equispike bench golden

synth: $(STAMP)
	$(BIN)/equispike synth --sweep --json

clean:
	rm -rf build .pytest_cache
