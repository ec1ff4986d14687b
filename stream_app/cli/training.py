"""The training commands of `segstream`: generate sample data, train, report.

`training` and its libraries (pandas, scikit-learn, matplotlib) are imported inside the
commands, so the rest of the program runs where the `train` extra is not installed.
Registered on the program by stream_app.cli.main, which turns SegstreamError into one line.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from schemas import DataError, ModelManifest
from stream_app.cli.common import console, load_settings, open_output, say

if TYPE_CHECKING:
    from training.fit import TrainedModel

__all__ = [
    "generate_customers_command",
    "generate_signups_command",
    "report_command",
    "summary_table",
    "train_command",
]

_MAX_K = 50
#: k outside this range trains, with a warning: one segment names nothing, and beyond a dozen
#: the catalogue's profiles run out and segment ids stop being stable.
_SENSIBLE_K = range(2, 13)
_VERSION = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def generate_customers_command(
    n: Annotated[int, typer.Option(min=1, help="number of customers")] = 400,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    out: Annotated[Path | None, typer.Option(help="CSV file (default: stdout)")] = None,
) -> None:
    """Write a customer table in which the seed's four profiles exist."""
    from training.generate import generate_customers

    handle = open_output(out, "--out")
    try:
        generate_customers(n, seed).to_csv(handle, index=False)
    finally:
        if handle is not sys.stdout.buffer:
            handle.close()
    if out is not None:
        console.print(f"wrote {n} customers to {out}")


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

    handle = open_output(out, "--out")
    try:
        for value in generate_signups(n, seed, invalid_share):
            # A raw newline inside a broken payload would split it into two records.
            handle.write(value.replace(b"\n", b" ") + b"\n")
    finally:
        if handle is not sys.stdout.buffer:
            handle.close()
    if out is not None:
        console.print(f"wrote {n} signups ({round(n * invalid_share)} invalid) to {out}")


def _parse_k(text: str) -> int | None:
    if text.strip().lower() == "auto":
        return None
    try:
        k = int(text)
    except ValueError:
        raise DataError(f"--k must be auto or a whole number, not {text!r}") from None
    if not 1 <= k <= _MAX_K:
        raise DataError(f"--k must be between 1 and {_MAX_K}, not {k}")
    if k not in _SENSIBLE_K:
        say(
            f"warning: --k {k} is outside {_SENSIBLE_K.start}..{_SENSIBLE_K.stop - 1}: "
            + (
                "one segment puts every customer together and its profile name means nothing"
                if k < _SENSIBLE_K.start
                else "expect generated names and segment ids that change between retrains"
            )
        )
    return k


def _check_outputs(out: Path, version: str | None) -> None:
    """Fail before the (slow) fit when the model could not be saved where asked."""
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file; give the folder that holds model versions")
    if version is not None and (not _VERSION.match(version) or version in (".", "..")):
        raise DataError(
            f"--version {version!r} must be 1-64 of A-Z a-z 0-9 . _ - (it names a folder "
            "under --out)"
        )


class _Steps:
    """A progress bar that moves one step per stage of training."""

    def __init__(self, total: int) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not console.is_terminal,
        )
        self.task = self.progress.add_task("starting", total=total)
        self.started = False

    def __call__(self, description: str) -> None:
        if self.started:
            self.progress.advance(self.task)
        self.started = True
        self.progress.update(self.task, description=description)

    def __enter__(self) -> _Steps:
        self.progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not any(exc_info):
            self.progress.update(self.task, completed=self.progress.tasks[0].total)
        self.progress.stop()


