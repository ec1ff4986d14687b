"""The Faust app: settings, the model topic, the data plane service, the follower and views."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.app.base import BootStrategy

from stream_app.dataplane import DataPlane, DataPlaneService
from stream_app.follower import ModelFollower
from stream_app.metrics import WorkerMetrics
from stream_app.settings import Settings
from stream_app.state import WorkerState
from stream_app.views import register_views

__all__ = ["SegmentationApp", "create_app"]


@dataclass
class SegmentationApp:
    """A Faust app wired for segmentation, with its data plane, live state and metrics."""

    faust_app: faust.App
    settings: Settings
    model_topic: Any
    plane: DataPlane
    state: WorkerState = field(default_factory=WorkerState)
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)


class _Throttled(logging.Filter):
    """Lets each distinct log message through once per interval.

    While a broker is down aiokafka (the model follower's client) logs the same connection
    error ten times a second; the worker's own readiness and metrics already say it.
    """

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self._last: dict[tuple[str, object], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.msg)
        now = time.monotonic()
        if now - self._last.get(key, -self.seconds) < self.seconds:
            return False
        self._last[key] = now
        return True


def _throttle_client_logs() -> None:
    # Filters apply where a record is logged, not where it propagates: name each module.
    for name in (
        "aiokafka",
        "aiokafka.conn",
        "aiokafka.cluster",
        "aiokafka.consumer.fetcher",
        "aiokafka.consumer.group_coordinator",
        "aiokafka.producer.sender",
    ):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Throttled) for f in logger.filters):
            logger.addFilter(_Throttled(30.0))


class _WithoutFaustConsumer(BootStrategy):
    """Faust's own consumer stays off: the data plane is the only one consuming signups."""

    enable_kafka_consumer = False


class _FaustAppWithoutConsumer(faust.App):
    BootStrategy = _WithoutFaustConsumer


def create_app(settings: Settings) -> SegmentationApp:
    """Build the Faust app for settings; nothing connects until it is started."""
    _throttle_client_logs()

    faust_app = _FaustAppWithoutConsumer(
        settings.app_id,
        broker=settings.broker_url,
        value_serializer="raw",
        key_serializer="raw",
        topic_disable_leader=True,
        topic_partitions=settings.topic_partitions,
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        datadir=str(settings.data_dir),
        producer_acks=-1,
        store="memory://",
        broker_session_timeout=settings.session_timeout_ms / 1000,
        broker_heartbeat_interval=settings.session_timeout_ms / 1000 / 5,
        # SSL and SASL exactly as the aiokafka clients get them from kafka_client_options().
        broker_credentials=settings.broker_credentials(),
        # Faust would let its own variables (WEB_PORT, BROKER_URL, APP_DATADIR, ...) override
        # everything above: segstream's settings are the only source.
        env={},
    )
    state, metrics = WorkerState(), WorkerMetrics()
    plane = DataPlane(settings, state, metrics)
    segmentation = SegmentationApp(
        faust_app=faust_app,
        settings=settings,
        model_topic=faust_app.topic(settings.model_topic, key_type=bytes, value_type=bytes),
        plane=plane,
        state=state,
        metrics=metrics,
    )
    # faust types app.service as taking a class; it starts instances just the same.
    plane_service = DataPlaneService(plane, loop=faust_app.loop, beacon=faust_app.beacon)
    faust_app.service(plane_service)  # type: ignore[arg-type]

    async def send_model_record(key: bytes, value: bytes) -> None:
        await segmentation.model_topic.send(key=key, value=value)

    follower = ModelFollower(
        settings, state, metrics, send_model_record, audience=plane.audience_report
    )

    @faust_app.task  # type: ignore[untyped-decorator]  # faust's decorators are untyped
    async def follow_models() -> None:
        """Load the live model from the model topic (or the file fallback) and keep following."""
        await follower.run()

    register_views(segmentation)
    return segmentation
