"""Fit the scaled K-Means pipeline and turn it into a named, versioned manifest."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from schemas import DataError, ModelManifest, ScalerParams, SegmentProfile
from training.data import CustomerTable
from training.naming import Profile, name_segments

__all__ = ["FEATURE_CHOICES", "TrainedModel", "feature_frame", "fit_model", "save_model"]

FEATURE_CHOICES = ("age", "annual_income", "gender_female")


@dataclass(frozen=True)
class TrainedModel:
    """The fitted scikit-learn Pipeline and the manifest a worker scores with."""

    pipeline: Pipeline
    manifest: ModelManifest


def feature_frame(frame: pd.DataFrame, features: list[str]) -> np.ndarray:
    """Raw feature matrix in manifest order from a canonical customer frame."""
    columns = []
    for feature in features:
        if feature == "gender_female":
            columns.append((frame["gender"] == "female").to_numpy(dtype=np.float64))
        else:
            columns.append(frame[feature].to_numpy(dtype=np.float64))
    return np.column_stack(columns)


def _quantiles(distances: np.ndarray) -> dict[str, float]:
    if distances.size == 0:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0}
    p50, p90, p99 = np.quantile(distances, [0.5, 0.9, 0.99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99)}


def fit_model(
    table: CustomerTable,
    k: int,
    features: list[str],
    catalogue: list[Profile],
    random_state: int = 0,
    name: str = "customer-segments",
    version: str | None = None,
    created_at: datetime | None = None,
) -> TrainedModel:
    """Fit StandardScaler + KMeans on the table and name every cluster."""
    unknown = [f for f in features if f not in FEATURE_CHOICES]
    if unknown:
        raise DataError(f"unknown feature {unknown[0]!r}; choose from {', '.join(FEATURE_CHOICES)}")
    if len(table.frame) < k:
        raise DataError(f"{len(table.frame)} usable rows cannot make {k} segments")
    x = feature_frame(table.frame, features)
    pipeline = Pipeline(
        [
            ("scale", StandardScaler()),
            ("kmeans", KMeans(n_clusters=k, n_init=10, random_state=random_state)),
        ]
    )
    pipeline.fit(x)
    scaler: StandardScaler = pipeline.named_steps["scale"]
    kmeans: KMeans = pipeline.named_steps["kmeans"]
    centroids = kmeans.cluster_centers_
    labels = kmeans.labels_
    scaled = scaler.transform(x)
    distances = np.linalg.norm(scaled - centroids[labels], axis=1)
    positions = [dict(zip(features, map(float, c), strict=True)) for c in centroids]
    names = name_segments(positions, catalogue)
    raw_centroids = scaler.inverse_transform(centroids)
    segments = [
        SegmentProfile(
            id=n.id,
            name=n.name,
            description=n.description,
            action=n.action,
            centroid=dict(zip(features, map(float, raw_centroids[i]), strict=True)),
            size=int((labels == i).sum()),
            distance_quantiles=_quantiles(distances[labels == i]),
        )
        for i, n in enumerate(names)
    ]
    created = created_at or datetime.now(UTC).replace(microsecond=0)
    body = {
        "features": features,
        "centroids": centroids.tolist(),
        "segments": [s.id for s in segments],
        "data": table.fingerprint,
    }
    content_hash = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    manifest = ModelManifest(
        name=name,
        version=version or f"{created:%Y%m%d}-{content_hash[:8]}",
        created_at=created,
        features=features,
        scaler=ScalerParams(mean=scaler.mean_.tolist(), scale=scaler.scale_.tolist()),
        centroids=centroids.tolist(),
        segments=segments,
        metrics={"inertia": float(kmeans.inertia_), "k": float(k), "rows": float(len(x))},
        bad_rows=table.bad_rows,
        training_data_fingerprint=table.fingerprint,
        library_versions={
            lib: package_version(lib) for lib in ("scikit-learn", "numpy", "pandas", "segstream")
        },
        random_state=random_state,
    )
    return TrainedModel(pipeline=pipeline, manifest=manifest)


def save_model(model: TrainedModel, models_root: Path) -> Path:
    """Write models_root/<version>/{model.joblib, manifest.json} and point LATEST at it."""
    directory = models_root / model.manifest.version
    directory.mkdir(parents=True, exist_ok=True)
    joblib.dump(model.pipeline, directory / "model.joblib")
    (directory / "manifest.json").write_text(model.manifest.model_dump_json(indent=2) + "\n")
    (models_root / "LATEST").write_text(model.manifest.version + "\n")
    return directory
