"""Turn one raw Kafka record into a CustomerSignup, or say precisely why it cannot be."""

from __future__ import annotations

from pydantic import ValidationError

from schemas import CustomerSignup, InvalidEventError
from stream_app.exceptions import (
    KeyMismatchError,
    NotJsonError,
    NotObjectError,
    NotUtf8Error,
    OversizedEventError,
    SchemaViolationError,
    TombstoneError,
)

__all__ = ["decode_signup"]


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


def decode_signup(key: bytes | None, value: bytes | None, max_bytes: int) -> CustomerSignup:
    """Validate a record; raise an InvalidEventError subclass naming the reason on failure.

    A key, when present, must equal the body's customer_id: the key decides the partition,
    and a producer keying by anything else breaks per-customer ordering downstream.
    """
    if value is None:
        raise TombstoneError("value is null (tombstone)")
    if len(value) > max_bytes:
        raise OversizedEventError(f"value is {len(value)} bytes, over the {max_bytes}-byte limit")
    try:
        signup = CustomerSignup.model_validate_json(value)
    except ValidationError as exc:
        raise _classify(value, exc) from None
    if key is not None and key != signup.customer_id.encode():
        shown = key[:64].decode("utf-8", "backslashreplace")
        raise KeyMismatchError(
            f"record key {shown!r} differs from customer_id {signup.customer_id!r}"
        )
    return signup
