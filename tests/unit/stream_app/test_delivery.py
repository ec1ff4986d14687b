"""Exactly-once delivery against a stand-in producer: what a failed transaction leads to."""

from __future__ import annotations

import threading
from typing import Any, cast

import pytest
from confluent_kafka import KafkaError, KafkaException

from stream_app.delivery import ExactlyOnce, produce_all
from stream_app.failures import TransactionAbortedError
from stream_app.pipeline import OutgoingRecord, RecordColumns


class _Producer:
    """Refuses records as librdkafka does once an abortable error hit the transaction, and
    times out the first `abort_timeouts` aborts as it does while records are still in flight."""

    def __init__(self, abort_timeouts: int) -> None:
        self.calls: list[str] = []
        self.abort_timeouts = abort_timeouts
        self.refuse = True

    def init_transactions(self, timeout: float) -> None:
        self.calls.append("init")

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def produce(self, topic: str, value: bytes, key: bytes | None, partition: int) -> None:
        if self.refuse:
            raise KafkaException(KafkaError(KafkaError._STATE, "Erroneous state"))
        self.calls.append(f"produce {topic}")

    def abort_transaction(self, timeout: float) -> None:
        self.calls.append("abort")
        if self.abort_timeouts:
            self.abort_timeouts -= 1
            raise KafkaException(
                KafkaError(KafkaError._TIMED_OUT, "Failed to flush all outstanding messages")
            )


@pytest.mark.parametrize("abort_timeouts", [0, 2])
def test_a_refused_record_aborts_the_transaction_to_the_end_before_the_next_one_begins(
    abort_timeouts: int,
) -> None:
    producer = _Producer(abort_timeouts)
    delivery = ExactlyOnce(lambda: cast(Any, producer), cast(Any, None), lambda: False)
    record = OutgoingRecord(b"c1", b"{}", None)
    with pytest.raises(TransactionAbortedError, match="the transaction was aborted"):
        delivery.send("out", [record])
    producer.refuse = False
    delivery.send("out", [record])
    aborts = ["abort"] * (abort_timeouts + 1)
    assert producer.calls == ["init", "begin", *aborts, "begin", "produce out"]


class _CommittingProducer(_Producer):
    """Commits only once `meanwhile` has run: the commit waits for it on its own thread."""

    def __init__(self) -> None:
        super().__init__(abort_timeouts=0)
        self.refuse = False
        self.meanwhile_ran = threading.Event()

    def send_offsets_to_transaction(self, offsets: Any, metadata: Any, timeout: float) -> None:
        self.calls.append("offsets")

    def commit_transaction(self, timeout: float) -> None:
        assert self.meanwhile_ran.wait(timeout), "meanwhile did not run during the commit"
        self.calls.append("commit")


class _Consumer:
    def consumer_group_metadata(self) -> object:
        return object()


def test_the_work_given_to_a_commit_runs_while_the_transaction_commits() -> None:
    producer = _CommittingProducer()
    delivery = ExactlyOnce(lambda: cast(Any, producer), cast(Any, _Consumer()), lambda: False)
    delivery.send("out", [OutgoingRecord(b"c1", b"{}", None)])

    def meanwhile() -> None:
        producer.calls.append("meanwhile")
        producer.meanwhile_ran.set()

    delivery.commit([], meanwhile)
    assert producer.calls == ["init", "begin", "produce out", "offsets", "meanwhile", "commit"]
    # With nothing to commit, it still runs.
    producer.meanwhile_ran.clear()
    delivery.commit([], meanwhile)
    assert producer.calls[-1] == "meanwhile"


class _QueueProducer:
    """Takes records into a local queue of `room` places, as librdkafka's, emptied by poll()."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.queued: list[tuple[str, bytes | None, bytes, int]] = []
        self.delivered: list[tuple[str, bytes | None, bytes, int]] = []

    def produce(
        self, topic: str, value: bytes, key: bytes | None, partition: int, headers: Any = None
    ) -> None:
        assert headers is None, "column records carry no headers"
        if len(self.queued) == self.room:
            raise BufferError("Local: Queue full")
        self.queued.append((topic, key, value, partition))

    def poll(self, timeout: float) -> int:
        self.delivered += self.queued
        self.queued = []
        return 0


def test_columns_are_produced_in_order_as_records_waiting_for_room_in_a_full_queue() -> None:
    columns = RecordColumns()
    columns.append(b"c1", b"s1", 2)
    columns.extend([b"c2", b"c3"], [b"s2", b"s3"], [0, -1])
    assert len(columns) == 3
    assert columns[1] == OutgoingRecord(b"c2", b"s2", None, 0)
    assert list(columns) == [
        OutgoingRecord(b"c1", b"s1", None, 2),
        OutgoingRecord(b"c2", b"s2", None, 0),
        OutgoingRecord(b"c3", b"s3", None, -1),
    ]
    producer = _QueueProducer(room=2)
    # With delivery reports, through confluent-kafka's produce() (test_native: without).
    produce_all(cast(Any, producer), "state", columns, reports=True)
    producer.poll(0)
    assert producer.delivered == [
        ("state", b"c1", b"s1", 2),
        ("state", b"c2", b"s2", 0),
        ("state", b"c3", b"s3", -1),
    ]
