"""The report: its files exist, the HTML is self-contained and holds the profile table."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from schemas.model_files import load_manifest
from training.data import load_customers
from training.fit import fit_model
from training.naming import load_catalogue
from training.report import REPORT_FILES, write_report
from training.store import save_model

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def model_dir(tmp_path: Path, customers_csv: Callable[[int, int], Path]) -> Path:
    """A model trained on 300 generated customers plus three bad rows, saved under tmp_path."""
    path = customers_csv(300, 6)
    with path.open("a") as handle:
        handle.write("X1,Female,,50000\nX2,Male,41,-5\nX3,Male,abc,20000\n")
    table = load_customers(path)
    model = fit_model(table, 4, ["age", "annual_income"], load_catalogue(), resamples=3)
    return save_model(model, tmp_path / "models")


def test_the_report_files_are_written_next_to_the_model(model_dir: Path) -> None:
    html_path = write_report(model_dir)
    assert html_path == model_dir / "report.html"
    for name in REPORT_FILES[1:]:
        assert (model_dir / name).read_bytes().startswith(PNG_MAGIC), name


def test_the_html_embeds_its_images_and_needs_nothing_else(model_dir: Path) -> None:
    page = write_report(model_dir).read_text()
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 3
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert "http://" not in page
    assert "https://" not in page
    assert "<link" not in page
    assert "<script" not in page


def test_the_html_holds_the_profile_table_and_the_figures(model_dir: Path) -> None:
    manifest = load_manifest(model_dir)
    page = write_report(model_dir).read_text()
    for heading in ("Age range", "Income range", "Centroid", "Gender mix", "Strategic action"):
        assert f"<th>{heading}</th>" in page
    for segment in manifest.segments:
        assert f"<b>{segment.name}</b>" in page
        assert segment.action in page
        assert f"{segment.size:,}" in page
    assert "VIP / Luxury" in page
    stability = manifest.stability
    assert stability is not None
    assert f"{stability.mean_agreement:.1%}</p>" in page
    # The bad-row summary: three rows excluded, one for each reason, with their row numbers.
    assert "300 of 303 rows were used; 3 were excluded" in page
    assert "<code>missing_age</code>" in page
    assert '<td class="num">1</td><td>301</td>' in page
    assert "<code>negative_income</code>" in page


def test_the_report_redraws_from_a_models_root(model_dir: Path) -> None:
    for name in REPORT_FILES:
        (model_dir / name).unlink(missing_ok=True)
    assert write_report(model_dir.parent) == model_dir / "report.html"
    assert all((model_dir / name).is_file() for name in REPORT_FILES)
