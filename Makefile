# Two commands on a fresh machine: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME := $(CURDIR)/dagster_home
export FUNNEL_WAREHOUSE_PATH ?= $(CURDIR)/warehouse/funnel.duckdb
export FUNNEL_LANDING_DIR ?= $(CURDIR)/data/sample/extracts

.PHONY: install run test lint lint-sql ui bench sample docs clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# A DuckDB 1.x client in its own small venv, to prove BI drivers can open the published file.
	$(PYTHON) -m venv $(VENV)/duckdb1x
	$(VENV)/duckdb1x/bin/pip install --quiet duckdb==1.1.3
	touch $(STAMP)

install: $(STAMP)

## Install, then run the main job on the embedded sample and print where the results are.
run: $(STAMP)
	$(BIN)/python -m orchestration.run

## Install, then run the whole test suite (and the linters).
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MAKE) --no-print-directory lint-sql
	$(BIN)/python -m pytest -q

## SQL lint (sqlfluff, dbt templater, DuckDB dialect) against a throwaway database.
lint-sql: $(STAMP)
	cd dbt_project && FUNNEL_WAREHOUSE_PATH=$$(mktemp -d)/lint.duckdb ../$(BIN)/sqlfluff lint . --disable-progress-bar

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## The Dagster UI on the same definitions, at http://127.0.0.1:3000
ui: $(STAMP)
	$(BIN)/dagster dev -m orchestration.definitions -h 127.0.0.1 -p 3000

## Time the warehouse at scale factor SF (default 1) against a plain-DuckDB floor: see benchmarks/README.md.
SF ?= 1
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python -m benchmarks.harness --scale $(SF) $(BENCH_ARGS)

## Rewrite data/README.md from data/contract.yaml.
docs: $(STAMP)
	$(BIN)/python -m data.contract --write-docs

## Regenerate the embedded sample (deterministic).
sample: $(STAMP)
	rm -rf data/sample/extracts
	$(BIN)/python -m data.generator --scale 0.02 --seed 7 --layout daily --format mixed \
		--end-date 2026-11-26 --daily-days 14 --out data/sample

clean:
	rm -rf warehouse dagster_home/history dagster_home/storage dagster_home/schedules dagster_home/logs
