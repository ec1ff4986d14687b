"""The Faust app: settings, topics and live state; agents and views are wired in from beside it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import faust

from stream_app.metrics import WorkerMetrics
from stream_app.settings import Settings
from stream_app.state import WorkerState

__all__ = ["SegmentationApp", "create_app"]


@dataclass
class SegmentationApp:
    """A Faust app wired for segmentation, with its topics, live state and metrics."""

    app: faust.App
    settings: Settings
    input_topic: Any
    model_topic: Any
    state: WorkerState = field(default_factory=WorkerState)
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)
    agent: Any = None


def create_app(settings: Settings) -> SegmentationApp:
    """Build the Faust app for settings; nothing connects until it is started."""
    from stream_app.agents import register_agents
    from stream_app.views import register_views

    app = faust.App(
        settings.app_id,
        broker=settings.broker_url,
        value_serializer="raw",
        key_serializer="raw",
        consumer_auto_offset_reset="earliest",
        topic_disable_leader=True,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        datadir=str(settings.data_dir),
        producer_acks=-1,
        # At-least-once sends each batch through this producer: a 5 ms linger and 256 KiB
        # batches let it fill requests (bench/README.md). Exactly-once uses its own producers.
        producer_linger=0.005,
        producer_max_batch_size=262_144,
        store="memory://",
        # On shutdown, do not wait for buffered events: they are not committed, so the next
        # owner of the partition scores them; waiting could block a stop indefinitely.
        stream_wait_empty=False,
        # A killed worker's partitions move on after this long, not Faust's default minute.
        broker_session_timeout=settings.session_timeout_ms / 1000,
        broker_heartbeat_interval=settings.session_timeout_ms / 1000 / 5,
        # SSL and SASL exactly as the aiokafka clients get them from kafka_client_options().
        broker_credentials=settings.broker_credentials(),
    )
    # Raw bytes in: decoding happens inside the agent so a bad record can never kill the
    # stream (a decode error raised by Faust itself inside take() can: robinhood/faust#586).
    segmentation = SegmentationApp(
        app=app,
        settings=settings,
        input_topic=app.topic(settings.input_topic, key_type=bytes, value_type=bytes),
        model_topic=app.topic(settings.model_topic, key_type=bytes, value_type=bytes),
    )
    register_agents(segmentation)
    register_views(segmentation)
    return segmentation
