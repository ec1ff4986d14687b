"""Kafka plumbing for the command line and the model topic: connect with a bounded wait and a
classified error, create topics, replay files, tail topics.

Every failure leaves this module as one SegstreamError whose text says what failed and where:
unreachable, authentication, authorisation, unknown topic, or timeout.
"""

from __future__ import annotations

import asyncio
import csv
import json
import re
import socket
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import aclosing, asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka import errors as kafka_errors
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.conn import create_conn

from schemas import ConfigurationError, DataError, SegstreamError
from stream_app.exceptions import (
    BrokerAuthenticationError,
    BrokerAuthorizationError,
    BrokerTimeoutError,
    BrokerUnavailableError,
    UnknownTopicError,
)
from stream_app.settings import Settings

__all__ = [
    "TopicSpec",
    "bounded",
    "check_topic_name",
    "consume",
    "create_topics",
    "ensure_topics",
    "kafka_failure",
    "missing_topics",
    "read_replay_file",
    "read_to_end",
    "replay",
    "started",
]

T = TypeVar("T")

# Kafka's own rule (org.apache.kafka.common.internals.Topic): at most 249 of these characters.
_LEGAL_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_TOPIC_ALREADY_EXISTS = kafka_errors.TopicAlreadyExistsError.errno
_AUTHENTICATION = (
    kafka_errors.SaslAuthenticationFailed,
    kafka_errors.AuthenticationFailedError,
    kafka_errors.AuthenticationMethodNotSupported,
    kafka_errors.UnsupportedSaslMechanismError,
    kafka_errors.IllegalSaslStateError,
)
_AUTHORIZATION = (
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.GroupAuthorizationFailedError,
    kafka_errors.ClusterAuthorizationFailedError,
    kafka_errors.TransactionalIdAuthorizationFailed,
)
_TIMEOUT = (asyncio.TimeoutError, kafka_errors.KafkaTimeoutError, kafka_errors.RequestTimedOutError)
# Signups replayed from a customer table get ids in this uuid5 namespace (fixed forever).
_ROW_NAMESPACE = uuid.UUID("0b6f5a52-93c4-5d8e-8a51-3f0c2e9d7b14")


def check_topic_name(name: str) -> str:
    """Return name if Kafka accepts it as a topic name; else raise UnknownTopicError."""
    if not _LEGAL_TOPIC.match(name) or name in (".", ".."):
        raise UnknownTopicError(
            f"{name!r} is not a legal Kafka topic name (1-249 of A-Z a-z 0-9 . _ -)"
        )
    return name


def kafka_failure(exc: BaseException, bootstrap_servers: str, doing: str = "") -> SegstreamError:
    """One classified SegstreamError for an error raised by aiokafka while `doing` something."""
    where = f"Kafka at {bootstrap_servers}"
    during = f" while {doing}" if doing else ""
    detail = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, SegstreamError):
        return exc
    if isinstance(exc, _AUTHENTICATION):
        return BrokerAuthenticationError(f"{where}: authentication failed{during}: {detail}")
    if isinstance(exc, _AUTHORIZATION):
        return BrokerAuthorizationError(f"{where}: not authorised{during}: {detail}")
    if isinstance(exc, kafka_errors.UnknownTopicOrPartitionError):
        return UnknownTopicError(f"{where}: unknown topic{during}: {detail}")
    if isinstance(exc, _TIMEOUT):
        return BrokerTimeoutError(f"{where}: timed out{during}")
    if isinstance(exc, kafka_errors.BrokerResponseError):
        # Kafka answered, and said no: name the request and Kafka's reason.
        return BrokerUnavailableError(f"{where}: {doing or 'a request'} failed: {detail}")
    return BrokerUnavailableError(f"cannot reach {where}{during}: {detail}")


