"""Run one program under test against the broker and measure it: throughput, latency, RSS.

Each measurement gets fresh output topics and a fresh consumer group. Programs run as real
subprocesses (the segstream worker as `segstream worker`, exactly as users run it) and start
behind a gate, so group joins and start-up stay out of the figures: the segstream worker waits
for its model (SEGSTREAM_MODEL_PATH points at an empty models root until the harness publishes
the model there), the other two wait for the same LATEST file to appear.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from aiokafka.errors import KafkaError

from bench.kafka import (
    GroupView,
    OutputRecord,
    create_topics,
    describe_group,
    end_offsets_total,
    produce_at_rate,
    read_records,
)
from tests.conftest import free_port

__all__ = [
    "PROGRAMS",
    "Bench",
    "LatencyRun",
    "Program",
    "ThroughputRun",
    "percentile",
]

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PARTITIONS = 4
_GROUP_TIMEOUT = 120.0


def _machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine have used since boot (from /proc/stat)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _process_cpu_seconds(pid: int) -> float:
    """User plus system CPU time of one process, in seconds; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    # utime and stime are fields 14 and 15 of /proc/PID/stat, counted from the pid.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Contention:
    """How many cores processes outside the benchmark kept busy while a measurement ran."""

    def __init__(self, own_pids: Sequence[int]) -> None:
        self.own_pids = [*own_pids, os.getpid()]
        self.began = time.monotonic()
        self.machine = _machine_busy_seconds()
        self.own = sum(_process_cpu_seconds(pid) for pid in self.own_pids)

    def other_cores(self) -> float:
        """Average number of cores used by everything else since the start."""
        wall = max(1e-3, time.monotonic() - self.began)
        machine = _machine_busy_seconds() - self.machine
        own = sum(_process_cpu_seconds(pid) for pid in self.own_pids) - self.own
        return max(0.0, machine - own) / wall


@dataclass(frozen=True)
class Program:
    """A program under test: how to start it and how it waits for the gate."""

    name: str
    title: str
    command: tuple[str, ...]
    has_ready_endpoint: bool = False
    env: tuple[tuple[str, str], ...] = ()


PROGRAMS: dict[str, Program] = {
    "worker": Program(
        "worker", "segstream worker", (str(BIN / "segstream"), "worker"), has_ready_endpoint=True
    ),
    "passthrough": Program(
        "passthrough",
        "aiokafka passthrough (no scoring)",
        (sys.executable, "-m", "bench.passthrough"),
    ),
    "aiokafka-pipeline": Program(
        "aiokafka-pipeline",
        "segstream's process_records in a plain aiokafka loop (no Faust)",
        (sys.executable, "-m", "bench.passthrough"),
        env=(("BENCH_SCORE", "1"),),
    ),
    "naive": Program(
        "naive",
        "naive Faust agent, sklearn predict per event",
        (sys.executable, "-m", "bench.naive_agent", "worker", "-l", "warn"),
    ),
    "variant": Program(
        "variant",
        "segstream worker, bench-only variant (BENCH_VARIANT)",
        (sys.executable, "-m", "bench.variants"),
        has_ready_endpoint=True,
    ),
}


