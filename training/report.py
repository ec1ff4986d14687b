"""Draw a model's report: a self-contained HTML page plus the PNGs it embeds."""

from __future__ import annotations

import base64
from functools import cache
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")  # headless: no display is needed or wanted

import jinja2
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from schemas import ModelManifest
from schemas.manifest import KSelection
from schemas.model_files import load_manifest, model_directory
from training.data import BAD_ROW_REASONS
from training.naming import centroid_text, money
from training.store import PLOT_SAMPLE_FILE

__all__ = ["REPORT_FILES", "place_labels", "write_report"]

#: Files written into the model directory.
REPORT_FILES = ("report.html", "clusters.png", "elbow.png", "silhouette.png")

# A qualitative palette without red: red is kept for the centroids, as in the seed's plots.
_COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
)
_DPI = 110
#: Mean agreement below which the report warns that segment ids are not stable.
STABLE_AGREEMENT = 0.95


def _colour(index: int) -> str:
    """A colour per segment, distinct for any k: the palette, then hues spread by the golden
    ratio (kept clear of red, the centroids' colour)."""
    if index < len(_COLOURS):
        return _COLOURS[index]
    hue = 0.08 + 0.84 * ((index - len(_COLOURS)) * 0.6180339887 % 1.0)
    red, green, blue = mpl.colors.hsv_to_rgb((hue, 0.65, 0.8)).tolist()
    return mpl.colors.to_hex((red, green, blue))


def _save(figure: Figure, path: Path) -> bytes:
    figure.savefig(path, dpi=_DPI, bbox_inches="tight")
    plt.close(figure)
    return path.read_bytes()


def _clusters_png(manifest: ModelManifest, sample: pd.DataFrame | None, path: Path) -> bytes:
    figure, axes = plt.subplots(figsize=(9, 6))
    for index, segment in enumerate(manifest.segments):
        if sample is not None:
            members = sample[sample["segment"] == segment.id]
            axes.scatter(
                members["age"],
                members["annual_income"] / 1000,
                s=14,
                alpha=0.6,
                color=_colour(index),
                label=f"{segment.name} ({segment.size:,})",
                edgecolors="none",
            )
    labels = []
    for segment in manifest.segments:
        if {"age", "annual_income"} <= segment.centroid.keys():
            age, income = segment.centroid["age"], segment.centroid["annual_income"] / 1000
            axes.scatter(
                [age], [income], marker="s", s=110, color="red", edgecolors="black", zorder=3
            )
            labels.append(
                axes.annotate(
                    segment.name,
                    (age, income),
                    xytext=_LABEL_OFFSETS[0],
                    textcoords="offset points",
                    fontsize=9,
                    fontweight="bold",
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8},
                )
            )
    axes.scatter([], [], marker="s", s=60, color="red", edgecolors="black", label="centroid")
    axes.set_xlabel("Age (years)")
    axes.set_ylabel("Annual income (k$)")
    shown = f"{len(sample):,} sampled customers" if sample is not None else "no customer sample"
    axes.set_title(f"Customer segments ({shown}; centroids as red squares)")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, markerscale=1.6)
    place_labels(figure, labels)
    return _save(figure, path)


# Where a centroid's label may go, in points from the centroid, nearest first: right or left
# of it, then ever further above and below. Centroids that differ only by gender share an
# age and an income, so their labels would otherwise be drawn on top of each other.
_LABEL_OFFSETS = [(dx, dy) for dy in (6, -16, 20, -30, 34, -44, 48, -58, 62, -72) for dx in (8, -8)]


def place_labels(figure: Figure, labels: list[Any]) -> list[Any]:
    """Move each annotation to the nearest offset where it overlaps no label placed before it,
    inside the axes where possible; return the labels' final bounding boxes (display units)."""
    figure.canvas.draw()  # lays the axes out, so positions in display units are final
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]  # Agg has one
    placed: list[Any] = []
    for label in labels:
        inside = label.axes.get_window_extent(renderer)
        fallback = None
        for dx, dy in _LABEL_OFFSETS:
            label.xyann = (dx, dy)
            label.set_horizontalalignment("left" if dx > 0 else "right")
            label.update_positions(renderer)
            box = label.get_window_extent(renderer)
            if any(box.overlaps(other) for other in placed):
                continue
            fallback = fallback or (dx, dy)
            if (
                inside.x0 <= box.x0
                and box.x1 <= inside.x1
                and inside.y0 <= box.y0 <= box.y1 <= inside.y1
            ):
                break
        else:
            if fallback is not None:  # no free place inside the axes: the nearest free one
                label.xyann = fallback
                label.set_horizontalalignment("left" if fallback[0] > 0 else "right")
                label.update_positions(renderer)
        placed.append(label.get_window_extent(renderer))
    return placed


