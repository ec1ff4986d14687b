"""`python -m bench.state`: customer state on a broker of its own: restore, re-segmentation, memory.

1. Restore: 1,000,000 customers in one partition of the state topic; a worker that takes the
   partition over replays them into its store. Measured: process start to the assignment of
   a signup waiting on that partition (the worker is scoring), and the restore itself.
2. Re-segmentation: with those customers in state, a new model is published while signups
   keep arriving at a fixed rate. Measured: publish to the last expected SegmentChanged
   (reason model_change) committed, the number expected being the customers the two
   models score differently offline; and the input's end-to-end latency meanwhile.
3. Memory: 10,000,000 customers over the four partitions restored into one worker; its
   peak and settled resident memory.

Writes bench/results/state-latest.{json,md}; scripts/readme-bench puts the Markdown into the
README.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import numpy as np
import typer
from confluent_kafka import Consumer, Producer, TopicPartition

from bench.harness import cpu_seconds, peak_rss_mb
from bench.kafka import LocalBroker
from schemas import ModelManifest
from stream_app.kafka_io import COMPACTED, TopicSpec, ensure_topics
from stream_app.scorer import Scorer
from stream_app.settings import Settings
from tests.support import free_port

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PARTITIONS = 4


def _train(work: Path, seed: int, version: str) -> Path:
    customers = work / f"customers-{seed}.csv"
    segstream = str(BIN / "segstream")
    generate = ["generate", "customers", "--n", "2000", "--seed", str(seed)]
    subprocess.run(
        [segstream, *generate, "--out", str(customers)],
        check=True,
        capture_output=True,
    )
    options = ["--k", "4", "--seed", str(seed), "--version", version, "--no-report"]
    trained = subprocess.run(
        [segstream, "train", "--data", str(customers), *options, "--out", str(work / "models")],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(trained.stdout.strip().splitlines()[-1])


def _customers(n: int, seed: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    ages = np.round(rng.uniform(18, 80, n), 1)
    incomes = np.round(rng.uniform(10_000, 150_000, n), 0)
    return ages, incomes


def _state_values(
    prefix: str, ages: Any, incomes: Any, scorer: Scorer
) -> Iterator[tuple[bytes, bytes]]:
    """CustomerState records of generated customers, scored by scorer's model."""
    manifest = scorer.manifest
    labels = scorer.score(np.column_stack([ages, incomes])).labels
    segments = [(s.id, s.name) for s in manifest.segments]
    at = "2026-01-01T00:00:00Z"
    for i, (age, income, label) in enumerate(
        zip(ages.tolist(), incomes.tolist(), labels.tolist(), strict=True)
    ):
        customer = f"{prefix}{i:08d}"
        segment_id, segment_name = segments[label]
        yield (
            customer.encode(),
            (
                f'{{"customer_id":"{customer}","age":{age},"annual_income":{income},'
                f'"gender":"unknown","segment_id":"{segment_id}","segment_name":"{segment_name}",'
                f'"model_version":"{manifest.version}","since":"{at}","updated_at":"{at}",'
                f'"revision":1,"source_event_id":"s-{customer}"}}'
            ).encode(),
        )


def _produce(
    bootstrap: str, topic: str, records: Iterator[tuple[bytes, bytes]], partitions: int
) -> int:
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.num.messages": 10_000}
    )
    n = 0
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key, partition=n % partitions)
                break
            except BufferError:
                producer.poll(0.05)
        n += 1
        if n % 10_000 == 0:
            producer.poll(0)
    producer.flush(120)
    return n


def _create_topics(bootstrap: str, uid: str) -> dict[str, str]:
    names = {
        "SEGSTREAM_INPUT_TOPIC": f"signups-{uid}",
        "SEGSTREAM_OUTPUT_TOPIC": f"segments-{uid}",
        "SEGSTREAM_DLQ_TOPIC": f"dlq-{uid}",
        "SEGSTREAM_STATE_TOPIC": f"state-{uid}",
        "SEGSTREAM_CHANGES_TOPIC": f"changes-{uid}",
        "SEGSTREAM_MODEL_TOPIC": f"models-{uid}",
        "SEGSTREAM_APP_ID": f"bench-state-{uid}",
    }
    settings = Settings(bootstrap_servers=bootstrap, topic_replication_factor=1)
    specs = [
        TopicSpec(names[f"SEGSTREAM_{kind}_TOPIC"], PARTITIONS)
        for kind in ("INPUT", "OUTPUT", "DLQ", "CHANGES")
    ]
    specs.append(TopicSpec(names["SEGSTREAM_STATE_TOPIC"], PARTITIONS, COMPACTED))
    asyncio.run(ensure_topics(settings, specs))
    return names


