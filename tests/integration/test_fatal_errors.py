"""A fatal Kafka error stops the worker with exit status 1 and one clear line; nothing is lost."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.support import (
    Broker,
    Names,
    WorkerFactory,
    ok,
    poll,
    read_topic,
    segstream_env,
    wait_until_consumed,
    write_signups,
)

pytestmark = pytest.mark.integration


def test_a_worker_fenced_by_another_with_its_id_exits_1_and_the_other_loses_nothing(
    kafka: Broker,
    names: Names,
    trained_model: Path,
    worker_factory: WorkerFactory,
    tmp_path: Path,
) -> None:
    path = write_signups(tmp_path / "signups.jsonl", 6_000, seed=11)
    # Two workers given one id share one transactional id: the newer one fences the older.
    first = worker_factory(trained_model, SEGSTREAM_WORKER_ID="shared")
    first.wait_ready()
    env = segstream_env(kafka, names)
    ok(["replay", str(path), "--rate", "2000"], env=env)
    second = worker_factory(trained_model, SEGSTREAM_WORKER_ID="shared")
    second.wait_ready()
    ok(["replay", str(path), "--rate", "2000"], env=env)

    poll(lambda: first.process.poll() is not None, "the fenced worker exits", 60, 0.5)
    assert first.process.returncode == 1, first.log_tail()
    assert "data plane stopped" in first.log_tail(400)
    assert "fenced" in first.log_tail(400).lower()

    wait_until_consumed(kafka.bootstrap, names.app_id, names.input_topic)
    assignments = read_topic(kafka.bootstrap, names.output_topic)
    seen = Counter(r.json()["source_event_id"] for r in assignments)
    # The same 6,000 events replayed twice: each source event id is assigned exactly twice.
    assert set(seen.values()) == {2}, Counter(seen.values())
    assert len(seen) == 6_000
    assert second.wait_ready()["ready"] is True
