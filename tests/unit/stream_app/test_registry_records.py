"""Folding model-topic records: refusals once per version, per-worker reports, and a worker
that logs each refused version once however often it reads the topic."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence

import pytest
from pydantic import SecretStr

from stream_app.follower import ModelFollower
from stream_app.metrics import WorkerMetrics
from stream_app.model_registry import ModelRegistry, apply_record, refusals_key, sign
from stream_app.settings import Settings
from stream_app.state import WorkerState
from tests.unit.stream_app.toy import toy_manifest

KEY = SecretStr("unit-key")
NAME = "customer-segments"


def _body(version: str, key: SecretStr | None = None) -> bytes:
    manifest = toy_manifest([40.0, 60_000.0], [10.0, 20_000.0], [[0.0, 0.0], [1.0, 1.0]])
    manifest = manifest.model_copy(update={"version": version, "name": NAME})
    return sign(manifest, key).model_dump_json().encode()


def _fold(
    records: Sequence[tuple[str, bytes | None]], key: SecretStr | None = KEY
) -> ModelRegistry:
    registry = ModelRegistry(name=NAME)
    for record_key, value in records:
        apply_record(registry, record_key.encode(), value, key)
    return registry


def test_a_version_refused_on_several_records_is_one_refusal() -> None:
    unsigned = _body("v2")
    registry = _fold([(NAME, _body("v1", KEY)), (f"{NAME}@v2", unsigned), (NAME, unsigned)])
    assert registry.live is not None
    assert registry.live.version == "v1"  # the worker keeps what it had
    assert registry.refusals() == {"v2": "manifest v2 is not signed"}


def test_a_later_valid_record_clears_the_refusal_of_its_key() -> None:
    registry = _fold([(f"{NAME}@v2", _body("v2")), (f"{NAME}@v2", _body("v2", KEY))])
    assert registry.refusals() == {}
    assert "v2" in registry.archive


def test_worker_reports_say_who_refuses_what() -> None:
    report = {"worker": "w1", "refused": {"v2": "manifest v2 is not signed"}}
    registry = _fold(
        [
            (NAME, _body("v2")),
            (refusals_key(NAME, "w1").decode(), json.dumps(report).encode()),
            (refusals_key(NAME, "w2").decode(), json.dumps({"refused": {}}).encode()),
        ],
        key=None,
    )
    assert registry.live is not None
    assert registry.live.version == "v2"  # without the key the reader accepts it...
    assert registry.refused_by_workers("v2") == {"w1": "manifest v2 is not signed"}
    assert registry.refused_by_workers("v1") == {}


def test_a_worker_logs_and_counts_each_refused_version_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent: list[tuple[bytes, bytes]] = []

    async def send(key: bytes, value: bytes) -> None:
        sent.append((key, value))

    state, metrics = WorkerState(), WorkerMetrics()
    follower = ModelFollower(Settings(model_signing_key=KEY), state, metrics, send)
    records = [(NAME, _body("v2")), (f"{NAME}@v2", _body("v2")), (f"{NAME}@v3", b"{}")]
    with caplog.at_level(logging.ERROR, logger="stream_app.follower"):
        for _ in range(3):  # the follower re-reads the whole topic after every restart
            follower._registry = _fold(records)
            follower._count_refusals()
            asyncio.run(follower._report_refusals())
    assert [r.getMessage().split(":")[1].strip() for r in caplog.records] == [
        "refused model version v2",
        "refused model version customer-segments@v3",
    ]
    assert metrics.counts()["models_refused"] == 2
    assert metrics.models_refused._value.get() == 2
    assert len(sent) == 1  # the report goes out when it changes, not on every read
    assert json.loads(sent[0][1])["refused"]["v2"] == "manifest v2 is not signed"
