"""Event contracts on the wire: signups in, segment assignments out, dead letters."""

from __future__ import annotations

import hashlib
import re
import unicodedata
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

__all__ = [
    "AGE_MAX",
    "GENDER_REQUIRED",
    "INCOME_MAX",
    "UNRECOGNISED_GENDER",
    "CustomerSignup",
    "DeadLetter",
    "Gender",
    "SegmentAssignment",
    "assignment_event_id",
]

#: Oldest plausible customer age in years.
AGE_MAX = 120.0
#: Highest plausible annual income in currency units; above this a value is a unit mistake.
INCOME_MAX = 100_000_000.0

# uuid5 namespace of assignment ids: fixed forever so ids stay comparable across releases.
_ASSIGNMENT_NAMESPACE = uuid.UUID("6f1c2d8e-3a57-5b8e-9d0c-5e9a4b7f2c11")

#: Validation context key: when true, a gender spelling that is not recognised is an error
#: (the live model uses gender); otherwise it is read as unknown and noted under
#: UNRECOGNISED_GENDER in the same context.
GENDER_REQUIRED = "gender_required"
UNRECOGNISED_GENDER = "unrecognised_gender"

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _identifier(value: Any) -> Any:
    """Ids as text: integers as their decimal string, Unicode in NFC, no control characters.

    NFC so that the same id typed on two systems (a precomposed "é" or "e" plus a combining
    accent) is one customer, one key and one partition.
    """
    if isinstance(value, str) and value.isascii() and value.isprintable():
        return value  # the common case: no control characters, and NFC changes no ASCII
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        return value  # pydantic reports the wrong type
    control = _CONTROL.search(value)
    if control is not None:
        raise ValueError(
            f"contains the control character U+{ord(control.group()):04X} at position "
            f"{control.start()}; ids must be printable text"
        )
    return unicodedata.normalize("NFC", value)


Identifier = Annotated[
    str,
    BeforeValidator(_identifier),
    Field(min_length=1, max_length=128, pattern=r"^[^\s]+$"),
]


class Gender(StrEnum):
    """Gender as recorded at signup; spelling is normalised case-insensitively."""

    FEMALE = "female"
    MALE = "male"
    OTHER = "other"
    UNKNOWN = "unknown"


_GENDER_SPELLINGS: dict[str, Gender] = {
    "female": Gender.FEMALE,
    "f": Gender.FEMALE,
    "woman": Gender.FEMALE,
    "male": Gender.MALE,
    "m": Gender.MALE,
    "man": Gender.MALE,
    "other": Gender.OTHER,
    "non-binary": Gender.OTHER,
    "nonbinary": Gender.OTHER,
    "diverse": Gender.OTHER,
    "x": Gender.OTHER,
    "unknown": Gender.UNKNOWN,
    "u": Gender.UNKNOWN,
    "": Gender.UNKNOWN,
    "prefer not to say": Gender.UNKNOWN,
}


def parse_gender(value: Any) -> Gender:
    """Map an accepted spelling (any case, surrounding blanks ignored) to a Gender."""
    if value is None:
        return Gender.UNKNOWN
    if not isinstance(value, str):
        raise ValueError(f"gender must be a string, got {type(value).__name__}")
    try:
        return _GENDER_SPELLINGS[value.strip().lower()]
    except KeyError:
        accepted = ", ".join(sorted(k for k in _GENDER_SPELLINGS if k))
        raise ValueError(f"unknown gender spelling {value!r}; accepted: {accepted}") from None


