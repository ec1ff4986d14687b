"""The approach a user writes first: a Faust agent calling scikit-learn's predict per event.

It loads the saved scikit-learn Pipeline (model.joblib) and, for every signup, runs
`pipeline.predict([[age, annual_income]])` and sends a small JSON assignment. It has the same
broker settings as the segstream worker. Run as `python -m bench.naive_agent worker`;
configured by the same SEGSTREAM_* variables plus BENCH_MODEL_DIR.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import faust
import joblib

_env = os.environ
_model_dir = Path(_env["BENCH_MODEL_DIR"])

pipeline = joblib.load(_model_dir / "model.joblib")
manifest = json.loads((_model_dir / "manifest.json").read_text())
segments = manifest["segments"]

app = faust.App(
    _env["SEGSTREAM_APP_ID"],
    broker=f"kafka://{_env['SEGSTREAM_BOOTSTRAP_SERVERS']}",
    consumer_auto_offset_reset="earliest",
    topic_disable_leader=True,
    web_port=int(_env.get("SEGSTREAM_WEB_PORT", "6066")),
    web_bind="127.0.0.1",
    datadir=_env.get("SEGSTREAM_DATA_DIR", ".naive-agent"),
    producer_acks=-1,
    store="memory://",
)


class Signup(faust.Record, serializer="json"):
    """The fields of a signup this agent uses."""

    event_id: str
    customer_id: str
    age: float
    annual_income: float
    gender: str
    signed_up_at: str


signups = app.topic(_env["SEGSTREAM_INPUT_TOPIC"], key_type=bytes, value_type=Signup)
assignments = app.topic(_env["SEGSTREAM_OUTPUT_TOPIC"], key_type=bytes, value_serializer="json")


@app.agent(signups)
async def assign(stream: Any) -> None:
    """Predict one signup at a time and send its segment."""
    async for signup in stream:
        label = int(pipeline.predict([[signup.age, signup.annual_income]])[0])
        segment = segments[label]
        await assignments.send(
            key=signup.customer_id.encode(),
            value={
                "source_event_id": signup.event_id,
                "customer_id": signup.customer_id,
                "segment_id": segment["id"],
                "segment_name": segment["name"],
                "action": segment["action"],
                "model_version": manifest["version"],
            },
        )


if __name__ == "__main__":
    app.main()
