"""Each customer's current segment: kept per owned partition, changed exactly once per change.

The Kafka Streams changelog pattern on Kafka itself. Every owned input partition has a local
RocksDB store (rocksdict) under SEGSTREAM_DATA_DIR/state, and a partition of the compacted
state topic with the same number: every state change is produced there in the same
transaction as the assignments, the segment changes and the input offsets, and is written to
the local store only once that transaction has committed: while the next transaction
commits (the data plane waits on the broker then), or before the store is scanned in key
order or closed; lookups meanwhile read them from memory. A store therefore never holds what
Kafka does not, and a
worker that takes a partition over replays the state topic's partition into it, from the
offset its store had reached (a checkpoint kept in the store) or from the start.

Between the batches of input, a model that went live re-scores the customers in state in
slices (`Resegmenter`): a customer whose state already carries the live version is done,
so a re-segmentation resumes after a crash without missing or repeating anyone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import numpy as np
from confluent_kafka import Consumer, KafkaError, TopicPartition
from pydantic_core import from_json, to_json

from schemas import (
    CHANGE_NAMESPACE,
    CustomerSignup,
    Gender,
    ModelManifest,
    ProfileUpdate,
    segment_change_id,
)
from stream_app.metrics import AudienceMetrics
from stream_app.native import ChangePieces, StatePieces, first_signup_records
from stream_app.pipeline import RecordColumns, SignupTexts, SourceRecord, signup_texts
from stream_app.pipeline import json_strings as _json_strings
from stream_app.scorer import Scorer

if TYPE_CHECKING:
    # RocksDB is loaded by the first store: a worker without customer state does without it
    # (7 MB of resident memory).
    from rocksdict import WriteBatch

__all__ = [
    "Audiences",
    "PartitionStore",
    "RestoreInterrupted",
    "StateOutcome",
]

log = logging.getLogger(__name__)

#: Store key of the state-topic offset the store has been restored or checkpointed to.
_CHECKPOINT = b"\x00checkpoint"
#: Customer ids never start with a control character (schemas.events): store bookkeeping does.
_FIRST_CUSTOMER_KEY = b"\x01"
_RESTORE_BATCH = 10_000

Event = CustomerSignup | ProfileUpdate


class RestoreInterrupted(Exception):  # noqa: N818 - an outcome, not a fault
    """The worker was asked to stop while a partition's state was being restored."""


def _write_batch() -> WriteBatch:
    from rocksdict import WriteBatch

    return WriteBatch(raw_mode=True)


