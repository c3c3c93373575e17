# Two commands: `make demo` and `make test`. Both set everything up from the lock file.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
STAMP := $(VENV)/.installed-stamp
DEMO_ONCE ?=
AIRFLOW_PORT ?= 8080
JIRA_PORT ?= 8081
SLACK_PORT ?= 8082
DEMO_HOME ?= .airflow/demo
DEMO_FLAGS := $(if $(filter 1 true yes,$(DEMO_ONCE)),--once,) --home $(DEMO_HOME) \
	--port $(AIRFLOW_PORT) --jira-port $(JIRA_PORT) --slack-port $(SLACK_PORT)

.PHONY: install system-deps demo test lint typecheck unit integration lock wheel bench bench-actions clean

$(STAMP): requirements/lock.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip sync --python $(BIN)/python --require-hashes requirements/lock.txt
	$(BIN)/uv pip install --python $(BIN)/python --no-deps -e .
	@touch $@

install: $(STAMP)

demo: install
	$(BIN)/python -m devkit.demo $(DEMO_FLAGS)

# Debian packages some tests need (PostgreSQL): installed with apt only when missing.
system-deps:
	@devkit/system-deps.sh

test: install system-deps lint typecheck
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

unit: install system-deps
	$(BIN)/pytest -m "not integration"

integration: install system-deps
	$(BIN)/pytest -m integration

# Maintainers only (needs the package index): re-resolve the pins after editing requirements/*.in.
lock: install
	$(BIN)/uv pip compile requirements/dev.in -o requirements/lock.txt --generate-hashes \
		--python-version 3.11 --python-platform x86_64-unknown-linux-gnu
	$(BIN)/uv pip compile requirements/bench.in -o requirements/bench-lock.txt --generate-hashes \
		--python-version 3.11 --python-platform x86_64-unknown-linux-gnu

DIST ?= dist
wheel: install
	$(BIN)/python -m build --wheel --no-isolation --outdir $(DIST) .

# Benchmarks run in their own venv: datacompy is a benchmark-only dependency (it pins an older pandas).
BENCH_VENV := .venv-bench
BENCH_ROWS ?= 1000000
$(BENCH_VENV)/.installed-stamp: requirements/bench-lock.txt
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BENCH_VENV)/bin/uv pip sync --python $(BENCH_VENV)/bin/python --require-hashes requirements/bench-lock.txt
	$(BENCH_VENV)/bin/uv pip install --python $(BENCH_VENV)/bin/python --no-deps -e .
	@touch $@

bench: $(BENCH_VENV)/.installed-stamp
	$(BENCH_VENV)/bin/python benchmarks/drift_bench.py --rows $(BENCH_ROWS)

# Jira actions per second through the real client against the stand-in (goal >= 100/s, 0 duplicates).
ACTIONS ?= 1000
bench-actions: install
	PYTHONPATH=. $(BIN)/python benchmarks/actions_bench.py --actions $(ACTIONS)

clean:
	rm -rf $(VENV) $(BENCH_VENV) .airflow dist build *.egg-info
