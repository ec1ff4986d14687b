"""Turn benchmark results into the printed table, the targets check, JSON and a plot."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["plot", "print_tables", "targets", "write_json"]

TARGETS = {
    "throughput_vs_passthrough": 0.70,
    "throughput_vs_naive": 20.0,
    "p99_ms": 50.0,
    "kernel_us_per_event": 1.0,
    "peak_rss_mb": 250.0,
}


def _fmt(value: float, digits: int = 0) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with the measured figure and whether it is met."""
    summary = results["summary"]
    kernel = results["kernel"]
    kernel_us = kernel["us_per_event_by_batch_size"].get(str(results["config"]["batch_size"]))
    rows = [
        (
            "worker throughput / aiokafka passthrough",
            ">= 0.70",
            summary["ratio_worker_to_passthrough"],
            summary["ratio_worker_to_passthrough"] >= TARGETS["throughput_vs_passthrough"],
        ),
        (
            "worker throughput / naive per-event sklearn agent",
            ">= 20",
            summary["ratio_worker_to_naive"],
            summary["ratio_worker_to_naive"] >= TARGETS["throughput_vs_naive"],
        ),
        (
            f"worker p99 latency at {results['config']['rate']:,.0f} events/s (ms)",
            "<= 50",
            summary["worker_p99_ms"],
            summary["worker_p99_ms"] <= TARGETS["p99_ms"],
        ),
        (
            f"scoring kernel, batches of {results['config']['batch_size']} (us/event)",
            "<= 1",
            kernel_us,
            kernel_us is not None and kernel_us <= TARGETS["kernel_us_per_event"],
        ),
        (
            f"kernel labels identical to scikit-learn on {kernel['points']:,} points",
            "identical",
            kernel["labels_differing_from_sklearn"],
            kernel["labels_identical"],
        ),
        (
            "worker peak RSS (MiB)",
            "<= 250",
            summary["worker_peak_rss_mb"],
            summary["worker_peak_rss_mb"] <= TARGETS["peak_rss_mb"],
        ),
    ]
    return [{"target": t, "goal": g, "measured": m, "met": bool(ok)} for t, g, m, ok in rows]


def print_tables(results: dict[str, Any], console: Console) -> None:
    """The results table, the targets and, when profiled, where the worker's time goes."""
    summary = results["summary"]
    machine = results["machine"]
    console.print(
        f"[bold]segstream benchmark[/bold]: {machine['cores']} cores, "
        f"{machine['memory_gib']:.0f} GiB, {machine['cpu']}, Python {machine['python']}, "
        f"Kafka {machine['kafka']}, faust-streaming {machine['faust_streaming']}, "
        f"aiokafka {machine['aiokafka']}"
    )
    config = results["config"]
    console.print(
        f"{config['events']:,} signups on {config['partitions']} partitions, batches of "
        f"{config['batch_size']} / {config['batch_window_ms']} ms, median of "
        f"{config['repeats']} repeats, first {config['warmup_fraction']:.0%} of each run "
        "excluded as warm-up"
    )
    table = Table(title="Throughput and latency")
    columns = ("program", "events/s", "CPU us/event", "p50 ms", "p95 ms", "p99 ms", "RSS MiB")
    for column in (*columns, "busy cores elsewhere"):
        table.add_column(column, justify="left" if column == "program" else "right")
    for row in results["rows"]:
        table.add_row(
            row["title"],
            _fmt(row["throughput"]),
            _fmt(row["cpu_us_per_event"], 1),
            _fmt(row.get("p50_ms", float("nan")), 1),
            _fmt(row.get("p95_ms", float("nan")), 1),
            _fmt(row.get("p99_ms", float("nan")), 1),
            _fmt(row["peak_rss_mb"]),
            _fmt(row["other_cores"], 2),
        )
    console.print(table)
    console.print(
        "busy cores elsewhere: CPU used meanwhile by processes outside the benchmark (not the "
        "program, the broker or the harness), in cores; the machine has "
        f"{machine['cores']}."
    )
    console.print(
        f"ratio a/b (worker / aiokafka passthrough): "
        f"[bold]{summary['ratio_worker_to_passthrough']:.2f}[/bold]   "
        f"ratio a/c (worker / naive sklearn agent): "
        f"[bold]{summary['ratio_worker_to_naive']:.1f}x[/bold]   "
        f"two workers / one: [bold]{summary['scale_out_speedup']:.2f}x[/bold]"
    )
    checks = Table(title="Targets")
    for column in ("target", "goal", "measured", "met"):
        checks.add_column(column)
    for check in results["targets"]:
        measured = check["measured"]
        shown = f"{measured:,.3g}" if isinstance(measured, float) else str(measured)
        checks.add_row(
            check["target"], check["goal"], shown, "yes" if check["met"] else "[red]no[/red]"
        )
    console.print(checks)
    if results.get("variants"):
        variants = Table(title="What limits the worker: bench-only variants of the same worker")
        variants.add_column("variant")
        variants.add_column("events/s", justify="right")
        variants.add_column("CPU us/event", justify="right")
        variants.add_column("vs worker", justify="right")
        variants.add_column("busy cores elsewhere", justify="right")
        for variant in results["variants"]:
            variants.add_row(
                variant["title"],
                _fmt(variant["throughput"]),
                _fmt(variant["cpu_us_per_event"], 1),
                f"{variant['vs_worker']:.2f}x",
                _fmt(variant["other_cores"], 2),
            )
        console.print(variants)
    if results.get("profile"):
        layers = Table(title="Where the worker's CPU time goes (py-spy samples)")
        layers.add_column("layer")
        layers.add_column("share", justify="right")
        for layer, share in results["profile"]["layers"].items():
            layers.add_row(layer, f"{share:.1%}")
        console.print(layers)


