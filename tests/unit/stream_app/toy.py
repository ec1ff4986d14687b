"""A hand-made manifest for scorer and agent tests."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas import BadRowSummary, ModelManifest, ScalerParams, SegmentProfile


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
