"""Keep a worker's models in step with the model topic, falling back to a manifest file.

Each worker reads the compacted topic with its own group-less consumer assigned to the whole
topic from the beginning. Faust's GlobalTable would be the obvious tool, but it has open bugs
with several worker instances (faust-streaming#283) and its docstring warns of recovery loops.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_fixed

from schemas import SegstreamError
from schemas.model_files import load_manifest
from stream_app.kafka_io import read_to_end, started
from stream_app.metrics import WorkerMetrics
from stream_app.model_registry import (
    ModelRegistry,
    apply_record,
    audience_key,
    ensure_model_topic,
    refusals_key,
    shadow_key,
)
from stream_app.settings import Settings
from stream_app.state import WorkerState

__all__ = ["ModelFollower"]

log = logging.getLogger(__name__)

_POLL_MS = 250
_FILE_RETRY_SECONDS = 2.0
_SHADOW_REPORT_SECONDS = 1.0
_RESTART_SECONDS = 2.0

SendRecord = Callable[[bytes, bytes], Awaitable[None]]
#: The worker's audience report (re-segmentation progress), or None without customer state.
AudienceReport = Callable[[], dict[str, Any] | None]


def _log_restart(retry_state: RetryCallState) -> None:
    outcome = retry_state.outcome
    error = outcome.exception() if outcome is not None else None
    log.warning("segstream: model follower restarting after: %r", error)


class ModelFollower:
    """Applies what the model topic says to a WorkerState, for as long as the worker runs."""

    def __init__(
        self,
        settings: Settings,
        state: WorkerState,
        metrics: WorkerMetrics,
        send: SendRecord,
        audience: AudienceReport | None = None,
    ) -> None:
        self.settings = settings
        self.state = state
        self.metrics = metrics
        self.send = send
        self.audience = audience
        self._last_audience_report: str | None = None
        self.worker_name = f"{socket.gethostname()}-{os.getpid()}-{settings.web_port}"
        self._registry = ModelRegistry(name=settings.model_name)
        # Versions already logged and counted as refused: kept across restarts of the reader,
        # which reads the whole topic again, and across the several records (live, archive)
        # that carry one version.
        self._refusals_logged: set[str] = set()
        self._last_refusal_report: str | None = None
        self._next_file_try = 0.0
        self._last_shadow_report: str | None = None
        self._last_shadow_time = 0.0

    async def run(self) -> None:
        """Follow the topic forever; a broken connection is retried, never fatal."""
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(Exception),
            wait=wait_fixed(_RESTART_SECONDS),
            before_sleep=_log_restart,
        ):
            with attempt:
                await self._follow()

    async def _follow(self) -> None:
        settings = self.settings
        await ensure_model_topic(settings)
        consumer = AIOKafkaConsumer(
            **settings.kafka_client_options(), group_id=None, enable_auto_commit=False
        )
        async with started(consumer, settings):
            partition = TopicPartition(settings.model_topic, 0)
            consumer.assign([partition])
            await consumer.seek_to_beginning(partition)
            self._registry = ModelRegistry(name=settings.model_name)
            # Apply only once the topic's past is read, so a worker never goes live with a
            # version that a later record on the topic already replaced.
            async for message in read_to_end(settings, consumer, [partition], _POLL_MS):
                self._apply(message.key, message.value)
            while True:
                self._count_refusals()
                self._sync()
                await self._report_refusals()
                await self._report_shadow()
                await self._report_audience()
                batches = await consumer.getmany(partition, timeout_ms=_POLL_MS)
                for messages in batches.values():
                    for message in messages:
                        self._apply(message.key, message.value)

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        apply_record(self._registry, key, value, self.settings.model_signing_key)

    def _count_refusals(self) -> None:
        """Log, count and note each refused version once, however often it is read."""
        for version, reason in self._registry.refused.values():
            if version in self._refusals_logged:
                continue
            self._refusals_logged.add(version)
            log.error("segstream: refused model version %s: %s", version, reason)
            self.state.refuse(reason)
            self.metrics.models_refused.inc()

    async def _report_refusals(self) -> None:
        """Tell `segstream models` which versions this worker refuses, when that changes."""
        body = json.dumps(
            {"worker": self.worker_name, "refused": self._registry.refusals()}, sort_keys=True
        )
        if body == self._last_refusal_report:
            return
        if self._last_refusal_report is None and not self._registry.refused:
            self._last_refusal_report = body
            return  # nothing refused and nothing reported before: no record needed
        await self.send(refusals_key(self.settings.model_name, self.worker_name), body.encode())
        self._last_refusal_report = body

    def _sync(self) -> None:
        registry = self._registry
        if registry.live is not None and self.state.make_live(registry.live, source="topic"):
            self._announce("live", registry.live.version)
        if registry.live is None and self.state.scorer is None:
            self._load_file()
        candidate = registry.candidate
        live = self.state.scorer
        if candidate is not None and live is not None and candidate == live.manifest:
            candidate = None
        if self.state.set_candidate(candidate):
            self._announce("candidate", candidate.version if candidate else "none")

    def _announce(self, role: str, version: str) -> None:
        log.info("segstream: model %s %s is now %s", self.settings.model_name, version, role)
        if role == "live":
            self.metrics.model.info({"version": version, "name": self.settings.model_name})
            self.metrics.ready.set(1)

    def _load_file(self) -> None:
        path = self.settings.model_path
        if path is None:
            self.state.model_error = (
                f"no model on {self.settings.model_topic} and SEGSTREAM_MODEL_PATH is not set"
            )
            return
        if time.monotonic() < self._next_file_try:
            return
        self._next_file_try = time.monotonic() + _FILE_RETRY_SECONDS
        try:
            manifest = load_manifest(path, self.settings.model_signing_key)
        except SegstreamError as exc:
            if self.state.model_error != str(exc):
                log.warning("segstream: model not loaded, retrying: %s", exc)
            self.state.model_error = str(exc)
            return
        if self.state.make_live(manifest, source=f"file {path}"):
            self._announce("live", manifest.version)

    async def _report_audience(self) -> None:
        """Tell `segstream models` how far this worker's re-segmentation is."""
        report = self.audience() if self.audience is not None else None
        if report is None:
            return
        # Only when it changes: a record queued while the broker is down would hold up the
        # worker's stop, which flushes what is queued.
        body = json.dumps(report, sort_keys=True)
        if body == self._last_audience_report:
            return
        worker = str(report["worker"])
        stamped = json.dumps({**report, "reported_at": time.time()}, sort_keys=True)
        await self.send(audience_key(self.settings.model_name, worker), stamped.encode())
        self._last_audience_report = body

    async def _report_shadow(self) -> None:
        figures = self.state.shadow_figures()
        if figures is None:
            return
        body = json.dumps({**figures, "worker": self.worker_name}, sort_keys=True)
        now = time.monotonic()
        if (
            body == self._last_shadow_report
            or now - self._last_shadow_time < _SHADOW_REPORT_SECONDS
        ):
            return
        await self.send(shadow_key(self.settings.model_name, self.worker_name), body.encode())
        self._last_shadow_report, self._last_shadow_time = body, now
