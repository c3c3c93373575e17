# Two commands: `make demo` and `make test`. Both set everything up from the lock files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
UV := $(BIN)/uv
STAMP := $(VENV)/.installed-stamp
# Every venv is installed with bytecode: these machines (like many Docker images) set
# PYTHONDONTWRITEBYTECODE=1, and without .pyc files every process recompiles all it imports
# (import great_expectations: 11.5 s without, 5.9 s with).
SYNC = pip sync --require-hashes --compile-bytecode
DEMO_ONCE ?=
AIRFLOW_PORT ?= 8080
JIRA_PORT ?= 8081
SLACK_PORT ?= 8082
DEMO_HOME ?= .airflow/demo
DEMO_FLAGS := $(if $(filter 1 true yes,$(DEMO_ONCE)),--once,) --home $(DEMO_HOME) \
	--port $(AIRFLOW_PORT) --jira-port $(JIRA_PORT) --slack-port $(SLACK_PORT)

.PHONY: install system-deps compose-env demo test lint imports typecheck unit integration compat lock wheel bench bench-actions bench-read bench-workspace bench-parts bench-derive bench-scope clean

# uv alone (what `make wheel` needs); the lock's environment comes on top of it.
$(UV):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(STAMP): $(UV) requirements/lock.txt pyproject.toml
	$(UV) $(SYNC) --python $(BIN)/python requirements/lock.txt
	$(UV) pip install --python $(BIN)/python --no-deps --compile-bytecode -e .
	@touch $@

install: $(STAMP)

demo: install
	$(BIN)/python -m devkit.demo $(DEMO_FLAGS)

# The secrets docker-compose.yaml reads (.env, mode 600; never overwritten): the system's Python 3 only.
compose-env:
	$(PYTHON) devkit/compose_env.py .env

# Debian packages some tests need (PostgreSQL): installed with apt only when missing.
system-deps:
	@devkit/system-deps.sh

test: install system-deps compat lint imports typecheck
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The layer contract (.importlinter) on the package as installed: the core never imports Airflow,
# operators never import each other, sensors no operator, no cycles. The package's tree is assembled
# from pyproject's package-dir (devkit/import_graph.py), as the wheel has it.
IMPORT_GRAPH := .cache/import-graph
imports: install
	$(BIN)/python devkit/import_graph.py $(IMPORT_GRAPH)
	cd $(IMPORT_GRAPH) && $(CURDIR)/$(BIN)/lint-imports --no-logo --no-cache $(CURDIR)/.importlinter

typecheck: install
	$(BIN)/mypy

unit: install system-deps
	$(BIN)/pytest -m "not integration"

integration: install system-deps compat
	$(BIN)/pytest -m integration

# The other supported Airflow versions (3.3 is the lock's): for each, a plain Airflow environment
# (requirements/airflow-X.in: the release and the providers the package needs, resolved as of its
# release day, as Airflow's constraints for it were), then the README's deploy commands, as written
# (devkit/readme.py runs its `deploy-install` block with the venv activated). Rebuilt when the
# package, the README or the lock changes; uv's and pip's caches keep that to a minute or two.
COMPAT := 3.1 3.2
AS_OF_3.1 := 2026-03-12
AS_OF_3.2 := 2026-05-30
PACKAGE_FILES := pyproject.toml README.md $(shell find airflow_reconcile operators sensors plugins dags -type f -not -name '*.pyc')
compat: $(foreach v,$(COMPAT),.venv-airflow-$(v)/.deployed-stamp)

.venv-airflow-%/.deployed-stamp: requirements/airflow-%-lock.txt $(PACKAGE_FILES) | $(UV)
	rm -rf .venv-airflow-$*
	$(PYTHON) -m venv .venv-airflow-$*
	$(UV) $(SYNC) --python .venv-airflow-$*/bin/python $<
	$(PYTHON) devkit/readme.py run deploy-install --venv .venv-airflow-$*
	@touch $@

