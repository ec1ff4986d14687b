"""`segstream train` and `segstream report` as users run them (in process)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stream_app.cli import app


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_train_prints_mapping_stability_and_ends_with_the_model_directory(
    tmp_path: Path, customers_csv: Callable[[int, int], Path]
) -> None:
    data = customers_csv(400, 1)
    code, out, err = _run("train", "--data", str(data), "--k", "4", "--out", str(tmp_path / "m"))
    assert code == 0, err
    directory = Path(out.strip().splitlines()[-1])
    assert directory.parent == tmp_path / "m"
    assert (tmp_path / "m" / "LATEST").read_text().strip() == directory.name
    for name in ("model.joblib", "manifest.json", "report.html", "clusters.png"):
        assert (directory / name).is_file(), name
    assert "columns: customer_id=customer_id, gender=gender, age=age" in err
    assert "income in dollars" in err
    assert "k=4 (fixed" in err
    assert "stability: " in err
    assert "all 400 rows used" in err


def test_train_twice_gives_the_same_manifest_apart_from_the_time(
    tmp_path: Path, customers_csv: Callable[[int, int], Path]
) -> None:
    data = customers_csv(300, 2)
    manifests = []
    for run in ("a", "b"):
        code, out, err = _run(
            "train",
            "--data",
            str(data),
            "--out",
            str(tmp_path / run),
            "--resamples",
            "2",
            "--no-report",
        )
        assert code == 0, err
        manifest = json.loads((Path(out.strip().splitlines()[-1]) / "manifest.json").read_text())
        manifest.pop("created_at")
        manifests.append(manifest)
    assert manifests[0] == manifests[1]


def test_train_reports_bad_rows_at_the_end(tmp_path: Path) -> None:
    data = tmp_path / "mall.csv"
    rows = [f"{i},Female,{20 + i % 50},{15 + i % 120},50" for i in range(1, 201)]
    rows[9] = "10,Female,,40,50"
    rows[19] = "20,Male,-4,40,50"
    header = "CustomerID,Genre,Age,Annual Income (k$),Spending Score (1-100)"
    data.write_text("\n".join([header, *rows]) + "\n")
    code, out, err = _run("train", "--data", str(data), "--k", "3", "--out", str(tmp_path / "m"))
    assert code == 0, err
    assert "annual_income=Annual Income (k$); income in thousands" in err
    assert "excluded 2 of 200 rows:" in err
    assert "missing_age: 1 (e.g. row 10)" in err
    assert "negative_age: 1 (e.g. row 20)" in err
    manifest = json.loads((Path(out.strip().splitlines()[-1]) / "manifest.json").read_text())
    assert manifest["bad_rows"]["excluded"] == {"missing_age": 1, "negative_age": 1}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--k", "many"], "--k must be auto or a whole number, not 'many'"),
        (["--k", "0"], "--k must be between 1 and 50, not 0"),
        (["--income-unit", "euros"], "--income-unit must be dollars or thousands, not 'euros'"),
        (["--unless-live"], "--unless-live only goes with --publish"),
        (
            ["--features", "age,shoe_size"],
            "unknown feature 'shoe_size'; choose from age, annual_income, gender_female",
        ),
        (
            ["--previous", "/nonexistent/model"],
            "/nonexistent/model: no model here (no manifest.json)",
        ),
        (
            ["--columns", "age=Years"],
            "{data}: column 'Years' given for age is not in the table; "
            "found: customer_id, gender, age, annual_income",
        ),
    ],
)
def test_bad_options_fail_with_one_line(
    tmp_path: Path, customers_csv: Callable[[int, int], Path], extra: list[str], message: str
) -> None:
    data = customers_csv(50, 0)
    code, _, err = _run("train", "--data", str(data), "--out", str(tmp_path), *extra)
    assert (code, err) == (1, f"segstream: error: {message.format(data=data)}\n")


def test_an_empty_table_fails_with_one_line(tmp_path: Path) -> None:
    data = tmp_path / "empty.csv"
    data.write_bytes(b"")
    code, _, err = _run("train", "--data", str(data), "--out", str(tmp_path))
    assert (code, err) == (1, f"segstream: error: {data}: the file is empty\n")


def test_report_redraws_a_trained_model(
    tmp_path: Path, customers_csv: Callable[[int, int], Path]
) -> None:
    data = customers_csv(200, 3)
    code, out, err = _run(
        "train", "--data", str(data), "--out", str(tmp_path), "--no-report", "--resamples", "0"
    )
    assert code == 0, err
    directory = Path(out.strip().splitlines()[-1])
    assert not (directory / "report.html").exists()
    code, out, err = _run("report", str(tmp_path))
    assert code == 0, err
    assert out.strip() == str(directory / "report.html")
    assert "Not measured" in (directory / "report.html").read_text()


def test_train_can_follow_a_previous_model(
    tmp_path: Path, customers_csv: Callable[[int, int], Path]
) -> None:
    data = customers_csv(300, 4)
    code, out, err = _run("train", "--data", str(data), "--out", str(tmp_path), "--no-report")
    assert code == 0, err
    first = Path(out.strip().splitlines()[-1])
    code, out, err = _run(
        "train",
        "--data",
        str(data),
        "--out",
        str(tmp_path / "next"),
        "--seed",
        "3",
        "--previous",
        str(first),
        "--no-report",
    )
    assert code == 0, err
    manifest = json.loads((Path(out.strip().splitlines()[-1]) / "manifest.json").read_text())
    assert manifest["previous_version"] == first.name
    previous = json.loads((first / "manifest.json").read_text())
    assert sorted(s["id"] for s in manifest["segments"]) == sorted(
        s["id"] for s in previous["segments"]
    )
