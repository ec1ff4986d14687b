"""Reliability fixtures: a broker of each test's own (faults must not touch other tests)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import KAFKA_LOCAL, Broker, write_figures

REPORT: list[dict[str, object]] = []


@pytest.fixture
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A private broker for one reliability test, since these tests stop and kill things."""
    state_dir = tmp_path_factory.mktemp("kafka-reliability")
    bootstrap = Broker("", state_dir).control("start")
    try:
        yield Broker(bootstrap=bootstrap, state_dir=state_dir)
    finally:
        subprocess.run([str(KAFKA_LOCAL), "stop", str(state_dir)], check=False, timeout=60)


@pytest.fixture
def report() -> list[dict[str, object]]:
    """Rows of figures a test records; printed at the end of the run and saved as JSON."""
    return REPORT


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the figures after each fault, and keep them in reliability-report.json."""
    columns = ["fault", "guarantee", "in", "assigned", "dead_lettered", "duplicates", "missing"]
    write_figures(
        terminalreporter, "reliability figures", columns, REPORT, Path("reliability-report.json")
    )
