"""Loading customer tables: column spellings and units, bad-row classes, unreadable files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from schemas import DataError
from training.data import BAD_ROW_REASONS, load_customers, parse_column_overrides


def _write(tmp_path: Path, text: str, name: str = "customers.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "mapping", "unit"),
    [
        # The Kaggle "Mall Customers" table: French "Genre", income in k$, a column to ignore.
        (
            "CustomerID,Genre,Age,Annual Income (k$),Spending Score (1-100)\n1,Male,19,15,39\n",
            {"customer_id": "CustomerID", "gender": "Genre", "age": "Age"},
            "thousands",
        ),
        (
            "ID,Sex,Age,AnnualIncome\n7,F,19,15000\n",
            {"customer_id": "ID", "gender": "Sex", "age": "Age"},
            "dollars",
        ),
        (
            "customer_id;gender;age;income\nc1;female;19;15000\n",
            {"customer_id": "customer_id", "gender": "gender", "age": "age"},
            "dollars",
        ),
        ("Age\tIncome_k\tRegion\n19\t15\tnorth\n", {"age": "Age"}, "thousands"),
        ("AGE|Yearly Income|Gender\n19|15000|m\n", {"age": "AGE", "gender": "Gender"}, "dollars"),
        ("Customer Age,Salary (thousands)\n19,15\n", {"age": "Customer Age"}, "thousands"),
        ("Age, Income (k$), Sex\n19, 15, M\n", {"age": "Age", "gender": " Sex"}, "thousands"),
    ],
)
def test_common_spellings_and_units_are_recognised(
    tmp_path: Path, text: str, mapping: dict[str, str], unit: str
) -> None:
    table = load_customers(_write(tmp_path, text))
    assert {k: v for k, v in table.mapping.items() if k != "annual_income"} == mapping
    assert table.income_unit == unit
    # Every example is a 19-year-old earning $15,000, whatever the spelling and unit.
    assert table.frame[["age", "annual_income"]].to_numpy().tolist() == [[19.0, 15_000.0]]


def test_incomes_too_small_for_dollars_are_taken_as_thousands(tmp_path: Path) -> None:
    table = load_customers(_write(tmp_path, "age,income\n30,40\n50,120\n"))
    assert table.income_unit == "thousands"
    assert table.frame["annual_income"].tolist() == [40_000.0, 120_000.0]
    assert "median value 80" in table.notes[0]


def test_options_override_the_guesses(tmp_path: Path) -> None:
    path = _write(tmp_path, "years,earnings,Income (k$),g\n30,40,99,woman\n")
    table = load_customers(
        path,
        parse_column_overrides("age=years, annual_income=earnings,gender=g"),
        income_unit="dollars",
    )
    assert table.mapping == {"age": "years", "annual_income": "earnings", "gender": "g"}
    assert table.frame["annual_income"].tolist() == [40.0]
    assert table.frame["gender"].astype(str).tolist() == ["female"]


def test_parquet_tables_load_with_their_own_types(tmp_path: Path) -> None:
    path = tmp_path / "customers.parquet"
    pd.DataFrame(
        {
            "Gender": pd.Categorical(["Male", "Female", "Female"]),
            "Age": [19, 40, np.nan],
            "Annual Income (k$)": [15.0, 100.5, 20.0],
            "Spending Score (1-100)": [39, 81, 6],
        }
    ).to_parquet(path)
    table = load_customers(path)
    assert table.frame["annual_income"].tolist() == [15_000.0, 100_500.0]
    assert table.frame["gender"].astype(str).tolist() == ["male", "female"]
    assert table.bad_rows.excluded == {"missing_age": 1}


def test_a_missing_column_names_the_found_columns_and_the_option(tmp_path: Path) -> None:
    path = _write(tmp_path, "Customer,Years,Spend\nc1,30,12\n")
    with pytest.raises(DataError) as caught:
        load_customers(path)
    message = str(caught.value)
    assert "no column for age and annual_income" in message
    assert "found: Customer, Years, Spend" in message
    assert "--columns age=COLUMN,annual_income=COLUMN" in message
    assert "\n" not in message


def test_an_override_naming_an_absent_column_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "age,income\n30,40000\n")
    with pytest.raises(DataError, match=r"'years' given for age is not in the table; found: age"):
        load_customers(path, {"age": "years"})


@pytest.mark.parametrize("spec", ["age", "height=Size", "age="])
def test_malformed_column_options_are_refused(spec: str) -> None:
    with pytest.raises(DataError, match="must be NAME=COLUMN"):
        parse_column_overrides(spec)


# Rows 1 and 9 are fine; each other row has exactly one problem (row 4 has two and counts for
# the first, its age).
_BAD_ROWS = """CustomerID,Gender,Age,Annual Income (k$)
1,Male,19,15
2,Female,,15
3,Female,thirty,16
4,walrus,-3,16
5,Female,131,-17
6,Female,22,-1
7,Female,22,100001
8,Female,22,
9, female , 23 ,18
10,Female,45,abc
11,,30,30
12,Female,inf,30
13,robot,30,30
"""


def test_every_bad_row_class_is_counted_with_example_rows(tmp_path: Path) -> None:
    table = load_customers(_write(tmp_path, _BAD_ROWS), require_gender=True)
    assert table.bad_rows.excluded == {
        "missing_age": 1,
        "non_numeric_age": 2,
        "negative_age": 1,
        "implausible_age": 1,
        "missing_income": 1,
        "non_numeric_income": 1,
        "negative_income": 1,
        "implausible_income": 1,
        "missing_gender": 1,
        "unknown_gender": 1,
    }
    assert table.bad_rows.examples["non_numeric_age"] == [3, 12]
    assert table.bad_rows.examples["unknown_gender"] == [13]
    assert (table.bad_rows.total_rows, table.bad_rows.used_rows) == (13, 2)
    assert set(table.bad_rows.excluded) == set(BAD_ROW_REASONS)
    # Surrounding blanks are not a problem; the values are not altered otherwise.
    assert table.frame[["age", "annual_income"]].to_numpy().tolist() == [
        [19.0, 15_000.0],
        [23.0, 18_000.0],
    ]


def test_gender_problems_only_count_when_gender_is_a_feature(tmp_path: Path) -> None:
    table = load_customers(_write(tmp_path, _BAD_ROWS))
    assert "missing_gender" not in table.bad_rows.excluded
    assert "unknown_gender" not in table.bad_rows.excluded
    assert table.frame["gender"].astype(str).tolist() == ["male", "female", "unknown", "unknown"]


def test_only_the_first_rows_of_a_reason_are_kept_as_examples(tmp_path: Path) -> None:
    rows = "".join(f"{'x' if i % 2 else 30},40000\n" for i in range(20))
    table = load_customers(_write(tmp_path, "age,income\n" + rows))
    assert table.bad_rows.excluded == {"non_numeric_age": 10}
    assert table.bad_rows.examples["non_numeric_age"] == [2, 4, 6, 8, 10]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"age,income\n", "header but no rows"),
        (b"\n\n30,40000\n", "first line is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "looks like a binary file"),
        ("age,income\n30,40000\n\xe9t\xe9\n".encode("latin-1"), "not UTF-8 text"),
        (b"age:income\n30:40000\n", "one column only: is the delimiter"),
        (b"age,income\n30;40000\n31;50000\n", "cannot be parsed as CSV"),
        (b"age,income\nx,y\n,-4\n", "no usable rows (1 missing_age, 1 non_numeric_age)"),
        (b"PAR1 but not really parquet", "not a readable Parquet file"),
    ],
)
def test_unusable_files_fail_with_one_clear_line(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "customers.csv"
    path.write_bytes(content)
    with pytest.raises(DataError) as caught:
        load_customers(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_customers(tmp_path / "nope.csv")


def test_the_fingerprint_follows_the_usable_values(tmp_path: Path) -> None:
    first = load_customers(_write(tmp_path, "age,income\n30,40000\n", "a.csv"))
    same = load_customers(_write(tmp_path, "Age,Income,Note\n30,40000,x\nbad,1,y\n", "b.csv"))
    other = load_customers(_write(tmp_path, "age,income\n31,40000\n", "c.csv"))
    assert first.fingerprint == same.fingerprint != other.fingerprint


def test_parquet_text_columns_are_checked_like_csv_cells(tmp_path: Path) -> None:
    path = tmp_path / "customers.parquet"
    pd.DataFrame(
        {"age": ["30", " 41 ", "abc", "NULL"], "income": ["1e5", "5e4", "1", "2"]}
    ).to_parquet(path)
    table = load_customers(path)
    assert table.frame[["age", "annual_income"]].to_numpy().tolist() == [
        [30.0, 100_000.0],
        [41.0, 50_000.0],
    ]
    assert table.bad_rows.excluded == {"non_numeric_age": 1, "missing_age": 1}


def test_a_column_that_cannot_hold_numbers_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "customers.parquet"
    pd.DataFrame({"age": [True, False], "income": [1.0, 2.0]}).to_parquet(path)
    with pytest.raises(DataError, match="column 'age' holds bool, not numbers"):
        load_customers(path)
