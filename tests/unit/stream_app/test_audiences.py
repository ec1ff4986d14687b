"""Customer state without a broker: transitions, staleness, commits, re-segmentation."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from schemas import CustomerSignup, CustomerState, ModelManifest, ProfileUpdate, SegmentChanged
from stream_app.audiences import Audiences, PartitionStore, StateOutcome, _iso, _Writer
from stream_app.metrics import WorkerMetrics
from stream_app.pipeline import SourceRecord, process_records
from stream_app.scorer import Scorer
from tests.unit.stream_app.fakes import no_end_offset, no_restore
from tests.unit.stream_app.toy import toy_manifest

# Scaled centroids: segment-0 at age 30 / income 50,000; segment-1 at age 50 / 60,000.
MANIFEST = toy_manifest([40.0, 50_000.0], [10.0, 10_000.0], [[-1.0, 0.0], [1.0, 1.0]])
# The same centroids swapped: every customer changes segment under it.
SWAPPED = MANIFEST.model_copy(update={"version": "swapped", "centroids": [[1.0, 1.0], [-1.0, 0.0]]})
YOUNG, OLD = (30.0, 50_000.0), (50.0, 60_000.0)


@pytest.fixture
def audiences(tmp_path: Path) -> Iterator[Audiences]:
    """Stores for partitions 0 and 1, empty (nothing to restore without a broker)."""
    made = Audiences(
        tmp_path / "state", "signups", "state", WorkerMetrics().audiences, reader_config={}
    )
    made._restore = no_restore  # type: ignore[method-assign]
    made._end_offset = no_end_offset  # type: ignore[method-assign]
    made.open(0, 1.0)
    made.open(1, 1.0)
    yield made
    made.close_all(clean=False)


def _signup(customer: str, features: tuple[float, float], day: int) -> CustomerSignup:
    return CustomerSignup(
        event_id=f"s-{customer}-{day}",
        customer_id=customer,
        age=features[0],
        annual_income=features[1],
        signed_up_at=datetime(2026, 1, day, tzinfo=UTC),
    )


def _update(customer: str, day: int, **features: float) -> ProfileUpdate:
    return ProfileUpdate(
        kind="profile_update",
        event_id=f"u-{customer}-{day}",
        customer_id=customer,
        updated_at=datetime(2026, 1, day, tzinfo=UTC),
        **features,
    )


def _apply(
    audiences: Audiences,
    events: list[CustomerSignup | ProfileUpdate],
    manifest: ModelManifest = MANIFEST,
    partition: int = 0,
) -> StateOutcome:
    scorer = Scorer(manifest)
    signups = [e for e in events if isinstance(e, CustomerSignup)]
    matrix = np.array([[s.age, s.annual_income] for s in signups]).reshape(-1, 2)
    labels = scorer.score(matrix).labels.tolist()
    records = [SourceRecord(None, None, "signups", partition, i) for i in range(len(events))]
    return audiences.apply(records, events, labels, scorer)


def _changes(outcome: StateOutcome) -> list[SegmentChanged]:
    return [SegmentChanged.model_validate_json(r.value) for r in outcome.changes]


def test_a_new_customer_enters_a_segment_with_none_exited(audiences: Audiences) -> None:
    outcome = _apply(audiences, [_signup("c1", YOUNG, 1)])
    (change,) = _changes(outcome)
    assert (change.exited_segment_id, change.entered_segment_id) == (None, "segment-0")
    assert (change.reason, change.revision, change.previous_model_version) == ("signup", 1, None)
    (record,) = outcome.changelog
    assert record.partition == 0
    state = CustomerState.model_validate_json(record.value)
    assert (state.segment_id, state.model_version, state.revision) == ("segment-0", "toy", 1)


def test_an_update_that_changes_the_segment_emits_one_change_and_one_within_it_none(
    audiences: Audiences,
) -> None:
    _apply(audiences, [_signup("c1", YOUNG, 1)])
    audiences.commit()
    moved = _apply(audiences, [_update("c1", 2, age=OLD[0], annual_income=OLD[1])])
    (change,) = _changes(moved)
    assert (change.exited_segment_id, change.entered_segment_id) == ("segment-0", "segment-1")
    assert (change.reason, change.revision) == ("profile_update", 2)
    audiences.commit()
    within = _apply(audiences, [_update("c1", 3, annual_income=OLD[1] + 1_000)])
    assert _changes(within) == []
    (record,) = within.changelog  # the features changed: the state still moves on
    state = CustomerState.model_validate_json(record.value)
    assert (state.revision, state.since) == (3, datetime(2026, 1, 2, tzinfo=UTC))


def test_older_events_are_ignored_and_counted(audiences: Audiences) -> None:
    _apply(audiences, [_signup("c1", YOUNG, 5)])
    audiences.commit()
    outcome = _apply(
        audiences, [_update("c1", 4, age=OLD[0], annual_income=OLD[1]), _signup("c1", OLD, 3)]
    )
    assert (outcome.stale, len(outcome.changes), len(outcome.changelog)) == (2, 0, 0)


def test_an_update_for_a_stranger_needs_age_and_income(audiences: Audiences) -> None:
    outcome = _apply(
        audiences,
        [
            _update("nobody", 2, annual_income=10.0),
            _update("newbie", 2, age=30.0, annual_income=5e4),
        ],
    )
    assert outcome.unknown == [0]
    assert [c.customer_id for c in _changes(outcome)] == ["newbie"]


def test_the_same_signup_twice_changes_nothing_the_second_time(audiences: Audiences) -> None:
    _apply(audiences, [_signup("c1", YOUNG, 1)])
    audiences.commit()
    again = _apply(audiences, [_signup("c1", YOUNG, 1)])
    assert (len(again.changes), len(again.changelog)) == (0, 0)


def test_events_of_one_customer_in_one_batch_follow_each_other(audiences: Audiences) -> None:
    outcome = _apply(
        audiences,
        [
            _signup("c1", YOUNG, 1),
            _update("c1", 2, age=OLD[0], annual_income=OLD[1]),
            _update("c1", 3, age=YOUNG[0], annual_income=YOUNG[1]),
        ],
    )
    assert [(c.exited_segment_id, c.entered_segment_id, c.revision) for c in _changes(outcome)] == [
        (None, "segment-0", 1),
        ("segment-0", "segment-1", 2),
        ("segment-1", "segment-0", 3),
    ]
    (record,) = outcome.changelog  # one state per customer per batch: the last
    assert CustomerState.model_validate_json(record.value).revision == 3


def test_writes_reach_the_store_only_when_committed(audiences: Audiences) -> None:
    _apply(audiences, [_signup("c1", YOUNG, 1)])
    assert audiences.lookup("c1") is None
    audiences.discard()
    assert audiences.lookup("c1") is None
    again = _apply(audiences, [_signup("c1", YOUNG, 1)])
    assert len(again.changes) == 1, "a discarded change is made again"
    audiences.commit()
    found = audiences.lookup("c1")
    assert found is not None
    assert found["segment_id"] == "segment-0"


def test_a_commit_reaches_rocksdb_at_the_next_commit_and_is_read_from_memory_until_then(
    tmp_path: Path,
) -> None:
    store = PartitionStore(tmp_path / "p0")
    store.stage(b"c1", b'{"v":1}')
    store.apply()
    assert store.db.get(b"c1") is None, "RocksDB takes it later"
    assert store.committed(b"c1") == b'{"v":1}'
    assert store.get_many([b"c1", b"c2"]) == [b'{"v":1}', None]
    # The next commit's writes: an abort forgets them, not the committed ones.
    store.stage(b"c1", b'{"v":2}')
    assert store.get_many([b"c1"]) == [b'{"v":2}']
    store.discard()
    assert store.get_many([b"c1"]) == [b'{"v":1}']
    # What the data plane runs while the next transaction commits.
    store.write_committed()
    assert store.db.get(b"c1") == b'{"v":1}'
    assert store.unwritten == {}
    # A commit that was not written meanwhile is written before the next one takes its place.
    store.stage(b"c1", b'{"v":3}')
    store.apply()
    store.stage(b"c2", b'{"v":1}')
    store.apply()
    assert (store.db.get(b"c1"), store.db.get(b"c2")) == (b'{"v":3}', None)
    # A scan in key order sees every commit; so does the store after closing.
    assert store.scan(b"", 10) == [(b"c1", b'{"v":3}'), (b"c2", b'{"v":1}')]
    store.stage(b"c3", b'{"v":1}')
    store.apply()
    store.close()
    again = PartitionStore(tmp_path / "p0")
    assert [key for key, _value in again.scan(b"", 10)] == [b"c1", b"c2", b"c3"]
    again.close()


def test_rocksdb_is_loaded_only_when_a_store_opens(tmp_path: Path) -> None:
    # A worker without customer state does without the library's resident memory.
    code = (
        "import sys, pathlib\n"
        "import stream_app.app, stream_app.dataplane\n"
        "assert 'rocksdict' not in sys.modules, 'loaded by the imports'\n"
        "from stream_app.audiences import PartitionStore\n"
        f"PartitionStore(pathlib.Path({str(tmp_path / 'p0')!r})).close()\n"
        "assert 'rocksdict' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_a_store_keeps_its_customers_and_checkpoint_across_reopening(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "p0")
    store.stage(b"c1", b'{"x":1}')
    store.apply()
    store.set_checkpoint(42)
    store.close()
    again = PartitionStore(tmp_path / "p0")
    assert (again.committed(b"c1"), again.checkpoint) == (b'{"x":1}', 42)
    assert again.scan(b"", 10) == [(b"c1", b'{"x":1}')], "bookkeeping keys are not customers"
    again.close()


def test_rescoring_moves_exactly_the_customers_the_new_model_places_elsewhere(
    audiences: Audiences,
) -> None:
    _apply(audiences, [_signup(f"c{i}", YOUNG if i % 2 else OLD, 1) for i in range(10)])
    audiences.commit()
    now = datetime(2026, 2, 1, tzinfo=UTC)
    outcome, after = audiences.rescore(0, b"", 4, Scorer(SWAPPED), now)
    assert (outcome.rescored, len(outcome.changes)) == (4, 4)
    # Crash before the commit: nothing happened, and the scan starts over.
    audiences.discard()
    seen: list[SegmentChanged] = []
    after = b""
    while True:
        outcome, following = audiences.rescore(0, after, 4, Scorer(SWAPPED), now)
        seen += _changes(outcome)
        audiences.commit()
        if following is None:
            break
        after = following
    assert sorted(c.customer_id for c in seen) == sorted(f"c{i}" for i in range(10))
    assert {c.reason for c in seen} == {"model_change"}
    assert all(c.previous_model_version == "toy" for c in seen)
    # Done once: a second pass for the same model has nothing left to do.
    outcome, _ = audiences.rescore(0, b"", 100, Scorer(SWAPPED), now)
    assert (outcome.rescored, len(outcome.changes)) == (0, 0)
    state = audiences.lookup("c1")
    assert state is not None
    assert (state["model_version"], json.loads(json.dumps(state["since"]))) == (
        "swapped",
        "2026-02-01T00:00:00Z",
    )


def test_a_shadow_count_says_how_many_would_move_without_changing_anything(
    audiences: Audiences,
) -> None:
    _apply(audiences, [_signup(f"c{i}", YOUNG, 1) for i in range(5)])
    audiences.commit()
    seen, moved, after = audiences.would_change(0, b"", 100, Scorer(SWAPPED))
    assert (seen, moved, after) == (5, 5, b"c4")
    assert audiences.would_change(0, b"c4", 100, Scorer(SWAPPED)) == (0, 0, None)
    state = audiences.lookup("c0")
    assert state is not None
    assert state["model_version"] == "toy"


@pytest.mark.parametrize(
    ("customer", "at", "age"),
    [
        ("c1", datetime(2026, 1, 1, tzinfo=UTC), 41.0),
        ('say"hi"\\', datetime(2026, 1, 1, 0, 0, 0, 500_000, tzinfo=UTC), 0.0),
        ("zoë-ü", datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))), 33.3),
        # A repr with an exponent, which pydantic writes otherwise: one record at a time.
        ("c4", datetime(2026, 1, 1, tzinfo=UTC), 0.00001),
    ],
)
def test_first_signups_are_written_as_the_general_path_and_the_contracts_write_them(
    tmp_path: Path, customer: str, at: datetime, age: float
) -> None:
    signup = CustomerSignup(
        event_id=f"e-{customer}", customer_id=customer, age=age, annual_income=52_000.5,
        signed_up_at=at,
    )  # fmt: skip
    key = customer.encode()
    # A % in a segment's texts stays a literal %, whatever formats the record.
    segments = list(MANIFEST.segments)
    segments[1] = segments[1].model_copy(update={"name": "50% off", "action": "give 100%b"})
    manifest = MANIFEST.model_copy(update={"segments": segments})
    made = []
    for fast in (True, False):
        store = PartitionStore(tmp_path / f"p-{fast}")
        outcome = StateOutcome()
        writer = _Writer({0: store}, manifest, outcome)
        if fast:
            writer.first_signups([0], [key], [signup], [1])
            writer.finish()  # as Audiences.apply: stages what went one at a time
        else:
            moment = _iso(signup.signed_up_at)
            writer.write(
                0, key, None, (signup.age, signup.annual_income, signup.gender.value), 1,
                moment, "signup", signup.event_id, moment,
            )  # fmt: skip
            writer.finish()
        made.append((outcome.changelog[0].value, outcome.changes[0].value, store.pending[key]))
        store.close()
    assert made[0] == made[1]
    state, change, staged = made[0]
    assert staged == state
    assert CustomerState.model_validate_json(state).model_dump_json().encode() == state
    assert SegmentChanged.model_validate_json(change).model_dump_json().encode() == change
    assert SegmentChanged.model_validate_json(change).action == "give 100%b"


def test_the_ids_escaped_for_the_assignments_make_the_same_state_and_change_records(
    tmp_path: Path,
) -> None:
    # The data plane hands Audiences.apply the id columns process_records escaped for the
    # assignments; the records must be byte for byte those apply makes from the events.
    customers = ["c1", 'say"hi"\\', "zoë-ü", "中文/id-2", "c5"]
    records = [
        SourceRecord(
            customer.encode(),
            json.dumps(
                {
                    "event_id": f"e-{customer}",
                    "customer_id": customer,
                    "age": 20 + 9 * i,
                    "annual_income": 30_000 + 7_000 * i,
                    "signed_up_at": "2026-01-01T01:00:00+01:00",
                }
            ).encode(),
            "signups",
            i % 2,
            i,
        )
        for i, customer in enumerate(customers)
    ]
    scorer = Scorer(MANIFEST)
    outcome = process_records(
        records, scorer, consumer_group="g", max_event_bytes=65_536, keep_state=True
    )
    assert outcome.signup_texts is not None
    made = []
    for texts in (outcome.signup_texts, None):
        audiences = Audiences(
            tmp_path / f"state-{texts is None}", "signups", "state",
            WorkerMetrics().audiences, reader_config={},
        )  # fmt: skip
        audiences._restore = no_restore  # type: ignore[method-assign]
        audiences._end_offset = no_end_offset  # type: ignore[method-assign]
        audiences.open(0, 1.0)
        audiences.open(1, 1.0)
        state = audiences.apply(
            outcome.event_records, outcome.events, outcome.labels, scorer, texts
        )
        made.append((list(state.changelog), list(state.changes)))
        audiences.close_all(clean=False)
    assert made[0] == made[1]
    changelog, changes = made[0]
    assert [r.key for r in changelog] == [c.encode() for c in customers]
    for record, customer in zip(changelog, customers, strict=True):
        assert CustomerState.model_validate_json(record.value).customer_id == customer
    for record, customer in zip(changes, customers, strict=True):
        change = SegmentChanged.model_validate_json(record.value)
        assert (change.customer_id, change.source_event_id) == (customer, f"e-{customer}")


def test_first_signups_that_fall_back_to_one_at_a_time_are_still_staged_and_produced(
    audiences: Audiences, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A column that does not split into one item per event sends the batch down the general
    # steps; what they write must reach the store and the state topic all the same.
    monkeypatch.setattr("stream_app.audiences._json_strings", lambda texts: [])
    outcome = _apply(audiences, [_signup("c1", YOUNG, 1), _signup("c2", OLD, 1)])
    assert {r.key for r in outcome.changelog} == {b"c1", b"c2"}
    assert len(outcome.changes) == 2
    assert set(audiences.stores[0].pending) == {b"c1", b"c2"}
