"""On a 3-broker cluster, topics get the replication segstream is told to give them, and the
model topic (3 replicas, min.insync.replicas 2) survives the loss of the broker leading it."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.conftest import KAFKA_LOCAL, Broker, Names, run_segstream, segstream_env

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """Three KRaft nodes (broker and controller each) from scripts/kafka-local --nodes 3."""
    state_dir = tmp_path_factory.mktemp("kafka-cluster")
    done = subprocess.run(
        [str(KAFKA_LOCAL), "start", str(state_dir), "--nodes", "3"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"kafka-local start --nodes 3 failed ({done.returncode}): {done.stderr[-2000:]}"
        )
    try:
        yield Broker(bootstrap=done.stdout.strip(), state_dir=state_dir)
    finally:
        subprocess.run([str(KAFKA_LOCAL), "stop", str(state_dir)], check=False, timeout=120)


def _describe(bootstrap: str, topic: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The topic's partitions (leader, replicas, isr) and its configs."""

    async def describe() -> tuple[list[dict[str, Any]], dict[str, str]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            (described,) = await admin.describe_topics([topic])
            (response,) = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic)]
            )
            entries = response.to_object()["resources"][0]["config_entries"]
            configs = {e["config_names"]: e["config_value"] for e in entries}
            return described["partitions"], configs
        finally:
            await admin.close()

    return asyncio.run(describe())


def _ok(args: list[str], env: dict[str, str]) -> str:
    done = run_segstream(args, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_topics_take_the_brokers_default_replication_unless_told_otherwise(
    cluster: Broker, names: Names
) -> None:
    env = segstream_env(cluster, names)
    _ok(["topics", "create"], env)
    partitions, configs = _describe(cluster.bootstrap, names.input_topic)
    # kafka-local's cluster sets default.replication.factor=2 and min.insync.replicas=1.
    assert {len(p["replicas"]) for p in partitions} == {2}
    assert configs["min.insync.replicas"] == "1"

    told = segstream_env(
        cluster,
        names,
        SEGSTREAM_OUTPUT_TOPIC=f"{names.output_topic}-replicated",
        SEGSTREAM_TOPIC_REPLICATION_FACTOR="3",
        SEGSTREAM_TOPIC_MIN_INSYNC_REPLICAS="2",
    )
    assert f"{names.output_topic}-replicated: created" in _ok(["topics", "create"], told)
    partitions, configs = _describe(cluster.bootstrap, f"{names.output_topic}-replicated")
    assert {len(p["replicas"]) for p in partitions} == {3}
    assert configs["min.insync.replicas"] == "2"


def test_more_replicas_than_brokers_is_one_clear_error(cluster: Broker, names: Names) -> None:
    env = segstream_env(cluster, names, SEGSTREAM_TOPIC_REPLICATION_FACTOR="5")
    done = run_segstream(["topics", "create"], env=env, timeout=120)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert "creating topic" in line
    assert "5 replicas" in line


def test_the_model_topic_survives_the_loss_of_its_leader(
    cluster: Broker, names: Names, trained_model: Path, tmp_path: Path
) -> None:
    env = segstream_env(
        cluster,
        names,
        SEGSTREAM_TOPIC_REPLICATION_FACTOR="3",
        SEGSTREAM_TOPIC_MIN_INSYNC_REPLICAS="2",
    )
    first = trained_model.name
    _ok(["publish", str(trained_model)], env)
    (partition,), configs = _describe(cluster.bootstrap, names.model_topic)
    assert sorted(partition["replicas"]) == [1, 2, 3]
    assert configs["min.insync.replicas"] == "2"
    assert configs["cleanup.policy"] == "compact"

    leader = partition["leader"]
    killed = subprocess.run(
        [str(KAFKA_LOCAL), "kill", str(cluster.state_dir), "--node", str(leader)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert killed.returncode == 0, killed.stderr
    try:
        # A fresh reader, as a worker that joins now would be, still finds the live model.
        deadline = time.monotonic() + 60
        listed = ""
        while time.monotonic() < deadline:
            done = run_segstream(["models"], env=env, timeout=120)
            listed = done.stdout
            if done.returncode == 0 and f"live: {first}" in listed:
                break
            time.sleep(1)
        assert f"live: {first}" in listed, listed

        # Two replicas of three are still in sync: publishing goes on.
        second = tmp_path / "second"
        second.mkdir()
        manifest = (trained_model / "manifest.json").read_text()
        (second / "manifest.json").write_text(manifest.replace(first, "after-the-kill"))
        assert "live after-the-kill" in _ok(["publish", str(second)], env)
        assert "live: after-the-kill" in _ok(["models"], env)
    finally:
        resumed = subprocess.run(
            [str(KAFKA_LOCAL), "resume", str(cluster.state_dir), "--node", str(leader)],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert resumed.returncode == 0, resumed.stderr
