"""Turn benchmark results into the summary ratios, the targets, Markdown, JSON and a plot."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["TARGETS", "markdown", "plot", "summary", "targets", "write_json"]

#: The throughput, latency and memory targets, measured by `make bench`.
TARGETS = {
    "eo_vs_quix_eo": 1.5,
    "eo_cpu_vs_quix_eo": 0.6,
    "alo_vs_quix_alo": 1.5,
    "alo_vs_confluent": 0.5,
    "eo_vs_naive": 30.0,
    "p99_ms_at_2000": 20.0,
    "peak_rss_mb": 200.0,
    "state_vs_stateless": 0.7,
}
_LATENCY_TARGET_RATE = 2_000.0


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def _ratio(top: float, bottom: float) -> float:
    return top / bottom if bottom and not math.isnan(bottom) else float("nan")


def summary(results: dict[str, Any]) -> dict[str, Any]:
    """The ratios the targets are about, from the rows' medians."""
    rows = {row["short"]: row for row in results["rows"]}

    def figure(name: str, column: str = "events_per_s") -> float:
        return float(rows[name][column]) if name in rows else float("nan")

    worker_latency = [
        row
        for row in results["latency"]
        if row["program"] == "worker-eo" and row["rate"] == _LATENCY_TARGET_RATE
    ]
    # The memory target is the data plane's; customer state keeps RocksDB buffers besides.
    worker_rss = [
        row["peak_rss_mb"]
        for row in results["rows"]
        if row["program"].startswith("worker") and "state" not in row["program"]
    ]
    return {
        "eo_vs_quix_eo": _ratio(figure("worker-eo"), figure("quix-eo")),
        "eo_cpu_vs_quix_eo": _ratio(
            figure("worker-eo", "cpu_us_per_event"), figure("quix-eo", "cpu_us_per_event")
        ),
        "eo_broker_cpu_vs_quix_eo": _ratio(
            figure("worker-eo", "broker_cpu_us_per_event"),
            figure("quix-eo", "broker_cpu_us_per_event"),
        ),
        "alo_vs_quix_alo": _ratio(figure("worker-alo"), figure("quix-alo")),
        "alo_vs_confluent": _ratio(figure("worker-alo"), figure("confluent-passthrough")),
        "eo_vs_naive": _ratio(figure("worker-eo"), figure("naive")),
        "state_vs_stateless": _ratio(figure("worker-state-eo"), figure("worker-eo")),
        "alo_vs_aiokafka": _ratio(figure("worker-alo"), figure("aiokafka-passthrough")),
        "scale_out_speedup": _ratio(figure("worker-eo x 2"), figure("worker-eo")),
        "worker_eo_p99_ms_at_2000": worker_latency[0]["p99_ms"] if worker_latency else None,
        "worker_peak_rss_mb": max(worker_rss),
    }


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with the measured figure and whether it is met."""
    ratios = results["summary"]
    kernel = results["kernel"]
    p99 = ratios["worker_eo_p99_ms_at_2000"]
    rows: list[tuple[str, str, float | None, bool]] = [
        (
            "exactly-once worker / Quix exactly-once, events/s",
            ">= 1.5",
            ratios["eo_vs_quix_eo"],
            ratios["eo_vs_quix_eo"] >= TARGETS["eo_vs_quix_eo"],
        ),
        (
            "exactly-once worker / Quix exactly-once, CPU per event",
            "<= 0.6",
            ratios["eo_cpu_vs_quix_eo"],
            ratios["eo_cpu_vs_quix_eo"] <= TARGETS["eo_cpu_vs_quix_eo"],
        ),
        (
            "at-least-once worker / Quix at-least-once, events/s",
            ">= 1.5",
            ratios["alo_vs_quix_alo"],
            ratios["alo_vs_quix_alo"] >= TARGETS["alo_vs_quix_alo"],
        ),
        (
            "at-least-once worker / confluent-kafka passthrough, events/s",
            ">= 0.5",
            ratios["alo_vs_confluent"],
            ratios["alo_vs_confluent"] >= TARGETS["alo_vs_confluent"],
        ),
        (
            "exactly-once worker / naive Faust + sklearn agent, events/s",
            ">= 30",
            ratios["eo_vs_naive"],
            ratios["eo_vs_naive"] >= TARGETS["eo_vs_naive"],
        ),
        (
            "exactly-once worker with customer state / without, events/s",
            ">= 0.7",
            ratios["state_vs_stateless"],
            ratios["state_vs_stateless"] >= TARGETS["state_vs_stateless"],
        ),
        (
            "exactly-once worker p99 end-to-end at 2,000 events/s offered (ms)",
            "<= 20",
            p99,
            p99 is not None and p99 <= TARGETS["p99_ms_at_2000"],
        ),
        (
            "worker peak RSS (MiB)",
            "<= 200",
            ratios["worker_peak_rss_mb"],
            ratios["worker_peak_rss_mb"] <= TARGETS["peak_rss_mb"],
        ),
        (
            f"kernel labels identical to scikit-learn on {kernel['points']:,} points "
            "(labels differing)",
            "0",
            kernel["labels_differing_from_sklearn"],
            kernel["labels_identical"],
        ),
    ]
    return [{"target": t, "goal": g, "measured": m, "met": bool(ok)} for t, g, m, ok in rows]


def _runs(values: list[float]) -> str:
    return " / ".join(_fmt(v) for v in values)


def markdown(results: dict[str, Any]) -> str:
    """The results as Markdown: how they were taken, the tables, the targets."""
    machine = results["machine"]
    config = results["config"]
    packages = machine["packages"]
    quix = machine["quix_venv"]
    lines = [
        "<!-- written by `python -m bench`; do not edit by hand -->",
        f"# Benchmark results ({'quick smoke run' if config['quick'] else 'full run'})",
        "",
        f"`{results['command']}` at {results['revision']}, finished {results['finished_at']} "
        f"in {results['duration_s'] / 60:.1f} minutes.",
        "",
        f"Machine: {machine['cores']} cores ({machine['cpu']}), {machine['memory_gib']:.0f} GiB, "
        f"{machine['os']}, Python {machine['python']}, load average at start "
        f"{' / '.join(f'{v:.2f}' for v in machine['load_average_at_start'])}. Apache Kafka "
        f"{machine['kafka']} (single KRaft node on the same machine). faust-streaming "
        f"{packages['faust-streaming']}, aiokafka {packages['aiokafka']}, numpy "
        f"{packages['numpy']}; Quix Streams {quix['quixstreams']} (confluent-kafka "
        f"{quix['confluent-kafka']}); passthrough and probe on confluent-kafka "
        f"{machine['confluent_venv']['confluent-kafka']}.",
        "",
        f"{config['events']:,} signups on {config['partitions']} partitions, one input topic "
        f"for every run; median of {config['repeats']}, programs interleaved; batches of "
        f"{config['batch_size']} / {config['batch_window_ms']} ms for the worker and the "
        "passthroughs. events/s = events / (time from starting the process to the moment a "
        "read_committed consumer has seen every output). CPU is the program's (children "
        "included) over the same time; broker CPU is the broker process's. First output after: "
        "from process start to the first output's append time. Last output visible after: from "
        "the last output's append time to when the consumer saw it (the last commit, for "
        "exactly-once output). Busy cores elsewhere: CPU used meanwhile by processes outside "
        "the benchmark, in cores.",
        "",
        "| program | events/s | runs | CPU µs/event | broker CPU µs/event | peak RSS MiB "
        "| first output after s | events/s first to last output | last output visible after s "
        "| busy cores elsewhere |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in results["rows"]:
        lines.append(
            f"| {row['title']} | **{_fmt(row['events_per_s'])}** "
            f"| {_runs(row['events_per_s_runs'])} | {_fmt(row['cpu_us_per_event'], 1)} "
            f"| {_fmt(row['broker_cpu_us_per_event'], 1)} | {_fmt(row['peak_rss_mb'])} "
            f"| {_fmt(row['startup_s'], 1)} | {_fmt(row['drain_events_per_s'])} "
            f"| {_fmt(row['visible_lag_s'], 2)} | {_fmt(row['other_cores'], 2)} |"
        )
    ratios = results["summary"]
    lines += [
        "",
        f"Ratios: exactly-once worker / Quix exactly-once **{_fmt(ratios['eo_vs_quix_eo'], 2)}x** "
        f"events/s, **{_fmt(ratios['eo_cpu_vs_quix_eo'], 2)}x** CPU per event, "
        f"{_fmt(ratios['eo_broker_cpu_vs_quix_eo'], 2)}x broker CPU per event; at-least-once "
        f"worker / Quix at-least-once **{_fmt(ratios['alo_vs_quix_alo'], 2)}x**; at-least-once "
        f"worker / confluent-kafka passthrough **{_fmt(ratios['alo_vs_confluent'], 2)}x**; "
        f"exactly-once worker / naive agent **{_fmt(ratios['eo_vs_naive'], 1)}x**"
        + (
            f"; two workers / one {_fmt(ratios['scale_out_speedup'], 2)}x."
            if results["scale_out"]
            else "."
        ),
        "",
    ]
    if results["latency"]:
        lines += [
            f"End-to-end latency, {config['latency_seconds']:.0f} s at each offered rate on a "
            "fresh topic, first 2 s excluded. *append*: output append time - input append time "
            "(both topics `message.timestamp.type=LogAppendTime`, so the broker stamps both); "
            "*visible*: when the read_committed consumer saw the output - input append time "
            "(with exactly-once output, records become visible at their transaction's commit).",
            "",
            "| program | offered events/s | p50 / p95 / p99 ms, append | max ms | p99 of the runs "
            "| p50 / p95 / p99 ms, visible | busy cores elsewhere |",
            "| --- | ---: | --- | ---: | --- | --- | ---: |",
        ]
        for row in results["latency"]:
            lines.append(
                f"| {row['title']} | {_fmt(row['rate'])} (sent at {_fmt(row['achieved_rate'])}) "
                f"| **{_fmt(row['p50_ms'])} / {_fmt(row['p95_ms'])} / {_fmt(row['p99_ms'])}** "
                f"| {_fmt(row['max_ms'])} | {_runs(row['p99_ms_runs'])} "
                f"| {_fmt(row['visible_p50_ms'])} / {_fmt(row['visible_p95_ms'])} / "
                f"{_fmt(row['visible_p99_ms'])} | {_fmt(row['other_cores'], 2)} |"
            )
        lines.append("")
    lines += ["| target | goal | measured | met |", "| --- | --- | ---: | --- |"]
    for check in results["targets"]:
        measured = check["measured"]
        shown = _fmt(measured, 2) if isinstance(measured, float) else str(measured)
        met = "yes" if check["met"] else "**no**"
        lines.append(f"| {check['target']} | {check['goal']} | {shown} | {met} |")
    kernel = results["kernel"]
    by_size = ", ".join(
        f"{int(size):,}: {us:.3f}" for size, us in kernel["us_per_event_by_batch_size"].items()
    )
    lines += [
        "",
        f"Scoring kernel (`Scorer.score`) on {kernel['points']:,} points: "
        f"{kernel['labels_differing_from_sklearn']} labels differ from the scikit-learn "
        f"Pipeline; µs per event by batch size: {by_size}.",
    ]
    for run in results["scale_out"]:
        lines.append(
            f"Two workers: {_fmt(run['events_per_s'])} events/s, assignment {run['assignment']}, "
            f"each partition owned once: {run['each_partition_owned_by_exactly_one_worker']}, "
            f"unchanged during the run: {run['assignment_unchanged_during_run']}."
        )
    if results.get("variants"):
        lines += [
            "",
            "| variant | events/s | CPU µs/event | p50 / p95 / p99 ms |",
            "| --- | ---: | ---: | --- |",
        ]
        for variant in results["variants"]:
            latency = (
                " / ".join(_fmt(variant[name]) for name in ("p50_ms", "p95_ms", "p99_ms"))
                if "p99_ms" in variant
                else ""
            )
            lines.append(
                f"| {variant['title']} | {_fmt(variant['events_per_s'])} "
                f"| {_fmt(variant['cpu_us_per_event'], 1)} | {latency} |"
            )
    if results.get("profile"):
        lines += ["", "| layer (py-spy samples of the worker) | share |", "| --- | ---: |"]
        for layer, share in results["profile"]["layers"].items():
            lines.append(f"| {layer} | {share:.1%} |")
    return "\n".join(lines) + "\n"


def write_json(results: dict[str, Any], path: Path) -> None:
    """Write results (without the raw latency samples) as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


