"""Load a customer table (CSV or Parquet), map its columns, and set bad rows aside with reasons."""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from schemas import BadRowSummary, DataError
from schemas.events import AGE_MAX, INCOME_MAX, parse_gender

__all__ = ["CustomerTable", "IncomeUnit", "load_customers", "parse_column_overrides"]

IncomeUnit = Literal["dollars", "thousands"]

# Column spellings seen in public customer data sets, compared after lower-casing and dropping
# everything that is not a letter or digit ("Annual Income (k$)" -> "annualincomek").
_ALIASES: dict[str, tuple[str, ...]] = {
    "customer_id": ("customerid", "customer", "clientid", "id", "custid"),
    "gender": ("gender", "sex", "genre"),
    "age": ("age", "ageyears", "customerage"),
    "annual_income": (
        "annualincome",
        "annualincomek",
        "annualincomeusd",
        "income",
        "incomek",
        "yearlyincome",
        "salary",
    ),
}
_THOUSANDS_HINT = re.compile(r"k\$|\(k\)|\bk\b|thousand", re.IGNORECASE)
_EXAMPLES_PER_REASON = 5


@dataclass
class CustomerTable:
    """Usable customer rows in canonical columns, plus what was set aside and why."""

    frame: pd.DataFrame
    mapping: dict[str, str]
    income_unit: IncomeUnit
    bad_rows: BadRowSummary
    fingerprint: str
    notes: list[str] = field(default_factory=list)


