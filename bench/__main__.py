"""`python -m bench`: the whole benchmark in one run on a broker of its own (see README.md).

On one pre-filled topic, one after the other and repeated: (a) `segstream worker`, (b) a bare
aiokafka consume -> produce passthrough, (c) a naive Faust agent calling scikit-learn per event;
then the worker's latency at a fixed offered rate, two workers on the four partitions, and the
scoring kernel against scikit-learn. Prints a table and writes JSON and a plot.
"""

from __future__ import annotations

import argparse
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
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console

from bench import profile, report
from bench.harness import PARTITIONS, PROGRAMS, Bench, LatencyRun, ThroughputRun, median
from bench.kafka import LocalBroker, create_topics, prefill
from stream_app.settings import Settings
from training.generate import generate_signups

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
console = Console(width=160)  # whole table rows in logs and under make, too


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--events", type=int, default=200_000, help="signups in the topic")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--rate", type=float, default=2_000, help="offered events/s, latency")
    parser.add_argument("--latency-seconds", type=float, default=20, help="per latency run")
    parser.add_argument(
        "--naive-events",
        type=int,
        default=20_000,
        help="the naive agent is timed on the first N events of the same topic (it is slow)",
    )
    # The worker's own defaults, so that every program is batched as the worker is.
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    parser.add_argument(
        "--batch-size", type=int, default=defaults["batch_size"], help="SEGSTREAM_BATCH_SIZE"
    )
    parser.add_argument(
        "--batch-window-ms",
        type=int,
        default=defaults["batch_window_ms"],
        help="SEGSTREAM_BATCH_WINDOW_MS",
    )
    parser.add_argument("--warmup", type=float, default=0.1, help="share of a run excluded")
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the worker (e.g. Faust's PRODUCER_LINGER=0.005)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small and fast: a smoke test of the harness"
    )
    parser.add_argument("--profile", action="store_true", help="one extra worker run under py-spy")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="also run bench-only variants of the worker to show what limits it",
    )
    parser.add_argument(
        "--explain-repeats", type=int, default=2, help="runs per variant with --explain"
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.events = min(args.events, 20_000)
        args.repeats = 1
        args.latency_seconds = min(args.latency_seconds, 5)
        args.naive_events = min(args.naive_events, 3_000)
        args.explain_repeats = 1
    args.naive_events = min(args.naive_events, args.events)
    return args


def _machine(broker: LocalBroker) -> dict[str, Any]:
    meminfo = Path("/proc/meminfo").read_text().split()
    memory_kib = int(meminfo[meminfo.index("MemTotal:") + 1])
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "cores": os.cpu_count(),
        "memory_gib": memory_kib / 1024**2,
        "cpu": cpu,
        "os": platform.platform(),
        "python": platform.python_version(),
        "kafka": broker.version(),
        "faust_streaming": importlib.metadata.version("faust-streaming"),
        "aiokafka": importlib.metadata.version("aiokafka"),
        "numpy": importlib.metadata.version("numpy"),
        "scikit_learn": importlib.metadata.version("scikit-learn"),
        "pydantic": importlib.metadata.version("pydantic"),
    }


