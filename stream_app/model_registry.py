"""The compacted model topic: publish manifests, read what is live, and follow it in workers.

Records on the topic (all JSON, never a pickle), by key:

- `<name>`            the live manifest; the newest one wins (compaction keeps only it)
- `<name>#candidate`  the shadow candidate manifest, or a tombstone when there is none
- `<name>@<version>`  every manifest ever published, so rollback and promote find them
- `<name>#history`    the ordered list of versions that have been live
- `<name>#shadow#<worker>`  one worker's shadow-scoring comparison figures
- `<name>#refusals#<worker>`  the versions one worker refuses, and why
- `<name>#audience#<worker>`  one worker's re-segmentation progress and shadow count over
  the customers in its state
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic import SecretStr

from schemas import ConfigurationError, ManifestError, ModelManifest
from schemas.model_files import parse_manifest
from stream_app.kafka_io import COMPACTED, TopicSpec, bounded, ensure_topics, read_to_end, started
from stream_app.settings import Settings

__all__ = [
    "ModelRegistry",
    "apply_record",
    "audience_key",
    "ensure_model_topic",
    "promote",
    "publish_manifest",
    "read_registry",
    "refusals_key",
    "rollback",
    "shadow_key",
    "sign",
]


# The record keys of the module docstring, written and read through these functions only;
# a key of several records called with "" is the prefix they share.


def _live_key(name: str) -> bytes:
    """Key of the live manifest."""
    return name.encode()


def _candidate_key(name: str) -> bytes:
    """Key of the shadow candidate record."""
    return f"{name}#candidate".encode()


def _history_key(name: str) -> bytes:
    """Key of the list of versions that have been live."""
    return f"{name}#history".encode()


def _archive_key(name: str, version: str) -> bytes:
    """Key of one published version's manifest."""
    return f"{name}@{version}".encode()


def shadow_key(name: str, worker: str) -> bytes:
    """Key of one worker's shadow comparison figures."""
    return f"{name}#shadow#{worker}".encode()


def refusals_key(name: str, worker: str) -> bytes:
    """Key of the versions one worker refuses, with the reasons."""
    return f"{name}#refusals#{worker}".encode()


def audience_key(name: str, worker: str) -> bytes:
    """Key of one worker's re-segmentation progress and shadow count over its customers."""
    return f"{name}#audience#{worker}".encode()


def _version_in(value: bytes | None, fallback: str) -> str:
    """The version a (possibly invalid) manifest claims, for naming it in a refusal."""
    try:
        version = json.loads(value or b"").get("version")
    except (ValueError, AttributeError, RecursionError):
        return fallback
    return str(version) if version else fallback


@dataclass
class ModelRegistry:
    """Everything the model topic says about one model name."""

    name: str
    live: ModelManifest | None = None
    candidate: ModelManifest | None = None
    archive: dict[str, ModelManifest] = field(default_factory=dict)
    history: list[str] = field(default_factory=list)
    shadow: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Refused records by record key: (version, reason); a later valid record clears its key.
    refused: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: What each worker reported it refuses: worker -> {version: reason}.
    worker_refusals: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Each worker's latest audience report (stream_app.dataplane.DataPlane.audience_report).
    audiences: dict[str, dict[str, Any]] = field(default_factory=dict)

    def refusals(self) -> dict[str, str]:
        """The refused versions and why, one entry per version."""
        return dict(self.refused.values())

    def refused_by_workers(self, version: str) -> dict[str, str]:
        """worker -> reason, for every worker that reports refusing version."""
        return {
            worker: refused[version]
            for worker, refused in self.worker_refusals.items()
            if version in refused
        }

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
    """Create the compacted model topic (one partition keeps records in order) if missing,
    with the replication settings every segstream topic gets."""
    await ensure_topics(settings, [TopicSpec(settings.model_topic, 1, COMPACTED)])


