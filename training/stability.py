"""Measure how many customers keep their segment id when the model is retrained on resamples."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from schemas.manifest import Stability

__all__ = ["Retrain", "bootstrap_stability"]

FloatArray = npt.NDArray[np.float64]
IdArray = npt.NDArray[np.str_]

#: Trains a model on raw feature rows with a seed; returns what assigns segment ids to rows.
Retrain = Callable[[FloatArray, int], Callable[[FloatArray], IdArray]]


def bootstrap_stability(
    rows: FloatArray,
    segment_ids: IdArray,
    retrain: Retrain,
    resamples: int,
    random_state: int,
    on_resample: Callable[[], None] | None = None,
) -> Stability:
    """Retrain on `resamples` bootstrap resamples of rows; compare every row's segment id.

    `segment_ids` are the rows' ids under the model being measured. Each retrain draws as many
    rows as there are, with replacement, and is seeded differently, as a real retrain would be.
    """
    rng = np.random.default_rng(random_state)
    agreements = []
    for resample in range(resamples):
        drawn = rng.integers(0, len(rows), size=len(rows))
        assign = retrain(rows[drawn], random_state + 1 + resample)
        agreements.append(float(np.mean(assign(rows) == segment_ids)))
        if on_resample is not None:
            on_resample()
    return Stability(
        resamples=resamples,
        sample_rows=len(rows),
        mean_agreement=float(np.mean(agreements)),
        min_agreement=float(np.min(agreements)),
        agreements=agreements,
    )
