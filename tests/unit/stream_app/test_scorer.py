"""The pure scorer: hand-worked toy cases and bit-for-bit parity with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from schemas import ModelManifest
from stream_app.scorer import Scorer
from tests.unit.stream_app.toy import toy_manifest as _manifest


@pytest.mark.parametrize(
    ("age", "income", "label", "distance"),
    [
        # mean (40, 50,000), scale (10, 10,000): (50, 60,000) scales to (1, 1), centroid 1 exactly.
        (50.0, 60_000.0, 1, 0.0),
        # (40, 50,000) scales to (0, 0): distance 1 to centroid 0 at (-1, 0), sqrt(2) to (1, 1).
        (40.0, 50_000.0, 0, 1.0),
        # (20, 50,000) scales to (-2, 0): 1 from centroid 0; from (1, 1) it is sqrt(10).
        (20.0, 50_000.0, 0, 1.0),
        # (70, 90,000) scales to (3, 4): from (1, 1) sqrt(4 + 9) = sqrt(13).
        (70.0, 90_000.0, 1, 13**0.5),
    ],
)
def test_toy_points_go_to_the_centroid_worked_out_by_hand(
    age: float, income: float, label: int, distance: float
) -> None:
    scorer = Scorer(_manifest([40.0, 50_000.0], [10.0, 10_000.0], [[-1.0, 0.0], [1.0, 1.0]]))
    scored = scorer.score(np.array([[age, income]]))
    assert scored.labels.tolist() == [label]
    assert scored.distances[0] == pytest.approx(distance)
    assert scored.outliers[0] == (distance > 1.0)


def test_labels_match_the_scikit_learn_pipeline_on_100k_points_with_boundaries() -> None:
    rng = np.random.default_rng(3)
    train = np.column_stack([rng.uniform(18, 70, 2_000), rng.uniform(15_000, 140_000, 2_000)])
    pipeline = Pipeline(
        [("scale", StandardScaler()), ("kmeans", KMeans(n_clusters=4, n_init=4, random_state=0))]
    ).fit(train)
    scaler, kmeans = pipeline.named_steps["scale"], pipeline.named_steps["kmeans"]
    centroids = kmeans.cluster_centers_
    manifest = _manifest(scaler.mean_.tolist(), scaler.scale_.tolist(), centroids.tolist())
    # Round-trip through JSON, as a worker receives it.
    scorer = Scorer(ModelManifest.model_validate_json(manifest.model_dump_json()))

    random_points = np.column_stack([rng.uniform(0, 120, 50_000), rng.uniform(0, 250_000, 50_000)])
    # Points on and a hair either side of each perpendicular bisector between two centroids.
    boundary = []
    for i in range(4):
        for j in range(i + 1, 4):
            midpoint = (centroids[i] + centroids[j]) / 2
            normal = centroids[j] - centroids[i]
            along = np.array([-normal[1], normal[0]]) / np.linalg.norm(normal)
            t = rng.uniform(-3, 3, 8_334 // 3 + 1)
            for nudge in (0.0, 1e-12, -1e-12):
                scaled = midpoint + t[:, None] * along + nudge * normal
                boundary.append(scaler.inverse_transform(scaled))
    points = np.vstack([random_points, *boundary])[:100_000]
    assert len(points) == 100_000

    expected = pipeline.predict(points)
    got = scorer.score(points).labels
    differing = np.flatnonzero(expected != got)
    assert differing.size == 0, f"{differing.size} labels differ, e.g. {points[differing[:3]]}"
