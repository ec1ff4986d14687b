"""Fit the scaled K-Means pipeline and turn it into a named, versioned manifest."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version as package_version

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from schemas import DataError, ModelManifest, ScalerParams, SegmentProfile
from schemas.features import KNOWN_FEATURES, build_features
from training.data import CustomerTable
from training.naming import Profile, SegmentName, follow_previous, name_segments
from training.selection import K_RANGE, choose_k, score_ks
from training.stability import bootstrap_stability

__all__ = [
    "TrainedModel",
    "feature_frame",
    "fit_model",
    "parse_features",
]

_FEATURE_ALIASES = {"gender": "gender_female", "income": "annual_income"}
#: Up to this many rows K-Means runs with ten restarts on every row; above, the restarts run
#: on a sample of this size and Lloyd iterations from the best of them finish on every row.
FULL_FIT_ROWS = 200_000
#: The k curves and the stability figure are computed on at most this many customers.
EVALUATION_ROWS = 20_000
#: Customers kept beside the model (no ids) so `segstream report` can draw them.
PLOT_ROWS = 5_000
# Below this many rows a second thread costs more in synchronisation than it gains, and on a
# busy machine OpenMP's waiting threads make small fits many times slower.
_SINGLE_THREAD_ROWS = 50_000

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class TrainedModel:
    """The fitted scikit-learn Pipeline, the manifest a worker scores with, and plot rows."""

    pipeline: Pipeline
    manifest: ModelManifest
    plot_sample: pd.DataFrame


def parse_features(spec: str) -> list[str]:
    """Parse `age,annual_income,gender` into manifest feature names, in the order given."""
    features = []
    for part in spec.split(","):
        feature = _FEATURE_ALIASES.get(part.strip(), part.strip())
        if not feature:
            continue
        if feature not in KNOWN_FEATURES:
            raise DataError(
                f"unknown feature {part.strip()!r}; choose from {', '.join(KNOWN_FEATURES)}"
            )
        if feature not in features:
            features.append(feature)
    if not features:
        raise DataError("--features names no feature")
    return features


def feature_frame(frame: pd.DataFrame, features: list[str]) -> FloatArray:
    """Raw feature matrix in manifest order from a canonical customer frame."""
    return build_features(
        features,
        frame["age"].to_numpy(),
        frame["annual_income"].to_numpy(),
        lambda: frame["gender"].to_numpy(dtype=object),
    )


@contextmanager
def _threads_for(rows: int) -> Iterator[None]:
    if rows <= _SINGLE_THREAD_ROWS:
        with threadpool_limits(limits=1):
            yield
    else:
        yield


def _sample(rows: int, size: int, rng: np.random.Generator) -> npt.NDArray[np.intp]:
    if rows <= size:
        return np.arange(rows)
    return np.sort(rng.choice(rows, size=size, replace=False))


def _kmeans(scaled: FloatArray, k: int, random_state: int) -> KMeans:
    with _threads_for(min(len(scaled), FULL_FIT_ROWS)):
        if len(scaled) <= FULL_FIT_ROWS:
            return KMeans(n_clusters=k, n_init=10, random_state=random_state).fit(scaled)
        rng = np.random.default_rng(random_state)
        sample = scaled[_sample(len(scaled), FULL_FIT_ROWS, rng)]
        seeded = KMeans(n_clusters=k, n_init=10, random_state=random_state).fit(sample)
    with _threads_for(len(scaled)):
        # A few Lloyd passes over every row from the sample's centres: a K-Means solution of
        # the whole table at the cost of one restart instead of ten.
        return KMeans(
            n_clusters=k, init=seeded.cluster_centers_, n_init=1, random_state=random_state
        ).fit(scaled)


def _names(
    centroids: FloatArray,
    scaler: StandardScaler,
    features: list[str],
    catalogue: list[Profile],
    previous: ModelManifest | None,
) -> list[SegmentName]:
    positions = [dict(zip(features, map(float, c), strict=True)) for c in centroids]
    raw = scaler.inverse_transform(centroids)
    female = features.index("gender_female") if "gender_female" in features else None
    shares: list[float | None] = [None if female is None else float(c[female]) for c in raw]
    fixed = (
        follow_previous(centroids, scaler.mean_, scaler.scale_, features, previous)
        if previous is not None
        else None
    )
    return name_segments(positions, catalogue, fixed, shares)


def _retrainer(
    features: list[str], catalogue: list[Profile], previous: ModelManifest | None, k: int
) -> Callable[[FloatArray, int], Callable[[FloatArray], npt.NDArray[np.str_]]]:
    """What `segstream train` does with the same options, as a function of rows and a seed."""

    def retrain(rows: FloatArray, seed: int) -> Callable[[FloatArray], npt.NDArray[np.str_]]:
        scaler = StandardScaler().fit(rows)
        kmeans = _kmeans(scaler.transform(rows), k, seed)
        names = _names(kmeans.cluster_centers_, scaler, features, catalogue, previous)
        ids: npt.NDArray[np.str_] = np.array([n.id for n in names])

        def assign(points: FloatArray) -> npt.NDArray[np.str_]:
            with _threads_for(len(points)):
                labels: npt.NDArray[np.intp] = kmeans.predict(scaler.transform(points))
            return ids[labels]

        return assign

    return retrain


def _quantiles(distances: FloatArray) -> dict[str, float]:
    if distances.size == 0:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0}
    p50, p90, p99 = np.quantile(distances, [0.5, 0.9, 0.99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99)}


def _segment_stats(
    frame: pd.DataFrame, labels: npt.NDArray[np.int32], cluster: int
) -> tuple[dict[str, list[float]], dict[str, float]]:
    members = labels == cluster
    if not members.any():
        return {}, {}
    ranges = {
        column: [
            round(float(v), 2) for v in np.quantile(frame[column].to_numpy()[members], [0.05, 0.95])
        ]
        for column in ("age", "annual_income")
    }
    codes = frame["gender"].cat.codes.to_numpy()[members]
    counts = np.bincount(codes, minlength=len(frame["gender"].cat.categories))
    mix = {
        str(category): round(float(count) / members.sum(), 4)
        for category, count in zip(frame["gender"].cat.categories, counts, strict=True)
        if count
    }
    return ranges, mix


def fit_model(
    table: CustomerTable,
    k: int | None,
    features: list[str],
    catalogue: list[Profile],
    random_state: int = 0,
    name: str = "customer-segments",
    version: str | None = None,
    created_at: datetime | None = None,
    previous: ModelManifest | None = None,
    resamples: int = 10,
    on_step: Callable[[str], None] | None = None,
) -> TrainedModel:
    """Choose k (None: by the rule in training.selection), fit, name and measure stability."""
    step = on_step or (lambda _description: None)
    unknown = [f for f in features if f not in KNOWN_FEATURES]
    if unknown:
        raise DataError(f"unknown feature {unknown[0]!r}; choose from {', '.join(KNOWN_FEATURES)}")
    x = feature_frame(table.frame, features)
    if k is not None and len(x) < k:
        raise DataError(f"{len(x)} usable rows cannot make {k} segments")
    scaler = StandardScaler().fit(x)
    scaled = scaler.transform(x)
    rng = np.random.default_rng(random_state)
    evaluation = _sample(len(x), EVALUATION_ROWS, rng)

    step("choosing k")
    with _threads_for(len(evaluation)):
        scores = score_ks(scaled[evaluation], K_RANGE, random_state)
    selection = choose_k(scores, len(evaluation), forced=k)
    chosen = selection.chosen_k

    step(f"fitting K-Means with k={chosen}")
    kmeans = _kmeans(scaled, chosen, random_state)
    pipeline = Pipeline([("scale", scaler), ("kmeans", kmeans)])
    centroids = kmeans.cluster_centers_
    labels = kmeans.labels_
    names = _names(centroids, scaler, features, catalogue, previous)
    segment_ids = np.array([n.id for n in names])

    stability = None
    if resamples > 0:
        step(f"retraining on {resamples} bootstrap resamples")
        stability = bootstrap_stability(
            x[evaluation],
            segment_ids[labels[evaluation]],
            _retrainer(features, catalogue, previous, chosen),
            resamples,
            random_state,
        )

    step("describing segments")
    segments = _segments(table.frame, features, scaler, kmeans, names, scaled)
    created = created_at or datetime.now(UTC).replace(microsecond=0)
    metrics = {"inertia": float(kmeans.inertia_), "k": float(chosen), "rows": float(len(x))}
    rated = next((s.silhouette for s in selection.scores if s.k == chosen), None)
    if rated is not None:
        metrics["silhouette"] = rated
    if stability is not None:
        metrics["stability"] = stability.mean_agreement
    manifest = ModelManifest(
        name=name,
        version=version or _version(created, features, centroids, segments, table.fingerprint),
        created_at=created,
        features=features,
        scaler=ScalerParams(mean=scaler.mean_.tolist(), scale=scaler.scale_.tolist()),
        centroids=centroids.tolist(),
        segments=segments,
        metrics=metrics,
        bad_rows=table.bad_rows,
        training_data_fingerprint=table.fingerprint,
        library_versions={
            lib: package_version(lib) for lib in ("scikit-learn", "numpy", "pandas", "segstream")
        },
        random_state=random_state,
        column_mapping=table.mapping,
        income_unit=table.income_unit,
        k_selection=selection,
        stability=stability,
        previous_version=previous.version if previous is not None else None,
    )
    plot_rows = _sample(len(x), PLOT_ROWS, rng)
    plot_sample = table.frame.iloc[plot_rows].reset_index(drop=True)
    plot_sample = plot_sample.assign(
        gender=plot_sample["gender"].astype(str), segment=segment_ids[labels[plot_rows]]
    )
    return TrainedModel(pipeline=pipeline, manifest=manifest, plot_sample=plot_sample)


def _segments(
    frame: pd.DataFrame,
    features: list[str],
    scaler: StandardScaler,
    kmeans: KMeans,
    names: list[SegmentName],
    scaled: FloatArray,
) -> list[SegmentProfile]:
    centroids = kmeans.cluster_centers_
    labels = kmeans.labels_
    distances = np.sqrt(((scaled - centroids[labels]) ** 2).sum(axis=1))
    raw_centroids = scaler.inverse_transform(centroids)
    segments = []
    for i, n in enumerate(names):
        ranges, mix = _segment_stats(frame, labels, i)
        segments.append(
            SegmentProfile(
                id=n.id,
                name=n.name,
                description=n.description,
                action=n.action,
                centroid=dict(zip(features, map(float, raw_centroids[i]), strict=True)),
                size=int((labels == i).sum()),
                distance_quantiles=_quantiles(distances[labels == i]),
                ranges=ranges,
                gender_mix=mix,
            )
        )
    return segments


def _version(
    created: datetime,
    features: list[str],
    centroids: FloatArray,
    segments: list[SegmentProfile],
    fingerprint: str,
) -> str:
    """Training date plus a hash of what the model is, so equal models get equal hashes."""
    body = {
        "features": features,
        "centroids": centroids.tolist(),
        "segments": [s.id for s in segments],
        "data": fingerprint,
    }
    content_hash = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return f"{created:%Y%m%d}-{content_hash[:8]}"
