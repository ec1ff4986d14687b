"""The `segstream` command line: generate, train, score, worker, replay, tail and more."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections import Counter
from collections.abc import Callable
from functools import wraps
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from schemas import DataError, SegstreamError, export_json_schemas
from training import cli as training_cli

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
topics_app = typer.Typer(help="Manage the Kafka topics segstream uses.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")

console = Console(stderr=True)

#: The file in SEGSTREAM_DATA_DIR where a worker notes the port its endpoints listen on.
WEB_PORT_FILE = "web-port"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"segstream {package_version('segstream')}")
        raise typer.Exit


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """Options that come before the command."""


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
        except ModuleNotFoundError as exc:
            # The worker's image has no training libraries (pyproject.toml's `train` extra).
            typer.echo(
                f"segstream: error: {exc.name} is not installed (train, report and generate "
                "need pip install 'segstream[train]')",
                err=True,
            )
            raise typer.Exit(1) from None

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


@app.command("settings")
def settings_command() -> None:
    """Print every SEGSTREAM_ setting with its default as a Markdown table."""
    from stream_app.settings import settings_table

    typer.echo(settings_table())


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


def _with_web_port(settings: Any) -> Any:
    """Settings with a real web port (a free one for SEGSTREAM_WEB_PORT=0), noted for `probe`."""
    if settings.web_port == 0:
        # Several workers sharing one network (docker-compose with host networking) each
        # need a port of their own; the kernel hands out one that nothing listens on.
        with socket.socket() as sock:
            sock.bind((settings.web_host, 0))
            settings = settings.model_copy(update={"web_port": sock.getsockname()[1]})
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    (settings.data_dir / WEB_PORT_FILE).write_text(f"{settings.web_port}\n")
    return settings


@app.command("worker")
@_friendly
def worker_command() -> None:
    """Run the Faust worker: consume signups, score in batches, emit assignments."""
    from faust import Worker

    from stream_app.app import create_app
    from stream_app.kafka_io import create_topics

    settings = _with_web_port(_settings())
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


@app.command("probe")
@_friendly
def probe_command(
    path: Annotated[str, typer.Argument(help="/ready, /health or /metrics")] = "/ready",
    timeout: Annotated[float, typer.Option(min=0.1, help="seconds to wait for the answer")] = 3.0,
) -> None:
    """Ask the worker on this machine for an endpoint: exit 0 on 200, else 1 (health checks)."""
    from urllib.error import HTTPError, URLError
    from urllib.request import urlopen

    from stream_app.exceptions import WorkerUnavailableError

    settings = _settings()
    port = settings.web_port
    if port == 0:
        port_file = settings.data_dir / WEB_PORT_FILE
        try:
            port = int(port_file.read_text())
        except (OSError, ValueError):
            raise WorkerUnavailableError(f"no worker has noted its port in {port_file}") from None
    host = "127.0.0.1" if settings.web_host in ("0.0.0.0", "") else settings.web_host  # noqa: S104
    url = f"http://{host}:{port}/{path.lstrip('/')}"
    try:
        with urlopen(url, timeout=timeout) as response:
            typer.echo(response.read().decode("utf-8", "replace"))
    except HTTPError as exc:
        typer.echo(exc.read().decode("utf-8", "replace"))
        raise WorkerUnavailableError(f"{url} answered {exc.code}") from None
    except (URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WorkerUnavailableError(f"no answer from {url}: {reason}") from None


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


@app.command("publish")
@_friendly
def publish_command(
    model_dir: Annotated[
        Path | None, typer.Argument(help="model directory or manifest.json (not with --rollback)")
    ] = None,
    shadow: Annotated[
        bool, typer.Option(help="publish as the shadow candidate instead of live")
    ] = False,
    rollback: Annotated[
        bool, typer.Option(help="make the previously live version live again")
    ] = False,
    name: Annotated[str | None, typer.Option(help="model name (default: the setting)")] = None,
) -> None:
    """Publish a model's manifest to the compacted model topic; every worker follows it."""
    from stream_app.model_registry import publish_manifest
    from stream_app.model_registry import rollback as rollback_model
    from stream_app.model_store import load_manifest

    settings = _settings()
    if rollback == (model_dir is not None):
        raise DataError("give either MODEL_DIR or --rollback")
    if rollback:
        registry = asyncio.run(rollback_model(settings, name or settings.model_name))
    else:
        assert model_dir is not None
        # The manifest is checked as a worker would check it, but the key only signs here.
        manifest = load_manifest(model_dir)
        registry = asyncio.run(publish_manifest(settings, manifest, shadow=shadow))
    live = registry.live.version if registry.live else "none"
    candidate = registry.candidate.version if registry.candidate else "none"
    signed = "signed" if settings.model_signing_key else "unsigned"
    typer.echo(f"{registry.name}: live {live}, candidate {candidate} ({signed})")


@app.command("promote")
@_friendly
def promote_command(
    version: Annotated[str, typer.Argument(help="a published version, normally the candidate")],
    name: Annotated[str | None, typer.Option(help="model name (default: the setting)")] = None,
) -> None:
    """Make a published version (normally the shadow candidate) the live model."""
    from stream_app.model_registry import promote

    settings = _settings()
    registry = asyncio.run(promote(settings, name or settings.model_name, version))
    typer.echo(f"{registry.name}: live {version}")


@app.command("models")
@_friendly
def models_command(
    name: Annotated[str | None, typer.Option(help="model name (default: the setting)")] = None,
) -> None:
    """List the versions seen on the model topic, which is live, and the shadow comparison."""
    from stream_app.model_registry import read_registry

    settings = _settings()
    registry = asyncio.run(read_registry(settings, name or settings.model_name))
    live = registry.live.version if registry.live else None
    candidate = registry.candidate.version if registry.candidate else None
    table = Table(title=f"model {registry.name} on {settings.model_topic}")
    for column in ("version", "created", "segments", "role"):
        table.add_column(column)
    for version, manifest in sorted(registry.archive.items(), key=lambda v: v[1].created_at):
        role = "live" if version == live else "candidate" if version == candidate else ""
        segments = ", ".join(s.id for s in manifest.segments)
        table.add_row(version, manifest.created_at.isoformat(), segments, role)
    Console().print(table)
    typer.echo(f"live: {live or 'none'}")
    typer.echo(f"candidate: {candidate or 'none'}")
    if candidate:
        compared, pairs = registry.shadow_totals()
        differ = sum(pairs.values())
        share = f" ({differ / compared:.1%})" if compared else ""
        typer.echo(f"shadow: {compared} events compared, {differ} in another segment{share}")
        for pair, count in pairs.most_common():
            typer.echo(f"  {pair}: {count}")
    for reason in registry.refused:
        typer.echo(f"refused: {reason}")


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


generate_app = typer.Typer(help="Generate sample data.", no_args_is_help=True)
generate_app.command("customers")(_friendly(training_cli.generate_customers_command))
generate_app.command("signups")(_friendly(training_cli.generate_signups_command))
app.add_typer(generate_app, name="generate")
app.command("train")(_friendly(training_cli.train_command))
app.command("report")(_friendly(training_cli.report_command))


def main() -> None:
    """Entry point of the `segstream` program."""
    app()


if __name__ == "__main__":
    main()