def _curve_png(selection: KSelection, metric: str, path: Path) -> bytes:
    points = [(s.k, getattr(s, metric)) for s in selection.scores if getattr(s, metric) is not None]
    figure, axes = plt.subplots(figsize=(5.2, 3.6))
    if points:
        ks, values = zip(*points, strict=True)
        axes.plot(ks, values, marker="o", color="#1f77b4")
        for k, value in points:
            if k == selection.chosen_k:
                axes.scatter([k], [value], s=160, facecolors="none", edgecolors="red", zorder=3)
                # Clear of the line: above a falling inertia curve, below a silhouette peak.
                offset = (12, 8) if metric == "inertia" else (10, -16)
                axes.annotate(
                    f"chosen k={k}", (k, value), xytext=offset, textcoords="offset points"
                )
        if metric == "inertia" and selection.elbow_k is not None:
            axes.axvline(selection.elbow_k, color="grey", linestyle=":", label="elbow")
            axes.legend(frameon=False)
        axes.set_xticks(list(ks))
    title = "Elbow: inertia by k" if metric == "inertia" else "Mean silhouette by k"
    axes.set_title(title)
    axes.set_xlabel("k (number of segments)")
    axes.set_ylabel("within-cluster sum of squares" if metric == "inertia" else "silhouette")
    axes.grid(alpha=0.3)
    return _save(figure, path)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _percent(value: float, digits: int = 0) -> str:
    return f"{value:.{digits}%}"


@cache
def _template() -> jinja2.Template:
    """The report page (training/templates/report.html.j2), every value HTML-escaped."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("training", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters.update(
        money=money, centroid_text=centroid_text, percent=_percent, thousands="{:,}".format
    )
    return environment.get_template("report.html.j2")


def _stability_text(manifest: ModelManifest) -> str:
    """The report's stability section: the figure, and what to try when it is low."""
    return str(_template().module.stability_section(manifest, STABLE_AGREEMENT))  # type: ignore[attr-defined]  # macros are attributes made at run time


_STYLE = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       margin: 2rem auto; max-width: 1150px; color: #222; line-height: 1.45; padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
.muted { color: #666; font-size: 0.9em; }
.cards { display: flex; gap: 1rem; flex-wrap: wrap; margin: 1.2rem 0; }
.card { border: 1px solid #ddd; border-radius: 8px; padding: 0.7rem 1rem; min-width: 10rem; }
.card .value { font-size: 1.6rem; font-weight: 600; }
table { border-collapse: collapse; width: 100%; margin: 0.6rem 0; font-size: 0.95em; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 0.45rem 0.6rem; text-align: left;
         vertical-align: top; }
th { background: #f6f6f6; } td.num { text-align: right; white-space: nowrap; }
.swatch { display: inline-block; width: 0.8rem; height: 0.8rem; border-radius: 2px;
          margin-right: 0.4rem; vertical-align: baseline; }
.curves { display: flex; gap: 1rem; flex-wrap: wrap; } img { max-width: 100%; }
.big { font-size: 2rem; font-weight: 600; margin: 0; }
"""


def write_report(model_dir: Path) -> Path:
    """Write report.html and its PNGs into a model directory; return the HTML path."""
    manifest = load_manifest(model_dir)
    directory = model_directory(model_dir)
    sample_path = directory / PLOT_SAMPLE_FILE
    sample = pd.read_csv(sample_path) if sample_path.is_file() else None
    clusters = _clusters_png(manifest, sample, directory / "clusters.png")
    selection = manifest.k_selection or KSelection(
        mode="fixed", chosen_k=len(manifest.segments), rule="", sample_rows=0
    )
    elbow = _curve_png(selection, "inertia", directory / "elbow.png")
    silhouette = _curve_png(selection, "silhouette", directory / "silhouette.png")

    page = _template().render(
        manifest=manifest,
        style=_STYLE,
        images={
            "clusters": _data_uri(clusters),
            "elbow": _data_uri(elbow),
            "silhouette": _data_uri(silhouette),
        },
        colours=[_colour(index) for index in range(len(manifest.segments))],
        reasons=BAD_ROW_REASONS,
        stable_agreement=STABLE_AGREEMENT,
    )
    path = directory / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
