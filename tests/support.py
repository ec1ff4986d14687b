"""What tests share besides fixtures: a clean environment, polling with a deadline, the local
broker, fresh names, segstream processes and reading topics back."""

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
KAFKA_LOCAL = REPO / "scripts" / "kafka-local"
SEGSTREAM = Path(sys.executable).with_name("segstream")

T = TypeVar("T")

# Variables of scripts/kafka-local: they say where its jars are cached and how it starts, so the
# broker scripts keep them; segstream's own processes never see them.
_BROKER_SCRIPT_VARIABLES = frozenset(
    {
        "SEGSTREAM_KAFKA_DIR",
        "SEGSTREAM_KAFKA_CACHE",
        "SEGSTREAM_KAFKA_START_TIMEOUT",
        "SEGSTREAM_KAFKA_JAVA_OPTS",
    }
)
# segstream's settings; Faust's module-level ones (faust/types/_env.py reads FAUST_ and F_
# names when it is imported).
_FOREIGN_PREFIXES = ("SEGSTREAM_", "FAUST_", "F_")
# Read by faust and mode at import: Cython switches, mode's development log, gevent's loop.
_IMPORT_TIME_VARIABLES = frozenset({"NO_CYTHON", "TYPEXPR_DEBUG", "DEVLOG", "GEVENT_LOOP"})


@cache
def _faust_setting_variables() -> frozenset[str]:
    """The unprefixed names Faust's Settings read (BROKER_URL, WEB_PORT, APP_DATADIR, ...).

    Faust lets each of them override what the app passes in code, so one left in the
    environment would change a worker behind its settings' back.
    """
    from faust.types.settings import Settings as FaustSettings

    return frozenset(p.env_name for p in FaustSettings.SETTINGS.values() if p.env_name)


def foreign_variables(environ: Mapping[str, str], *, with_faust_settings: bool = True) -> list[str]:
    """The names in environ that would configure segstream, Faust or mode behind a test's back.

    Without with_faust_settings, only those safe to judge before Faust is imported.
    """
    faust_names = _faust_setting_variables() if with_faust_settings else frozenset()
    return [
        name
        for name in environ
        if name.upper().startswith(_FOREIGN_PREFIXES)
        or name.upper() in _IMPORT_TIME_VARIABLES | faust_names
    ]


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without foreign variables, plus extra."""
    foreign = set(foreign_variables(os.environ))
    env = {name: value for name, value in os.environ.items() if name not in foreign}
    env.update(extra)
    return env


#: kafka-local's own variables as the run was started with them (conftest keeps them here
#: before clearing the environment).
BROKER_SCRIPT_ENVIRONMENT: dict[str, str] = {}


def keep_broker_script_variables(environ: Mapping[str, str]) -> None:
    """Remember kafka-local's variables from environ for the broker scripts the tests run."""
    BROKER_SCRIPT_ENVIRONMENT.update(
        {name: value for name, value in environ.items() if name in _BROKER_SCRIPT_VARIABLES}
    )


