"""Load a customer table (CSV or Parquet), map its columns, and set bad rows aside with reasons."""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from schemas import BadRowSummary, DataError
from schemas.events import AGE_MAX, INCOME_MAX, Gender, parse_gender

__all__ = [
    "BAD_ROW_REASONS",
    "CustomerTable",
    "IncomeUnit",
    "load_customers",
    "parse_column_overrides",
]

IncomeUnit = Literal["dollars", "thousands"]

# Column spellings seen in public customer data sets, compared after lower-casing and dropping
# everything that is not a letter or digit ("Annual Income (k$)" -> "annualincomek"). A name
# matches an alias exactly or followed by one of the canonical column's unit suffixes; the
# first alias found in the table wins, so the most specific spellings come first.
_ALIASES: dict[str, tuple[str, ...]] = {
    "customer_id": ("customerid", "custid", "clientid", "customernumber", "customer", "id"),
    "gender": ("gender", "sex", "genre"),
    "age": ("age", "customerage"),
    "annual_income": (
        "annualincome",
        "yearlyincome",
        "householdincome",
        "income",
        "annualsalary",
        "salary",
    ),
}
_THOUSANDS_SUFFIXES = ("k", "kusd", "keur", "kgbp", "thousand", "thousands", "inthousands")
_UNIT_SUFFIXES: dict[str, tuple[str, ...]] = {
    "age": ("years", "yrs", "inyears"),
    "annual_income": ("usd", "eur", "gbp", "dollars", *_THOUSANDS_SUFFIXES),
}
# Without a hint in the header, incomes whose median is below this are taken as thousands:
# nobody's typical annual income is under $1,000, while k$ columns hold values like 15-140.
_THOUSANDS_MEDIAN_BELOW = 1_000.0

