"""One batch of raw records in, assignments and dead letters out: the worker's whole logic.

Free of Faust so it can be tested and benchmarked alone; the agent only feeds it records and
sends what it returns.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import repeat
from typing import NamedTuple, overload

import numpy as np
from pydantic_core import to_json

from schemas import (
    CustomerSignup,
    DeadLetter,
    InvalidEventError,
    ModelManifest,
    ProfileUpdate,
    assignment_event_id,
)
from stream_app.decoding import decode_event
from stream_app.exceptions import StateDisabledError
from stream_app.scorer import Scorer, feature_matrix

__all__ = [
    "BatchOutcome",
    "OutgoingRecord",
    "RecordColumns",
    "SignupTexts",
    "SourceRecord",
    "dead_letter",
    "json_strings",
    "process_records",
    "signup_texts",
]


class SourceRecord(NamedTuple):
    """A consumed record as it came off the input topic."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp: float | None = None  # seconds since the epoch


#: Kafka record headers, as confluent-kafka's producer takes them.
Headers = list[tuple[str, str | bytes | None]]


class OutgoingRecord(NamedTuple):
    """A record to produce: key, value and headers (a batch's records may share one list; None
    for none); partition -1 leaves the choice to the producer's partitioner."""

    key: bytes | None
    value: bytes
    headers: Headers | None
    partition: int = -1


class RecordColumns(Sequence[OutgoingRecord]):
    """Records without headers for one topic, kept as a column of keys, one of values and one
    of partitions instead of a tuple per record.

    A batch's records live until their commit. The garbage collector never stops tracking a
    tuple subclass such as OutgoingRecord, so each collection meanwhile would go through every
    record again; three lists are three objects. Read as a sequence, it makes the records.
    """

    __slots__ = ("keys", "partitions", "values")

    def __init__(self) -> None:
        self.keys: list[bytes] = []
        self.values: list[bytes] = []
        self.partitions: list[int] = []

    def append(self, key: bytes, value: bytes, partition: int = -1) -> None:
        """Add one record."""
        self.keys.append(key)
        self.values.append(value)
        self.partitions.append(partition)

    def extend(self, keys: list[bytes], values: list[bytes], partitions: Sequence[int]) -> None:
        """Add a column of records."""
        self.keys.extend(keys)
        self.values.extend(values)
        self.partitions.extend(partitions)

    def __len__(self) -> int:
        return len(self.keys)

    @overload
    def __getitem__(self, index: int) -> OutgoingRecord: ...
    @overload
    def __getitem__(self, index: slice) -> list[OutgoingRecord]: ...
    def __getitem__(self, index: int | slice) -> OutgoingRecord | list[OutgoingRecord]:
        if isinstance(index, slice):
            return list(self)[index]
        return OutgoingRecord(self.keys[index], self.values[index], None, self.partitions[index])

    def __iter__(self) -> Iterator[OutgoingRecord]:
        return map(OutgoingRecord, self.keys, self.values, repeat(None), self.partitions)


class SignupTexts(NamedTuple):
    """The customer id and the event id of each signup of a batch, as the inside of a JSON
    string."""

    customer_ids: list[bytes]
    event_ids: list[bytes]


def signup_texts(signups: Sequence[CustomerSignup]) -> SignupTexts | None:
    """Both id columns of the signups, each escaped by one pydantic-core call; None if the
    escaping did not give one text per signup (see `json_strings`)."""
    customer_ids = json_strings([s.customer_id for s in signups])
    event_ids = json_strings([s.event_id for s in signups])
    if len(customer_ids) == len(event_ids) == len(signups):
        return SignupTexts(customer_ids, event_ids)
    return None


@dataclass
class BatchOutcome:
    """What one batch produced; every input is in exactly one of the two lists."""

    assignments: list[OutgoingRecord] = field(default_factory=list)
    dead_letters: list[OutgoingRecord] = field(default_factory=list)
    segment_counts: dict[str, int] = field(default_factory=dict)
    reason_counts: dict[str, int] = field(default_factory=dict)
    #: The valid signups and their live labels, so shadow scoring need not decode again.
    signups: list[CustomerSignup] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    #: Profile updates applied to customer state (set by the data plane).
    updates: int = 0
    #: Every valid event (signups and profile updates), in input order, and the record of each
    #: (two lists: no tuple per event for the garbage collector to track until the commit).
    events: list[CustomerSignup | ProfileUpdate] = field(default_factory=list)
    event_records: list[SourceRecord] = field(default_factory=list)
    #: The customer and event id of each of `signups`, escaped for JSON (see `signup_texts`);
    #: the customer state writes them into its records too.
    signup_texts: SignupTexts | None = None


def _as_text(raw: bytes | None) -> tuple[str | None, str]:
    """Bytes as text for a JSON body: UTF-8 when they are, base64 when not."""
    if raw is None:
        return None, "none"
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


