"""Run one program under test against the broker and measure it: throughput, CPU, latency, RSS.

Each measurement gets a fresh output topic and a fresh consumer group. Programs run as real
subprocesses (the segstream worker as `segstream worker`, exactly as users run it; the peers
from their own virtualenvs) and are timed from the moment the harness starts them to the
moment a read_committed consumer (`bench/peers/probe.py watch`, started and connected before
the program) has seen an output for every input: start-up, the group join and the last commit
are all inside the figure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
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

from bench import venvs
from bench.kafka import GroupView, Watcher, create_topics, describe_group, produce_records
from tests.support import free_port

__all__ = [
    "PARTITIONS",
    "PROGRAMS",
    "Bench",
    "LatencyRun",
    "Program",
    "ThroughputRun",
    "median",
    "percentile",
]

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PARTITIONS = 4
_GROUP_TIMEOUT = 120.0
_RUN_LIMIT_S = 1800.0  # a slow program gets time enough; a broken one fails on its exit
_WATCH_MIN_BYTES = 65_536  # throughput runs: the watcher's fetches stay few (bench.kafka.Watcher)
_TICKS = os.sysconf("SC_CLK_TCK")


def _machine_busy_seconds() -> float:
    """CPU seconds all processes on the machine have used since boot (from /proc/stat)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / _TICKS