#: Why a row is excluded from training, in the order the checks run (a row counts once, for
#: the first reason that applies).
BAD_ROW_REASONS: dict[str, str] = {
    "missing_age": "age is empty",
    "non_numeric_age": "age is not a finite number",
    "negative_age": "age is below 0",
    "implausible_age": f"age is above {AGE_MAX:.0f}",
    "missing_income": "annual income is empty",
    "non_numeric_income": "annual income is not a finite number",
    "negative_income": "annual income is below 0",
    "implausible_income": f"annual income is above ${INCOME_MAX:,.0f}",
    "missing_gender": "gender is empty (gender is a feature)",
    "unknown_gender": "gender is not a recognised spelling (gender is a feature)",
}
_REASON_CODES = {reason: code for code, reason in enumerate(BAD_ROW_REASONS, start=1)}
_EXAMPLES_PER_REASON = 5
# Cells that mean "no value" in exported tables; compared case-insensitively after trimming.
_NULL_WORDS = ("", "na", "n/a", "nan", "null", "none", "#n/a")
_NULL_VALUES = sorted({v for w in _NULL_WORDS for v in (w, w.upper(), w.capitalize())})
_NUMBER = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"
_DELIMITERS = ",;\t|"
_GENDER_CODES = [Gender.FEMALE.value, Gender.MALE.value, Gender.OTHER.value, "unknown"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass
class CustomerTable:
    """Usable customer rows (age, annual_income in dollars, gender), and what was set aside."""

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


def _check_text(path: Path, head: bytes) -> None:
    if b"\x00" in head:
        raise DataError(f"{path}: looks like a binary file, expected CSV or Parquet")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The 4 KiB sample may end inside a multi-byte character; only earlier errors count.
        if exc.start < len(head) - 3:
            raise DataError(
                f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8 CSV or Parquet"
            ) from None


def _header(path: Path, head: bytes) -> tuple[list[str], str]:
    text = head.decode("utf-8", errors="ignore").lstrip("\ufeff")
    first_line = text.splitlines()[0] if text.strip() else ""
    if not first_line.strip():
        raise DataError(f"{path}: the first line is empty; expected a header row")
    try:
        delimiter = csv.Sniffer().sniff(first_line, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        delimiter = ","
    # Names stay as written (" Income" after "Age, "): the reader selects columns by them.
    return next(csv.reader(io.StringIO(first_line), delimiter=delimiter)), delimiter


def _read_columns(path: Path, wanted: dict[str, str], delimiter: str | None) -> pa.Table:
    """Read only the mapped columns; in CSV every cell as text, checked and converted later."""
    if delimiter is None:
        try:
            return pq.read_table(path, columns=list(wanted.values()))
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{path}: not a readable Parquet file ({_first_line(exc)})") from None
    types: dict[str, pa.DataType] = {
        wanted[c]: pa.string() for c in ("age", "annual_income") if c in wanted
    }
    if "gender" in wanted:
        types[wanted["gender"]] = pa.string()
    try:
        return pa_csv.read_csv(
            path,
            parse_options=pa_csv.ParseOptions(delimiter=delimiter),
            convert_options=pa_csv.ConvertOptions(
                include_columns=list(dict.fromkeys(wanted.values())),
                column_types=types,
                null_values=_NULL_VALUES,
                strings_can_be_null=True,
            ),
        )
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: cannot be parsed as CSV ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _map_columns(
    columns: list[str], overrides: dict[str, str], path: Path
) -> dict[str, str | None]:
    mapping: dict[str, str | None] = {}
    for canonical, aliases in _ALIASES.items():
        if canonical in overrides:
            given = overrides[canonical]
            chosen = next((c for c in columns if c.strip() == given), None)
            if chosen is None:
                raise DataError(
                    f"{path}: column {given!r} given for {canonical} is not in "
                    f"the table; found: {', '.join(c.strip() for c in columns)}"
                )
            mapping[canonical] = chosen
            continue
        spellings = [
            alias + suffix
            for alias in aliases
            for suffix in ("", *_UNIT_SUFFIXES.get(canonical, ()))
        ]
        mapping[canonical] = next(
            (c for spelling in spellings for c in columns if _normalise(c) == spelling), None
        )
    missing = [c for c in ("age", "annual_income") if mapping[c] is None]
    if missing:
        hint = ""
        if len(columns) == 1:
            hint = " (one column only: is the delimiter something other than , ; tab or |?)"
        raise DataError(
            f"{path}: no column for {' and '.join(missing)}; "
            f"found: {', '.join(c.strip() for c in columns)}{hint}; "
            f"name them with --columns {','.join(f'{m}=COLUMN' for m in missing)}"
        )
    return mapping


def _numeric(
    column: pa.ChunkedArray, name: str, path: Path
) -> tuple[FloatArray, BoolArray, BoolArray]:
    """Values as float64 plus masks of missing and non-numeric cells, all vectorised."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = column.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
        # A NaN in a numeric column is how pandas and Parquet writers store "no value".
        missing = np.isnan(values)
        return values, missing, ~missing & ~np.isfinite(values)
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise DataError(f"{path}: column {name!r} holds {kind}, not numbers")
    text = pc.utf8_trim_whitespace(column)
    missing_cells = pc.or_kleene(
        pc.is_null(text), pc.is_in(pc.utf8_lower(text), value_set=pa.array(_NULL_WORDS))
    )
    missing = missing_cells.fill_null(True).to_numpy(zero_copy_only=False)
    looks_numeric = pc.match_substring_regex(text, _NUMBER).fill_null(False)
    numeric_text = pc.if_else(looks_numeric, text, pa.scalar(None, type=text.type))
    values = numeric_text.cast(pa.float64()).to_numpy(zero_copy_only=False)
    # Text like "1e999" parses to infinity; it is no more a usable number than "abc".
    return values, missing, ~missing & ~np.isfinite(values)


def _gender_codes(column: pa.ChunkedArray) -> tuple[npt.NDArray[np.int8], BoolArray, BoolArray]:
    """Codes into _GENDER_CODES, plus masks of empty and unrecognised cells."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = column.cast(pa.string())
    text = pc.utf8_lower(pc.utf8_trim_whitespace(column))
    # Spellings are few; parse each once and map every row through a lookup table.
    spellings = pc.unique(text).drop_null().to_pylist()
    unknown = _GENDER_CODES.index("unknown")
    codes = np.full(len(spellings) + 1, unknown, dtype=np.int8)
    empty = np.zeros(len(spellings) + 1, dtype=bool)
    unrecognised = np.zeros(len(spellings) + 1, dtype=bool)
    empty[-1] = True  # the slot of null cells
    for index, spelling in enumerate(spellings):
        if spelling in _NULL_WORDS:
            empty[index] = True
            continue
        try:
            codes[index] = _GENDER_CODES.index(parse_gender(spelling).value)
        except ValueError:
            unrecognised[index] = True
    positions = (
        pc.index_in(text, value_set=pa.array(spellings, type=text.type))
        .fill_null(len(spellings))
        .to_numpy(zero_copy_only=False)
    )
    return codes[positions], empty[positions], unrecognised[positions]


def _income_unit(
    income_column: str, income: FloatArray, usable: BoolArray, requested: IncomeUnit | None
) -> tuple[IncomeUnit, str]:
    if requested is not None:
        return requested, "--income-unit"
    if _normalise(income_column).endswith(_THOUSANDS_SUFFIXES):
        return "thousands", f"header {income_column!r}"
    values = income[usable & (income > 0)]
    if values.size and float(np.median(values)) < _THOUSANDS_MEDIAN_BELOW:
        median = float(np.median(values))
        return "thousands", f"median value {median:,.0f} is too small for dollars"
    return "dollars", "default"


def load_customers(
    path: Path,
    overrides: dict[str, str] | None = None,
    income_unit: IncomeUnit | None = None,
    require_gender: bool = False,
) -> CustomerTable:
    """Read a customer table; rows that cannot be used are counted by reason, never coerced."""
    if path.is_dir():
        raise DataError(f"--data {path} is a directory; give a CSV or Parquet file")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    with path.open("rb") as handle:
        head = handle.read(4096)
    if path.suffix.lower() in {".parquet", ".pq"} or head.startswith(b"PAR1"):
        try:
            columns, delimiter = list(pq.read_schema(path).names), None
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{path}: not a readable Parquet file ({_first_line(exc)})") from None
    else:
        _check_text(path, head)
        columns, delimiter = _header(path, head)
    mapping = _map_columns(columns, overrides or {}, path)
    if require_gender and mapping["gender"] is None:
        raise DataError(
            f"{path}: gender is a feature but no gender column was found; found: "
            f"{', '.join(columns)}; name it with --columns gender=COLUMN"
        )
    wanted = {c: source for c, source in mapping.items() if source and c != "customer_id"}
    table = _read_columns(path, wanted, delimiter)
    if table.num_rows == 0:
        raise DataError(f"{path}: the table has a header but no rows")

    age_column, income_column = wanted["age"], wanted["annual_income"]
    age, age_missing, age_bad = _numeric(table.column(age_column), age_column, path)
    income, income_missing, income_bad = _numeric(table.column(income_column), income_column, path)
    checks: list[tuple[str, BoolArray]] = [
        ("missing_age", age_missing),
        ("non_numeric_age", age_bad),
        ("negative_age", age < 0),
        ("implausible_age", age > AGE_MAX),
        ("missing_income", income_missing),
        ("non_numeric_income", income_bad),
    ]
    reasons = np.zeros(table.num_rows, dtype=np.int8)
    for reason, mask in checks:
        reasons[(reasons == 0) & mask] = _REASON_CODES[reason]
    unit, unit_source = _income_unit(income_column, income, reasons == 0, income_unit)
    if unit == "thousands":
        income = income * 1000.0
    later_checks: list[tuple[str, BoolArray]] = [
        ("negative_income", income < 0),
        ("implausible_income", income > INCOME_MAX),
    ]
    if "gender" in wanted:
        gender, gender_empty, gender_unrecognised = _gender_codes(table.column(wanted["gender"]))
        if require_gender:
            later_checks += [
                ("missing_gender", gender_empty),
                ("unknown_gender", gender_unrecognised),
            ]
    else:
        gender = np.full(table.num_rows, len(_GENDER_CODES) - 1, dtype=np.int8)
    for reason, mask in later_checks:
        reasons[(reasons == 0) & mask] = _REASON_CODES[reason]
    del table
    # Arrow's allocator keeps freed text buffers for reuse (hundreds of MiB for a large
    # table); hand them back before fitting needs the memory for numpy arrays instead.
    pa.default_memory_pool().release_unused()

    usable = reasons == 0
    summary = _summary(reasons)
    if not usable.any():
        counts = ", ".join(f"{n} {r}" for r, n in summary.excluded.items())
        raise DataError(f"{path}: no usable rows ({counts})")
    frame = pd.DataFrame(
        {
            "age": age[usable],
            "annual_income": income[usable],
            "gender": pd.Categorical.from_codes(gender[usable], categories=pd.Index(_GENDER_CODES)),
        }
    )
    return CustomerTable(
        frame=frame,
        mapping={k: v for k, v in mapping.items() if v is not None},
        income_unit=unit,
        bad_rows=summary,
        fingerprint=_fingerprint(frame),
        notes=[f"income in {unit} ({unit_source})"],
    )


def _summary(reasons: npt.NDArray[np.int8]) -> BadRowSummary:
    counts = np.bincount(reasons, minlength=len(BAD_ROW_REASONS) + 1)
    excluded: dict[str, int] = {}
    examples: dict[str, list[int]] = {}
    for reason, code in _REASON_CODES.items():
        if counts[code]:
            excluded[reason] = int(counts[code])
            # Row numbers count data rows from 1, the header not included.
            first = np.flatnonzero(reasons == code)[:_EXAMPLES_PER_REASON]
            examples[reason] = [int(i) + 1 for i in first]
    return BadRowSummary(
        total_rows=len(reasons),
        used_rows=int(counts[0]),
        excluded=excluded,
        examples=examples,
    )


def _fingerprint(frame: pd.DataFrame) -> str:
    digest = hashlib.sha256()
    for column in ("age", "annual_income"):
        digest.update(np.ascontiguousarray(frame[column].to_numpy(np.float64)).tobytes())
    digest.update(np.ascontiguousarray(frame["gender"].cat.codes.to_numpy()).tobytes())
    return f"sha256:{digest.hexdigest()}"
