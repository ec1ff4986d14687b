"""The harness's own Kafka clients, on librdkafka so that they take little of the machine.

Runs in bench/.venvs/confluent (not the product's environment), as a script:

- `probe.py watch BOOTSTRAP TOPIC --partitions P --expect N [--dump FILE]
  [--fetch-min-bytes B]`: a read_committed consumer of every partition from the beginning. It
  prints `{"ready": true}` once connected, a progress line a second, and, when it has seen N
  distinct keys, one line with the wall time it saw the last of them (`seen_at`), then exits.
  With --dump it writes `key<TAB>output append ms<TAB>ms seen` for the first record of every
  key.
- `probe.py produce BOOTSTRAP TOPIC RECORDS [--rate R] [--dump FILE]`: produces the
  `key<TAB>value` lines of RECORDS (as fast as it can, or R a second) and prints a summary.
  With --dump it writes `key<TAB>append ms` from each delivery report: on a topic with
  `message.timestamp.type=LogAppendTime` that is the broker's append time.

Wall times are `time.time()` in milliseconds, the same clock as the harness's and the
broker's on one machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

_PROGRESS_EVERY_S = 1.0


def _say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def _wait_connected(consumer: Consumer, topic: str, seconds: float = 30) -> None:
    """Return once a partition leader answers; a topic made a moment ago may not have one yet."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)
            return
        except KafkaException:
            # Not leader, or no metadata yet: both pass once the topic has settled.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def watch(
    bootstrap: str, topic: str, partitions: int, expect: int, dump: Path | None, min_bytes: int
) -> None:
    """Consume the topic read_committed until `expect` distinct keys were seen."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            # Never joined or committed: the partitions are assigned.
            "group.id": f"bench-probe-{topic}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            # A fetch returns once min_bytes are visible, or after 20 ms: with min_bytes 1 a
            # record is seen at once; larger, the broker answers at most ~50 fetches a second.
            "fetch.min.bytes": min_bytes,
            "fetch.wait.max.ms": 20,
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    _wait_connected(consumer, topic)
    _say(ready=True)
    keys: set[bytes | None] = set()
    seen = 0
    first_ms = last_ms = 0
    rows: list[str] = []
    now_ms = int(time.time() * 1000)
    next_progress = time.monotonic() + _PROGRESS_EVERY_S
    try:
        while len(keys) < expect:
            # poll returns as soon as a record is there; consume then takes what else is queued
            # without waiting (consume alone would wait for a full batch or its timeout).
            first = consumer.poll(0.1)
            messages = [] if first is None else [first, *consumer.consume(10_000, timeout=0)]
            now_ms = int(time.time() * 1000)
            if not messages:
                pass
            elif dump is None:
                # The lean path (throughput runs): no Python loop of our own per record.
                if any(message.error() is not None for message in messages):
                    raise RuntimeError(next(str(m.error()) for m in messages if m.error()))
                keys.update([message.key() for message in messages])
                stamps = [message.timestamp()[1] for message in messages]
                first_ms = min(first_ms or stamps[0], *stamps)
                last_ms = max(last_ms, *stamps)
            else:
                for message in messages:
                    if message.error() is not None:
                        raise RuntimeError(str(message.error()))
                    key, appended_ms = message.key(), message.timestamp()[1]
                    first_ms = min(first_ms or appended_ms, appended_ms)
                    last_ms = max(last_ms, appended_ms)
                    if key not in keys:
                        keys.add(key)
                        rows.append(f"{(key or b'').decode()}\t{appended_ms}\t{now_ms}\n")
            seen += len(messages)
            if time.monotonic() >= next_progress:
                _say(seen=seen, distinct=len(keys))
                next_progress += _PROGRESS_EVERY_S
        seen_at = now_ms / 1000
    finally:
        consumer.close()
    if dump is not None:
        dump.write_text("".join(rows))
    _say(
        done=True,
        seen_at=seen_at,
        seen=seen,
        distinct=len(keys),
        first_append_ms=first_ms,
        last_append_ms=last_ms,
    )


def produce(bootstrap: str, topic: str, records: Path, rate: float, dump: Path | None) -> None:
    """Produce every record of the file, paced at `rate` a second when rate > 0."""
    lines = [line.split(b"\t", 1) for line in records.read_bytes().splitlines() if line]
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            # Paced: librdkafka's default linger; a fill: larger batches.
            "linger.ms": 5 if rate > 0 else 20,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    appended: list[str] = []
    failures: list[str] = []

    def delivered(error: KafkaError | None, message: Any) -> None:
        if error is not None:
            failures.append(str(error))
        elif dump is not None:
            appended.append(f"{message.key().decode()}\t{message.timestamp()[1]}\n")

    def send(key: bytes, value: bytes) -> None:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=delivered)
                return
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.05)

    began = time.monotonic()
    if rate > 0:
        sent = 0
        while sent < len(lines):
            due = min(len(lines), int((time.monotonic() - began) * rate) + 1)
            for key, value in lines[sent:due]:
                send(key, value)
            sent = due
            producer.poll(0)
            time.sleep(0.001)
    else:
        for key, value in lines:
            send(key, value)
            if len(producer) > 100_000:
                producer.poll(0)
    remaining = producer.flush(120)
    seconds = time.monotonic() - began
    if failures or remaining:
        raise SystemExit(f"{len(failures)} failed, {remaining} undelivered: {failures[:3]}")
    if dump is not None:
        dump.write_text("".join(appended))
    _say(produced=len(lines), seconds=seconds, rate=len(lines) / seconds)


def main() -> None:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    watching = commands.add_parser("watch")
    watching.add_argument("bootstrap")
    watching.add_argument("topic")
    watching.add_argument("--partitions", type=int, required=True)
    watching.add_argument("--expect", type=int, required=True)
    watching.add_argument("--dump", type=Path)
    watching.add_argument("--fetch-min-bytes", type=int, default=1)
    producing = commands.add_parser("produce")
    producing.add_argument("bootstrap")
    producing.add_argument("topic")
    producing.add_argument("records", type=Path)
    producing.add_argument("--rate", type=float, default=0.0)
    producing.add_argument("--dump", type=Path)
    args = parser.parse_args()
    if args.command == "watch":
        watch(
            args.bootstrap,
            args.topic,
            args.partitions,
            args.expect,
            args.dump,
            args.fetch_min_bytes,
        )
    else:
        produce(args.bootstrap, args.topic, args.records, args.rate, args.dump)


if __name__ == "__main__":
    main()
