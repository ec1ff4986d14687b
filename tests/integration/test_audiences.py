"""Customer state on a real broker: profile updates, segment changes, re-segmentation, lookups."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from schemas import ModelManifest
from stream_app.scorer import Scorer
from tests.support import (
    Broker,
    Names,
    WorkerFactory,
    WorkerProcess,
    batch_codecs,
    ok,
    poll,
    read_topic,
    run_segstream,
    segstream_env,
)
from training.generate import generate_signups

pytestmark = pytest.mark.integration


def _manifest(model_dir: Path) -> ModelManifest:
    return ModelManifest.model_validate_json((model_dir / "manifest.json").read_text())


def _signup(customer_id: str, age: float, income: float, at: str) -> dict[str, object]:
    return {
        "event_id": f"signup-{customer_id}",
        "customer_id": customer_id,
        "age": age,
        "annual_income": income,
        "gender": "female",
        "signed_up_at": at,
    }


def _update(customer_id: str, n: int, at: str, **features: float) -> dict[str, object]:
    return {
        "kind": "profile_update",
        "event_id": f"update-{customer_id}-{n}",
        "customer_id": customer_id,
        "updated_at": at,
        **features,
    }


def _replay(env: dict[str, str], path: Path, events: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    ok(["replay", str(path)], env=env)


def _changes(kafka: Broker, names: Names) -> list[dict[str, Any]]:
    return [r.json() for r in read_topic(kafka.bootstrap, names.changes_topic)]


def _income_for(scorer: Scorer, age: float, segment_id: str, lo: float, hi: float) -> float:
    """An income between lo and hi at which a customer of age lands in segment_id."""
    ids = [s.id for s in scorer.manifest.segments]
    for step in range(2001):
        income = lo + (hi - lo) * step / 2000
        label = int(scorer.score(np.array([[age, income]])).labels[0])
        if ids[label] == segment_id:
            return income
    pytest.fail(f"no income in [{lo}, {hi}] puts age {age} in {segment_id}")


def test_a_raise_moves_a_customer_once_and_a_raise_within_the_segment_does_not(
    kafka: Broker,
    names: Names,
    trained_model: Path,
    worker_factory: WorkerFactory,
    tmp_path: Path,
) -> None:
    scorer = Scorer(_manifest(trained_model))
    budget = next(s for s in scorer.manifest.segments if s.id == "budget-conscious")
    age = budget.centroid["age"]
    start = budget.centroid["annual_income"]
    vip_income = _income_for(scorer, age, "vip-luxury", start, 400_000)
    env = segstream_env(kafka, names)
    worker = worker_factory(trained_model)
    worker.wait_ready()

    _replay(
        env,
        tmp_path / "events.jsonl",
        [
            _signup("c-raise", age, start, "2026-01-01T00:00:00Z"),
            _update("c-raise", 1, "2026-02-01T00:00:00Z", annual_income=vip_income),
            _update("c-raise", 2, "2026-03-01T00:00:00Z", annual_income=vip_income * 1.01),
            # Older than the state: ignored.
            _update("c-raise", 3, "2026-01-15T00:00:00Z", annual_income=start),
        ],
    )
    poll(
        lambda: (
            worker.health("/customers/c-raise").status_code == 200
            and worker.health("/customers/c-raise").json()["revision"] == 3
        ),
        "the customer's state has its third revision",
        60,
    )
    state = worker.health("/customers/c-raise").json()
    assert state["segment_id"] == "vip-luxury"
    assert state["annual_income"] == pytest.approx(vip_income * 1.01)
    assert state["since"] == "2026-02-01T00:00:00Z"
    assert state["model_version"] == scorer.manifest.version

    changes = [c for c in _changes(kafka, names) if c["customer_id"] == "c-raise"]
    assert [(c["exited_segment_id"], c["entered_segment_id"], c["reason"]) for c in changes] == [
        (None, "budget-conscious", "signup"),
        ("budget-conscious", "vip-luxury", "profile_update"),
    ]
    assert len({c["event_id"] for c in changes}) == 2

    state_records = read_topic(kafka.bootstrap, names.state_topic)
    assert state_records[-1].json() == {k: v for k, v in state.items() if k != "answered_by"}
    metrics = worker.health("/metrics").text
    assert "segstream_stale_updates_total 1.0" in metrics

    # The CLI prints the same state; an unknown customer is a readable error.
    web = {"SEGSTREAM_WEB_PORT": str(worker.web_port)}
    shown = run_segstream(["customer", "c-raise"], env=segstream_env(kafka, names, **web))
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["segment_id"] == "vip-luxury"
    unknown = run_segstream(["customer", "nobody"], env=segstream_env(kafka, names, **web))
    assert unknown.returncode == 1
    assert "nobody" in unknown.stderr
    assert worker.health("/customers/nobody").status_code == 404

    # SEGSTREAM_COMPRESSION's default: every batch the worker wrote is lz4, on each topic.
    for topic in (names.output_topic, names.state_topic, names.changes_topic):
        codecs = batch_codecs(kafka, topic)
        assert set(codecs) == {"lz4"}, (topic, codecs)


def test_an_update_for_an_unknown_customer_without_features_is_dead_lettered(
    kafka: Broker,
    names: Names,
    trained_model: Path,
    worker_factory: WorkerFactory,
    tmp_path: Path,
) -> None:
    env = segstream_env(kafka, names)
    worker = worker_factory(trained_model)
    worker.wait_ready()
    _replay(
        env,
        tmp_path / "events.jsonl",
        [
            _update("stranger", 1, "2026-02-01T00:00:00Z", annual_income=50_000.0),
            _update("newcomer", 1, "2026-02-01T00:00:00Z", age=30.0, annual_income=50_000.0),
        ],
    )
    letters = poll(lambda: read_topic(kafka.bootstrap, names.dlq_topic), "a dead letter", 60)
    assert [letter.json()["error_reason"] for letter in letters] == ["unknown_customer"]
    poll(lambda: worker.health("/customers/newcomer").status_code == 200, "newcomer known", 60)
    changes = _changes(kafka, names)
    assert [(c["customer_id"], c["reason"]) for c in changes] == [("newcomer", "profile_update")]


def _publish(env: dict[str, str], *args: str) -> None:
    ok(["publish", *args], env=env)


def _train(tmp_path: Path, seed: int, version: str, k: int = 4) -> Path:
    customers = tmp_path / f"customers-{seed}.csv"
    made = run_segstream(
        ["generate", "customers", "--n", "600", "--seed", str(seed), "--out", str(customers)]
    )
    assert made.returncode == 0, made.stderr
    options = ["--k", str(k), "--version", version, "--seed", str(seed), "--no-report"]
    out = tmp_path / "models"
    trained = run_segstream(["train", "--data", str(customers), "--out", str(out), *options])
    assert trained.returncode == 0, trained.stderr
    return Path(trained.stdout.strip().splitlines()[-1])


def _offline(model: Path, signups: Path, out: Path) -> dict[str, str]:
    done = run_segstream(
        ["score", "--model", str(model), "--input", str(signups), "--out", str(out)]
    )
    assert done.returncode == 0, done.stderr
    return {
        row["customer_id"]: row["segment_id"]
        for row in map(json.loads, out.read_text().splitlines())
    }


def _resegmented(worker: WorkerProcess, version: str) -> bool:
    plane = worker.health("/health").json()["data_plane"]
    reseg = plane.get("resegment") or {}
    return bool(reseg.get("model_version") == version and reseg.get("complete"))


def test_a_new_model_moves_exactly_the_customers_it_scores_differently_and_rollback_moves_them_back(
    kafka: Broker,
    names: Names,
    worker_factory: WorkerFactory,
    tmp_path: Path,
) -> None:
    n = 3000
    v1, v2 = _train(tmp_path, 1, "v1"), _train(tmp_path, 5, "v2")
    env = segstream_env(kafka, names)
    _publish(env, str(v1))
    worker = worker_factory(None)
    worker.wait_ready()
    signups = tmp_path / "signups.jsonl"
    signups.write_bytes(b"".join(v + b"\n" for v in generate_signups(n, seed=11)))
    ok(["replay", str(signups)], env=env)
    poll(lambda: len(_changes(kafka, names)) >= n, f"{n} signup changes", 120)

    by_v1 = _offline(v1, signups, tmp_path / "v1.jsonl")
    by_v2 = _offline(v2, signups, tmp_path / "v2.jsonl")
    moved = {c for c in by_v1 if by_v1[c] != by_v2[c]}
    assert moved, "the two models must disagree on some customers for this test to mean much"

    _publish(env, str(v2))
    poll(lambda: _resegmented(worker, "v2"), "re-segmentation for v2 complete", 120)
    model_changes = [c for c in _changes(kafka, names) if c["reason"] == "model_change"]
    assert Counter(c["customer_id"] for c in model_changes) == Counter(moved)
    for change in model_changes:
        assert change["exited_segment_id"] == by_v1[change["customer_id"]]
        assert change["entered_segment_id"] == by_v2[change["customer_id"]]
        assert (change["previous_model_version"], change["model_version"]) == ("v1", "v2")

    models = ok(["models"], env=env)
    assert "customers re-scored with v2 by worker" in models
    assert ": complete" in models

    # A shadow candidate is counted against the customers in state, without emitting.
    _publish(env, str(v1), "--shadow")

    def shadow_state() -> dict[str, object]:
        plane = worker.health("/health").json()["data_plane"]
        return dict(plane.get("shadow_state") or {})

    poll(
        lambda: shadow_state().get("candidate") == "v1" and shadow_state().get("complete"),
        "the shadow count over the customers in state is complete",
        120,
    )
    assert shadow_state()["would_change"] == len(moved)
    assert shadow_state()["customers_compared"] == n
    assert len(_changes(kafka, names)) == n + len(moved), "a shadow count emits nothing"

    _publish(env, "--rollback")
    poll(lambda: _resegmented(worker, "v1"), "re-segmentation for v1 complete", 120)
    back = [
        c
        for c in _changes(kafka, names)
        if c["reason"] == "model_change" and c["model_version"] == "v1"
    ]
    assert Counter(c["customer_id"] for c in back) == Counter(moved)
    assert all(c["entered_segment_id"] == by_v1[c["customer_id"]] for c in back)
    # Every customer's state is v1's answer again; every change event id is unique.
    sample = sorted(by_v1)[:20]
    for customer_id in sample:
        answer = httpx.get(f"http://127.0.0.1:{worker.web_port}/customers/{customer_id}").json()
        assert (answer["segment_id"], answer["model_version"]) == (by_v1[customer_id], "v1")
    all_changes = _changes(kafka, names)
    assert len({c["event_id"] for c in all_changes}) == len(all_changes)
