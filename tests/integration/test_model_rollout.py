"""Rolling models out with two workers: a live swap under load, integrity checks, shadow
scoring, rollback and promotion.

The workers, their topics and the models v1, v2 and v3 are set up once for the module. Each
test publishes what it starts from, so none depends on another having run.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.support import (
    Broker,
    Names,
    TopicRecord,
    WorkerProcess,
    fresh_names,
    ok,
    poll,
    read_topic,
    run_segstream,
    segstream_env,
    start_segstream,
    stop_all,
    wait_until_consumed,
    worker_starter,
    write_signups,
)

# One process runs the whole module (make test-suite, pytest-xdist --dist loadgroup): its
# module-scoped fixtures are made once.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("model_rollout")]

KEY = "rollout-test-key"
N_EVENTS = 20_000


def _train(
    root: Path, seed: int, version: str, *options: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Generate 600 customers with seed and train model version on them (into root/models)."""
    customers = root / f"customers-{seed}.csv"
    ok(["generate", "customers", "--n", "600", "--seed", str(seed), "--out", str(customers)])
    command = ["train", "--data", str(customers), "--k", "4", "--out", str(root / "models")]
    command += ["--version", version, "--seed", str(seed), "--resamples", "0", "--no-report"]
    trained = run_segstream([*command, *options], env=env)
    assert trained.returncode == 0, trained.stderr
    return trained


@dataclass
class Rollout:
    """Two workers holding the signing key, their topics, and three trained models."""

    kafka: Broker
    names: Names
    env: dict[str, str]
    workers: list[WorkerProcess]
    models: dict[str, Path]
    root: Path

    def publish(self, *args: str) -> str:
        """`segstream publish ARGS` with the signing key; its stdout."""
        return ok(["publish", *args], env=self.env)

    def listing(self) -> str:
        """What `segstream models` says."""
        return ok(["models"], env=self.env)

    def statuses(self) -> list[dict[str, Any]]:
        """Each worker's /health body."""
        return [worker.status() for worker in self.workers]

    def go_live(self, version: str) -> None:
        """Publish version live and wait until both workers have it.

        Each test ends with the workers having read what it published, so a wait for the
        version just published cannot be met by a state from before.
        """
        self.publish(str(self.models[version]))
        self.wait_for_version(version)

    def shadow(self, version: str) -> None:
        """Publish version as the shadow candidate and wait until both workers compare it."""
        self.publish(str(self.models[version]), "--shadow")
        poll(
            lambda: all((s["shadow"] or {}).get("candidate") == version for s in self.statuses()),
            f"both workers shadow {version}",
            timeout=10,
        )

    def wait_for_version(self, version: str, timeout: float = 5) -> float:
        """Seconds until every worker has version live; fails after timeout."""
        started = time.monotonic()
        poll(
            lambda: all((s["model"] or {}).get("version") == version for s in self.statuses()),
            f"both workers have {version} live",
            timeout,
            interval=0.1,
            explain=lambda: str([s["model"] for s in self.statuses()]),
        )
        return time.monotonic() - started

    def replay(self, name: str, n: int, seed: int) -> Path:
        """Replay n generated signups and wait until the workers have committed them all."""
        signups = write_signups(self.root / f"{name}.jsonl", n, seed=seed)
        ok(["replay", str(signups)], env=self.env)
        wait_until_consumed(self.kafka.bootstrap, self.names.app_id, self.names.input_topic)
        return signups

    def offline(self, version: str, signups: Path) -> dict[str, str]:
        """Segment id by source event id, as `segstream score` assigns them with version."""
        out = self.root / f"{signups.stem}-{version}.jsonl"
        command = ["score", "--model", str(self.models[version]), "--input", str(signups)]
        ok([*command, "--out", str(out)])
        return {
            row["source_event_id"]: row["segment_id"]
            for row in map(json.loads, out.read_text().splitlines())
        }


