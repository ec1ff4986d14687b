"""Micro-benchmark of the scoring kernel: Scorer.score against scikit-learn on 1,000,000 points.

Run as `python -m bench.kernel MODEL_DIR OUT.json [--points N]`. It checks that the labels are
identical to the saved scikit-learn Pipeline's `predict` on every point, then times the kernel
in batches of several sizes (the worker's batch size among them) and reports microseconds per
event amortised over the batches, with the BLAS library threadpoolctl says is loaded.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import joblib
import numpy as np
import typer
from threadpoolctl import threadpool_info

from schemas.model_files import load_manifest
from stream_app.scorer import Scorer

BATCH_SIZES = (100, 500, 2_000, 10_000, 1_000_000)


def _points(manifest_features: list[str], n: int, seed: int) -> np.ndarray:
    """Customers over and beyond the trained range: ages 0-120, incomes 0-250,000."""
    rng = np.random.default_rng(seed)
    columns = {
        "age": rng.uniform(0, 120, n).round(0),
        "annual_income": rng.uniform(0, 250_000, n).round(-2),
        "gender_female": rng.integers(0, 2, n).astype(np.float64),
    }
    return np.column_stack([columns[f] for f in manifest_features])


def _best_of(repeats: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - began)
    return best


def measure(model_dir: Path, n_points: int, repeats: int) -> dict[str, object]:
    """Parity with scikit-learn on n_points, then kernel timings per batch size."""
    manifest = load_manifest(model_dir)
    scorer = Scorer(manifest)
    pipeline = joblib.load(model_dir / "model.joblib")
    points = _points(list(manifest.features), n_points, seed=2026)

    expected = pipeline.predict(points)
    got = scorer.score(points).labels
    differing = int(np.count_nonzero(expected != got))

    per_batch: dict[str, float] = {}
    for size in BATCH_SIZES:
        if size > n_points:
            continue
        batches = [points[i : i + size] for i in range(0, n_points, size)]

        def run(batches: list[np.ndarray] = batches) -> None:
            for batch in batches:
                scorer.score(batch)

        per_batch[str(size)] = _best_of(repeats, run) / n_points * 1e6

    sklearn_batched = _best_of(max(1, repeats // 2), lambda: pipeline.predict(points))
    single = points[:2_000]
    sklearn_single = _best_of(1, lambda: [pipeline.predict(row[None, :]) for row in single])
    return {
        "points": n_points,
        "labels_differing_from_sklearn": differing,
        "labels_identical": differing == 0,
        "us_per_event_by_batch_size": per_batch,
        "sklearn_predict_batched_us_per_event": sklearn_batched / n_points * 1e6,
        "sklearn_predict_single_us_per_event": sklearn_single / len(single) * 1e6,
        "blas": [
            {
                key: info.get(key)
                for key in ("internal_api", "version", "architecture", "num_threads")
            }
            for info in threadpool_info()
        ],
        "openblas_env": {
            name: os.environ.get(name) for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
        },
    }


def command(
    model_dir: Annotated[Path, typer.Argument(help="model directory")],
    out: Annotated[Path, typer.Argument(help="output JSON file")],
    points: Annotated[int, typer.Option(help="points scored per repeat")] = 1_000_000,
    repeats: Annotated[int, typer.Option(help="repeats; the best one counts")] = 5,
) -> None:
    """Time the scoring kernel on a model's manifest; write the figures as JSON."""
    result = measure(model_dir, points, repeats)
    out.write_text(json.dumps(result, indent=2) + "\n")


def main() -> None:
    """Command line: model directory, output JSON, number of points."""
    typer.run(command)


if __name__ == "__main__":
    main()
