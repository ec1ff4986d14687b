"""Pure nearest-centroid scoring from a manifest: numpy in, segment labels out.

No Kafka or Faust here: the worker, `segstream score` and the benchmarks all call this one
function, so the stream and offline scoring cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from schemas import CustomerSignup, ModelManifest
from schemas.features import build_features

__all__ = ["ScoredBatch", "Scorer", "feature_matrix"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]


def feature_matrix(signups: Sequence[CustomerSignup], features: Sequence[str]) -> FloatArray:
    """Raw feature matrix (rows: signups, columns: features in manifest order)."""
    return build_features(
        features,
        [s.age for s in signups],
        [s.annual_income for s in signups],
        lambda: [s.gender for s in signups],
    )


@dataclass(frozen=True)
class ScoredBatch:
    """Labels (index into the manifest's segments), distances and outlier flags of a batch."""

    labels: IntArray
    distances: FloatArray
    outliers: npt.NDArray[np.bool_]


class Scorer:
    """Nearest-centroid scorer built once per manifest; `score` is one vectorised pass."""

    def __init__(self, manifest: ModelManifest) -> None:
        self.manifest = manifest
        self.mean_ = np.asarray(manifest.scaler.mean, dtype=np.float64)
        self.scale_ = np.asarray(manifest.scaler.scale, dtype=np.float64)
        self.centroids_ = np.asarray(manifest.centroids, dtype=np.float64)
        self.centroids_t_ = np.ascontiguousarray(self.centroids_.T)
        self.centroid_sq_norms_ = np.einsum("ij,ij->i", self.centroids_, self.centroids_)
        self.outlier_thresholds_ = np.asarray(
            [s.distance_quantiles.get("p99", np.inf) for s in manifest.segments], dtype=np.float64
        )

    def score(self, features: FloatArray) -> ScoredBatch:
        """Assign each row of raw features to its nearest centroid in scaled space."""
        # Same arithmetic as StandardScaler.transform then KMeans.predict (which ranks
        # ||c||^2 - 2 x.c), so labels agree with the scikit-learn Pipeline bit for bit.
        scaled = (features - self.mean_) / self.scale_
        ranking = self.centroid_sq_norms_ - 2.0 * (scaled @ self.centroids_t_)
        labels = np.argmin(ranking, axis=1)
        row_sq_norms = np.einsum("ij,ij->i", scaled, scaled)
        best = np.take_along_axis(ranking, labels[:, None], axis=1)[:, 0]
        distances = np.sqrt(np.maximum(best + row_sq_norms, 0.0))
        return ScoredBatch(
            labels=labels,
            distances=distances,
            outliers=distances > self.outlier_thresholds_[labels],
        )
