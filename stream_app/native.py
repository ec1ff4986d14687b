"""The customer-state path per record, in C (stream_app/_native.c).

With customer state, each first signup makes a state record and a change record besides its
assignment, and the worker's one data-plane thread spends most of that time in Python: one
format per record, a SHA-1 for the change id, one `Producer.produce` call per record. Here
the records of a whole batch are made in one call, and a column of records is handed to
librdkafka in one call, on the producer confluent-kafka made (the same transaction, the same
queue), without a Python call per record.

`produce_columns` reads the `rd_kafka_t` handle out of confluent-kafka's Producer object,
which is the first field of its C struct. That is confluent-kafka's internals: it is pinned
exactly in pyproject.toml, and `stream_app.pins` refuses to start a worker on another version.
"""

from __future__ import annotations

from pathlib import Path

import confluent_kafka
from confluent_kafka import Producer

from stream_app import _native

__all__ = [
    "QUEUE_FULL",
    "ChangePieces",
    "StatePieces",
    "first_signup_records",
    "librdkafka_path",
    "produce_columns",
]

#: The literal text of a state record around its 7 fields (customer, age, income, gender,
#: since, updated_at, source event).
StatePieces = tuple[bytes, bytes, bytes, bytes, bytes, bytes, bytes, bytes]
#: The literal text of a change record around its 4 fields (id, customer, source event,
#: changed_at).
ChangePieces = tuple[bytes, bytes, bytes, bytes, bytes]

#: librdkafka's "local queue full": wait for the broker to take some, then go on.
QUEUE_FULL = confluent_kafka.KafkaError._QUEUE_FULL


def librdkafka_path(maps: Path = Path("/proc/self/maps")) -> str:
    """The file of the librdkafka this process loaded for confluent-kafka.

    The wheels carry their own copy under a hashed name (confluent_kafka.libs/); a build from
    source links the system's. Either way it is mapped into the process by now.
    """
    for line in maps.read_text().splitlines():
        fields = line.split(maxsplit=5)  # address, mode, offset, device, inode, path
        if len(fields) == 6 and Path(fields[5]).name.startswith("librdkafka"):
            return fields[5]
    raise ImportError(f"confluent-kafka {confluent_kafka.version()[0]}: no librdkafka in {maps}")


_native.bind(Producer, librdkafka_path())


def first_signup_records(
    namespace: bytes,
    keys: list[bytes],
    labels: list[int],
    texts: tuple[list[bytes], list[bytes], list[float], list[float], list[bytes], list[bytes]],
    pieces: tuple[list[StatePieces], list[ChangePieces]],
) -> tuple[list[bytes], list[bytes]] | None:
    """The state and change records of first signups, or None when one of their numbers is
    one Python's repr writes with an exponent (nonzero below 1e-4, or from 1e16), where
    pydantic's text differs: those go one at a time.

    texts: customer ids and event ids (insides of JSON strings), ages, incomes, genders and
    signup times (insides of JSON strings), a column each. pieces: per segment, the pieces
    of a state record and of a change record.
    """
    customers, sources, ages, incomes, genders, moments = texts
    states, changes = pieces
    return _native.first_signup_records(
        namespace, keys, labels, customers, sources, ages, incomes, genders, moments,
        states, changes,
    )  # fmt: skip


#: produce_columns(producer, topic, keys, values, partitions, start) -> (next, error): produce
#: records start.. without headers or delivery reports; returns the position it stopped at
#: and librdkafka's error code there (0 when every record was taken).
produce_columns = _native.produce_columns