@dataclass
class _Process:
    """One running program with its log and health port."""

    popen: subprocess.Popen[bytes]
    log_path: Path
    web_port: int

    def peak_rss_mb(self) -> float:
        """Peak resident set size so far (VmHWM), in MiB."""
        status = Path(f"/proc/{self.popen.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        """User plus system CPU time used so far, in seconds."""
        return _process_cpu_seconds(self.popen.pid)

    def check_alive(self) -> None:
        """Raise with the end of the log when the program has exited."""
        if self.popen.poll() is not None:
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])
            raise RuntimeError(f"{self.popen.args!r} exited with {self.popen.returncode}:\n{tail}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@dataclass
class ThroughputRun:
    """One drain of the pre-filled topic by one or more instances of a program."""

    program: str
    instances: int
    events: int
    throughput: float  # events/s over the window where every instance was busy, warm-up excluded
    first_to_last: float  # events/s from first to last output, nothing excluded
    window_s: float
    peak_rss_mb: list[float]
    cpu_us_per_event: float  # CPU time of all instances from gate to last output, per event
    cpu_share: float  # that CPU time over wall time and instances (1.0 = one busy core each)
    other_cores: float  # cores kept busy meanwhile by processes outside the benchmark
    assignment: dict[str, list[int]]
    assignment_stable: bool
    outputs: int
    distinct_keys: int


@dataclass
class LatencyRun:
    """End-to-end latency at a fixed offered rate."""

    program: str
    rate: float
    events: int
    measured: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    peak_rss_mb: float
    other_cores: float
    latencies_ms: list[int] = field(repr=False, default_factory=list)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation, as numpy's default."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def window_throughput(
    records: Sequence[OutputRecord], owners: dict[int, str], warmup_fraction: float
) -> tuple[float, float]:
    """Events/s while every instance was busy, the first warmup_fraction excluded; and span.

    The window runs from the latest first output of any instance to the earliest last one, so
    a second instance that started a little later, or finished a little earlier, does not
    count against the pair. With one instance it is simply first to last output.
    """
    by_owner: dict[str, list[int]] = {}
    for record in records:
        by_owner.setdefault(owners.get(record.partition, "?"), []).append(record.timestamp_ms)
    start = max(min(stamps) for stamps in by_owner.values())
    end = min(max(stamps) for stamps in by_owner.values())
    inside = sorted(r.timestamp_ms for r in records if start <= r.timestamp_ms <= end)
    kept = inside[int(len(inside) * warmup_fraction) :]
    span = (kept[-1] - kept[0]) / 1000 if len(kept) > 1 else 0.0
    return ((len(kept) - 1) / span if span > 0 else float("nan")), span


class Bench:
    """Shared context of one benchmark run: broker, model, work folder, pre-filled topic."""

    def __init__(
        self,
        bootstrap: str,
        work_dir: Path,
        model_dir: Path,
        input_topic: str,
        events: int,
        batch_size: int,
        batch_window_ms: int,
        extra_env: dict[str, str] | None = None,
        broker_pid: int | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.bootstrap = bootstrap
        self.work_dir = work_dir
        self.model_dir = model_dir
        self.input_topic = input_topic
        self.events = events
        self.batch_size = batch_size
        self.batch_window_ms = batch_window_ms
        self.extra_env = extra_env or {}
        self.broker_pids = [broker_pid] if broker_pid else []
        self.log = log

    # ------------------------------------------------------------------ processes

    def _env(self, uid: str, input_topic: str, gate: Path, index: int, port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEGSTREAM_")}
        env.update(
            SEGSTREAM_BOOTSTRAP_SERVERS=self.bootstrap,
            SEGSTREAM_INPUT_TOPIC=input_topic,
            SEGSTREAM_OUTPUT_TOPIC=f"out-{uid}",
            SEGSTREAM_DLQ_TOPIC=f"dlq-{uid}",
            SEGSTREAM_MODEL_TOPIC=f"models-{uid}",
            SEGSTREAM_APP_ID=f"bench-{uid}",
            SEGSTREAM_WEB_PORT=str(port),
            SEGSTREAM_DATA_DIR=str(self.work_dir / uid / f"data-{index}"),
            SEGSTREAM_MODEL_PATH=str(gate),
            SEGSTREAM_BATCH_SIZE=str(self.batch_size),
            SEGSTREAM_BATCH_WINDOW_MS=str(self.batch_window_ms),
            # The dead-letter topic is not made beforehand; the worker makes it on start.
            SEGSTREAM_CREATE_TOPICS="true",
            BENCH_GATE=str(gate / "LATEST"),
            BENCH_MODEL_DIR=str(self.model_dir),
            PYTHONPATH=str(REPO),
        )
        env.update(self.extra_env)
        return env

    def _start(
        self, program: Program, uid: str, input_topic: str, gate: Path, index: int
    ) -> _Process:
        port = free_port()
        log_path = self.work_dir / uid / f"{program.name}-{index}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as handle:
            popen = subprocess.Popen(
                program.command,
                env={**self._env(uid, input_topic, gate, index, port), **dict(program.env)},
                cwd=REPO,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        return _Process(popen, log_path, port)

    def _publish_model(self, gate: Path) -> None:
        """Put the model where the gated programs look; LATEST appears atomically, last."""
        shutil.copytree(self.model_dir, gate / self.model_dir.name)
        staging = gate / "LATEST.tmp"
        staging.write_text(self.model_dir.name + "\n")
        staging.rename(gate / "LATEST")

    async def _wait_for_group(
        self, group: str, topic: str, instances: int, processes: Sequence[_Process]
    ) -> GroupView:
        deadline = time.monotonic() + _GROUP_TIMEOUT
        view = GroupView("Unknown", {})
        while time.monotonic() < deadline:
            for process in processes:
                process.check_alive()
            try:
                view = await describe_group(self.bootstrap, group, topic)
            except KafkaError:  # the coordinator may not know the group yet
                view = GroupView("Unknown", {})
            if view.owns_each_partition_once(PARTITIONS, instances):
                return view
            await asyncio.sleep(0.5)
        raise RuntimeError(f"group {group} never settled with {instances} members: {view}")

    async def _wait_for_outputs(
        self,
        topic: str,
        expected: int,
        processes: Sequence[_Process],
        limit_s: float,
        settle: bool = True,
    ) -> int:
        """Wait until the topic's end offsets reach `expected`, then (with settle) stop growing.

        A transactional producer's commit markers take offsets too, so with exactly-once
        output `expected` offsets can be reached before the last records are; once the
        end offsets stop moving for a second, the program has written all it will.
        """
        deadline = time.monotonic() + limit_s
        count = 0
        settled_at: float | None = None
        while time.monotonic() < deadline:
            for process in processes:
                process.check_alive()
            previous, count = count, await end_offsets_total(self.bootstrap, topic, PARTITIONS)
            if count >= expected:
                if not settle:
                    return count
                if count != previous:
                    settled_at = time.monotonic()
                elif settled_at is not None and time.monotonic() - settled_at >= 1.0:
                    return count
            await asyncio.sleep(0.25)
        raise RuntimeError(f"only {count} of {expected} outputs on {topic} after {limit_s:.0f} s")

    @staticmethod
    async def _wait_ready(process: _Process, limit_s: float = 60) -> None:
        deadline = time.monotonic() + limit_s
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                process.check_alive()
                try:
                    response = await client.get(f"http://127.0.0.1:{process.web_port}/ready")
                    if response.status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError("worker never became ready")

    # ------------------------------------------------------------------ measurements

    async def throughput(
        self,
        program: Program,
        instances: int = 1,
        limit: int | None = None,
        warmup_fraction: float = 0.1,
        on_started: Callable[[Sequence[int]], None] | None = None,
    ) -> ThroughputRun:
        """Drain the pre-filled topic (or its first `limit` events) and time the outputs."""
        uid = uuid.uuid4().hex[:10]
        group = f"bench-{uid}"
        output_topic = f"out-{uid}"
        gate = self.work_dir / uid / "gate"
        gate.mkdir(parents=True)
        await create_topics(self.bootstrap, [output_topic], PARTITIONS, log_append_time=True)
        expected = min(limit or self.events, self.events)
        processes = [self._start(program, uid, self.input_topic, gate, i) for i in range(instances)]
        try:
            view = await self._wait_for_group(group, self.input_topic, instances, processes)
            if on_started is not None:
                on_started([p.popen.pid for p in processes])
            contention = _Contention([*self.broker_pids, *(p.popen.pid for p in processes)])
            cpu_before = [p.cpu_seconds() for p in processes]
            opened_ms = time.time() * 1000
            self._publish_model(gate)
            # A slow program gets time enough; a broken one fails on its exit, not here.
            await self._wait_for_outputs(
                output_topic, expected, processes, limit_s=1800, settle=limit is None
            )
            cpu = sum(p.cpu_seconds() for p in processes) - sum(cpu_before)
            other_cores = contention.other_cores()
            view_after = await describe_group(self.bootstrap, group, self.input_topic)
            peak_rss = [p.peak_rss_mb() for p in processes]
        finally:
            for process in processes:
                process.stop()
        records = await read_records(self.bootstrap, output_topic, PARTITIONS)
        if limit is not None:
            # Programs stopped mid-stream: time the first `expected` outputs only.
            records = sorted(records, key=lambda r: r.timestamp_ms)[:expected]
        # Busy time: from opening the gate to the last output reaching the broker.
        wall = max(1e-3, (max(r.timestamp_ms for r in records) - opened_ms) / 1000)
        owners = {p: member for member, parts in view.members.items() for p in parts}
        rate, span = window_throughput(records, owners, warmup_fraction)
        stamps = [r.timestamp_ms for r in records]
        overall_span = (max(stamps) - min(stamps)) / 1000
        return ThroughputRun(
            program=program.name,
            instances=instances,
            events=expected,
            throughput=rate,
            first_to_last=(len(records) - 1) / overall_span if overall_span else float("nan"),
            window_s=span,
            peak_rss_mb=peak_rss,
            cpu_us_per_event=cpu / expected * 1e6,
            cpu_share=cpu / wall / instances,
            other_cores=other_cores,
            assignment={m: sorted(p) for m, p in view.members.items()},
            assignment_stable=view_after.members == view.members,
            outputs=len(records),
            distinct_keys=len({r.key for r in records}),
        )

    async def latency(
        self,
        program: Program,
        records: Sequence[tuple[bytes, bytes]],
        rate: float,
        warmup_s: float,
    ) -> LatencyRun:
        """Offer records at `rate` to a fresh topic; latency = output append time - CreateTime."""
        uid = uuid.uuid4().hex[:10]
        group = f"bench-{uid}"
        input_topic = f"in-{uid}"
        output_topic = f"out-{uid}"
        gate = self.work_dir / uid / "gate"
        gate.mkdir(parents=True)
        await create_topics(self.bootstrap, [input_topic], PARTITIONS)
        await create_topics(self.bootstrap, [output_topic], PARTITIONS, log_append_time=True)
        process = self._start(program, uid, input_topic, gate, 0)
        try:
            await self._wait_for_group(group, input_topic, 1, [process])
            self._publish_model(gate)
            if program.has_ready_endpoint:
                await self._wait_ready(process)
            else:
                await asyncio.sleep(1.0)
            contention = _Contention([*self.broker_pids, process.popen.pid])
            sent_at = await produce_at_rate(self.bootstrap, input_topic, records, rate)
            await self._wait_for_outputs(output_topic, len(records), [process], limit_s=300)
            other_cores = contention.other_cores()
            peak_rss = process.peak_rss_mb()
        finally:
            process.stop()
        outputs = await read_records(self.bootstrap, output_topic, PARTITIONS)
        measure_from = min(sent_at.values()) + int(warmup_s * 1000)
        latencies = [
            r.timestamp_ms - sent_at[r.key]
            for r in outputs
            if r.key in sent_at and sent_at[r.key] >= measure_from
        ]
        return LatencyRun(
            program=program.name,
            rate=rate,
            events=len(records),
            measured=len(latencies),
            p50_ms=percentile(latencies, 50),
            p95_ms=percentile(latencies, 95),
            p99_ms=percentile(latencies, 99),
            max_ms=float(max(latencies)),
            peak_rss_mb=peak_rss,
            other_cores=other_cores,
            latencies_ms=latencies,
        )


def median(values: Sequence[float]) -> float:
    """Median that tolerates an empty list."""
    return statistics.median(values) if values else float("nan")
