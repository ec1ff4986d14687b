"""Generated payloads, valid and broken, against the decoders, the pipeline and the data plane.

Every record must end up either assigned once or dead-lettered once, and nothing may raise out
of the decoder (other than an InvalidEventError), the pipeline or the data plane. The decoder
sees 10,000 single records and the pipeline 400 batches of 25 to 40 (at least 10,000 records).
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from schemas import CustomerSignup, InvalidEventError, SegmentAssignment, assignment_event_id
from stream_app.decoding import decode_signup
from stream_app.pipeline import SourceRecord, process_records
from stream_app.settings import Settings
from tests.unit.stream_app.fakes import FakeMessage, plane_with_fakes
from tests.unit.stream_app.toy import toy_manifest, toy_scorer

# The worker's default: deep nesting needs room to reach past any recursion limit.
MAX_BYTES = 65_536
REASONS = {"tombstone", "oversized", "not_utf8", "not_json", "not_object", "schema", "key_mismatch"}
REQUIRED = ("event_id", "customer_id", "age", "annual_income", "signed_up_at")
NOW = datetime(2026, 5, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Payload:
    """A generated record and what the decoder must say about it (None: either is fine)."""

    key: bytes | None
    value: bytes | None
    valid: bool | None
    kind: str


# ------------------------------------------------------------------------------ strategies

# Strategies are built once, here, and kept cheap (sampled alphabets, no recursion, no
# unique-key filters): drawing, not decoding, is what 20,000 payloads cost.

# Never whitespace, a control character or a surrogate: ASCII, accented and CJK letters, an
# emoji, a zero-width space (not White_Space in Unicode, so allowed in identifiers) and a
# right-to-left mark.
_ID_CHARS = "abcXYZ0129-_.:@/#éßÆΩж中文🙂\u200b\u200f"
# Whitespace, quotes, backslashes, controls and non-ASCII: for text that may be anything.
_ANY_CHARS = _ID_CHARS + " \t\n\r\u00a0\u3000\"\\'{}[],\x00\x7f\ufeff\U0010ffff"

_identifier = st.one_of(
    st.integers(0, 10**9).map(lambda n: f"c-{n}"),
    st.sampled_from(["é", "中文-7", "🙂", "a\u200bb", "\u200f", "x" * 128, "Ωж#@/:."]),
    st.text(alphabet=_ID_CHARS, min_size=1, max_size=8),
)
_any_text = st.text(alphabet=_ANY_CHARS, max_size=12)
_ages = st.one_of(st.integers(0, 120), st.floats(0, 120))
_incomes = st.one_of(st.integers(0, 100_000_000), st.floats(0, 100_000_000))
_seconds = st.integers(0, 4_000_000_000)
_flags = st.integers(0, 15)
_offsets = st.sampled_from(["+00:00", "Z", "+05:30", "-08:00", "+14:00", "-12:00"])
_genders = st.sampled_from(
    [
        "absent",
        None,
        "female",
        "F",
        "Male",
        " m ",
        "other",
        "Non-Binary",
        "x",
        "unknown",
        "",
        "Prefer not to say",
    ]
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    _any_text,
)
_names = st.sampled_from(["source", "campaign", "plan", "référence", "", "__proto__", "x" * 64])
_attributes = st.dictionaries(
    _names, st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), _any_text), max_size=3
)
_json_values = st.one_of(
    _scalars, st.lists(_scalars, max_size=3), st.dictionaries(_names, _scalars, max_size=3)
)
_non_objects = st.one_of(_scalars, st.lists(_scalars, max_size=3))
_nested = st.one_of(st.lists(_scalars, max_size=3), st.dictionaries(_names, _scalars))
_key_choices = st.sampled_from(["none", "own", "other"])
_other_keys = st.binary(max_size=40)
_positions = st.integers(0, 2**16)  # taken modulo the length of what it cuts
_high_bytes = st.integers(0x80, 0xFF)
_depths = st.integers(1, 30_000)  # Hypothesis itself raises Python's recursion limit
_padding = st.integers(MAX_BYTES, 2 * MAX_BYTES)
_separators = st.sampled_from([", ", ",\n  ", " ,\t", ",\r\n"])
_required = st.sampled_from(REQUIRED)
_numeric = st.sampled_from(["age", "annual_income"])
_identifiers = st.sampled_from(["event_id", "customer_id"])
_surrogate_keys = st.sampled_from([None, b"c-\xed\xa0\xbd"])
_KINDS = [
    "valid",
    "valid",
    "valid",
    "pretty",
    "drop",
    "wrong_number",
    "wrong_text",
    "wrong_moment",
    "wrong_gender",
    "nested_attribute",
    "duplicate_field",
    "deep",
    "oversized",
    "non_utf8",
    "truncated",
    "bom",
    "random_bytes",
    "not_object",
    "tombstone",
    "surrogate_text",
]
_kinds = st.sampled_from(_KINDS)

# Numbers the schema must refuse, as raw JSON text (NaN and Infinity are not JSON at all).
_BAD_NUMBERS = [
    "NaN",
    "Infinity",
    "-Infinity",
    "1e309",
    "-1e309",
    "-1",
    "-0.0001",
    "1e400",
    "9" * 5_000,
    "-" + "9" * 400,
    "100000000.5",
    "1e100",
    "true",
    "null",
    '"30"',
    "[30]",
    '{"value": 30}',
]
_bad_ages = st.sampled_from([*_BAD_NUMBERS, "121"])  # 121 is a fine income, but no age
_bad_incomes = st.sampled_from(_BAD_NUMBERS)
_bad_texts = st.sampled_from(
    [
        '""',
        '" "',
        '"two words"',
        '"tab\\there"',
        '"line\\nbreak"',
        '"\\u00a0nbsp"',
        '"\\ud800"',
        '"\\udfff lone low"',
        json.dumps("x" * 129),
        '"nul\\u0000l"',
        '"esc\\u001b[0m"',
        "12.5",  # an integer id is its decimal string, a fraction is no id
        "null",
        "false",
        '["c-1"]',
        '{"id": "c-1"}',
    ]
)
_bad_moments = st.sampled_from(
    [
        '"yesterday"',
        '"2026-01-01T00:00:00"',
        '"2026-13-01T00:00:00Z"',
        '"2026-02-30T00:00:00Z"',
        '""',
        "null",
        "[]",
        "{}",
        "true",
    ]
)


def _token(value: object, ascii_only: bool = True) -> str:
    return json.dumps(value, ensure_ascii=ascii_only)


def _render(fields: dict[str, str], separator: str = ",") -> bytes:
    """A JSON object from already-rendered value tokens, so tokens may be anything at all."""
    return ("{" + separator.join(f"{json.dumps(k)}:{v}" for k, v in fields.items()) + "}").encode()


def _signup_fields(draw: st.DrawFn) -> dict[str, str]:
    """The rendered fields of a valid signup, with optional and unknown fields at random."""
    # One draw for five coin flips: each draw has a cost, and 20,000 payloads add up.
    flags = draw(_flags)
    ascii_only = bool(flags & 1)
    moment = datetime(1970, 1, 2) + timedelta(seconds=draw(_seconds))
    fields = {
        "event_id": _token(draw(_identifier), ascii_only),
        "customer_id": _token(draw(_identifier), ascii_only),
        "age": _token(draw(_ages)),
        "annual_income": _token(draw(_incomes)),
        "signed_up_at": _token(moment.isoformat() + draw(_offsets)),
    }
    gender = draw(_genders)
    if gender != "absent":
        fields["gender"] = _token(gender, ascii_only)
    if flags & 2:
        fields["attributes"] = _token(draw(_attributes), ascii_only)
    # Producers may add fields consumers do not know yet; they are ignored.
    if flags & 4:
        fields.setdefault(draw(_names), _token(draw(_json_values), ascii_only))
    if flags & 8:
        fields = dict(reversed(fields.items()))
    return fields


def _key_for(draw: st.DrawFn, fields: dict[str, str]) -> tuple[bytes | None, bool]:
    """A record key and whether it agrees with the body's customer_id."""
    own = str(json.loads(fields["customer_id"])).encode()
    choice = draw(_key_choices)
    key = None if choice == "none" else own if choice == "own" else draw(_other_keys)
    return key, key is None or key == own


