"""What `train` tells an operator: warnings on k and names, readable gender shares, whole
segment ids at 80 columns, labels that do not overlap, and sample data that overwrites nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from rich.console import Console
from typer.testing import CliRunner

from stream_app.cli import app
from stream_app.cli.training import _warn_duplicate_names, summary_table
from tests.unit.stream_app.toy import toy_manifest
from training.naming import female_share
from training.report import _colour, _stability_text, place_labels


def _train(data: Path, out: Path, k: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--data",
            str(data),
            "--k",
            k,
            "--resamples",
            "0",
            "--no-report",
            "--out",
            str(out),
        ],
    )
    return result.exit_code, result.stderr


@pytest.mark.parametrize(("k", "warned"), [("1", True), ("2", False), ("12", False), ("13", True)])
def test_k_outside_2_to_12_trains_with_a_warning(
    tmp_path: Path, customers_csv: Callable[[int, int], Path], k: str, warned: bool
) -> None:
    code, err = _train(customers_csv(300, 3), tmp_path / "m", k)
    assert code == 0, err
    assert (f"warning: --k {k} is outside 2..12" in err) is warned


def test_two_segments_with_one_name_are_warned_about(capsys: pytest.CaptureFixture[str]) -> None:
    manifest = toy_manifest([40.0, 1.0], [10.0, 1.0], [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    segments = [s.model_copy(update={"name": "Older, high income"}) for s in manifest.segments]
    _warn_duplicate_names(manifest.model_copy(update={"segments": segments}))
    assert "warning: 3 segments are named 'Older, high income'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("share", "shown"),
    [(-1e-17, "0% female"), (0.0, "0% female"), (0.523, "52% female"), (1 + 1e-12, "100% female")],
)
def test_gender_shares_read_as_percentages_never_negative(share: float, shown: str) -> None:
    assert female_share(share) == shown


def test_segment_ids_are_never_cut_at_80_columns() -> None:
    ids = ["traditional-seniors", "budget-conscious", "young-professionals", "vip-luxury"]
    manifest = toy_manifest([40.0, 1.0], [10.0, 1.0], [[float(i), 0.0] for i in range(4)])
    segments = [
        s.model_copy(
            update={
                "id": segment_id,
                "name": segment_id.replace("-", " ").title() + " of a rather long name",
                "action": "A strategic action long enough to need wrapping " * 3,
            }
        )
        for s, segment_id in zip(manifest.segments, ids, strict=True)
    ]
    console = Console(width=80, record=True, file=open("/dev/null", "w"))  # noqa: SIM115, PTH123
    console.print(summary_table(manifest.model_copy(update={"segments": segments})))
    text = console.export_text()
    console.file.close()
    for segment_id in ids:
        assert segment_id in text, f"{segment_id} was cut:\n{text}"
    assert "…" not in text


def test_labels_of_centroids_at_one_place_do_not_overlap() -> None:
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.set(xlim=(18, 70), ylim=(0, 150))  # the centroid lies inside the axes, as in a report
    labels = [
        axes.annotate(name, (40, 60), xytext=(8, 6), textcoords="offset points")
        for name in ("Young Professionals", "Budget-Conscious", "VIP / Luxury")
    ]
    boxes = place_labels(figure, labels)
    plt.close(figure)
    assert all(box.width > 20 for box in boxes)  # real text extents, not placeholders
    for i, box in enumerate(boxes):
        for other in boxes[i + 1 :]:
            assert not box.overlaps(other)


def test_the_stability_advice_does_not_suggest_what_was_already_done(
    tmp_path: Path, customers_csv: Callable[[int, int], Path]
) -> None:
    manifest = toy_manifest([40.0, 1.0], [10.0, 1.0], [[0.0, 0.0], [1.0, 1.0]])
    from schemas.manifest import KSelection, Stability

    unstable = Stability(resamples=2, sample_rows=10, mean_agreement=0.5, min_agreement=0.4)
    for mode, suggests_auto in (("auto", False), ("fixed", True)):
        selection = KSelection(mode=mode, chosen_k=2, rule="test", sample_rows=10)
        text = _stability_text(
            manifest.model_copy(update={"k_selection": selection, "stability": unstable})
        )
        assert ("--k auto" in text) is suggests_auto


def test_generated_customers_go_to_stdout_unless_a_file_is_named(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["generate", "customers", "--n", "3"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("customer_id,")
    assert len(result.stdout.splitlines()) == 4


def test_every_segment_gets_its_own_colour_even_for_large_k() -> None:
    colours = [_colour(i) for i in range(50)]
    assert len(set(colours)) == 50
    assert "#ff0000" not in colours
