"""Turn one raw Kafka record into a CustomerSignup, or say precisely why it cannot be."""

from __future__ import annotations

import logging
import unicodedata

from pydantic import ValidationError

from schemas import PROFILE_UPDATE, CustomerSignup, InvalidEventError, ProfileUpdate
from schemas.events import GENDER_REQUIRED, UNRECOGNISED_GENDER
from stream_app.exceptions import (
    KeyMismatchError,
    NotJsonError,
    NotObjectError,
    NotUtf8Error,
    OversizedEventError,
    SchemaViolationError,
    TombstoneError,
)

__all__ = [
    "UnrecognisedGenders",
    "decode_event",
    "decode_signup",
    "unrecognised_genders",
]

log = logging.getLogger(__name__)

#: Distinct spellings logged at most; beyond it they are only counted (a producer sending
#: free text must not flood the log).
_MAX_SPELLINGS_LOGGED = 100


class UnrecognisedGenders:
    """Signups whose gender spelling was not recognised and was read as unknown.

    Counted for the metric; each spelling is logged once, so an operator can add it to the
    accepted spellings or tell the producer.
    """

    def __init__(self) -> None:
        self.count = 0
        self.spellings: set[str] = set()

    def note(self, spelling: str) -> None:
        """Count one signup with this spelling; log the spelling the first time it is seen."""
        self.count += 1
        if spelling in self.spellings or len(self.spellings) >= _MAX_SPELLINGS_LOGGED:
            return
        self.spellings.add(spelling)
        log.warning(
            "segstream: gender %r is not a recognised spelling; read as unknown "
            "(the live model does not use gender; logged once per spelling)",
            spelling[:64],
        )


# Process-wide, like the log it writes to: decode_signup is a plain function called from
# wherever records are decoded, and the metrics registry reads the count from here.
_UNRECOGNISED = UnrecognisedGenders()


def unrecognised_genders() -> UnrecognisedGenders:
    """The process's tally of unrecognised gender spellings."""
    return _UNRECOGNISED


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "value"
        parts.append(f"{where}: {item['msg']}")
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


_JSON_TYPE_NAMES = {
    "dict": "an object",
    "list": "an array",
    "str": "a string",
    "int": "a number",
    "float": "a number",
    "bool": "a boolean",
    "NoneType": "null",
}


def _classify(value: bytes, error: ValidationError) -> InvalidEventError:
    """Find the most precise reason a value failed validation.

    pydantic's own parse errors say it all: parsing the value again with the json module
    would accept what pydantic refuses (lone surrogates) and raise RecursionError on deeply
    nested arrays, which no dead-letter policy catches.
    """
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return NotUtf8Error(f"value is not UTF-8: {exc.reason} at byte {exc.start}")
    first = error.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        return NotJsonError(f"value is not JSON: {first['msg'].removeprefix('Invalid JSON: ')}")
    if first["type"] == "model_type" and not first["loc"]:
        kind = type(first.get("input")).__name__
        return NotObjectError(f"value is JSON {_JSON_TYPE_NAMES.get(kind, kind)}, not an object")
    return SchemaViolationError(_describe(error))


def _same_customer(key: bytes, customer_id: str) -> bool:
    """Whether a record key names customer_id, compared in Unicode NFC as ids are."""
    if key == customer_id.encode():
        return True  # the common case, without decoding anything
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return unicodedata.normalize("NFC", text) == customer_id


def _check_key(key: bytes | None, customer_id: str) -> None:
    """A record key, when present, must name the body's customer (KeyMismatchError)."""
    if key is not None and not _same_customer(key, customer_id):
        shown = key[:64].decode("utf-8", "backslashreplace")
        raise KeyMismatchError(f"record key {shown!r} differs from customer_id {customer_id!r}")


def decode_signup(
    key: bytes | None, value: bytes | None, max_bytes: int, *, gender_required: bool = False
) -> CustomerSignup:
    """Validate a record; raise an InvalidEventError subclass naming the reason on failure.

    A key, when present, must equal the body's customer_id (both in Unicode NFC): the key
    decides the partition, and a producer keying by anything else breaks per-customer
    ordering downstream. An unrecognised gender spelling is read as unknown, counted and
    logged once per spelling, unless gender_required (the live model uses gender): then
    it is a schema error, since unknown would silently score as "not female".
    """
    if value is None:
        raise TombstoneError("value is null (tombstone)")
    if len(value) > max_bytes:
        raise OversizedEventError(f"value is {len(value)} bytes, over the {max_bytes}-byte limit")
    context: dict[str, object] = {GENDER_REQUIRED: gender_required}
    try:
        signup = CustomerSignup.model_validate_json(value, context=context)
    except ValidationError as exc:
        raise _classify(value, exc) from None
    if key is not None and key != signup.customer_id.encode():  # the common case inline
        _check_key(key, signup.customer_id)
    spelling = context.get(UNRECOGNISED_GENDER)
    if isinstance(spelling, str):
        _UNRECOGNISED.note(spelling)
    return signup


_KIND_MARK = PROFILE_UPDATE.encode()


def decode_event(
    key: bytes | None, value: bytes | None, max_bytes: int, *, gender_required: bool = False
) -> CustomerSignup | ProfileUpdate:
    """A signup, or a profile update when the value's `kind` is `profile_update`.

    Signups stay the cheap common case: only a value that mentions `profile_update` at all
    is tried as an update first; one whose `kind` turns out to be something else is a signup.
    """
    if value is None or len(value) > max_bytes or _KIND_MARK not in value:
        return decode_signup(key, value, max_bytes, gender_required=gender_required)
    try:
        update = ProfileUpdate.model_validate_json(value)
    except ValidationError as exc:
        if any(item["loc"] == ("kind",) for item in exc.errors(include_url=False)):
            return decode_signup(key, value, max_bytes, gender_required=gender_required)
        raise _classify(value, exc) from None
    _check_key(key, update.customer_id)
    return update
