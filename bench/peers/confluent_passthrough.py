"""confluent-kafka (librdkafka) consume -> produce passthrough: the ceiling of the client.

Each record is produced unchanged (same key, same bytes); no decoding or scoring. Records are
consumed in batches as the worker takes them (SEGSTREAM_BATCH_SIZE records or
SEGSTREAM_BATCH_WINDOW_MS), and about every 3 s the producer is flushed and the consumed
offsets committed, so nothing is lost (at-least-once). Everything else is librdkafka's default.

Runs in bench/.venvs/confluent as `python bench/peers/confluent_passthrough.py`, configured by
SEGSTREAM_BOOTSTRAP_SERVERS, SEGSTREAM_INPUT_TOPIC, SEGSTREAM_OUTPUT_TOPIC and SEGSTREAM_APP_ID
(the consumer group); it stops on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import time
from types import FrameType

from confluent_kafka import Consumer, KafkaException, Producer

_COMMIT_INTERVAL_S = 3.0
_stopping = False


def _stop(signum: int, frame: FrameType | None) -> None:
    global _stopping  # the signal handler's only way to reach the loop
    _stopping = True


def main() -> None:
    """Forward records from the input topic to the output topic until SIGTERM."""
    env = os.environ
    bootstrap = env["SEGSTREAM_BOOTSTRAP_SERVERS"]
    output_topic = env["SEGSTREAM_OUTPUT_TOPIC"]
    batch_size = int(env.get("SEGSTREAM_BATCH_SIZE", "500"))
    window_s = int(env.get("SEGSTREAM_BATCH_WINDOW_MS", "10")) / 1000
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": env["SEGSTREAM_APP_ID"],
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    producer = Producer({"bootstrap.servers": bootstrap})
    consumer.subscribe([env["SEGSTREAM_INPUT_TOPIC"]])
    uncommitted = 0
    last_commit = time.monotonic()
    try:
        while not _stopping:
            for message in consumer.consume(num_messages=batch_size, timeout=window_s):
                if message.error() is not None:
                    raise KafkaException(message.error())
                while True:
                    try:
                        producer.produce(output_topic, value=message.value(), key=message.key())
                        break
                    except BufferError:  # the local queue is full: let deliveries drain it
                        producer.poll(0.01)
                uncommitted += 1
            producer.poll(0)
            if uncommitted and time.monotonic() - last_commit >= _COMMIT_INTERVAL_S:
                producer.flush()
                consumer.commit(asynchronous=False)
                uncommitted, last_commit = 0, time.monotonic()
    finally:
        producer.flush(10)
        if uncommitted:
            consumer.commit(asynchronous=False)
        consumer.close()


if __name__ == "__main__":
    main()
