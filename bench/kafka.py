"""Kafka plumbing of the benchmark: the local broker, topics, group views, producing, watching.

Producing records and watching an output topic go through `bench/peers/probe.py`, a librdkafka
client in bench/.venvs/confluent, so that the harness's own Kafka work stays small next to the
program it measures (aiokafka costs several times as much CPU per record).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from bench import venvs
from stream_app.kafka_io import TopicSpec, ensure_topics
from stream_app.settings import Settings

__all__ = [
    "GroupView",
    "LocalBroker",
    "Seen",
    "Watcher",
    "create_topics",
    "describe_group",
    "produce_records",
    "write_records",
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
    """Create the topics (segstream's own topic administration, one replica each); with
    log_append_time the broker stamps each record on arrival."""
    configs = {"message.timestamp.type": "LogAppendTime"} if log_append_time else {}
    settings = Settings(bootstrap_servers=bootstrap, topic_replication_factor=1)
    await ensure_topics(settings, [TopicSpec(name, partitions, configs) for name in names])


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


def write_records(path: Path, records: Iterable[tuple[bytes, bytes]]) -> int:
    """Write (key, value) records as the probe reads them, `key<TAB>value` a line; the count."""
    count = 0
    with path.open("wb") as out:
        for key, value in records:
            out.write(key + b"\t" + value + b"\n")
            count += 1
    return count


def _probe(*args: str) -> list[str]:
    return [str(venvs.python("confluent")), str(venvs.PEERS / "probe.py"), *args]


async def produce_records(
    bootstrap: str,
    topic: str,
    records: Path,
    rate: float = 0.0,
    dump: Path | None = None,
    log_path: Path | None = None,
) -> dict[str, Any]:
    """Produce a records file (at `rate` a second, or as fast as possible); the probe's summary.

    With `dump`, each record's key and append time (from its delivery report) go to that file.
    """
    args = ["produce", bootstrap, topic, str(records), "--rate", str(rate)]
    if dump is not None:
        args += ["--dump", str(dump)]
    with (log_path or Path("/dev/null")).open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *_probe(*args), stdout=asyncio.subprocess.PIPE, stderr=log
        )
        out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"producing {records} to {topic} failed ({process.returncode})")
    summary: dict[str, Any] = json.loads(out.decode().splitlines()[-1])
    return summary


@dataclass(frozen=True)
class Seen:
    """What the watcher saw by the time every expected key was visible."""

    seen_at: float  # wall time (epoch seconds) the last expected output was seen
    seen: int  # output records, duplicates included
    distinct: int
    first_append_ms: int  # broker append times of the first and last output seen
    last_append_ms: int


class Watcher:
    """A read_committed consumer of a whole output topic, in a probe process of its own."""

    def __init__(self, process: asyncio.subprocess.Process, topic: str, expect: int) -> None:
        self.process = process
        self.topic = topic
        self.expect = expect
        self.pid = process.pid

    @classmethod
    async def start(
        cls,
        bootstrap: str,
        topic: str,
        partitions: int,
        expect: int,
        log_path: Path,
        dump: Path | None = None,
        fetch_min_bytes: int = 1,
    ) -> Watcher:
        """Start watching `topic` from the beginning; return once the probe is connected.

        With fetch_min_bytes above 1 the broker holds each fetch until that much is visible
        or 20 ms have passed, so the watcher costs the broker at most ~50 fetches a second
        however often the program commits, and sees the last output at most 20 ms late.
        """
        args = ["watch", bootstrap, topic, "--partitions", str(partitions)]
        args += ["--expect", str(expect), "--fetch-min-bytes", str(fetch_min_bytes)]
        args += ["--dump", str(dump)] if dump else []
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                *_probe(*args), stdout=asyncio.subprocess.PIPE, stderr=log
            )
        watcher = cls(process, topic, expect)
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=60)
        if json.loads(line or b"{}").get("ready") is not True:
            await watcher.close()
            raise RuntimeError(f"the probe watching {topic} did not start (see {log_path})")
        return watcher

    async def wait(self, checks: Sequence[Callable[[], None]], limit_s: float) -> Seen:
        """Wait until every expected key was seen; `checks` raise when a program died."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + limit_s
        progress: dict[str, Any] = {}
        while time.monotonic() < deadline:
            for check in checks:
                check()
            try:
                line = await asyncio.wait_for(self.process.stdout.readline(), timeout=0.5)
            except TimeoutError:
                continue
            if not line:
                raise RuntimeError(f"the probe watching {self.topic} exited: {progress}")
            message = json.loads(line)
            if message.get("done"):
                return Seen(
                    seen_at=message["seen_at"],
                    seen=message["seen"],
                    distinct=message["distinct"],
                    first_append_ms=message["first_append_ms"],
                    last_append_ms=message["last_append_ms"],
                )
            progress = message
        raise RuntimeError(
            f"only {progress.get('distinct', 0):,} of {self.expect:,} outputs visible on "
            f"{self.topic} after {limit_s:.0f} s"
        )

    async def close(self) -> None:
        """Stop the probe if it still runs."""
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()
