"""Shared fixtures: a clean environment for every test, a real Kafka broker for the session,
fresh topics, workers and a trained model."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import (
    RELIABILITY_FIGURES,
    REPO,
    Broker,
    Names,
    WorkerFactory,
    foreign_variables,
    fresh_names,
    keep_broker_script_variables,
    ok,
    start_broker,
    stop_all,
    worker_starter,
    write_figures,
)

_session_environment = pytest.MonkeyPatch()


def pytest_configure(config: pytest.Config) -> None:
    """Clear segstream's, Faust's and mode's variables before any test module imports Faust,
    which reads some of them once, at import; kafka-local keeps its own."""
    keep_broker_script_variables(os.environ)
    for name in foreign_variables(os.environ, with_faust_settings=False):
        _session_environment.delenv(name)
    for name in foreign_variables(os.environ):
        _session_environment.delenv(name)
    # Hypothesis keeps its example database beside the tests, whatever directory a test is in.
    from hypothesis.configuration import set_hypothesis_home_dir

    set_hypothesis_home_dir(REPO / ".hypothesis")


def pytest_unconfigure(config: pytest.Config) -> None:
    """Give the environment back as the run found it."""
    _session_environment.undo()


_FIGURES_KEY = "reliability figures"


def pytest_sessionfinish(session: pytest.Session) -> None:
    """On a pytest-xdist worker: hand the figures its fault tests recorded to the controller."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output[_FIGURES_KEY] = json.dumps(RELIABILITY_FIGURES)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """On the controller: gather the figures of each worker as it ends."""
    output = getattr(node, "workeroutput", {})
    RELIABILITY_FIGURES.extend(json.loads(output.get(_FIGURES_KEY, "[]")))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the figures after each fault, and keep them in reliability-report.json."""
    columns = ["fault", "guarantee", "in", "assigned", "dead_lettered", "duplicates", "missing"]
    write_figures(
        terminalreporter,
        "reliability figures",
        columns,
        RELIABILITY_FIGURES,
        Path("reliability-report.json"),
    )


@pytest.fixture(scope="session", autouse=True)
def _session_working_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Session fixtures (the broker, the trained model) run in an empty directory too: a .env
    file where pytest was started must not reach them."""
    with pytest.MonkeyPatch.context() as session:
        session.chdir(tmp_path_factory.mktemp("session-cwd"))
        yield


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Every test starts from the defaults: no segstream, Faust or mode variable, no cached
    settings, and a working directory of its own (so no .env file is read)."""
    from stream_app.cli import common as cli
    from stream_app.settings import get_settings

    for name in foreign_variables(os.environ):
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    monkeypatch.setattr(cli, "_warned", False)
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A real single-node Kafka broker for the whole session; the tests fail if it cannot start."""
    broker = start_broker(tmp_path_factory.mktemp("kafka"))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def names() -> Names:
    """Fresh topic names and consumer group for one test."""
    return fresh_names()


@pytest.fixture
def worker_factory(kafka: Broker, names: Names, tmp_path: Path) -> Iterator[WorkerFactory]:
    """Start `segstream worker` subprocesses for this test; all are stopped at its end, and
    one still running then must exit 0 on SIGTERM."""
    start, started = worker_starter(kafka, names, tmp_path)
    yield start
    stop_all(started)


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained on 400 generated customers; the path of its directory.

    Without stability resamples and report: the broker tests score with the model, and the
    training tests check those.
    """
    root = tmp_path_factory.mktemp("model")
    customers = root / "customers.csv"
    ok(["generate", "customers", "--n", "400", "--seed", "1", "--out", str(customers)])
    command = ["train", "--data", str(customers), "--k", "4", "--out", str(root / "models")]
    trained = ok([*command, "--resamples", "0", "--no-report"])
    return Path(trained.strip().splitlines()[-1])
