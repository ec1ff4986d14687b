"""Exactly-once delivery against a stand-in producer: what a failed transaction leads to."""

from __future__ import annotations

from typing import Any, cast

import pytest
from confluent_kafka import KafkaError, KafkaException

from stream_app.delivery import ExactlyOnce
from stream_app.failures import TransactionAbortedError
from stream_app.pipeline import OutgoingRecord


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
