# Two commands on a fresh machine: `make run` and `make test` (each creates .venv when missing).
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install run migrate test test-models test-ui lint format bench bench-smoke clean test-postgres

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml plugin/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e ./plugin
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the app with its dev tools

MODELS := $(VENV)/.installed-models

$(MODELS): pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,models]'
	touch $(MODELS)

run: $(STAMP)  ## migrate both databases, then serve on $(HOST):$(PORT)
	$(BIN)/python -m app serve --host $(HOST) --port $(PORT)

migrate: $(STAMP)  ## bring both databases to head
	$(BIN)/python -m app migrate

lint: $(STAMP)  ## ruff (lint + format check) and mypy on app/
	$(BIN)/ruff check app tests bench migrations plugin
	$(BIN)/ruff format --check app tests bench migrations plugin
	$(BIN)/mypy app plugin/src

format: $(STAMP)
	$(BIN)/ruff check --fix app tests bench migrations plugin
	$(BIN)/ruff format app tests bench migrations plugin

test: lint  ## the whole suite: lint, types, unit, API, migrations, end-to-end
	$(BIN)/python -m pytest -q

test-models: $(MODELS)  ## generate the six families' suites and run them on tiny CPU models (torch)
	$(BIN)/python -m pytest -q -m models tests/models

# The same API, migration and end-to-end tests on PostgreSQL: a throwaway cluster (initdb + pg_ctl
# from Debian's postgresql package, in a temp dir on a free port), or the server in APP_TEST_PG_URL.
# The bench's postgres smoke test only: the rest of tests/bench runs the DuckDB bench whatever
# the backend (it would run twice for nothing).
PG_SUITES ?= tests/components tests/unified tests/migrations tests/e2e tests/core/test_sql_query.py \
	tests/bench/test_bench_postgres.py

test-postgres: $(STAMP)  ## the API, migration and e2e suites on a real PostgreSQL (see README)
	@if [ -z "$$APP_TEST_PG_URL" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; \
	  else \
	    echo "make test-postgres: no PostgreSQL server under /usr/lib/postgresql/*/bin; run as" \
	      "root to install Debian's postgresql package, or set APP_TEST_PG_URL" >&2; exit 1; \
	  fi; \
	fi
	$(BIN)/python -m pytest -q --backend postgres $(PG_SUITES)

UI := $(VENV)/.installed-ui

$(UI): pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,ui]'
	touch $(UI)

test-ui: $(UI)  ## the dashboard in headless Chromium (Debian's `chromium`, installed when missing)
	@test -x /usr/bin/chromium || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)
	$(BIN)/python -m pytest -q -m ui tests/web

FUZZ := $(VENV)/.installed-fuzz

$(FUZZ): pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,fuzz]'
	touch $(FUZZ)

.PHONY: test-api-fuzz
test-api-fuzz: $(FUZZ)  ## schemathesis over every operation of /openapi.json, open and keyed
	$(BIN)/python -m pytest -q -s -m fuzz tests/fuzz

# BENCH_BACKEND=postgres: reads and concurrent ingest on PostgreSQL (1, 2, 4 workers) next to
# DuckDB, on BENCH_PG_URL or a throwaway cluster (tests/pg_cluster.py); see BENCHMARKS.md.
bench: $(STAMP)  ## benchmarks against raw DuckDB (BENCH_SCALE=full for the full data set)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) data generated_tests .pytest_cache .mypy_cache .ruff_cache *.egg-info
