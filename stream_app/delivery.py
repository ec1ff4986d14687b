"""Delivery guarantees: how a batch's outputs and its input offsets become durable together.

Two policies behind one small interface, so the data plane only calls `send`, `commit` and
`abort` and is the same for both:

- ExactlyOnce: one transactional producer per worker. Every record of a commit interval and
  the input offsets it consumed commit in one Kafka transaction, and the offsets carry the
  consumer's group metadata (KIP-447): a worker whose partitions moved on is refused by the
  group generation, so a zombie can never commit what the new owner also commits.
- AtLeastOnce: plain idempotent producer; offsets are committed only after every output
  before them is acknowledged, so nothing is lost, and a crash may repeat a few outputs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from typing import Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from tenacity import Retrying, retry_if_exception_type, wait_fixed

from stream_app.failures import (
    FatalKafkaError,
    TransactionAbortedError,
    Verdict,
    classify,
    kafka_error,
    retrying,
)
from stream_app.native import QUEUE_FULL, produce_columns
from stream_app.pipeline import Headers, OutgoingRecord, RecordColumns

__all__ = ["CALL_TIMEOUT", "AtLeastOnce", "Delivery", "ExactlyOnce", "produce_all"]

log = logging.getLogger(__name__)

#: How long one blocking librdkafka call may take before it is retried (seconds).
CALL_TIMEOUT = 10.0
#: How far past its own timeout a transactional call may run before its producer is replaced.
_OVERRUN_SECONDS = 5.0


class Delivery(Protocol):
    """What the data plane asks of a delivery guarantee."""

    def send(self, topic: str, records: Sequence[OutgoingRecord]) -> None:
        """Hand records to the producer as part of the current commit."""

    def commit(
        self, offsets: list[TopicPartition], meanwhile: Callable[[], None] | None = None
    ) -> None:
        """Make everything sent since the last commit durable with offsets; raise
        TransactionAbortedError when it was discarded instead, FatalKafkaError when the
        worker must stop. `meanwhile` runs once while the broker is waited for."""

    def abort(self) -> None:
        """Discard what was sent since the last commit, as far as the guarantee can."""

    def close(self, timeout: float) -> None:
        """Release the producer, waiting at most timeout seconds."""

    def poll(self) -> None:
        """Serve the producer's pending callbacks (errors reach error_cb this way)."""


#: How long one wait for room in librdkafka's local queue serves the producer's callbacks.
_ROOM_WAIT_SECONDS = 0.05


def produce_all(
    producer: Producer,
    topic: str,
    records: Sequence[OutgoingRecord],
    reports: bool = False,
) -> None:
    """Produce records, waiting for room when librdkafka's local queue is full.

    Columns of records go to librdkafka in one call (stream_app.native) unless the producer
    reports deliveries (`reports`): confluent-kafka reports only what its own produce() sent.
    """
    produce = producer.produce

    def serve_callbacks(seconds: float) -> None:
        producer.poll(seconds)

    if isinstance(records, RecordColumns) and not reports:
        _produce_columns(producer, topic, records, serve_callbacks)
        return
    rows: Iterable[tuple[bytes | None, bytes, Headers | None, int]] = records
    if isinstance(records, RecordColumns):
        # Straight from the columns: zip hands out one tuple again and again.
        rows = zip(records.keys, records.values, repeat(None), records.partitions)
    for key, value, headers, partition in rows:
        try:
            if headers:
                produce(topic, value, key, partition, headers=headers)
            else:  # an empty list of headers still costs librdkafka a header set per record
                produce(topic, value, key, partition)
        except BufferError:
            # The queue drains as the broker acknowledges: wait by serving callbacks.
            for attempt in Retrying(
                retry=retry_if_exception_type(BufferError),
                wait=wait_fixed(_ROOM_WAIT_SECONDS),
                sleep=serve_callbacks,
            ):
                with attempt:
                    produce(topic, value, key, partition, headers=headers or None)


def _produce_columns(
    producer: Producer,
    topic: str,
    records: RecordColumns,
    serve_callbacks: Callable[[float], None],
) -> None:
    keys, values, partitions = records.keys, records.values, records.partitions
    start = 0
    while True:
        start, code = produce_columns(producer, topic, keys, values, partitions, start)
        if code == 0:
            return
        if code != QUEUE_FULL:
            raise KafkaException(KafkaError(code))
        # The queue drains as the broker acknowledges: wait by serving callbacks.
        serve_callbacks(_ROOM_WAIT_SECONDS)


