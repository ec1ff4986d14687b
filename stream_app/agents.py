"""The agents: score signups in batches and deliver them; follow the model topic."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from stream_app.follower import ModelFollower
from stream_app.metrics import WorkerMetrics
from stream_app.pipeline import BatchOutcome, OutgoingRecord, SourceRecord, process_records
from stream_app.scorer import Scorer
from stream_app.shadow import compare
from stream_app.state import WorkerState
from stream_app.transactions import PartitionTransactions

if TYPE_CHECKING:
    from stream_app.app import SegmentationApp

__all__ = ["register_agents"]

log = logging.getLogger(__name__)

_RETRY_SECONDS = 1.0


def _source_record(event: Any) -> SourceRecord:
    message = event.message
    return SourceRecord(
        key=message.key,
        value=message.value,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        timestamp=message.timestamp,
    )


def _record(
    state: WorkerState, metrics: WorkerMetrics, consumed: int, outcome: BatchOutcome
) -> None:
    state.consumed += consumed
    state.assigned += len(outcome.assignments)
    state.dead_lettered += len(outcome.dead_letters)
    state.segments.update(outcome.segment_counts)
    state.dead_letter_reasons.update(outcome.reason_counts)
    metrics.events.labels("assigned").inc(len(outcome.assignments))
    metrics.events.labels("dead_lettered").inc(len(outcome.dead_letters))
    for segment_id, n in outcome.segment_counts.items():
        metrics.segments.labels(segment_id).inc(n)
    for reason, n in outcome.reason_counts.items():
        metrics.dead_letters.labels(reason).inc(n)


async def _send_all(producer: Any, topic: str, records: Sequence[OutgoingRecord]) -> None:
    # Straight to Faust's producer rather than Topic.send, which wraps every record in message
    # objects and callbacks (22% more events/s measured, bench/README.md). Nothing is lost:
    # Faust flushes this producer before it commits any offset.
    for record in records:
        await producer.send(topic, record.key, record.value, None, None, record.headers)


def _record_shadow(
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


async def _offsets_travel_in_transactions(offsets: Any) -> bool:
    """Stand-in for Faust's offset commit in exactly-once mode: nothing to do here."""
    return False


def register_agents(segmentation: SegmentationApp) -> None:
    """Add the scoring agent, the model follower and the rebalance hooks to the app."""
    app, settings = segmentation.app, segmentation.settings
    state, metrics = segmentation.state, segmentation.metrics
    transactions = PartitionTransactions(settings)
    exactly_once = settings.processing_guarantee == "exactly_once"

    async def deliver(
        tp: TopicPartition, records: list[SourceRecord], outcome: BatchOutcome
    ) -> bool:
        """Send one partition's results; False when the partition was taken away meanwhile."""
        if not exactly_once:
            await _send_all(app.producer, settings.output_topic, outcome.assignments)
            await _send_all(app.producer, settings.dlq_topic, outcome.dead_letters)
            return True
        outgoing = [(settings.output_topic, r) for r in outcome.assignments] + [
            (settings.dlq_topic, r) for r in outcome.dead_letters
        ]
        next_offset = max(r.offset for r in records) + 1
        while True:
            # Until the transaction commits, nothing of this batch is visible or acknowledged,
            # so a retry after a broker outage can neither lose nor duplicate anything.
            try:
                return await transactions.commit(tp, outgoing, next_offset)
            except KafkaError as exc:
                log.warning("segstream: transaction for %s failed, retrying: %r", tp, exc)
                await asyncio.sleep(_RETRY_SECONDS)

    async def score_signups(stream: Any) -> None:
        if exactly_once:
            # Offsets travel only inside the partition transactions. Faust's own commit would
            # also commit offsets of a batch whose transaction was aborted: take_events acks a
            # batch even when the agent is cancelled in the middle of it.
            app.consumer._commit = _offsets_travel_in_transactions  # type: ignore[attr-defined]
        # No model, no consuming: nothing is committed, and nothing is guessed.
        await state.model_ready.wait()
        async for events in stream.take_events(settings.batch_size, within=settings.batch_window):
            by_partition: dict[TopicPartition, list[SourceRecord]] = {}
            for event in events:
                record = _source_record(event)
                tp = TopicPartition(record.topic, record.partition)
                by_partition.setdefault(tp, []).append(record)
            # One scorer (and candidate) per batch: a model switch lands between batches, and
            # every assignment carries the version that scored it.
            scorer, candidate = state.require_scorer(), state.candidate
            outcomes = {
                tp: process_records(
                    records,
                    scorer,
                    consumer_group=settings.app_id,
                    max_event_bytes=settings.max_event_bytes,
                    echo_customer=settings.echo_customer,
                )
                for tp, records in by_partition.items()
            }
            delivery = asyncio.ensure_future(
                asyncio.gather(
                    *(deliver(tp, by_partition[tp], outcome) for tp, outcome in outcomes.items())
                )
            )
            try:
                delivered = await asyncio.shield(delivery)
            except asyncio.CancelledError:
                # Faust's take_events acknowledges the whole batch when the agent is cancelled
                # (SIGTERM), so the batch must be out before that happens, or it is lost.
                await delivery
                raise
            for (tp, outcome), done in zip(outcomes.items(), delivered, strict=True):
                if not done:
                    continue  # the partition's next owner scores and counts these
                _record(state, metrics, len(by_partition[tp]), outcome)
                if candidate is not None:
                    _record_shadow(state, metrics, candidate, *compare(outcome, scorer, candidate))

    # faust types signal receivers more narrowly than it calls them (sender, payload, signal=).
    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_revoked(sender: Any, revoked: set[Any], **_: Any) -> None:
        await transactions.revoke(TopicPartition(tp.topic, tp.partition) for tp in revoked)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]
    async def on_assigned(sender: Any, assigned: set[Any], **_: Any) -> None:
        transactions.assigned(TopicPartition(tp.topic, tp.partition) for tp in assigned)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def on_shutdown(sender: Any, **_: Any) -> None:
        await transactions.close()

    segmentation.agent = app.agent(segmentation.input_topic, name="score-signups")(score_signups)

    async def send_model_record(key: bytes, value: bytes) -> None:
        await segmentation.model_topic.send(key=key, value=value)

    follower = ModelFollower(settings, state, metrics, send_model_record)

    @app.task  # type: ignore[untyped-decorator]  # faust's decorators are untyped
    async def follow_models() -> None:
        """Load the live model from the model topic (or the file fallback) and keep following."""
        await follower.run()
