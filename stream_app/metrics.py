"""Prometheus metrics of one worker, served at /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Info

__all__ = ["WorkerMetrics"]


class WorkerMetrics:
    """The worker's counters in their own registry (several apps may share a process in tests)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.events = Counter(
            "segstream_events",
            "Input records handled, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.segments = Counter(
            "segstream_assignments",
            "Assignments emitted, by segment",
            ["segment"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "segstream_dead_letters",
            "Dead letters, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.models_refused = Counter(
            "segstream_models_refused",
            "Manifests refused before going live",
            registry=self.registry,
        )
        self.model = Info("segstream_model", "The live model", registry=self.registry)
        self.ready = Gauge(
            "segstream_ready", "1 when a valid model is live", registry=self.registry
        )
        self.shadow_compared = Counter(
            "segstream_shadow_compared",
            "Events scored by both the live and the candidate model",
            registry=self.registry,
        )
        self.shadow_disagreements = Counter(
            "segstream_shadow_disagreements",
            "Events the candidate model would put in another segment, by segment pair",
            ["live", "candidate"],
            registry=self.registry,
        )
