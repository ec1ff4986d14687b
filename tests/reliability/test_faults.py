"""Crashes, broker restarts and shutdowns during a replay: nothing lost, nothing duplicated."""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import (
    Broker,
    Names,
    WorkerProcess,
    delivery_figures,
    run_segstream,
    segstream_env,
    signup_ids,
    wait_for_records,
)
from training.generate import generate_signups

pytestmark = pytest.mark.reliability


def _signups(path: Path, n: int, invalid_share: float) -> tuple[set[str], int]:
    """Write n signups; return the valid event ids and the number of invalid ones."""
    with path.open("wb") as handle:
        for value in generate_signups(n, seed=2024, invalid_share=invalid_share):
            handle.write(value + b"\n")
    return signup_ids(path)


@dataclass
class _Scenario:
    """A worker scoring a replay in progress, and what the replay holds."""

    kafka: Broker
    names: Names
    worker: WorkerProcess
    valid: set[str]
    invalid: int
    replay: threading.Thread

    def finish(
        self, fault: str, guarantee: str, report: list[dict[str, object]]
    ) -> dict[str, object]:
        """Wait for the replay and the outputs; record and return the figures."""
        self.replay.join(timeout=300)
        bootstrap, names = self.kafka.bootstrap, self.names
        assignments = wait_for_records(bootstrap, names.output_topic, len(self.valid), timeout=240)
        letters = wait_for_records(bootstrap, names.dlq_topic, self.invalid, timeout=60)
        figures: dict[str, object] = {
            "fault": fault,
            "guarantee": guarantee,
            **delivery_figures(assignments, letters, self.valid, self.invalid),
        }
        report.append(figures)
        return figures


def _start(
    kafka: Broker,
    names: Names,
    worker_factory: Callable[..., WorkerProcess],
    model: Path,
    tmp_path: Path,
    events: int,
    rate: int,
    **worker_env: str,
) -> _Scenario:
    """Start a worker, then replay events (0.2% invalid) at rate in the background."""
    path = tmp_path / "signups.jsonl"
    valid, invalid = _signups(path, events, invalid_share=0.002)
    worker = worker_factory(model, **worker_env)
    worker.wait_ready()
    env = segstream_env(kafka, names)

    def run() -> None:
        done = run_segstream(["replay", str(path), "--rate", str(rate)], env=env, timeout=600)
        assert done.returncode == 0, done.stderr

    replay = threading.Thread(target=run)
    replay.start()
    return _Scenario(kafka, names, worker, valid, invalid, replay)


@pytest.mark.parametrize(
    ("guarantee", "events"),
    # at_least_once runs shorter: it is here to measure its duplicates, not to prove a bound.
    [("exactly_once", 50_000), ("at_least_once", 20_000)],
)
def test_three_kill_9s_during_a_replay(
    guarantee: str,
    events: int,
    kafka: Broker,
    names: Names,
    trained_model: Path,
    worker_factory: Callable[..., WorkerProcess],
    tmp_path: Path,
    report: list[dict[str, object]],
) -> None:
    extra = {"SEGSTREAM_PROCESSING_GUARANTEE": guarantee}
    scenario = _start(
        kafka, names, worker_factory, trained_model, tmp_path, events, rate=2_500, **extra
    )
    worker = scenario.worker
    moments = random.Random(7)
    for _ in range(3):
        time.sleep(moments.uniform(1.0, 4.0))
        worker.process.kill()  # SIGKILL: no shutdown code runs
        worker.process.wait()
        worker = worker_factory(trained_model, **extra)
        worker.wait_ready()

    figures = scenario.finish("3x kill -9", guarantee, report)
    assert figures["missing"] == 0, figures
    if guarantee == "exactly_once":
        assert figures["duplicates"] == 0, figures


def test_broker_stop_and_restart_during_a_replay(
    kafka: Broker,
    names: Names,
    trained_model: Path,
    worker_factory: Callable[..., WorkerProcess],
    tmp_path: Path,
    report: list[dict[str, object]],
) -> None:
    scenario = _start(kafka, names, worker_factory, trained_model, tmp_path, 20_000, rate=2_000)
    time.sleep(3)
    kafka.control("stop")
    time.sleep(3)
    kafka.control("resume")

    figures = scenario.finish("broker restart", "exactly_once", report)
    assert scenario.worker.process.poll() is None, scenario.worker.log_tail()
    assert figures["missing"] == 0, figures
    assert figures["duplicates"] == 0, figures


def test_sigterm_exits_cleanly_within_10_seconds_and_loses_nothing(
    kafka: Broker,
    names: Names,
    trained_model: Path,
    worker_factory: Callable[..., WorkerProcess],
    tmp_path: Path,
    report: list[dict[str, object]],
) -> None:
    scenario = _start(kafka, names, worker_factory, trained_model, tmp_path, 10_000, rate=2_000)
    worker = scenario.worker
    time.sleep(2.5)
    stopping = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    try:
        status = worker.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"worker still running 15 s after SIGTERM:\n{worker.log_tail()}")
    elapsed = time.monotonic() - stopping
    assert status == 0, worker.log_tail()
    assert elapsed < 10, f"SIGTERM took {elapsed:.1f} s"
    worker_factory(trained_model).wait_ready()

    figures = scenario.finish("SIGTERM + restart", "exactly_once", report)
    figures["stop_seconds"] = round(elapsed, 2)
    assert figures["missing"] == 0, figures
    assert figures["duplicates"] == 0, figures