def _prefix_as(raw: bytes, n: int, encoding: str) -> str:
    """The first n bytes of raw in the encoding the whole value was given."""
    if encoding == "base64":
        return base64.b64encode(raw[:n]).decode("ascii")
    # A cut may split a character: drop its incomplete tail.
    return raw[:n].decode("utf-8", "ignore")


#: Room kept for the record's key, headers and batch framing beside the dead letter's body.
_RECORD_OVERHEAD = 1024
#: Longest key kept whole in a dead letter; a longer one is cut like the value.
_KEY_MAX_BYTES = 1024


def dead_letter(
    record: SourceRecord,
    error: Exception,
    consumer_group: str,
    now: datetime,
    max_bytes: int = 1_000_000,
) -> OutgoingRecord:
    """A dead letter in the body and, Kafka Connect style, as `__connect.errors.*` headers.

    A dead letter never exceeds max_bytes: a value too large to carry whole is cut to fit,
    keeping the reason, the source coordinates, the original size and a SHA-256 of the value,
    so one oversized record can never block the records behind it.
    """
    reason = getattr(error, "reason", "error")
    error_class = f"{type(error).__module__}.{type(error).__qualname__}"
    raw_key = record.key
    key_truncated = raw_key is not None and len(raw_key) > _KEY_MAX_BYTES
    if raw_key is not None and key_truncated:
        raw_key = raw_key[:_KEY_MAX_BYTES]
    key, key_encoding = _as_text(raw_key)
    raw = record.value
    value, value_encoding = _as_text(raw)
    letter = DeadLetter(
        value=value,
        value_encoding=value_encoding,
        value_size=len(raw) if raw is not None else None,
        value_sha256=hashlib.sha256(raw).hexdigest() if raw is not None else None,
        value_truncated=False,
        key=key,
        key_encoding=key_encoding,
        key_truncated=key_truncated,
        error_class=error_class,
        error_reason=reason,
        error_message=str(error)[:4096],
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        source_timestamp=(
            datetime.fromtimestamp(record.timestamp, UTC) if record.timestamp is not None else None
        ),
        consumer_group=consumer_group,
        failed_at=now,
    )
    body = letter.model_dump_json().encode()
    budget = max_bytes - _RECORD_OVERHEAD - len(raw_key or b"")
    if raw is not None and len(body) > budget:
        # Escaping makes the value's share of the body grow by an unknown factor (a control
        # character becomes six bytes): shrink the prefix in proportion until it fits.
        empty = len(letter.model_copy(update={"value": ""}).model_dump_json().encode())
        room = max(budget - empty, 0)
        n = min(len(raw), room)
        while True:
            prefix = _prefix_as(raw, n, value_encoding)
            body = (
                letter.model_copy(update={"value": prefix, "value_truncated": True})
                .model_dump_json()
                .encode()
            )
            if len(body) <= budget or n == 0:
                break
            n = int(n * room / (len(body) - empty) * 0.98)
    headers: Headers = [
        ("__connect.errors.topic", record.topic.encode()),
        ("__connect.errors.partition", str(record.partition).encode()),
        ("__connect.errors.offset", str(record.offset).encode()),
        ("__connect.errors.timestamp", str(record.timestamp or "").encode()),
        ("__connect.errors.consumer.group", consumer_group.encode()),
        ("__connect.errors.exception.class.name", error_class.encode()),
        ("__connect.errors.exception.message", str(error).encode()[:4096]),
        ("__connect.errors.reason", reason.encode()),
    ]
    return OutgoingRecord(raw_key, body, headers)