# Maintainers only (needs the package index): re-resolve the pins after editing requirements/*.in.
lock: install
	$(UV) pip compile requirements/dev.in -o requirements/lock.txt --generate-hashes \
		--python-version 3.11 --python-platform x86_64-unknown-linux-gnu
	$(UV) pip compile requirements/bench.in -o requirements/bench-lock.txt --generate-hashes \
		--python-version 3.11 --python-platform x86_64-unknown-linux-gnu
	$(UV) pip compile requirements/build.in -o requirements/build-lock.txt --generate-hashes \
		--python-version 3.11 --python-platform x86_64-unknown-linux-gnu
	$(foreach v,$(COMPAT),$(UV) pip compile requirements/airflow-$(v).in -o requirements/airflow-$(v)-lock.txt \
		--generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
		--exclude-newer $(AS_OF_$(v))T00:00:00Z;)

# The wheel, built in isolation from the pinned build requirements: no dev environment needed.
DIST ?= dist
# setuptools reuses build/lib: without the rm, a module moved or deleted since the last build would
# still ship in the wheel.
wheel: $(UV)
	rm -rf build
	$(UV) build --wheel --out-dir $(DIST) --build-constraints requirements/build-lock.txt --require-hashes .

# Benchmarks run in their own venv: datacompy is a benchmark-only dependency (it pins an older pandas).
BENCH_VENV := .venv-bench
BENCH_ROWS ?= 1000000
$(BENCH_VENV)/.installed-stamp: requirements/bench-lock.txt
	@test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BENCH_VENV)/bin/uv $(SYNC) --python $(BENCH_VENV)/bin/python requirements/bench-lock.txt
	$(BENCH_VENV)/bin/uv pip install --python $(BENCH_VENV)/bin/python --no-deps --compile-bytecode -e .
	@touch $@

bench: $(BENCH_VENV)/.installed-stamp
	$(BENCH_VENV)/bin/python benchmarks/drift_bench.py --rows $(BENCH_ROWS)

# Jira actions per second through the real client against the stand-in (goal >= 100/s, 0 duplicates).
ACTIONS ?= 1000
bench-actions: install
	PYTHONPATH=. $(BIN)/python benchmarks/actions_bench.py --actions $(ACTIONS)

# CSV snapshots: the strict reader against pandas' C reader (same frames; malformed rows refused).
READ_ROWS ?= 1000000
bench-read: install
	PYTHONPATH=. $(BIN)/python benchmarks/read_bench.py --rows $(READ_ROWS)

# One snapshot written and read through the run workspace, on local disk and on S3 (moto's server),
# against pandas' own to_parquet/read_parquet: time and peak memory added.
WORKSPACE_ROWS ?= 1000000
bench-workspace: install
	PYTHONPATH=. $(BIN)/python benchmarks/workspace_bench.py --rows $(WORKSPACE_ROWS)

# The drift task on two Parquet snapshots: whole in memory against the diff in parts (a quarter of the rows
# a part, and parts of 100,000 rows): time and peak memory added.
PARTS_ROWS ?= 1000000
bench-parts: install
	PYTHONPATH=. $(BIN)/python benchmarks/parts_bench.py --rows $(PARTS_ROWS)

# A derived side: three inputs joined and aggregated by the sandboxed DuckDB derive, then the diff, against
# the same with pandas merges: medians of 3 and peak memory added (goal: <= 1.0 s at 200,000 rows per input).
DERIVE_ROWS ?= 200000
bench-derive: install
	PYTHONPATH=. $(BIN)/python benchmarks/derive_bench.py --rows $(DERIVE_ROWS)

# A scoped run's reads: a 10-key scope against a SQL input and a Jira (the stand-in) narrowed in the source,
# against a full read: rows returned (at most 10) and time.
SCOPE_ROWS ?= 100000
SCOPE_ISSUES ?= 100000
bench-scope: install
	PYTHONPATH=. $(BIN)/python benchmarks/scope_bench.py --rows $(SCOPE_ROWS) --issues $(SCOPE_ISSUES)

clean:
	rm -rf $(VENV) $(BENCH_VENV) .venv-airflow-* .airflow .cache dist build *.egg-info
