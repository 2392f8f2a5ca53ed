# The two commands of the README, plus developer helpers. Safe to run repeatedly.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: quickstart test unit lint bench venv venv-all venv-flink clean

$(BIN)/python:
	PYTHON=$(PYTHON) scripts/ensure-venv.sh $(VENV)

$(VENV)/.installed: $(BIN)/python requirements.txt setup.py
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.installed-extras: $(VENV)/.installed requirements-extras.txt
	$(BIN)/pip install --quiet -r requirements-extras.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed-extras requirements-dev.txt
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

## Every connector extra (kafka, postgres, clickhouse) into .venv, from this checkout: the same as
## `.venv/bin/pip install -e '.[kafka,postgres,clickhouse]'` with the pins of requirements-extras.txt.
## (The flink extra has its own environment: `make venv-flink`.)
venv-all: $(VENV)/.installed-extras

## The Flink engine's own environment (apache-flink pins an older Beam) plus its Kafka jars.
FLINK_VENV := .venv-flink
$(FLINK_VENV)/.installed: requirements-flink.txt setup.py scripts/flink-connector-jars.sh
	PYTHON=$(PYTHON) scripts/ensure-venv.sh $(FLINK_VENV)
	$(FLINK_VENV)/bin/pip install --quiet -r requirements-flink.txt
	$(FLINK_VENV)/bin/pip install --quiet --no-deps -e .
	scripts/flink-connector-jars.sh $(FLINK_VENV)/jars $(FLINK_VENV)/bin/pip
	touch $@

venv-flink: $(FLINK_VENV)/.installed

## Run the quick-start pipeline on the embedded default (file source, SQLite sink).
quickstart: $(VENV)/.installed
	$(BIN)/cdcflow run examples/quickstart/pipeline.yaml

## Install test dependencies and system packages, then run the whole suite.
test: $(VENV)/.installed-dev $(FLINK_VENV)/.installed
	$(BIN)/ruff check cdcflow tests benchmarks
	$(BIN)/mypy cdcflow
	$(BIN)/lint-imports
	scripts/install-system-deps.sh
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

unit: $(VENV)/.installed-dev
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check cdcflow tests benchmarks
	$(BIN)/mypy cdcflow
	$(BIN)/lint-imports

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/decode_throughput.py
	$(BIN)/python benchmarks/redact_throughput.py

clean:
	rm -rf $(VENV) $(FLINK_VENV) examples/*/output .pytest_cache .mypy_cache .ruff_cache
