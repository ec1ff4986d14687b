"""On a 3-broker cluster, topics get the replication segstream is told to give them, and the
model topic (3 replicas, min.insync.replicas 2) survives the loss of the broker leading it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from tests.support import Broker, Names, poll, run_segstream, segstream_env, start_broker

# One process runs the whole module (make test-suite, pytest-xdist --dist loadgroup): its
# module-scoped fixtures are made once.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("cluster")]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """Three KRaft nodes (broker and controller each) from scripts/kafka-local --nodes 3."""
    cluster = start_broker(tmp_path_factory.mktemp("kafka-cluster"), "--nodes", "3")
    try:
        yield cluster
    finally:
        cluster.stop()


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

    leader = str(partition["leader"])
    cluster.control("kill", "--node", leader, timeout=60)
    try:
        # A fresh reader, as a worker that joins now would be, still finds the live model.
        def listed() -> bool:
            done = run_segstream(["models"], env=env, timeout=120)
            return done.returncode == 0 and f"live: {first}" in done.stdout

        poll(listed, f"`segstream models` says {first} is live", 60, interval=1)

        # Two replicas of three are still in sync: publishing goes on.
        second = tmp_path / "second"
        second.mkdir()
        manifest = (trained_model / "manifest.json").read_text()
        (second / "manifest.json").write_text(manifest.replace(first, "after-the-kill"))
        assert "live after-the-kill" in _ok(["publish", str(second)], env)
        assert "live: after-the-kill" in _ok(["models"], env)
    finally:
        cluster.control("resume", "--node", leader)
