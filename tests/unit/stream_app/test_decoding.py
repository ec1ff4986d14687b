"""Each way a record can be broken maps to its own reason."""

from __future__ import annotations

import json

import pytest

from schemas import InvalidEventError
from stream_app.decoding import decode_signup
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
