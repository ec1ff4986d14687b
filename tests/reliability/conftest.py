"""Reliability fixtures: a broker of its own for a test that stops or kills the broker, and
replays against workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.scenario import ScenarioFactory, scenario_starter
from tests.support import RELIABILITY_FIGURES, Broker, Names, WorkerFactory, start_broker


@pytest.fixture
def kafka(kafka: Broker, request: pytest.FixtureRequest) -> Iterator[Broker]:
    """The session's broker; a private one for a test marked own_broker, which stops or kills
    its broker (faults on workers alone touch nothing but the test's own topics and group)."""
    if request.node.get_closest_marker("own_broker") is None:
        yield kafka
        return
    broker = start_broker(request.getfixturevalue("tmp_path_factory").mktemp("kafka-own"))
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
    """Rows of figures a test records; printed at the end of the run and saved as JSON
    (tests/conftest.py)."""
    return RELIABILITY_FIGURES