def _stat(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name (index 0 is field 3, the state)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return []


def _descendants(pid: int) -> list[int]:
    """Live children, grandchildren, ... of a process."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found.extend(kids)
        todo.extend(kids)
    return found


def cpu_seconds(pid: int, live_children: bool = True) -> float:
    """CPU time (user + system) of a process and its children, live or reaped; 0 if gone."""
    total = 0
    for member in (pid, *(_descendants(pid) if live_children else [])):
        fields = _stat(member)
        if fields:
            # utime, stime, cutime, cstime: fields 14-17 of /proc/PID/stat.
            total += sum(int(value) for value in fields[11:15])
    return total / _TICKS


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size (VmHWM) of a process and its live children, in MiB."""
    kib = 0
    for member in (pid, *_descendants(pid)):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        kib += next((int(line.split()[1]) for line in status.splitlines() if "VmHWM" in line), 0)
    return kib / 1024


class _Contention:
    """How many cores processes outside the benchmark kept busy while a measurement ran."""

    def __init__(self, own_pids: Sequence[int]) -> None:
        self.own_pids = own_pids
        self.began = time.monotonic()
        self.machine = _machine_busy_seconds()
        self.own = self._own()

    def _own(self) -> float:
        # The programs and the probe are the harness's children: counted once, on their own.
        harness = cpu_seconds(os.getpid(), live_children=False)
        return harness + sum(cpu_seconds(pid) for pid in self.own_pids)

    def other_cores(self) -> float:
        """Average number of cores used by everything else since the start."""
        wall = max(1e-3, time.monotonic() - self.began)
        machine = _machine_busy_seconds() - self.machine
        return max(0.0, machine - (self._own() - self.own)) / wall


@dataclass(frozen=True)
class Program:
    """A program under test: its command, the virtualenv it runs in and its environment."""

    name: str
    title: str
    command: tuple[str, ...]
    venv: str | None = None  # bench/.venvs/<venv> runs `command` as a script; None: ours
    has_ready_endpoint: bool = False
    env: tuple[tuple[str, str], ...] = ()

    def argv(self) -> list[str]:
        """The command line, with the virtualenv's interpreter first for a peer."""
        if self.venv is None:
            return list(self.command)
        return [str(venvs.python(self.venv)), *self.command]


def _per_guarantee(
    name: str,
    title: str,
    command: tuple[str, ...],
    variable: str,
    underscores: bool,
    venv: str | None = None,
    has_ready_endpoint: bool = False,
) -> list[Program]:
    """The program once per processing guarantee, as `<name>-eo` and `<name>-alo`."""
    return [
        Program(
            f"{name}-{short}",
            f"{title}, {guarantee}",
            command,
            venv=venv,
            has_ready_endpoint=has_ready_endpoint,
            env=((variable, guarantee.replace("-", "_") if underscores else guarantee),),
        )
        for short, guarantee in (("eo", "exactly-once"), ("alo", "at-least-once"))
    ]


PROGRAMS: dict[str, Program] = {
    program.name: program
    for program in [
        # The data plane alone (what the peers do: score and emit), and with customer state.
        *(
            dataclasses.replace(program, env=(*program.env, ("SEGSTREAM_CUSTOMER_STATE", "false")))
            for program in _per_guarantee(
                "worker",
                "segstream worker, no customer state",
                (str(BIN / "segstream"), "worker"),
                "SEGSTREAM_PROCESSING_GUARANTEE",
                underscores=True,
                has_ready_endpoint=True,
            )
        ),
        Program(
            "worker-state-eo",
            "segstream worker with customer state, exactly-once",
            (str(BIN / "segstream"), "worker"),
            has_ready_endpoint=True,
            env=(("SEGSTREAM_PROCESSING_GUARANTEE", "exactly_once"),),
        ),
        *_per_guarantee(
            "quix",
            "Quix Streams app, JSON + per-record numpy",
            (str(venvs.PEERS / "quix_app.py"),),
            "BENCH_PROCESSING_GUARANTEE",
            underscores=False,
            venv="quix",
        ),
        Program(
            "confluent-passthrough",
            "confluent-kafka passthrough, commit every ~3 s",
            (str(venvs.PEERS / "confluent_passthrough.py"),),
            venv="confluent",
        ),
        Program(
            "aiokafka-passthrough",
            "aiokafka passthrough, commit every 2.8 s",
            (sys.executable, "-m", "bench.passthrough"),
        ),
        Program(
            "naive",
            "naive Faust agent, sklearn predict per event",
            (sys.executable, "-m", "bench.naive_agent", "worker", "-l", "warn"),
        ),
        Program(
            "aiokafka-pipeline",
            "segstream's process_records in a plain aiokafka loop (no Faust)",
            (sys.executable, "-m", "bench.passthrough"),
            env=(("BENCH_SCORE", "1"),),
        ),
    ]
}


@dataclass
class _Process:
    """One running program with its log and health port."""

    popen: subprocess.Popen[bytes]
    log_path: Path
    web_port: int

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
    """One drain of the pre-filled topic (or its first `events`) by one or more instances."""

    program: str
    instances: int
    events: int
    events_per_s: float  # events / (last output visible to read_committed - process start)
    wall_s: float  # process start to last output visible
    startup_s: float  # process start to the first output's append time
    visible_lag_s: float  # last output's append time to the moment the watcher saw it
    drain_events_per_s: float  # events / (last output appended - first output appended)
    cpu_us_per_event: float  # CPU of the program's processes (children included), start to end
    broker_cpu_us_per_event: float  # CPU the broker used meanwhile, per event
    cpu_share: float  # the program's CPU over wall time and instances (1.0 = one busy core each)
    other_cores: float  # cores kept busy meanwhile by processes outside the benchmark
    peak_rss_mb: list[float]
    outputs: int  # output records seen, duplicates included
    distinct_keys: int
    assignment: dict[str, list[int]] = field(default_factory=dict)
    assignment_stable: bool | None = None  # two instances: same owners at the end as once stable


@dataclass
class LatencyRun:
    """End-to-end latency at a fixed offered rate."""

    program: str
    rate: float
    achieved_rate: float
    events: int
    measured: int
    p50_ms: float  # output append time - input append time (both LogAppendTime)
    p95_ms: float
    p99_ms: float
    max_ms: float
    visible_p50_ms: float  # time a read_committed consumer saw the output - input append time
    visible_p95_ms: float
    visible_p99_ms: float
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


def median(values: Sequence[float]) -> float:
    """Median that tolerates an empty list."""
    return statistics.median(values) if values else float("nan")


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
        self.broker_pid = broker_pid
        self.log = log

    # ------------------------------------------------------------------ processes

    def _env(
        self, program: Program, uid: str, input_topic: str, index: int, port: int
    ) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SEGSTREAM_", "BENCH_"))}
        env.update(
            SEGSTREAM_BOOTSTRAP_SERVERS=self.bootstrap,
            SEGSTREAM_INPUT_TOPIC=input_topic,
            SEGSTREAM_OUTPUT_TOPIC=f"out-{uid}",
            SEGSTREAM_DLQ_TOPIC=f"dlq-{uid}",
            SEGSTREAM_MODEL_TOPIC=f"models-{uid}",
            SEGSTREAM_APP_ID=f"bench-{uid}",
            SEGSTREAM_STATE_TOPIC=f"state-{uid}",
            SEGSTREAM_CHANGES_TOPIC=f"changes-{uid}",
            SEGSTREAM_WEB_PORT=str(port),
            SEGSTREAM_DATA_DIR=str(self.work_dir / uid / f"data-{index}"),
            SEGSTREAM_MODEL_PATH=str(self.model_dir),
            SEGSTREAM_BATCH_SIZE=str(self.batch_size),
            SEGSTREAM_BATCH_WINDOW_MS=str(self.batch_window_ms),
            # The dead-letter topic is not made beforehand; the worker makes it on start.
            SEGSTREAM_CREATE_TOPICS="true",
            BENCH_MODEL_DIR=str(self.model_dir),
        )
        if program.venv is None:
            env["PYTHONPATH"] = str(REPO)
        env.update(self.extra_env)
        env.update(program.env)
        return env

    def _start(self, program: Program, uid: str, input_topic: str, index: int) -> _Process:
        port = free_port()
        run_dir = self.work_dir / uid
        log_path = run_dir / f"{program.name}-{index}.log"
        with log_path.open("wb") as handle:
            popen = subprocess.Popen(
                program.argv(),
                env=self._env(program, uid, input_topic, index, port),
                cwd=run_dir,  # where a program leaves its local state (Quix's state/)
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        return _Process(popen, log_path, port)

    def _broker_cpu_seconds(self) -> float:
        return cpu_seconds(self.broker_pid) if self.broker_pid else float("nan")

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

    async def _first_settled_view(
        self, group: str, instances: int, finished: asyncio.Event
    ) -> GroupView | None:
        """The group once `instances` members own every partition once; None if never, in time."""
        while not finished.is_set():
            try:
                view = await describe_group(self.bootstrap, group, self.input_topic)
            except KafkaError:
                view = GroupView("Unknown", {})
            if view.owns_each_partition_once(PARTITIONS, instances):
                return view
            await asyncio.sleep(1.0)
        return None

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
        on_started: Callable[[Sequence[int]], None] | None = None,
    ) -> ThroughputRun:
        """Drain the pre-filled topic (or its first `limit` events), timed from process start."""
        uid = uuid.uuid4().hex[:10]
        run_dir = self.work_dir / uid
        run_dir.mkdir(parents=True)
        output_topic = f"out-{uid}"
        await create_topics(self.bootstrap, [output_topic], PARTITIONS, log_append_time=True)
        expected = min(limit or self.events, self.events)
        watcher = await Watcher.start(
            self.bootstrap,
            output_topic,
            PARTITIONS,
            expected,
            log_path=run_dir / "probe.log",
            fetch_min_bytes=_WATCH_MIN_BYTES,
        )
        processes: list[_Process] = []
        try:
            broker_before = self._broker_cpu_seconds()
            started = time.time()
            processes = [self._start(program, uid, self.input_topic, i) for i in range(instances)]
            pids = [p.popen.pid for p in processes]
            contention = _Contention([*pids, watcher.pid, *filter(None, [self.broker_pid])])
            if on_started is not None:
                on_started(pids)
            finished = asyncio.Event()
            settled = (
                asyncio.create_task(self._first_settled_view(f"bench-{uid}", instances, finished))
                if instances > 1
                else None
            )
            try:
                seen = await watcher.wait([p.check_alive for p in processes], _RUN_LIMIT_S)
            finally:
                finished.set()
            cpu = sum(cpu_seconds(pid) for pid in pids)
            broker_cpu = self._broker_cpu_seconds() - broker_before
            other_cores = contention.other_cores()
            peak_rss = [peak_rss_mb(pid) for pid in pids]
            view = await settled if settled is not None else None
            stable = False if instances > 1 else None
            if view is not None:
                after = await describe_group(self.bootstrap, f"bench-{uid}", self.input_topic)
                stable = after.members == view.members
        finally:
            for process in processes:
                process.stop()
            await watcher.close()
        wall = max(1e-3, seen.seen_at - started)
        drain_s = (seen.last_append_ms - seen.first_append_ms) / 1000
        return ThroughputRun(
            program=program.name,
            instances=instances,
            events=expected,
            events_per_s=expected / wall,
            wall_s=wall,
            startup_s=seen.first_append_ms / 1000 - started,
            visible_lag_s=seen.seen_at - seen.last_append_ms / 1000,
            drain_events_per_s=(seen.distinct - 1) / drain_s if drain_s > 0 else float("nan"),
            cpu_us_per_event=cpu / expected * 1e6,
            broker_cpu_us_per_event=broker_cpu / expected * 1e6,
            cpu_share=cpu / wall / instances,
            other_cores=other_cores,
            peak_rss_mb=peak_rss,
            outputs=seen.seen,
            distinct_keys=seen.distinct,
            assignment={m: sorted(p) for m, p in view.members.items()} if view else {},
            assignment_stable=stable,
        )

    async def latency(
        self, program: Program, records: Path, count: int, rate: float, warmup_s: float
    ) -> LatencyRun:
        """Offer `count` records at `rate` to a fresh topic once the program is running.

        Latency is the output's append time minus its input's append time (both topics use
        LogAppendTime, so the broker stamps both), and, for the `visible_*` figures, the time
        the read_committed probe saw the output minus the input's append time: with
        exactly-once output a record is appended first and becomes visible at its commit.
        """
        uid = uuid.uuid4().hex[:10]
        run_dir = self.work_dir / uid
        run_dir.mkdir(parents=True)
        input_topic, output_topic = f"in-{uid}", f"out-{uid}"
        await create_topics(
            self.bootstrap, [input_topic, output_topic], PARTITIONS, log_append_time=True
        )
        process = self._start(program, uid, input_topic, 0)
        watcher: Watcher | None = None
        try:
            await self._wait_for_group(f"bench-{uid}", input_topic, 1, [process])
            if program.has_ready_endpoint:
                await self._wait_ready(process)
            else:
                await asyncio.sleep(1.0)
            watcher = await Watcher.start(
                self.bootstrap,
                output_topic,
                PARTITIONS,
                count,
                log_path=run_dir / "probe.log",
                dump=run_dir / "outputs.tsv",
            )
            contention = _Contention(
                [process.popen.pid, watcher.pid, *filter(None, [self.broker_pid])]
            )
            offered = await produce_records(
                self.bootstrap,
                input_topic,
                records,
                rate=rate,
                dump=run_dir / "inputs.tsv",
                log_path=run_dir / "producer.log",
            )
            await watcher.wait([process.check_alive], limit_s=600)
            other_cores = contention.other_cores()
            peak_rss = peak_rss_mb(process.popen.pid)
        finally:
            process.stop()
            if watcher is not None:
                await watcher.close()
        # key -> the input's append time
        appended = {key: int(ms) for key, ms in _rows(run_dir / "inputs.tsv", columns=2)}
        measure_from = min(appended.values()) + int(warmup_s * 1000)
        at_append: list[int] = []
        at_sight: list[int] = []
        for key, output_ms, seen_ms in _rows(run_dir / "outputs.tsv", columns=3):
            input_ms = appended.get(key)
            if input_ms is not None and input_ms >= measure_from:
                at_append.append(int(output_ms) - input_ms)
                at_sight.append(int(seen_ms) - input_ms)
        return LatencyRun(
            program=program.name,
            rate=rate,
            achieved_rate=float(offered["rate"]),
            events=count,
            measured=len(at_append),
            p50_ms=percentile(at_append, 50),
            p95_ms=percentile(at_append, 95),
            p99_ms=percentile(at_append, 99),
            max_ms=float(max(at_append, default=0)),
            visible_p50_ms=percentile(at_sight, 50),
            visible_p95_ms=percentile(at_sight, 95),
            visible_p99_ms=percentile(at_sight, 99),
            peak_rss_mb=peak_rss,
            other_cores=other_cores,
            latencies_ms=at_append,
        )


def _rows(path: Path, columns: int) -> list[list[str]]:
    """The tab-separated rows the probe dumped."""
    return [
        parts
        for parts in (line.split("\t") for line in path.read_text().splitlines())
        if len(parts) == columns
    ]
