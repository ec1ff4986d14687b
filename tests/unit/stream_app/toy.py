"""A hand-made manifest and scorer for scoring tests, and a stand-in for Faust's producer."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas import BadRowSummary, ModelManifest, ScalerParams, SegmentProfile
from stream_app.scorer import Scorer


def toy_manifest(
    mean: list[float], scale: list[float], centroids: list[list[float]]
) -> ModelManifest:
    """A two-feature manifest with the given scaler and centroids; segments segment-0..n."""
    segments = [
        SegmentProfile(
            id=f"segment-{i}",
            name=f"Segment {i}",
            description="toy",
            action="none",
            centroid={"age": c[0], "annual_income": c[1]},
            size=1,
            distance_quantiles={"p50": 0.5, "p90": 0.9, "p99": 1.0},
        )
        for i, c in enumerate(centroids)
    ]
    return ModelManifest(
        version="toy",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        features=["age", "annual_income"],
        scaler=ScalerParams(mean=mean, scale=scale),
        centroids=centroids,
        segments=segments,
        bad_rows=BadRowSummary(total_rows=1, used_rows=1),
        training_data_fingerprint="sha256:toy",
        random_state=0,
    )


def toy_scorer() -> Scorer:
    """Two segments of the toy manifest: mean age 40, income 50,000; centroids (-1, 0), (1, 1)."""
    return Scorer(toy_manifest([40.0, 50_000.0], [10.0, 10_000.0], [[-1.0, 0.0], [1.0, 1.0]]))


@dataclass(frozen=True)
class Sent:
    """One record the agent handed to Faust's producer."""

    key: bytes | None
    value: bytes | None
    headers: Any


def capture_sends(app: Any) -> defaultdict[str, list[Sent]]:
    """Replace app's producer send with one that records each record by topic, and succeeds."""
    sent: defaultdict[str, list[Sent]] = defaultdict(list)

    async def send(
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: Any,
        timestamp: Any,
        headers: Any,
        **_: Any,
    ) -> asyncio.Future[None]:
        sent[topic].append(Sent(key, value, headers))
        delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        delivered.set_result(None)
        return delivered

    app.producer.send = send
    return sent
