"""Assignments are encoded without building a model per event: the bytes must not change."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import CustomerSignup, Gender, SegmentAssignment, assignment_event_id
from stream_app.pipeline import SourceRecord, _assignment_values, process_records, signup_texts
from tests.unit.stream_app.toy import toy_scorer

NOW = datetime(2026, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)

# Identifiers are any non-blank text without whitespace or control characters: quotes,
# backslashes, format characters and non-ASCII letters all pass validation, so all must
# survive encoding.
identifiers = st.text(
    alphabet=st.characters(
        blacklist_categories=("Zs", "Zl", "Zp", "Cs", "Cc"),
        blacklist_characters=" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85",
    ),
    min_size=1,
    max_size=40,
)


def _model_dump(
    signup: CustomerSignup,
    label: int,
    distance: float,
    outlier: bool,
    now: datetime,
    echo_customer: bool,
) -> bytes:
    """The assignment as the pydantic model itself writes it: the reference encoding."""
    manifest = toy_scorer().manifest
    segment = manifest.segments[label]
    return (
        SegmentAssignment(
            event_id=assignment_event_id(signup.event_id, manifest.version),
            source_event_id=signup.event_id,
            customer_id=signup.customer_id,
            segment_id=segment.id,
            segment_name=segment.name,
            action=segment.action,
            model_version=manifest.version,
            distance=distance,
            outlier=outlier,
            scored_at=now,
            customer=(
                {
                    "age": signup.age,
                    "annual_income": signup.annual_income,
                    "gender": signup.gender.value,
                }
                if echo_customer
                else None
            ),
        )
        .model_dump_json(exclude_none=True)
        .encode()
    )


def _signup(event_id: str, customer_id: str, age: float = 41.0) -> CustomerSignup:
    return CustomerSignup(
        event_id=event_id,
        customer_id=customer_id,
        age=age,
        annual_income=72_500.5,
        gender=Gender.FEMALE,
        signed_up_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


@settings(max_examples=300, deadline=None)
@given(
    event_id=identifiers,
    customer_id=identifiers,
    label=st.integers(min_value=0, max_value=1),
    distance=st.floats(min_value=0, allow_nan=False, allow_infinity=False),
    outlier=st.booleans(),
    echo_customer=st.booleans(),
    age=st.floats(min_value=0, max_value=120, allow_nan=False),
)
def test_encoded_bytes_equal_the_models_own_dump(
    event_id: str,
    customer_id: str,
    label: int,
    distance: float,
    outlier: bool,
    echo_customer: bool,
    age: float,
) -> None:
    signup = _signup(event_id, customer_id, age)
    (value,) = _assignment_values(
        [signup],
        [label],
        [distance],
        [outlier],
        toy_scorer().manifest,
        NOW,
        echo_customer,
        signup_texts([signup]),
    )
    assert value == _model_dump(signup, label, distance, outlier, NOW, echo_customer)


@pytest.mark.parametrize(
    "now",
    [
        NOW,
        datetime(2026, 5, 1, tzinfo=UTC),
        datetime(2026, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))),
    ],
)
@pytest.mark.parametrize("distance", [0.0, 1e-7, 0.1, 2.5e-300, 1e16, 123456789.123])
def test_timestamps_and_awkward_floats_are_written_as_the_model_writes_them(
    now: datetime, distance: float
) -> None:
    signup = _signup('e"1\\', "c-ü\u200d")
    for echo in (False, True):
        (value,) = _assignment_values(
            [signup],
            [1],
            [distance],
            [True],
            toy_scorer().manifest,
            now,
            echo,
            signup_texts([signup]),
        )
        assert value == _model_dump(signup, 1, distance, True, now, echo)


def test_every_assignment_of_a_batch_validates_against_the_contract() -> None:
    values = [
        json.dumps(
            {
                "event_id": f"e-{i}",
                "customer_id": f"c-{i}",
                "age": 18 + i % 60,
                "annual_income": 15_000 + 997 * i,
                "gender": "f" if i % 2 else "male",
                "signed_up_at": "2026-01-01T00:00:00Z",
            }
        ).encode()
        for i in range(200)
    ]
    records = [SourceRecord(f"c-{i}".encode(), v, "signups", 0, i) for i, v in enumerate(values)]
    for echo_customer in (False, True):
        outcome = process_records(
            records,
            toy_scorer(),
            consumer_group="g",
            max_event_bytes=65_536,
            echo_customer=echo_customer,
            now=NOW,
        )
        assert len(outcome.assignments) == 200
        for i, record in enumerate(outcome.assignments):
            assignment = SegmentAssignment.model_validate_json(record.value)
            assert record.key == assignment.customer_id.encode() == f"c-{i}".encode()
            assert assignment.source_event_id == f"e-{i}"
            assert assignment.event_id == assignment_event_id(f"e-{i}", "toy")
            assert assignment.scored_at == NOW
            assert (assignment.customer is not None) is echo_customer
            assert record.headers == [("segstream.model.version", b"toy")]
        assert sum(outcome.segment_counts.values()) == 200
        assert all(n > 0 for n in outcome.segment_counts.values())


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            identifiers,
            identifiers,
            st.integers(min_value=0, max_value=1),
            st.floats(min_value=0, allow_nan=False, allow_infinity=False),
            st.booleans(),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_a_whole_batch_is_encoded_as_the_model_writes_each_event(
    rows: list[tuple[str, str, int, float, bool]],
) -> None:
    signups = [_signup(event_id, customer_id) for event_id, customer_id, *_ in rows]
    values = _assignment_values(
        signups,
        [label for *_, label, _, _ in rows],
        [distance for *_, distance, _ in rows],
        [outlier for *_, outlier in rows],
        toy_scorer().manifest,
        NOW,
        False,
        signup_texts(signups),
    )
    expected = [
        _model_dump(signup, label, distance, outlier, NOW, False)
        for signup, (_, _, label, distance, outlier) in zip(signups, rows, strict=True)
    ]
    assert values == expected
