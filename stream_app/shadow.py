"""Shadow scoring: how a candidate model would segment the same events as the live one."""

from __future__ import annotations

from collections import Counter

from stream_app.pipeline import BatchOutcome
from stream_app.scorer import Scorer, feature_matrix

__all__ = ["compare"]


def compare(outcome: BatchOutcome, live: Scorer, candidate: Scorer) -> tuple[int, Counter[str]]:
    """Events compared, and counts per `live-segment->candidate-segment` pair that differ.

    Uses the batch's already decoded signups and live labels; invalid records are not in it,
    since they are dead-lettered whatever the model.
    """
    if not outcome.signups:
        return 0, Counter()
    candidate_labels = candidate.score(
        feature_matrix(outcome.signups, candidate.manifest.features)
    ).labels.tolist()
    live_ids = [s.id for s in live.manifest.segments]
    candidate_ids = [s.id for s in candidate.manifest.segments]
    pairs: Counter[str] = Counter()
    for live_label, candidate_label in zip(outcome.labels, candidate_labels, strict=True):
        live_id, candidate_id = live_ids[live_label], candidate_ids[candidate_label]
        if live_id != candidate_id:
            pairs[f"{live_id}->{candidate_id}"] += 1
    return len(outcome.signups), pairs