class _Worker:
    def __init__(self, bootstrap: str, names: dict[str, str], work: Path, **extra: str) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEGSTREAM_")}
        env.update(
            names,
            SEGSTREAM_BOOTSTRAP_SERVERS=bootstrap,
            SEGSTREAM_WEB_PORT=str(self.port),
            SEGSTREAM_DATA_DIR=str(work / f"data-{names['SEGSTREAM_APP_ID']}"),
            SEGSTREAM_CREATE_TOPICS="true",
            PYTHONPATH=str(REPO),
            **extra,
        )
        self.log = work / f"worker-{names['SEGSTREAM_APP_ID']}.log"
        self.started = time.monotonic()
        with self.log.open("wb") as handle:
            self.process = subprocess.Popen(
                [str(BIN / "segstream"), "worker"], env=env, stdout=handle, stderr=subprocess.STDOUT
            )

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=5).json()
        return body

    def wait_ready(self, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/ready", timeout=2).status_code == 200:
                    return time.monotonic() - self.started
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready in {timeout} s: {self.log.read_text()[-2000:]}")

    def wait_restored(self, partitions: int, timeout: float) -> float:
        """Seconds from process start until it owns `partitions` partitions, all restored."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log.read_text()[-2000:]}")
            try:
                plane = self.health()["data_plane"]
                if len(plane["partitions"]) == partitions and plane["restoring"] is None:
                    return time.monotonic() - self.started
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"not restored in {timeout} s: {self.log.read_text()[-2000:]}")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _publish(bootstrap: str, names: dict[str, str], model: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGSTREAM_")}
    env.update(names, SEGSTREAM_BOOTSTRAP_SERVERS=bootstrap)
    subprocess.run([str(BIN / "segstream"), "publish", str(model)], env=env, check=True)


def _signup(customer: str, partition_hint: int) -> bytes:
    del partition_hint
    now = datetime.now(UTC).isoformat()
    return json.dumps(
        {
            "event_id": f"e-{customer}",
            "customer_id": customer,
            "age": 33.0,
            "annual_income": 40_000.0,
            "signed_up_at": now,
        }
    ).encode()


def _count(bootstrap: str, topic: str, want: Any, until: int, timeout: float) -> tuple[int, float]:
    """Read topic (read_committed) until `until` records satisfy want; (count, seconds)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-count-{time.monotonic_ns()}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    began = time.monotonic()
    n = 0
    try:
        while n < until and time.monotonic() - began < timeout:
            for message in consumer.consume(10_000, 0.5):
                if message.error() is None and want(message.value()):
                    n += 1
    finally:
        consumer.close()
    return n, time.monotonic() - began


def restore_and_resegment(
    bootstrap: str, work: Path, v1: Path, v2: Path, customers: int, rate: float
) -> dict[str, Any]:
    """Sections 1 and 2 on one worker."""
    names = _create_topics(bootstrap, "restore")
    s1 = Scorer(ModelManifest.model_validate_json((v1 / "manifest.json").read_text()))
    s2 = Scorer(ModelManifest.model_validate_json((v2 / "manifest.json").read_text()))
    ages, incomes = _customers(customers, seed=3)
    began = time.monotonic()
    _produce(bootstrap, names["SEGSTREAM_STATE_TOPIC"], _state_values("r", ages, incomes, s1), 1)
    produced_s = time.monotonic() - began
    # A signup waiting on partition 0: scored once the partition's 1,000,000 are restored.
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(names["SEGSTREAM_INPUT_TOPIC"], _signup("probe-0", 0), b"probe-0", 0)
    producer.flush(10)
    _publish(bootstrap, names, v1)
    worker = _Worker(bootstrap, names, work, SEGSTREAM_RESTORE_TIMEOUT_S="600")
    try:
        found, _ = _count(
            bootstrap, names["SEGSTREAM_OUTPUT_TOPIC"], lambda v: b"probe-0" in v, 1, 300
        )
        scoring_s = time.monotonic() - worker.started
        assert found == 1, "the probe signup was never scored"
        ready_s = worker.wait_ready(300)
        log = worker.log.read_text()
        restore_line = next(
            line for line in log.splitlines() if "[0] ready:" in line and "replayed" in line
        )
        rss_after_restore = worker.rss_mb()

        # Section 2: publish v2 while signups arrive at `rate`.
        labels1 = s1.score(np.column_stack([ages, incomes])).labels
        labels2 = s2.score(np.column_stack([ages, incomes])).labels
        ids1 = np.array([s.id for s in s1.manifest.segments])[labels1]
        ids2 = np.array([s.id for s in s2.manifest.segments])[labels2]
        expected = int((ids1 != ids2).sum())
        stop = threading.Event()
        sent = [0]

        def feed() -> None:
            feeder = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
            start = time.monotonic()
            while not stop.is_set():
                due = int((time.monotonic() - start) * rate)
                while sent[0] < due:
                    customer = f"live-{sent[0]}"
                    feeder.produce(
                        names["SEGSTREAM_INPUT_TOPIC"], _signup(customer, 0), customer.encode()
                    )
                    sent[0] += 1
                feeder.poll(0.01)
            feeder.flush(30)

        feeding = threading.Thread(target=feed)
        feeding.start()
        time.sleep(2)
        cpu_before = cpu_seconds(worker.process.pid)
        published = time.monotonic()
        _publish(bootstrap, names, v2)
        changed, _ = _count(
            bootstrap,
            names["SEGSTREAM_CHANGES_TOPIC"],
            lambda v: b'"model_change"' in v and b'"v2"' in v and b'"customer_id":"r' in v,
            expected,
            600,
        )
        reseg_s = time.monotonic() - published
        cpu_used = cpu_seconds(worker.process.pid) - cpu_before
        stop.set()
        feeding.join()
        health = worker.health()
        # The input kept flowing: every live signup was assigned.
        assigned, _ = _count(
            bootstrap, names["SEGSTREAM_OUTPUT_TOPIC"], lambda v: b"live-" in v, sent[0], 120
        )
        return {
            "restore": {
                "customers": customers,
                "produce_seconds": produced_s,
                "process_start_to_scoring_s": scoring_s,
                "process_start_to_ready_s": ready_s,
                "restore_log": restore_line.split("segstream: ", 1)[-1],
                "rss_mb_after_restore": rss_after_restore,
            },
            "resegment": {
                "customers": customers,
                "expected_changes": expected,
                "changes_seen": changed,
                "seconds": reseg_s,
                "customers_per_s": customers / reseg_s,
                "worker_cpu_s": cpu_used,
                "input_rate": rate,
                "input_sent": sent[0],
                "input_assigned": assigned,
                "status": health["data_plane"]["resegment"],
            },
        }
    finally:
        worker.stop()


def memory(bootstrap: str, work: Path, v1: Path, customers: int) -> dict[str, Any]:
    """Section 3: customers spread over the four partitions, restored into one worker."""
    names = _create_topics(bootstrap, "memory")
    s1 = Scorer(ModelManifest.model_validate_json((v1 / "manifest.json").read_text()))
    ages, incomes = _customers(customers, seed=4)
    began = time.monotonic()
    _produce(bootstrap, names["SEGSTREAM_STATE_TOPIC"], _state_values("m", ages, incomes, s1), 4)
    produced_s = time.monotonic() - began
    _publish(bootstrap, names, v1)
    worker = _Worker(bootstrap, names, work, SEGSTREAM_RESTORE_TIMEOUT_S="1200")
    try:
        ready_s = worker.wait_restored(PARTITIONS, 1800)
        settled = [worker.rss_mb()]
        for _ in range(10):
            time.sleep(1)
            settled.append(worker.rss_mb())
        health = worker.health()
        return {
            "customers": customers,
            "produce_seconds": produced_s,
            "process_start_to_restored_s": ready_s,
            "restore_log": [
                line.split("segstream: ", 1)[-1]
                for line in worker.log.read_text().splitlines()
                if "replayed in" in line
            ],
            "rss_mb_settled": max(settled),
            "rss_mb_peak": peak_rss_mb(worker.process.pid),
            "cpu_s": cpu_seconds(worker.process.pid),
            "partitions": health["data_plane"]["partitions"],
        }
    finally:
        worker.stop()


def _markdown(results: dict[str, Any]) -> str:
    restore, reseg, mem = results["restore"], results["resegment"], results["memory"]
    m = results["machine"]
    met = {
        "restore": restore["process_start_to_scoring_s"] <= 60,
        "resegment": reseg["seconds"] <= 60 and reseg["changes_seen"] == reseg["expected_changes"],
        "memory": mem["rss_mb_peak"] <= 1024,
    }
    return "\n".join(
        [
            "### Customer state (`python -m bench.state`, part of `make bench`)",
            "",
            f"{m['cores']} cores {m['cpu']}, Python {m['python']}, one local Kafka broker; "
            f"at {results['revision']}, {results['date']}; load average at start "
            f"{m['load_average_at_start'][0]:.2f}.",
            "",
            "| figure | measured | target | met |",
            "| --- | --- | --- | --- |",
            f"| restore: a worker taking a partition with {restore['customers']:,} customers, "
            "process start to scoring a signup on it | "
            f"{restore['process_start_to_scoring_s']:.1f} s ({restore['restore_log']}) | <= 60 s "
            f"| {'yes' if met['restore'] else 'NO'} |",
            f"| re-segmentation: {reseg['customers']:,} customers re-scored, "
            f"{reseg['expected_changes']:,} changes emitted, signups arriving at "
            f"{reseg['input_rate']:,.0f}/s | {reseg['seconds']:.1f} s "
            f"({reseg['customers_per_s']:,.0f} customers/s; {reseg['changes_seen']:,} changes "
            f"seen; {reseg['input_assigned']:,} of {reseg['input_sent']:,} signups meanwhile "
            "assigned) | <= 60 s | " + ("yes" if met["resegment"] else "NO") + " |",
            f"| memory: {mem['customers']:,} customers in state on one worker | "
            f"peak RSS {mem['rss_mb_peak']:,.0f} MiB, settled {mem['rss_mb_settled']:,.0f} MiB; "
            f"all restored {mem['process_start_to_restored_s']:.0f} s after process start "
            "| <= 1024 MiB | " + ("yes" if met["memory"] else "NO") + " |",
            "",
        ]
    )


def main(
    customers: Annotated[int, typer.Option(help="customers in the restore section")] = 1_000_000,
    memory_customers: Annotated[
        int, typer.Option(help="customers in the memory section")
    ] = 10_000_000,
    rate: Annotated[float, typer.Option(help="signups/s during the re-segmentation")] = 2000,
    out: Annotated[Path, typer.Option()] = REPO / "bench" / "results",
) -> None:
    """Run the three customer-state sections on a broker of its own."""
    from bench.__main__ import _machine, _revision

    work = Path(os.environ.get("BENCH_WORK", "/tmp")) / f"bench-state-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    broker = LocalBroker(work / "kafka")
    bootstrap = broker.start()
    try:
        started = time.monotonic()
        v1, v2 = _train(work, 1, "v1"), _train(work, 5, "v2")
        results: dict[str, Any] = {
            "machine": _machine(broker),
            "revision": _revision(),
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        }
        results.update(restore_and_resegment(bootstrap, work, v1, v2, customers, rate))
        print(json.dumps(results, indent=2, default=str), flush=True)
        results["memory"] = memory(bootstrap, work, v1, memory_customers)
        results["duration_s"] = time.monotonic() - started
    finally:
        broker.stop()
    out.mkdir(parents=True, exist_ok=True)
    (out / "state-latest.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    text = _markdown(results)
    (out / "state-latest.md").write_text(text)
    print(text)


if __name__ == "__main__":
    typer.run(main)
