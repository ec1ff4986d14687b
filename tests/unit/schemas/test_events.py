"""CustomerSignup bounds and spellings, assignment ids, and the exported JSON Schemas."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import (
    CustomerSignup,
    Gender,
    assignment_event_id,
    export_json_schemas,
    segment_change_id,
)
from schemas.events import GENDER_REQUIRED, UNRECOGNISED_GENDER

VALID = {
    "event_id": "e-1",
    "customer_id": "c-1",
    "age": 41,
    "annual_income": 104_000.0,
    "gender": "Female",
    "signed_up_at": "2026-03-01T10:00:00+00:00",
}


def _parse(**changes: object) -> CustomerSignup:
    return CustomerSignup.model_validate_json(json.dumps({**VALID, **changes}))


def test_a_valid_signup_parses_with_normalised_gender() -> None:
    signup = _parse()
    assert signup.age == 41.0
    assert signup.annual_income == 104_000.0
    assert signup.gender is Gender.FEMALE
    assert signup.signed_up_at.utcoffset() is not None


@pytest.mark.parametrize(
    ("spelling", "gender"),
    [
        ("F", Gender.FEMALE),
        (" male ", Gender.MALE),
        ("MAN", Gender.MALE),
        ("Non-Binary", Gender.OTHER),
        ("", Gender.UNKNOWN),
        (None, Gender.UNKNOWN),
        ("Prefer not to say", Gender.UNKNOWN),
    ],
)
def test_gender_spellings_are_accepted_case_insensitively(
    spelling: str | None, gender: Gender
) -> None:
    assert _parse(gender=spelling).gender is gender


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"age": -1}, "age"),
        ({"age": 121}, "age"),
        ({"age": "41"}, "age"),
        ({"age": True}, "age"),
        ({"annual_income": -0.01}, "annual_income"),
        ({"annual_income": 1e9}, "annual_income"),
        ({"annual_income": "100k"}, "annual_income"),
        ({"gender": 1}, "gender"),
        ({"signed_up_at": "2026-03-01T10:00:00"}, "signed_up_at"),
        ({"event_id": ""}, "event_id"),
        ({"customer_id": "has space"}, "customer_id"),
        ({"customer_id": 12.5}, "customer_id"),
        ({"customer_id": True}, "customer_id"),
        ({"customer_id": "c\u00001"}, "customer_id"),
        ({"event_id": "e\u001b[31m"}, "event_id"),
    ],
)
def test_out_of_bounds_or_mistyped_fields_are_rejected(
    changes: dict[str, object], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        _parse(**changes)
    assert caught.value.errors()[0]["loc"][0] == field


def test_an_unrecognised_gender_is_unknown_and_noted_in_the_context() -> None:
    context: dict[str, object] = {}
    body = json.dumps({**VALID, "gender": "walrus"})
    assert CustomerSignup.model_validate_json(body, context=context).gender is Gender.UNKNOWN
    assert context[UNRECOGNISED_GENDER] == "walrus"


def test_an_unrecognised_gender_is_an_error_when_gender_is_required() -> None:
    body = json.dumps({**VALID, "gender": "walrus"})
    with pytest.raises(ValidationError) as caught:
        CustomerSignup.model_validate_json(body, context={GENDER_REQUIRED: True})
    assert caught.value.errors()[0]["loc"][0] == "gender"
    assert "accepted: " in caught.value.errors()[0]["msg"]


def test_numeric_ids_are_taken_as_their_decimal_string() -> None:
    signup = _parse(customer_id=12345, event_id=7)
    assert (signup.customer_id, signup.event_id) == ("12345", "7")


def test_ids_are_normalised_to_nfc() -> None:
    decomposed = "jose\u0301"  # "e" followed by a combining acute accent
    assert _parse(customer_id=decomposed).customer_id == "jos\u00e9"


def test_a_control_character_in_an_id_is_named_with_its_position() -> None:
    with pytest.raises(ValidationError) as caught:
        _parse(customer_id="c-\u00001")
    message = caught.value.errors()[0]["msg"]
    assert "control character U+0000 at position 2" in message


def test_unknown_top_level_fields_are_ignored_and_attributes_kept() -> None:
    signup = _parse(campaign="tv-spot", attributes={"channel": "web"})
    assert signup.attributes == {"channel": "web"}
    assert not hasattr(signup, "campaign")


def test_assignment_ids_are_deterministic_per_event_and_model_version() -> None:
    first = assignment_event_id("e-1", "v1")
    assert first == assignment_event_id("e-1", "v1")
    assert first != assignment_event_id("e-1", "v2")
    assert first != assignment_event_id("e-2", "v1")


@given(source_event_id=st.text(), model_version=st.text())
def test_assignment_ids_are_the_standard_uuid5(source_event_id: str, model_version: str) -> None:
    namespace = uuid.UUID("6f1c2d8e-3a57-5b8e-9d0c-5e9a4b7f2c11")
    expected = uuid.uuid5(namespace, f"{source_event_id}\x1f{model_version}")
    assert assignment_event_id(source_event_id, model_version) == str(expected)


def test_every_contract_json_schema_is_exported(tmp_path: Path) -> None:
    written = export_json_schemas(tmp_path)
    names = sorted(p.name for p in written)
    assert names == [
        "customer-signup.schema.json",
        "customer-state.schema.json",
        "dead-letter.schema.json",
        "model-manifest.schema.json",
        "profile-update.schema.json",
        "segment-assignment.schema.json",
        "segment-changed.schema.json",
    ]
    update_schema = json.loads((tmp_path / "profile-update.schema.json").read_text())
    assert set(update_schema["required"]) == {"kind", "event_id", "customer_id", "updated_at"}
    signup_schema = json.loads((tmp_path / "customer-signup.schema.json").read_text())
    assert signup_schema["properties"]["age"]["maximum"] == 120
    assert set(signup_schema["required"]) >= {"event_id", "customer_id", "age", "annual_income"}


@given(customer_id=st.text(), revision=st.integers(min_value=1))
def test_change_ids_are_the_standard_uuid5(customer_id: str, revision: int) -> None:
    namespace = uuid.UUID("0b7f5c1e-8d2a-5e43-a6f1-3c9d7e2b4a10")
    assert segment_change_id(customer_id, revision) == str(
        uuid.uuid5(namespace, f"{customer_id}\x1f{revision}")
    )
