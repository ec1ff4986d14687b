"""Health, readiness and Prometheus views of a worker."""

from __future__ import annotations

from typing import TYPE_CHECKING

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stream_app.lookup import Lookup

if TYPE_CHECKING:
    from stream_app.app import SegmentationApp

__all__ = ["register_views"]


def _status(segmentation: SegmentationApp) -> dict[str, object]:
    """The model, the counters (from the metrics) and the data plane, for /health and /ready."""
    return {
        **segmentation.state.snapshot(),
        **segmentation.metrics.counts(),
        "data_plane": segmentation.plane.status.snapshot(),
    }


def register_views(segmentation: SegmentationApp) -> None:
    """Serve /health, /ready, /metrics and /customers/{id} on the worker's web port."""
    faust_app, state, metrics = segmentation.faust_app, segmentation.state, segmentation.metrics
    plane, settings = segmentation.plane, segmentation.settings

    @faust_app.page("/health")
    class Health(View):
        """Liveness: the process and its event loop answer."""

        async def get(self, request: Request) -> Response:
            return self.json({"status": "ok", **_status(segmentation)})

    @faust_app.page("/ready")
    class Ready(View):
        """Readiness: a model is live, the broker answers, and the backlog moves."""

        async def get(self, request: Request) -> Response:
            problem = (
                state.model_error or "no model loaded yet"
                if state.scorer is None
                else plane.status.problem(settings.stall_seconds)
            )
            body = {
                "ready": problem is None,
                "reason": problem,
                **_status(segmentation),
            }
            return self.json(body, status=200 if problem is None else 503)

    @faust_app.page("/metrics")
    class Metrics(View):
        """Prometheus metrics."""

        async def get(self, request: Request) -> Response:
            body = generate_latest(metrics.registry)
            return self.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])

    lookup = Lookup(settings, plane.audiences)

    @faust_app.page("/customers/{customer_id}")
    class Customer(View):
        """A customer's current segment, model version and since when; 404 when unknown."""

        async def get(self, request: Request, customer_id: str) -> Response:
            status, body = await lookup.find(customer_id, route=not request.query.get("local"))
            return self.json(body, status=status)