@pytest.fixture(scope="module")
def rollout(kafka: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rollout]:
    """Models v1, v2 and v3 (unsigned on disk: publishing with the key signs them), v1 live,
    and two workers with the key that have it live."""
    root = tmp_path_factory.mktemp("rollout")
    names = fresh_names()
    env = segstream_env(kafka, names, SEGSTREAM_MODEL_SIGNING_KEY=KEY)
    for n, seed in ((1, 11), (2, 22), (3, 33)):
        _train(root, seed, f"v{n}")
    models = {version: root / "models" / version for version in ("v1", "v2", "v3")}
    ok(["topics", "create"], env=env)
    ok(["publish", str(models["v1"])], env=env)
    start, started = worker_starter(kafka, names, root)
    try:
        workers = [start(None, SEGSTREAM_MODEL_SIGNING_KEY=KEY) for _ in range(2)]
        for worker in workers:
            assert worker.wait_ready()["model"]["version"] == "v1"
        yield Rollout(kafka, names, env, workers, models, root)
    finally:
        stop_all(started)


@dataclass(frozen=True)
class Swap:
    """What came out of a replay during which v2 replaced v1."""

    signups: Path
    assignments: list[TopicRecord]
    published_at: float  # seconds since the epoch
    switch_seconds: float
    consumed: list[int]  # per worker, for this replay


