"""A batch in, assignments and dead letters out: every record lands in exactly one place."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime

from schemas import SegmentAssignment, assignment_event_id
from stream_app.pipeline import SourceRecord, process_records
from stream_app.scorer import Scorer
from tests.unit.stream_app.toy import toy_scorer
from training.generate import generate_signups

NOW = datetime(2026, 5, 1, tzinfo=UTC)


def test_each_record_is_assigned_or_dead_lettered_exactly_once() -> None:
    values = list(generate_signups(500, seed=3, invalid_share=0.1))
    records = [
        SourceRecord(None, v, "signups", i % 4, i, 1_700_000_000.0) for i, v in enumerate(values)
    ]
    outcome = process_records(
        records, toy_scorer(), consumer_group="g", max_event_bytes=65_536, now=NOW
    )
    assert len(outcome.assignments) == 450
    assert len(outcome.dead_letters) == 50
    assert sum(outcome.reason_counts.values()) == 50
    assert sum(outcome.segment_counts.values()) == 450
    sources = [json.loads(a.value)["source_event_id"] for a in outcome.assignments]
    assert len(set(sources)) == 450
    offsets = [json.loads(d.value)["source_offset"] for d in outcome.dead_letters]
    assert len(set(offsets)) == 50


def test_an_assignment_carries_segment_action_version_and_a_deterministic_id() -> None:
    value = json.dumps(
        {
            "event_id": "e-9",
            "customer_id": "c-9",
            "age": 50,
            "annual_income": 60_000,
            "gender": "m",
            "signed_up_at": "2026-01-01T00:00:00Z",
        }
    ).encode()
    outcome = process_records(
        [SourceRecord(b"c-9", value, "signups", 0, 7)],
        toy_scorer(),
        consumer_group="g",
        max_event_bytes=65_536,
        now=NOW,
    )
    (record,) = outcome.assignments
    assert record.key == b"c-9"
    assignment = SegmentAssignment.model_validate_json(record.value)
    assert assignment.segment_id == "segment-1"
    assert assignment.distance == 0.0
    assert assignment.model_version == "toy"
    assert assignment.event_id == assignment_event_id("e-9", "toy")
    assert assignment.customer is None, "personal data is not echoed by default"

    echoed = process_records(
        [SourceRecord(b"c-9", value, "signups", 0, 7)],
        toy_scorer(),
        consumer_group="g",
        max_event_bytes=65_536,
        echo_customer=True,
        now=NOW,
    )
    body = json.loads(echoed.assignments[0].value)
    assert body["customer"] == {"age": 50.0, "annual_income": 60_000.0, "gender": "male"}


def test_a_dead_letter_keeps_the_original_bytes_and_says_where_and_why() -> None:
    raw = b"\xff\x00 broken"
    outcome = process_records(
        [SourceRecord(b"k", raw, "signups", 3, 42, 1_700_000_000.5)],
        toy_scorer(),
        consumer_group="grp",
        max_event_bytes=65_536,
        now=NOW,
    )
    (record,) = outcome.dead_letters
    letter = json.loads(record.value)
    assert letter["value_encoding"] == "base64"
    assert base64.b64decode(letter["value"]) == raw
    assert letter["key"] == "k"
    assert letter["error_reason"] == "not_utf8"
    assert letter["error_class"] == "stream_app.exceptions.NotUtf8Error"
    assert (letter["source_topic"], letter["source_partition"], letter["source_offset"]) == (
        "signups",
        3,
        42,
    )
    assert letter["consumer_group"] == "grp"
    headers = dict(record.headers or [])
    assert headers["__connect.errors.topic"] == b"signups"
    assert headers["__connect.errors.partition"] == b"3"
    assert headers["__connect.errors.offset"] == b"42"
    assert headers["__connect.errors.exception.class.name"] == b"stream_app.exceptions.NotUtf8Error"
    assert headers["__connect.errors.consumer.group"] == b"grp"


def _letter_of(raw: bytes, limit: int) -> tuple[bytes, dict[str, object]]:
    outcome = process_records(
        [SourceRecord(b"c-1", raw, "signups", 1, 9, None)],
        toy_scorer(),
        consumer_group="g",
        max_event_bytes=65_536,
        now=NOW,
        dead_letter_max_bytes=limit,
    )
    (record,) = outcome.dead_letters
    return record.value, json.loads(record.value)


def test_a_dead_letter_too_large_to_send_is_cut_to_fit_and_says_so() -> None:
    # 200 KB of control characters: JSON escapes each as \u00XX, six times the bytes.
    raw = b"\x01" * 200_000
    body, letter = _letter_of(raw, 100_000)
    assert len(body) <= 100_000 - 1024
    assert letter["value_truncated"] is True
    assert letter["value_size"] == 200_000
    assert letter["value_sha256"] == hashlib.sha256(raw).hexdigest()
    assert letter["error_reason"] == "oversized"
    assert (letter["source_partition"], letter["source_offset"]) == (1, 9)
    kept = str(letter["value"]).encode()
    assert kept, "as much of the value as fits is kept"
    assert raw.startswith(kept)


def test_a_cut_binary_value_keeps_a_base64_prefix() -> None:
    raw = bytes(range(256)) * 1_000
    _, letter = _letter_of(raw, 50_000)
    assert letter["value_encoding"] == "base64"
    assert letter["value_truncated"] is True
    assert raw.startswith(base64.b64decode(str(letter["value"])))


def test_a_dead_letter_that_fits_is_whole() -> None:
    raw = b"not json at all"
    _, letter = _letter_of(raw, 100_000)
    assert letter["value"] == raw.decode()
    assert letter["value_truncated"] is False
    assert letter["value_size"] == len(raw)


def _odd_gender_signup() -> bytes:
    return json.dumps(
        {
            "event_id": "e-g",
            "customer_id": "c-g",
            "age": 30,
            "annual_income": 40_000,
            "gender": "zebra",
            "signed_up_at": "2026-01-01T00:00:00Z",
        }
    ).encode()


def test_an_unrecognised_gender_is_unknown_for_a_model_without_gender() -> None:
    outcome = process_records(
        [SourceRecord(b"c-g", _odd_gender_signup(), "signups", 0, 1)],
        toy_scorer(),
        consumer_group="g",
        max_event_bytes=65_536,
        now=NOW,
    )
    assert len(outcome.assignments) == 1
    assert outcome.signups[0].gender.value == "unknown"


def test_an_unrecognised_gender_is_dead_lettered_when_the_model_scores_by_gender() -> None:
    manifest = toy_scorer().manifest
    by_gender = manifest.model_copy(
        update={
            "features": ["age", "annual_income", "gender_female"],
            "scaler": manifest.scaler.model_copy(
                update={"mean": [40.0, 50_000.0, 0.5], "scale": [10.0, 10_000.0, 0.5]}
            ),
            "centroids": [[-1.0, 0.0, 0.0], [1.0, 1.0, 1.0]],
        }
    )
    outcome = process_records(
        [SourceRecord(b"c-g", _odd_gender_signup(), "signups", 0, 1)],
        Scorer(by_gender),
        consumer_group="g",
        max_event_bytes=65_536,
        now=NOW,
    )
    assert outcome.assignments == []
    assert outcome.reason_counts == {"schema": 1}
