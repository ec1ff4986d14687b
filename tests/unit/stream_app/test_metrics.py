"""What /metrics serves beyond the worker's own counters: build info, process and platform
figures, unrecognised genders, and no `_created` series."""

from __future__ import annotations

import json

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stream_app.decoding import decode_signup
from stream_app.metrics import WorkerMetrics


def _samples(metrics: WorkerMetrics) -> dict[str, float]:
    text = generate_latest(metrics.registry).decode()
    return {
        sample.name + json.dumps(sample.labels, sort_keys=True): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_build_info_names_the_release() -> None:
    samples = _samples(WorkerMetrics())
    (build,) = [name for name in samples if name.startswith("segstream_build_info")]
    assert '"version": "0.' in build


def test_process_and_platform_figures_are_served() -> None:
    names = {name.split("{")[0] for name in _samples(WorkerMetrics())}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes", "python_info"} <= names
    assert "python_gc_collections_total" in names


def test_no_created_series_are_served() -> None:
    metrics = WorkerMetrics()
    metrics.events.labels("assigned").inc()
    text = generate_latest(metrics.registry).decode()
    assert "segstream_events_total" in text
    assert "_created" not in text


def test_unrecognised_genders_are_counted() -> None:
    metrics = WorkerMetrics()
    before = _samples(metrics)["segstream_unrecognised_gender_total{}"]
    body = {
        "event_id": "e-1",
        "customer_id": "c-1",
        "age": 30,
        "annual_income": 50_000,
        "gender": "martian",
        "signed_up_at": "2026-01-01T00:00:00Z",
    }
    decode_signup(None, json.dumps(body).encode(), 1_000)
    assert _samples(metrics)["segstream_unrecognised_gender_total{}"] == before + 1
