"""Shared fixtures: a real Kafka broker for the session, fresh topics and workers per test."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

REPO = Path(__file__).resolve().parent.parent
KAFKA_LOCAL = REPO / "scripts" / "kafka-local"
SEGSTREAM = Path(sys.executable).with_name("segstream")


@pytest.fixture(autouse=True)
def _no_segstream_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts from the defaults: no SEGSTREAM_ variable, no cached settings."""
    from stream_app.cli import common as cli
    from stream_app.settings import get_settings

    for name in [n for n in os.environ if n.upper().startswith("SEGSTREAM_")]:
        monkeypatch.delenv(name)
    get_settings.cache_clear()
    monkeypatch.setattr(cli, "_warned", False)
    yield
    get_settings.cache_clear()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Broker:
    """A running local broker and the script that controls it."""

    bootstrap: str
    state_dir: Path

    def control(self, command: str) -> str:
        """Run `scripts/kafka-local COMMAND STATE_DIR`; fail the test when it fails."""
        done = subprocess.run(
            [str(KAFKA_LOCAL), command, str(self.state_dir)],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"kafka-local {command} failed ({done.returncode}): {done.stderr[-2000:]}")
        return done.stdout.strip()


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A real single-node Kafka broker for the whole session; the tests fail if it cannot start."""
    state_dir = tmp_path_factory.mktemp("kafka")
    broker = Broker(bootstrap="", state_dir=state_dir)
    bootstrap = broker.control("start")
    try:
        yield Broker(bootstrap=bootstrap, state_dir=state_dir)
    finally:
        subprocess.run([str(KAFKA_LOCAL), "stop", str(state_dir)], check=False, timeout=60)


@dataclass(frozen=True)
class Names:
    """Topic names and a consumer group no other test uses."""

    input_topic: str
    output_topic: str
    dlq_topic: str
    model_topic: str
    app_id: str
    state_topic: str = ""
    changes_topic: str = ""


@pytest.fixture
def names() -> Names:
    """Fresh topic names and consumer group for one test."""
    uid = uuid.uuid4().hex[:10]
    return Names(
        input_topic=f"signups-{uid}",
        output_topic=f"segments-{uid}",
        dlq_topic=f"signups-{uid}.dlq",
        model_topic=f"models-{uid}",
        app_id=f"segstream-test-{uid}",
        state_topic=f"segments-{uid}.current",
        changes_topic=f"segment-changes-{uid}",
    )


def segstream_env(kafka: Broker, names: Names, **extra: str) -> dict[str, str]:
    """Environment for a segstream process bound to this test's broker and topics."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGSTREAM_")}
    env.update(
        SEGSTREAM_BOOTSTRAP_SERVERS=kafka.bootstrap,
        SEGSTREAM_INPUT_TOPIC=names.input_topic,
        SEGSTREAM_OUTPUT_TOPIC=names.output_topic,
        SEGSTREAM_DLQ_TOPIC=names.dlq_topic,
        SEGSTREAM_MODEL_TOPIC=names.model_topic,
        SEGSTREAM_APP_ID=names.app_id,
        SEGSTREAM_STATE_TOPIC=names.state_topic or f"{names.output_topic}.current",
        SEGSTREAM_CHANGES_TOPIC=names.changes_topic or f"{names.output_topic}.changes",
        # Tests give every worker fresh topics; on a real cluster topics are created beforehand.
        SEGSTREAM_CREATE_TOPICS="true",
    )
    env.update(extra)
    return env


