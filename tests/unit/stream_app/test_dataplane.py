"""The data plane's bookkeeping without a broker: commits, aborts, rebalances, readiness."""

from __future__ import annotations

import json
from typing import get_args

import pytest
from confluent_kafka import KafkaException, Producer, TopicPartition

from stream_app.dataplane import DataPlane, PlaneStatus
from stream_app.settings import Settings
from tests.unit.stream_app.fakes import (
    FakeMessage,
    RecordingDelivery,
    SeekingConsumer,
    plane_with_fakes,
)
from tests.unit.stream_app.toy import toy_manifest

TOPIC = "customer-signups"


def _signup(n: int) -> bytes:
    return json.dumps(
        {
            "event_id": f"e-{n}",
            "customer_id": f"c-{n}",
            "age": 30 + n % 40,
            "annual_income": 20_000 + 1_000 * n,
            "signed_up_at": "2026-01-01T00:00:00Z",
        }
    ).encode()


def _messages(partition: int, offsets: range) -> list[FakeMessage]:
    return [FakeMessage(TOPIC, partition, o, f"c-{o}".encode(), _signup(o)) for o in offsets]


def _plane() -> tuple[DataPlane, RecordingDelivery]:
    plane, delivery = plane_with_fakes(Settings())
    plane.state.make_live(
        toy_manifest([40.0, 50_000.0], [10.0, 10_000.0], [[-1.0, 0.0], [1.0, 1.0]])
    )
    plane._assigned = {(TOPIC, 0), (TOPIC, 1)}
    return plane, delivery


def test_the_producer_compresses_with_each_codec_the_setting_allows() -> None:
    codecs = get_args(Settings.model_fields["compression"].annotation)
    assert "lz4" in codecs
    for codec in codecs:
        plane, _ = plane_with_fakes(Settings(compression=codec))
        config = plane._producer_config()
        assert config["compression.type"] == codec
        own = {k: v for k, v in config.items() if k not in ("error_cb", "logger")}
        # librdkafka checks the configuration when the client is made (no broker needed).
        Producer(own | {"bootstrap.servers": "127.0.0.1:9"})
    with pytest.raises(KafkaException, match="compression"):
        Producer(own | {"bootstrap.servers": "127.0.0.1:9", "compression.type": "brotli"})


def test_a_commit_carries_the_next_offset_of_every_partition_and_counts_after_it() -> None:
    plane, delivery = _plane()
    plane._process(_messages(0, range(10, 15)) + _messages(1, range(3, 5)))  # type: ignore[arg-type]
    assert plane.metrics.counts()["consumed"] == 0, "nothing counts before it is committed"
    plane._commit()
    assert delivery.committed == [[(TOPIC, 0, 15), (TOPIC, 1, 5)]]
    counts = plane.metrics.counts()
    assert (counts["consumed"], counts["assigned"]) == (7, 7)
    assert len(delivery.sent["customer-segments"]) == 7


def test_an_aborted_commit_reads_its_records_again_and_counts_nothing() -> None:
    plane, delivery = _plane()
    plane._process(_messages(0, range(10, 15)) + _messages(1, range(3, 5)))  # type: ignore[arg-type]
    delivery.refuse = True
    plane._commit()
    consumer = plane._consumer
    assert isinstance(consumer, SeekingConsumer)
    assert sorted(consumer.seeks) == [(TOPIC, 0, 10), (TOPIC, 1, 3)]
    assert plane.metrics.counts()["consumed"] == 0
    assert plane._pending.count == 0
    assert plane.metrics.aborts._value.get() == 1


def test_a_batch_that_cannot_be_sent_is_read_again_with_what_was_in_flight() -> None:
    plane, delivery = _plane()
    plane._process(_messages(0, range(10, 15)))  # type: ignore[arg-type]
    delivery.refuse_send = True
    plane._process(_messages(1, range(3, 5)))  # type: ignore[arg-type]
    consumer = plane._consumer
    assert isinstance(consumer, SeekingConsumer)
    assert sorted(consumer.seeks) == [(TOPIC, 0, 10), (TOPIC, 1, 3)]
    assert plane._pending.count == 0, "nothing in flight is left to commit"
    assert plane.metrics.counts()["consumed"] == 0


def test_a_revocation_commits_the_batch_in_flight_before_the_partitions_go() -> None:
    plane, delivery = _plane()
    plane._process(_messages(0, range(0, 4)))  # type: ignore[arg-type]
    plane._on_revoke(None, [TopicPartition(TOPIC, 0)])  # type: ignore[arg-type]
    assert delivery.committed == [[(TOPIC, 0, 4)]]
    assert plane._assigned == {(TOPIC, 1)}


def test_a_lost_assignment_discards_the_batch_in_flight_and_never_commits_it() -> None:
    plane, delivery = _plane()
    plane._process(_messages(0, range(0, 4)))  # type: ignore[arg-type]
    plane._on_lost(None, [TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)])  # type: ignore[arg-type]
    assert delivery.committed == []
    assert delivery.aborted == 1
    assert plane._pending.count == 0
    assert plane._assigned == set()
    consumer = plane._consumer
    assert isinstance(consumer, SeekingConsumer)
    assert consumer.seeks == [], "a lost partition is read again by its next owner, not here"


def test_an_aborted_commit_does_not_rewind_a_partition_this_worker_no_longer_owns() -> None:
    plane, delivery = _plane()
    plane._process(_messages(0, range(0, 4)) + _messages(1, range(0, 2)))  # type: ignore[arg-type]
    plane._assigned = {(TOPIC, 1)}
    delivery.refuse = True
    plane._commit()
    consumer = plane._consumer
    assert isinstance(consumer, SeekingConsumer)
    assert consumer.seeks == [(TOPIC, 1, 0)]


def test_readiness_names_what_is_wrong() -> None:
    status = PlaneStatus(running=True, last_progress=100.0)
    assert status.problem(30, now=101.0) is None
    assert "not consuming" in str(PlaneStatus(running=False).problem(30, now=1.0))
    down = PlaneStatus(running=True, broker_up=False, last_error="Connection refused")
    assert "cannot reach the Kafka broker (Connection refused)" in str(down.problem(30, now=1.0))
    stuck = PlaneStatus(running=True, committing_since=100.0)
    assert stuck.problem(30, now=102.0) is None
    assert "cannot deliver" in str(stuck.problem(30, now=110.0))
    stalled = PlaneStatus(running=True, backlog=500, last_progress=100.0)
    assert stalled.problem(30, now=120.0) is None
    assert "no progress for 40 s on a backlog of 500" in str(stalled.problem(30, now=140.0))
    idle = PlaneStatus(running=True, backlog=0, last_progress=100.0)
    assert idle.problem(30, now=1_000.0) is None, "an empty backlog is not a stall"
    restoring = PlaneStatus(running=True, restoring="customer-signups[2]")
    assert "restoring the customer state of customer-signups[2]" in str(
        restoring.problem(30, now=1.0)
    )
