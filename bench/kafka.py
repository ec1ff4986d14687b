"""Kafka plumbing of the benchmark: the local broker, topics, group views, producing, reading."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

__all__ = [
    "GroupView",
    "LocalBroker",
    "OutputRecord",
    "create_topics",
    "describe_group",
    "end_offsets_total",
    "prefill",
    "produce_at_rate",
    "read_records",
]

REPO = Path(__file__).resolve().parent.parent
KAFKA_LOCAL = REPO / "scripts" / "kafka-local"


class LocalBroker:
    """A single-node Kafka broker started by scripts/kafka-local in its own state folder."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.bootstrap = ""

    def start(self) -> str:
        """Start the broker and return its bootstrap address."""
        done = subprocess.run(
            [str(KAFKA_LOCAL), "start", str(self.state_dir)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"kafka-local start failed ({done.returncode}): {done.stderr[-2000:]}"
            )
        self.bootstrap = done.stdout.strip()
        return self.bootstrap

    def stop(self) -> None:
        """Stop the broker; safe to call when it never started."""
        subprocess.run(
            [str(KAFKA_LOCAL), "stop", str(self.state_dir)],
            capture_output=True,
            timeout=60,
            check=False,
        )

    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        try:
            return int((self.state_dir / "broker.pid").read_text())
        except (OSError, ValueError):
            return None

    def version(self) -> str:
        """The Kafka version kafka-local runs, read from its pom."""
        pom = (REPO / "scripts" / "kafka" / "pom.xml").read_text()
        start = pom.index("<kafka.version>") + len("<kafka.version>")
        return pom[start : pom.index("</kafka.version>", start)]


async def create_topics(
    bootstrap: str, names: Sequence[str], partitions: int, log_append_time: bool = False
) -> None:
    """Create fresh topics; with log_append_time the broker stamps each record on arrival."""
    configs = {"message.timestamp.type": "LogAppendTime"} if log_append_time else {}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    name, num_partitions=partitions, replication_factor=1, topic_configs=configs
                )
                for name in names
            ]
        )
    finally:
        await admin.close()


@dataclass(frozen=True)
class GroupView:
    """A consumer group as the broker sees it: its state and each member's partitions."""

    state: str
    members: dict[str, frozenset[int]]

    def owns_each_partition_once(self, partitions: int, members: int) -> bool:
        """True when `members` members split all partitions with no partition owned twice."""
        owned = [p for parts in self.members.values() for p in parts]
        return (
            self.state == "Stable"
            and len(self.members) == members
            and all(self.members.values())
            and sorted(owned) == list(range(partitions))
        )


async def describe_group(bootstrap: str, group: str, topic: str) -> GroupView:
    """The group's state and, per member, the partitions of topic assigned to it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    described = response.to_object()["groups"][0]
    members: dict[str, frozenset[int]] = {}
    for member in described["members"]:
        raw = member["member_assignment"]
        owned: set[int] = set()
        if raw:
            assignment = ConsumerProtocolMemberAssignment.decode(raw)
            for assigned_topic, partitions in assignment.assignment:
                if assigned_topic == topic:
                    owned.update(partitions)
        members[member["client_id"] + "/" + member["member_id"][-8:]] = frozenset(owned)
    return GroupView(state=described["state"], members=members)


async def end_offsets_total(bootstrap: str, topic: str, partitions: int) -> int:
    """Number of records in the topic (sum of end offsets; topics here start at offset 0)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = await consumer.end_offsets(tps)
        return sum(ends.values())
    finally:
        await consumer.stop()


def _producer(bootstrap: str, linger_ms: int) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=linger_ms,
        max_batch_size=262_144,
        enable_idempotence=True,
    )


async def prefill(
    bootstrap: str, topic: str, records: Sequence[tuple[bytes, bytes]], chunk: int = 5_000
) -> float:
    """Produce (key, value) records as fast as possible; return the seconds it took."""
    producer = _producer(bootstrap, linger_ms=5)
    await producer.start()
    began = time.perf_counter()
    try:
        for start in range(0, len(records), chunk):
            pending = [
                await producer.send(topic, value=value, key=key)
                for key, value in records[start : start + chunk]
            ]
            await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - began


async def produce_at_rate(
    bootstrap: str, topic: str, records: Sequence[tuple[bytes, bytes]], rate: float
) -> dict[bytes, int]:
    """Produce records at a fixed rate; return each key's CreateTime in epoch milliseconds."""
    producer = _producer(bootstrap, linger_ms=0)
    await producer.start()
    sent_at: dict[bytes, int] = {}
    pending = []
    try:
        began = time.perf_counter()
        sent = 0
        while sent < len(records):
            due = min(len(records), int((time.perf_counter() - began) * rate) + 1)
            while sent < due:
                key, value = records[sent]
                now_ms = int(time.time() * 1000)
                pending.append(
                    await producer.send(topic, value=value, key=key, timestamp_ms=now_ms)
                )
                sent_at[key] = now_ms
                sent += 1
            if len(pending) >= 2_000:
                await asyncio.gather(*pending)
                pending.clear()
            await asyncio.sleep(0.001)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent_at


@dataclass(frozen=True, slots=True)
class OutputRecord:
    """What the benchmark needs of an output record: where it went, its key and its timestamp."""

    partition: int
    key: bytes | None
    timestamp_ms: int


async def read_records(bootstrap: str, topic: str, partitions: int) -> list[OutputRecord]:
    """Every committed record now in the topic, read without a consumer group."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    records: list[OutputRecord] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        # With read_committed these are the last stable offsets: nothing left open is waited for.
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=2_000, max_records=20_000)
            for tp, messages in batches.items():
                records.extend(
                    OutputRecord(tp.partition, message.key, message.timestamp)
                    for message in messages
                )
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return records
