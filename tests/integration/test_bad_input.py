"""Every kind of bad record sent over a real broker is dead-lettered once; the rest scored once."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from tests.support import Broker, Names, WorkerFactory, read_topic, wait_until_consumed
from training.generate import generate_signups, invalid_payloads

pytestmark = pytest.mark.integration

MAX_BYTES = 2_048


def _bad_records() -> list[tuple[str, bytes | None, bytes | None]]:
    """(reason, key, value) for each kind of bad input beyond the generated payloads."""
    valid = json.loads(next(generate_signups(1, seed=99)))
    body = json.dumps(valid).encode()
    return [
        ("tombstone", b"c-tomb", None),
        ("oversized", None, json.dumps({**valid, "attributes": {"x": "y" * 4_000}}).encode()),
        ("key_mismatch", b"somebody-else", body),
        *[("invalid", None, payload) for payload in invalid_payloads()],
    ]


def test_each_bad_record_is_dead_lettered_exactly_once_with_its_origin(
    kafka: Broker,
    names: Names,
    trained_model: Path,
    worker_factory: WorkerFactory,
) -> None:
    worker = worker_factory(trained_model, SEGSTREAM_MAX_EVENT_BYTES=str(MAX_BYTES))
    worker.wait_ready()
    good = list(generate_signups(300, seed=3))
    bad = _bad_records()

    async def produce() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)
        await producer.start()
        try:
            for signup in good[:150]:
                await producer.send(names.input_topic, value=signup)
            for _reason, key, value in bad:
                await producer.send(names.input_topic, key=key, value=value)
            for signup in good[150:]:
                await producer.send(names.input_topic, value=signup)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(produce())
    wait_until_consumed(kafka.bootstrap, names.app_id, names.input_topic)
    assignments = read_topic(kafka.bootstrap, names.output_topic)
    letters = read_topic(kafka.bootstrap, names.dlq_topic)

    assert len(assignments) == len(good)
    assert len({r.json()["source_event_id"] for r in assignments}) == len(good)
    assert len(letters) == len(bad)
    origins = {(r.json()["source_partition"], r.json()["source_offset"]) for r in letters}
    assert len(origins) == len(bad), "each bad record is dead-lettered once"
    by_reason = {r.json()["error_reason"] for r in letters}
    assert {
        "tombstone",
        "oversized",
        "key_mismatch",
        "not_utf8",
        "not_json",
        "not_object",
        "schema",
    } <= by_reason

    sent_values = {value for _, _, value in bad if value is not None}
    for record in letters:
        letter = record.json()
        headers = dict(record.headers)
        assert headers["__connect.errors.topic"] == names.input_topic.encode()
        assert int(headers["__connect.errors.offset"]) == letter["source_offset"]
        assert headers["__connect.errors.consumer.group"] == names.app_id.encode()
        assert headers["__connect.errors.exception.message"]
        assert letter["source_timestamp"] is not None
        if letter["value"] is None:
            assert letter["error_reason"] == "tombstone"
            continue
        raw = (
            base64.b64decode(letter["value"])
            if letter["value_encoding"] == "base64"
            else letter["value"].encode()
        )
        assert raw in sent_values, "the original bytes are kept exactly"

    health = worker.health().json()
    assert health["ready"] is True
    assert health["consumed"] == len(good) + len(bad)
