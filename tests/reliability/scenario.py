"""A replay in progress against one or more workers, and the figures it ends with."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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


def write_signups(path: Path, n: int, invalid_share: float) -> tuple[set[str], int]:
    """Write n signups; return the valid event ids and the number of invalid ones."""
    with path.open("wb") as handle:
        for value in generate_signups(n, seed=2024, invalid_share=invalid_share):
            handle.write(value + b"\n")
    return signup_ids(path)


@dataclass
class Scenario:
    """Workers scoring a replay in progress, and what the replay holds."""

    kafka: Broker
    names: Names
    workers: list[WorkerProcess]
    valid: set[str]
    invalid: int
    replay: threading.Thread
    replayed: list[object] = field(default_factory=list)

    @property
    def worker(self) -> WorkerProcess:
        """The first worker started."""
        return self.workers[0]

    def finish(
        self, fault: str, guarantee: str, report: list[dict[str, object]]
    ) -> dict[str, object]:
        """Wait for the replay and the outputs; record and return the figures."""
        self.replay.join(timeout=600)
        assert not self.replay.is_alive(), "the replay did not finish within 10 minutes"
        (done,) = self.replayed
        assert getattr(done, "returncode", None) == 0, f"replay failed: {done}"
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


def start_scenario(
    kafka: Broker,
    names: Names,
    worker_factory: Callable[..., WorkerProcess],
    model: Path,
    tmp_path: Path,
    events: int,
    rate: int,
    workers: int = 1,
    **worker_env: str,
) -> Scenario:
    """Start workers, then replay events (0.2% invalid) at rate in the background."""
    path = tmp_path / "signups.jsonl"
    valid, invalid = write_signups(path, events, invalid_share=0.002)
    started = [worker_factory(model, **worker_env) for _ in range(workers)]
    for worker in started:
        worker.wait_ready()
    replay, replayed = replay_in_background(kafka, names, path, rate)
    return Scenario(kafka, names, started, valid, invalid, replay, replayed)


def replay_in_background(
    kafka: Broker, names: Names, path: Path, rate: int
) -> tuple[threading.Thread, list[object]]:
    """Replay a JSONL file at rate on a thread; its finished process lands in the list."""
    env = segstream_env(kafka, names)
    replayed: list[object] = []

    def run() -> None:
        # The outcome is checked by Scenario.finish(), in the test's own thread.
        replayed.append(
            run_segstream(["replay", str(path), "--rate", str(rate)], env=env, timeout=600)
        )

    replay = threading.Thread(target=run)
    replay.start()
    return replay, replayed