def _normalise(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def parse_column_overrides(spec: str | None) -> dict[str, str]:
    """Parse `gender=Sex,age=Age` into {canonical: source column}."""
    if not spec:
        return {}
    overrides = {}
    for part in spec.split(","):
        canonical, sep, source = part.partition("=")
        canonical = canonical.strip()
        if not sep or canonical not in _ALIASES or not source.strip():
            known = ", ".join(_ALIASES)
            raise DataError(
                f"--columns entry {part!r} must be NAME=COLUMN with NAME one of {known}"
            )
        overrides[canonical] = source.strip()
    return overrides


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    with path.open("rb") as handle:
        head = handle.read(4096)
    if path.suffix.lower() in {".parquet", ".pq"} or head.startswith(b"PAR1"):
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises many unrelated types
            raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    if b"\x00" in head:
        raise DataError(f"{path}: looks like a binary file, expected CSV or Parquet")
    try:
        sample = head.decode("utf-8", errors="ignore")
        delimiter = csv.Sniffer().sniff(sample.splitlines()[0], delimiters=",;\t|").delimiter
    except csv.Error:
        delimiter = ","
    try:
        return pd.read_csv(path, sep=delimiter, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: cannot be parsed as CSV ({first})") from None


def _map_columns(
    columns: list[str], overrides: dict[str, str], path: Path
) -> dict[str, str | None]:
    by_normal = {_normalise(c): c for c in columns}
    mapping: dict[str, str | None] = {}
    for canonical, aliases in _ALIASES.items():
        if canonical in overrides:
            if overrides[canonical] not in columns:
                raise DataError(
                    f"{path}: column {overrides[canonical]!r} given for {canonical} is not in "
                    f"the table; found: {', '.join(columns)}"
                )
            mapping[canonical] = overrides[canonical]
            continue
        mapping[canonical] = next((by_normal[a] for a in aliases if a in by_normal), None)
    missing = [c for c in ("age", "annual_income") if mapping[c] is None]
    if missing:
        raise DataError(
            f"{path}: no column for {' and '.join(missing)}; found: {', '.join(columns)}; "
            "name them with --columns age=COLUMN,annual_income=COLUMN"
        )
    return mapping


def _numeric(raw: pd.Series, label: str, reasons: pd.Series) -> pd.Series:
    text = raw.astype(str).str.strip()
    blank = raw.isna() | (text == "") | text.str.lower().isin({"nan", "na", "null", "none"})
    values = pd.to_numeric(text.where(~blank), errors="coerce")
    reasons.loc[blank & reasons.isna()] = f"missing_{label}"
    reasons.loc[~blank & values.isna() & reasons.isna()] = f"non_numeric_{label}"
    infinite = values.notna() & ~np.isfinite(values.fillna(0.0))
    reasons.loc[infinite & reasons.isna()] = f"non_numeric_{label}"
    return values.astype("float64")


def load_customers(
    path: Path,
    overrides: dict[str, str] | None = None,
    income_unit: IncomeUnit | None = None,
    require_gender: bool = False,
) -> CustomerTable:
    """Read a customer table; rows that cannot be used are counted by reason, never coerced."""
    raw = _read(path)
    if raw.empty:
        raise DataError(f"{path}: the table has a header but no rows")
    columns = [str(c) for c in raw.columns]
    raw.columns = pd.Index(columns)
    if len(columns) == 1 and any(sep in columns[0] for sep in ";|\t"):
        raise DataError(f"{path}: one column {columns[0]!r} found; is the delimiter wrong?")
    mapping = _map_columns(columns, overrides or {}, path)
    income_column = mapping["annual_income"]
    assert income_column is not None
    unit: IncomeUnit = income_unit or (
        "thousands" if _THOUSANDS_HINT.search(income_column) else "dollars"
    )

    reasons = pd.Series(pd.NA, index=raw.index, dtype="object")
    age_column = mapping["age"]
    assert age_column is not None
    age = _numeric(raw[age_column], "age", reasons)
    income = _numeric(raw[income_column], "income", reasons)
    if unit == "thousands":
        income = income * 1000.0
    reasons.loc[((age < 0) | (age > AGE_MAX)) & reasons.isna()] = "age_out_of_range"
    reasons.loc[(income < 0) & reasons.isna()] = "negative_income"
    reasons.loc[(income > INCOME_MAX) & reasons.isna()] = "implausible_income"

    gender_column = mapping["gender"]
    if gender_column is not None:
        gender = raw[gender_column].map(_gender_or_none)
        if require_gender:
            reasons.loc[gender.isna() & reasons.isna()] = "unknown_gender"
        gender = gender.fillna("unknown")
    else:
        if require_gender:
            raise DataError(f"{path}: gender is a feature but no gender column was found")
        gender = pd.Series("unknown", index=raw.index)

    id_column = mapping["customer_id"]
    ids = (
        raw[id_column].astype(str)
        if id_column is not None
        else pd.Series([f"row-{i + 1}" for i in range(len(raw))], index=raw.index)
    )
    frame = pd.DataFrame(
        {"customer_id": ids, "gender": gender, "age": age, "annual_income": income}
    )
    bad = reasons.notna()
    counts = {str(k): int(v) for k, v in reasons[bad].value_counts().sort_index().items()}
    examples = {
        reason: [int(i) + 1 for i in reasons.index[reasons == reason][:_EXAMPLES_PER_REASON]]
        for reason in counts
    }
    usable = frame.loc[~bad].reset_index(drop=True)
    if usable.empty:
        reasons_text = ", ".join(f"{n} {r}" for r, n in counts.items())
        raise DataError(f"{path}: no usable rows ({reasons_text})")
    summary = BadRowSummary(
        total_rows=len(frame), used_rows=len(usable), excluded=counts, examples=examples
    )
    return CustomerTable(
        frame=usable,
        mapping={k: v for k, v in mapping.items() if v is not None},
        income_unit=unit,
        bad_rows=summary,
        fingerprint=_fingerprint(usable),
    )


def _gender_or_none(value: object) -> str | None:
    try:
        return parse_gender(value if isinstance(value, str) else None).value
    except ValueError:
        return None


def _fingerprint(frame: pd.DataFrame) -> str:
    digest = hashlib.sha256()
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return f"sha256:{digest.hexdigest()}"
