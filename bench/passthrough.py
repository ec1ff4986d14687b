"""Bare aiokafka consume -> produce passthrough: the ceiling for a Python Kafka pipeline.

Same batching as the worker (up to SEGSTREAM_BATCH_SIZE records or SEGSTREAM_BATCH_WINDOW_MS),
the same consumer and producer settings Faust gives aiokafka (acks=all, linger 0, 16 KiB
batches, 1 MiB partition fetches, commits every 2.8 s), and no decoding or scoring: each
record is sent on unchanged. Run as `python -m bench.passthrough`; configured by environment.

With BENCH_SCORE=1 the same loop runs segstream's own `process_records` on each batch and
sends the assignments and dead letters instead: the worker's logic without Faust, to show how
much of the worker's cost is Faust's (a bench-only comparison, not a second worker).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from schemas.model_files import load_manifest
from stream_app.pipeline import SourceRecord, process_records
from stream_app.scorer import Scorer

_COMMIT_INTERVAL = 2.8  # Faust's broker_commit_interval default


async def run() -> None:
    """Forward records from the input topic to the output topic until SIGTERM."""
    env = os.environ
    bootstrap = env["SEGSTREAM_BOOTSTRAP_SERVERS"]
    batch_size = int(env.get("SEGSTREAM_BATCH_SIZE", "500"))
    window_ms = int(env.get("SEGSTREAM_BATCH_WINDOW_MS", "10"))
    output_topic = env["SEGSTREAM_OUTPUT_TOPIC"]
    score = env.get("BENCH_SCORE") == "1"
    group = env["SEGSTREAM_APP_ID"]

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    consumer = AIOKafkaConsumer(
        env["SEGSTREAM_INPUT_TOPIC"],
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id="passthrough",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=1024**2,
        fetch_max_wait_ms=1500,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        linger_ms=int(env.get("PRODUCER_LINGER_MS", "0")),
        max_batch_size=16_384,
        max_request_size=1_000_000,
    )
    await consumer.start()
    await producer.start()
    try:
        scorer = Scorer(load_manifest(Path(env["SEGSTREAM_MODEL_PATH"]))) if score else None
        dlq_topic = env.get("SEGSTREAM_DLQ_TOPIC", output_topic + ".dlq")
        last_commit = time.monotonic()
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=window_ms, max_records=batch_size)
            for messages in batches.values():
                if scorer is None:
                    for message in messages:
                        await producer.send(output_topic, value=message.value, key=message.key)
                    continue
                records = [
                    SourceRecord(m.key, m.value, m.topic, m.partition, m.offset, m.timestamp / 1000)
                    for m in messages
                ]
                outcome = process_records(
                    records, scorer, consumer_group=group, max_event_bytes=65_536
                )
                for topic, outgoing in (
                    (output_topic, outcome.assignments),
                    (dlq_topic, outcome.dead_letters),
                ):
                    for record in outgoing:
                        await producer.send(
                            topic, value=record.value, key=record.key, headers=record.headers
                        )
            if time.monotonic() - last_commit >= _COMMIT_INTERVAL:
                await producer.flush()
                await consumer.commit()
                last_commit = time.monotonic()
    finally:
        await producer.stop()
        await consumer.stop()


if __name__ == "__main__":
    asyncio.run(run())