@st.composite
def payloads(draw: st.DrawFn) -> Payload:
    """One generated record: a valid signup, or a signup broken in one of many ways."""
    fields = _signup_fields(draw)
    key, key_agrees = _key_for(draw, fields)
    kind = draw(_kinds)
    if kind == "valid":
        return Payload(key, _render(fields), key_agrees, kind)
    if kind == "pretty":
        return Payload(key, b"  " + _render(fields, draw(_separators)) + b"\n", key_agrees, kind)
    if kind == "drop":
        del fields[draw(_required)]
        return Payload(key, _render(fields), False, kind)
    if kind == "wrong_number":
        name = draw(_numeric)
        fields[name] = draw(_bad_ages if name == "age" else _bad_incomes)
        return Payload(key, _render(fields), False, kind)
    if kind == "wrong_text":
        fields[draw(_identifiers)] = draw(_bad_texts)
        return Payload(key, _render(fields), False, kind)
    if kind == "wrong_moment":
        fields["signed_up_at"] = draw(_bad_moments)
        return Payload(key, _render(fields), False, kind)
    if kind == "wrong_gender":
        # Any text or JSON: it might happen to be an accepted spelling, so either answer is fine.
        fields["gender"] = _token(draw(_json_values))
        return Payload(key, _render(fields), None, kind)
    if kind == "nested_attribute":
        fields["attributes"] = _token({"nested": draw(_nested)})
        return Payload(key, _render(fields), False, kind)
    if kind == "duplicate_field":
        # Which copy wins is the parser's business; either answer is fine, a crash is not.
        extra = f",{json.dumps(draw(_required))}:{_token(draw(_json_values))}}}"
        return Payload(key, _render(fields)[:-1] + extra.encode(), None, kind)
    if kind == "deep":
        depth = draw(_depths)
        if draw(st.booleans()):  # the whole signup inside arrays
            return Payload(key, b"[" * depth + _render(fields) + b"]" * depth, False, kind)
        fields["attributes"] = '{"deep":' + "[" * depth + "]" * depth + "}"
        return Payload(key, _render(fields), False, kind)
    if kind == "oversized":
        fields["padding"] = _token("x" * draw(_padding))
        return Payload(key, _render(fields), False, kind)
    if kind == "non_utf8":
        # One byte >= 0x80 inserted anywhere into valid UTF-8 can never leave it valid.
        body = _render(fields, ", ")
        at = draw(_positions) % (len(body) + 1)
        return Payload(key, body[:at] + bytes([draw(_high_bytes)]) + body[at:], False, kind)
    if kind == "truncated":
        body = _render(fields)
        return Payload(key, body[: draw(_positions) % len(body)], False, kind)
    if kind == "bom":
        return Payload(key, b"\xef\xbb\xbf" + _render(fields), False, kind)
    if kind == "random_bytes":
        return Payload(key, draw(_other_keys), None, kind)
    if kind == "not_object":
        return Payload(key, _token(draw(_non_objects), draw(st.booleans())).encode(), False, kind)
    if kind == "tombstone":
        return Payload(key, None, False, kind)
    assert kind == "surrogate_text"
    # Lone surrogates are legal to Python's json module but not to pydantic's parser.
    fields["customer_id"] = '"c-\\ud83d"'
    return Payload(draw(_surrogate_keys), _render(fields), False, kind)


