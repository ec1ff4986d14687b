"""Choosing k: the elbow worked out by hand, the rule on given curves, and known groups."""

from __future__ import annotations

import numpy as np
import pytest

from schemas import DataError
from schemas.manifest import KScore
from training.selection import K_RANGE, choose_k, elbow_k, score_ks


def _scores(inertia: list[float], silhouette: list[float | None]) -> list[KScore]:
    return [
        KScore(k=k, inertia=i, silhouette=s)
        for k, i, s in zip(range(2, 2 + len(inertia)), inertia, silhouette, strict=True)
    ]


def test_the_elbow_is_the_point_farthest_below_the_chord() -> None:
    # k = 2..6, inertia 100, 40, 20, 10, 0. Normalised: x = 0, .25, .5, .75, 1 and
    # y = 1, .4, .2, .1, 0; below the chord 1 - x: 0, .35, .3, .15, 0. The elbow is k=3.
    assert elbow_k(_scores([100, 40, 20, 10, 0], [None] * 5)) == 3


def test_a_straight_inertia_line_has_its_elbow_at_the_smallest_k() -> None:
    # Every point lies on the chord (distance 0); the first maximum is k=2.
    assert elbow_k(_scores([40, 30, 20, 10, 0], [None] * 5)) == 2


@pytest.mark.parametrize(
    ("silhouette", "expected"),
    [
        # Best 0.60 at k=4; k=5 (0.59) is within 0.02; the elbow (k=3) is nearer to 4.
        ([0.40, 0.50, 0.60, 0.59, 0.30], 4),
        # Best 0.60 at k=6 but k=3 (0.59) is within 0.02 and is the elbow itself.
        ([0.40, 0.59, 0.50, 0.50, 0.60], 3),
        # Candidates 2 and 4 (0.60, 0.59) are both one step from the elbow: the smaller wins.
        ([0.60, 0.50, 0.59, 0.30, 0.20], 2),
    ],
)
def test_the_rule_keeps_near_best_silhouettes_then_goes_to_the_elbow(
    silhouette: list[float | None], expected: int
) -> None:
    selection = choose_k(_scores([100, 40, 20, 10, 0], silhouette), sample_rows=99)
    assert selection.elbow_k == 3
    assert selection.chosen_k == expected
    assert selection.mode == "auto"


def test_a_forced_k_is_recorded_beside_the_curves() -> None:
    scores = _scores([100, 40, 20, 10, 0], [0.4, 0.5, 0.6, 0.5, 0.3])
    selection = choose_k(scores, sample_rows=99, forced=7)
    assert (selection.mode, selection.chosen_k, selection.rule) == ("fixed", 7, "forced with --k 7")
    assert selection.scores == scores


def test_without_any_silhouette_auto_cannot_choose() -> None:
    with pytest.raises(DataError, match="too few distinct customers"):
        choose_k(_scores([1.0], [None]), sample_rows=1)


def _blobs(centres: list[tuple[float, float]], per_blob: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(c, 0.3, size=(per_blob, 2)) for c in centres])


@pytest.mark.parametrize(
    "centres",
    [
        [(0, 0), (5, 0), (0, 5)],
        [(0, 0), (6, 0), (0, 6), (6, 6), (3, 3)],
        [(0, 0), (4, 0), (8, 0), (0, 4), (4, 4), (8, 4), (0, 8)],
    ],
)
def test_auto_finds_the_number_of_well_separated_groups(
    centres: list[tuple[float, float]],
) -> None:
    points = _blobs(centres, per_blob=60, seed=4)
    scores = score_ks(points, K_RANGE, random_state=0)
    assert [s.k for s in scores] == list(K_RANGE)
    assert choose_k(scores, len(points)).chosen_k == len(centres)


def test_curves_stop_at_the_number_of_distinct_customers() -> None:
    points = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [5.0, 5.0]] * 3)
    scores = score_ks(points, K_RANGE, random_state=0)
    assert [s.k for s in scores] == [2, 3]
    # Three distinct points in three clusters: every inertia is 0.
    assert scores[-1].inertia == 0.0
