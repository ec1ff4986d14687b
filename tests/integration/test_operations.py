"""What platform teams rely on when they run workers: health probes and the first model."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from stream_app.cli import WEB_PORT_FILE
from tests.support import Broker, Names, WorkerFactory, ok, poll, run_segstream, segstream_env

pytestmark = pytest.mark.integration


def test_a_worker_on_port_0_serves_on_a_free_port_that_probe_finds(
    kafka: Broker,
    names: Names,
    trained_model: Path,
    worker_factory: WorkerFactory,
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "worker-data"
    settings = {"SEGSTREAM_WEB_PORT": "0", "SEGSTREAM_DATA_DIR": str(data_dir)}
    worker = worker_factory(trained_model, **settings)
    env = segstream_env(kafka, names, **settings)

    def probed() -> subprocess.CompletedProcess[str] | None:
        assert worker.process.poll() is None, worker.log_tail()
        probe = run_segstream(["probe"], env=env)
        return probe if probe.returncode == 0 else None

    probe = poll(probed, "segstream probe finds the worker", 90, 0.5, worker.log_tail)
    assert json.loads(probe.stdout)["ready"] is True
    assert int((data_dir / WEB_PORT_FILE).read_text()) > 0


def test_train_unless_live_publishes_the_first_model_and_then_leaves_it_alone(
    kafka: Broker, names: Names, tmp_path: Path
) -> None:
    env = segstream_env(kafka, names)
    customers = tmp_path / "customers.csv"
    ok(["generate", "customers", "--n", "300", "--out", str(customers)])
    command = ["train", "--data", str(customers), "--out", str(tmp_path / "models")]
    command += ["--resamples", "0", "--no-report", "--publish", "--unless-live"]

    first = run_segstream([*command, "--version", "first"], env=env)
    second = run_segstream([*command, "--version", "second"], env=env)

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert "published customer-segments first live" in first.stderr
    assert "customer-segments first is live" in second.stderr
    assert second.stdout == "", "nothing is trained, so no model directory is printed"
    assert not (tmp_path / "models" / "second").exists()
    listed = run_segstream(["models"], env=env)
    assert "live: first" in listed.stdout