def train_command(
    data: Annotated[Path, typer.Option(help="customer table, CSV or Parquet")],
    out: Annotated[Path, typer.Option(help="models root; the model goes to OUT/<version>")] = Path(
        "models"
    ),
    k: Annotated[
        str, typer.Option(help="number of segments, or auto to choose from k = 2..10")
    ] = "auto",
    features: Annotated[
        str, typer.Option(help="comma-separated: age, annual_income, gender")
    ] = "age,annual_income",
    columns: Annotated[
        str | None, typer.Option(help="column mapping, e.g. gender=Sex,age=Age,annual_income=Inc")
    ] = None,
    income_unit: Annotated[
        str | None, typer.Option(help="dollars or thousands (default: guessed)")
    ] = None,
    profiles: Annotated[Path | None, typer.Option(help="profile catalogue YAML/JSON")] = None,
    previous: Annotated[
        Path | None,
        typer.Option(
            help="previous model (directory or models root): matching clusters keep its ids"
        ),
    ] = None,
    resamples: Annotated[
        int, typer.Option(min=0, help="bootstrap retrains for the stability figure (0: skip)")
    ] = 10,
    seed: Annotated[int, typer.Option(help="random seed of sampling and K-Means")] = 0,
    name: Annotated[str, typer.Option(help="model name")] = "customer-segments",
    version: Annotated[str | None, typer.Option(help="model version (default: date-hash)")] = None,
    report: Annotated[bool, typer.Option(help="write report.html and PNGs")] = True,
    publish: Annotated[
        bool, typer.Option(help="publish the model live to the model topic (see segstream publish)")
    ] = False,
    unless_live: Annotated[
        bool,
        typer.Option(help="with --publish: do nothing when the model topic has a live model"),
    ] = False,
) -> None:
    """Fit K-Means on a customer table and save a versioned, named model with its report."""
    if unless_live and not publish:
        raise DataError("--unless-live only goes with --publish")
    if unless_live and _already_live(name):
        return
    from schemas.model_files import load_manifest
    from training.data import load_customers, parse_column_overrides
    from training.fit import fit_model, parse_features
    from training.naming import load_catalogue
    from training.store import save_model

    if income_unit not in (None, "dollars", "thousands"):
        raise DataError(f"--income-unit must be dollars or thousands, not {income_unit!r}")
    _check_outputs(out, version)
    if publish:
        _check_model_topic()  # a broker that is not there fails now, not after the fit
    forced_k = _parse_k(k)
    feature_list = parse_features(features)
    catalogue = load_catalogue(profiles)
    previous_manifest = load_manifest(previous) if previous is not None else None
    # One step per call below and in fit_model: read, k, fit, (stability), describe, save, (report).
    with _Steps(total=5 + (resamples > 0) + report) as step:
        step(f"reading {data.name}")
        table = load_customers(
            data,
            parse_column_overrides(columns),
            income_unit,  # type: ignore[arg-type]  # checked above
            require_gender="gender_female" in feature_list,
        )
        mapping = ", ".join(f"{canonical}={column}" for canonical, column in table.mapping.items())
        say(f"columns: {mapping}; {'; '.join(table.notes)}")
        model = fit_model(
            table,
            forced_k,
            feature_list,
            catalogue,
            seed,
            name=name,
            version=version,
            previous=previous_manifest,
            resamples=resamples,
            on_step=step,
        )
        model = _signed(model)
        step("saving the model")
        directory = save_model(model, out)
        report_path = None
        if report:
            from training.report import write_report

            step("drawing the report")
            report_path = write_report(directory)
    _print_summary(model.manifest)
    _warn_duplicate_names(model.manifest)
    if report_path is not None:
        say(f"report: {report_path}")
    if publish:
        _publish(model.manifest)
    typer.echo(directory)


def _signed(model: TrainedModel) -> TrainedModel:
    """The model with its manifest signed when SEGSTREAM_MODEL_SIGNING_KEY is set, so that
    `score` and workers holding the key accept it as it is."""
    from stream_app.model_registry import sign

    key = load_settings().model_signing_key
    if key is None:
        return model
    say("signing the manifest with SEGSTREAM_MODEL_SIGNING_KEY")
    return dataclasses.replace(model, manifest=sign(model.manifest, key))