async def _diagnose(settings: Settings) -> SegstreamError:
    """Why bootstrapping failed, found by opening one connection ourselves.

    aiokafka only says "Unable to bootstrap" and logs the cause (a refused password, say);
    one direct connection to each bootstrap server raises that cause as an exception.
    """
    options = settings.kafka_client_options()
    where = settings.bootstrap_servers
    causes = []
    for server in [s.strip() for s in where.split(",") if s.strip()]:
        host, _, port = server.rpartition(":")
        try:
            connection = await asyncio.wait_for(
                create_conn(
                    host.strip("[]"),
                    int(port),
                    request_timeout_ms=int(settings.connect_timeout * 1000),
                    ssl_context=options.get("ssl_context"),
                    security_protocol=settings.security_protocol,
                    sasl_mechanism=options.get("sasl_mechanism"),
                    sasl_plain_username=options.get("sasl_plain_username"),
                    sasl_plain_password=options.get("sasl_plain_password"),
                ),
                settings.connect_timeout,
            )
        except _AUTHENTICATION as exc:
            user = settings.sasl_username or ""
            return BrokerAuthenticationError(
                f"Kafka at {server}: authentication failed ({settings.security_protocol}, "
                f"{settings.sasl_mechanism} as user {user!r}): {' '.join(str(exc).split())}"
            )
        except _TIMEOUT:
            causes.append(f"{server}: no answer within {settings.connect_timeout:g} s")
        except ValueError:
            causes.append(f"{server}: not a host:port address")
        except ConnectionRefusedError:
            causes.append(f"{server}: connection refused (is Kafka running there?)")
        except socket.gaierror as exc:
            causes.append(f"{server}: unknown host ({exc.strerror})")
        except (OSError, kafka_errors.KafkaError) as exc:
            reason = getattr(exc, "strerror", None) or " ".join(str(exc).split())
            causes.append(f"{server}: {reason or type(exc).__name__}")
        else:
            connection.close()
            causes.append(f"{server}: answers, but gave no cluster metadata")
    if causes and all("no answer within" in cause for cause in causes):
        return BrokerTimeoutError(
            f"Kafka at {where} did not answer within {settings.connect_timeout:g} s "
            "(SEGSTREAM_CONNECT_TIMEOUT)"
        )
    if len(causes) == 1:
        return BrokerUnavailableError(f"cannot reach Kafka at {causes[0]}")
    return BrokerUnavailableError(f"cannot reach Kafka at {where}: {'; '.join(causes)}")


@asynccontextmanager
async def started(client: Any, settings: Settings | str) -> AsyncIterator[Any]:
    """Start an aiokafka client within the connect timeout, stop it on the way out, and turn a
    failure to start into one classified error naming the broker.

    `settings` may be a bare bootstrap address for callers without Settings (then the wait is
    aiokafka's own and the error is not diagnosed further).
    """
    # The admin client stops with close(), producers and consumers with stop().
    stop = getattr(client, "close", None) or client.stop
    bootstrap = settings if isinstance(settings, str) else settings.bootstrap_servers
    began = time.monotonic()
    try:
        if isinstance(settings, str):
            await client.start()
        else:
            await asyncio.wait_for(client.start(), settings.connect_timeout)
    except (TimeoutError, kafka_errors.KafkaError, OSError) as exc:
        await stop()
        if isinstance(settings, str):
            raise kafka_failure(exc, bootstrap, "connecting") from None
        # By the clock, not the exception: cancelled mid-connect, aiokafka may raise its own
        # "Unable to bootstrap" instead of letting wait_for's TimeoutError through.
        if time.monotonic() - began >= settings.connect_timeout:
            raise BrokerTimeoutError(
                f"Kafka at {bootstrap} did not answer within {settings.connect_timeout:g} s "
                "(SEGSTREAM_CONNECT_TIMEOUT)"
            ) from None
        raise await _diagnose(settings) from None
    try:
        yield client
    except kafka_errors.KafkaError as exc:
        raise kafka_failure(exc, bootstrap) from None
    finally:
        await stop()