class CustomerSignup(BaseModel):
    """A new customer, as marketing systems publish it to `customer-signups` (key customer_id).

    Bounds: 0 <= age <= 120 years; 0 <= annual_income <= 100,000,000 currency units (not
    thousands); both finite numbers, never strings. Unknown top-level fields are ignored so
    producers can add fields before consumers know them. Ids are text (a JSON integer is taken
    as its decimal string), compared in Unicode NFC, without whitespace or control
    characters. A gender spelling that is not recognised is read as `unknown`, unless the
    validation context says gender is required (GENDER_REQUIRED).
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: Identifier
    customer_id: Identifier
    age: float = Field(ge=0, le=AGE_MAX, strict=True, allow_inf_nan=False)
    annual_income: float = Field(ge=0, le=INCOME_MAX, strict=True, allow_inf_nan=False)
    gender: Gender = Gender.UNKNOWN
    signed_up_at: AwareDatetime
    attributes: dict[str, str | int | float | bool | None] = Field(default_factory=dict)

    @field_validator("gender", mode="before")
    @classmethod
    def _normalise_gender(cls, value: Any, info: ValidationInfo) -> Gender:
        try:
            return parse_gender(value)
        except ValueError:
            context = info.context
            if not isinstance(value, str) or (context and context.get(GENDER_REQUIRED)):
                raise
            if isinstance(context, dict):
                context[UNRECOGNISED_GENDER] = value
            return Gender.UNKNOWN


#: The RFC 4122 variant bits set on a uuid's 17th hex digit.
_VARIANT = {digit: format((int(digit, 16) & 0x3) | 0x8, "x") for digit in "0123456789abcdef"}


def uuid5_text(namespace: bytes, name: str) -> str:
    """str(uuid.uuid5(UUID(bytes=namespace), name)), computed directly (RFC 9562 section 5.5)
    on the SHA-1's hex digits: the same string at a fraction of the cost, for ids the worker
    makes once per event."""
    h = hashlib.sha1(namespace + name.encode(), usedforsecurity=False).hexdigest()
    # Digit 12 holds the version (5); digit 16 the variant.
    return f"{h[:8]}-{h[8:12]}-5{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


_ASSIGNMENT_NAMESPACE_BYTES = _ASSIGNMENT_NAMESPACE.bytes


def assignment_event_id(source_event_id: str, model_version: str) -> str:
    """Deterministic id of the assignment of one input event by one model version."""
    return uuid5_text(_ASSIGNMENT_NAMESPACE_BYTES, f"{source_event_id}\x1f{model_version}")


class SegmentAssignment(BaseModel):
    """A customer tagged with a segment, published to `customer-segments` (key customer_id)."""

    model_config = ConfigDict(frozen=True)

    event_id: str = Field(description="uuid5 of source_event_id and model_version")
    source_event_id: str
    customer_id: str
    segment_id: str = Field(description="stable slug, e.g. vip-luxury")
    segment_name: str
    action: str = Field(description="the segment's strategic action")
    model_version: str
    distance: float = Field(description="distance to the segment centroid in scaled units")
    outlier: bool = Field(description="farther from the centroid than 99% of training customers")
    scored_at: datetime
    customer: dict[str, Any] | None = Field(
        default=None, description="age, annual_income and gender, only when echoing is enabled"
    )


class DeadLetter(BaseModel):
    """An input record that could not be scored, with where it came from and why."""

    model_config = ConfigDict(frozen=True)

    value: str | None = Field(
        description="original value; base64 when not UTF-8; null for a tombstone"
    )
    value_encoding: Literal["utf-8", "base64", "none"]
    value_size: int | None = Field(
        default=None, description="size of the original value in bytes; null for a tombstone"
    )
    value_sha256: str | None = Field(
        default=None, description="SHA-256 of the original value (hex), to match it when cut"
    )
    value_truncated: bool = Field(
        default=False, description="value holds only a prefix: the whole would not fit"
    )
    key: str | None
    key_encoding: Literal["utf-8", "base64", "none"]
    key_truncated: bool = Field(default=False, description="key holds only its first 1 KiB")
    error_class: str
    error_reason: str = Field(description="short stable kind: not_json, schema, oversized, ...")
    error_message: str
    source_topic: str
    source_partition: int
    source_offset: int
    source_timestamp: datetime | None
    consumer_group: str
    failed_at: datetime