@pytest.fixture(scope="module")
def swap(rollout: Rollout) -> Swap:
    """Replay N_EVENTS signups at 2,000/s, the second half once the workers have read the first;
    publish v2 as the second half starts, so that it lands mid-stream however busy the machine
    is."""
    rollout.go_live("v1")
    before = [s["consumed"] for s in rollout.statuses()]
    signups = write_signups(rollout.root / "swap.jsonl", N_EVENTS, seed=5)
    lines = signups.read_bytes().splitlines(keepends=True)
    halves = [rollout.root / "swap-1.jsonl", rollout.root / "swap-2.jsonl"]
    halves[0].write_bytes(b"".join(lines[: N_EVENTS // 2]))
    halves[1].write_bytes(b"".join(lines[N_EVENTS // 2 :]))
    first = start_segstream(
        ["replay", str(halves[0]), "--rate", "2000"], rollout.env, rollout.root / "swap-1.log"
    )
    try:
        first.finish(timeout=120)
    finally:
        first.kill()
    poll(
        lambda: sum(s["consumed"] for s in rollout.statuses()) >= sum(before) + N_EVENTS // 2,
        "the workers read the first half",
        timeout=60,
    )
    replay = start_segstream(
        ["replay", str(halves[1]), "--rate", "2000"], rollout.env, rollout.root / "swap-2.log"
    )
    try:
        published_at = time.time()
        rollout.publish(str(rollout.models["v2"]))
        switch_seconds = rollout.wait_for_version("v2")
        replay.finish(timeout=120)
    finally:
        replay.kill()
    wait_until_consumed(rollout.kafka.bootstrap, rollout.names.app_id, rollout.names.input_topic)
    after = [s["consumed"] for s in rollout.statuses()]
    print(f"v1 -> v2 live on both workers after {switch_seconds:.2f} s")
    return Swap(
        signups,
        read_topic(rollout.kafka.bootstrap, rollout.names.output_topic),
        published_at,
        switch_seconds,
        [a - b for a, b in zip(after, before, strict=True)],
    )


def test_a_published_version_is_live_on_both_workers_within_5_seconds(swap: Swap) -> None:
    assert swap.switch_seconds <= 5


def test_no_event_is_lost_or_scored_twice_across_a_swap(swap: Swap) -> None:
    by_source = Counter(str(r.json()["source_event_id"]) for r in swap.assignments)
    expected = {json.loads(line)["event_id"] for line in swap.signups.read_text().splitlines()}
    assert set(by_source) == expected, "an event was lost"
    assert max(by_source.values()) == 1, "an event was scored twice"


def test_the_old_version_stops_scoring_within_5_seconds_of_a_swap(swap: Swap) -> None:
    versions = Counter(str(r.json()["model_version"]) for r in swap.assignments)
    assert versions["v1"] > 0
    assert versions["v2"] > 0
    late_v1 = [
        r
        for r in swap.assignments
        if r.json()["model_version"] == "v1" and r.timestamp > swap.published_at + 5
    ]
    assert not late_v1, f"{len(late_v1)} v1 assignments more than 5 s after publishing v2"


def test_every_assignment_of_a_swap_matches_offline_scoring_with_its_version(
    rollout: Rollout, swap: Swap
) -> None:
    expected = {v: rollout.offline(v, swap.signups) for v in ("v1", "v2")}
    wrong = [
        a
        for a in (r.json() for r in swap.assignments)
        if expected[str(a["model_version"])][str(a["source_event_id"])] != a["segment_id"]
    ]
    assert not wrong, f"{len(wrong)} assignments differ from offline scoring with their version"


def test_both_workers_share_the_replay(swap: Swap) -> None:
    assert all(n > 0 for n in swap.consumed), f"both workers take part: {swap.consumed}"
    assert sum(swap.consumed) == N_EVENTS


def _write_raw(bootstrap: str, topic: str, key: bytes, value: bytes) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, key=key, value=value)
        finally:
            await producer.stop()

    asyncio.run(send())


def test_a_tampered_or_unsigned_manifest_is_refused_and_the_live_version_stays(
    rollout: Rollout,
) -> None:
    rollout.go_live("v2")
    refused_before = [s["models_refused"] for s in rollout.statuses()]

    tampered = json.loads((rollout.models["v2"] / "manifest.json").read_text())
    tampered["version"] = "v2-tampered"
    tampered["signature"] = "0" * 64
    model_topic = rollout.names.model_topic
    _write_raw(
        rollout.kafka.bootstrap, model_topic, b"customer-segments", json.dumps(tampered).encode()
    )
    unsigned_env = segstream_env(rollout.kafka, rollout.names)
    ok(["publish", str(rollout.models["v3"])], env=unsigned_env)

    def refused_both() -> list[dict[str, Any]] | None:
        statuses = rollout.statuses()
        counts = [s["models_refused"] for s in statuses]
        done = all(n >= before + 2 for n, before in zip(counts, refused_before, strict=True))
        return statuses if done else None

    statuses = poll(refused_both, "both workers refuse both manifests", timeout=10)
    for status in statuses:
        assert status["model"]["version"] == "v2"
        refusal = str(status["last_refusal"])
        assert "signature" in refusal or "signed" in refusal, refusal


def test_a_shadow_candidate_is_compared_as_offline_scoring_says(rollout: Rollout) -> None:
    rollout.go_live("v2")
    rollout.shadow("v3")

    signups = rollout.replay("shadow", 3_000, seed=77)
    live, candidate = rollout.offline("v2", signups), rollout.offline("v3", signups)
    expected = Counter(f"{live[e]}->{candidate[e]}" for e in live if live[e] != candidate[e])
    figures = [s["shadow"] for s in rollout.statuses()]
    assert sum(f["compared"] for f in figures) == 3_000
    measured: Counter[str] = Counter()
    for f in figures:
        measured.update(f["pairs"])
    assert measured == expected

    # Workers report their figures to the model topic once a second.
    summary = f"shadow: 3000 events compared, {sum(expected.values())} in another segment"
    poll(lambda: summary in rollout.listing(), f"`segstream models` says {summary!r}", 15)


def test_rollback_puts_the_previous_version_live_for_new_assignments(rollout: Rollout) -> None:
    rollout.go_live("v1")
    rollout.go_live("v2")

    rollout.publish("--rollback")
    rollout.wait_for_version("v1")
    assert "live: v1" in rollout.listing()
    signups = rollout.replay("after-rollback", 200, seed=78)
    events = set(rollout.offline("v1", signups))
    versions = {
        r.json()["model_version"]
        for r in read_topic(rollout.kafka.bootstrap, rollout.names.output_topic)
        if r.json()["source_event_id"] in events
    }
    assert versions == {"v1"}


def test_promote_makes_the_candidate_live_everywhere(rollout: Rollout) -> None:
    rollout.go_live("v1")
    rollout.shadow("v3")

    ok(["promote", "v3"], env=rollout.env)
    rollout.wait_for_version("v3")
    listed = rollout.listing()
    assert "live: v3" in listed
    assert "candidate: none" in listed


def test_train_publish_creates_the_compacted_topic_and_goes_live(
    kafka: Broker, names: Names, tmp_path: Path
) -> None:
    env = segstream_env(kafka, names)
    trained = _train(tmp_path, 1, "first", "--publish", env=env)
    assert "published customer-segments first live" in trained.stderr

    async def cleanup_policy() -> str:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        await admin.start()
        try:
            resource = ConfigResource(ConfigResourceType.TOPIC, names.model_topic)
            (response,) = await admin.describe_configs([resource])
            entries = response.to_object()["resources"][0]["config_entries"]
            policy: str = next(
                e["config_value"] for e in entries if e["config_names"] == "cleanup.policy"
            )
            return policy
        finally:
            await admin.close()

    assert asyncio.run(cleanup_policy()) == "compact"
    assert "live: first" in ok(["models"], env=env)