# ----------------------------------------------------------------------------- the decoder


def _check_decoded(payload: Payload) -> CustomerSignup | None:
    """Decode payload as the worker would; assert it is refused properly or accepted properly."""
    refusal: InvalidEventError | None = None
    try:
        signup = decode_signup(payload.key, payload.value, MAX_BYTES)
    except InvalidEventError as exc:
        refusal = exc
    if refusal is not None:
        assert payload.valid is not True, f"{payload.kind}: valid signup refused: {refusal}"
        assert refusal.reason in REASONS
        # The message becomes a Kafka header and a JSON string: it must encode as UTF-8.
        assert str(refusal).encode()
        return None
    assert payload.valid is not False, f"{payload.kind}: a broken signup was accepted"
    assert isinstance(signup, CustomerSignup)
    if payload.key is not None:
        assert unicodedata.normalize("NFC", payload.key.decode()) == signup.customer_id
    return signup


# Payloads that once escaped the decoder as something other than an InvalidEventError.
DEEP_ARRAY = Payload(None, b"[" * 20_000 + b"]" * 20_000, False, "deep")
DEEP_OBJECT = Payload(b"c-1", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, False, "deep")


@settings(
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(payload=payloads())
@example(payload=DEEP_ARRAY)
@example(payload=DEEP_OBJECT)
def test_the_decoder_accepts_or_refuses_every_payload_with_a_reason(payload: Payload) -> None:
    _check_decoded(payload)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        # json.loads raised RecursionError on these while classifying pydantic's refusal.
        (DEEP_ARRAY.value, "not_json"),
        (DEEP_OBJECT.value, "not_json"),
        (b"[" * 100 + b"]" * 100, "not_object"),
        # Valid JSON that Python's int() refuses to read: was "not JSON" for the wrong reason.
        (b'{"age": ' + b"1" * 5_000 + b"}", "not_json"),
        (b'{"customer_id": "\\ud800"}', "not_json"),
        (b"null", "not_object"),
        (b"NaN", "not_object"),
    ],
)
def test_values_found_by_fuzzing_are_dead_lettered_with_their_reason(
    value: bytes, reason: str
) -> None:
    with pytest.raises(InvalidEventError) as caught:
        decode_signup(b"c-1", value, 65_536)
    assert caught.value.reason == reason


