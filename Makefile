# segstream: `make demo` runs the whole job on a local broker; `make test` runs every check.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# uv installs exactly what uv.lock says; its own version is the one pinned in pyproject.toml.
UV_VERSION := $(shell sed -n 's/^ *"uv==\([^"]*\)".*/\1/p' pyproject.toml)
UV := UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv
# What the images install (docker/requirements-*.txt), exported from uv.lock.
EXPORT := $(UV) export --locked --no-hashes --no-emit-project --no-header --no-annotate --no-dev

.PHONY: install lock demo test test-suite test-reliability lint typecheck compose-check compose-test alerts-check unit integration bench kafka-start kafka-stop clean

# --locked: a pyproject.toml that no longer matches uv.lock fails here (run `make lock`).
$(STAMP): pyproject.toml uv.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --quiet --locked --extra dev
	touch $(STAMP)

install: $(STAMP)

# After a change of the dependencies in pyproject.toml: resolve again, export for the images.
lock:
	test -x $(BIN)/uv || { $(PYTHON) -m venv $(VENV) && $(BIN)/pip install --quiet "uv==$(UV_VERSION)"; }
	$(UV) lock
	$(EXPORT) > docker/requirements-worker.txt
	$(EXPORT) --extra train > docker/requirements-trainer.txt

demo: install
	scripts/demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	VENV=$(VENV) scripts/readme-settings --check
	$(EXPORT) | diff -u docker/requirements-worker.txt - || { echo "run make lock" >&2; exit 1; }
	$(EXPORT) --extra train | diff -u docker/requirements-trainer.txt - || { echo "run make lock" >&2; exit 1; }

typecheck: install
	$(BIN)/mypy

compose-check:
	scripts/ensure-docker-compose
	docker-compose config -q

# The Prometheus alerting rules, checked and unit-tested with promtool from Debian's
# prometheus package; CI starts from a clean machine as root, so it is installed when missing
# (Debian's package scripts do not start the Prometheus server where policy-rc.d forbids it).
alerts-check:
	command -v promtool >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }
	promtool check rules deploy/prometheus/alerts.yml
	cd deploy/prometheus && promtool test rules alerts.test.yml

# Two parts at once, each printed when it ends: the pytest suite and the docker-compose stack.
test: install lint typecheck compose-check alerts-check
	$(MAKE) --no-print-directory -j2 --output-sync=target test-suite compose-test

# The pytest suite on two processes (pytest-xdist), a test at a time but for the modules
# marked xdist_group, whose module-scoped workers and brokers stay in one process. Each process
# starts a broker of its own with scripts/kafka-local and stops it at the end; most of the time
# goes to waiting on workers and brokers, which overlaps well on two cores.
test-suite: install
	$(BIN)/pytest -n 2 --dist loadgroup

# Builds the images and runs docker-compose.yml through tests/compose (scaling, a killed
# worker, down and up again) on the machine's Docker, or on a private daemon it installs with
# apt, starts and stops (scripts/compose-test). A few minutes; base images and wheels are
# cached in ~/.cache/segstream between runs.
compose-test: install
	scripts/compose-test

unit: install
	$(BIN)/pytest tests/unit

integration: install
	$(BIN)/pytest tests/integration

# Faults on workers and brokers (also part of `make test`); prints the figures after each fault.
test-reliability: install
	$(BIN)/pytest tests/reliability

# Not part of `make test`: about 20-25 minutes on 2 cores with a worker that drains 1,000,000
# events in seconds (longer on a busy machine or a slower worker), on a broker of its own that
# it starts and stops; the first run also makes bench/.venvs/ (the Quix Streams and
# confluent-kafka peers). `make bench BENCH_ARGS=--quick` is a smoke run of a few minutes;
# the method is in bench/README.md, the figures in bench/results/latest.md. Then customer
# state (bench/state.py, about 10 more minutes): restore, re-segmentation, memory of
# 10,000,000 customers; figures in bench/results/state-latest.md.
bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)
	$(BIN)/python -m bench.state $(BENCH_STATE_ARGS)

kafka-start:
	scripts/kafka-local start

kafka-stop:
	scripts/kafka-local stop

clean:
	rm -rf $(VENV) .kafka-local demo-out .pytest_cache .mypy_cache .ruff_cache bench/.venvs
	rm -rf compose-report.json
	rm -f docker/wheels/*.whl