def run_segstream(
    args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    """Run the installed `segstream` program and return what it did."""
    return subprocess.run(
        [str(SEGSTREAM), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class WorkerProcess:
    """A `segstream worker` subprocess with its health port and log file."""

    process: subprocess.Popen[bytes]
    web_port: int
    log_path: Path
    _log_handle: object = field(repr=False, default=None)

    def health(self, path: str = "/ready") -> httpx.Response:
        """GET one of the worker's health endpoints."""
        return httpx.get(f"http://127.0.0.1:{self.web_port}{path}", timeout=5)

    def log_tail(self, lines: int = 40) -> str:
        """The end of the worker's log, for failure messages."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, timeout: float = 60) -> dict[str, object]:
        """Wait until /ready answers 200; fail with the log if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"worker exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                response = self.health()
                if response.status_code == 200:
                    body: dict[str, object] = response.json()
                    return body
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        pytest.fail(f"worker not ready within {timeout} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM and wait; return the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if hasattr(self._log_handle, "close"):
            self._log_handle.close()
        return self.process.returncode


@pytest.fixture
def worker_factory(
    kafka: Broker, names: Names, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start `segstream worker` subprocesses for this test; all are stopped at its end."""
    started: list[WorkerProcess] = []

    def start(model_path: Path | None, **extra: str) -> WorkerProcess:
        index = len(started)
        log_path = tmp_path / f"worker-{index}.log"
        handle = log_path.open("wb")
        settings = {
            "SEGSTREAM_WEB_PORT": str(free_port()),
            "SEGSTREAM_DATA_DIR": str(tmp_path / f"worker-{index}-data"),
            **({"SEGSTREAM_MODEL_PATH": str(model_path)} if model_path else {}),
            **extra,
        }
        env = segstream_env(kafka, names, **settings)
        process = subprocess.Popen(
            [str(SEGSTREAM), "worker"], env=env, stdout=handle, stderr=subprocess.STDOUT
        )
        worker = WorkerProcess(process, int(settings["SEGSTREAM_WEB_PORT"]), log_path, handle)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained on 400 generated customers; the path of its directory."""
    root = tmp_path_factory.mktemp("model")
    customers = root / "customers.csv"
    made = run_segstream(
        ["generate", "customers", "--n", "400", "--seed", "1", "--out", str(customers)]
    )
    assert made.returncode == 0, made.stderr
    trained = run_segstream(
        ["train", "--data", str(customers), "--k", "4", "--out", str(root / "models")]
    )
    assert trained.returncode == 0, trained.stderr
    return Path(trained.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class TopicRecord:
    """One record read back from a topic."""

    key: bytes | None
    value: bytes | None
    partition: int
    offset: int
    timestamp: float  # seconds
    headers: tuple[tuple[str, bytes], ...]

    def json(self) -> Any:
        """The value parsed as JSON."""
        assert self.value is not None
        return json.loads(self.value)


def read_topic(bootstrap: str, topic: str) -> list[TopicRecord]:
    """Every committed record of topic, read to its current end (read_committed)."""

    async def read() -> list[TopicRecord]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=None, isolation_level="read_committed"
        )
        await consumer.start()
        try:
            partitions: set[int] | None = None
            for _ in range(100):
                partitions = consumer.partitions_for_topic(topic)
                if partitions:
                    break
                # aiokafka has no public call that refreshes metadata for an assigned consumer.
                await consumer._client.force_metadata_update()
                await asyncio.sleep(0.1)
            assert partitions, f"topic {topic} does not exist"
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            records: list[TopicRecord] = []
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                batches = await consumer.getmany(timeout_ms=1000)
                for messages in batches.values():
                    records += [
                        TopicRecord(
                            m.key,
                            m.value,
                            m.partition,
                            m.offset,
                            m.timestamp / 1000,
                            tuple(m.headers or ()),
                        )
                        for m in messages
                    ]
            return records
        finally:
            await consumer.stop()

    return asyncio.run(read())


def wait_for_records(
    bootstrap: str, topic: str, expected: int, timeout: float = 120
) -> list[TopicRecord]:
    """Read topic until it holds at least expected records (then once more, for duplicates)."""
    deadline = time.monotonic() + timeout
    records: list[TopicRecord] = []
    while time.monotonic() < deadline:
        records = read_topic(bootstrap, topic)
        if len(records) >= expected:
            time.sleep(2)  # anything that would duplicate arrives now or never
            return read_topic(bootstrap, topic)
        time.sleep(1)
    return records


def signup_ids(path: Path) -> tuple[set[str], int]:
    """The event ids of the valid signups in a JSONL file, and the number of invalid lines.

    Generated broken signups are not JSON objects or carry the customer_id "bad".
    """
    valid: set[str] = set()
    invalid = 0
    for line in path.read_bytes().splitlines():
        try:
            body = json.loads(line)
        except ValueError:
            invalid += 1
            continue
        if isinstance(body, dict) and body.get("customer_id", "bad") != "bad":
            valid.add(body["event_id"])
        else:
            invalid += 1
    return valid, invalid


def delivery_figures(
    assignments: list[TopicRecord], letters: list[TopicRecord], valid: set[str], invalid: int
) -> dict[str, int]:
    """Events in, assigned and dead-lettered (each once), extra copies, and events never out."""
    seen = Counter(r.json()["source_event_id"] for r in assignments)
    origins = Counter((r.json()["source_partition"], r.json()["source_offset"]) for r in letters)
    return {
        "in": len(valid) + invalid,
        "assigned": len(seen),
        "dead_lettered": len(origins),
        "duplicates": sum(n - 1 for n in seen.values()) + sum(n - 1 for n in origins.values()),
        "missing": len(valid - set(seen)) + (invalid - len(origins)),
    }


def write_figures(
    reporter: pytest.TerminalReporter,
    title: str,
    columns: list[str],
    rows: list[dict[str, object]],
    path: Path,
) -> None:
    """Print rows of figures as a table at the end of a run (a row's note last); save as JSON."""
    if not rows:
        return
    reporter.section(title)
    reporter.write_line("  ".join(f"{c:>14}" for c in columns))
    for row in rows:
        cells = "  ".join(f"{row.get(c, '')!s:>14}" for c in columns)
        reporter.write_line(cells + (f"  {row['note']}" if "note" in row else ""))
    path.write_text(json.dumps(rows, indent=2) + "\n")