async def bounded(settings: Settings, awaitable: Awaitable[T], doing: str) -> T:
    """Await one request to Kafka for at most the connect timeout; classify what goes wrong."""
    try:
        return await asyncio.wait_for(awaitable, settings.connect_timeout)
    except (TimeoutError, kafka_errors.KafkaError) as exc:
        if isinstance(exc, asyncio.TimeoutError):
            raise BrokerTimeoutError(
                f"Kafka at {settings.bootstrap_servers} did not answer within "
                f"{settings.connect_timeout:g} s (SEGSTREAM_CONNECT_TIMEOUT) while {doing}"
            ) from None
        raise kafka_failure(exc, settings.bootstrap_servers, doing) from None


@dataclass(frozen=True)
class TopicSpec:
    """A topic segstream creates when it is missing: name, partitions and topic configs."""

    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


async def _default_replication_factor(admin: AIOKafkaAdminClient, settings: Settings) -> int:
    """The broker's default.replication.factor.

    aiokafka speaks CreateTopics up to v3, which has no "-1 means the broker's default"
    (that came with v4, KIP-464), so the default is read from a broker and passed explicitly.
    """
    cluster = await bounded(settings, admin.describe_cluster(), "describing the cluster")
    broker_id = str(cluster["brokers"][0]["node_id"])
    resource = ConfigResource(
        ConfigResourceType.BROKER, broker_id, {"default.replication.factor": None}
    )
    responses = await bounded(
        settings, admin.describe_configs([resource]), "reading default.replication.factor"
    )
    for response in responses:
        for error_code, error_message, _type, _name, entries in response.resources:
            if error_code:
                raise kafka_failure(
                    kafka_errors.for_code(error_code)(error_message),
                    settings.bootstrap_servers,
                    "reading default.replication.factor (or set "
                    "SEGSTREAM_TOPIC_REPLICATION_FACTOR)",
                )
            for entry in entries:
                if entry[0] == "default.replication.factor":
                    return int(entry[1])
    return 1  # Kafka's own default when a broker does not say


async def ensure_topics(settings: Settings, specs: list[TopicSpec]) -> list[str]:
    """Create the topics of specs that are missing, with SEGSTREAM_TOPIC_REPLICATION_FACTOR
    replicas and SEGSTREAM_TOPIC_MIN_INSYNC_REPLICAS; return the names created.

    Existing topics are left exactly as they are.
    """
    for spec in specs:
        check_topic_name(spec.name)
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    async with started(admin, settings):
        existing = set(await bounded(settings, admin.list_topics(), "listing topics"))
        missing = [spec for spec in specs if spec.name not in existing]
        if not missing:
            return []
        replicas = settings.topic_replication_factor
        if replicas < 1:
            replicas = await _default_replication_factor(admin, settings)
        isr = settings.topic_min_insync_replicas
        shared = {"min.insync.replicas": str(isr)} if isr is not None else {}
        response = await bounded(
            settings,
            admin.create_topics(
                [
                    NewTopic(
                        spec.name,
                        num_partitions=spec.partitions,
                        replication_factor=replicas,
                        topic_configs={**shared, **spec.configs},
                    )
                    for spec in missing
                ]
            ),
            "creating topics",
        )
        created = []
        # aiokafka returns per-topic errors instead of raising them.
        for topic, error_code, *message in response.topic_errors:
            if error_code == _TOPIC_ALREADY_EXISTS:
                continue  # another process won the race; the topic is there either way
            if error_code:
                text = message[0] if message and message[0] else ""
                raise kafka_failure(
                    kafka_errors.for_code(error_code)(text),
                    settings.bootstrap_servers,
                    f"creating topic {topic} ({replicas} replicas)",
                )
            created.append(topic)
        return created


async def create_topics(settings: Settings, names: list[str], partitions: int) -> list[str]:
    """Create the named topics if missing; return the ones created."""
    return await ensure_topics(settings, [TopicSpec(name, partitions) for name in names])


