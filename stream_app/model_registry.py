"""The compacted model topic: publish manifests, read what is live, and follow it in workers.

Records on the topic (all JSON, never a pickle), by key:

- `<name>`            the live manifest; the newest one wins (compaction keeps only it)
- `<name>#candidate`  the shadow candidate manifest, or a tombstone when there is none
- `<name>@<version>`  every manifest ever published, so rollback and promote find them
- `<name>#history`    the ordered list of versions that have been live
- `<name>#shadow#<worker>`  one worker's shadow-scoring comparison figures
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import SecretStr

from schemas import ManifestError, ModelManifest
from stream_app.kafka_io import create_topics, started
from stream_app.model_store import parse_manifest
from stream_app.settings import Settings

__all__ = [
    "ModelRegistry",
    "apply_record",
    "ensure_model_topic",
    "promote",
    "publish_manifest",
    "read_registry",
    "rollback",
    "shadow_key",
]

_COMPACTED = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1"}


def _candidate_key(name: str) -> bytes:
    """Key of the shadow candidate record."""
    return f"{name}#candidate".encode()


def _history_key(name: str) -> bytes:
    return f"{name}#history".encode()


def _archive_key(name: str, version: str) -> bytes:
    return f"{name}@{version}".encode()


def shadow_key(name: str, worker: str) -> bytes:
    """Key of one worker's shadow comparison figures."""
    return f"{name}#shadow#{worker}".encode()


@dataclass
class ModelRegistry:
    """Everything the model topic says about one model name."""

    name: str
    live: ModelManifest | None = None
    candidate: ModelManifest | None = None
    archive: dict[str, ModelManifest] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)
    shadow: dict[str, dict[str, Any]] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)

    def shadow_totals(self) -> tuple[int, Counter[str]]:
        """Events compared and disagreements per `live->candidate` pair, over all workers."""
        compared = 0
        pairs: Counter[str] = Counter()
        for figures in self.shadow.values():
            if self.candidate is None or figures.get("candidate") != self.candidate.version:
                continue
            compared += int(figures.get("compared", 0))
            pairs.update({k: int(v) for k, v in figures.get("pairs", {}).items()})
        return compared, pairs


async def ensure_model_topic(settings: Settings) -> None:
    """Create the compacted model topic (one partition keeps records in order) if missing."""
    await create_topics(settings, [settings.model_topic], 1, _COMPACTED)


async def read_registry(settings: Settings, name: str) -> ModelRegistry:
    """Read the model topic from the beginning to its current end."""
    await ensure_model_topic(settings)
    registry = ModelRegistry(name=name)
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(), enable_auto_commit=False, group_id=None
    )
    async with started(consumer, settings.bootstrap_servers):
        partitions = [TopicPartition(settings.model_topic, 0)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = (await consumer.end_offsets(partitions))[partitions[0]]
        while await consumer.position(partitions[0]) < end:
            batches = await consumer.getmany(*partitions, timeout_ms=1000)
            for messages in batches.values():
                for message in messages:
                    apply_record(registry, message.key, message.value, settings.model_signing_key)
    return registry


def apply_record(
    registry: ModelRegistry, key: bytes | None, value: bytes | None, signing_key: SecretStr | None
) -> None:
    """Fold one model-topic record into registry; a refused manifest is noted, not applied."""
    if key is None:
        return
    text = key.decode("utf-8", "replace")
    name = registry.name
    try:
        if text == name and value is not None:
            registry.live = parse_manifest(value, signing_key, f"{name} (live)")
        elif text == f"{name}#candidate":
            registry.candidate = (
                parse_manifest(value, signing_key, f"{name} (candidate)") if value else None
            )
        elif text.startswith(f"{name}@") and value is not None:
            manifest = parse_manifest(value, signing_key, text)
            registry.archive[manifest.version] = manifest
        elif text == f"{name}#history" and value is not None:
            registry.history = [str(v) for v in json.loads(value)]
        elif text.startswith(f"{name}#shadow#") and value is not None:
            registry.shadow[text] = json.loads(value)
    except ManifestError as exc:
        registry.refused.append(str(exc))


async def _send(settings: Settings, records: list[tuple[bytes, bytes | None]]) -> None:
    producer = AIOKafkaProducer(
        **settings.kafka_client_options(), acks="all", enable_idempotence=True
    )
    async with started(producer, settings.bootstrap_servers):
        for key, value in records:
            await producer.send_and_wait(settings.model_topic, key=key, value=value)


def _sign(manifest: ModelManifest, settings: Settings) -> ModelManifest:
    if settings.model_signing_key is None:
        return manifest.model_copy(update={"signature": None})
    return manifest.signed(settings.model_signing_key.get_secret_value().encode())


async def publish_manifest(
    settings: Settings, manifest: ModelManifest, shadow: bool = False
) -> ModelRegistry:
    """Publish manifest as the live model, or as the shadow candidate; return the new state."""
    signed = _sign(manifest, settings)
    body = signed.model_dump_json().encode()
    registry = await read_registry(settings, manifest.name)
    records: list[tuple[bytes, bytes | None]] = [
        (_archive_key(manifest.name, manifest.version), body)
    ]
    if shadow:
        records.append((_candidate_key(manifest.name), body))
        registry.candidate = signed
    else:
        history = [*registry.history, manifest.version]
        records.append((_history_key(manifest.name), json.dumps(history).encode()))
        records.append((manifest.name.encode(), body))
        if registry.candidate is not None and registry.candidate.version == manifest.version:
            records.append((_candidate_key(manifest.name), None))
            registry.candidate = None
        registry.live, registry.history = signed, history
    registry.archive[manifest.version] = signed
    await _send(settings, records)
    return registry


async def rollback(settings: Settings, name: str) -> ModelRegistry:
    """Make the version that was live before the current one live again."""
    registry = await read_registry(settings, name)
    previous = [v for v in registry.history[:-1] if registry.live and v != registry.live.version]
    if not previous:
        raise ManifestError(f"no earlier live version of {name} to roll back to")
    version = previous[-1]
    if version not in registry.archive:
        raise ManifestError(f"version {version} of {name} is no longer on {settings.model_topic}")
    return await publish_manifest(settings, registry.archive[version])


async def promote(settings: Settings, name: str, version: str) -> ModelRegistry:
    """Make a published version (normally the shadow candidate) live."""
    registry = await read_registry(settings, name)
    if version not in registry.archive:
        known = ", ".join(sorted(registry.archive)) or "none"
        raise ManifestError(f"version {version} of {name} was never published (known: {known})")
    return await publish_manifest(settings, registry.archive[version])
