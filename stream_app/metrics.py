"""Prometheus metrics of one worker, served at /metrics."""

from __future__ import annotations

import platform
from collections.abc import Iterator, Sequence
from importlib import metadata

import numpy as np
import numpy.typing as npt
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from stream_app.decoding import unrecognised_genders

__all__ = ["AudienceMetrics", "BulkHistogram", "WorkerMetrics", "metrics_table"]

# Every counter would also export a `_created` series (its start time): twice the series for
# nothing an alert or a dashboard here uses. Process-wide, like prometheus_client's setting.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client


_LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class BulkHistogram(Collector):
    """A Prometheus histogram fed a whole batch of observations at once.

    prometheus_client's Histogram takes one observation per call; the end-to-end latency of
    every event would cost a Python call per event on the hot path. This one bins a numpy
    array per batch and exposes the same text format.
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = np.asarray(buckets, dtype=np.float64)
        self.counts = np.zeros(len(buckets) + 1, dtype=np.int64)
        self.sum = 0.0

    def observe_many(self, values: npt.NDArray[np.float64]) -> None:
        """Add every value of the array."""
        if values.size:
            self.counts += np.bincount(
                np.searchsorted(self.bounds, values, side="left"), minlength=len(self.counts)
            )
            self.sum += float(values.sum())

    def collect(self) -> Iterator[Metric]:
        """The histogram's cumulative buckets, sum and count."""
        cumulative = np.cumsum(self.counts).tolist()
        labels = [repr(float(b)) for b in self.bounds] + ["+Inf"]
        yield HistogramMetricFamily(
            self.name,
            self.documentation,
            buckets=list(zip(labels, cumulative, strict=True)),
            sum_value=self.sum,
        )


def _version() -> str:
    try:
        return metadata.version("segstream")
    except metadata.PackageNotFoundError:
        return "unknown"


class _UnrecognisedGenderCollector(Collector):
    """Signups whose gender spelling was read as unknown, from the decoder's process tally."""

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "segstream_unrecognised_gender",
            "Signups whose gender spelling was not recognised and was read as unknown",
            value=unrecognised_genders().count,
        )


class AudienceMetrics:
    """The audience figures, in the worker's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.changes = Counter(
            "segstream_segment_changes",
            "SegmentChanged events committed, by reason",
            ["reason"],
            registry=registry,
        )
        self.stale_updates = Counter(
            "segstream_stale_updates",
            "Profile updates (and signups) older than the customer's state, ignored",
            registry=registry,
        )
        self.rescored = Counter(
            "segstream_customers_rescored",
            "Customers re-scored because a new model went live",
            registry=registry,
        )
        self.resegment_remaining = Gauge(
            "segstream_resegment_partitions_remaining",
            "Owned partitions whose customers are not all scored by the live model yet",
            registry=registry,
        )
        self.customers = Gauge(
            "segstream_customers_in_state",
            "Customers in the owned partitions' local stores (RocksDB's estimate)",
            registry=registry,
        )
        self.restore_seconds = Histogram(
            "segstream_state_restore_seconds",
            "Time to bring one partition's store up to date from the state topic",
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=registry,
        )
        self.restored = Counter(
            "segstream_state_restored_records",
            "State-topic records replayed into local stores",
            registry=registry,
        )


class WorkerMetrics:
    """The worker's counters in their own registry (several apps may share a process in tests)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.events = Counter(
            "segstream_events",
            "Input records handled, by outcome (assigned, dead_lettered, profile_update)",
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
        self.consumer_lag = Gauge(
            "segstream_consumer_lag",
            "Input records not yet committed, by partition this worker owns",
            ["topic", "partition"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "segstream_batch_size",
            "Input records per batch scored",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000),
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "segstream_batch_seconds",
            "Time to decode, score and produce one batch",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "segstream_commit_seconds",
            "Time to commit outputs and offsets (one transaction in exactly-once mode)",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.end_to_end = BulkHistogram(
            "segstream_end_to_end_seconds",
            "Input record timestamp to the commit of its output",
            _LATENCY_BUCKETS,
        )
        self.registry.register(self.end_to_end)
        self.kafka_errors = Counter(
            "segstream_kafka_errors",
            "Errors Kafka reported to the data plane, by librdkafka error name",
            ["error"],
            registry=self.registry,
        )
        self.aborts = Counter(
            "segstream_transaction_aborts",
            "Commits discarded (aborted transactions); their input is read again",
            registry=self.registry,
        )
        self.broker_up = Gauge(
            "segstream_broker_up",
            "1 while the data plane reaches at least one broker",
            registry=self.registry,
        )
        self.shadow_disagreements = Counter(
            "segstream_shadow_disagreements",
            "Events the candidate model would put in another segment, by segment pair",
            ["live", "candidate"],
            registry=self.registry,
        )
        self.build = Info(
            "segstream_build", "The running segstream release", registry=self.registry
        )
        self.build.info({"version": _version(), "python": platform.python_version()})
        # What the default registry would have given: process CPU, memory, open files and
        # start time, the Python version, and garbage collections.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.audiences = AudienceMetrics(self.registry)
        self.registry.register(_UnrecognisedGenderCollector())

    def counts(self) -> dict[str, object]:
        """The counters the status views show, as plain JSON-able values."""
        outcomes = _totals(self.events)
        assigned = outcomes.get("assigned", 0)
        dead_lettered = outcomes.get("dead_lettered", 0)
        updates = outcomes.get("profile_update", 0)
        return {
            "consumed": assigned + dead_lettered + updates,
            "assigned": assigned,
            "dead_lettered": dead_lettered,
            "profile_updates": updates,
            "models_refused": _total(self.models_refused),
            "segments": _totals(self.segments),
            "dead_letter_reasons": _totals(self.dead_letters),
        }


def _totals(counter: Counter) -> dict[str, int]:
    """A counter with one label: its total by label value."""
    return {
        next(iter(sample.labels.values())): int(sample.value)
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels
    }


def _total(counter: Counter) -> int:
    """A counter without labels: its total."""
    return sum(
        int(sample.value)
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


def _sample_name(metric: Metric) -> str:
    """The name a metric's samples carry (counters end in _total, infos in _info)."""
    suffix = {"counter": "_total", "info": "_info"}.get(metric.type, "")
    return metric.name + suffix


def metrics_table() -> str:
    """A Markdown table of every metric a worker serves at /metrics (for the README)."""
    metrics = WorkerMetrics()
    # An info metric's labels exist once it holds a value; the worker sets these two.
    metrics.model.info({"name": "", "version": ""})
    labels: dict[str, list[str]] = {}
    for value in [*vars(metrics).values(), *vars(metrics.audiences).values()]:
        # prometheus_client keeps a metric's label names only in this attribute.
        names = getattr(value, "_labelnames", None)
        if names is not None:
            labels[value._name] = list(names)
    rows = ["| metric | type | labels | meaning |", "| --- | --- | --- | --- |"]
    for metric in sorted(metrics.registry.collect(), key=lambda m: m.name):
        sample_labels = {
            name for sample in metric.samples for name in sample.labels if name != "le"
        }
        shown = sorted(set(labels.get(metric.name, [])) | sample_labels)
        meaning = " ".join(metric.documentation.split()).rstrip(".")
        rows.append(
            f"| `{_sample_name(metric)}` | {metric.type} | {', '.join(shown) or '-'} | {meaning} |"
        )
    return "\n".join(rows)