def _warn_duplicate_names(manifest: ModelManifest) -> None:
    names = Counter(segment.name for segment in manifest.segments)
    for name, count in sorted(names.items()):
        if count > 1:
            say(
                f"warning: {count} segments are named {name!r}: marketing cannot tell them "
                "apart by name (fewer segments, or more profiles in --profiles, would)"
            )


def _check_model_topic() -> None:
    """Reach the model topic (creating it if missing) as publishing will."""
    import asyncio

    from stream_app.model_registry import ensure_model_topic

    asyncio.run(ensure_model_topic(load_settings()))


def _already_live(name: str) -> bool:
    """True, with a line saying so, when the model topic already has a live model of name."""
    import asyncio

    from stream_app.model_registry import read_registry

    settings = load_settings()
    live = asyncio.run(read_registry(settings, name)).live
    if live is not None:
        say(f"{name} {live.version} is live on {settings.model_topic}; nothing trained")
    return live is not None


def _publish(manifest: ModelManifest) -> None:
    """Publish manifest live exactly as `segstream publish MODEL_DIR` does."""
    import asyncio

    from stream_app.model_registry import publish_manifest

    settings = load_settings()
    asyncio.run(publish_manifest(settings, manifest))
    signed = "signed" if settings.model_signing_key else "unsigned"
    say(f"published {manifest.name} {manifest.version} live on {settings.model_topic} ({signed})")


def report_command(
    model: Annotated[Path, typer.Argument(help="model directory, manifest.json or models root")],
) -> None:
    """Write report.html, clusters.png, elbow.png and silhouette.png for a trained model."""
    from training.report import write_report

    typer.echo(write_report(model))


def summary_table(manifest: ModelManifest) -> Table:
    """The segments of a model as a terminal table: ids whole, names and actions wrapped.

    Downstream rules match on segment ids, so an id cut to `traditional-s...` at 80 columns
    is useless; the other columns give way instead.
    """
    from training.naming import centroid_text

    table = Table(title=f"model {manifest.name} {manifest.version}")
    widest_id = max((len(segment.id) for segment in manifest.segments), default=7)
    table.add_column("segment", no_wrap=True, min_width=max(widest_id, 7))
    table.add_column("name", overflow="fold", ratio=2)
    table.add_column("customers", no_wrap=True, justify="right")
    table.add_column("centroid", overflow="fold", ratio=2)
    table.add_column("action", overflow="fold", ratio=3)
    for segment in manifest.segments:
        table.add_row(
            segment.id, segment.name, f"{segment.size:,}", centroid_text(segment), segment.action
        )
    return table


def _print_summary(manifest: ModelManifest) -> None:
    console.print(summary_table(manifest))
    selection = manifest.k_selection
    if selection is not None:
        silhouette = manifest.metrics.get("silhouette")
        rated = f", silhouette {silhouette:.3f}" if silhouette is not None else ""
        elbow = f", elbow at k={selection.elbow_k}" if selection.elbow_k else ""
        say(f"k={selection.chosen_k} ({selection.mode}{rated}{elbow})")
    if manifest.stability is not None:
        stability = manifest.stability
        say(
            f"stability: {stability.mean_agreement:.1%} of customers keep their segment id over "
            f"{stability.resamples} bootstrap retrains (worst {stability.min_agreement:.1%}, "
            f"{stability.sample_rows:,} customers)"
        )
    bad = manifest.bad_rows
    if bad.excluded:
        say(f"excluded {bad.total_rows - bad.used_rows:,} of {bad.total_rows:,} rows:")
        for reason, count in bad.excluded.items():
            examples = bad.examples.get(reason, [])
            rows = f"row{'s' if len(examples) > 1 else ''} {', '.join(map(str, examples))}"
            say(f"  {reason}: {count:,} (e.g. {rows})")
    else:
        say(f"all {bad.total_rows:,} rows used")
