"""Write a trained model's directory; schemas.model_files finds and reads it again."""

from __future__ import annotations

from pathlib import Path

import joblib

from schemas.model_files import MANIFEST_FILE
from training.fit import TrainedModel

__all__ = ["PLOT_SAMPLE_FILE", "save_model"]

#: Customers kept beside the model (no ids, at most training.fit.PLOT_ROWS) for the report.
PLOT_SAMPLE_FILE = "plot-sample.csv"


def save_model(model: TrainedModel, models_root: Path) -> Path:
    """Write models_root/<version>/{model.joblib, manifest.json, plot sample}; update LATEST."""
    directory = models_root / model.manifest.version
    directory.mkdir(parents=True, exist_ok=True)
    # Compressed: for a large table the fitted KMeans keeps one label per training row.
    joblib.dump(model.pipeline, directory / "model.joblib", compress=3)
    (directory / MANIFEST_FILE).write_text(model.manifest.model_dump_json(indent=2) + "\n")
    model.plot_sample.to_csv(directory / PLOT_SAMPLE_FILE, index=False)
    (models_root / "LATEST").write_text(model.manifest.version + "\n")
    return directory