def poll(
    condition: Callable[[], T | None],
    what: str,
    timeout: float = 60,
    interval: float = 0.2,
    explain: Callable[[], str] | None = None,
) -> T:
    """Call condition until it returns a true value and return that value; fail the test
    naming what (and explain()'s account) if the deadline passes first."""
    deadline = time.monotonic() + timeout
    while True:
        outcome = condition()
        if outcome:  # None, False, 0 and empty collections mean "not yet"
            return outcome
        if time.monotonic() >= deadline:
            pytest.fail(f"not within {timeout} s: {what}" + (f"\n{explain()}" if explain else ""))
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Broker:
    """A running local broker (or cluster) and the script that controls it."""

    bootstrap: str
    state_dir: Path

    def control(self, command: str, *options: str, timeout: float = 180) -> str:
        """Run `scripts/kafka-local COMMAND STATE_DIR OPTIONS`; fail the test when it fails."""
        done = subprocess.run(
            [str(KAFKA_LOCAL), command, str(self.state_dir), *options],
            env=clean_environment(**BROKER_SCRIPT_ENVIRONMENT),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(f"kafka-local {command} failed ({done.returncode}): {done.stderr[-2000:]}")
        return done.stdout.strip()

    def stop(self) -> None:
        """Stop the broker; nothing to fail, since the tests that used it are over."""
        subprocess.run(
            [str(KAFKA_LOCAL), "stop", str(self.state_dir)],
            env=clean_environment(**BROKER_SCRIPT_ENVIRONMENT),
            check=False,
            timeout=120,
        )


def start_broker(state_dir: Path, *options: str) -> Broker:
    """Start kafka-local in state_dir (with options such as --nodes 3); the test fails if it
    cannot start."""
    return Broker(Broker("", state_dir).control("start", *options, timeout=300), state_dir)


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


def segstream_env(kafka: Broker, names: Names, **extra: str) -> dict[str, str]:
    """Environment for a segstream process bound to this test's broker and topics (extra
    settings added or replacing those)."""
    bound = {
        "SEGSTREAM_BOOTSTRAP_SERVERS": kafka.bootstrap,
        "SEGSTREAM_INPUT_TOPIC": names.input_topic,
        "SEGSTREAM_OUTPUT_TOPIC": names.output_topic,
        "SEGSTREAM_DLQ_TOPIC": names.dlq_topic,
        "SEGSTREAM_MODEL_TOPIC": names.model_topic,
        "SEGSTREAM_APP_ID": names.app_id,
        "SEGSTREAM_STATE_TOPIC": names.state_topic or f"{names.output_topic}.current",
        "SEGSTREAM_CHANGES_TOPIC": names.changes_topic or f"{names.output_topic}.changes",
        # Tests give every worker fresh topics; on a real cluster topics are created beforehand.
        "SEGSTREAM_CREATE_TOPICS": "true",
    }
    return clean_environment(**(bound | extra))


def run_segstream(
    args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    """Run the installed `segstream` program (in a clean environment unless env is given)."""
    return subprocess.run(
        [str(SEGSTREAM), *args],
        env=clean_environment() if env is None else env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(args: list[str], env: dict[str, str] | None = None, timeout: int = 300) -> str:
    """Run segstream, fail the test unless it exits 0, and return its stdout."""
    done = run_segstream(args, env=env, timeout=timeout)
    assert done.returncode == 0, f"segstream {' '.join(args)}: {done.stderr[-3000:]}"
    return done.stdout


def tail(env: dict[str, str], topic: str, expected: int) -> list[dict[str, Any]]:
    """The first expected records of topic as `segstream tail` prints them (waiting up to
    30 s for each)."""
    args = ["--topic", topic, "--from-beginning", "--limit", str(expected), "--idle-timeout", "30"]
    return [json.loads(line) for line in ok(["tail", *args], env=env).splitlines()]


@dataclass
class Background:
    """A segstream command running beside the test; finish() fails the test unless it exits 0."""

    args: list[str]
    process: subprocess.Popen[bytes]
    log_path: Path

    def finish(self, timeout: float = 600) -> None:
        """Wait for the command; fail the test with its output if it fails or overruns."""
        try:
            status = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"segstream {' '.join(self.args)} still running after {timeout} s")
        output = self.log_path.read_text(errors="replace")[-3000:]
        assert status == 0, f"segstream {' '.join(self.args)} exited {status}:\n{output}"

    def kill(self) -> None:
        """Stop the command if it still runs (a test that failed before finish())."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start_segstream(args: list[str], env: dict[str, str], log_path: Path) -> Background:
    """Start `segstream ARGS` in the background, its output going to log_path."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(SEGSTREAM), *args], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    return Background(args, process, log_path)


@dataclass
class WorkerProcess:
    """A `segstream worker` subprocess with its health port and log file."""

    process: subprocess.Popen[bytes]
    web_port: int
    log_path: Path
    _log_handle: IO[bytes] | None = field(repr=False, default=None)

    def health(self, path: str = "/ready") -> httpx.Response:
        """GET one of the worker's health endpoints."""
        return httpx.get(f"http://127.0.0.1:{self.web_port}{path}", timeout=5)

    def status(self) -> dict[str, Any]:
        """The worker's /health body."""
        body: dict[str, Any] = self.health("/health").json()
        return body

    def log_tail(self, lines: int = 40) -> str:
        """The end of the worker's log, for failure messages."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self, timeout: float = 60) -> dict[str, Any]:
        """Wait until /ready answers 200 and return its body; fail with the log if it never does
        or the worker exits."""

        def ready() -> dict[str, Any] | None:
            if self.process.poll() is not None:
                pytest.fail(f"worker exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                response = self.health()
            except httpx.HTTPError:
                return None
            body: dict[str, Any] = response.json()
            return body if response.status_code == 200 else None

        return poll(ready, "worker ready", timeout, 0.3, self.log_tail)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM and wait; return the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log_handle is not None:
            self._log_handle.close()
        return self.process.returncode


def fresh_names() -> Names:
    """Topic names and a consumer group nothing else uses."""
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


class WorkerFactory(Protocol):
    """Starts a `segstream worker` with a model directory (or none) and extra settings."""

    def __call__(self, model_path: Path | None, **extra: str) -> WorkerProcess: ...


def worker_starter(
    kafka: Broker, names: Names, log_dir: Path
) -> tuple[WorkerFactory, list[WorkerProcess]]:
    """A function that starts `segstream worker` subprocesses, and the list of those started."""
    started: list[WorkerProcess] = []

    def start(model_path: Path | None, **extra: str) -> WorkerProcess:
        index = len(started)
        log_path = log_dir / f"worker-{index}.log"
        handle = log_path.open("wb")
        settings = {
            "SEGSTREAM_WEB_PORT": str(free_port()),
            "SEGSTREAM_DATA_DIR": str(log_dir / f"worker-{index}-data"),
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

    return start, started


def stop_all(workers: list[WorkerProcess]) -> None:
    """SIGTERM every worker; fail the test if one that was still running exits otherwise than
    cleanly (one that exited before is the test's business)."""
    running = [worker for worker in workers if worker.process.poll() is None]
    for worker in workers:
        worker.stop()
    for worker in running:
        status = worker.process.returncode
        assert status == 0, f"worker exited {status} on SIGTERM:\n{worker.log_tail()}"


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
    from aiokafka import AIOKafkaConsumer, TopicPartition

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


def batch_codecs(kafka: Broker, topic: str) -> Counter[str]:
    """How the data batches in topic's log files on a single-node broker are compressed,
    as Kafka's own DumpLogSegments reads them: codec name -> number of batches (the
    transaction markers, control batches, are left out)."""
    folders = [
        folder
        for folder in (kafka.state_dir / "data").iterdir()
        if folder.name.rpartition("-")[0] == topic and folder.name.rpartition("-")[2].isdigit()
    ]
    files = sorted(
        str(log) for folder in folders for log in folder.glob("*.log") if log.stat().st_size
    )
    assert files, f"no log files of {topic} under {kafka.state_dir}"
    libs = kafka.control("jars")
    # The Java scripts/kafka-local runs the broker with.
    home = os.environ.get("JAVA_HOME")
    java = f"{home}/bin/java" if home else "java"
    done = subprocess.run(
        [java, "-cp", f"{libs}/*", "kafka.tools.DumpLogSegments", "--files", ",".join(files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    codecs: Counter[str] = Counter()
    for line in done.stdout.splitlines():
        if line.startswith("baseOffset:") and "isControl: false" in line:
            codecs[line.split("compresscodec: ", 1)[1].split()[0]] += 1
    return codecs


def unconsumed(bootstrap: str, group: str, topic: str) -> int:
    """How many records of topic the consumer group has not committed yet."""
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    async def lag() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            committed = await admin.list_consumer_group_offsets(group)
            (described,) = await admin.describe_topics([topic])
            partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
        finally:
            await admin.close()
        ends = await _end_offsets(bootstrap, partitions)
        return sum(ends[tp] - (committed[tp].offset if tp in committed else 0) for tp in partitions)

    return asyncio.run(lag())


async def _end_offsets(
    bootstrap: str, partitions: list[Any], isolation_level: str = "read_uncommitted"
) -> dict[Any, int]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, isolation_level=isolation_level
    )
    await consumer.start()
    try:
        ends: dict[Any, int] = await consumer.end_offsets(partitions)
        return ends
    finally:
        await consumer.stop()


def open_transactions(bootstrap: str, topics: Sequence[str]) -> int:
    """Records of topics that a transaction still open holds back from read_committed
    readers (high watermark minus last stable offset, summed over partitions)."""
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    async def held_back() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            described = await admin.describe_topics(list(topics))
        finally:
            await admin.close()
        tps = [
            TopicPartition(topic["topic"], p["partition"])
            for topic in described
            for p in topic["partitions"]
        ]
        high = await _end_offsets(bootstrap, tps)
        last_stable = await _end_offsets(bootstrap, tps, "read_committed")
        return sum(high[tp] - last_stable[tp] for tp in tps)

    return asyncio.run(held_back())


def wait_until_settled(bootstrap: str, topics: Sequence[str], timeout: float = 60) -> None:
    """Wait until no transaction is open on topics.

    A worker killed in a transaction leaves it open until the broker aborts it
    (transaction.timeout.ms); until then read_committed readers stop at its first record and
    do not see what later transactions committed behind it.
    """
    poll(
        lambda: open_transactions(bootstrap, topics) == 0,
        f"no open transaction on {', '.join(topics)}",
        timeout,
        interval=0.5,
    )


def wait_until_consumed(bootstrap: str, group: str, topic: str, timeout: float = 120) -> None:
    """Wait until the consumer group has committed every record of topic.

    Workers deliver outputs before (at-least-once) or with (exactly-once) the offsets they come
    from, so after this their output and dead-letter topics hold all they ever will.
    """
    poll(
        lambda: unconsumed(bootstrap, group, topic) == 0,
        f"{group} commits every record of {topic}",
        timeout,
        interval=0.5,
        explain=lambda: f"{unconsumed(bootstrap, group, topic)} records left",
    )


def write_signups(path: Path, n: int, seed: int, invalid_share: float = 0.0) -> Path:
    """Write n generated signups (invalid_share of them broken), one a line; return path."""
    from training.generate import generate_signups

    with path.open("wb") as handle:
        for value in generate_signups(n, seed=seed, invalid_share=invalid_share):
            handle.write(value + b"\n")
    return path


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


#: Rows of figures the fault tests record (tests/reliability), printed at the end of the run.
RELIABILITY_FIGURES: list[dict[str, object]] = []


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
