"""The whole path on a real broker: replay signups, a worker scores them, nothing is lost."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pytest

from tests.support import (
    Broker,
    Names,
    WorkerFactory,
    poll,
    run_segstream,
    segstream_env,
    tail,
    write_signups,
)

pytestmark = pytest.mark.integration

N_EVENTS = 5_000
N_INVALID = 50


def test_worker_scores_every_valid_signup_once_and_dead_letters_the_rest(
    kafka: Broker,
    names: Names,
    trained_model: Path,
    worker_factory: WorkerFactory,
    tmp_path: Path,
) -> None:
    signups = write_signups(tmp_path / "signups.jsonl", N_EVENTS, seed=7, invalid_share=0.01)
    env = segstream_env(kafka, names)
    created = run_segstream(["topics", "create"], env=env)
    assert created.returncode == 0, created.stderr

    worker = worker_factory(trained_model)
    worker.wait_ready()
    replayed = run_segstream(["replay", str(signups)], env=env)
    assert replayed.returncode == 0, replayed.stderr

    assignments = tail(env, names.output_topic, N_EVENTS - N_INVALID)
    dead_letters = tail(env, names.dlq_topic, N_INVALID)

    # Offline scoring of the same file is the reference.
    offline_out = tmp_path / "offline.jsonl"
    offline = run_segstream(
        [
            "score",
            "--model",
            str(trained_model),
            "--input",
            str(signups),
            "--out",
            str(offline_out),
        ],
        env=env,
    )
    assert offline.returncode == 1, "the file holds invalid records, so score must say so"
    assert f"{N_INVALID} of {N_EVENTS} records" in offline.stderr
    expected = {
        row["source_event_id"]: row["segment_id"]
        for row in map(json.loads, offline_out.read_text().splitlines())
    }
    assert len(expected) == N_EVENTS - N_INVALID

    by_source = Counter(a["source_event_id"] for a in assignments)
    duplicates = [event_id for event_id, n in by_source.items() if n > 1]
    assert not duplicates, f"{len(duplicates)} events assigned more than once"
    assert set(by_source) == set(expected), "assignments differ from the valid inputs"
    mismatched = [a for a in assignments if a["segment_id"] != expected[a["source_event_id"]]]
    assert not mismatched, f"{len(mismatched)} assignments differ from offline scoring"

    # The saved scikit-learn Pipeline agrees too.
    pipeline = joblib.load(trained_model / "model.joblib")
    manifest = json.loads((trained_model / "manifest.json").read_text())
    valid_inputs = {}
    for line in signups.read_bytes().splitlines():
        try:
            body = json.loads(line)
        except ValueError:
            continue
        if isinstance(body, dict) and body.get("event_id") in expected:
            valid_inputs[body["event_id"]] = body
    event_ids = list(expected)
    features = np.array(
        [[valid_inputs[e]["age"], valid_inputs[e]["annual_income"]] for e in event_ids]
    )
    predicted = [manifest["segments"][label]["id"] for label in pipeline.predict(features)]
    assert predicted == [expected[e] for e in event_ids]

    assert len(dead_letters) == N_INVALID
    assert all(letter["error_message"] for letter in dead_letters)
    assert all(letter["source_topic"] == names.input_topic for letter in dead_letters)
    offsets = {(d["source_partition"], d["source_offset"]) for d in dead_letters}
    assert len(offsets) == N_INVALID, "each invalid record is dead-lettered exactly once"
    reasons = Counter(str(letter["error_reason"]) for letter in dead_letters)
    assert set(reasons) <= {"not_utf8", "not_json", "not_object", "schema"}
    assert reasons["schema"] > 0
    assert reasons["not_json"] > 0

    status = worker.health().json()
    assert worker.process.poll() is None, worker.log_tail()
    assert status["ready"] is True
    assert status["consumed"] == N_EVENTS
    assert status["assigned"] == N_EVENTS - N_INVALID
    assert status["dead_lettered"] == N_INVALID
    assert worker.stop() == 0, worker.log_tail()


def test_worker_without_a_model_is_alive_but_not_ready(
    worker_factory: WorkerFactory, tmp_path: Path
) -> None:
    worker = worker_factory(tmp_path / "no-model-here")

    def model_error() -> dict[str, Any] | None:
        try:
            response = worker.health("/ready")
        except httpx.HTTPError:
            return None  # not serving yet
        assert response.status_code == 503, response.text
        body: dict[str, Any] = response.json()
        return body if "no manifest" in str(body.get("model_error")) else None

    body = poll(model_error, "/ready names the missing manifest", explain=worker.log_tail)
    assert body["ready"] is False
    assert worker.health("/health").status_code == 200
    assert worker.process.poll() is None
