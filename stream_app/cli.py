"""The `segstream` command line: generate, train, score, worker, replay, tail and more."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from schemas import DataError, SegstreamError, export_json_schemas

__all__ = ["app", "main"]

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="segstream",
    help="Real-time customer segmentation on Kafka.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
generate_app = typer.Typer(help="Generate sample data.", no_args_is_help=True)
topics_app = typer.Typer(help="Manage the Kafka topics segstream uses.", no_args_is_help=True)
app.add_typer(generate_app, name="generate")
app.add_typer(topics_app, name="topics")

console = Console(stderr=True)


def _friendly(command: Callable[P, R]) -> Callable[P, R]:
    """Turn a SegstreamError into one readable line on stderr and exit status 1."""

    @wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except SegstreamError as exc:
            typer.echo(f"segstream: error: {exc}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("segstream: interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
        disable=not console.is_terminal,
    )


def _settings() -> Any:
    from stream_app.settings import get_settings

    return get_settings()


def _open_out(out: Path | None) -> Any:
    if out is None or str(out) == "-":
        return sys.stdout.buffer
    out.parent.mkdir(parents=True, exist_ok=True)
    return out.open("wb")


@generate_app.command("customers")
@_friendly
def generate_customers_command(
    n: Annotated[int, typer.Option(min=1, help="number of customers")] = 400,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    out: Annotated[Path, typer.Option(help="CSV file to write")] = Path("data/customers.csv"),
) -> None:
    """Write a customer table in which the seed's four profiles exist."""
    from training.generate import generate_customers

    table = generate_customers(n, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    console.print(f"wrote {len(table)} customers to {out}")


@generate_app.command("signups")
@_friendly
def generate_signups_command(
    n: Annotated[int, typer.Option(min=1, help="number of signup events")] = 1000,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    invalid_share: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="share of deliberately broken events")
    ] = 0.0,
    out: Annotated[Path | None, typer.Option(help="JSONL file (default: stdout)")] = None,
) -> None:
    """Write signup events as JSON lines, optionally with broken ones mixed in."""
    from training.generate import generate_signups

    handle = _open_out(out)
    try:
        for value in generate_signups(n, seed, invalid_share):
            # A raw newline inside a broken payload would split it into two records.
            handle.write(value.replace(b"\n", b" ") + b"\n")
    finally:
        if handle is not sys.stdout.buffer:
            handle.close()
    if out is not None:
        console.print(f"wrote {n} signups ({round(n * invalid_share)} invalid) to {out}")


@app.command("train")
@_friendly
def train_command(
    data: Annotated[Path, typer.Option(help="customer table, CSV or Parquet")],
    out: Annotated[Path, typer.Option(help="models root; the model goes to OUT/<version>")] = Path(
        "models"
    ),
    k: Annotated[int, typer.Option(min=1, max=50, help="number of segments")] = 4,
    features: Annotated[
        str, typer.Option(help="comma-separated: age, annual_income, gender_female")
    ] = "age,annual_income",
    columns: Annotated[
        str | None, typer.Option(help="column mapping, e.g. gender=Sex,age=Age,annual_income=Inc")
    ] = None,
    income_unit: Annotated[
        str | None, typer.Option(help="dollars or thousands (default: guessed from the header)")
    ] = None,
    profiles: Annotated[Path | None, typer.Option(help="profile catalogue YAML/JSON")] = None,
    seed: Annotated[int, typer.Option(help="random seed of K-Means")] = 0,
    name: Annotated[str, typer.Option(help="model name")] = "customer-segments",
    version: Annotated[str | None, typer.Option(help="model version (default: date-hash)")] = None,
) -> None:
    """Fit K-Means on a customer table and save a versioned, named model."""
    from training.data import load_customers, parse_column_overrides
    from training.fit import fit_model, save_model
    from training.naming import load_catalogue

    if income_unit not in (None, "dollars", "thousands"):
        raise DataError(f"--income-unit must be dollars or thousands, not {income_unit!r}")
    feature_list = [f.strip() for f in features.split(",") if f.strip()]
    table = load_customers(
        data,
        parse_column_overrides(columns),
        income_unit,  # type: ignore[arg-type]  # checked above
        require_gender="gender_female" in feature_list,
    )
    mapping = ", ".join(f"{k}={v}" for k, v in table.mapping.items())
    console.print(f"columns: {mapping} (income in {table.income_unit})")
    model = fit_model(
        table, k, feature_list, load_catalogue(profiles), seed, name=name, version=version
    )
    directory = save_model(model, out)
    _print_model(model.manifest)
    bad = model.manifest.bad_rows
    if bad.excluded:
        details = "; ".join(
            f"{reason}: {count} (rows {', '.join(map(str, bad.examples[reason]))})"
            for reason, count in bad.excluded.items()
        )
        console.print(
            f"excluded {bad.total_rows - bad.used_rows} of {bad.total_rows} rows: {details}"
        )
    typer.echo(directory)


def _print_model(manifest: Any) -> None:
    table = Table(title=f"model {manifest.name} {manifest.version}")
    for column in ("segment", "name", "customers", "centroid", "action"):
        table.add_column(column)
    for segment in manifest.segments:
        centroid = ", ".join(f"{k}={v:,.1f}" for k, v in segment.centroid.items())
        table.add_row(segment.id, segment.name, str(segment.size), centroid, segment.action)
    console.print(table)


@app.command("schemas")
@_friendly
def schemas_command(
    out: Annotated[Path, typer.Option(help="folder for the JSON Schema files")] = Path(
        "schemas-json"
    ),
) -> None:
    """Export the JSON Schemas of all contracts."""
    for path in export_json_schemas(out):
        typer.echo(path)


