"""The model manifest: everything a worker needs to score, as plain JSON (never a pickle)."""

from __future__ import annotations

import hashlib
import hmac
import math
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.errors import ManifestError
from schemas.features import KNOWN_FEATURES, Feature

__all__ = [
    "KNOWN_FEATURES",
    "BadRowSummary",
    "KScore",
    "KSelection",
    "ModelManifest",
    "ScalerParams",
    "SegmentProfile",
    "Stability",
]


class ScalerParams(BaseModel):
    """StandardScaler parameters: scaled = (raw - mean) / scale."""

    model_config = ConfigDict(frozen=True)

    mean: list[float]
    scale: list[float]


class SegmentProfile(BaseModel):
    """One named segment, aligned by position with the manifest's centroids."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", description="stable slug")
    name: str
    description: str
    action: str
    centroid: dict[str, float] = Field(description="centroid in raw units, by feature")
    size: int = Field(ge=0, description="training customers in the segment")
    distance_quantiles: dict[str, float] = Field(
        description="p50/p90/p99 of training customers' distance to the centroid (scaled)"
    )
    ranges: dict[str, list[float]] = Field(
        default_factory=dict,
        description="5th and 95th percentile of age and annual_income of the segment's customers",
    )
    gender_mix: dict[str, float] = Field(
        default_factory=dict, description="share of the segment's customers by gender"
    )


class BadRowSummary(BaseModel):
    """Rows excluded from training, by reason, with a few example row numbers."""

    model_config = ConfigDict(frozen=True)

    total_rows: int
    used_rows: int
    excluded: dict[str, int] = Field(default_factory=dict)
    examples: dict[str, list[int]] = Field(default_factory=dict)


class KScore(BaseModel):
    """How well k clusters fit: within-cluster sum of squares and mean silhouette."""

    model_config = ConfigDict(frozen=True)

    k: int = Field(ge=1)
    inertia: float = Field(description="within-cluster sum of squares on the evaluation sample")
    silhouette: float | None = Field(description="mean silhouette on the evaluation sample")


class KSelection(BaseModel):
    """The elbow and silhouette curves behind the number of segments, and how k was chosen."""

    model_config = ConfigDict(frozen=True)

    mode: Literal["auto", "fixed"]
    chosen_k: int = Field(ge=1)
    elbow_k: int | None = None
    rule: str
    sample_rows: int = Field(ge=0, description="customers the curves were computed on")
    scores: list[KScore] = Field(default_factory=list)


class Stability(BaseModel):
    """Share of customers keeping their segment id when the model is retrained on resamples."""

    model_config = ConfigDict(frozen=True)

    resamples: int = Field(ge=1)
    sample_rows: int = Field(ge=1, description="customers compared (and resample size)")
    mean_agreement: float = Field(ge=0, le=1)
    min_agreement: float = Field(ge=0, le=1)
    agreements: list[float] = Field(default_factory=list)


class ModelManifest(BaseModel):
    """A trained segmentation model, loadable without unpickling anything."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = 1
    name: str = Field(default="customer-segments", min_length=1)
    version: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    created_at: datetime
    features: list[Feature] = Field(min_length=1)
    scaler: ScalerParams
    centroids: list[list[float]] = Field(min_length=1, description="in scaled units")
    segments: list[SegmentProfile]
    metrics: dict[str, float] = Field(default_factory=dict)
    bad_rows: BadRowSummary
    training_data_fingerprint: str
    library_versions: dict[str, str] = Field(default_factory=dict)
    random_state: int
    column_mapping: dict[str, str] = Field(
        default_factory=dict, description="training table column used for each input"
    )
    income_unit: Literal["dollars", "thousands"] | None = Field(
        default=None, description="unit of the training table's income column"
    )
    k_selection: KSelection | None = None
    stability: Stability | None = None
    previous_version: str | None = Field(
        default=None, description="model whose segment ids this one inherited"
    )
    signature: str | None = Field(default=None, description="HMAC-SHA256 of the unsigned body")

    @model_validator(mode="after")
    def _shapes_agree(self) -> ModelManifest:
        n_features = len(self.features)
        if len(set(self.features)) != n_features:
            raise ValueError("features must be distinct")
        if len(self.scaler.mean) != n_features or len(self.scaler.scale) != n_features:
            raise ValueError("scaler mean/scale length must equal the number of features")
        if any(len(row) != n_features for row in self.centroids):
            raise ValueError("every centroid must have one value per feature")
        if len(self.segments) != len(self.centroids):
            raise ValueError("there must be one segment per centroid")
        if len({segment.id for segment in self.segments}) != len(self.segments):
            raise ValueError("segment ids must be distinct")
        numbers = [*self.scaler.mean, *self.scaler.scale, *(v for c in self.centroids for v in c)]
        if not all(math.isfinite(v) for v in numbers):
            raise ValueError("scaler and centroids must be finite numbers")
        if any(v <= 0 for v in self.scaler.scale):
            raise ValueError("scaler scale must be positive")
        return self

    def signing_payload(self) -> bytes:
        """Canonical bytes the signature covers: the manifest without its signature."""
        return self.model_copy(update={"signature": None}).model_dump_json().encode()

    def signed(self, key: bytes) -> ModelManifest:
        """Return a copy carrying an HMAC-SHA256 signature made with key."""
        digest = hmac.new(key, self.signing_payload(), hashlib.sha256).hexdigest()
        return self.model_copy(update={"signature": digest})

    def verify(self, key: bytes) -> None:
        """Raise ManifestError unless the signature was made with key."""
        if self.signature is None:
            raise ManifestError(f"manifest {self.version} is not signed")
        expected = hmac.new(key, self.signing_payload(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, self.signature):
            raise ManifestError(f"manifest {self.version} has a wrong signature")