def plot(results: dict[str, Any], latencies: dict[str, list[int]], path: Path) -> None:
    """Throughput bars, latency CDFs and kernel cost per batch size in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (bars, cdf, kernel) = plt.subplots(1, 3, figsize=(18, 5.6))
    rows = results["rows"]
    names = [row["short"] for row in rows]
    rates = [row["events_per_s"] for row in rows]
    colours = ["#1f77b4" if row["program"].startswith("worker") else "#7f7f7f" for row in rows]
    drawn = bars.barh(names, rates, color=colours)
    bars.bar_label(drawn, labels=[f" {r:,.0f}" for r in rates], fontsize=8)
    bars.invert_yaxis()
    bars.set_xlabel("events/s, process start to last output visible (median)")
    bars.set_title(f"Draining {results['config']['events']:,} signups")
    bars.tick_params(axis="y", labelsize=8)

    for name, values in latencies.items():
        # Millisecond timestamps make some latencies 0: drawn at 0.5 ms on the log axis.
        ordered = sorted(max(v, 0.5) for v in values)
        if ordered:
            fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
            cdf.plot(ordered, fractions, label=name)
    cdf.axvline(TARGETS["p99_ms_at_2000"], color="black", linestyle="--", linewidth=1)
    cdf.text(TARGETS["p99_ms_at_2000"], 0.05, " p99 target at 2,000/s", fontsize=8)
    cdf.set_xscale("log")
    cdf.set_xlabel("input append to output append, ms (log)")
    cdf.set_ylabel("fraction of events")
    cdf.set_title("End-to-end latency at fixed offered rates")
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