def _revision() -> str:
    """The commit measured, with '+changes' when the working tree differs from it."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
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


def _signups(n: int, seed: int) -> list[tuple[bytes, bytes]]:
    records = []
    for value in generate_signups(n, seed=seed):
        records.append((json.loads(value)["customer_id"].encode(), value))
    return records


def _row(
    title: str,
    short: str,
    runs: Sequence[ThroughputRun],
    latency: Sequence[LatencyRun] = (),
    extra_rss: Sequence[float] = (),
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "title": title,
        "short": short,
        "throughput": median([r.throughput for r in runs]),
        "throughput_runs": [r.throughput for r in runs],
        "first_to_last_throughput": median([r.first_to_last for r in runs]),
        "cpu_us_per_event": median([r.cpu_us_per_event for r in runs]),
        "cpu_share": median([r.cpu_share for r in runs]),
        "other_cores": median([r.other_cores for r in runs]),
        "events_timed": runs[0].events if runs else 0,
        "peak_rss_mb": max([rss for r in runs for rss in r.peak_rss_mb] + list(extra_rss)),
    }
    if latency:
        for name in ("p50_ms", "p95_ms", "p99_ms", "max_ms"):
            row[name] = median([getattr(run, name) for run in latency])
            row[f"{name}_runs"] = [getattr(run, name) for run in latency]
        row["latency_events_measured"] = latency[0].measured
        row["latency_other_cores"] = median([run.other_cores for run in latency])
    return row


def _log(message: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {message}")


def _describe(run: ThroughputRun) -> str:
    complete = run.outputs == run.distinct_keys == run.events
    warning = "" if complete else " [red](outputs differ from events)[/red]"
    return warning + (
        f"{run.throughput:,.0f} events/s, {run.cpu_us_per_event:.1f} us CPU/event, "
        f"RSS {max(run.peak_rss_mb):.0f} MiB, {run.outputs:,} outputs; "
        f"other processes kept {run.other_cores:.2f} cores busy"
    )


async def _repeat_throughput(
    bench: Bench, name: str, repeats: int, **kwargs: Any
) -> list[ThroughputRun]:
    runs = []
    for index in range(repeats):
        run = await bench.throughput(PROGRAMS[name], **kwargs)
        _log(f"  {name} #{index + 1}: {_describe(run)}")
        runs.append(run)
    return runs


async def _measure(
    args: argparse.Namespace, bench: Bench, model_dir: Path, on_bench: Callable[[str], None]
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    worker_runs: list[ThroughputRun] = []
    passthrough_runs: list[ThroughputRun] = []
    naive_runs: list[ThroughputRun] = []
    # Interleaved, so slow drift of the machine spreads over all three programs alike.
    for index in range(args.repeats):
        on_bench(f"throughput, repeat {index + 1} of {args.repeats}")
        for name, runs, limit in (
            ("worker", worker_runs, None),
            ("passthrough", passthrough_runs, None),
            ("naive", naive_runs, args.naive_events),
        ):
            run = await bench.throughput(PROGRAMS[name], limit=limit, warmup_fraction=args.warmup)
            _log(f"  {name}: {_describe(run)}")
            runs.append(run)

    latency_worker: list[LatencyRun] = []
    latency_passthrough: list[LatencyRun] = []
    n_latency = int(args.rate * args.latency_seconds)
    for index in range(args.repeats):
        on_bench(f"latency at {args.rate:,.0f} events/s, repeat {index + 1} of {args.repeats}")
        records = _signups(n_latency, seed=1_000 + index)
        for name, sink in (("worker", latency_worker), ("passthrough", latency_passthrough)):
            timed = await bench.latency(PROGRAMS[name], records, args.rate, warmup_s=2.0)
            _log(
                f"  {name}: p50 {timed.p50_ms:.1f} ms, p95 {timed.p95_ms:.1f} ms, "
                f"p99 {timed.p99_ms:.1f} ms, max {timed.max_ms:.0f} ms "
                f"over {timed.measured:,} events; "
                f"other processes kept {timed.other_cores:.2f} cores busy"
            )
            sink.append(timed)

    on_bench("scale-out: two workers on the four partitions")
    pair_runs = await _repeat_throughput(
        bench, "worker", args.repeats, instances=2, warmup_fraction=args.warmup
    )
    for run in pair_runs:
        _log(f"  assignment {run.assignment}, unchanged during the run: {run.assignment_stable}")

    rows = [
        _row(
            "a. segstream worker",
            "a. worker",
            worker_runs,
            latency_worker,
            extra_rss=[r.peak_rss_mb for r in latency_worker],
        ),
        _row(
            "b. aiokafka passthrough, no scoring",
            "b. passthrough",
            passthrough_runs,
            latency_passthrough,
        ),
        _row(
            f"c. naive Faust agent, sklearn predict per event (first {args.naive_events:,})",
            "c. naive agent",
            naive_runs,
        ),
        _row("two segstream workers, combined", "a x 2 workers", pair_runs),
    ]
    worker, passthrough, naive, pair = rows
    results["rows"] = rows
    results["scale_out"] = {
        "runs": [
            {
                "throughput": r.throughput,
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
    }
    results["summary"] = {
        "worker_throughput": worker["throughput"],
        "passthrough_throughput": passthrough["throughput"],
        "naive_throughput": naive["throughput"],
        "two_workers_throughput": pair["throughput"],
        "ratio_worker_to_passthrough": worker["throughput"] / passthrough["throughput"],
        "ratio_worker_to_naive": worker["throughput"] / naive["throughput"],
        "scale_out_speedup": pair["throughput"] / worker["throughput"],
        "worker_p50_ms": worker["p50_ms"],
        "worker_p95_ms": worker["p95_ms"],
        "worker_p99_ms": worker["p99_ms"],
        "worker_peak_rss_mb": max(worker["peak_rss_mb"], pair["peak_rss_mb"]),
    }
    results["_latencies"] = {
        "a. worker": [v for run in latency_worker for v in run.latencies_ms],
        "b. passthrough": [v for run in latency_passthrough for v in run.latencies_ms],
    }

    if args.explain:
        results["variants"] = await _variants(args, bench, worker, on_bench)
    if args.profile:
        results["profile"] = await _profile(args, bench, on_bench)
    return results


async def _variants(
    args: argparse.Namespace, bench: Bench, worker: dict[str, Any], on_bench: Callable[[str], None]
) -> list[dict[str, Any]]:
    at_least_once = {"SEGSTREAM_PROCESSING_GUARANTEE": "at_least_once"}
    big_buffer = {"STREAM_BUFFER_MAXSIZE": "32768"}  # Faust's setting, read from the environment
    plans: list[tuple[str, str, dict[str, str]]] = [
        (
            "Faust floor: the worker forwarding records unchanged, no decode/score",
            "variant",
            {"BENCH_VARIANT": "faust-passthrough"},
        ),
        (
            "exactly-once, transactional producers with their former 5 ms linger",
            "variant",
            {"BENCH_VARIANT": "txn-linger-5ms"},
        ),
        (
            "exactly-once, 20 ms batch window (the default before)",
            "worker",
            {"SEGSTREAM_BATCH_WINDOW_MS": "20"},
        ),
        (
            "exactly-once, batches of 2,000 / 50 ms",
            "worker",
            {"SEGSTREAM_BATCH_SIZE": "2000", "SEGSTREAM_BATCH_WINDOW_MS": "50"},
        ),
        (
            "Faust floor without the per-record guard (unsafe, measurement only)",
            "variant",
            {"BENCH_VARIANT": "faust-passthrough,drain-unguarded"},
        ),
        (
            "Faust floor without the guard, stream buffer of 32,768 records",
            "variant",
            {"BENCH_VARIANT": "faust-passthrough,drain-unguarded", **big_buffer},
        ),
        (
            "exactly-once without the guard, stream buffer of 32,768 records",
            "variant",
            {"BENCH_VARIANT": "drain-unguarded", **big_buffer},
        ),
        ("exactly-once, stream buffer of 32,768 records", "worker", big_buffer),
        ("at-least-once (Faust's producer, 5 ms linger, 256 KiB batches)", "worker", at_least_once),
        (
            "process_records in a plain aiokafka loop, no Faust (bench only)",
            "aiokafka-pipeline",
            {},
        ),
    ]
    variants = []
    base_env = dict(bench.extra_env)
    try:
        for title, program, env in plans:
            on_bench(f"variant: {title}")
            bench.extra_env = {**base_env, **env}
            runs = []
            for _ in range(args.explain_repeats):
                run = await bench.throughput(PROGRAMS[program], warmup_fraction=args.warmup)
                _log(f"  {_describe(run)}")
                runs.append(run)
            entry = _row(title, title, runs)
            entry["env"] = env
            entry["vs_worker"] = entry["throughput"] / worker["throughput"]
            if not title.startswith(("Faust floor", "process_records", "exactly-once, stream")):
                records = _signups(int(args.rate * args.latency_seconds), seed=2_000)
                latency = await bench.latency(PROGRAMS[program], records, args.rate, warmup_s=2.0)
                _log(f"  latency p50 {latency.p50_ms:.1f} ms, p99 {latency.p99_ms:.1f} ms")
                entry.update(p50_ms=latency.p50_ms, p95_ms=latency.p95_ms, p99_ms=latency.p99_ms)
            variants.append(entry)
    finally:
        bench.extra_env = base_env
    return variants


async def _profile(
    args: argparse.Namespace, bench: Bench, on_bench: Callable[[str], None]
) -> dict[str, Any]:
    on_bench("profile: one more worker run under py-spy")
    raw = args.out / "worker-profile.txt"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.unlink(missing_ok=True)
    spies: list[subprocess.Popen[bytes]] = []
    run = await bench.throughput(
        PROGRAMS["worker"],
        warmup_fraction=args.warmup,
        on_started=lambda pids: spies.extend(profile.attach(pid, raw) for pid in pids),
    )
    for spy in spies:
        spy.wait(timeout=60)
    _log(f"  under py-spy: {_describe(run)}")
    return {
        "collapsed_stacks": str(raw),
        "throughput_while_profiled": run.throughput,
        "layers": profile.summarise(raw) if raw.exists() else {},
    }


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; the exit status is 0 when it ran, whatever the figures."""
    args = _parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
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
        records = _signups(args.events, seed=11)
        asyncio.run(create_topics(bootstrap, [input_topic], PARTITIONS))
        seconds = asyncio.run(prefill(bootstrap, input_topic, records))
        _log(f"  {args.events / seconds:,.0f} events/s produced")
        del records
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
            _measure(args, bench, model_dir, lambda what: _log(f"[bold]{what}[/bold]"))
        )
        latencies = results.pop("_latencies")
        results = {
            "command": shlex.join(["python", "-m", "bench", *(argv or sys.argv[1:])]),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "revision": _revision(),
            "duration_s": round(time.monotonic() - began),
            "machine": machine,
            "config": {
                "events": args.events,
                "partitions": PARTITIONS,
                "repeats": args.repeats,
                "rate": args.rate,
                "latency_seconds": args.latency_seconds,
                "naive_events": args.naive_events,
                "batch_size": args.batch_size,
                "batch_window_ms": args.batch_window_ms,
                "warmup_fraction": args.warmup,
                "worker_env": extra_env,
            },
            "kernel": kernel,
            **results,
        }
        results["targets"] = report.targets(results)
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        json_path = args.out / f"bench-{stamp}.json"
        png_path = args.out / f"bench-{stamp}.png"
        report.write_json(results, json_path)
        report.plot(results, latencies, png_path)
        shutil.copyfile(json_path, args.out / "latest.json")
        shutil.copyfile(png_path, args.out / "latest.png")
        console.print()
        report.print_tables(results, console)
        console.print(f"wrote {json_path} and {png_path} in {results['duration_s']} s")
        return 0
    except BaseException:
        keep_work = True
        console.print(f"[red]benchmark failed[/red]; logs are kept in {work}")
        raise
    finally:
        broker.stop()
        if not keep_work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
