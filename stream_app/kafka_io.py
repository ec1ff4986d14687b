"""Kafka plumbing for the command line: create topics, replay files, tail assignments."""

from __future__ import annotations

import asyncio
import csv
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from schemas import DataError
from stream_app.exceptions import BrokerUnavailableError
from stream_app.settings import Settings

__all__ = ["consume", "create_topics", "read_replay_file", "replay", "started"]


@asynccontextmanager
async def started(client: Any, bootstrap_servers: str) -> AsyncIterator[Any]:
    """Start an aiokafka client, stop it on the way out, and name the broker when it fails."""
    # The admin client stops with close(), producers and consumers with stop().
    stop = getattr(client, "close", None) or client.stop
    try:
        await client.start()
    except KafkaError as exc:
        await stop()
        raise BrokerUnavailableError(f"cannot reach Kafka at {bootstrap_servers}: {exc}") from None
    try:
        yield client
    finally:
        await stop()


async def create_topics(
    settings: Settings, names: list[str], partitions: int, configs: dict[str, str] | None = None
) -> list[str]:
    """Create the named topics if missing, with the configured replicas; return those created."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    async with started(admin, settings.bootstrap_servers):
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if not missing:
            return []
        replicas = settings.topic_replication_factor
        topics = [NewTopic(n, partitions, replicas, topic_configs=configs or {}) for n in missing]
        # Another process may win the race; the topic is there either way.
        with suppress(TopicAlreadyExistsError):
            response = await admin.create_topics(topics)
            # aiokafka returns a topic's refusal (such as more replicas than brokers) instead
            # of raising it.
            for topic, code, *detail in response.topic_errors:
                if code not in (0, TopicAlreadyExistsError.errno):
                    reason = detail[0] if detail and detail[0] else f"error code {code}"
                    raise BrokerUnavailableError(
                        f"Kafka at {settings.bootstrap_servers} refused to create {topic} "
                        f"({partitions} partitions, {replicas} replicas): {reason}"
                    )
        return missing


def _key_of(value: bytes) -> bytes | None:
    """The customer_id of a JSON signup, used as the record key; None when unreadable."""
    try:
        body = json.loads(value)
    except (ValueError, RecursionError):
        return None  # the worker dead-letters it; replay only needs a key when there is one
    customer_id = body.get("customer_id") if isinstance(body, dict) else None
    return customer_id.encode() if isinstance(customer_id, str) and customer_id else None


def read_replay_file(path: Path) -> Iterator[bytes]:
    """Values to replay: JSONL lines as they are (broken ones too), or CSV rows as JSON."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                yield json.dumps(_typed_row(row)).encode()
        return
    with path.open("rb") as handle:
        for line in handle:
            line = line.rstrip(b"\r\n")
            if line:
                yield line


def _typed_row(row: dict[str, str]) -> dict[str, object]:
    typed: dict[str, object] = dict(row)
    for column in ("age", "annual_income"):
        # Left as text when not a number, so the worker dead-letters it with the real reason.
        with suppress(KeyError, ValueError):
            typed[column] = float(row[column])
    return typed


async def replay(
    settings: Settings,
    values: Iterator[bytes],
    topic: str,
    rate: float | None,
    on_sent: Callable[[int], None] | None = None,
) -> int:
    """Produce values to topic, keyed by customer_id, at most `rate` per second."""
    producer = AIOKafkaProducer(
        **settings.kafka_client_options(),
        acks="all",
        linger_ms=5,
        enable_idempotence=True,
    )
    sent = 0
    began = time.monotonic()
    async with started(producer, settings.bootstrap_servers):
        pending = []
        for value in values:
            pending.append(await producer.send(topic, value=value, key=_key_of(value)))
            sent += 1
            if rate:
                ahead = sent / rate - (time.monotonic() - began)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            if len(pending) >= 1000:
                await asyncio.gather(*pending)
                pending.clear()
            if on_sent is not None:
                on_sent(1)
        await asyncio.gather(*pending)
    return sent


async def consume(
    settings: Settings,
    topic: str,
    from_beginning: bool,
    idle_timeout: float | None,
    limit: int | None = None,
) -> AsyncIterator[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    """Yield (key, value, headers) from every partition of topic, without a consumer group."""
    # No group: aiokafka then assigns every partition of the topic to this consumer.
    consumer = AIOKafkaConsumer(
        topic,
        **settings.kafka_client_options(),
        group_id=None,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    async with started(consumer, settings.bootstrap_servers):
        if topic not in await consumer.topics():
            raise DataError(f"topic {topic} does not exist on {settings.bootstrap_servers}")
        seen = 0
        while limit is None or seen < limit:
            batches = await consumer.getmany(timeout_ms=int((idle_timeout or 3600) * 1000))
            if not batches:
                return
            for messages in batches.values():
                for message in messages:
                    yield message.key, message.value, list(message.headers or [])
                    seen += 1
                    if limit is not None and seen >= limit:
                        return