class PartitionStore:
    """One input partition's customers: RocksDB on disk, plus the writes of the open commit
    and those of the last commit that RocksDB has not taken yet."""

    def __init__(self, path: Path) -> None:
        from rocksdict import BlockBasedOptions, Options, Rdict, WriteOptions

        path.mkdir(parents=True, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        # Small write buffers: a worker owns several partitions and memory is budgeted.
        options.set_write_buffer_size(16 * 1024 * 1024)
        options.set_max_write_buffer_number(2)
        # Most signups are customers not seen before: a Bloom filter answers "not here"
        # without reading a block from disk.
        table = BlockBasedOptions()
        table.set_bloom_filter(10, False)
        options.set_block_based_table_factory(table)
        # And one over the memtable's keys, which a lookup would otherwise search in full.
        options.set_memtable_whole_key_filtering(True)
        options.set_memtable_prefix_bloom_ratio(0.1)
        self.path = path
        self.db = Rdict(str(path), options)
        # No write-ahead log: the state topic is the store's log (as in Kafka Streams). After
        # a crash RocksDB comes back with a prefix of its writes, the checkpoint among them
        # or an older one, and the restore replays the state topic from there.
        writes = WriteOptions()
        writes.disable_wal = True  # type: ignore[method-assign,assignment]  # a property at run time; the stub says method
        self.db.set_write_options(writes)
        #: Writes of the open commit.
        self.pending: dict[bytes, bytes | None] = {}
        #: Writes of the last commit, until `write_committed` hands them to RocksDB.
        self.unwritten: dict[bytes, bytes | None] = {}

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """Current values of keys: the open commit's, else the last commit's, else the
        store's."""
        pending, unwritten = self.pending, self.unwritten
        if not pending and not unwritten:
            return cast(list[bytes | None], self.db.get(cast(Any, list(keys))))
        missing = [k for k in keys if k not in pending and k not in unwritten]
        # rocksdict types get() as taking one key; a list of keys is one multi-get.
        values = cast(list[bytes | None], self.db.get(cast(Any, missing))) if missing else []
        found = dict(zip(missing, values, strict=True))
        return [
            pending[k] if k in pending else unwritten[k] if k in unwritten else found[k]
            for k in keys
        ]

    def committed(self, key: bytes) -> bytes | None:
        """The value as of the last commit (what a lookup answers)."""
        # Read before RocksDB: write_committed writes RocksDB first and then lets go of
        # the dictionary, so a key is always in one of the two.
        unwritten = self.unwritten
        if key in unwritten:
            return unwritten[key]
        value: bytes | None = self.db.get(key)
        return value

    def stage(self, key: bytes, value: bytes) -> None:
        """Note a write of the open commit; it reaches the store only when the commit does."""
        self.pending[key] = value

    def apply(self) -> None:
        """The open commit went through: its writes are committed, RocksDB takes them at the
        next `write_committed`."""
        if not self.pending:
            return
        self.write_committed()
        self.unwritten, self.pending = self.pending, {}

    def write_committed(self) -> None:
        """Write the committed changes RocksDB has not taken yet."""
        if not self.unwritten:
            return
        batch = _write_batch()
        for key, value in self.unwritten.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        self.db.write(batch)
        self.unwritten = {}

    def discard(self) -> None:
        """The open commit was aborted: forget its changes."""
        self.pending.clear()

    @property
    def checkpoint(self) -> int | None:
        """The state-topic offset this store is known to be complete up to."""
        value = self.db.get(_CHECKPOINT)
        return int(value) if value is not None else None

    def set_checkpoint(self, offset: int) -> None:
        """Record that the store holds every committed change before offset."""
        self.db.put(_CHECKPOINT, str(offset).encode())

    def customers(self) -> int:
        """RocksDB's estimate of the number of customers."""
        return int(self.db.property_int_value("rocksdb.estimate-num-keys") or 0)

    def scan(self, after: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        """Up to limit (key, value) pairs with key > after, in key order, as of the last
        commit."""
        self.write_committed()
        iterator = self.db.iter()
        iterator.seek(max(after, _FIRST_CUSTOMER_KEY))
        found: list[tuple[bytes, bytes]] = []
        while iterator.valid() and len(found) < limit:
            key = iterator.key()
            if key != after:
                found.append((key, iterator.value()))
            iterator.next()
        del iterator
        return found

    def close(self) -> None:
        """Write what was committed, flush the memtables (there is no log to replay them
        from) and release the store."""
        self.write_committed()
        self.db.flush()
        self.db.close()


@dataclass
class StateOutcome:
    """What one batch did to customer state."""

    changelog: RecordColumns = field(default_factory=RecordColumns)
    changes: RecordColumns = field(default_factory=RecordColumns)
    #: Positions (in the batch's event list) of updates for customers never seen.
    unknown: list[int] = field(default_factory=list)
    stale: int = 0
    change_counts: Counter[str] = field(default_factory=Counter)
    rescored: int = 0


def _iso(moment: datetime) -> str:
    """A datetime as pydantic writes it, in UTC so that states compare and read alike."""
    text = moment.isoformat()
    if text.endswith("+00:00"):  # the common case: already UTC
        return text[:-6] + "Z"
    return moment.astimezone(UTC).isoformat()[:-6] + "Z"


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


#: Each gender as the inside of its JSON string.
_GENDER_JSON = {gender: gender.value.encode() for gender in Gender}


def _text(value: str) -> bytes:
    """The inside of a JSON string holding value (ids have no control characters)."""
    if '"' in value or "\\" in value:
        return to_json(value)[1:-1]
    return value.encode()


def _number(value: float) -> bytes:
    """A float as pydantic writes it: Python's shortest repr, but for exponents."""
    if value == 0 or 1e-4 <= abs(value) < 1e16:
        return repr(float(value)).encode()
    return to_json(value)


def _optional_text(value: str | None) -> bytes:
    return b"null" if value is None else b'"%b"' % _text(value)


class _State(NamedTuple):
    """What a batch needs of a customer's state (CustomerState without the names)."""

    features: tuple[float, float, str]  # age, annual_income, gender
    segment_id: str
    label: int  # index of the segment in the manifest that wrote it; -1 when read back
    model_version: str
    since: str
    updated_at: str
    revision: int
    source_event_id: str | None


def _read_state(value: bytes) -> _State:
    """A stored CustomerState as the batch needs it."""
    state = from_json(value)
    return _State(
        (state["age"], state["annual_income"], state["gender"]),
        state["segment_id"],
        -1,
        state["model_version"],
        state["since"],
        state["updated_at"],
        state["revision"],
        state["source_event_id"],
    )


class _Writer:
    """Builds the state and change records of one batch, partition by partition.

    The JSON is written by formatting, not by a serialiser per record: the fields are the
    contracts' (CustomerState, SegmentChanged) in their order, and tests parse them back
    through those models.
    """

    def __init__(
        self,
        stores: dict[int, PartitionStore],
        manifest: ModelManifest,
        outcome: StateOutcome,
    ) -> None:
        self.stores = stores
        self.manifest = manifest
        self.outcome = outcome
        version = manifest.version
        self.version_json = to_json(version)
        # Per segment, once per batch: its id, name and action as JSON strings.
        self.segment_json = [
            (to_json(s.id), to_json(s.name), to_json(s.action)) for s in manifest.segments
        ]
        self.last: dict[tuple[int, bytes], _State] = {}

    def write(
        self,
        partition: int,
        key: bytes,
        previous: _State | None,
        features: tuple[float, float, str],
        label: int,
        updated_at: str,
        reason: str,
        source_event_id: str | None,
        changed_at: str,
    ) -> None:
        """Move the customer to its new state; note a change when its segment id differs.

        A newer event that repeats the features still moves `updated_at` on: an event dated
        before it is stale whether it comes in the same batch or a later one.
        """
        segment = self.manifest.segments[label]
        version = self.manifest.version
        if previous is not None:
            same_segment = previous.segment_id == segment.id
            if (
                same_segment
                and previous.model_version == version
                and previous.features == features
                and previous.updated_at == updated_at
            ):
                return
            since = previous.since if same_segment else changed_at
            revision = previous.revision + 1
        else:
            same_segment, since, revision = False, changed_at, 1
        self.last[(partition, key)] = _State(
            features, segment.id, label, version, since, updated_at, revision, source_event_id
        )
        if same_segment:
            return
        customer_id = key.decode()
        segment_id, segment_name, action = self.segment_json[label]
        exited = b"null" if previous is None else to_json(previous.segment_id)
        before = b"null" if previous is None else to_json(previous.model_version)
        change = (
            b'{"event_id":"%b","customer_id":"%b","entered_segment_id":%b,'
            b'"entered_segment_name":%b,"action":%b,"exited_segment_id":%b,"reason":"%b",'
            b'"model_version":%b,"previous_model_version":%b,"source_event_id":%b,'
            b'"changed_at":"%b","revision":%d}'
            % (
                segment_change_id(customer_id, revision).encode(),
                _text(customer_id),
                segment_id,
                segment_name,
                action,
                exited,
                reason.encode(),
                self.version_json,
                before,
                _optional_text(source_event_id),
                changed_at.encode(),
                revision,
            )
        )
        self.outcome.changes.append(key, change)
        self.outcome.change_counts[reason] += 1

    def first_signups(
        self,
        partitions: list[int],
        keys: list[bytes],
        events: list[CustomerSignup],
        labels: list[int],
        texts: SignupTexts | None = None,
    ) -> None:
        """State and change records of customers signing up, built a column at a time.

        The same bytes `write` and `finish` would make (revision 1, since = updated_at =
        changed_at = the signup time, no segment exited): each text column is escaped by one
        pydantic-core call for the whole batch (or taken from `texts`, the ids the
        assignments of these signups were written with), and the records of the whole batch
        are made by one call into C (stream_app.native).
        """
        texts = texts or signup_texts(events)
        moments = _json_strings([signup.signed_up_at for signup in events])
        made = None
        if texts is not None and len(moments) == len(events):
            customers, sources = texts
            # pydantic writes a UTC time with "Z"; other offsets are moved to UTC one by one.
            moments = [
                m if m.endswith(b"Z") else _iso(signup.signed_up_at).encode()
                for m, signup in zip(moments, events, strict=True)
            ]
            columns = (
                customers,
                sources,
                [signup.age for signup in events],
                [signup.annual_income for signup in events],
                [_GENDER_JSON[signup.gender] for signup in events],
                moments,
            )
            made = first_signup_records(CHANGE_NAMESPACE, keys, labels, columns, self._pieces())
        if made is None:
            # An age or income whose repr has an exponent, or a column that did not
            # split into one text per event (cannot happen with pydantic-core's escaping,
            # see _json_strings): one at a time, never a guess.
            for partition, key, signup, label in zip(partitions, keys, events, labels, strict=True):
                moment = _iso(signup.signed_up_at)
                self.write(
                    partition, key, None, _features_of(signup), label, moment, "signup",
                    signup.event_id, moment,
                )  # fmt: skip
            return
        states, changes = made
        pending = {partition: store.pending for partition, store in self.stores.items()}
        for partition, key, state in zip(partitions, keys, states, strict=True):
            pending[partition][key] = state
        self.outcome.changelog.extend(keys, states, partitions)
        self.outcome.changes.extend(keys, changes, [-1] * len(keys))
        self.outcome.change_counts["signup"] += len(keys)

    def _pieces(self) -> tuple[list[StatePieces], list[ChangePieces]]:
        """Per segment, the literal text of a first signup's state and change records around
        the customer's own fields."""
        version = self.version_json
        states: list[StatePieces] = []
        changes: list[ChangePieces] = []
        for segment_id, segment_name, action in self.segment_json:
            states.append(
                (
                    b'{"customer_id":"',
                    b'","age":',
                    b',"annual_income":',
                    b',"gender":"',
                    b'","segment_id":%b,"segment_name":%b,"model_version":%b,"since":"'
                    % (segment_id, segment_name, version),
                    b'","updated_at":"',
                    b'","revision":1,"source_event_id":"',
                    b'"}',
                )
            )
            changes.append(
                (
                    b'{"event_id":"',
                    b'","customer_id":"',
                    b'","entered_segment_id":%b,"entered_segment_name":%b,"action":%b,'
                    b'"exited_segment_id":null,"reason":"signup","model_version":%b,'
                    b'"previous_model_version":null,"source_event_id":"'
                    % (segment_id, segment_name, action, version),
                    b'","changed_at":"',
                    b'","revision":1}',
                )
            )
        return states, changes

    def finish(self) -> None:
        """Stage each customer's last state of the batch and produce it to the state topic."""
        stores, changelog = self.stores, self.outcome.changelog
        for (partition, key), state in self.last.items():
            segment_id, segment_name, _action = self.segment_json[state.label]
            age, income, gender = state.features
            value = (
                b'{"customer_id":"%b","age":%b,"annual_income":%b,"gender":"%b",'
                b'"segment_id":%b,"segment_name":%b,"model_version":%b,"since":"%b",'
                b'"updated_at":"%b","revision":%d,"source_event_id":%b}'
                % (
                    _text(key.decode()),
                    _number(age),
                    _number(income),
                    gender.encode(),
                    segment_id,
                    segment_name,
                    self.version_json,
                    state.since.encode(),
                    state.updated_at.encode(),
                    state.revision,
                    _optional_text(state.source_event_id),
                )
            )
            stores[partition].stage(key, value)
            changelog.append(key, value, partition)


def _features_of(signup: CustomerSignup) -> tuple[float, float, str]:
    return (signup.age, signup.annual_income, signup.gender.value)


def _feature_rows(features: list[tuple[float, float, str]], names: Sequence[str]) -> Any:
    columns = {"age": 0, "annual_income": 1}
    rows = [
        [
            (1.0 if f[2] == Gender.FEMALE.value else 0.0)
            if name == "gender_female"
            else f[columns[name]]
            for name in names
        ]
        for f in features
    ]
    return np.asarray(rows, dtype=np.float64).reshape(len(features), len(names))


class Audiences:
    """The local stores of the owned partitions and the state changes of each batch."""

    def __init__(
        self,
        root: Path,
        input_topic: str,
        state_topic: str,
        metrics: AudienceMetrics,
        reader_config: dict[str, Any],
    ) -> None:
        self.root = root
        self.input_topic = input_topic
        self.state_topic = state_topic
        self.metrics = metrics
        self._reader_config = reader_config
        self._reader: Consumer | None = None
        self.stores: dict[int, PartitionStore] = {}
        # Lookups come from the web server's thread; stores open and close on the data plane's.
        self._lock = threading.Lock()

    # -- ownership ---------------------------------------------------------------------------

    def _path(self, partition: int) -> Path:
        return self.root / f"{self.input_topic}-{partition}"

    def open(
        self, partition: int, timeout: float, stopping: Callable[[], bool] = lambda: False
    ) -> None:
        """Open the partition's store and replay the state topic into it up to its end.

        Raises RestoreInterrupted when `stopping` turns true (the worker is asked to stop).
        """
        began = time.monotonic()
        store = PartitionStore(self._path(partition))
        try:
            restored = self._restore(store, partition, timeout, stopping)
        except BaseException:
            store.close()  # what was replayed stays; the checkpoint says how far it got
            raise
        with self._lock:
            self.stores[partition] = store
        seconds = time.monotonic() - began
        self.metrics.restore_seconds.observe(seconds)
        self.metrics.restored.inc(restored)
        self._count_customers()
        log.info(
            "segstream: state of %s[%d] ready: %d records replayed in %.1f s (%d customers)",
            self.input_topic,
            partition,
            restored,
            seconds,
            store.customers(),
        )

    def close(self, partition: int, clean: bool) -> None:
        """Release the partition's store; a clean close records how far it is complete."""
        with self._lock:
            store = self.stores.pop(partition, None)
        if store is None:
            return
        store.discard()
        store.write_committed()  # before the checkpoint that vouches for it
        if clean:
            end = self._end_offset(partition)
            if end is not None:
                store.set_checkpoint(end)
        store.close()
        self._count_customers()

    def close_all(self, clean: bool) -> None:
        """Release every store (the worker stops)."""
        for partition in list(self.stores):
            self.close(partition, clean)
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _count_customers(self) -> None:
        self.metrics.customers.set(sum(s.customers() for s in self.stores.values()))

    def _reader_for(self) -> Consumer:
        if self._reader is None:
            self._reader = Consumer(self._reader_config)
        return self._reader

    def _end_offset(self, partition: int) -> int | None:
        try:
            _low, high = self._reader_for().get_watermark_offsets(
                TopicPartition(self.state_topic, partition), timeout=5
            )
        except Exception as exc:  # noqa: BLE001 - without a checkpoint the next open replays more
            log.warning("segstream: no checkpoint for %s[%d]: %s", self.state_topic, partition, exc)
            return None
        return int(high)

    def _restore(
        self,
        store: PartitionStore,
        partition: int,
        timeout: float,
        stopping: Callable[[], bool],
    ) -> int:
        """Replay the state topic's partition from the store's checkpoint to its end."""
        reader = self._reader_for()
        start = store.checkpoint
        _low, high = reader.get_watermark_offsets(
            TopicPartition(self.state_topic, partition), timeout=timeout
        )
        if high <= (start or 0):
            return 0  # nothing was written since the store's checkpoint
        tp = TopicPartition(self.state_topic, partition, start if start is not None else -2)
        reader.assign([tp])
        restored, end = 0, start
        deadline = time.monotonic() + timeout
        try:
            while True:
                if stopping():
                    raise RestoreInterrupted(
                        f"stopped while restoring {self.state_topic}[{partition}]"
                    )
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"restoring {self.state_topic}[{partition}] took over {timeout:.0f} s"
                    )
                # A short wait: consume() returns a partial batch only when its wait ends.
                messages = reader.consume(_RESTORE_BATCH, 0.05)
                batch = _write_batch()
                done = False
                for message in messages:
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            done = True
                            continue
                        raise RuntimeError(f"restoring {self.state_topic}: {error.str()}")
                    key, value = message.key(), message.value()
                    if key is None:
                        continue
                    if value is None:
                        batch.delete(key)
                    else:
                        batch.put(key, value)
                    restored += 1
                    end = message.offset() + 1  # type: ignore[operator]  # set when consumed
                store.db.write(batch)
                if done:
                    break
            # The end of a read_committed partition may lie past the last record (markers).
            position = reader.position([TopicPartition(self.state_topic, partition)])[0].offset
            if position >= 0:
                end = position
        finally:
            reader.unassign()
        if end is not None:
            store.set_checkpoint(end)
        return restored

    # -- the batch's state changes -----------------------------------------------------------

    def commit(self) -> None:
        """The open transaction committed: its changes are the stores' committed state."""
        for store in self.stores.values():
            store.apply()

    def write_committed(self) -> None:
        """Write the stores' committed changes to RocksDB: done while a transaction commits,
        when the data plane would otherwise only wait for the broker."""
        for store in list(self.stores.values()):
            store.write_committed()

    def discard(self) -> None:
        """The open transaction was aborted: forget its changes."""
        for store in self.stores.values():
            store.discard()

    def apply(
        self,
        records: Sequence[SourceRecord],
        events: Sequence[Event],
        signup_labels: Sequence[int],
        scorer: Scorer,
        texts: SignupTexts | None = None,
    ) -> StateOutcome:
        """Move each customer of a batch to its new state; note the segment changes.

        `records` holds the record of each event; `texts`, when given, the escaped ids of
        its signups (BatchOutcome.signup_texts). Signups carry their features whole; an
        update changes the features it gives. An event older than the customer's state is
        ignored (counted as stale); an update for a customer never seen that does not give
        age and income is returned as unknown.
        """
        outcome = StateOutcome()
        manifest = scorer.manifest
        writer = _Writer(self.stores, manifest, outcome)
        partitions = [record.partition for record in records]
        keys = [event.customer_id.encode() for event in events]
        # Each event's stored state, read with one multi-get per partition.
        stored: list[bytes | None] = [None] * len(keys)
        positions: dict[int, list[int]] = {partition: [] for partition in set(partitions)}
        for position, partition in enumerate(partitions):
            positions[partition].append(position)
        for partition, at in positions.items():
            store = self.stores.get(partition)
            if store is None:
                raise RuntimeError(f"no state store for {self.input_topic}[{partition}]")
            for position, value in zip(at, store.get_many([keys[i] for i in at]), strict=True):
                stored[position] = value
        if (
            len(signup_labels) == len(events)
            and stored.count(None) == len(stored)
            and len(set(keys)) == len(keys)
        ):
            # The common batch: only signups, each of a customer never seen, once.
            writer.first_signups(
                partitions,
                keys,
                cast(list[CustomerSignup], events),
                list(signup_labels),
                texts,
            )
            writer.finish()  # stages what first_signups handed to write() if it fell back
            return outcome
        places = list(zip(partitions, keys, strict=True))
        current: dict[tuple[int, bytes], _State | None] = {}
        for where, value in zip(places, stored, strict=True):
            if where not in current:
                current[where] = _read_state(value) if value is not None else None
        # The common case, a customer's first signup and its only event in the batch, is
        # written column by column; every other event goes through the general steps below.
        times = Counter(places)
        labels = iter(signup_labels)
        first: list[int] = []  # positions of first signups
        first_labels: list[int] = []
        others: list[tuple[int, SourceRecord, Event, int]] = []
        for position, (record, event, where) in enumerate(
            zip(records, events, places, strict=True)
        ):
            label = next(labels) if type(event) is CustomerSignup else -1
            if label >= 0 and current[where] is None and times[where] == 1:
                first.append(position)
                first_labels.append(label)
            else:
                others.append((position, record, event, label))
        if first:
            writer.first_signups(
                [partitions[i] for i in first],
                [keys[i] for i in first],
                [cast(CustomerSignup, events[i]) for i in first],
                first_labels,
            )
        # Updates need scoring after their features are merged: one vectorised pass for all.
        steps: list[tuple[int, bytes, tuple[float, float, str], int, str, str, str]] = []
        updated_rows: list[tuple[float, float, str]] = []
        pending_features: dict[tuple[int, bytes], tuple[tuple[float, float, str], str]] = {}
        for position, record, event, label in others:
            key = event.customer_id.encode()
            where = (record.partition, key)
            known = pending_features.get(where)
            if known is None:
                state = current[where]
                if state is not None:
                    known = (state.features, state.updated_at)
            if type(event) is CustomerSignup:
                moment = _iso(event.signed_up_at)
                if known is not None and _moment(known[1]) > event.signed_up_at:
                    outcome.stale += 1
                    continue
                features = _features_of(event)
                steps.append(
                    (record.partition, key, features, label, moment, "signup", event.event_id)
                )
            else:
                assert isinstance(event, ProfileUpdate)
                moment = _iso(event.updated_at)
                if known is None:
                    if event.age is None or event.annual_income is None:
                        outcome.unknown.append(position)
                        continue
                    base: tuple[float, float, str] = (0.0, 0.0, Gender.UNKNOWN.value)
                elif _moment(known[1]) > event.updated_at:
                    outcome.stale += 1
                    continue
                else:
                    base = known[0]
                features = (
                    event.age if event.age is not None else base[0],
                    event.annual_income if event.annual_income is not None else base[1],
                    event.gender.value if event.gender is not None else base[2],
                )
                steps.append(
                    (
                        record.partition,
                        key,
                        features,
                        -1 - len(updated_rows),
                        moment,
                        "profile_update",
                        event.event_id,
                    )
                )
                updated_rows.append(features)
            pending_features[where] = (features, moment)
        update_labels: list[int] = []
        if updated_rows:
            update_labels = scorer.score(
                _feature_rows(updated_rows, manifest.features)
            ).labels.tolist()
        for partition, key, features, label, moment, reason, event_id in steps:
            if label < 0:
                label = update_labels[-1 - label]
            where = (partition, key)
            previous = writer.last.get(where) or current[where]
            writer.write(
                partition, key, previous, features, label, moment, reason, event_id, moment
            )
        writer.finish()
        return outcome

    # -- re-segmentation -------------------------------------------------------------------------

    def rescore(
        self, partition: int, after: bytes, limit: int, scorer: Scorer, now: datetime
    ) -> tuple[StateOutcome, bytes | None]:
        """Re-score up to limit customers after key `after` not yet scored by scorer's model.

        Returns what changed and the key to continue after, or None when the partition is
        done. Customers in the open commit were scored by the live model already.
        """
        outcome = StateOutcome()
        store = self.stores.get(partition)
        if store is None:
            return outcome, None
        manifest = scorer.manifest
        version = manifest.version
        page = store.scan(after, limit)
        if not page:
            return outcome, None
        # Most customers of a finished or resumed scan carry the version already: skip them
        # without parsing (the version is text of [A-Za-z0-9._-], written as is).
        done_mark = b'"model_version":"%s"' % version.encode()
        todo: list[tuple[bytes, _State]] = []
        for key, value in page:
            current = store.pending.get(key) or value
            if done_mark in current:
                continue
            state = _read_state(current)
            if state.model_version != version:
                todo.append((key, state))
        if todo:
            features = [state.features for _key, state in todo]
            labels = scorer.score(_feature_rows(features, manifest.features)).labels.tolist()
            writer = _Writer(self.stores, manifest, outcome)
            changed_at = _iso(now)
            for (key, state), label in zip(todo, labels, strict=True):
                writer.write(
                    partition,
                    key,
                    state,
                    state.features,
                    label,
                    state.updated_at,
                    "model_change",
                    None,
                    changed_at,
                )
            writer.finish()
            outcome.rescored = len(todo)
        return outcome, page[-1][0]

    def would_change(
        self, partition: int, after: bytes, limit: int, candidate: Scorer
    ) -> tuple[int, int, bytes | None]:
        """How many of up to limit customers after `after` a candidate would move: (seen,
        moved, key to continue after or None when done)."""
        store = self.stores.get(partition)
        if store is None:
            return 0, 0, None
        page = store.scan(after, limit)
        if not page:
            return 0, 0, None
        states = [from_json(value) for _key, value in page]
        features = [(s["age"], s["annual_income"], s["gender"]) for s in states]
        manifest = candidate.manifest
        labels = candidate.score(_feature_rows(features, manifest.features)).labels.tolist()
        moved = sum(
            manifest.segments[label].id != state["segment_id"]
            for state, label in zip(states, labels, strict=True)
        )
        return len(page), moved, page[-1][0]

    # -- lookups -----------------------------------------------------------------------------

    def lookup(self, customer_id: str) -> dict[str, Any] | None:
        """The customer's committed state, when one of the owned partitions holds it."""
        key = customer_id.encode()
        with self._lock:
            for store in self.stores.values():
                value = store.committed(key)
                if value is not None:
                    found: dict[str, Any] = from_json(value)
                    return found
        return None

    def owned(self) -> Iterator[int]:
        """The partitions whose stores are open."""
        return iter(sorted(self.stores))
