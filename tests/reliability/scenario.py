"""A replay in progress against one or more workers, and the figures it ends with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tests.support import (
    Background,
    Broker,
    Names,
    WorkerFactory,
    WorkerProcess,
    delivery_figures,
    poll,
    read_topic,
    segstream_env,
    signup_ids,
    start_segstream,
    wait_until_consumed,
    wait_until_settled,
    write_signups,
)


@dataclass
class Scenario:
    """Workers scoring a replay in progress, and what the replay holds."""

    kafka: Broker
    names: Names
    workers: list[WorkerProcess]
    valid: set[str]
    invalid: int
    replay: Background

    @property
    def worker(self) -> WorkerProcess:
        """The first worker started."""
        return self.workers[0]

    def finish(
        self, fault: str, guarantee: str, report: list[dict[str, object]]
    ) -> dict[str, object]:
        """Wait for the replay to succeed and the workers to commit all of it; record and
        return the figures."""
        self.replay.finish(timeout=600)
        bootstrap, names = self.kafka.bootstrap, self.names
        wait_until_consumed(bootstrap, names.app_id, names.input_topic, timeout=240)
        wait_until_settled(bootstrap, [names.output_topic, names.dlq_topic])
        assignments = read_topic(bootstrap, names.output_topic)
        letters = read_topic(bootstrap, names.dlq_topic)
        figures: dict[str, object] = {
            "fault": fault,
            "guarantee": guarantee,
            **delivery_figures(assignments, letters, self.valid, self.invalid),
        }
        report.append(figures)
        return figures


class ScenarioFactory(Protocol):
    """Starts workers (with extra settings), then replays events (0.2% invalid) at rate in
    the background."""

    def __call__(
        self, events: int, rate: int, workers: int = 1, settings: dict[str, str] | None = None
    ) -> Scenario: ...


def scenario_starter(
    kafka: Broker, names: Names, worker_factory: WorkerFactory, model: Path, tmp_path: Path
) -> tuple[ScenarioFactory, list[Background]]:
    """A function that starts scenarios, and the replays it started (to stop at the end)."""
    replays: list[Background] = []

    def start(
        events: int, rate: int, workers: int = 1, settings: dict[str, str] | None = None
    ) -> Scenario:
        path = write_signups(tmp_path / "signups.jsonl", events, seed=2024, invalid_share=0.002)
        valid, invalid = signup_ids(path)
        started = [worker_factory(model, **(settings or {})) for _ in range(workers)]
        for worker in started:
            worker.wait_ready()
        replay = start_segstream(
            ["replay", str(path), "--rate", str(rate)],
            segstream_env(kafka, names),
            tmp_path / "replay.log",
        )
        replays.append(replay)
        return Scenario(kafka, names, started, valid, invalid, replay)

    return start, replays


def consumed(worker: WorkerProcess) -> int:
    """How many signups the worker has read since it started."""
    count: int = worker.status()["consumed"]
    return count


def wait_for_progress(worker: WorkerProcess, records: int, timeout: float = 60) -> None:
    """Wait until the worker has read records more signups than it had when called."""
    target = consumed(worker) + records
    poll(
        lambda: consumed(worker) >= target,
        f"the worker reads {records} more signups",
        timeout,
        explain=worker.log_tail,
    )
