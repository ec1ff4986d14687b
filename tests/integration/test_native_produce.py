"""Columns of records handed to librdkafka in one call (stream_app.native) reach the broker
whole and in order, inside the producer's transaction, when the local queue fills meanwhile."""

from __future__ import annotations

from collections import defaultdict

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from stream_app.delivery import produce_all
from stream_app.pipeline import RecordColumns
from tests.support import Broker, Names, read_topic

pytestmark = pytest.mark.integration


def test_a_column_larger_than_the_local_queue_is_committed_whole_and_in_order(
    kafka: Broker, names: Names
) -> None:
    topic = names.state_topic
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap})
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(30)
    # Room for 50 records: the column of 3,000 waits for the broker to take them, 60 times over.
    producer = Producer(
        {
            "bootstrap.servers": kafka.bootstrap,
            "transactional.id": f"{names.app_id}-columns",
            "queue.buffering.max.messages": 50,
            "compression.type": "lz4",
        }
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    columns = RecordColumns()
    for i in range(3_000):
        # Partitions given, and -1: librdkafka's partitioner chooses by key.
        columns.append(b"c%d" % (i % 700), b"v%d" % i, i % 3 if i % 2 else -1)
    produce_all(producer, topic, columns)
    producer.commit_transaction(30)

    records = read_topic(kafka.bootstrap, topic)
    assert len(records) == 3_000
    by_partition: dict[int, list[int]] = defaultdict(list)
    where: dict[bytes, set[int]] = defaultdict(set)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        assert record.value is not None
        assert record.key is not None
        i = int(record.value[1:])
        assert record.key == b"c%d" % (i % 700)
        if i % 2:
            assert record.partition == i % 3
        else:
            where[record.key].add(record.partition)
        by_partition[record.partition].append(i)
    # Each partition holds its records in the order they were produced.
    for produced in by_partition.values():
        assert produced == sorted(produced)
    # The partitioner keeps a key on one partition.
    assert all(len(partitions) == 1 for partitions in where.values())
