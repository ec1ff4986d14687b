# segstream: `make demo` runs the whole job on a local broker; `make test` runs every check.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test test-reliability lint typecheck compose-check compose-test alerts-check unit integration bench kafka-start kafka-stop clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	scripts/demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

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

# The pytest session starts its own broker with scripts/kafka-local and stops it at the end;
# then the docker-compose stack is built and tested.
test: install lint typecheck compose-check alerts-check
	$(BIN)/pytest
	scripts/compose-test

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
# the method is in bench/README.md, the figures in bench/results/latest.md.
bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

kafka-start:
	scripts/kafka-local start

kafka-stop:
	scripts/kafka-local stop

clean:
	rm -rf $(VENV) .kafka-local demo-out .pytest_cache .mypy_cache .ruff_cache bench/.venvs
	rm -rf compose-report.json
	rm -f docker/wheels/*.whl