def write_json(results: dict[str, Any], path: Path) -> None:
    """Write results (without the raw latency samples) as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


def plot(results: dict[str, Any], latencies: dict[str, list[int]], path: Path) -> None:
    """Throughput bars, latency CDFs and kernel cost per batch size in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (bars, cdf, kernel) = plt.subplots(1, 3, figsize=(17, 5.2))
    rows = results["rows"]
    names = [row["short"] for row in rows]
    rates = [row["throughput"] for row in rows]
    drawn = bars.bar(names, rates, color=["#1f77b4", "#7f7f7f", "#d62728", "#2ca02c"][: len(rows)])
    bars.bar_label(drawn, labels=[f"{r:,.0f}" for r in rates], fontsize=8)
    passthrough = results["summary"]["passthrough_throughput"]
    bars.axhline(0.7 * passthrough, color="black", linestyle="--", linewidth=1)
    bars.text(0, 0.7 * passthrough, " target: 70% of passthrough", va="bottom", fontsize=8)
    bars.set_ylabel("events/s (median)")
    bars.set_title("Throughput draining a pre-filled topic")
    bars.tick_params(axis="x", labelsize=8)

    for name, values in latencies.items():
        # Millisecond timestamps make some latencies 0: drawn at 0.5 ms on the log axis.
        ordered = sorted(max(v, 0.5) for v in values)
        if ordered:
            fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
            cdf.plot(ordered, fractions, label=name)
    cdf.axvline(50, color="black", linestyle="--", linewidth=1)
    cdf.text(50, 0.05, " p99 target 50 ms", fontsize=8)
    cdf.set_xscale("log")
    cdf.set_xlabel("end-to-end latency, ms (log)")
    cdf.set_ylabel("fraction of events")
    cdf.set_title(f"Latency at {results['config']['rate']:,.0f} events/s offered")
    cdf.legend(fontsize=8)

    by_size = results["kernel"]["us_per_event_by_batch_size"]
    sizes = [int(s) for s in by_size]
    kernel.plot(sizes, list(by_size.values()), marker="o", label="Scorer.score")
    kernel.axhline(
        results["kernel"]["sklearn_predict_batched_us_per_event"],
        color="#7f7f7f",
        linestyle=":",
        label="sklearn predict, all points at once",
    )
    kernel.axhline(1.0, color="black", linestyle="--", linewidth=1, label="target 1 us")
    kernel.set_xscale("log")
    kernel.set_yscale("log")
    kernel.set_xlabel("batch size")
    kernel.set_ylabel("us per event")
    kernel.set_title("Scoring kernel, amortised over batches")
    kernel.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
