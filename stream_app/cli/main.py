"""The `segstream` command line: generate, train, score, worker, replay, tail and more.

Every failure of every command leaves through one place, `_SegstreamGroup.main`: one line on
stderr, `segstream: error: ...`, exit status 1; a usage error is one line too, exit status 2.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import socket
import sys
import traceback
from collections import Counter
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from typer.core import TyperGroup

from schemas import ConfigurationError, DataError, SegstreamError, export_json_schemas
from stream_app.cli import training as training_commands
from stream_app.cli.common import console, load_settings, open_output
from stream_app.settings import Settings, get_settings

if TYPE_CHECKING:
    from stream_app.model_registry import ModelRegistry

__all__ = ["app", "main"]

#: Exit status of a usage error (bad option or argument), as click and most Unix tools use.
USAGE_ERROR = 2


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _fail(message: str, status: int = 1) -> NoReturn:
    typer.echo(f"segstream: error: {_one_line(message)}", err=True)
    sys.exit(status)


def _click_kind(exc: BaseException) -> str | None:
    """Which of click's exceptions exc is: NoArgsIsHelpError, UsageError, Abort, ClickException.

    By name, since typer ships its own copy of click (`typer._click`) whose classes are not
    click's, and older typer releases use click itself.
    """
    names = {cls.__name__ for cls in type(exc).__mro__}
    for kind in ("NoArgsIsHelpError", "UsageError", "Abort", "ClickException"):
        if kind in names:
            return kind
    return None


def _usage_line(exc: Any) -> str:
    ctx = getattr(exc, "ctx", None)
    path = ctx.command_path if ctx is not None else "segstream"
    command = path.partition(" ")[2]
    message = _one_line(exc.format_message()).rstrip(".")
    return f"{command + ': ' if command else ''}{message} (see {path} --help)"


def _unexpected(exc: BaseException) -> str:
    """The one line for an error segstream did not foresee; the traceback only on debug."""
    try:
        debug = get_settings().log_level == "debug"
    except SegstreamError:
        debug = False
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    what = _one_line(str(exc)) or "no details"
    return (
        f"unexpected {type(exc).__name__}: {what} "
        "(SEGSTREAM_LOG_LEVEL=debug shows where; please report it)"
    )


def _describe(exc: BaseException) -> str:
    """One line for any error a command raised."""
    if isinstance(exc, SegstreamError):
        return str(exc)
    if isinstance(exc, ModuleNotFoundError):
        # The worker's image has no training libraries (pyproject.toml's `train` extra).
        return (
            f"{exc.name} is not installed (train, report and generate need "
            "pip install 'segstream[train]')"
        )
    if type(exc).__module__.startswith("aiokafka"):
        from stream_app.kafka_io import kafka_failure

        return str(kafka_failure(exc, get_settings().bootstrap_servers))
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror.lower()}"
    return _unexpected(exc)


class _SegstreamGroup(TyperGroup):
    """The program's command group: the one place errors become one line and an exit status."""

    def main(  # type: ignore[override]  # narrower than click's, which takes **extra too
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; exit 0, 1 (failure), 2 (usage) or 130 (interrupted)."""
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except Exception as exc:  # noqa: BLE001 - the one place every failure becomes a line
            kind = _click_kind(exc)
            if kind == "NoArgsIsHelpError":
                # A bare `segstream` or `segstream topics`: the exception printed the help
                # when it was made (typer's rich help prints itself); a usage error all the same.
                sys.exit(USAGE_ERROR)
            if kind == "UsageError":
                _fail(_usage_line(exc), USAGE_ERROR)
            if kind == "Abort":
                typer.echo("segstream: interrupted", err=True)
                sys.exit(130)
            if kind == "ClickException":
                _fail(exc.format_message())  # type: ignore[attr-defined]
            if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
                sys.exit(1)  # the reader of our output went away (`| head`): nothing to say
            _fail(_describe(exc))
        if not standalone_mode:
            return result
        # typer returns the status of a typer.Exit in non-standalone mode, None otherwise.
        sys.exit(result if isinstance(result, int) else 0)


app = typer.Typer(
    name="segstream",
    help="Real-time customer segmentation on Kafka.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=_SegstreamGroup,
)
topics_app = typer.Typer(help="Manage the Kafka topics segstream uses.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")


def _package_version() -> str:
    try:
        return metadata.version("segstream")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"segstream {_package_version()}")
        raise typer.Exit()


@app.callback()
def _start(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """Real-time customer segmentation on Kafka."""
    # A command speaks for itself in one line: without a handler, Python would print
    # aiokafka's own error lines ("Unable connect to ...") on stderr before ours. A worker's
    # Faust replaces the root logger's handlers with its own once it starts.
    logging.getLogger().addHandler(logging.NullHandler())
    load_settings()  # invalid settings stop every command here, with one line


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


@app.command("schemas")
def schemas_command(
    out: Annotated[Path, typer.Option(help="folder for the JSON Schema files")] = Path(
        "schemas-json"
    ),
) -> None:
    """Export the JSON Schemas of all contracts."""
    for path in export_json_schemas(out):
        typer.echo(path)


@app.command("settings")
def settings_command(
    defaults: Annotated[
        bool, typer.Option(help="print the defaults and meanings instead (the README's table)")
    ] = False,
) -> None:
    """Print every SEGSTREAM_ setting: the value in effect and where it came from."""
    from stream_app.settings import effective_settings_table, settings_table

    typer.echo(settings_table() if defaults else effective_settings_table(load_settings()))


@app.command("score")
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
    from schemas.model_files import load_manifest
    from stream_app.kafka_io import read_replay_file
    from stream_app.pipeline import SourceRecord, process_records
    from stream_app.scorer import Scorer

    settings = load_settings()
    scorer = Scorer(load_manifest(model, settings.model_signing_key))
    dlq_path = dead_letters or (out.with_suffix(".dlq.jsonl") if out else Path("score.dlq.jsonl"))
    values = read_replay_file(input_file)  # checks the input before any output is opened
    if dlq_path.is_dir():
        raise DataError(f"--dead-letters {dlq_path} is a directory; give a file")
    handle = open_output(out, "--out")
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

        for line_number, value in enumerate(values, start=1):
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


#: The file in SEGSTREAM_DATA_DIR where a worker notes the port its endpoints listen on.
WEB_PORT_FILE = "web-port"


def _with_web_port(settings: Settings) -> Settings:
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
def worker_command() -> None:
    """Run the Faust worker: consume signups, score in batches, emit assignments."""
    from faust import Worker

    from stream_app.app import create_app
    from stream_app.kafka_io import create_topics, ensure_state_topics, missing_topics
    from stream_app.pins import check_pins

    check_pins()  # before anything connects: the worker runs only on the versions pinned
    settings = load_settings()
    _check_port_free(settings.web_host, settings.web_port)
    settings = _with_web_port(settings)
    names = [settings.input_topic, settings.output_topic, settings.dlq_topic]
    if settings.customer_state:
        names += [settings.state_topic, settings.changes_topic]
    # Faust never picks up a source topic that was missing when it subscribed, so the topics
    # must exist first; the worker creates them only when told to, since on a real cluster
    # topics usually belong to whoever runs it (partitions, replicas, retention).
    if settings.create_topics:
        asyncio.run(create_topics(settings, names[:3], settings.topic_partitions))
        if settings.customer_state:
            asyncio.run(ensure_state_topics(settings))
    else:
        missing = asyncio.run(missing_topics(settings, names))
        if missing:
            raise ConfigurationError(
                f"topic{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing on "
                f"{settings.bootstrap_servers}: run segstream topics create, or set "
                "SEGSTREAM_CREATE_TOPICS=true to let the worker create them"
            )
    segmentation = create_app(settings)
    worker = Worker(segmentation.faust_app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()


def _check_port_free(host: str, port: int) -> None:
    """Fail with one line when the health port is taken, before Faust starts and fails worse."""
    if port == 0:
        return  # any free port
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # As the web server binds it: a port in TIME_WAIT after a restart is not "in use".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigurationError(
                f"SEGSTREAM_WEB_PORT={port}: cannot listen on {host}:{port} "
                f"({(exc.strerror or str(exc)).lower()}); another worker may be using it: give "
                "each worker on a host its own SEGSTREAM_WEB_PORT"
            ) from None


@app.command("probe")
def probe_command(
    path: Annotated[str, typer.Argument(help="/ready, /health or /metrics")] = "/ready",
    timeout: Annotated[float, typer.Option(min=0.1, help="seconds to wait for the answer")] = 3.0,
) -> None:
    """Ask the worker on this machine for an endpoint: exit 0 on 200, else 1 (health checks)."""
    from urllib.error import HTTPError, URLError
    from urllib.request import urlopen

    from stream_app.exceptions import WorkerUnavailableError

    settings = load_settings()
    url = f"http://{_local_worker_address(settings)}/{path.lstrip('/')}"
    try:
        with urlopen(url, timeout=timeout) as response:
            typer.echo(response.read().decode("utf-8", "replace"))
    except HTTPError as exc:
        typer.echo(exc.read().decode("utf-8", "replace"))
        raise WorkerUnavailableError(f"{url} answered {exc.code}") from None
    except (URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WorkerUnavailableError(f"no answer from {url}: {reason}") from None


@app.command("customer")
def customer_command(
    customer_id: Annotated[str, typer.Argument(help="the customer's id")],
    url: Annotated[
        str | None,
        typer.Option(help="a worker's web address (default: the worker on this machine)"),
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="seconds to wait for the answer")] = 5.0,
) -> None:
    """Print a customer's current segment, model version and since when (any worker answers)."""
    from urllib.error import HTTPError, URLError
    from urllib.parse import quote
    from urllib.request import urlopen

    from stream_app.exceptions import CustomerNotFoundError, WorkerUnavailableError

    settings = load_settings()
    base = (url or f"http://{_local_worker_address(settings)}").rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ConfigurationError(f"--url {base}: give an http:// or https:// address")
    target = f"{base}/customers/{quote(customer_id, safe='')}"
    try:
        with urlopen(target, timeout=timeout) as response:  # noqa: S310 - scheme checked above
            typer.echo(response.read().decode("utf-8", "replace"))
    except HTTPError as exc:
        body = exc.read().decode("utf-8", "replace")
        if exc.code == 404:
            raise CustomerNotFoundError(
                f"customer {customer_id!r} is not known to {base}"
            ) from None
        raise WorkerUnavailableError(f"{target} answered {exc.code}: {body[:200]}") from None
    except (URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WorkerUnavailableError(f"no answer from {target}: {reason}") from None


def _local_worker_address(settings: Settings) -> str:
    """host:port of the worker on this machine (its noted port when it picked one)."""
    from stream_app.exceptions import WorkerUnavailableError

    port = settings.web_port
    if port == 0:
        port_file = settings.data_dir / WEB_PORT_FILE
        try:
            port = int(port_file.read_text())
        except (OSError, ValueError):
            raise WorkerUnavailableError(f"no worker has noted its port in {port_file}") from None
    host = "127.0.0.1" if settings.web_host in ("0.0.0.0", "") else settings.web_host  # noqa: S104
    return f"{host}:{port}"


@app.command("replay")
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
    from stream_app.kafka_io import check_topic_name, read_replay_file, replay

    settings = load_settings()
    target = check_topic_name(topic or settings.input_topic)
    values = list(read_replay_file(file))
    with _progress() as progress:
        task = progress.add_task(f"replaying to {target}", total=len(values))
        sent = asyncio.run(
            replay(
                settings, iter(values), target, rate or None, lambda n: progress.advance(task, n)
            )
        )
    console.print(f"sent {sent} records from {file} to {target}")


@app.command("tail")
def tail_command(
    topic: Annotated[str | None, typer.Option(help="topic (default: the output topic)")] = None,
    from_beginning: Annotated[bool, typer.Option(help="start at the oldest record")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="stop after this many records")] = None,
    idle_timeout: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="stop after this many seconds without a record; 0: stop at the current end",
        ),
    ] = None,
) -> None:
    """Print records (assignments by default) as JSON lines as they arrive."""
    from stream_app.kafka_io import consume

    settings = load_settings()
    target = topic or settings.output_topic

    async def run() -> None:
        async for _key, value, _headers in consume(
            settings, target, from_beginning, idle_timeout, limit
        ):
            sys.stdout.write((value or b"null").decode("utf-8", "backslashreplace") + "\n")
            sys.stdout.flush()

    asyncio.run(run())


