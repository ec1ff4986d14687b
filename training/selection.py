"""Choose the number of segments from the elbow of the inertia curve and the silhouette."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from schemas import DataError
from schemas.manifest import KScore, KSelection

__all__ = [
    "K_RANGE",
    "RULE",
    "SILHOUETTE_ROWS",
    "SILHOUETTE_TOLERANCE",
    "choose_k",
    "elbow_k",
    "score_ks",
]

#: The k evaluated by `--k auto` (and drawn in the report for a forced k).
K_RANGE = range(2, 11)
#: Silhouettes within this much of the best count as equally good.
SILHOUETTE_TOLERANCE = 0.02
#: Silhouette costs O(n^2); it is computed on at most this many customers.
SILHOUETTE_ROWS = 4_000

RULE = (
    f"k in {K_RANGE.start}..{K_RANGE.stop - 1}: keep the k whose mean silhouette is within "
    f"{SILHOUETTE_TOLERANCE} of the best, then take the one nearest the elbow of the inertia "
    "curve (the k farthest below the straight line from the first to the last point of the "
    "normalised curve); ties go to the smaller k"
)

FloatArray = npt.NDArray[np.float64]


def score_ks(scaled: FloatArray, ks: range, random_state: int) -> list[KScore]:
    """Inertia and silhouette of K-Means for each k on an already sampled, scaled matrix."""
    rng = np.random.default_rng(random_state)
    rows = len(scaled)
    subset = (
        np.sort(rng.choice(rows, SILHOUETTE_ROWS, replace=False))
        if rows > SILHOUETTE_ROWS
        else np.arange(rows)
    )
    scores = []
    distinct = len(np.unique(scaled, axis=0))
    for k in ks:
        if k > distinct:
            break
        kmeans = KMeans(n_clusters=k, n_init=4, random_state=random_state).fit(scaled)
        labels = kmeans.labels_[subset]
        # Silhouette needs 2 <= labels <= n - 1 in the subset it is computed on.
        usable = 2 <= len(np.unique(labels)) <= len(subset) - 1
        silhouette = float(silhouette_score(scaled[subset], labels)) if usable else None
        scores.append(KScore(k=k, inertia=float(kmeans.inertia_), silhouette=silhouette))
    return scores


def elbow_k(scores: list[KScore]) -> int | None:
    """The k farthest below the chord of the normalised inertia curve (the "kneedle" elbow)."""
    if len(scores) < 3:
        return None
    ks = np.array([s.k for s in scores], dtype=np.float64)
    inertia = np.array([s.inertia for s in scores])
    drop = inertia[0] - inertia[-1]
    if drop <= 0:
        return None
    x = (ks - ks[0]) / (ks[-1] - ks[0])
    y = (inertia - inertia[-1]) / drop
    below_chord = (1.0 - x) - y
    return int(ks[int(np.argmax(below_chord))])


def choose_k(scores: list[KScore], sample_rows: int, forced: int | None = None) -> KSelection:
    """Apply RULE to the curves, or record a forced k next to them."""
    elbow = elbow_k(scores)
    if forced is not None:
        return KSelection(
            mode="fixed",
            chosen_k=forced,
            elbow_k=elbow,
            rule=f"forced with --k {forced}",
            sample_rows=sample_rows,
            scores=scores,
        )
    rated = [s for s in scores if s.silhouette is not None]
    if not rated:
        raise DataError("no k could be rated; the table has too few distinct customers")
    best = max(s.silhouette for s in rated if s.silhouette is not None)
    candidates = [
        s.k
        for s in rated
        if s.silhouette is not None and s.silhouette >= best - SILHOUETTE_TOLERANCE
    ]
    anchor = elbow if elbow is not None else min(candidates)
    chosen = min(candidates, key=lambda k: (abs(k - anchor), k))
    return KSelection(
        mode="auto",
        chosen_k=chosen,
        elbow_k=elbow,
        rule=RULE,
        sample_rows=sample_rows,
        scores=scores,
    )
