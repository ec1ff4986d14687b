"""`segstream tail` stops where it is told to: at a limit, after an idle spell, or (with
--idle-timeout 0) at the end the topic had when it began."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support import Broker, Names, run_segstream, segstream_env

pytestmark = pytest.mark.integration


def test_idle_timeout_zero_prints_what_is_there_and_stops(
    kafka: Broker, names: Names, tmp_path: Path
) -> None:
    env = segstream_env(kafka, names)
    assert run_segstream(["topics", "create"], env=env).returncode == 0
    signups = tmp_path / "signups.jsonl"
    made = run_segstream(["generate", "signups", "--n", "25", "--out", str(signups)], env=env)
    assert made.returncode == 0, made.stderr
    sent = run_segstream(["replay", str(signups)], env=env)
    assert sent.returncode == 0, sent.stderr

    began = time.monotonic()
    done = run_segstream(
        ["tail", "--topic", names.input_topic, "--from-beginning", "--idle-timeout", "0"], env=env
    )
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - began < 30
    events = [json.loads(line)["event_id"] for line in done.stdout.splitlines()]
    expected = [json.loads(line)["event_id"] for line in signups.read_text().splitlines()]
    assert sorted(events) == sorted(expected)

    # From the end: nothing is there yet, so nothing is printed, and tail still stops.
    done = run_segstream(["tail", "--topic", names.input_topic, "--idle-timeout", "0"], env=env)
    assert (done.returncode, done.stdout) == (0, "")
