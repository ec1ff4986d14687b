"""Audience contracts: profile updates in, each customer's current segment, segment changes out."""

from __future__ import annotations

import uuid
from typing import Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.events import (
    AGE_MAX,
    INCOME_MAX,
    Gender,
    Identifier,
    parse_gender,
    uuid5_text,
)

__all__ = [
    "CHANGE_NAMESPACE",
    "PROFILE_UPDATE",
    "ChangeReason",
    "CustomerState",
    "ProfileUpdate",
    "SegmentChanged",
    "segment_change_id",
]

#: The `kind` a profile update carries on the signup topic; records without it are signups.
PROFILE_UPDATE = "profile_update"

ChangeReason = Literal["signup", "profile_update", "model_change"]

#: uuid5 namespace of segment-change ids (its 16 bytes): fixed forever so ids stay comparable
#: across releases.
CHANGE_NAMESPACE = uuid.UUID("0b7f5c1e-8d2a-5e43-a6f1-3c9d7e2b4a10").bytes


class ProfileUpdate(BaseModel):
    """Changed features of a known customer, on the signup topic (key customer_id).

    `kind` must be `profile_update`; only the features given change. An update older than
    the customer's state (by `updated_at`) is ignored and counted. An update for a customer
    the worker has never seen is dead-lettered unless it gives age and annual_income.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: Literal["profile_update"]
    event_id: Identifier
    customer_id: Identifier
    age: float | None = Field(default=None, ge=0, le=AGE_MAX, strict=True, allow_inf_nan=False)
    annual_income: float | None = Field(
        default=None, ge=0, le=INCOME_MAX, strict=True, allow_inf_nan=False
    )
    gender: Gender | None = None
    updated_at: AwareDatetime

    @field_validator("gender", mode="before")
    @classmethod
    def _normalise_gender(cls, value: Any) -> Gender | None:
        return None if value is None else parse_gender(value)

    @model_validator(mode="after")
    def _changes_something(self) -> Self:
        if self.age is None and self.annual_income is None and self.gender is None:
            raise ValueError("a profile update gives at least one of age, annual_income, gender")
        return self


class CustomerState(BaseModel):
    """A customer's current segment: the value on `customer-segments.current` (compacted,
    key customer_id) and in the worker's local store.

    `revision` counts the changes of this customer's state; `since` is when the customer
    entered the current segment; `updated_at` is the event time of the latest features.
    """

    model_config = ConfigDict(frozen=True)

    customer_id: str
    age: float
    annual_income: float
    gender: Gender
    segment_id: str = Field(description="stable slug, e.g. vip-luxury")
    segment_name: str
    model_version: str
    since: AwareDatetime
    updated_at: AwareDatetime
    revision: int = Field(ge=1)
    source_event_id: str | None = Field(
        description="the event that made this revision; null for a re-scoring by a new model"
    )


class SegmentChanged(BaseModel):
    """A customer entered a segment (and exited another), on `customer-segment-changes`.

    Emitted exactly once per actual change, never when the segment stays the same.
    """

    model_config = ConfigDict(frozen=True)

    event_id: str = Field(description="uuid5 of customer_id and the state's revision")
    customer_id: str
    entered_segment_id: str
    entered_segment_name: str
    action: str = Field(description="the entered segment's strategic action")
    exited_segment_id: str | None = Field(description="null for a new customer")
    reason: ChangeReason
    model_version: str
    previous_model_version: str | None
    source_event_id: str | None = Field(description="null for reason model_change")
    changed_at: AwareDatetime
    revision: int


def segment_change_id(customer_id: str, revision: int) -> str:
    """Deterministic id of the change that made revision `revision` of a customer's state."""
    return uuid5_text(CHANGE_NAMESPACE, f"{customer_id}\x1f{revision}")