# ---------------------------------------------------------------------------- the pipeline


def _check_outcome(
    records: list[SourceRecord],
    accepted: list[CustomerSignup | None],
    assignments: list[tuple[bytes | None, bytes]],
    dead_letters: list[tuple[bytes | None, bytes]],
    version: str,
) -> None:
    """Every record is in exactly one place: assigned (in input order) or dead-lettered."""
    assert len(assignments) + len(dead_letters) == len(records)
    letters = [json.loads(value) for _, value in dead_letters]
    dead_offsets = [letter["source_offset"] for letter in letters]
    assert len(set(dead_offsets)) == len(dead_offsets)
    assert sorted(dead_offsets) == [
        r.offset for r, signup in zip(records, accepted, strict=True) if signup is None
    ]
    by_offset = {r.offset: r for r in records}
    for letter in letters:
        source = by_offset[letter["source_offset"]]
        assert (letter["source_topic"], letter["source_partition"]) == (
            source.topic,
            source.partition,
        )
        assert letter["error_reason"] in REASONS
    signups = [signup for signup in accepted if signup is not None]
    assert len(assignments) == len(signups)
    for (key, value), signup in zip(assignments, signups, strict=True):
        assignment = SegmentAssignment.model_validate_json(value)
        assert key == signup.customer_id.encode()
        assert assignment.customer_id == signup.customer_id
        assert assignment.source_event_id == signup.event_id
        assert assignment.event_id == assignment_event_id(signup.event_id, version)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    batch=st.lists(payloads(), min_size=25, max_size=40),
    partitions=st.lists(st.integers(0, 3), min_size=40, max_size=40),
    echo_customer=st.booleans(),
)
def test_every_record_of_a_batch_is_assigned_or_dead_lettered_exactly_once(
    batch: list[Payload], partitions: list[int], echo_customer: bool
) -> None:
    records = [
        SourceRecord(p.key, p.value, "signups", partitions[i], 1_000 + i, 1_700_000_000.0)
        for i, p in enumerate(batch)
    ]
    accepted = [_check_decoded(p) for p in batch]
    scorer = toy_scorer()
    outcome = process_records(
        records,
        scorer,
        consumer_group="fuzz",
        max_event_bytes=MAX_BYTES,
        echo_customer=echo_customer,
        now=NOW,
    )
    _check_outcome(
        records,
        accepted,
        [(r.key, r.value) for r in outcome.assignments],
        [(r.key, r.value) for r in outcome.dead_letters],
        scorer.manifest.version,
    )
    assert sum(outcome.segment_counts.values()) == len(outcome.assignments)
    assert sum(outcome.reason_counts.values()) == len(outcome.dead_letters)


# -------------------------------------------------------------------------- the data plane


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(batch=st.lists(payloads(), min_size=100, max_size=100))
def test_the_data_plane_survives_generated_payloads_and_accounts_for_each(
    batch: list[Payload],
) -> None:
    manifest = toy_manifest([40.0, 50_000.0], [10.0, 10_000.0], [[-1.0, 0.0], [1.0, 1.0]])
    candidate = toy_manifest([40.0, 50_000.0], [10.0, 10_000.0], [[1.0, 1.0], [-1.0, 0.0]])
    accepted = [_check_decoded(p) for p in batch]
    settings_ = Settings(app_id="fuzz-plane", max_event_bytes=MAX_BYTES)
    plane, delivery = plane_with_fakes(settings_)
    state = plane.state
    state.make_live(manifest)
    # A shadow candidate too, so its comparison sees the same payloads.
    state.set_candidate(candidate.model_copy(update={"version": "candidate"}))
    messages = [
        FakeMessage(settings_.input_topic, 0, offset, p.key, p.value)
        for offset, p in enumerate(batch)
    ]
    for start in range(0, len(messages), 16):
        plane._process(messages[start : start + 16])  # type: ignore[arg-type]
    plane._commit()
    counts = plane.metrics.counts()
    assert counts["consumed"] == len(batch)
    assert cast(int, counts["assigned"]) + cast(int, counts["dead_lettered"]) == len(batch)
    assert state.shadow_compared == counts["assigned"]
    assert delivery.committed == [[(settings_.input_topic, 0, len(batch))]]
    records = [
        SourceRecord(p.key, p.value, settings_.input_topic, 0, offset)
        for offset, p in enumerate(batch)
    ]
    _check_outcome(
        records,
        accepted,
        [(r.key, r.value) for r in delivery.sent[settings_.output_topic]],
        [(r.key, r.value) for r in delivery.sent[settings_.dlq_topic]],
        manifest.version,
    )
