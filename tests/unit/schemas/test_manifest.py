"""ModelManifest consistency checks and signatures."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from schemas import ManifestError, ModelManifest


def _body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "version": "v1",
        "created_at": datetime(2026, 1, 1, tzinfo=UTC).isoformat(),
        "features": ["age", "annual_income"],
        "scaler": {"mean": [40.0, 60_000.0], "scale": [12.0, 25_000.0]},
        "centroids": [[-1.0, 0.0], [1.0, 1.0]],
        "segments": [
            {
                "id": f"s-{i}",
                "name": f"S{i}",
                "description": "d",
                "action": "a",
                "centroid": {"age": 1.0, "annual_income": 1.0},
                "size": 1,
                "distance_quantiles": {"p99": 1.0},
            }
            for i in range(2)
        ],
        "bad_rows": {"total_rows": 2, "used_rows": 2},
        "training_data_fingerprint": "sha256:x",
        "random_state": 0,
    }
    body.update(changes)
    return body


def test_a_consistent_manifest_validates() -> None:
    manifest = ModelManifest.model_validate(_body())
    assert manifest.features == ["age", "annual_income"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"features": ["age", "shoe_size"]}, "literal"),
        ({"scaler": {"mean": [1.0], "scale": [1.0, 1.0]}}, "scaler mean/scale length"),
        ({"scaler": {"mean": [1.0, 1.0], "scale": [0.0, 1.0]}}, "positive"),
        ({"centroids": [[1.0, 0.0, 3.0], [1.0, 1.0]]}, "one value per feature"),
        ({"centroids": [[float("nan"), 0.0], [1.0, 1.0]]}, "finite"),
        ({"centroids": [[1.0, 0.0]]}, "one segment per centroid"),
    ],
)
def test_inconsistent_manifests_are_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ModelManifest.model_validate(_body(**changes))


def test_signatures_verify_only_with_the_same_key_and_body() -> None:
    manifest = ModelManifest.model_validate(_body()).signed(b"secret")
    manifest.verify(b"secret")
    with pytest.raises(ManifestError, match="wrong signature"):
        manifest.verify(b"other")
    tampered = manifest.model_copy(update={"version": "v2"})
    with pytest.raises(ManifestError, match="wrong signature"):
        tampered.verify(b"secret")
    with pytest.raises(ManifestError, match="not signed"):
        ModelManifest.model_validate(_body()).verify(b"secret")
