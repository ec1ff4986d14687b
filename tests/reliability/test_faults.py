"""Crashes, broker restarts and shutdowns during a replay: nothing lost, nothing duplicated."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.reliability.scenario import ScenarioFactory, wait_for_progress
from tests.support import (
    Broker,
    Names,
    WorkerFactory,
    WorkerProcess,
    poll,
    read_topic,
    signup_ids,
    wait_until_consumed,
    write_signups,
)

pytestmark = pytest.mark.reliability

# A killed or frozen worker's partitions move once its session times out: the broker's
# smallest timeout (group.min.session.timeout.ms) instead of the default 10 s, so the tests
# wait less for the same move.
QUICK_TAKEOVER = {"SEGSTREAM_SESSION_TIMEOUT_MS": "6000"}


@pytest.mark.parametrize(
    ("guarantee", "events"),
    # at_least_once runs shorter: it is here to measure its duplicates, not to prove a bound.
    [("exactly_once", 30_000), ("at_least_once", 20_000)],
)
def test_three_kill_9s_during_a_replay(
    guarantee: str,
    events: int,
    start_scenario: ScenarioFactory,
    trained_model: Path,
    worker_factory: WorkerFactory,
    report: list[dict[str, object]],
) -> None:
    extra = {"SEGSTREAM_PROCESSING_GUARANTEE": guarantee, **QUICK_TAKEOVER}
    scenario = start_scenario(events, rate=2_500, settings=extra)
    worker = scenario.worker
    moments = random.Random(7)
    for _ in range(3):
        # Killed in the middle of its work: each new worker starts with a backlog of the
        # signups sent while it started, more than it reads before it is killed.
        wait_for_progress(worker, moments.randint(500, 2_500))
        worker.process.kill()  # SIGKILL: no shutdown code runs
        worker.process.wait()
        worker = worker_factory(trained_model, **extra)
        worker.wait_ready()

    figures = scenario.finish("3x kill -9", guarantee, report)
    assert figures["missing"] == 0, figures
    if guarantee == "exactly_once":
        assert figures["duplicates"] == 0, figures


@pytest.mark.own_broker
def test_broker_kill_9_and_resume_during_a_replay(
    kafka: Broker, start_scenario: ScenarioFactory, report: list[dict[str, object]]
) -> None:
    scenario = start_scenario(20_000, rate=2_000)
    wait_for_progress(scenario.worker, 5_000)
    kafka.control("kill")
    _wait_until_the_worker_says_the_broker_is_down(scenario.worker)
    kafka.control("resume")

    figures = scenario.finish("broker kill -9", "exactly_once", report)
    assert scenario.worker.process.poll() is None, scenario.worker.log_tail()
    assert figures["missing"] == 0, figures
    assert figures["duplicates"] == 0, figures
    assert scenario.worker.wait_ready()["ready"] is True


def _owned(worker: WorkerProcess) -> list[str]:
    partitions: list[str] = worker.status()["data_plane"]["partitions"]
    return partitions


def _wait_until_the_worker_says_the_broker_is_down(worker: WorkerProcess) -> None:
    # Which of the two it says first depends on whether a commit was under way when the
    # broker died: the data plane then waits in the commit's retries, not in consume().
    def says_so() -> bool:
        response = worker.health()
        reason = str(response.json().get("reason"))
        return response.status_code == 503 and any(
            words in reason for words in ("cannot reach the Kafka broker", "cannot deliver")
        )

    poll(
        says_so,
        "/ready says the broker cannot be reached or the worker cannot deliver",
        timeout=30,
        explain=worker.log_tail,
    )


def test_a_stopped_worker_that_wakes_after_its_partitions_moved_commits_nothing(
    start_scenario: ScenarioFactory, report: list[dict[str, object]]
) -> None:
    scenario = start_scenario(20_000, rate=1_000, workers=2, settings=QUICK_TAKEOVER)
    zombie, survivor = scenario.workers
    poll(lambda: len(_owned(zombie)) == 2 and len(_owned(survivor)) == 2, "2 + 2 split", 90)
    wait_for_progress(zombie, 1_000)
    zombie.process.send_signal(signal.SIGSTOP)  # frozen mid-batch, its transaction open
    try:
        poll(lambda: len(_owned(survivor)) == 4, "the survivor owns all 4 partitions", 90)
        # The new owner reads on from the zombie's partitions before the zombie wakes.
        wait_for_progress(survivor, 1_000)
    finally:
        zombie.process.send_signal(signal.SIGCONT)

    figures = scenario.finish("zombie (SIGSTOP)", "exactly_once", report)
    assert figures["missing"] == 0, figures
    assert figures["duplicates"] == 0, figures
    assert survivor.process.poll() is None, "the zombie must not fence the new owner"
    assert survivor.wait_ready()["ready"] is True
    # Whether the woken zombie rejoins or stops on being fenced is its own business here.
    zombie.stop()


def test_a_worker_joining_and_leaving_under_load_loses_and_repeats_nothing(
    start_scenario: ScenarioFactory,
    trained_model: Path,
    worker_factory: WorkerFactory,
    report: list[dict[str, object]],
) -> None:
    # 40 s of input: the third worker still has its share to read after it starts and the
    # group rebalances, on a busy machine too.
    scenario = start_scenario(40_000, rate=1_000, workers=2)
    wait_for_progress(scenario.worker, 3_000)
    third = worker_factory(trained_model)
    third.wait_ready()
    poll(lambda: len(_owned(third)) >= 1, "the third worker owns a partition", 90)
    wait_for_progress(third, 500)  # it works on its share before it leaves
    assert third.stop() == 0, third.log_tail()

    figures = scenario.finish("3rd worker joins, leaves", "exactly_once", report)
    assert figures["missing"] == 0, figures
    assert figures["duplicates"] == 0, figures


def test_a_poison_record_is_dead_lettered_once_and_blocks_nothing(
    kafka: Broker,
    names: Names,
    trained_model: Path,
    worker_factory: WorkerFactory,
    tmp_path: Path,
    report: list[dict[str, object]],
) -> None:
    from confluent_kafka import Producer

    path = write_signups(tmp_path / "signups.jsonl", 10_000, seed=2024)
    valid, _ = signup_ids(path)
    values = path.read_bytes().splitlines()
    worker = worker_factory(trained_model)
    worker.wait_ready()
    # Escaped as JSON, 200 KB of control characters would make a 1.2 MB dead letter; the 2 MB
    # value arrives gzip-compressed by its producer, small on the wire.
    poisons = {b"poison-ctrl": b"\x01" * 200_000, b"poison-gzip": b"A" * 2_000_000}
    producer = Producer(
        {
            "bootstrap.servers": kafka.bootstrap,
            "compression.type": "gzip",
            "message.max.bytes": 5_000_000,
            "linger.ms": 5,
        }
    )
    for i, value in enumerate(values):
        producer.produce(names.input_topic, value, json.loads(value)["customer_id"].encode())
        if i == 5_000:
            for key, poison in poisons.items():
                producer.produce(names.input_topic, poison, key)
    assert producer.flush(60) == 0

    wait_until_consumed(kafka.bootstrap, names.app_id, names.input_topic)
    assignments = read_topic(kafka.bootstrap, names.output_topic)
    letters = read_topic(kafka.bootstrap, names.dlq_topic)
    seen = Counter(r.json()["source_event_id"] for r in assignments)
    report.append(
        {
            "fault": "2 poison records",
            "guarantee": "exactly_once",
            "in": len(valid) + len(poisons),
            "assigned": len(seen),
            "dead_lettered": len(letters),
            "duplicates": sum(n - 1 for n in seen.values()) + len(letters) - len(poisons),
            "missing": len(set(valid) - set(seen)),
        }
    )
    assert seen == Counter(valid)
    assert sorted(r.key or b"" for r in letters) == sorted(poisons)
    for letter in letters:
        body = letter.json()
        assert body["value_truncated"] is True
        assert body["value_size"] == len(poisons[letter.key or b""])
        assert body["error_reason"] == "oversized"
    assert worker.wait_ready()["ready"] is True


def test_sigterm_exits_cleanly_within_10_seconds_and_loses_nothing(
    start_scenario: ScenarioFactory,
    trained_model: Path,
    worker_factory: WorkerFactory,
    report: list[dict[str, object]],
) -> None:
    scenario = start_scenario(10_000, rate=2_000)
    wait_for_progress(scenario.worker, 3_000)
    elapsed = _terminate(scenario.worker)
    worker_factory(trained_model).wait_ready()

    figures = scenario.finish("SIGTERM + restart", "exactly_once", report)
    figures["stop_seconds"] = round(elapsed, 2)
    assert figures["missing"] == 0, figures
    assert figures["duplicates"] == 0, figures


@pytest.mark.own_broker
def test_sigterm_during_a_broker_outage_exits_cleanly_and_loses_nothing(
    kafka: Broker,
    start_scenario: ScenarioFactory,
    trained_model: Path,
    worker_factory: WorkerFactory,
    report: list[dict[str, object]],
) -> None:
    scenario = start_scenario(10_000, rate=2_000)
    wait_for_progress(scenario.worker, 3_000)
    kafka.control("kill")
    _wait_until_the_worker_says_the_broker_is_down(scenario.worker)
    elapsed = _terminate(scenario.worker)
    kafka.control("resume")
    worker_factory(trained_model).wait_ready()

    figures = scenario.finish("SIGTERM, broker down", "exactly_once", report)
    figures["stop_seconds"] = round(elapsed, 2)
    assert figures["missing"] == 0, figures
    assert figures["duplicates"] == 0, figures


def _terminate(worker: WorkerProcess) -> float:
    """SIGTERM the worker; assert it exits 0 within 10 s and return how long it took."""
    stopping = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    try:
        status = worker.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"worker still running 15 s after SIGTERM:\n{worker.log_tail()}")
    elapsed = time.monotonic() - stopping
    assert status == 0, worker.log_tail()
    assert elapsed < 10, f"SIGTERM took {elapsed:.1f} s"
    return elapsed
