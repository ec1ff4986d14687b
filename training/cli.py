"""Command-line commands of the training side: generate sample data and train models.

Registered on the `segstream` program by stream_app.cli, which also turns SegstreamError
into one readable line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from schemas import DataError, ModelManifest

__all__ = ["generate_customers_command", "generate_signups_command", "train_command"]

console = Console(stderr=True)


def _open_out(out: Path | None) -> Any:
    if out is None or str(out) == "-":
        return sys.stdout.buffer
    out.parent.mkdir(parents=True, exist_ok=True)
    return out.open("wb")


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


def _print_model(manifest: ModelManifest) -> None:
    table = Table(title=f"model {manifest.name} {manifest.version}")
    for column in ("segment", "name", "customers", "centroid", "action"):
        table.add_column(column)
    for segment in manifest.segments:
        centroid = ", ".join(f"{k}={v:,.1f}" for k, v in segment.centroid.items())
        table.add_row(segment.id, segment.name, str(segment.size), centroid, segment.action)
    console.print(table)
