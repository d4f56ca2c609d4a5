# The two commands of the quick start: `make demo` and `make test`.
PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
# Two stamps, one venv: `make demo` needs stoker and what it runs on (about 40 MB); `make test`
# adds the test, lint and docs tools (playwright, mypy, schemathesis, ansible, mkdocs…: about 1 GB in all). Either
# order works: the dev install includes the runtime, so it stamps both.
RUNTIME := $(VENV)/.runtime
STAMP   := $(VENV)/.installed

.PHONY: demo test test-fast screenshots lint docs dist bench bench-programs bench-jobs bench-history bench-schedules bench-cluster bench-scale bench-supervisorctl bench-php bench-enqueue-postgres bench-faults venv clean

$(RUNTIME): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(RUNTIME)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP) $(RUNTIME)

venv: $(STAMP)

## demo: run the daemon in the foreground on examples/demo/stoker.toml (Ctrl-C stops it)
demo: $(RUNTIME)
	@$(BIN)/python examples/demo/banner.py
	$(BIN)/stoker -c examples/demo/stoker.toml up

## test: lint, type-check, build the docs site and run every test the machine can run
test: lint docs
	$(BIN)/pytest -q --durations=25  # the slowest named at the end: CI must stay well under 20 minutes

## test-fast: the unit tests only (no daemon, PostgreSQL, browser or example): the loop while editing
## (markers given in tests/conftest.py; see docs/development-tests.md)
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

## screenshots: retake the dashboard screenshots of the docs (docs/screenshots/) in a real browser
screenshots: $(STAMP)
	STOKER_SCREENSHOTS=$(CURDIR)/docs/screenshots $(BIN)/pytest -q tests/test_dashboard.py tests/test_dashboard_charts.py

## dist: build stoker's wheel into dist/, to install on a server (see docs/index.md, Install)
## (pip builds it with setuptools in an isolated environment: from PyPI, or pip's cache)
dist: $(RUNTIME)
	rm -rf dist build
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir dist .
	@ls dist/*.whl

## docs: build the documentation site from docs/ into site/ (mkdocs.yml); --strict: a broken
## link or anchor between the pages, or a page left out of the nav, fails the build
## (not --quiet: it hides the warnings from --strict, which then passes)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy
	MYPYPATH=tests $(BIN)/mypy bench

## bench: every performance target, each against its anchors in the same run (about 25 minutes)
bench: bench-programs bench-jobs bench-schedules bench-cluster

## bench-programs: stoker against supervisord and pm2 on the same programs (installs them into bench/.work)
bench-programs: $(STAMP)
	$(BIN)/python bench/run.py

## bench-jobs: stoker's job queue against huey and RQ on the same work (installs them into bench/.work)
bench-jobs: $(STAMP)
	$(BIN)/python bench/jobs.py

## bench-history: what the dashboard's history costs: bench-jobs' and bench-programs' stoker runs with [daemon] history on and off, and RSS after many jobs (about 6 minutes)
bench-history: $(STAMP)
	$(BIN)/python bench/history.py

## bench-schedules: firing lateness of an every-1s schedule against APScheduler (installs it into bench/.work)
bench-schedules: $(STAMP)
	$(BIN)/python bench/schedules.py

## bench-cluster: jobs on PostgreSQL, 1 and 3 nodes, against procrastinate on the same server
## (starts its own PostgreSQL; installs procrastinate into bench/.work; about 6 minutes)
bench-cluster: $(STAMP)
	$(BIN)/python bench/cluster.py

## bench-supervisorctl: `supervisorctl status` with 100 programs, stoker's XML-RPC against supervisord's
## (the supervisor package of the dev extras; about a minute)
bench-supervisorctl: $(STAMP)
	$(BIN)/python bench/supervisorctl.py

## bench-php: enqueue from PHP (clients/php, one kept-alive connection) against the Python client (about 1 minute)
bench-php: $(STAMP)
	$(BIN)/python bench/php_enqueue.py

## bench-enqueue-postgres: bench-jobs' enqueue rows with one node on PostgreSQL (starts its own server; about a minute)
bench-enqueue-postgres: $(STAMP)
	$(BIN)/python bench/enqueue_postgres.py

## bench-faults: three nodes and PostgreSQL in network namespaces under a seeded sequence of real faults
## (partitions, a lossy link, a paused daemon, kill -9, a clock jumped by libfaketime), the history checked (root; MINUTES=5; SEED=N replays;
## KINDS=cut-db,skew picks the faults)
MINUTES ?= 5
bench-faults: $(STAMP)
	$(BIN)/python bench/faults.py --minutes $(MINUTES) $(if $(SEED),--seed $(SEED)) $(if $(KINDS),--kinds $(KINDS))

## bench-scale: 1,000 programs against supervisord and pm2, a million queued jobs, a 10-minute soak
## (about 25 minutes: not part of `make bench`; SOAK_MINUTES=N for another soak)
SOAK_MINUTES ?= 10
bench-scale: $(STAMP)
	$(BIN)/python bench/scale.py --soak-minutes $(SOAK_MINUTES)

clean:
	rm -rf $(VENV) build dist site src/*.egg-info .pytest_cache .mypy_cache .ruff_cache bench/.work
