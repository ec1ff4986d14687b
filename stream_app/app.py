"""The Faust app: settings, topics, the scoring agent, the model loader and health views."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faust
from faust.web import Request, Response, View

from schemas import SegstreamError
from stream_app.model_store import load_manifest
from stream_app.pipeline import OutgoingRecord, SourceRecord, process_records
from stream_app.settings import Settings
from stream_app.state import WorkerState

__all__ = ["SegmentationApp", "create_app"]

log = logging.getLogger(__name__)

_MODEL_RETRY_SECONDS = 2.0


@dataclass
class SegmentationApp:
    """A Faust app wired for segmentation, with its topics and live state."""

    app: faust.App
    settings: Settings
    state: WorkerState
    input_topic: Any
    output_topic: Any
    dlq_topic: Any
    agent: Any


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


async def _send_all(topic: Any, records: Sequence[OutgoingRecord]) -> None:
    for record in records:
        await topic.send(key=record.key, value=record.value, headers=record.headers)


def create_app(settings: Settings) -> SegmentationApp:
    """Build the Faust app for settings; nothing connects until it is started."""
    app = faust.App(
        settings.app_id,
        broker=settings.broker_url,
        value_serializer="raw",
        key_serializer="raw",
        consumer_auto_offset_reset="earliest",
        topic_disable_leader=True,
        topic_partitions=settings.topic_partitions,
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        datadir=str(settings.data_dir),
        producer_acks=-1,
        store="memory://",
        # On shutdown, do not wait for buffered events: they are not committed, so the next
        # owner of the partition scores them; waiting could block a stop indefinitely.
        stream_wait_empty=False,
    )
    # Raw bytes in: decoding happens inside the agent so a bad record can never kill the
    # stream (a decode error raised by Faust itself inside take() can: robinhood/faust#586).
    input_topic = app.topic(settings.input_topic, key_type=bytes, value_type=bytes)
    output_topic = app.topic(settings.output_topic, key_type=bytes, value_type=bytes)
    dlq_topic = app.topic(settings.dlq_topic, key_type=bytes, value_type=bytes)
    state = WorkerState()

    async def score_signups(stream: Any) -> None:
        # No model, no consuming: nothing is committed, and nothing is guessed.
        await state.model_ready.wait()
        async for events in stream.take_events(settings.batch_size, within=settings.batch_window):
            records = [_source_record(event) for event in events]
            outcome = process_records(
                records,
                state.require_scorer(),
                consumer_group=settings.app_id,
                max_event_bytes=settings.max_event_bytes,
                echo_customer=settings.echo_customer,
            )
            await _send_all(output_topic, outcome.assignments)
            await _send_all(dlq_topic, outcome.dead_letters)
            state.consumed += len(records)
            state.assigned += len(outcome.assignments)
            state.dead_lettered += len(outcome.dead_letters)
            state.segments.update(outcome.segment_counts)
            state.dead_letter_reasons.update(outcome.reason_counts)

    agent = app.agent(input_topic, name="score-signups")(score_signups)

    @app.task  # type: ignore[untyped-decorator]  # faust's decorators are untyped
    async def load_model() -> None:
        """Load the model from SEGSTREAM_MODEL_PATH, retrying until one is valid."""
        if settings.model_path is None:
            state.model_error = "no model configured (set SEGSTREAM_MODEL_PATH)"
            log.error("segstream: %s", state.model_error)
            return
        while True:
            try:
                manifest = load_manifest(settings.model_path, settings.model_signing_key)
            except SegstreamError as exc:
                if state.model_error != str(exc):
                    log.warning("segstream: model not loaded, retrying: %s", exc)
                state.model_error = str(exc)
                await asyncio.sleep(_MODEL_RETRY_SECONDS)
                continue
            state.use(manifest)
            log.info("segstream: model %s %s is live", manifest.name, manifest.version)
            return

    @app.page("/health")
    class Health(View):
        """Liveness: the process and its event loop answer."""

        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok", **state.snapshot()})

    @app.page("/ready")
    class Ready(View):
        """Readiness: a valid model is loaded and the consumer is running."""

        async def get(self, request: Request) -> Response:
            ready = state.scorer is not None and app.consumer.started
            body = {"ready": ready, **state.snapshot()}
            return self.json(body, status=200 if ready else 503)

    return SegmentationApp(
        app=app,
        settings=settings,
        state=state,
        input_topic=input_topic,
        output_topic=output_topic,
        dlq_topic=dlq_topic,
        agent=agent,
    )
