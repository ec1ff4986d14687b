"""`python -m bench`: the whole benchmark in one run on a broker of its own (see README.md).

On one pre-filled topic (1,000,000 signups, 4 partitions), interleaved and repeated: the
segstream worker exactly-once and at-least-once, a Quix Streams app exactly-once and
at-least-once, a confluent-kafka passthrough, an aiokafka passthrough and a naive Faust agent;
then end-to-end latency at fixed offered rates, two workers on the four partitions, and the
scoring kernel against scikit-learn. Writes JSON, a Markdown table and a plot.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markdown import Markdown

from bench import profile, report, venvs
from bench.harness import PARTITIONS, PROGRAMS, Bench, LatencyRun, ThroughputRun, median
from bench.kafka import LocalBroker, create_topics, produce_records, write_records
from stream_app.settings import Settings
from training.generate import generate_signups

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
console = Console(width=160)  # whole table rows in logs and under make, too

#: The throughput rows, in the order they run within each repeat.
THROUGHPUT_ROWS = (
    "worker-eo",
    "worker-state-eo",
    "worker-alo",
    "quix-eo",
    "quix-alo",
    "confluent-passthrough",
    "aiokafka-passthrough",
    "naive",
)
#: Programs whose end-to-end latency is measured at each offered rate.
LATENCY_PROGRAMS = ("worker-eo", "quix-eo")


# The worker's own defaults, so that every program is batched as the worker is.
_DEFAULTS = {name: field.default for name, field in Settings.model_fields.items()}


@dataclass
class Options:
    """The benchmark's options (see `python -m bench --help`)."""

    events: int = 1_000_000
    repeats: int = 3
    rates: list[float] = dataclass_field(default_factory=lambda: [2_000.0, 20_000.0])
    latency_seconds: float = 10
    naive_events: int = 30_000
    no_scale_out: bool = False
    batch_size: int = _DEFAULTS["batch_size"]
    batch_window_ms: int = _DEFAULTS["batch_window_ms"]
    worker_env: list[str] = dataclass_field(default_factory=list)
    quick: bool = False
    profile: bool = False
    explain: bool = False
    explain_repeats: int = 2
    out: Path = REPO / "bench" / "results"

    def __post_init__(self) -> None:
        if self.quick:
            self.events = min(self.events, 20_000)
            self.repeats = 1
            self.latency_seconds = min(self.latency_seconds, 5)
            self.naive_events = min(self.naive_events, 3_000)
            self.explain_repeats = 1
        self.naive_events = min(self.naive_events, self.events)


