"""A fatal Kafka error stops the worker with exit status 1 and one clear line; nothing is lost."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import (
    Broker,
    Names,
    WorkerProcess,
    run_segstream,
    segstream_env,
    wait_for_records,
)
from training.generate import generate_signups

pytestmark = pytest.mark.integration


def test_a_worker_fenced_by_another_with_its_id_exits_1_and_the_other_loses_nothing(
    kafka: Broker,
    names: Names,
    trained_model: Path,
    worker_factory: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    path = tmp_path / "signups.jsonl"
    path.write_bytes(b"\n".join(generate_signups(6_000, seed=11)) + b"\n")
    # Two workers given one id share one transactional id: the newer one fences the older.
    first = worker_factory(trained_model, SEGSTREAM_WORKER_ID="shared")
    first.wait_ready()
    env = segstream_env(kafka, names)
    sent = run_segstream(["replay", str(path), "--rate", "2000"], env=env)
    assert sent.returncode == 0, sent.stderr
    second = worker_factory(trained_model, SEGSTREAM_WORKER_ID="shared")
    second.wait_ready()
    sent = run_segstream(["replay", str(path), "--rate", "2000"], env=env)
    assert sent.returncode == 0, sent.stderr

    deadline = time.monotonic() + 60
    while first.process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert first.process.returncode == 1, first.log_tail()
    assert "data plane stopped" in first.log_tail(400)
    assert "fenced" in first.log_tail(400).lower()

    assignments = wait_for_records(kafka.bootstrap, names.output_topic, 12_000)
    seen = Counter(r.json()["source_event_id"] for r in assignments)
    # The same 6,000 events replayed twice: each source event id is assigned exactly twice.
    assert set(seen.values()) == {2}, Counter(seen.values())
    assert len(seen) == 6_000
    assert second.wait_ready()["ready"] is True