#: Topic configs of a compacted topic that keeps the latest value per key.
COMPACTED = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1"}


async def ensure_state_topics(settings: Settings) -> list[str]:
    """Create the segment-changes topic and the state topic, the latter compacted and with as
    many partitions as the input (partition p holds the state of input partition p);
    ConfigurationError when an existing state topic has another count."""
    partitions = len(await _partitions_of_existing(settings, settings.input_topic))
    created = await ensure_topics(
        settings,
        [
            TopicSpec(settings.state_topic, partitions, COMPACTED),
            TopicSpec(settings.changes_topic, settings.topic_partitions),
        ],
    )
    if settings.state_topic in created:
        return created
    state = len(await _partitions_of_existing(settings, settings.state_topic))
    if state != partitions:
        raise ConfigurationError(
            f"{settings.state_topic} has {state} partitions and {settings.input_topic} "
            f"{partitions}: the state topic needs one partition per input partition"
        )
    return created


async def _partitions_of_existing(settings: Settings, topic: str) -> list[int]:
    """The partitions of a topic that exists, once the broker's metadata shows it.

    A topic another worker created a moment ago already refuses a second creation, but can
    be missing from a broker's metadata for a short while: that is waited out, up to the
    connect timeout.
    """
    deadline = time.monotonic() + settings.connect_timeout
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    async with started(admin, settings):
        while True:
            try:
                return await _topic_partitions(settings, admin._client, topic)
            except UnknownTopicError:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(0.2)


async def missing_topics(settings: Settings, names: list[str]) -> list[str]:
    """The names of topics that do not exist on the cluster."""
    admin = AIOKafkaAdminClient(**settings.kafka_client_options())
    async with started(admin, settings):
        existing = set(await bounded(settings, admin.list_topics(), "listing topics"))
    return [name for name in names if name not in existing]


def _key_of(value: bytes) -> bytes | None:
    """The customer_id of a JSON signup, used as the record key; None when unreadable."""
    try:
        body = json.loads(value)
    except (ValueError, RecursionError):
        return None  # the worker dead-letters it; replay only needs a key when there is one
    customer_id = body.get("customer_id") if isinstance(body, dict) else None
    if isinstance(customer_id, int) and not isinstance(customer_id, bool):
        customer_id = str(customer_id)  # the contract takes numeric ids as their decimal string
    return customer_id.encode() if isinstance(customer_id, str) and customer_id else None


def _check_input_file(path: Path) -> None:
    if path.is_dir():
        raise DataError(f"{path} is a directory; give a JSONL or CSV file")
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path} is not a regular file")


def read_replay_file(path: Path) -> Iterator[bytes]:
    """Values to replay: JSONL lines as they are (broken ones too), or CSV rows as JSON.

    A CSV customer table without event_id or signed_up_at columns (such as the training
    table) is accepted: each row's event_id is a uuid5 of its cells, so replaying or scoring
    the same table twice gives the same ids, and signed_up_at is the file's modification time.
    """
    _check_input_file(path)
    if path.suffix.lower() == ".csv":
        modified = datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat()
        try:
            with path.open(newline="", encoding="utf-8") as handle:
                for row in csv.DictReader(handle):
                    yield json.dumps(_signup_row(row, modified)).encode()
        except UnicodeDecodeError as exc:
            raise DataError(f"{path} is not UTF-8 text (byte {exc.start})") from None
        except csv.Error as exc:
            raise DataError(f"{path} is not a readable CSV file: {exc}") from None
        return
    with path.open("rb") as handle:
        for line in handle:
            line = line.rstrip(b"\r\n")
            if line:
                yield line


