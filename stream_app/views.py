"""Health, readiness and Prometheus views of a worker."""

from __future__ import annotations

from typing import TYPE_CHECKING

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from stream_app.app import SegmentationApp

__all__ = ["register_views"]


def register_views(segmentation: SegmentationApp) -> None:
    """Serve /health, /ready and /metrics on the worker's web port."""
    app, state, metrics = segmentation.app, segmentation.state, segmentation.metrics

    @app.page("/health")
    class Health(View):
        """Liveness: the process and its event loop answer."""

        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok", **state.snapshot()})

    @app.page("/ready")
    class Ready(View):
        """Readiness: a valid model is loaded and the consumer is running."""

        async def get(self, request: Request) -> Response:
            ready = state.scorer is not None and bool(app.consumer.started)
            body = {"ready": ready, **state.snapshot()}
            return self.json(body, status=200 if ready else 503)

    @app.page("/metrics")
    class Metrics(View):
        """Prometheus metrics."""

        async def get(self, request: Request) -> Response:
            body = generate_latest(metrics.registry)
            return self.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])