@app.command("publish")
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
    from schemas.model_files import load_manifest
    from stream_app.model_registry import publish_manifest
    from stream_app.model_registry import rollback as rollback_model

    settings = load_settings()
    if rollback == (model_dir is not None):
        raise DataError("give either MODEL_DIR or --rollback")
    if rollback and shadow:
        raise DataError("--rollback makes an earlier version live; it cannot be --shadow")
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
def promote_command(
    version: Annotated[str, typer.Argument(help="a published version, normally the candidate")],
    name: Annotated[str | None, typer.Option(help="model name (default: the setting)")] = None,
) -> None:
    """Make a published version (normally the shadow candidate) the live model."""
    from stream_app.model_registry import promote

    settings = load_settings()
    registry = asyncio.run(promote(settings, name or settings.model_name, version))
    typer.echo(f"{registry.name}: live {version}")


@app.command("models")
def models_command(
    name: Annotated[str | None, typer.Option(help="model name (default: the setting)")] = None,
) -> None:
    """List the versions seen on the model topic, which is live, and the shadow comparison."""
    from stream_app.model_registry import read_registry

    settings = load_settings()
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
    typer.echo(f"live: {_with_refusals(registry, live)}")
    typer.echo(f"candidate: {_with_refusals(registry, candidate)}")
    if candidate:
        compared, pairs = registry.shadow_totals()
        differ = sum(pairs.values())
        share = f" ({differ / compared:.1%})" if compared else ""
        typer.echo(f"shadow: {compared} events compared, {differ} in another segment{share}")
        for pair, count in pairs.most_common():
            typer.echo(f"  {pair}: {count}")
    for line in _audience_lines(registry, live, candidate):
        typer.echo(line)
    for version, reason in sorted(registry.refusals().items()):
        typer.echo(f"refused here: {version}: {reason}")
    for worker, refused in sorted(registry.worker_refusals.items()):
        for version, reason in sorted(refused.items()):
            typer.echo(f"refused by worker {worker}: {version}: {reason}")