@app.command("score")
@_friendly
def score_command(
    model: Annotated[Path, typer.Option(help="model directory, manifest.json or models root")],
    input_file: Annotated[Path, typer.Option("--input", help="signups as JSONL or CSV")],
    out: Annotated[Path | None, typer.Option(help="assignments JSONL (default: stdout)")] = None,
    dead_letters: Annotated[
        Path | None, typer.Option(help="where invalid records go (default: OUT.dlq.jsonl)")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1)] = 10_000,
) -> None:
    """Score a file offline with exactly the worker's logic; invalid records are set aside."""
    from stream_app.kafka_io import read_replay_file
    from stream_app.model_store import load_manifest
    from stream_app.pipeline import SourceRecord, process_records
    from stream_app.scorer import Scorer

    settings = _settings()
    scorer = Scorer(load_manifest(model, settings.model_signing_key))
    dlq_path = dead_letters or (out.with_suffix(".dlq.jsonl") if out else Path("score.dlq.jsonl"))
    handle = _open_out(out)
    reasons: Counter[str] = Counter()
    first_error = ""
    total = 0
    dlq_handle = None
    try:
        batch: list[SourceRecord] = []

        def flush() -> None:
            nonlocal dlq_handle, first_error
            outcome = process_records(
                batch,
                scorer,
                consumer_group="segstream-score",
                max_event_bytes=settings.max_event_bytes,
                echo_customer=settings.echo_customer,
            )
            for record in outcome.assignments:
                handle.write(record.value + b"\n")
            if outcome.dead_letters:
                if dlq_handle is None:
                    dlq_handle = dlq_path.open("wb")
                    letter = json.loads(outcome.dead_letters[0].value)
                    first_error = f"line {letter['source_offset']}: {letter['error_message']}"
                for record in outcome.dead_letters:
                    dlq_handle.write(record.value + b"\n")
            reasons.update(outcome.reason_counts)
            batch.clear()

        for line_number, value in enumerate(read_replay_file(input_file), start=1):
            batch.append(SourceRecord(None, value, str(input_file), 0, line_number))
            total += 1
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
    finally:
        if handle is not sys.stdout.buffer:
            handle.close()
        if dlq_handle is not None:
            dlq_handle.close()
    invalid = sum(reasons.values())
    if invalid:
        raise DataError(
            f"{invalid} of {total} records in {input_file} are invalid "
            f"(first at {first_error}); they are in {dlq_path}"
        )
    console.print(f"scored {total} records from {input_file}")


@app.command("worker")
@_friendly
def worker_command() -> None:
    """Run the Faust worker: consume signups, score in batches, emit assignments."""
    from faust import Worker

    from stream_app.app import create_app
    from stream_app.kafka_io import create_topics

    settings = _settings()
    # Faust never picks up a source topic that was missing when it subscribed, so make sure
    # the topics exist first (partitions of existing topics are left as they are).
    asyncio.run(
        create_topics(
            settings,
            [settings.input_topic, settings.output_topic, settings.dlq_topic],
            settings.topic_partitions,
        )
    )
    segmentation = create_app(settings)
    worker = Worker(segmentation.app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()


@app.command("replay")
@_friendly
def replay_command(
    file: Annotated[Path, typer.Argument(help="signups as JSONL (sent as-is) or CSV")],
    rate: Annotated[
        float, typer.Option(min=0, help="events per second; 0 for as fast as possible")
    ] = 0,
    topic: Annotated[
        str | None, typer.Option(help="target topic (default: the input topic)")
    ] = None,
) -> None:
    """Produce a recorded or generated signup stream to the input topic."""
    from stream_app.kafka_io import read_replay_file, replay

    settings = _settings()
    values = list(read_replay_file(file))
    target = topic or settings.input_topic
    with _progress() as progress:
        task = progress.add_task(f"replaying to {target}", total=len(values))
        sent = asyncio.run(
            replay(
                settings, iter(values), target, rate or None, lambda n: progress.advance(task, n)
            )
        )
    console.print(f"sent {sent} records from {file} to {target}")


@app.command("tail")
@_friendly
def tail_command(
    topic: Annotated[str | None, typer.Option(help="topic (default: the output topic)")] = None,
    from_beginning: Annotated[bool, typer.Option(help="start at the oldest record")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="stop after this many records")] = None,
    idle_timeout: Annotated[
        float | None, typer.Option(help="stop after this many seconds without a record")
    ] = None,
) -> None:
    """Print records (assignments by default) as JSON lines as they arrive."""
    from stream_app.kafka_io import consume

    settings = _settings()
    target = topic or settings.output_topic

    async def run() -> None:
        async for _key, value, _headers in consume(
            settings, target, from_beginning, idle_timeout, limit
        ):
            sys.stdout.write((value or b"null").decode("utf-8", "backslashreplace") + "\n")
            sys.stdout.flush()

    asyncio.run(run())


@topics_app.command("create")
@_friendly
def topics_create_command(
    partitions: Annotated[int | None, typer.Option(min=1, help="default: topic_partitions")] = None,
) -> None:
    """Create the input, output and dead-letter topics if they are missing."""
    from stream_app.kafka_io import create_topics

    settings = _settings()
    names = [settings.input_topic, settings.output_topic, settings.dlq_topic]
    created = asyncio.run(create_topics(settings, names, partitions or settings.topic_partitions))
    for name in names:
        typer.echo(f"{name}: {'created' if name in created else 'exists'}")


def main() -> None:
    """Entry point of the `segstream` program."""
    app()


if __name__ == "__main__":
    main()
