# Two commands do all set-up: `make demo` (the paper reproduction) and `make test` (ruff + pytest).
# Both create / reuse .venv and install with the pinned versions in constraints.txt.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Real data beside the checkout, when present (else $TAUGATE_DATA_DIR, the cache, a download, a fallback).
DATA_DIR ?= $(firstword $(TAUGATE_DATA_DIR) $(wildcard ../shared/data))
DATASET ?= mnist-10k
DEMO_OUT ?= runs/demo
# every optional extra that installs on Linux, so that no test is skipped for lack of a package
# (directml is Windows/WSL only)
EXTRAS ?= onnx,hf,ray
DATA_FLAG := $(if $(DATA_DIR),--data-dir $(DATA_DIR),)

.PHONY: demo test lint bench install clean

$(BIN)/.installed: pyproject.toml setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,$(EXTRAS)]'
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/taugate reproduce --dataset $(DATASET) $(DATA_FLAG) --out $(DEMO_OUT) --force

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q

bench: $(BIN)/.installed
	mkdir -p runs
	$(BIN)/python -m pytest bench/ --benchmark-only --benchmark-warmup=on --benchmark-group-by=group \
	  --benchmark-columns=min,median,iqr,rounds --benchmark-sort=name --benchmark-json=runs/bench.json -p no:cacheprovider

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