def _audience_lines(registry: ModelRegistry, live: str | None, candidate: str | None) -> list[str]:
    """Re-segmentation progress and shadow counts over customers, from the workers' reports
    (of the workers in the consumer group now, when the group can be read)."""
    from stream_app.lookup import group_worker_ids

    members = group_worker_ids(load_settings())
    lines = []
    for worker, report in sorted(registry.audiences.items()):
        if members is not None and worker not in members:
            continue  # a worker that has left the group
        resegment = report.get("resegment") or {}
        if live and resegment.get("model_version") == live:
            remaining = resegment.get("partitions_remaining") or []
            progress = (
                "complete" if resegment.get("complete") else f"{len(remaining)} partitions to go"
            )
            lines.append(f"customers re-scored with {live} by worker {worker}: {progress}")
        shadow = report.get("shadow_state") or {}
        if candidate and shadow.get("candidate") == candidate:
            done = "" if shadow.get("complete") else " so far"
            lines.append(
                f"shadow on customers in state of worker {worker}: "
                f"{shadow.get('would_change', 0)} of {shadow.get('customers_compared', 0)} "
                f"would change segment{done}"
            )
    return lines


def _with_refusals(registry: ModelRegistry, version: str | None) -> str:
    """A version as `models` shows it: a version the workers refuse is not simply live."""
    if version is None:
        return "none"
    by_workers = registry.refused_by_workers(version)
    if not by_workers:
        return version
    reasons = sorted(set(by_workers.values()))
    workers = f"{len(by_workers)} worker{'s' if len(by_workers) > 1 else ''}"
    return (
        f"{version}, but refused by {workers} that keep their previous model ({'; '.join(reasons)})"
    )


