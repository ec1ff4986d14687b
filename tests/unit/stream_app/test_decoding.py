"""Each way a record can be broken maps to its own reason."""

from __future__ import annotations

import json
import logging
import uuid

import pytest

from schemas import Gender, InvalidEventError
from stream_app.decoding import decode_signup, unrecognised_genders
from training.generate import invalid_payloads

GOOD = json.dumps(
    {
        "event_id": "e-1",
        "customer_id": "c-1",
        "age": 30,
        "annual_income": 50_000,
        "signed_up_at": "2026-01-01T00:00:00Z",
    }
).encode()


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (None, None, "tombstone"),
        (None, b"x" * 2_000, "oversized"),
        (None, b"\xff\xfe\xfd", "not_utf8"),
        (None, b"{not json", "not_json"),
        (None, b"[1, 2]", "not_object"),
        (None, b'"a string"', "not_object"),
        (None, b"{}", "schema"),
        (b"someone-else", GOOD, "key_mismatch"),
    ],
)
def test_broken_records_raise_with_their_reason(
    key: bytes | None, value: bytes | None, reason: str
) -> None:
    with pytest.raises(InvalidEventError) as caught:
        decode_signup(key, value, max_bytes=1_000)
    assert caught.value.reason == reason
    assert str(caught.value)


def test_a_good_record_decodes_with_or_without_a_matching_key() -> None:
    assert decode_signup(None, GOOD, 1_000).customer_id == "c-1"
    assert decode_signup(b"c-1", GOOD, 1_000).customer_id == "c-1"


def test_every_generated_invalid_payload_is_refused() -> None:
    for payload in invalid_payloads():
        with pytest.raises(InvalidEventError):
            decode_signup(None, payload, 65_536)


def _signup(**changes: object) -> bytes:
    return json.dumps({**json.loads(GOOD), **changes}).encode()


def test_an_unrecognised_gender_is_read_as_unknown_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tally = unrecognised_genders()
    before = tally.count
    spelling = f"walrus-{uuid.uuid4().hex[:6]}"  # a spelling no other test has logged
    with caplog.at_level(logging.WARNING, logger="stream_app.decoding"):
        for _ in range(3):
            assert decode_signup(None, _signup(gender=spelling), 1_000).gender is Gender.UNKNOWN
    assert tally.count == before + 3
    assert [r.getMessage().count(spelling) for r in caplog.records] == [1]


def test_an_unrecognised_gender_is_a_schema_error_when_the_model_uses_gender() -> None:
    with pytest.raises(InvalidEventError) as caught:
        decode_signup(None, _signup(gender="walrus"), 1_000, gender_required=True)
    assert caught.value.reason == "schema"
    assert "gender" in str(caught.value)


def test_a_numeric_customer_id_matches_its_decimal_key() -> None:
    assert decode_signup(b"42", _signup(customer_id=42), 1_000).customer_id == "42"


def test_a_key_equal_to_the_id_after_nfc_normalisation_is_no_mismatch() -> None:
    composed, decomposed = "jos\u00e9", "jose\u0301"
    signup = decode_signup(composed.encode(), _signup(customer_id=decomposed), 1_000)
    assert signup.customer_id == composed
    signup = decode_signup(decomposed.encode(), _signup(customer_id=composed), 1_000)
    assert signup.customer_id == composed


def test_a_nul_in_the_customer_id_is_dead_lettered_with_the_reason() -> None:
    with pytest.raises(InvalidEventError) as caught:
        decode_signup(None, _signup(customer_id="c\u00001"), 1_000)
    assert caught.value.reason == "schema"
    assert "control character U+0000" in str(caught.value)
