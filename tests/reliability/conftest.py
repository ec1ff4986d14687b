"""Reliability fixtures: a broker of each test's own (faults must not touch other tests) and
replays against workers on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.scenario import ScenarioFactory, scenario_starter
from tests.support import Broker, Names, WorkerFactory, start_broker, write_figures

REPORT: list[dict[str, object]] = []


@pytest.fixture
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A private broker for one reliability test, since these tests stop and kill things."""
    broker = start_broker(tmp_path_factory.mktemp("kafka-reliability"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def start_scenario(
    kafka: Broker,
    names: Names,
    worker_factory: WorkerFactory,
    trained_model: Path,
    tmp_path: Path,
) -> Iterator[ScenarioFactory]:
    """Start workers with the trained model and a replay in the background; a replay still
    running when the test ends is stopped."""
    start, replays = scenario_starter(kafka, names, worker_factory, trained_model, tmp_path)
    yield start
    for replay in replays:
        replay.kill()


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
