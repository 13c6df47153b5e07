# whoiscrawl: `make demo` runs the DAG against the local simulator; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: ui ui-down demo test unit integration system-deps venv stack-up stack-status stack-down fleet-up fleet-status fleet-down bench clean
N ?= 3

system-deps:
	@bash scripts/system-deps.sh

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

demo: system-deps venv
	$(BIN)/whoiscrawl demo

test: system-deps venv
	$(BIN)/python -m pytest -p no:cacheprovider

unit: venv
	$(BIN)/python -m pytest -p no:cacheprovider -m "not integration"

integration: system-deps venv
	$(BIN)/python -m pytest -p no:cacheprovider -m integration

ui: system-deps venv
	$(BIN)/whoiscrawl ui up

ui-down: venv
	$(BIN)/whoiscrawl ui down

stack-up: system-deps venv
	$(BIN)/whoiscrawl stack up

stack-status: venv
	$(BIN)/whoiscrawl stack status

stack-down: venv
	$(BIN)/whoiscrawl stack down

fleet-up: system-deps venv
	$(BIN)/whoiscrawl fleet up --hosts $(N)

fleet-status: venv
	$(BIN)/whoiscrawl fleet status

fleet-down: venv
	$(BIN)/whoiscrawl fleet down

bench: system-deps venv
	$(BIN)/python bench/index_bench.py
	$(BIN)/python bench/simulator_bench.py
	$(BIN)/python bench/crawl_bench.py
	$(BIN)/python bench/lookup_bench.py
	$(BIN)/python bench/politeness_bench.py
	$(BIN)/python bench/strategy_bench.py

clean: fleet-down stack-down
	rm -rf .whoiscrawl
