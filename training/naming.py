"""Name clusters after the profile catalogue, or after a previous model, by optimal assignment."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from scipy.optimize import linear_sum_assignment

from schemas import DataError, ModelManifest, SegmentProfile

__all__ = [
    "MAX_MATCH_DISTANCE",
    "Profile",
    "SegmentName",
    "female_share",
    "follow_previous",
    "load_catalogue",
    "name_segments",
]

#: Beyond this distance (in population standard deviations) a profile or a previous segment is
#: too far from a cluster to lend it its identity; the cluster is named afresh instead.
MAX_MATCH_DISTANCE = 1.6

FloatArray = npt.NDArray[np.float64]


def female_share(value: float) -> str:
    """A centroid's gender_female coordinate as people read it: `52% female`.

    The coordinate is a share of the cluster's customers, but comes back from the scaler as
    a float that can sit a hair below 0 or above 1, which must not read `-0% female`.
    """
    return f"{round(min(max(value, 0.0), 1.0) * 100):d}% female"


def money(value: float) -> str:
    """An amount as people skim it in a table: `$52k`."""
    return f"${value / 1000:,.0f}k"


def centroid_text(segment: SegmentProfile) -> str:
    """A segment's centroid in raw units, as the report and the terminal show it."""
    parts = []
    for feature, value in segment.centroid.items():
        if feature == "age":
            parts.append(f"{value:.0f} years")
        elif feature == "annual_income":
            parts.append(money(value))
        else:
            parts.append(female_share(value))
    return ", ".join(parts)


class Profile(BaseModel):
    """A catalogue entry: a named customer profile and where it sits in the population."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")
    name: str
    description: str
    action: str
    position: dict[str, float] = Field(
        min_length=1, description="standard deviations from the population mean, by feature"
    )


class _Catalogue(BaseModel):
    profiles: list[Profile] = Field(min_length=1)


@dataclass(frozen=True)
class SegmentName:
    """The identity given to one cluster."""

    id: str
    name: str
    description: str
    action: str


def load_catalogue(path: Path | None = None) -> list[Profile]:
    """Load a profile catalogue (YAML or JSON); the seed's four profiles by default."""
    if path is None:
        text = resources.files("training").joinpath("profiles.yaml").read_text()
        where = "built-in profiles.yaml"
    else:
        try:
            text = path.read_text()
        except OSError as exc:
            raise DataError(f"cannot read profile catalogue {path}: {exc.strerror}") from None
        where = str(path)
    try:
        catalogue = _Catalogue.model_validate(yaml.safe_load(text))
    except (yaml.YAMLError, ValidationError) as exc:
        first = " ".join(str(exc).split())[:200]
        raise DataError(f"profile catalogue {where} is not valid: {first}") from None
    ids = [p.id for p in catalogue.profiles]
    if len(set(ids)) != len(ids):
        raise DataError(f"profile catalogue {where} repeats an id")
    return catalogue.profiles


def _band(z: float, low: str, mid: str, high: str) -> str:
    if z < -0.5:
        return low
    if z > 0.5:
        return high
    return mid


def _describe(position: dict[str, float], female_share: float | None) -> tuple[str, str]:
    parts = []
    if "age" in position:
        parts.append(_band(position["age"], "younger", "middle-aged", "older"))
    if "annual_income" in position:
        parts.append(_band(position["annual_income"], "low", "moderate", "high") + " income")
    if female_share is not None and not 0.3 <= female_share <= 0.7:
        parts.append("mostly women" if female_share > 0.7 else "mostly men")
    name = ", ".join(parts) or "customers"
    return name, "-".join(name.replace(",", "").split())


def _assign(cost: FloatArray) -> dict[int, int]:
    """Rows to columns by minimum total cost, keeping only pairs within MAX_MATCH_DISTANCE."""
    if cost.size == 0:
        return {}
    rows, cols = linear_sum_assignment(cost)
    return {
        int(r): int(c)
        for r, c in zip(rows, cols, strict=True)
        if cost[r, c] <= MAX_MATCH_DISTANCE**2
    }


def name_segments(
    positions: list[dict[str, float]],
    catalogue: list[Profile],
    fixed: dict[int, SegmentName] | None = None,
    female_shares: list[float | None] | None = None,
) -> list[SegmentName]:
    """Give each cluster (its centroid in population standard units) a stable identity.

    Clusters in `fixed` keep the identity given there (see follow_previous). The others are
    matched to the remaining profiles by minimum total squared distance over the features
    both state (scipy's linear_sum_assignment); clusters left over get a generated name.
    """
    fixed = fixed or {}
    taken = {name.id for name in fixed.values()}
    open_clusters = [i for i in range(len(positions)) if i not in fixed]
    profiles = [p for p in catalogue if p.id not in taken]
    cost: FloatArray = np.zeros((len(open_clusters), len(profiles)))
    for row, cluster in enumerate(open_clusters):
        position = positions[cluster]
        for col, profile in enumerate(profiles):
            shared = [f for f in profile.position if f in position]
            # A profile that states none of the model's features cannot describe a cluster.
            cost[row, col] = (
                sum((position[f] - profile.position[f]) ** 2 for f in shared) if shared else np.inf
            )
    matched = {
        open_clusters[row]: profiles[col]
        for row, col in _assign(np.where(np.isfinite(cost), cost, 1e12)).items()
    }
    taken |= {p.id for p in matched.values()}
    names: list[SegmentName] = []
    for i, position in enumerate(positions):
        if i in fixed:
            names.append(fixed[i])
            continue
        if i in matched:
            p = matched[i]
            names.append(SegmentName(p.id, p.name, p.description, p.action))
            continue
        share = female_shares[i] if female_shares else None
        name, slug = _describe(position, share)
        unique, n = slug, 2
        while unique in taken:
            unique, n = f"{slug}-{n}", n + 1
        taken.add(unique)
        names.append(
            SegmentName(unique, name.capitalize(), f"Generated: {name}", "No action assigned yet.")
        )
    return names


def follow_previous(
    centroids: FloatArray,
    mean: FloatArray,
    scale: FloatArray,
    features: list[str],
    previous: ModelManifest,
) -> dict[int, SegmentName]:
    """Clusters that inherit a previous model's segment identity, matched by centroid distance.

    Both models' centroids are compared in raw units standardised with the new model's scaler
    (so one unit is one standard deviation of today's population) and paired by minimum total
    squared distance; a pair further apart than MAX_MATCH_DISTANCE is not the same segment.
    """
    if list(previous.features) != list(features):
        raise DataError(
            f"--previous model {previous.version} uses features {', '.join(previous.features)}; "
            f"this training uses {', '.join(features)}"
        )
    previous_raw = np.array(
        [[segment.centroid[f] for f in features] for segment in previous.segments]
    )
    previous_z = (previous_raw - mean) / scale
    cost = ((centroids[:, None, :] - previous_z[None, :, :]) ** 2).sum(axis=2)
    return {
        cluster: SegmentName(s.id, s.name, s.description, s.action)
        for cluster, index in _assign(cost).items()
        for s in [previous.segments[index]]
    }