def process_records(
    records: Sequence[SourceRecord],
    scorer: Scorer,
    *,
    consumer_group: str,
    max_event_bytes: int,
    echo_customer: bool = False,
    now: datetime | None = None,
    dead_letter_max_bytes: int = 1_000_000,
    keep_state: bool = False,
) -> BatchOutcome:
    """Decode, validate and score a batch; invalid records become dead letters.

    With keep_state, profile updates are valid events too, and every valid event is kept in
    `events` for the customer state (stream_app.audiences); without, they are dead letters.
    """
    now = now or datetime.now(UTC)
    outcome = BatchOutcome()
    # A model that scores by gender cannot take an unrecognised spelling as unknown.
    gender_required = "gender_female" in scorer.manifest.features
    signups: list[CustomerSignup] = []
    events, event_records = outcome.events, outcome.event_records
    for record in records:
        try:
            event = decode_event(
                record.key, record.value, max_event_bytes, gender_required=gender_required
            )
            if type(event) is CustomerSignup:
                signups.append(event)
            elif not keep_state:
                raise StateDisabledError(
                    "a profile update, but this worker keeps no customer state "
                    "(SEGSTREAM_CUSTOMER_STATE=false)"
                )
            if keep_state:
                events.append(event)
                event_records.append(record)
        except InvalidEventError as exc:
            outcome.dead_letters.append(
                dead_letter(record, exc, consumer_group, now, dead_letter_max_bytes)
            )
            outcome.reason_counts[exc.reason] = outcome.reason_counts.get(exc.reason, 0) + 1
    if not signups:
        return outcome
    manifest = scorer.manifest
    scored = scorer.score(feature_matrix(signups, manifest.features))
    labels = scored.labels.tolist()
    outcome.signups, outcome.labels = signups, labels
    # The echo writes assignments one at a time: the columns then serve the state alone.
    texts = signup_texts(signups) if keep_state or not echo_customer else None
    outcome.signup_texts = texts
    values = _assignment_values(
        signups,
        labels,
        scored.distances.tolist(),
        scored.outliers.tolist(),
        manifest,
        now,
        echo_customer,
        texts,
    )
    # One header list for the whole batch: nothing downstream changes it.
    version_header: Headers = [("segstream.model.version", manifest.version.encode())]
    # tuple.__new__: a NamedTuple without its generated __new__, a third cheaper per record.
    make = tuple.__new__
    outcome.assignments = [
        make(OutgoingRecord, (signup.customer_id.encode(), value, version_header, -1))
        for signup, value in zip(signups, values, strict=True)
    ]
    segment_ids = [segment.id for segment in manifest.segments]
    counts = np.bincount(scored.labels, minlength=len(segment_ids)).tolist()
    outcome.segment_counts = {segment_ids[i]: n for i, n in enumerate(counts) if n}
    return outcome


def _assignment_values(
    signups: Sequence[CustomerSignup],
    labels: Sequence[int],
    distances: Sequence[float],
    outliers: Sequence[bool],
    manifest: ModelManifest,
    now: datetime,
    echo_customer: bool,
    texts: SignupTexts | None,
) -> list[bytes]:
    """SegmentAssignment JSON of each scored signup, byte for byte what the model would dump.

    Every value here is made by the worker itself, so there is nothing left to validate, and
    nothing is serialised per event by a Python call: each column of the batch goes through
    pydantic-core's own `to_json` once, the per-segment fields are written once per batch,
    and each event's bytes are one format of those pieces.
    tests/unit/stream_app/test_assignment_encoding.py checks the bytes against the dump.
    """
    numbers = to_json(list(distances))[1:-1].split(b",")
    if echo_customer or texts is None or len(numbers) != len(signups):
        # Without the echo, this cannot happen with pydantic-core's escaping (see
        # json_strings); never guess.
        return _assignment_values_one_by_one(
            signups, labels, distances, outliers, manifest, now, echo_customer
        )
    version = manifest.version
    middles = [
        b',"segment_id":%b,"segment_name":%b,"action":%b,"model_version":%b,"distance":'
        % (to_json(seg.id), to_json(seg.name), to_json(seg.action), to_json(version))
        for seg in manifest.segments
    ]
    tail = b',"scored_at":%b}' % to_json(now)
    flags = (b',"outlier":false', b',"outlier":true')
    return [
        b'{"event_id":"%b","source_event_id":"%b","customer_id":"%b"%b%b%b%b'
        % (
            assignment_event_id(signup.event_id, version).encode(),
            event_id,
            customer_id,
            middles[label],
            number,
            flags[outlier],
            tail,
        )
        for signup, event_id, customer_id, label, number, outlier in zip(
            signups, texts.event_ids, texts.customer_ids, labels, numbers, outliers, strict=True
        )
    ]


def json_strings(texts: Sequence[object]) -> list[bytes]:
    """Each text (or datetime) as the inside of a JSON string, escaped by one pydantic-core
    call.

    The array's items are separated by `","`; inside an item every quote is escaped as `\\"`,
    so that sequence can only be a separator.
    """
    return to_json(texts)[2:-2].split(b'","')


def _assignment_values_one_by_one(
    signups: Sequence[CustomerSignup],
    labels: Sequence[int],
    distances: Sequence[float],
    outliers: Sequence[bool],
    manifest: ModelManifest,
    now: datetime,
    echo_customer: bool,
) -> list[bytes]:
    """The same bytes, one `to_json` per event: the reference, and the path with the echo."""
    version = manifest.version
    segments = manifest.segments
    scored_at = to_json(now).decode()[1:-1]  # the datetime as pydantic writes it, once
    values = []
    for signup, label, distance, outlier in zip(signups, labels, distances, outliers, strict=True):
        segment = segments[label]
        body: dict[str, object] = {
            "event_id": assignment_event_id(signup.event_id, version),
            "source_event_id": signup.event_id,
            "customer_id": signup.customer_id,
            "segment_id": segment.id,
            "segment_name": segment.name,
            "action": segment.action,
            "model_version": version,
            "distance": distance,
            "outlier": outlier,
            "scored_at": scored_at,
        }
        if echo_customer:
            body["customer"] = {
                "age": signup.age,
                "annual_income": signup.annual_income,
                "gender": signup.gender.value,
            }
        values.append(to_json(body))
    return values
