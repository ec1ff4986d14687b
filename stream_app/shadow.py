"""Shadow scoring: how a candidate model would segment the same events as the live one."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from schemas import CustomerSignup, InvalidEventError
from stream_app.decoding import decode_signup
from stream_app.pipeline import SourceRecord
from stream_app.scorer import Scorer, feature_matrix

__all__ = ["compare"]


def compare(
    records: Sequence[SourceRecord], live: Scorer, candidate: Scorer, max_event_bytes: int
) -> tuple[int, Counter[str]]:
    """Events compared, and counts per `live-segment->candidate-segment` pair that differ.

    Invalid records are skipped: they are dead-lettered whatever the model.
    """
    signups: list[CustomerSignup] = []
    for record in records:
        try:
            signups.append(decode_signup(record.key, record.value, max_event_bytes))
        except InvalidEventError:
            continue
    if not signups:
        return 0, Counter()
    live_labels = live.score(feature_matrix(signups, live.manifest.features)).labels
    candidate_labels = candidate.score(feature_matrix(signups, candidate.manifest.features)).labels
    live_ids = [s.id for s in live.manifest.segments]
    candidate_ids = [s.id for s in candidate.manifest.segments]
    pairs: Counter[str] = Counter()
    for live_label, candidate_label in zip(
        live_labels.tolist(), candidate_labels.tolist(), strict=True
    ):
        live_id, candidate_id = live_ids[live_label], candidate_ids[candidate_label]
        if live_id != candidate_id:
            pairs[f"{live_id}->{candidate_id}"] += 1
    return len(signups), pairs