def _signup_row(row: dict[str | None, str | Any], modified: str) -> dict[str, object]:
    """A CSV row as a signup body: numbers typed, missing event_id and signed_up_at filled."""
    typed: dict[str, object] = {
        str(name).strip().lower(): value for name, value in row.items() if name is not None
    }
    for column in ("age", "annual_income"):
        # Left as text when not a number, so the worker dead-letters it with the real reason.
        with suppress(KeyError, ValueError):
            typed[column] = float(str(typed[column]))
    if not typed.get("event_id"):
        cells = json.dumps({k: v for k, v in typed.items() if k != "signed_up_at"}, sort_keys=True)
        typed["event_id"] = str(uuid.uuid5(_ROW_NAMESPACE, cells))
    if not typed.get("signed_up_at"):
        typed["signed_up_at"] = modified
    return typed


async def _topic_partitions(settings: Settings, client: Any, topic: str) -> list[int]:
    """The partitions of topic; UnknownTopicError when it does not exist.

    Asks for the metadata of all topics: a request naming the topic would make a broker with
    auto.create.topics.enable create a mistyped topic on the spot.
    """
    metadata = await bounded(settings, client.fetch_all_metadata(), "reading topic metadata")
    if topic not in metadata.topics():
        raise UnknownTopicError(
            f"topic {topic} does not exist on {settings.bootstrap_servers} "
            "(create it with segstream topics create, or check the name)"
        )
    return sorted(metadata.partitions_for_topic(topic) or ())


async def replay(
    settings: Settings,
    values: Iterator[bytes],
    topic: str,
    rate: float | None,
    on_sent: Callable[[int], None] | None = None,
) -> int:
    """Produce values to topic, keyed by customer_id, at most `rate` per second."""
    check_topic_name(topic)
    producer = AIOKafkaProducer(
        **settings.kafka_client_options(),
        acks="all",
        linger_ms=5,
        enable_idempotence=True,
    )
    sent = 0
    began = time.monotonic()
    async with started(producer, settings):
        await _topic_partitions(settings, producer.client, topic)
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


async def read_to_end(
    settings: Settings, consumer: Any, partitions: list[TopicPartition], poll_ms: int = 1000
) -> AsyncGenerator[Any]:
    """Yield the records of the consumer's assigned partitions, from its positions up to the
    end each partition had when reading began."""
    ends = await bounded(settings, consumer.end_offsets(partitions), "reading end offsets")
    while True:
        positions = [await consumer.position(tp) for tp in partitions]
        if all(at >= ends[tp] for at, tp in zip(positions, partitions, strict=True)):
            return
        batches = await consumer.getmany(*partitions, timeout_ms=poll_ms)
        for messages in batches.values():
            for message in messages:
                yield message


async def _follow(consumer: Any, idle_timeout: float | None) -> AsyncGenerator[Any]:
    """Yield records as they arrive; with idle_timeout, stop after that long without one."""
    wait_ms = int((idle_timeout or 1) * 1000)
    while True:
        batches = await consumer.getmany(timeout_ms=wait_ms)
        if not batches and idle_timeout:
            return
        for messages in batches.values():
            for message in messages:
                yield message


async def consume(
    settings: Settings,
    topic: str,
    from_beginning: bool,
    idle_timeout: float | None,
    limit: int | None = None,
) -> AsyncIterator[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    """Yield (key, value, headers) from every partition of topic, without a consumer group.

    idle_timeout None waits for records forever; 0 stops at the end the topic had when
    reading began; otherwise reading stops after that many seconds without a record.
    """
    check_topic_name(topic)
    # The topic is not given to the constructor, for the reason _topic_partitions gives.
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    async with started(consumer, settings):
        # aiokafka's consumer has no public handle on its client's metadata calls.
        partitions = await _topic_partitions(settings, consumer._client, topic)
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        if limit == 0:
            return
        records = (
            read_to_end(settings, consumer, tps)
            if idle_timeout == 0
            else _follow(consumer, idle_timeout)
        )
        seen = 0
        async with aclosing(records):
            async for message in records:
                yield message.key, message.value, list(message.headers or [])
                seen += 1
                if limit is not None and seen >= limit:
                    return