def _rates(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def _machine(broker: LocalBroker) -> dict[str, Any]:
    meminfo = Path("/proc/meminfo").read_text().split()
    memory_kib = int(meminfo[meminfo.index("MemTotal:") + 1])
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    ours = ("faust-streaming", "aiokafka", "numpy", "scikit-learn", "pydantic")
    return {
        "cores": os.cpu_count(),
        "memory_gib": memory_kib / 1024**2,
        "cpu": cpu,
        "os": platform.platform(),
        "python": platform.python_version(),
        "kafka": broker.version(),
        "load_average_at_start": list(os.getloadavg()),
        "packages": {name: importlib.metadata.version(name) for name in ours},
        "quix_venv": venvs.versions("quix", ("quixstreams", "confluent-kafka", "numpy")),
        "confluent_venv": venvs.versions("confluent", ("confluent-kafka",)),
    }


def _revision() -> str:
    """The commit measured, with '+changes' when the working tree differs from it (results a
    benchmark has just written do not count: bench.state runs after this harness wrote its)."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results"],
        capture_output=True,
        text=True,
        cwd=REPO,
    ).stdout.strip()
    return f"{head}+changes" if dirty else head or "unknown"


def _train(work: Path) -> Path:
    customers = work / "customers.csv"
    segstream = str(BIN / "segstream")
    subprocess.run(
        [segstream, "generate", "customers", "--n", "2000", "--seed", "1", "--out", str(customers)],
        check=True,
        capture_output=True,
    )
    trained = subprocess.run(
        [segstream, "train", "--data", str(customers), "--k", "4", "--out", str(work / "models")],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(trained.stdout.strip().splitlines()[-1])


def _kernel(model_dir: Path, work: Path, points: int) -> dict[str, Any]:
    # This machine may pin OpenBLAS to an older kernel; the micro-benchmark runs with the
    # kernel OpenBLAS picks itself and reports which one that was.
    env = {
        k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    }
    env["PYTHONPATH"] = str(REPO)
    out = work / "kernel.json"
    subprocess.run(
        [sys.executable, "-m", "bench.kernel", str(model_dir), str(out), "--points", str(points)],
        check=True,
        env=env,
        cwd=REPO,
    )
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _write_signups(path: Path, n: int, seed: int) -> Path:
    """n generated signups keyed by customer_id, in the probe's records format."""
    write_records(
        path,
        ((json.loads(value)["customer_id"].encode(), value) for value in generate_signups(n, seed)),
    )
    return path


def _row(
    title: str, short: str, runs: Sequence[ThroughputRun], extra_rss: Sequence[float] = ()
) -> dict[str, Any]:
    def middle(name: str) -> float:
        return median([getattr(run, name) for run in runs])

    return {
        "title": title,
        "short": short,
        "program": runs[0].program,
        "instances": runs[0].instances,
        "events": runs[0].events,
        "events_per_s": middle("events_per_s"),
        "events_per_s_runs": [r.events_per_s for r in runs],
        "wall_s": middle("wall_s"),
        "startup_s": middle("startup_s"),
        "visible_lag_s": middle("visible_lag_s"),
        "drain_events_per_s": middle("drain_events_per_s"),
        "cpu_us_per_event": middle("cpu_us_per_event"),
        "broker_cpu_us_per_event": middle("broker_cpu_us_per_event"),
        "cpu_share": middle("cpu_share"),
        "other_cores": middle("other_cores"),
        "other_cores_runs": [r.other_cores for r in runs],
        "peak_rss_mb": max([rss for r in runs for rss in r.peak_rss_mb] + list(extra_rss)),
        "outputs_runs": [r.outputs for r in runs],
        "distinct_keys_runs": [r.distinct_keys for r in runs],
    }


def _latency_row(title: str, rate: float, runs: Sequence[LatencyRun]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "title": title,
        "program": runs[0].program,
        "rate": rate,
        "achieved_rate": median([r.achieved_rate for r in runs]),
        "events": runs[0].events,
        "measured": runs[0].measured,
        "other_cores": median([r.other_cores for r in runs]),
        "peak_rss_mb": max(r.peak_rss_mb for r in runs),
    }
    names = ("p50_ms", "p95_ms", "p99_ms", "max_ms")
    for name in (*names, "visible_p50_ms", "visible_p95_ms", "visible_p99_ms"):
        row[name] = median([getattr(run, name) for run in runs])
        row[f"{name}_runs"] = [getattr(run, name) for run in runs]
    return row


def _log(message: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {message}")


def _describe(run: ThroughputRun) -> str:
    complete = run.distinct_keys >= run.events
    warning = "" if complete else " [red](fewer outputs than events)[/red]"
    duplicates = run.outputs - run.distinct_keys
    return warning + (
        f"{run.events_per_s:,.0f} events/s start to last visible ({run.wall_s:.1f} s, first "
        f"output after {run.startup_s:.1f} s, {run.drain_events_per_s:,.0f}/s first to last, "
        f"last output seen {run.visible_lag_s:.2f} s after its append), "
        f"{run.cpu_us_per_event:.1f} us CPU/event, broker {run.broker_cpu_us_per_event:.1f} "
        f"us/event, RSS {max(run.peak_rss_mb):.0f} MiB, {run.distinct_keys:,} outputs"
        + (f" + {duplicates:,} duplicates" if duplicates else "")
        + f"; other processes kept {run.other_cores:.2f} cores busy"
    )


async def _measure(
    args: Options, bench: Bench, work: Path, on_bench: Callable[[str], None]
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    runs: dict[str, list[ThroughputRun]] = {name: [] for name in THROUGHPUT_ROWS}
    # Interleaved, so slow drift of the machine spreads over all programs alike.
    for index in range(args.repeats):
        on_bench(f"throughput, repeat {index + 1} of {args.repeats}")
        for name in THROUGHPUT_ROWS:
            limit = args.naive_events if name == "naive" else None
            run = await bench.throughput(PROGRAMS[name], limit=limit)
            _log(f"  {name}: {_describe(run)}")
            runs[name].append(run)

    latency: dict[tuple[str, float], list[LatencyRun]] = {}
    records = {
        rate: _write_signups(
            work / f"latency-{rate:.0f}.tsv", int(rate * args.latency_seconds), seed=1_000
        )
        for rate in args.rates
    }
    for index in range(args.repeats):
        for rate in args.rates:
            on_bench(f"latency at {rate:,.0f} events/s, repeat {index + 1} of {args.repeats}")
            for name in LATENCY_PROGRAMS:
                count = int(rate * args.latency_seconds)
                timed = await bench.latency(
                    PROGRAMS[name], records[rate], count, rate, warmup_s=2.0
                )
                _log(
                    f"  {name}: p50 {timed.p50_ms:.1f} ms, p95 {timed.p95_ms:.1f} ms, "
                    f"p99 {timed.p99_ms:.1f} ms, max {timed.max_ms:.0f} ms append to append; "
                    f"visible p50 {timed.visible_p50_ms:.0f} ms, p99 {timed.visible_p99_ms:.0f} "
                    f"ms; over {timed.measured:,} events offered at "
                    f"{timed.achieved_rate:,.0f}/s; other processes kept "
                    f"{timed.other_cores:.2f} cores busy"
                )
                latency.setdefault((name, rate), []).append(timed)

    pair_runs: list[ThroughputRun] = []
    if not args.no_scale_out:
        on_bench("scale-out: two exactly-once workers on the four partitions")
        for _ in range(args.repeats):
            run = await bench.throughput(PROGRAMS["worker-eo"], instances=2)
            _log(f"  {_describe(run)}")
            _log(f"  assignment {run.assignment}, unchanged: {run.assignment_stable}")
            pair_runs.append(run)

    worker_latency_rss = [
        r.peak_rss_mb for (n, _), rs in latency.items() for r in rs if "worker" in n
    ]
    rows = [
        _row(
            PROGRAMS[name].title
            + (f" (first {args.naive_events:,} events)" if name == "naive" else ""),
            name,
            runs[name],
            extra_rss=worker_latency_rss if name == "worker-eo" else (),
        )
        for name in THROUGHPUT_ROWS
    ]
    if pair_runs:
        rows.append(
            _row("two segstream workers, exactly-once, one group", "worker-eo x 2", pair_runs)
        )
    results["rows"] = rows
    results["latency"] = [
        _latency_row(PROGRAMS[name].title, rate, timed) for (name, rate), timed in latency.items()
    ]
    results["scale_out"] = [
        {
            "events_per_s": r.events_per_s,
            "assignment": r.assignment,
            "each_partition_owned_by_exactly_one_worker": sorted(
                p for parts in r.assignment.values() for p in parts
            )
            == list(range(PARTITIONS))
            and len(r.assignment) == 2,
            "assignment_unchanged_during_run": r.assignment_stable,
            "outputs": r.outputs,
            "distinct_keys": r.distinct_keys,
        }
        for r in pair_runs
    ]
    results["_latencies"] = {
        f"{name} at {rate:,.0f}/s": [v for run in timed for v in run.latencies_ms]
        for (name, rate), timed in latency.items()
    }
    if args.explain:
        results["variants"] = await _variants(args, bench, records, on_bench)
    if args.profile:
        results["profile"] = await _profile(args, bench, on_bench)
    return results


async def _variants(
    args: Options,
    bench: Bench,
    records: dict[float, Path],
    on_bench: Callable[[str], None],
) -> list[dict[str, Any]]:
    # (title, program, environment, with a latency run): the data plane's own knobs.
    plans: list[tuple[str, str, dict[str, str], bool]] = [
        (
            "exactly-once, a transaction every 1 s instead of 100 ms",
            "worker-eo",
            {"SEGSTREAM_COMMIT_INTERVAL_MS": "1000"},
            True,
        ),
        (
            "exactly-once, batches of 500 records",
            "worker-eo",
            {"SEGSTREAM_BATCH_SIZE": "500"},
            True,
        ),
        (
            "exactly-once, 20 ms batch window",
            "worker-eo",
            {"SEGSTREAM_BATCH_WINDOW_MS": "20"},
            True,
        ),
    ]
    rate = args.rates[0]
    variants = []
    base_env = dict(bench.extra_env)
    try:
        for title, program, env, with_latency in plans:
            on_bench(f"variant: {title}")
            bench.extra_env = {**base_env, **env}
            runs = []
            for _ in range(args.explain_repeats):
                run = await bench.throughput(PROGRAMS[program])
                _log(f"  {_describe(run)}")
                runs.append(run)
            entry = _row(title, title, runs)
            entry["env"] = env
            if with_latency:
                count = int(rate * args.latency_seconds)
                timed = await bench.latency(PROGRAMS[program], records[rate], count, rate, 2.0)
                _log(f"  latency p50 {timed.p50_ms:.1f} ms, p99 {timed.p99_ms:.1f} ms")
                entry.update(p50_ms=timed.p50_ms, p95_ms=timed.p95_ms, p99_ms=timed.p99_ms)
            variants.append(entry)
    finally:
        bench.extra_env = base_env
    return variants


async def _profile(args: Options, bench: Bench, on_bench: Callable[[str], None]) -> dict[str, Any]:
    on_bench("profile: one more worker run under py-spy")
    raw = args.out / "worker-profile.txt"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.unlink(missing_ok=True)
    spies: list[subprocess.Popen[bytes]] = []
    run = await bench.throughput(
        PROGRAMS["worker-eo"],
        on_started=lambda pids: spies.extend(profile.attach(pid, raw) for pid in pids),
    )
    for spy in spies:
        spy.wait(timeout=60)
    _log(f"  under py-spy: {_describe(run)}")
    return {
        "collapsed_stacks": str(raw),
        "events_per_s_while_profiled": run.events_per_s,
        "layers": profile.summarise(raw) if raw.exists() else {},
    }


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def command(
    events: Annotated[int, typer.Option(help="signups in the topic")] = 1_000_000,
    repeats: Annotated[int, typer.Option(help="runs per figure (median)")] = 3,
    rates: Annotated[
        str, typer.Option(help="offered events/s for the latency runs, comma-separated")
    ] = "2000,20000",
    latency_seconds: Annotated[float, typer.Option(help="per latency run")] = 10,
    naive_events: Annotated[
        int,
        typer.Option(
            help="the naive agent is timed on the first N events of the same topic (it is slow)"
        ),
    ] = 30_000,
    no_scale_out: Annotated[
        bool, typer.Option("--no-scale-out", help="skip the two-workers runs")
    ] = False,
    batch_size: Annotated[int, typer.Option(help="SEGSTREAM_BATCH_SIZE")] = _DEFAULTS["batch_size"],
    batch_window_ms: Annotated[int, typer.Option(help="SEGSTREAM_BATCH_WINDOW_MS")] = _DEFAULTS[
        "batch_window_ms"
    ],
    worker_env: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME=VALUE",
            help="extra environment for the programs (e.g. Faust's PRODUCER_LINGER=0.005)",
        ),
    ] = None,
    quick: Annotated[
        bool, typer.Option(help="small and fast: a smoke test of the harness")
    ] = False,
    profile: Annotated[bool, typer.Option(help="one extra worker run under py-spy")] = False,
    explain: Annotated[
        bool,
        typer.Option(
            help="also run the worker with other commit intervals, batch sizes and windows"
        ),
    ] = False,
    explain_repeats: Annotated[int, typer.Option(help="runs per variant with --explain")] = 2,
    out: Annotated[Path, typer.Option(help="folder for the results")] = REPO / "bench" / "results",
) -> None:
    """The whole benchmark in one run on a broker of its own (see bench/README.md)."""
    options = Options(
        events=events,
        repeats=repeats,
        rates=_rates(rates),
        latency_seconds=latency_seconds,
        naive_events=naive_events,
        no_scale_out=no_scale_out,
        batch_size=batch_size,
        batch_window_ms=batch_window_ms,
        worker_env=worker_env or [],
        quick=quick,
        profile=profile,
        explain=explain,
        explain_repeats=explain_repeats,
        out=out,
    )
    raise typer.Exit(run(options, sys.argv[1:]))


def run(args: Options, argv: Sequence[str]) -> int:
    """Run the benchmark; the exit status is 0 when it ran, whatever the figures."""
    signal.signal(signal.SIGTERM, _interrupt)
    for name in venvs.NAMES:
        venvs.ensure(name, log=_log)
    work = Path(tempfile.mkdtemp(prefix="segstream-bench-"))
    broker = LocalBroker(work / "kafka")
    began = time.monotonic()
    keep_work = False
    try:
        _log("starting a local Kafka broker")
        bootstrap = broker.start()
        machine = _machine(broker)
        _log(f"broker on {bootstrap}; training a model")
        model_dir = _train(work)
        kernel_points = 200_000 if args.quick else 1_000_000
        _log(f"scoring kernel micro-benchmark on {kernel_points:,} points")
        kernel = _kernel(model_dir, work, kernel_points)
        by_size = {k: round(v, 3) for k, v in kernel["us_per_event_by_batch_size"].items()}
        _log(
            f"  labels identical to scikit-learn: {kernel['labels_identical']}; "
            f"us/event by batch size: {json.dumps(by_size)}"
        )
        input_topic = "bench-signups"
        _log(f"pre-filling {input_topic} with {args.events:,} signups on {PARTITIONS} partitions")
        signups = _write_signups(work / "signups.tsv", args.events, seed=11)
        asyncio.run(create_topics(bootstrap, [input_topic], PARTITIONS, log_append_time=True))
        filled = asyncio.run(produce_records(bootstrap, input_topic, signups))
        _log(f"  {filled['rate']:,.0f} events/s produced")
        extra_env = dict(item.split("=", 1) for item in args.worker_env)
        bench = Bench(
            bootstrap,
            work,
            model_dir,
            input_topic,
            args.events,
            args.batch_size,
            args.batch_window_ms,
            extra_env=extra_env,
            broker_pid=broker.pid(),
            log=_log,
        )
        results = asyncio.run(
            _measure(args, bench, work, lambda what: _log(f"[bold]{what}[/bold]"))
        )
        latencies = results.pop("_latencies")
        results = {
            "command": shlex.join(["python", "-m", "bench", *argv]),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "revision": _revision(),
            "duration_s": round(time.monotonic() - began),
            "machine": machine,
            "config": {
                "events": args.events,
                "partitions": PARTITIONS,
                "repeats": args.repeats,
                "rates": args.rates,
                "latency_seconds": args.latency_seconds,
                "naive_events": args.naive_events,
                "batch_size": args.batch_size,
                "batch_window_ms": args.batch_window_ms,
                "worker_env": extra_env,
                "quick": args.quick,
            },
            "kernel": kernel,
            **results,
        }
        results["summary"] = report.summary(results)
        results["targets"] = report.targets(results)
        markdown = report.markdown(results)
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        latest = "quick" if args.quick else "latest"  # a smoke run never replaces full figures
        written: dict[str, Callable[[Path], object]] = {
            ".json": lambda path: report.write_json(results, path),
            ".md": lambda path: path.write_text(markdown),
            ".png": lambda path: report.plot(results, latencies, path),
        }
        args.out.mkdir(parents=True, exist_ok=True)
        for suffix, write in written.items():
            path = args.out / f"bench-{stamp}{suffix}"
            write(path)
            shutil.copyfile(path, args.out / f"{latest}{suffix}")
        console.print()
        console.print(Markdown(markdown))
        console.print(
            f"wrote {args.out}/bench-{stamp}.{{json,md,png}} and {latest}.* "
            f"in {results['duration_s']} s"
        )
        return 0
    except BaseException:
        keep_work = True
        console.print(f"[red]benchmark failed[/red]; logs are kept in {work}")
        raise
    finally:
        broker.stop()
        if not keep_work:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    """Command line of `python -m bench`."""
    typer.run(command)


if __name__ == "__main__":
    main()