@app.command("sign")
def sign_command(
    model_dir: Annotated[Path, typer.Argument(help="model directory, manifest.json or root")],
) -> None:
    """Sign a trained model's manifest in place with SEGSTREAM_MODEL_SIGNING_KEY."""
    from schemas.model_files import load_manifest, resolve_manifest_path
    from stream_app.model_registry import sign

    settings = load_settings()
    if settings.model_signing_key is None:
        raise ConfigurationError(
            "SEGSTREAM_MODEL_SIGNING_KEY is not set: there is no key to sign with"
        )
    path = resolve_manifest_path(model_dir)
    manifest = sign(load_manifest(path), settings.model_signing_key)
    path.write_text(manifest.model_dump_json(indent=2) + "\n")
    typer.echo(f"signed {manifest.name} {manifest.version}: {path}")


@topics_app.command("create")
def topics_create_command(
    partitions: Annotated[int | None, typer.Option(min=1, help="default: topic_partitions")] = None,
) -> None:
    """Create the input, output, dead-letter, state and segment-change topics if missing."""
    from stream_app.kafka_io import create_topics, ensure_state_topics

    settings = load_settings()
    names = [settings.input_topic, settings.output_topic, settings.dlq_topic]
    created = asyncio.run(create_topics(settings, names, partitions or settings.topic_partitions))
    if settings.customer_state:
        names += [settings.state_topic, settings.changes_topic]
        created += asyncio.run(ensure_state_topics(settings))
    for name in names:
        typer.echo(f"{name}: {'created' if name in created else 'exists'}")


generate_app = typer.Typer(help="Generate sample data.", no_args_is_help=True)
generate_app.command("customers")(training_commands.generate_customers_command)
generate_app.command("signups")(training_commands.generate_signups_command)
app.add_typer(generate_app, name="generate")
app.command("train")(training_commands.train_command)
app.command("report")(training_commands.report_command)


def main() -> None:
    """Entry point of the `segstream` program."""
    app()


if __name__ == "__main__":
    main()
