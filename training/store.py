"""Model directories on disk: write one, find one, read its manifest."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
from pydantic import ValidationError

from schemas import ManifestError, ModelManifest
from training.fit import TrainedModel

__all__ = ["PLOT_SAMPLE_FILE", "load_manifest", "model_directory", "save_model"]

#: Customers kept beside the model (no ids, at most training.fit.PLOT_ROWS) for the report.
PLOT_SAMPLE_FILE = "plot-sample.csv"


def save_model(model: TrainedModel, models_root: Path) -> Path:
    """Write models_root/<version>/{model.joblib, manifest.json, plot sample}; update LATEST."""
    directory = models_root / model.manifest.version
    directory.mkdir(parents=True, exist_ok=True)
    # Compressed: for a large table the fitted KMeans keeps one label per training row.
    joblib.dump(model.pipeline, directory / "model.joblib", compress=3)
    (directory / "manifest.json").write_text(model.manifest.model_dump_json(indent=2) + "\n")
    model.plot_sample.to_csv(directory / PLOT_SAMPLE_FILE, index=False)
    (models_root / "LATEST").write_text(model.manifest.version + "\n")
    return directory


def model_directory(path: Path) -> Path:
    """The model directory meant by a model directory, its manifest.json, or a models root."""
    if path.is_file() and path.name == "manifest.json":
        return path.parent
    if path.is_dir() and not (path / "manifest.json").is_file() and (path / "LATEST").is_file():
        return path / (path / "LATEST").read_text().strip()
    return path


def load_manifest(path: Path) -> ModelManifest:
    """Read the manifest of a model directory, a manifest.json, or a models root's LATEST."""
    manifest_path = model_directory(path) / "manifest.json"
    try:
        text = manifest_path.read_bytes().decode("utf-8")
    except OSError:
        raise ManifestError(f"{path}: no model here (no manifest.json)") from None
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"{manifest_path}: not a model manifest (not UTF-8 text at byte {exc.start})"
        ) from None
    try:
        return ModelManifest.model_validate(json.loads(text))
    except (ValueError, ValidationError) as exc:
        first = " ".join(str(exc).split())[:200]
        raise ManifestError(f"{manifest_path}: not a valid model manifest ({first})") from None