def _fatal(what: str, error: KafkaError) -> FatalKafkaError:
    return FatalKafkaError(f"{what}: {error.str()} ({error.name()})")


class ExactlyOnce:
    """Transactions spanning a commit interval, fenced by the consumer group's generation."""

    def __init__(
        self,
        make_producer: Callable[[], Producer],
        consumer: Consumer,
        give_up: Callable[[], bool],
        timeout: Callable[[], float] = lambda: CALL_TIMEOUT,
    ) -> None:
        self._make_producer = make_producer
        self._consumer = consumer
        self._give_up = give_up
        self._timeout = timeout
        self._open = False
        self._abandoned: list[Producer] = []
        self._producer: Producer | None = None
        self._producer = self._started_producer()

    def _started_producer(self) -> Producer:
        producer = self._make_producer()
        try:
            # Aborts whatever an earlier producer with this transactional id left open.
            producer.init_transactions(self._timeout() * 3)
        except KafkaException as exc:
            raise self._failed("initialising transactions", exc) from None
        return producer

    def send(self, topic: str, records: Sequence[OutgoingRecord]) -> None:
        """Open a transaction if none is, and produce records into it."""
        if self._producer is None:
            # The previous one was abandoned and its successor could not start yet.
            self._producer = self._started_producer()
        if not self._open:
            self._producer.begin_transaction()
            self._open = True
        try:
            produce_all(self._producer, topic, records)
        except KafkaException as exc:
            # An abortable error that reached the transaction meanwhile (a refused offset
            # commit, an out-of-order sequence after a rebalance) makes librdkafka refuse
            # further records with "Erroneous state": abort it, and the batch is read again.
            # A producer that cannot abort is fatal (abort() raises).
            self.abort()
            error = kafka_error(exc)
            raise TransactionAbortedError(
                f"producing: {error.str() if error else exc} (the transaction was aborted)"
            ) from None

    def commit(
        self, offsets: list[TopicPartition], meanwhile: Callable[[], None] | None = None
    ) -> None:
        """Commit the open transaction with the offsets under the current group generation;
        `meanwhile` runs on this thread while the transaction commits."""
        if not self._open or self._producer is None:
            if meanwhile is not None:
                meanwhile()
            return
        try:
            # The metadata is read now: if the group moved on since the batch was consumed,
            # the broker refuses these offsets and the whole transaction is aborted below.
            metadata = self._consumer.consumer_group_metadata()
            for attempt in retrying("sending offsets to the transaction", self._give_up):
                with attempt:
                    self._bounded(self._producer.send_offsets_to_transaction, offsets, metadata)
            for attempt in retrying("committing the transaction", self._give_up):
                with attempt:
                    self._bounded(self._producer.commit_transaction, meanwhile=meanwhile)
        except KafkaException as exc:
            error = self._failed("committing a transaction", exc)
            self.abort()
            raise error from None
        self._open = False

    def _bounded(
        self,
        call: Callable[..., object],
        *args: object,
        meanwhile: Callable[[], None] | None = None,
    ) -> None:
        """call(*args, timeout) on a thread of its own, given up on if it overruns; this
        thread runs `meanwhile` while it waits.

        librdkafka can block in send_offsets_to_transaction past its timeout after the group
        coordinator was unreachable (confluentinc/librdkafka#5456, #5511, open in 2.16). A call
        that overruns leaves its producer for good: a new one with the same transactional id
        fences it and aborts its transaction, whose records are then read again.
        """
        timeout = self._timeout()
        outcome: list[BaseException | None] = []

        def run() -> None:
            try:
                call(*args, timeout)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                outcome.append(exc)
            else:
                outcome.append(None)

        thread = threading.Thread(target=run, name="segstream-transaction-call", daemon=True)
        thread.start()
        started = time.monotonic()
        try:
            if meanwhile is not None:
                meanwhile()
        finally:
            thread.join(max(timeout + _OVERRUN_SECONDS - (time.monotonic() - started), 0.0))
        if outcome:
            if outcome[0] is not None:
                raise outcome[0]
            return
        log.warning(
            "segstream: %s overran its %.0f s timeout (librdkafka#5456); replacing the producer",
            getattr(call, "__name__", "a transactional call"),
            timeout,
        )
        if self._producer is not None:
            self._abandoned.append(self._producer)  # a thread is still inside it
        self._open = False
        self._producer = None
        # Started here if the broker answers, else by the next send().
        self._producer = self._started_producer()
        raise TransactionAbortedError("the producer was stuck and has been replaced")

    def _failed(self, what: str, exc: KafkaException) -> SegstreamFailure:
        error = kafka_error(exc)
        if error is None or classify(error) is Verdict.FATAL:
            return _fatal(what, error) if error else FatalKafkaError(f"{what}: {exc}")
        return TransactionAbortedError(f"{what}: {error.str()} ({error.name()})")

    def abort(self) -> None:
        """Abort the open transaction; its records stay invisible to read_committed readers."""
        if not self._open or self._producer is None:
            return
        self._open = False
        producer = self._producer
        try:
            # An abort that timed out (records still in flight to a broker that just came
            # back) is resumed by calling it again; until it has finished, librdkafka refuses
            # the next begin_transaction ("Conflicting abort_transaction API call").
            for attempt in retrying("aborting the transaction", self._give_up):
                with attempt:
                    producer.abort_transaction(self._timeout())
        except KafkaException as exc:
            error = kafka_error(exc)
            if error is not None and classify(error) is not Verdict.FATAL:
                # The broker aborts it by itself once transaction.timeout.ms has passed.
                log.warning("segstream: aborting the transaction failed: %s", error.str())
                return
            raise self._failed("aborting a transaction", exc) from None

    def close(self, timeout: float) -> None:
        """Abort what is open and flush the producer."""
        self.abort()
        if self._producer is not None:
            self._producer.flush(timeout)

    def poll(self) -> None:
        """Serve the producer's pending callbacks."""
        if self._producer is not None:
            self._producer.poll(0)


