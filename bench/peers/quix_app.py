"""The peer: the Quix Streams app a user would write for segstream's job, with Quix's defaults.

It reads the model's manifest.json (scaler mean and scale, centroids, segments), consumes the
signups as JSON, scores each record on its own with numpy (scale, distance to every centroid,
nearest wins: the arithmetic of `stream_app.scorer`, one record at a time) and produces a JSON
result keyed by customer_id (the input's key) to the output topic. No validation and no dead
letters: a record Quix cannot decode or score stops the app, as Quix does by default.

Runs in bench/.venvs/quix as `python bench/peers/quix_app.py`, configured by the harness's
environment: SEGSTREAM_BOOTSTRAP_SERVERS, SEGSTREAM_INPUT_TOPIC, SEGSTREAM_OUTPUT_TOPIC,
SEGSTREAM_APP_ID (the consumer group), BENCH_MODEL_DIR (the folder of manifest.json) and
BENCH_PROCESSING_GUARANTEE (`exactly-once` or `at-least-once`). Everything else is Quix's
default (commit interval 5 s, auto-created topics, its JSON serialisers); the offset reset is
set to `earliest` because the benchmark drains a topic filled before the app starts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from quixstreams import Application

#: How each feature the manifest may name is read from a signup.
_READERS: dict[str, Callable[[dict[str, Any]], float]] = {
    "age": lambda signup: float(signup["age"]),
    "annual_income": lambda signup: float(signup["annual_income"]),
    "gender_female": lambda signup: float(str(signup["gender"]).lower() in ("female", "f")),
}


def main() -> None:
    """Build the Quix app from the environment and run it until SIGTERM."""
    env = os.environ
    manifest = json.loads((Path(env["BENCH_MODEL_DIR"]) / "manifest.json").read_text())
    readers = [_READERS[name] for name in manifest["features"]]
    mean = np.asarray(manifest["scaler"]["mean"], dtype=np.float64)
    scale = np.asarray(manifest["scaler"]["scale"], dtype=np.float64)
    centroids = np.asarray(manifest["centroids"], dtype=np.float64)
    segments: list[dict[str, Any]] = manifest["segments"]
    version: str = manifest["version"]

    def score(signup: dict[str, Any]) -> dict[str, Any]:
        scaled = (np.asarray([read(signup) for read in readers]) - mean) / scale
        distances = np.linalg.norm(centroids - scaled, axis=1)
        label = int(distances.argmin())
        segment = segments[label]
        return {
            "source_event_id": signup["event_id"],
            "customer_id": signup["customer_id"],
            "segment_id": segment["id"],
            "segment_name": segment["name"],
            "action": segment["action"],
            "model_version": version,
            "distance": float(distances[label]),
            "scored_at": datetime.now(UTC).isoformat(),
        }

    app = Application(
        broker_address=env["SEGSTREAM_BOOTSTRAP_SERVERS"],
        consumer_group=env["SEGSTREAM_APP_ID"],
        auto_offset_reset="earliest",
        processing_guarantee=env.get("BENCH_PROCESSING_GUARANTEE", "exactly-once"),
    )
    signups = app.topic(env["SEGSTREAM_INPUT_TOPIC"], value_deserializer="json")
    assignments = app.topic(env["SEGSTREAM_OUTPUT_TOPIC"], value_serializer="json")
    app.dataframe(signups).apply(score).to_topic(assignments)
    app.run()


if __name__ == "__main__":
    main()
