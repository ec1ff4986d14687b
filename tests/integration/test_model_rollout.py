"""Publishing, live swap, integrity, shadow scoring and rollback with two workers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.conftest import (
    Broker,
    Names,
    WorkerProcess,
    run_segstream,
    segstream_env,
    wait_for_records,
)
from training.generate import generate_signups

pytestmark = pytest.mark.integration

KEY = "rollout-test-key"
N_EVENTS = 20_000


def _write_raw(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, key=key, value=value)
        finally:
            await producer.stop()

    asyncio.run(send())


def _wait_for_version(workers: list[WorkerProcess], version: str, timeout: float) -> float:
    """Seconds until every worker reports version live; fails after timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        versions = [w.health("/health").json()["model"] for w in workers]
        if all(v and v["version"] == version for v in versions):
            return time.monotonic() - started
        time.sleep(0.1)
    pytest.fail(f"workers did not switch to {version} within {timeout} s: {versions}")


def _train(
    tmp_path: Path, seed: int, version: str, *options: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Generate 600 customers with seed and train model version on them."""
    customers = tmp_path / f"customers-{seed}.csv"
    made = run_segstream(
        ["generate", "customers", "--n", "600", "--seed", str(seed), "--out", str(customers)]
    )
    assert made.returncode == 0, made.stderr
    out = str(tmp_path / "models")
    trained = run_segstream(
        [
            "train",
            "--data",
            str(customers),
            "--k",
            "4",
            "--out",
            out,
            "--version",
            version,
            "--seed",
            str(seed),
            *options,
        ],
        env=env,
    )
    assert trained.returncode == 0, trained.stderr
    return trained


def _offline_segments(model: Path, signups: Path, out: Path) -> dict[str, str]:
    done = run_segstream(
        ["score", "--model", str(model), "--input", str(signups), "--out", str(out)]
    )
    assert done.returncode == 0, done.stderr
    return {
        row["source_event_id"]: row["segment_id"]
        for row in map(json.loads, out.read_text().splitlines())
    }


def test_publish_swap_refuse_shadow_and_rollback_with_two_workers(
    kafka: Broker,
    names: Names,
    worker_factory: Callable[..., WorkerProcess],
    tmp_path: Path,
) -> None:
    for n, seed in ((1, 11), (2, 22), (3, 33)):
        _train(tmp_path, seed, f"v{n}")
    v1, v2, v3 = (tmp_path / "models" / f"v{n}" for n in (1, 2, 3))
    env = segstream_env(kafka, names, SEGSTREAM_MODEL_SIGNING_KEY=KEY)
    unsigned_env = segstream_env(kafka, names)
    assert run_segstream(["topics", "create"], env=env).returncode == 0
    published = run_segstream(["publish", str(v1)], env=env)
    assert published.returncode == 0, published.stderr

    workers = [worker_factory(None, SEGSTREAM_MODEL_SIGNING_KEY=KEY) for _ in range(2)]
    for worker in workers:
        assert worker.wait_ready()["model"]["version"] == "v1"

    # Replay 20,000 signups at 2,000/s and publish v2 halfway through.
    signups = tmp_path / "signups.jsonl"
    signups.write_bytes(b"".join(v + b"\n" for v in generate_signups(N_EVENTS, seed=5)))
    replay = threading.Thread(
        target=run_segstream, args=(["replay", str(signups), "--rate", "2000"], env)
    )
    replay.start()
    time.sleep(5)
    published_at = time.time()
    published = run_segstream(["publish", str(v2)], env=env)
    assert published.returncode == 0, published.stderr
    switch_seconds = _wait_for_version(workers, "v2", timeout=5)
    replay.join(timeout=120)

    assignments = [
        (r.json(), r.timestamp)
        for r in wait_for_records(kafka.bootstrap, names.output_topic, N_EVENTS)
    ]
    by_source = Counter(str(a["source_event_id"]) for a, _ in assignments)
    assert len(by_source) == N_EVENTS, "an event was lost"
    assert max(by_source.values()) == 1, "an event was scored twice"
    versions = Counter(str(a["model_version"]) for a, _ in assignments)
    assert versions["v1"] > 0
    assert versions["v2"] > 0
    late_v1 = [t for a, t in assignments if a["model_version"] == "v1" and t > published_at + 5]
    assert not late_v1, f"{len(late_v1)} v1 assignments more than 5 s after publishing v2"
    expected = {
        "v1": _offline_segments(v1, signups, tmp_path / "v1.jsonl"),
        "v2": _offline_segments(v2, signups, tmp_path / "v2.jsonl"),
    }
    wrong = [
        a
        for a, _ in assignments
        if expected[str(a["model_version"])][str(a["source_event_id"])] != a["segment_id"]
    ]
    assert not wrong, "every assignment matches offline scoring with its own version"
    owned = [w.health("/health").json()["consumed"] for w in workers]
    assert all(n > 0 for n in owned), f"both workers take part: {owned}"
    assert sum(owned) == N_EVENTS

    # Integrity: a tampered signed manifest and an unsigned one are refused; v2 stays live.
    tampered = json.loads((v2 / "manifest.json").read_text())
    tampered["version"] = "v2-tampered"
    tampered["signature"] = "0" * 64
    _write_raw(
        kafka.bootstrap, names.model_topic, b"customer-segments", json.dumps(tampered).encode()
    )
    unsigned = run_segstream(["publish", str(v3)], env=unsigned_env)
    assert unsigned.returncode == 0, unsigned.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        health = [w.health("/health").json() for w in workers]
        if all(h["models_refused"] >= 2 for h in health):
            break
        time.sleep(0.2)
    for h in health:
        assert h["models_refused"] >= 2, h
        assert h["model"]["version"] == "v2"
        assert "signature" in str(h["last_refusal"]) or "signed" in str(h["last_refusal"])

    # Shadow: v3 (signed) as candidate; the workers' figures match offline scoring.
    shadow_signups = tmp_path / "shadow.jsonl"
    shadow_signups.write_bytes(b"".join(v + b"\n" for v in generate_signups(3_000, seed=77)))
    published = run_segstream(["publish", str(v3), "--shadow"], env=env)
    assert published.returncode == 0, published.stderr
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if all(
            (w.health("/health").json()["shadow"] or {}).get("candidate") == "v3" for w in workers
        ):
            break
        time.sleep(0.2)
    assert run_segstream(["replay", str(shadow_signups)], env=env).returncode == 0
    live = _offline_segments(v2, shadow_signups, tmp_path / "shadow-v2.jsonl")
    candidate = _offline_segments(v3, shadow_signups, tmp_path / "shadow-v3.jsonl")
    expected_pairs = Counter(f"{live[e]}->{candidate[e]}" for e in live if live[e] != candidate[e])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        figures = [w.health("/health").json()["shadow"] for w in workers]
        if sum(f["compared"] for f in figures) >= 3_000:
            break
        time.sleep(0.3)
    assert sum(f["compared"] for f in figures) == 3_000
    measured: Counter[str] = Counter()
    for f in figures:
        measured.update(f["pairs"])
    assert measured == expected_pairs
    time.sleep(2)  # workers report their figures to the model topic once a second
    listed = run_segstream(["models"], env=env)
    assert listed.returncode == 0, listed.stderr
    differ = sum(expected_pairs.values())
    assert f"shadow: 3000 events compared, {differ} in another segment" in listed.stdout

    # Rollback: v1 is live again everywhere, and new assignments carry it.
    rolled = run_segstream(["publish", "--rollback"], env=env)
    assert rolled.returncode == 0, rolled.stderr
    _wait_for_version(workers, "v1", timeout=5)
    listed = run_segstream(["models"], env=env)
    assert "live: v1" in listed.stdout
    more = tmp_path / "after-rollback.jsonl"
    more.write_bytes(b"".join(v + b"\n" for v in generate_signups(200, seed=78)))
    assert run_segstream(["replay", str(more)], env=env).returncode == 0
    expected_total = N_EVENTS + 3_000 + 200
    latest = wait_for_records(kafka.bootstrap, names.output_topic, expected_total)
    assert len(latest) == expected_total
    after = set(_offline_segments(v1, more, tmp_path / "more.jsonl"))
    versions_after = {
        r.json()["model_version"] for r in latest if r.json()["source_event_id"] in after
    }
    assert versions_after == {"v1"}

    # Promote: the candidate v3 becomes live everywhere and is no longer a candidate.
    promoted = run_segstream(["promote", "v3"], env=env)
    assert promoted.returncode == 0, promoted.stderr
    _wait_for_version(workers, "v3", timeout=5)
    listed = run_segstream(["models"], env=env)
    assert "live: v3" in listed.stdout
    assert "candidate: none" in listed.stdout
    print(f"v1 -> v2 live on both workers after {switch_seconds:.2f} s")


def test_train_publish_creates_the_compacted_topic_and_goes_live(
    kafka: Broker, names: Names, tmp_path: Path
) -> None:
    env = segstream_env(kafka, names)
    options = ("--resamples", "0", "--no-report", "--publish")
    trained = _train(tmp_path, 1, "first", *options, env=env)
    assert "published customer-segments first live" in trained.stderr

    async def cleanup_policy() -> str:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        await admin.start()
        try:
            resource = ConfigResource(ConfigResourceType.TOPIC, names.model_topic)
            (response,) = await admin.describe_configs([resource])
            entries = response.to_object()["resources"][0]["config_entries"]
            return next(e["config_value"] for e in entries if e["config_names"] == "cleanup.policy")
        finally:
            await admin.close()

    assert asyncio.run(cleanup_policy()) == "compact"
    listed = run_segstream(["models"], env=env)
    assert listed.returncode == 0, listed.stderr
    assert "live: first" in listed.stdout
