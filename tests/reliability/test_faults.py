"""Crashes, broker restarts and shutdowns during a replay: nothing lost, nothing duplicated."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import threading
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

pytestmark = pytest.mark.reliability


def _signups(path: Path, n: int, invalid_share: float) -> tuple[set[str], int]:
    """Write n signups; return the valid event ids and the number of invalid ones."""
    valid: set[str] = set()
    invalid = 0
    with path.open("wb") as handle:
        for value in generate_signups(n, seed=2024, invalid_share=invalid_share):
            handle.write(value + b"\n")
    for line in path.read_bytes().splitlines():
        try:
            body = json.loads(line)
        except ValueError:
            invalid += 1
            continue
        if isinstance(body, dict) and body.get("customer_id", "bad") != "bad":
            valid.add(body["event_id"])
        else:
            invalid += 1
    return valid, invalid


def _replay(env: dict[str, str], path: Path, rate: int) -> threading.Thread:
    def run() -> None:
        done = run_segstream(["replay", str(path), "--rate", str(rate)], env=env, timeout=600)
        assert done.returncode == 0, done.stderr

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _figures(
    fault: str,
    guarantee: str,
    kafka: Broker,
    names: Names,
    valid: set[str],
    invalid: int,
) -> dict[str, object]:
    assignments = wait_for_records(kafka.bootstrap, names.output_topic, len(valid), timeout=240)
    letters = wait_for_records(kafka.bootstrap, names.dlq_topic, invalid, timeout=60)
    seen = Counter(r.json()["source_event_id"] for r in assignments)
    letter_origins = Counter(
        (r.json()["source_partition"], r.json()["source_offset"]) for r in letters
    )
    return {
        "fault": fault,
        "guarantee": guarantee,
        "in": len(valid) + invalid,
        "assigned": len(seen),
        "dead_lettered": len(letter_origins),
        "duplicates": sum(n - 1 for n in seen.values())
        + sum(n - 1 for n in letter_origins.values()),
        "missing": len(valid - set(seen)) + (invalid - len(letter_origins)),
    }


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
    valid, invalid = _signups(tmp_path / "signups.jsonl", events, invalid_share=0.002)
    env = segstream_env(kafka, names)
    extra = {"SEGSTREAM_PROCESSING_GUARANTEE": guarantee}
    worker = worker_factory(trained_model, **extra)
    worker.wait_ready()
    replay = _replay(env, tmp_path / "signups.jsonl", rate=2_500)
    moments = random.Random(7)
    for _ in range(3):
        time.sleep(moments.uniform(1.0, 4.0))
        worker.process.kill()  # SIGKILL: no shutdown code runs
        worker.process.wait()
        worker = worker_factory(trained_model, **extra)
        worker.wait_ready()
    replay.join(timeout=300)

    figures = _figures("3x kill -9", guarantee, kafka, names, valid, invalid)
    report.append(figures)
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
    valid, invalid = _signups(tmp_path / "signups.jsonl", 20_000, invalid_share=0.002)
    env = segstream_env(kafka, names)
    worker = worker_factory(trained_model)
    worker.wait_ready()
    replay = _replay(env, tmp_path / "signups.jsonl", rate=2_000)
    time.sleep(3)
    kafka.control("stop")
    time.sleep(3)
    kafka.control("resume")
    replay.join(timeout=300)

    figures = _figures("broker restart", "exactly_once", kafka, names, valid, invalid)
    report.append(figures)
    assert worker.process.poll() is None, worker.log_tail()
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
    valid, invalid = _signups(tmp_path / "signups.jsonl", 10_000, invalid_share=0.002)
    env = segstream_env(kafka, names)
    worker = worker_factory(trained_model)
    worker.wait_ready()
    replay = _replay(env, tmp_path / "signups.jsonl", rate=2_000)
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
    replay.join(timeout=300)

    figures = _figures("SIGTERM + restart", "exactly_once", kafka, names, valid, invalid)
    figures["stop_seconds"] = round(elapsed, 2)
    report.append(figures)
    assert figures["missing"] == 0, figures
    assert figures["duplicates"] == 0, figures
