"""Files given to replay and score: JSON lines as they are, and CSV tables, customer tables
(no event_id, no signed_up_at) included."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas import DataError
from stream_app.decoding import decode_signup
from stream_app.kafka_io import read_replay_file

TABLE = "customer_id,gender,age,annual_income\nC1,Female,34,72000\nC2,Male,61,38000\n"


def test_a_customer_table_becomes_valid_signups_with_stable_ids(tmp_path: Path) -> None:
    table = tmp_path / "customers.csv"
    table.write_text(TABLE)
    os.utime(table, (1_767_225_600, 1_767_225_600))  # 2026-01-01T00:00:00Z
    first = [json.loads(v) for v in read_replay_file(table)]
    again = [json.loads(v) for v in read_replay_file(table)]
    assert first == again
    assert len({row["event_id"] for row in first}) == 2
    assert {row["signed_up_at"] for row in first} == {datetime(2026, 1, 1, tzinfo=UTC).isoformat()}
    signups = [decode_signup(row["customer_id"].encode(), json.dumps(row).encode(), 1_000)
               for row in first]  # fmt: skip
    assert [(s.customer_id, s.age, s.annual_income) for s in signups] == [
        ("C1", 34.0, 72_000.0),
        ("C2", 61.0, 38_000.0),
    ]


def test_a_row_with_its_own_event_id_and_time_keeps_them(tmp_path: Path) -> None:
    table = tmp_path / "signups.csv"
    table.write_text(
        "event_id,customer_id,age,annual_income,signed_up_at\n"
        "e-9,C9,40,50000,2026-02-02T10:00:00+00:00\n"
    )
    (row,) = [json.loads(v) for v in read_replay_file(table)]
    assert (row["event_id"], row["signed_up_at"]) == ("e-9", "2026-02-02T10:00:00+00:00")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b"customer_id,age\n\xff\xfe,1\n"), "not UTF-8"),
    ],
)
def test_a_path_that_is_no_readable_file_says_what_it_is(
    tmp_path: Path, make: object, message: str
) -> None:
    path = tmp_path / "input.csv"
    make(path)  # type: ignore[operator]
    with pytest.raises(DataError, match=message):
        list(read_replay_file(path))