async def read_registry(settings: Settings, name: str) -> ModelRegistry:
    """Read the model topic from the beginning to its current end."""
    await ensure_model_topic(settings)
    registry = ModelRegistry(name=name)
    consumer = AIOKafkaConsumer(
        **settings.kafka_client_options(), enable_auto_commit=False, group_id=None
    )
    async with started(consumer, settings):
        partitions = [TopicPartition(settings.model_topic, 0)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        async for message in read_to_end(settings, consumer, partitions):
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
        if key == _live_key(name) and value is not None:
            registry.live = parse_manifest(value, signing_key, f"{name} (live)")
        elif key == _candidate_key(name):
            registry.candidate = (
                parse_manifest(value, signing_key, f"{name} (candidate)") if value else None
            )
        elif key.startswith(_archive_key(name, "")) and value is not None:
            manifest = parse_manifest(value, signing_key, text)
            registry.archive[manifest.version] = manifest
        elif key == _history_key(name) and value is not None:
            registry.history = [str(v) for v in json.loads(value)]
        elif key.startswith(shadow_key(name, "")) and value is not None:
            registry.shadow[text] = json.loads(value)
        elif key.startswith(audience_key(name, "")) and value is not None:
            worker = key.removeprefix(audience_key(name, "")).decode("utf-8", "replace")
            registry.audiences[worker] = json.loads(value)
        elif key.startswith(refusals_key(name, "")):
            worker = key.removeprefix(refusals_key(name, "")).decode("utf-8", "replace")
            report = json.loads(value) if value else {}
            registry.worker_refusals[worker] = {
                str(k): str(v) for k, v in report.get("refused", {}).items()
            }
            if not registry.worker_refusals[worker]:
                del registry.worker_refusals[worker]
        else:
            return
    except ManifestError as exc:
        registry.refused[text] = (_version_in(value, text), str(exc))
        return
    except (ValueError, AttributeError):
        return  # a bookkeeping record (history, figures) that is not readable JSON
    registry.refused.pop(text, None)


async def _send(settings: Settings, records: list[tuple[bytes, bytes | None]]) -> None:
    producer = AIOKafkaProducer(
        **settings.kafka_client_options(), acks="all", enable_idempotence=True
    )
    async with started(producer, settings):
        for key, value in records:
            await bounded(
                settings,
                producer.send_and_wait(settings.model_topic, key=key, value=value),
                f"writing to {settings.model_topic}",
            )


def sign(manifest: ModelManifest, signing_key: SecretStr | None) -> ModelManifest:
    """The manifest signed with signing_key (HMAC-SHA256), or unsigned without a key."""
    if signing_key is None:
        return manifest.model_copy(update={"signature": None})
    return manifest.signed(signing_key.get_secret_value().encode())


def _check_key_matches(registry: ModelRegistry, settings: Settings) -> None:
    """Refuse to publish with a signing key other than the one the live model carries.

    Workers hold one key; a manifest signed with another is refused by all of them, and the
    publisher would see nothing wrong.
    """
    refusal = registry.refused.get(registry.name)
    if settings.model_signing_key is not None and refusal and "wrong signature" in refusal[1]:
        raise ConfigurationError(
            f"SEGSTREAM_MODEL_SIGNING_KEY is not the key the live model {refusal[0]} on "
            f"{settings.model_topic} was signed with; workers holding that key would refuse "
            "what this key signs (wrong key?)"
        )


async def publish_manifest(
    settings: Settings, manifest: ModelManifest, shadow: bool = False
) -> ModelRegistry:
    """Publish manifest as the live model, or as the shadow candidate; return the new state."""
    registry = await read_registry(settings, manifest.name)
    _check_key_matches(registry, settings)
    if shadow and registry.live is not None and registry.live.version == manifest.version:
        raise ManifestError(
            f"{manifest.version} is already live; a shadow candidate must be another version"
        )
    history = None if shadow else [*registry.history, manifest.version]
    return await _publish(settings, registry, manifest, history)


async def _publish(
    settings: Settings,
    registry: ModelRegistry,
    manifest: ModelManifest,
    history: list[str] | None,
) -> ModelRegistry:
    """Write manifest as the candidate (history None) or live with the given history."""
    signed = sign(manifest, settings.model_signing_key)
    body = signed.model_dump_json().encode()
    records: list[tuple[bytes, bytes | None]] = [
        (_archive_key(manifest.name, manifest.version), body)
    ]
    if history is None:
        records.append((_candidate_key(manifest.name), body))
        registry.candidate = signed
    else:
        records.append((_history_key(manifest.name), json.dumps(history).encode()))
        records.append((_live_key(manifest.name), body))
        if registry.candidate is not None and registry.candidate.version == manifest.version:
            records.append((_candidate_key(manifest.name), None))
            registry.candidate = None
        registry.live, registry.history = signed, history
    registry.archive[manifest.version] = signed
    await _send(settings, records)
    return registry


async def rollback(settings: Settings, name: str) -> ModelRegistry:
    """Make the version that was live before the current one live again.

    Rollback walks back: the current version leaves the history, so after A, C, B a
    rollback gives C and the next one A (not B again).
    """
    registry = await read_registry(settings, name)
    _check_key_matches(registry, settings)
    # The last entry is the version made live last, even one this reader (or the workers)
    # refused; the version before it that is not what actually runs is the one to go back to.
    history = registry.history[:-1]
    live = registry.live.version if registry.live else None
    while history and history[-1] == live:
        history.pop()
    if not history:
        raise ManifestError(f"no earlier live version of {name} to roll back to")
    version = history[-1]
    if version not in registry.archive:
        raise ManifestError(f"version {version} of {name} is no longer on {settings.model_topic}")
    return await _publish(settings, registry, registry.archive[version], history)


async def promote(settings: Settings, name: str, version: str) -> ModelRegistry:
    """Make a published version (normally the shadow candidate) live."""
    registry = await read_registry(settings, name)
    if version not in registry.archive:
        known = ", ".join(sorted(registry.archive)) or "none"
        raise ManifestError(f"version {version} of {name} was never published (known: {known})")
    return await publish_manifest(settings, registry.archive[version])
