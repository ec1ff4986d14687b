"""Naming clusters: toy positions worked out by hand, catalogues, and following a previous model."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from schemas import BadRowSummary, DataError, ModelManifest, ScalerParams, SegmentProfile
from training.naming import Profile, follow_previous, load_catalogue, name_segments

SEED_IDS = ["traditional-seniors", "vip-luxury", "budget-conscious", "young-professionals"]


def _at(age: float, income: float) -> dict[str, float]:
    return {"age": age, "annual_income": income}


def test_the_built_in_catalogue_holds_the_seeds_four_profiles() -> None:
    catalogue = load_catalogue()
    assert [p.id for p in catalogue] == SEED_IDS
    assert [p.name for p in catalogue] == [
        "Traditional Seniors",
        "VIP / Luxury",
        "Budget-Conscious",
        "Young Professionals",
    ]
    assert all(p.action and {"age", "annual_income"} <= p.position.keys() for p in catalogue)


def test_clusters_get_the_profile_they_sit_on_whatever_their_order() -> None:
    # The catalogue positions themselves, shuffled: each cost is 0 on the diagonal.
    positions = [_at(-1.0, 0.3), _at(0.0, -1.3), _at(1.3, -0.1), _at(-0.1, 1.4)]
    names = name_segments(positions, load_catalogue())
    assert [n.id for n in names] == [
        "young-professionals",
        "budget-conscious",
        "traditional-seniors",
        "vip-luxury",
    ]
    assert names[3].action == "Premium services and exclusive luxury goods."


def test_the_assignment_minimises_the_total_not_each_cluster_greedily() -> None:
    catalogue = [
        Profile(id="a", name="A", description="", action="", position=_at(0.0, 0.0)),
        Profile(id="b", name="B", description="", action="", position=_at(1.0, 0.0)),
    ]
    # Squared distances: cluster 0 (age 0.6) is 0.36 from A and 0.16 from B; cluster 1 (age
    # 1.5) is 2.25 from A and 0.25 from B. Greedy, cluster 0 would take its nearest, B, and
    # leave A to cluster 1: total 2.41. The optimal pairing is 0->A, 1->B: 0.36 + 0.25 = 0.61.
    names = name_segments([_at(0.6, 0.0), _at(1.5, 0.0)], catalogue)
    assert [n.id for n in names] == ["a", "b"]


def test_clusters_beyond_the_catalogue_get_descriptive_names() -> None:
    catalogue = load_catalogue()
    positions = [
        _at(1.3, -0.1),
        _at(-0.1, 1.4),
        _at(0.0, -1.3),
        _at(-1.0, 0.3),
        _at(1.2, 1.5),  # older, high income: every profile is already taken
        _at(1.4, 1.7),  # the same description again
    ]
    names = name_segments(positions, catalogue)
    assert [n.id for n in names[:4]] == SEED_IDS
    assert (names[4].id, names[4].name) == ("older-high-income", "Older, high income")
    assert names[5].id == "older-high-income-2"
    assert names[4].action == "No action assigned yet."


def test_a_cluster_far_from_every_profile_is_not_forced_onto_one() -> None:
    # Squared distance to the nearest profile (VIP at -0.1, 1.4) is 0.01 + 2.56 = 2.57 > 1.6^2.
    names = name_segments([_at(0.0, 3.0)], load_catalogue())
    assert (names[0].id, names[0].name) == ("middle-aged-high-income", "Middle-aged, high income")


def test_generated_names_mention_a_lopsided_gender_mix() -> None:
    names = name_segments([_at(-2.0, -2.0)], load_catalogue(), female_shares=[0.9])
    assert names[0].id == "younger-low-income-mostly-women"


def test_features_a_profile_does_not_state_are_ignored() -> None:
    position = {**_at(0.0, -1.3), "gender_female": 2.0}
    assert name_segments([position], load_catalogue())[0].id == "budget-conscious"


def test_a_replacement_catalogue_can_be_json(tmp_path: Path) -> None:
    path = tmp_path / "profiles.json"
    path.write_text(
        json.dumps(
            {
                "profiles": [
                    {
                        "id": "students",
                        "name": "Students",
                        "description": "Young, little income",
                        "action": "Campus offers.",
                        "position": {"age": -1.5, "annual_income": -1.5},
                    }
                ]
            }
        )
    )
    names = name_segments([_at(-1.4, -1.2), _at(1.0, 1.0)], load_catalogue(path))
    assert [n.id for n in names] == ["students", "older-high-income"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("profiles: [", "is not valid"),
        ("profiles: []", "is not valid"),
        (
            "profiles:\n  - {id: Bad Id, name: x, description: x, action: x, position: {age: 0}}",
            "is not valid",
        ),
        (
            "profiles:\n"
            "  - {id: a, name: x, description: x, action: x, position: {age: 0}}\n"
            "  - {id: a, name: y, description: y, action: y, position: {age: 1}}",
            "repeats an id",
        ),
    ],
)
def test_broken_catalogues_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "profiles.yaml"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        load_catalogue(path)


def _previous(centroids: dict[str, tuple[float, float]]) -> ModelManifest:
    segments = [
        SegmentProfile(
            id=segment_id,
            name=segment_id.title(),
            description="from the previous model",
            action=f"act on {segment_id}",
            centroid=_at(*centroid),
            size=10,
            distance_quantiles={"p99": 1.0},
        )
        for segment_id, centroid in centroids.items()
    ]
    return ModelManifest(
        version="previous",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        features=["age", "annual_income"],
        scaler=ScalerParams(mean=[0.0, 0.0], scale=[1.0, 1.0]),
        centroids=[[0.0, 0.0]] * len(segments),
        segments=segments,
        bad_rows=BadRowSummary(total_rows=20, used_rows=20),
        training_data_fingerprint="sha256:x",
        random_state=0,
    )


def test_ids_follow_the_previous_models_centroids_when_the_catalogue_is_ambiguous() -> None:
    # Two profiles at the same place: the catalogue alone cannot tell the clusters apart.
    twins = [
        Profile(id=i, name=i, description="", action="", position=_at(0.0, 0.0))
        for i in ("north", "south")
    ]
    previous = _previous({"north": (40.0, 90_000.0), "south": (40.0, 30_000.0)})
    # New scaler: mean (40, 60,000), scale (10, 30,000). The new centroids, scaled, are
    # (0, -0.9) and (0, 1.1); the previous ones scale to (0, 1) and (0, -1). Pairing by
    # squared distance: 0 -> south (0.01), 1 -> north (0.01).
    mean, scale = np.array([40.0, 60_000.0]), np.array([10.0, 30_000.0])
    centroids = np.array([[0.0, -0.9], [0.0, 1.1]])
    fixed = follow_previous(centroids, mean, scale, ["age", "annual_income"], previous)
    names = name_segments([_at(0.0, -0.9), _at(0.0, 1.1)], twins, fixed)
    assert [n.id for n in names] == ["south", "north"]
    assert names[1].action == "act on north"


def test_a_new_cluster_far_from_every_previous_segment_is_named_afresh() -> None:
    previous = _previous({"vip-luxury": (40.0, 105_000.0)})
    mean, scale = np.array([40.0, 60_000.0]), np.array([10.0, 30_000.0])
    # Previous VIP scales to (0, 1.5); the new clusters sit at (0, 1.4) and (2, -2).
    centroids = np.array([[0.0, 1.4], [2.0, -2.0]])
    fixed = follow_previous(centroids, mean, scale, ["age", "annual_income"], previous)
    assert list(fixed) == [0]
    names = name_segments([_at(0.0, 1.4), _at(2.0, -2.0)], load_catalogue(), fixed)
    # VIP is taken by the inherited cluster, so the catalogue cannot hand it out twice.
    assert [n.id for n in names] == ["vip-luxury", "older-low-income"]


def test_a_previous_model_with_other_features_is_refused() -> None:
    previous = _previous({"a": (40.0, 1.0)})
    with pytest.raises(DataError, match="uses features age, annual_income"):
        follow_previous(np.zeros((1, 1)), np.zeros(1), np.ones(1), ["age"], previous)
