"""Stability: agreement counted by hand on toy retrains, and measured on the seed's population."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from training.data import CustomerTable
from training.fit import fit_model
from training.naming import load_catalogue
from training.stability import bootstrap_stability

ROWS = np.array([[20.0], [30.0], [40.0], [50.0]])
IDS = np.array(["young", "young", "old", "old"])


def test_agreement_is_the_share_of_rows_keeping_their_id() -> None:
    drawn: list[np.ndarray] = []

    def retrain(rows: np.ndarray, seed: int) -> Callable[[np.ndarray], np.ndarray]:
        drawn.append(rows)

        # Seeds run 1, 2, 3, 4 (random_state + 1 + resample): odd seeds call 40 "young", so
        # 3 of 4 rows agree; even seeds agree on all 4.
        def assign(points: np.ndarray) -> np.ndarray:
            cut = 45.0 if seed % 2 else 35.0
            return np.where(points[:, 0] < cut, "young", "old")

        return assign

    stability = bootstrap_stability(ROWS, IDS, retrain, resamples=4, random_state=0)
    assert stability.agreements == [0.75, 1.0, 0.75, 1.0]
    assert (stability.mean_agreement, stability.min_agreement) == (0.875, 0.75)
    assert (stability.resamples, stability.sample_rows) == (4, 4)
    # Each retrain saw a bootstrap resample: as many rows as the table, drawn from it.
    assert all(len(rows) == 4 and set(rows[:, 0]) <= set(ROWS[:, 0]) for rows in drawn)
    assert any(len(set(rows[:, 0])) < 4 for rows in drawn)


def test_on_resample_is_called_once_per_retrain() -> None:
    calls: list[int] = []
    bootstrap_stability(
        ROWS,
        IDS,
        lambda rows, seed: lambda points: IDS,
        resamples=3,
        random_state=0,
        on_resample=lambda: calls.append(1),
    )
    assert len(calls) == 3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_retrains_on_resamples_of_the_seeds_population_keep_95_percent_of_ids(
    seed_table: Callable[[int], CustomerTable], seed: int
) -> None:
    model = fit_model(seed_table(seed), 4, ["age", "annual_income"], load_catalogue())
    stability = model.manifest.stability
    assert stability is not None
    assert (stability.resamples, stability.sample_rows) == (10, 400)
    assert stability.mean_agreement >= 0.95
    assert model.manifest.metrics["stability"] == stability.mean_agreement
