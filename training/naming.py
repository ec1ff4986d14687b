"""Name clusters after the profile catalogue by optimal assignment; describe the rest."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from scipy.optimize import linear_sum_assignment

from schemas import DataError

__all__ = ["Profile", "SegmentName", "load_catalogue", "name_segments"]

# Beyond this distance (in standard deviations) a profile is too far from a cluster to lend it
# its name, and the cluster gets a generated descriptive name instead.
_MAX_MATCH_DISTANCE = 1.6


class Profile(BaseModel):
    """A catalogue entry: a named customer profile and where it sits in the population."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")
    name: str
    description: str
    action: str
    position: dict[str, float]


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
        first = str(exc).splitlines()[0]
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


def _describe(position: dict[str, float]) -> tuple[str, str]:
    age = _band(position.get("age", 0.0), "younger", "middle-aged", "older")
    income = _band(position.get("annual_income", 0.0), "low", "moderate", "high")
    name = f"{age}, {income} income"
    return name, name.replace(", ", "-").replace(" ", "-")


def name_segments(positions: list[dict[str, float]], catalogue: list[Profile]) -> list[SegmentName]:
    """Give each cluster (its centroid in population standard units) a stable identity.

    Profiles are matched to clusters by minimum total squared distance over the features the
    profile states (scipy's linear_sum_assignment); unmatched clusters get a generated name.
    """
    cost: npt.NDArray[np.float64] = np.zeros((len(positions), len(catalogue)))
    for i, position in enumerate(positions):
        for j, profile in enumerate(catalogue):
            cost[i, j] = sum(
                (position.get(feature, 0.0) - target) ** 2
                for feature, target in profile.position.items()
            )
    rows, cols = linear_sum_assignment(cost)
    matched = {
        int(r): catalogue[int(c)]
        for r, c in zip(rows, cols, strict=True)
        if cost[r, c] <= _MAX_MATCH_DISTANCE**2
    }
    names: list[SegmentName] = []
    taken = {p.id for p in matched.values()}
    for i, position in enumerate(positions):
        if i in matched:
            p = matched[i]
            names.append(SegmentName(p.id, p.name, p.description, p.action))
            continue
        name, slug = _describe(position)
        unique, n = slug, 2
        while unique in taken:
            unique, n = f"{slug}-{n}", n + 1
        taken.add(unique)
        names.append(
            SegmentName(unique, name.capitalize(), f"Generated: {name}", "No action assigned yet.")
        )
    return names
