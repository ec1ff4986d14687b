"""The customer-state path in C: the records it makes and how it hands them to librdkafka."""

from __future__ import annotations

from typing import Any, cast

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from hypothesis import given
from hypothesis import strategies as st
from pydantic_core import to_json

from schemas import CHANGE_NAMESPACE, segment_change_id
from stream_app.delivery import produce_all
from stream_app.native import (
    QUEUE_FULL,
    ChangePieces,
    StatePieces,
    first_signup_records,
    librdkafka_path,
    produce_columns,
)
from stream_app.pipeline import RecordColumns, json_strings

#: Segment 0: the fields of a state between "<", ">" and "|"; of a change between "[" and "]".
PIECES: tuple[list[StatePieces], list[ChangePieces]] = (
    [(b"<", b"|", b"|", b"|", b"|", b"|", b"|", b">")],
    [(b"[", b"|", b"|", b"|", b"]")],
)


def _records(customers: list[str], ages: list[float]) -> tuple[list[bytes], list[bytes]] | None:
    texts = json_strings(customers) if customers else []
    keys = [customer.encode() for customer in customers]
    columns = (
        texts,
        [b"e-" + text for text in texts],
        ages,
        [52_000.5] * len(customers),
        [b"Female"] * len(customers),
        [b"2026-01-01T00:00:00Z"] * len(customers),
    )
    return first_signup_records(CHANGE_NAMESPACE, keys, [0] * len(customers), columns, PIECES)


@given(customers=st.lists(st.text(), max_size=20))
def test_each_change_id_is_the_uuid5_of_revision_1_and_the_fields_stand_between_the_pieces(
    customers: list[str],
) -> None:
    made = _records(customers, [41.0] * len(customers))
    assert made is not None
    states, changes = made
    texts = json_strings(customers) if customers else []
    for customer, text, state, change in zip(customers, texts, states, changes, strict=True):
        assert (
            state
            == b"<%b|41.0|52000.5|Female|2026-01-01T00:00:00Z|2026-01-01T00:00:00Z|e-%b>"
            % (
                text,
                text,
            )
        )
        assert change == b"[%b|%b|e-%b|2026-01-01T00:00:00Z]" % (
            segment_change_id(customer, 1).encode(),
            text,
            text,
        )


@pytest.mark.parametrize(
    ("age", "written"),
    [(0.0, b"0.0"), (0.0001, b"0.0001"), (35.0, b"35.0"), (120.0, b"120.0"), (33.3, b"33.3")],
)
def test_numbers_are_written_as_python_and_pydantic_write_them(age: float, written: bytes) -> None:
    made = _records(["c1"], [age])
    assert made is not None
    assert made[0][0].split(b"|")[1] == written == repr(age).encode() == to_json(age)


def test_a_number_whose_repr_has_an_exponent_is_left_to_the_caller() -> None:
    # repr gives 1e-05, pydantic 0.00001: the batch goes one record at a time instead.
    assert _records(["c1", "c2"], [41.0, 0.00001]) is None


def test_columns_of_other_lengths_or_types_are_refused() -> None:
    columns = ([b"c1"], [b"e-1"], [41.0], [52_000.5], [b"Female"], [b"2026-01-01T00:00:00Z"])
    with pytest.raises(ValueError, match="labels: a list of 1 items is needed"):
        first_signup_records(CHANGE_NAMESPACE, [b"c1"], [], columns, PIECES)
    with pytest.raises(ValueError, match=r"labels\[0\]: no segment 1"):
        first_signup_records(CHANGE_NAMESPACE, [b"c1"], [1], columns, PIECES)
    integer_ages: Any = (*columns[:2], [41], *columns[3:])
    with pytest.raises(TypeError, match=r"ages\[0\]: int"):
        first_signup_records(CHANGE_NAMESPACE, [b"c1"], [0], integer_ages, PIECES)


def test_the_librdkafka_found_is_the_one_confluent_kafka_loaded() -> None:
    assert "librdkafka" in librdkafka_path()


def _unconnected(**config: Any) -> Producer:
    # Nothing listens on port 1: records stay in the producer's local queue.
    return Producer({"bootstrap.servers": "127.0.0.1:1", "log_level": 0, **config})


def test_a_full_local_queue_stops_the_column_where_it_filled() -> None:
    producer = _unconnected(**{"queue.buffering.max.messages": 2})
    keys, values = [b"c1", b"c2", b"c3"], [b"s1", b"s2", b"s3"]
    assert produce_columns(producer, "state", keys, values, [0, 1, -1], 0) == (2, QUEUE_FULL)
    # From where it stopped: still full, then room once the queue is emptied.
    assert produce_columns(producer, "state", keys, values, [0, 1, -1], 2) == (2, QUEUE_FULL)
    producer.purge()
    producer.poll(0)  # serves the purged records' reports, which frees their places
    assert produce_columns(producer, "state", keys, values, [0, 1, -1], 2) == (3, 0)


def test_a_refused_record_raises_what_confluent_kafka_raises() -> None:
    # A transactional producer before its transactions are initialised takes no record.
    producer = _unconnected(**{"transactional.id": "t"})
    columns = RecordColumns()
    columns.append(b"c1", b"s1", 0)
    with pytest.raises(KafkaException) as native:
        produce_all(producer, "state", columns)
    with pytest.raises(KafkaException) as confluent:
        producer.produce("state", b"s1", b"c1", 0)
    assert native.value.args[0].code() == confluent.value.args[0].code() == KafkaError._STATE


def test_only_a_confluent_kafka_producer_is_taken() -> None:
    with pytest.raises(TypeError, match=r"a cimpl\.Producer is needed, not object"):
        produce_columns(cast(Any, object()), "state", [b"c1"], [b"s1"], [0], 0)
    with pytest.raises(ValueError, match="differ in length"):
        produce_columns(_unconnected(), "state", [b"c1"], [], [0], 0)
    with pytest.raises(TypeError, match="record 0: bytes key, bytes value, int partition"):
        produce_columns(_unconnected(), "state", [b"c1"], [cast(Any, "s1")], [0], 0)
