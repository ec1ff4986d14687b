"""The signup hot path: consume many records, score them in one pass, commit them together.

Faust runs the worker: its lifecycle, signals, web views and the model follower. The signups
themselves bypass Faust's per-record stream, whose per-record hand-over dominates the CPU
cost of a record (robinhood/faust#563; bench/ measures it), and go through this batch data
plane instead: a
librdkafka (confluent-kafka) consumer and producer on a thread of their own, supervised by a
Faust service. One loop iteration consumes up to `batch_size` records, decodes and scores
them with `process_records`, and produces the results; every `commit_interval_ms` the
delivery guarantee (stream_app.delivery) commits the outputs and the input offsets together.

Rebalances are handled in librdkafka's callbacks, which run on this same thread inside
`consume()`, so nothing is ever in flight across one: on revocation the open commit is
finished while the worker still owns the partitions (or aborted), and on a lost assignment
it is aborted. A batch taken before a revocation is never retried afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import ConfigResource  # not re-exported for type checkers
from confluent_kafka.admin._resource import ResourceType
from mode import Service

from stream_app.audiences import Audiences, RestoreInterrupted, StateOutcome
from stream_app.delivery import CALL_TIMEOUT, AtLeastOnce, Delivery, ExactlyOnce
from stream_app.exceptions import UnknownCustomerError
from stream_app.failures import (
    FatalKafkaError,
    TransactionAbortedError,
    Verdict,
    classify,
    kafka_error,
)
from stream_app.lookup import member_client_id
from stream_app.metrics import WorkerMetrics
from stream_app.pipeline import BatchOutcome, SourceRecord, dead_letter, process_records
from stream_app.scorer import Scorer
from stream_app.settings import Settings
from stream_app.shadow import compare
from stream_app.state import WorkerState

__all__ = ["DataPlane", "DataPlaneService", "PlaneStatus"]

log = logging.getLogger(__name__)

#: A commit retried for longer than this means the worker cannot deliver (readiness says so).
_DELIVERY_PATIENCE_SECONDS = 5.0
#: librdkafka's own size limit of one produced record (its default message.max.bytes).
_PRODUCER_MAX_BYTES = 1_000_000
_OBSERVE_SECONDS = 1.0


@dataclass
class PlaneStatus:
    """What the data plane is doing, written by its thread and read by the web views."""

    running: bool = False
    broker_up: bool = True
    committing_since: float | None = None
    backlog: int = 0
    last_progress: float = field(default_factory=time.monotonic)
    last_error: str | None = None
    partitions: list[str] = field(default_factory=list)
    #: The partition whose customer state is being restored, if any.
    restoring: str | None = None
    #: Re-segmentation for the live model: its version and the partitions still to do.
    resegment: dict[str, object] | None = None
    #: What the shadow candidate would change in the customers in state.
    shadow_state: dict[str, object] | None = None

    def snapshot(self) -> dict[str, object]:
        """What /health shows of the data plane."""
        return {
            "consuming": self.running,
            "broker_up": self.broker_up,
            "partitions": sorted(self.partitions),
            "backlog": self.backlog,
            "restoring": self.restoring,
            "resegment": self.resegment,
            "shadow_state": self.shadow_state,
        }

    def problem(self, stall_seconds: float, now: float | None = None) -> str | None:
        """Why the worker is not ready to take work, or None when it is."""
        now = time.monotonic() if now is None else now
        if not self.running:
            return "the data plane is not consuming"
        if not self.broker_up:
            return f"cannot reach the Kafka broker ({self.last_error or 'no broker is up'})"
        if self.restoring is not None:
            return f"restoring the customer state of {self.restoring}"
        if (
            self.committing_since is not None
            and now - self.committing_since > _DELIVERY_PATIENCE_SECONDS
        ):
            waited = now - self.committing_since
            return f"cannot deliver: a commit has been retried for {waited:.0f} s"
        if self.backlog > 0 and now - self.last_progress > stall_seconds:
            return (
                f"no progress for {now - self.last_progress:.0f} s "
                f"on a backlog of {self.backlog} records"
            )
        return None


@dataclass
class _Pending:
    """What was consumed and sent since the last commit."""

    first: dict[tuple[str, int], int] = field(default_factory=dict)
    next: dict[tuple[str, int], int] = field(default_factory=dict)
    batches: list[tuple[BatchOutcome, Scorer, Scorer | None]] = field(default_factory=list)
    stamps: list[float] = field(default_factory=list)
    count: int = 0
    state: list[StateOutcome] = field(default_factory=list)
    state_writes: int = 0

    @property
    def busy(self) -> bool:
        """Whether anything awaits a commit: consumed records or state writes."""
        return bool(self.count or self.state_writes)

    def add_state(self, outcome: StateOutcome) -> None:
        self.state.append(outcome)
        self.state_writes += len(outcome.changelog)

    def add(
        self,
        records: list[SourceRecord],
        outcome: BatchOutcome,
        scorer: Scorer,
        candidate: Scorer | None,
    ) -> None:
        first, following = self.first, self.next
        for record in records:
            where = (record.topic, record.partition)
            if where not in first:
                first[where] = record.offset
            following[where] = record.offset + 1
        self.batches.append((outcome, scorer, candidate))
        self.count += len(records)

    def offsets(self) -> list[TopicPartition]:
        return [TopicPartition(t, p, o) for (t, p), o in self.next.items()]

    def clear(self) -> None:
        self.first, self.next, self.batches, self.stamps, self.count = {}, {}, [], [], 0
        self.state, self.state_writes = [], 0


def worker_id(settings: Settings) -> str:
    """This worker's lasting name: the setting, or an id kept in its data directory.

    A restarted worker keeps its transactional id, so its first act aborts whatever it left
    open when it died, instead of the broker waiting out transaction.timeout.ms.
    """
    if settings.worker_id:
        return settings.worker_id
    path = settings.data_dir / "worker-id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        made = uuid.uuid4().hex[:12]
        path.write_text(made + "\n")
        return made


class DataPlane:
    """Consumes, scores and delivers signups in batches until stopped; runs on its own thread."""

    def __init__(self, settings: Settings, state: WorkerState, metrics: WorkerMetrics) -> None:
        self.settings = settings
        self.state = state
        self.metrics = metrics
        self.status = PlaneStatus()
        self._stop = threading.Event()
        self._stopping_since = 0.0
        self._pending = _Pending()
        self._commit_due = 0.0
        self._next_observe = 0.0
        self._assigned: set[tuple[str, int]] = set()
        self._fatal: FatalKafkaError | None = None
        self._dead_letter_max = settings.dead_letter_max_bytes
        self._consumer: Consumer | None = None
        self._delivery: Delivery | None = None
        self.audiences: Audiences | None = None
        if settings.customer_state:
            self.audiences = Audiences(
                settings.data_dir / "state",
                settings.input_topic,
                settings.state_topic,
                metrics.audiences,
                self._state_reader_config(),
            )
        # Re-segmentation: the model version it is for, and per owned partition the key
        # after which the scan goes on; the shadow candidate's count works the same way.
        self._rescan_version: str | None = None
        self._rescan: dict[int, bytes] = {}
        self._shadow_version: str | None = None
        self._shadow_scan: dict[int, bytes] = {}
        self._shadow_seen = 0
        self._shadow_moved = 0
        # After an aborted commit with state writes, whether it really was aborted cannot be
        # known for sure: stores are then closed without a checkpoint (the next owner replays
        # more of the state topic rather than trust them).
        self._state_doubtful = False

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish the batch in flight and return."""
        if not self._stop.is_set():
            self._stopping_since = time.monotonic()
            self._stop.set()

    def _give_up(self) -> bool:
        """True once a stop has waited the shutdown timeout: retries end, work is aborted."""
        return (
            self._stop.is_set()
            and time.monotonic() - self._stopping_since > self.settings.shutdown_timeout_ms / 1000
        )

    def _call_timeout(self) -> float:
        """How long one blocking Kafka call may take: less and less once a stop is asked."""
        if not self._stop.is_set():
            return CALL_TIMEOUT
        left = self.settings.shutdown_timeout_ms / 1000 - (time.monotonic() - self._stopping_since)
        return min(max(left, 0.1), CALL_TIMEOUT)

    def run(self) -> None:
        """The loop: wait for a model, then consume, score and deliver until stopped."""
        settings = self.settings
        consumer = Consumer(self._consumer_config())
        delivery: Delivery | None = None
        try:
            # The producer sets up its transactions and the dead-letter topic's limit is read
            # while the model loads; the group is joined only once a model is live.
            self._consumer = consumer
            if settings.processing_guarantee == "exactly_once":
                delivery = ExactlyOnce(
                    lambda: Producer(self._producer_config()),
                    consumer,
                    self._give_up,
                    self._call_timeout,
                )
            else:
                producer = Producer(self._producer_config())
                delivery = AtLeastOnce(producer, consumer, self._give_up, self._call_timeout)
            self._delivery = delivery
            self._dead_letter_max = self._dead_letter_limit()
            # No model, no consuming: nothing is committed, and nothing is guessed.
            while self.state.scorer is None:
                if self._stop.wait(0.1):
                    return
            consumer.subscribe(
                [settings.input_topic],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            # Everything alive now (Faust, numpy, the model) lives as long as the worker: keep
            # it out of the collector's passes, which would otherwise scan those objects again
            # and again on the hot path.
            gc.freeze()
            self.status.running = True
            log.info(
                "segstream: data plane consuming %s (%s, batches of %d / %d ms)",
                settings.input_topic,
                settings.processing_guarantee,
                settings.batch_size,
                settings.batch_window_ms,
            )
            try:
                try:
                    self._loop(consumer)
                except RestoreInterrupted as exc:
                    log.info("segstream: %s", exc)
                if self._pending.busy:
                    self._commit()  # the batch in flight is delivered, or aborted at the deadline
            except KafkaException as exc:
                # A client found unusable says little ("Local: Fatal error"); the reason it
                # became so reached error_cb first, and is the one worth a log line.
                error = kafka_error(exc)
                if self._fatal is None and delivery is not None:
                    delivery.poll()
                raise self._fatal or FatalKafkaError(
                    f"Kafka: {error.str()} ({error.name()})" if error else f"Kafka: {exc}"
                ) from None
        finally:
            self.status.running = False
            if self.audiences is not None:
                self.audiences.close_all(clean=not self._pending.busy and not self._state_doubtful)
            if delivery is not None:
                try:
                    delivery.close(self._call_timeout())
                except (FatalKafkaError, KafkaException) as exc:
                    log.warning("segstream: closing the producer: %s", exc)
            consumer.close()

    def _loop(self, consumer: Consumer) -> None:
        settings = self.settings
        batch_size, window = settings.batch_size, settings.batch_window_ms / 1000
        interval = settings.commit_interval_ms / 1000
        while not self._stop.is_set():
            messages = consumer.consume(batch_size, window)
            if self._fatal is not None:
                raise self._fatal
            now = time.monotonic()
            if messages:
                if not self._pending.busy:
                    self._commit_due = now + interval
                self._process(messages)
            if self.audiences is not None and self.status.running:
                if not self._pending.busy:
                    self._commit_due = now + interval
                self._rescan_step()
            if self._pending.busy and now >= self._commit_due:
                self._commit()
            if now >= self._next_observe:
                self._observe(consumer, now)

    # -- the hot path --------------------------------------------------------------------------

    def _process(self, messages: list[Message]) -> None:
        settings = self.settings
        records: list[SourceRecord] = []
        stamps = self._pending.stamps
        for message in messages:
            error = message.error()
            if error is not None:
                self._consume_error(error)
                continue
            kind, stamp = message.timestamp()
            seconds = stamp / 1000 if kind else None
            records.append(
                SourceRecord(
                    message.key(),
                    message.value(),
                    message.topic(),  # type: ignore[arg-type]  # set on every consumed record
                    message.partition(),  # type: ignore[arg-type]
                    message.offset(),  # type: ignore[arg-type]
                    seconds,
                )
            )
            stamps.append(seconds if seconds is not None else np.nan)
        if not records:
            return
        began = time.perf_counter()
        # One scorer (and candidate) per batch: a model switch lands between batches, and
        # every assignment carries the version that scored it.
        scorer, candidate = self.state.require_scorer(), self.state.candidate
        outcome = process_records(
            records,
            scorer,
            consumer_group=settings.app_id,
            max_event_bytes=settings.max_event_bytes,
            echo_customer=settings.echo_customer,
            dead_letter_max_bytes=self._dead_letter_max,
            keep_state=self.audiences is not None,
        )
        state = self._apply_state(outcome, scorer)
        assert self._delivery is not None
        # Tracked before it is sent: whatever happens to the send, these records are either
        # committed with the rest or read again.
        self._pending.add(records, outcome, scorer, candidate)
        try:
            self._delivery.send(settings.output_topic, outcome.assignments)
            if outcome.dead_letters:
                self._delivery.send(settings.dlq_topic, outcome.dead_letters)
            if state is not None:
                self._send_state(state)
        except TransactionAbortedError as exc:
            self._discard(exc)
            return
        self.metrics.batch_size.observe(len(records))
        self.metrics.batch_seconds.observe(time.perf_counter() - began)

    def _apply_state(self, outcome: BatchOutcome, scorer: Scorer) -> StateOutcome | None:
        """Move the batch's customers to their new states; dead-letter updates for strangers."""
        if self.audiences is None or not outcome.events:
            return None
        state = self.audiences.apply(
            outcome.event_records, outcome.events, outcome.labels, scorer, outcome.signup_texts
        )
        outcome.updates = len(outcome.events) - len(outcome.signups) - len(state.unknown)
        if state.unknown:
            now = datetime.now(UTC)
            for position in state.unknown:
                record, event = outcome.event_records[position], outcome.events[position]
                error = UnknownCustomerError(
                    f"profile update for customer {event.customer_id!r}, who has no state on "
                    "this worker; an update that starts a customer gives age and annual_income"
                )
                outcome.dead_letters.append(
                    dead_letter(record, error, self.settings.app_id, now, self._dead_letter_max)
                )
            outcome.reason_counts[UnknownCustomerError.reason] = outcome.reason_counts.get(
                UnknownCustomerError.reason, 0
            ) + len(state.unknown)
        return state

    def _send_state(self, state: StateOutcome) -> None:
        assert self._delivery is not None
        self._pending.add_state(state)
        if state.changelog:
            self._delivery.send(self.settings.state_topic, state.changelog)
        if state.changes:
            self._delivery.send(self.settings.changes_topic, state.changes)

    def _rescan_step(self) -> None:
        """Re-score a slice of the customers in state not yet scored by the live model."""
        audiences, scorer = self.audiences, self.state.scorer
        if audiences is None or scorer is None:
            return
        version = scorer.manifest.version
        if version != self._rescan_version:
            if self._pending.state_writes:
                # States in the open commit may carry the previous model and are not in the
                # stores yet, where the scan reads: commit them first (or, aborted, they are
                # read again and scored by the new model).
                self._commit()
                if self.state.scorer is not scorer:
                    return  # the model changed again meanwhile: start over next time
            self._rescan_version = version
            self._rescan = dict.fromkeys(audiences.owned(), b"")
        if self._rescan:
            partition, after = next(iter(self._rescan.items()))
            state, following = audiences.rescore(
                partition, after, self.settings.resegment_batch_size, scorer, datetime.now(UTC)
            )
            if following is None:
                del self._rescan[partition]
            else:
                self._rescan[partition] = following
            if state.changelog:
                try:
                    self._send_state(state)
                except TransactionAbortedError as exc:
                    self._discard(exc)
            self._show_rescan()
            return
        self._shadow_step(audiences)

    def _shadow_step(self, audiences: Audiences) -> None:
        """Count how many customers in state the shadow candidate would move."""
        candidate = self.state.candidate
        if candidate is None:
            self._shadow_version = None
            self.status.shadow_state = None
            return
        version = candidate.manifest.version
        if version != self._shadow_version:
            self._shadow_version = version
            self._shadow_scan = dict.fromkeys(audiences.owned(), b"")
            self._shadow_seen = self._shadow_moved = 0
        if self._shadow_scan:
            partition, after = next(iter(self._shadow_scan.items()))
            seen, moved, following = audiences.would_change(
                partition, after, self.settings.resegment_batch_size, candidate
            )
            self._shadow_seen += seen
            self._shadow_moved += moved
            if following is None:
                del self._shadow_scan[partition]
            else:
                self._shadow_scan[partition] = following
        self.status.shadow_state = {
            "candidate": version,
            "customers_compared": self._shadow_seen,
            "would_change": self._shadow_moved,
            "complete": not self._shadow_scan,
        }

    def audience_report(self) -> dict[str, object] | None:
        """Re-segmentation progress and the shadow count, for `segstream models`.

        None while the broker is down: a report queued then would hold up the worker's stop,
        which flushes what it has queued.
        """
        if self.audiences is None or not self.status.running or not self.status.broker_up:
            return None
        return {
            "worker": worker_id(self.settings),
            "resegment": self.status.resegment,
            "shadow_state": self.status.shadow_state,
        }

    def _show_rescan(self) -> None:
        assert self.audiences is not None
        remaining = sorted(self._rescan)
        self.audiences.metrics.resegment_remaining.set(len(remaining))
        self.status.resegment = {
            "model_version": self._rescan_version,
            "partitions_remaining": [f"{self.settings.input_topic}[{p}]" for p in remaining],
            "complete": not remaining,
        }

    def _commit(self) -> None:
        pending, delivery = self._pending, self._delivery
        assert delivery is not None
        began = time.monotonic()
        self.status.committing_since = began
        # RocksDB takes the last commit's state while the broker commits this one.
        meanwhile = self.audiences.write_committed if self.audiences is not None else None
        try:
            delivery.commit(pending.offsets(), meanwhile)
        except TransactionAbortedError as exc:
            self._discard(exc)
            return
        finally:
            self.status.committing_since = None
        if self.audiences is not None:
            self.audiences.commit()
            metrics = self.audiences.metrics
            for state in pending.state:
                for reason, n in state.change_counts.items():
                    metrics.changes.labels(reason).inc(n)
                if state.stale:
                    metrics.stale_updates.inc(state.stale)
                if state.rescored:
                    metrics.rescored.inc(state.rescored)
        done = time.monotonic()
        self.metrics.commit_seconds.observe(done - began)
        stamps = np.asarray(pending.stamps, dtype=np.float64)
        self.metrics.end_to_end.observe_many(time.time() - stamps[~np.isnan(stamps)])
        for outcome, scorer, candidate in pending.batches:
            self._count(outcome, scorer, candidate)
        self.status.last_progress = done
        pending.clear()

    def _discard(self, reason: TransactionAbortedError) -> None:
        """Drop what is in flight (its transaction is aborted) and read it again."""
        log.warning(
            "segstream: discarded %d records in flight, reading them again: %s",
            self._pending.count,
            reason,
        )
        assert self._delivery is not None
        self._delivery.abort()
        self.metrics.aborts.inc()
        self._rewind()
        self._forget_state_writes()
        self._pending.clear()

    def _forget_state_writes(self) -> None:
        """An aborted commit's state writes never happened: drop them, scan again."""
        if self.audiences is None:
            return
        self.audiences.discard()
        if self._pending.state_writes:
            # Customers scored in the aborted commit still carry the old version.
            self._rescan_version = None
            self._state_doubtful = True

    def _rewind(self) -> None:
        """Read an aborted commit's records again, on the partitions still owned."""
        assert self._consumer is not None
        for (topic, partition), offset in self._pending.first.items():
            if (topic, partition) not in self._assigned:
                continue  # its next owner reads it from the last committed offset
            try:
                self._consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                log.warning("segstream: cannot rewind %s[%d]: %s", topic, partition, exc)

    def _count(self, outcome: BatchOutcome, scorer: Scorer, candidate: Scorer | None) -> None:
        """Count a committed batch in the metrics (the status views read them there)."""
        state, metrics = self.state, self.metrics
        metrics.events.labels("assigned").inc(len(outcome.assignments))
        metrics.events.labels("dead_lettered").inc(len(outcome.dead_letters))
        if outcome.updates:
            metrics.events.labels("profile_update").inc(outcome.updates)
        for segment_id, n in outcome.segment_counts.items():
            metrics.segments.labels(segment_id).inc(n)
        for reason, n in outcome.reason_counts.items():
            metrics.dead_letters.labels(reason).inc(n)
        if candidate is not None:
            compared, pairs = compare(outcome, scorer, candidate)
            _count_shadow(state, metrics, candidate, compared, pairs)

    # -- librdkafka's callbacks (all on this thread, inside consume()) ------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("segstream: assigned %s", _names(partitions))
        if self.audiences is not None:
            # Consuming starts once the partition's customers are all in its store.
            for tp in partitions:
                self.status.restoring = f"{tp.topic}[{tp.partition}]"
                try:
                    self.audiences.open(
                        tp.partition, self.settings.restore_timeout_s, self._stop.is_set
                    )
                finally:
                    self.status.restoring = None
                self._rescan[tp.partition] = b""
                self._shadow_scan[tp.partition] = b""
        self._assigned.update((tp.topic, tp.partition) for tp in partitions)
        self._show_partitions()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Still the owner: finish the open commit now, or abort it; nothing crosses over.
        if self._pending.busy:
            self._commit()
        self._close_state(partitions, clean=not self._state_doubtful)
        self._forget(partitions)
        log.info("segstream: revoked %s", _names(partitions))

    def _close_state(self, partitions: list[TopicPartition], clean: bool) -> None:
        if self.audiences is None:
            return
        for tp in partitions:
            self.audiences.close(tp.partition, clean)
            self._rescan.pop(tp.partition, None)
            self._shadow_scan.pop(tp.partition, None)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # The group moved on without this worker (it stalled, or lost the coordinator): its
        # commit would be refused, so the batch in flight is dropped for the new owner to redo.
        if self._pending.busy:
            log.warning(
                "segstream: lost %s; discarding %d records in flight",
                _names(partitions),
                self._pending.count,
            )
            assert self._delivery is not None
            self._delivery.abort()
            self.metrics.aborts.inc()
            self._forget_state_writes()
            self._pending.clear()
        self._close_state(partitions, clean=False)
        self._forget(partitions)

    def _show_partitions(self) -> None:
        self.status.partitions = [f"{topic}[{partition}]" for topic, partition in self._assigned]

    def _forget(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._assigned.discard((tp.topic, tp.partition))
        self._show_partitions()
        for tp in partitions:
            with contextlib.suppress(KeyError):  # never observed: no lag series yet
                self.metrics.consumer_lag.remove(tp.topic, str(tp.partition))

    def _on_error(self, error: KafkaError) -> None:
        self.metrics.kafka_errors.labels(error.name()).inc()
        if error.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            self.status.broker_up = False
            self.metrics.broker_up.set(0)
        self.status.last_error = error.str()
        if classify(error) is Verdict.FATAL:
            self._fatal = FatalKafkaError(f"Kafka: {error.str()} ({error.name()})")
        else:
            log.warning("segstream: Kafka: %s", error.str())

    def _on_stats(self, raw: str) -> None:
        brokers = json.loads(raw).get("brokers", {}).values()
        up = any(b.get("state") == "UP" and b.get("nodeid", -1) >= 0 for b in brokers)
        self.status.broker_up = up
        self.metrics.broker_up.set(1 if up else 0)

    def _consume_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._PARTITION_EOF:
            return
        self._on_error(error)
        if self._fatal is not None:
            raise self._fatal

    # -- observation -----------------------------------------------------------------------------

    def _observe(self, consumer: Consumer, now: float) -> None:
        """Lag per owned partition, and whether the backlog moves (for readiness)."""
        self._next_observe = now + _OBSERVE_SECONDS
        owned = [TopicPartition(t, p) for t, p in self._assigned]
        if not owned:
            self.status.backlog = 0
            return
        backlog = 0
        for tp in consumer.position(owned):
            _low, high = consumer.get_watermark_offsets(tp, cached=True)
            start = self._pending.first.get((tp.topic, tp.partition), tp.offset)
            lag = max(high - start, 0) if high >= 0 and start >= 0 else 0
            self.metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)
            backlog += lag
        self.status.backlog = backlog
        if backlog == 0:
            self.status.last_progress = now

    # -- configuration ---------------------------------------------------------------------------

    def _common_config(self) -> dict[str, Any]:
        return {
            **self.settings.librdkafka_options(),
            "error_cb": self._on_error,
            "logger": logging.getLogger("librdkafka"),
        }

    def _state_reader_config(self) -> dict[str, Any]:
        """A consumer without a group that replays the state topic into local stores."""
        return {
            **self.settings.librdkafka_options(),
            "group.id": f"{self.settings.app_id}.state-restore",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            # The end of a partition is known once a fetch comes back empty: do not let the
            # broker wait for more (its default, 500 ms, per partition restored).
            "fetch.wait.max.ms": 10,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "logger": logging.getLogger("librdkafka"),
        }

    def _consumer_config(self) -> dict[str, Any]:
        settings = self.settings
        return {
            **self._common_config(),
            "group.id": settings.app_id,
            # Lookups find the worker that owns a customer through the group's members.
            "client.id": member_client_id(worker_id(settings), settings.web_url()),
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            # Input from transactional producers: only what they committed.
            "isolation.level": "read_committed",
            # Only the partitions that move are revoked when a worker joins or leaves.
            "partition.assignment.strategy": "cooperative-sticky",
            "session.timeout.ms": settings.session_timeout_ms,
            "heartbeat.interval.ms": max(settings.session_timeout_ms // 5, 100),
            # librdkafka's default prefetch (64 MiB) is far more than a few batches ahead;
            # 16 MiB still holds several batches of signups and keeps the worker small.
            "queued.max.messages.kbytes": 16_384,
            "statistics.interval.ms": 1000,
            "stats_cb": self._on_stats,
        }

    def _producer_config(self) -> dict[str, Any]:
        settings = self.settings
        config: dict[str, Any] = {
            **self._common_config(),
            "enable.idempotence": True,
            "acks": "all",
            # A short linger fills requests under load and adds at most this to latency.
            "linger.ms": 2,
            "message.max.bytes": _PRODUCER_MAX_BYTES,
            # Compressed batches are smaller for the broker to copy, store and serve: with
            # customer state, each signup makes three records.
            "compression.type": settings.compression,
        }
        if settings.processing_guarantee == "exactly_once":
            config["transactional.id"] = f"{settings.app_id}-{worker_id(settings)}"
            config["transaction.timeout.ms"] = settings.transaction_timeout_ms
        else:
            config["delivery.report.only.error"] = True
            config["on_delivery"] = self._on_delivery
        return config

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if isinstance(self._delivery, AtLeastOnce):
            self._delivery.on_delivery(error, message)

    def _dead_letter_limit(self) -> int:
        """Largest dead letter the producer and the dead-letter topic both accept."""
        limit = min(self.settings.dead_letter_max_bytes, _PRODUCER_MAX_BYTES)
        admin = AdminClient(self.settings.librdkafka_options())
        resource = ConfigResource(ResourceType.TOPIC, self.settings.dlq_topic)
        try:
            configs = admin.describe_configs([resource], request_timeout=10)[resource].result(10)
            topic_limit = int(configs["max.message.bytes"].value)
        except (KafkaException, KeyError, ValueError) as exc:
            log.warning(
                "segstream: cannot read max.message.bytes of the dead-letter topic: %s", exc
            )
            return limit
        return min(limit, topic_limit)


def _count_shadow(
    state: WorkerState,
    metrics: WorkerMetrics,
    candidate: Scorer,
    compared: int,
    pairs: Counter[str],
) -> None:
    if state.candidate is candidate:  # a newer candidate starts its figures from zero
        state.shadow_compared += compared
        state.shadow_pairs.update(pairs)
    metrics.shadow_compared.inc(compared)
    for pair, n in pairs.items():
        live_id, candidate_id = pair.split("->")
        metrics.shadow_disagreements.labels(live_id, candidate_id).inc(n)


def _names(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions) or "nothing"


class DataPlaneService(Service):
    """Runs the data plane's thread inside the Faust worker and stops the worker if it dies.

    A fatal Kafka error crashes the service, which makes the Faust worker exit with status 1
    so the orchestrator restarts it; SIGTERM (Faust's stop) lets the batch in flight finish
    or abort within the shutdown timeout.
    """

    def __init__(self, plane: DataPlane, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plane = plane
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            self.plane.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the supervisor, which stops the worker
            self._error = exc

    async def on_start(self) -> None:
        """Start the data plane's thread."""
        self._thread = threading.Thread(target=self._run, name="segstream-data-plane", daemon=True)
        self._thread.start()

    @Service.task
    async def _supervise(self) -> None:
        while not self.should_stop:
            await self.sleep(0.2)
            thread = self._thread
            if thread is None or thread.is_alive() or self.plane._stop.is_set():
                continue
            error = self._error or RuntimeError("the data plane stopped by itself")
            reason = kafka_error(error)
            log.error(
                "segstream: data plane stopped, the worker exits with status 1: %s",
                f"Kafka: {reason.str()} ({reason.name()})" if reason else error,
            )
            await self.crash(error)
            return

    async def on_stop(self) -> None:
        """Finish or abort the batch in flight, then let the thread end."""
        self.plane.stop()
        thread = self._thread
        if thread is not None and thread.is_alive():
            budget = self.plane.settings.shutdown_timeout_ms / 1000 + 1.5
            await asyncio.get_running_loop().run_in_executor(None, thread.join, budget)
            if thread.is_alive():
                log.warning("segstream: data plane still closing after %.1f s; leaving it", budget)
