"""The model registry as an operator uses it: rollback walks back, refusals are shown once and
per worker, signing keys are checked, and a trained model can be signed for scoring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import REPO, Broker, Names, WorkerFactory, ok, poll, run_segstream, segstream_env

# One process runs the whole module (make test-suite, pytest-xdist --dist loadgroup): its
# module-scoped fixtures are made once.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("registry")]

KEY = "registry-test-key"


# A quick fit of the shipped sample; --out follows.
TRAIN = ["train", "--data", str(REPO / "data" / "customers.csv"), "--k", "4"]
TRAIN += ["--resamples", "0", "--no-report", "--out"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Unsigned models A, B and C (three versions of one fit), under one models root."""
    root = tmp_path_factory.mktemp("registry-models")
    for version in ("A", "B", "C"):
        ok([*TRAIN, str(root), "--version", version])
    return root


def _fails(args: list[str], env: dict[str, str]) -> str:
    done = run_segstream(args, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    return line


def test_rollback_walks_back_the_history(kafka: Broker, names: Names, models: Path) -> None:
    env = segstream_env(kafka, names)
    for version in ("A", "C", "B"):
        ok(["publish", str(models / version)], env)
    assert "live C" in ok(["publish", "--rollback"], env)
    assert "live A" in ok(["publish", "--rollback"], env)
    assert "no earlier live version" in _fails(["publish", "--rollback"], env)
    assert "live: A" in ok(["models"], env)


def test_the_live_version_cannot_be_published_as_its_own_shadow(
    kafka: Broker, names: Names, models: Path
) -> None:
    env = segstream_env(kafka, names)
    ok(["publish", str(models / "A")], env)
    assert "A is already live" in _fails(["publish", str(models / "A"), "--shadow"], env)
    assert "candidate B" in ok(["publish", str(models / "B"), "--shadow"], env)


def test_publishing_with_another_signing_key_is_refused(
    kafka: Broker, names: Names, models: Path
) -> None:
    ok(["publish", str(models / "A")], segstream_env(kafka, names, SEGSTREAM_MODEL_SIGNING_KEY=KEY))
    other = segstream_env(kafka, names, SEGSTREAM_MODEL_SIGNING_KEY="some-other-key")
    line = _fails(["publish", str(models / "B")], other)
    assert "SEGSTREAM_MODEL_SIGNING_KEY is not the key the live model A" in line
    assert "some-other-key" not in line


def test_with_a_key_score_takes_a_freshly_trained_model_and_sign_signs_an_old_one(
    kafka: Broker, names: Names, models: Path, tmp_path: Path
) -> None:
    keyed = segstream_env(kafka, names, SEGSTREAM_MODEL_SIGNING_KEY=KEY)
    signups = tmp_path / "signups.jsonl"
    ok(["generate", "signups", "--n", "20", "--out", str(signups)], keyed)
    score = ["score", "--input", str(signups), "--out", str(tmp_path / "out.jsonl"), "--model"]

    fresh = Path(ok([*TRAIN, str(tmp_path / "keyed")], keyed).strip().splitlines()[-1])
    assert json.loads((fresh / "manifest.json").read_text())["signature"]
    ok([*score, str(fresh)], keyed)

    old = tmp_path / "old"
    old.mkdir()
    (old / "manifest.json").write_text((models / "A" / "manifest.json").read_text())
    line = _fails([*score, str(old)], keyed)
    assert "is not signed" in line
    assert f"segstream sign {old}" in line
    assert "signed customer-segments A" in ok(["sign", str(old)], keyed)
    ok([*score, str(old)], keyed)


def test_models_shows_each_refusal_once_and_which_workers_refuse_the_live_version(
    kafka: Broker,
    names: Names,
    models: Path,
    worker_factory: WorkerFactory,
) -> None:
    keyed = segstream_env(kafka, names, SEGSTREAM_MODEL_SIGNING_KEY=KEY)
    unsigned = segstream_env(kafka, names)
    ok(["publish", str(models / "A")], keyed)
    worker = worker_factory(None, SEGSTREAM_MODEL_SIGNING_KEY=KEY)
    assert worker.wait_ready()["model"]["version"] == "A"

    ok(["publish", str(models / "B")], unsigned)  # workers hold a key: they refuse it
    ok(["publish", str(models / "C"), "--shadow"], unsigned)
    listed = poll(
        lambda: (
            text
            if "C" in (text := ok(["models"], unsigned)).partition("refused by worker")[2]
            else None
        ),
        "`segstream models` lists the worker's refusal of C",
        timeout=30,
        interval=0.5,
    )
    lines = listed.splitlines()
    live = next(line for line in lines if line.startswith("live: "))
    assert live.startswith("live: B, but refused by 1 worker"), live
    assert "not signed" in live
    refusals = [line for line in lines if line.startswith("refused by worker")]
    assert sorted(line.rsplit(": ", 2)[1] for line in refusals) == ["B", "C"], refusals
    assert worker.health("/health").json()["model"]["version"] == "A"
    assert worker.health("/health").json()["models_refused"] == 2

    # Read with the key, the same topic has A live; B and C are refused once each here.
    keyed_listing = ok(["models"], keyed).splitlines()
    assert "live: A" in keyed_listing
    here = [line for line in keyed_listing if line.startswith("refused here")]
    assert sorted(line.split(": ")[1] for line in here) == ["B", "C"], here

    worker.stop()
    errors = [line for line in worker.log_path.read_text().splitlines() if "refused model" in line]
    assert len(errors) == 2, errors
