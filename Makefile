# equispike — `make test` and `make demo` set everything up from PyPI on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export AMARANTH_USE_YOSYS := builtin
export PYTHONHASHSEED := 0

.PHONY: test sim demo check bench synth synth-smoke lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) lint
	$(BIN)/pytest -n 2

sim: $(STAMP)
	$(BIN)/pytest -n 2 -m sim

demo: $(STAMP)
	@if $(BIN)/equispike demo --help >/dev/null 2>&1; then $(BIN)/equispike demo; \
	else $(BIN)/equispike check --random 50; fi

check: $(STAMP)
	$(BIN)/equispike check --random 50 --json

bench: $(STAMP)
	$(BIN)/equispike bench golden

synth: $(STAMP)
	$(BIN)/equispike synth --sweep --json

clean:
	rm -rf build .pytest_cache