SegstreamFailure = FatalKafkaError | TransactionAbortedError


class AtLeastOnce:
    """Outputs acknowledged first, offsets committed after: a crash repeats, never loses."""

    def __init__(
        self,
        producer: Producer,
        consumer: Consumer,
        give_up: Callable[[], bool],
        timeout: Callable[[], float] = lambda: CALL_TIMEOUT,
    ) -> None:
        self._producer = producer
        self._consumer = consumer
        self._give_up = give_up
        self._timeout = timeout
        self.failures: list[KafkaError] = []

    def on_delivery(self, error: KafkaError | None, message: Message) -> None:
        """librdkafka's report of a record it gave up on (after its own retries)."""
        if error is not None:
            self.failures.append(error)

    def send(self, topic: str, records: Sequence[OutgoingRecord]) -> None:
        """Produce records; librdkafka retries them until message.timeout.ms."""
        produce_all(self._producer, topic, records, reports=True)

    def commit(
        self, offsets: list[TopicPartition], meanwhile: Callable[[], None] | None = None
    ) -> None:
        """Wait until every output is acknowledged, then commit the input offsets;
        `meanwhile` runs first, while librdkafka's threads deliver."""
        if meanwhile is not None:
            meanwhile()
        while self._producer.flush(self._timeout()) > 0:
            if self._give_up():
                raise TransactionAbortedError("stopping before every output was acknowledged")
            log.warning("segstream: outputs not yet acknowledged, still waiting")
        if self.failures:
            first = self.failures[0]
            self.failures.clear()
            # Committing now would skip the lost outputs; a restart reads them again.
            raise _fatal("producing results", first)
        try:
            for attempt in retrying("committing offsets", self._give_up):
                with attempt:
                    self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            error = kafka_error(exc)
            if error is not None and classify(error) is Verdict.FATAL:
                raise _fatal("committing offsets", error) from None
            # A rebalance took the partitions: their next owner reads from the last commit.
            raise TransactionAbortedError(f"committing offsets: {exc}") from None

    def abort(self) -> None:
        """Outputs already sent stay sent: at-least-once repeats them after a restart."""

    def poll(self) -> None:
        """Serve the producer's pending callbacks."""
        self._producer.poll(0)

    def close(self, timeout: float) -> None:
        """Flush what is queued."""
        deadline = time.monotonic() + timeout
        self._producer.flush(max(deadline - time.monotonic(), 0.0))
