"""Bench-only variants of `segstream worker`, to see where Faust's per-event time goes.

`python -m bench.variants` runs exactly `segstream worker` after patching stream_app.agents in
this process only; BENCH_VARIANT names the patches (comma-separated):

- faust-passthrough: every input record is sent on unchanged, with no decoding or scoring,
  through the worker's own Faust agent and send path: the floor of the Faust app itself.
- producer-send: assignments go straight to Faust's producer (`app.producer.send`), skipping
  the per-record Topic.send / FutureMessage path. Offsets are still committed only after
  Faust's commit has flushed that producer, so delivery stays at-least-once. (Only used with
  SEGSTREAM_PROCESSING_GUARANTEE=at_least_once; exactly-once sends through transactions.)
- txn-linger-5ms: the per-partition transactional producers (exactly-once) get back the
  5 ms linger they had before, to show what dropping it bought.

Producer settings need no patch: Faust reads PRODUCER_LINGER, PRODUCER_MAX_BATCH_SIZE and
friends from the environment, which the harness sets with --worker-env.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import stream_app.agents as agents_module
import stream_app.transactions as transactions_module
from stream_app.pipeline import BatchOutcome, OutgoingRecord, SourceRecord


def _passthrough(records: Sequence[SourceRecord], *_args: Any, **_kwargs: Any) -> BatchOutcome:
    return BatchOutcome(
        assignments=[OutgoingRecord(key=r.key, value=r.value or b"") for r in records]
    )


async def _producer_send(topic: Any, records: Sequence[OutgoingRecord]) -> None:
    producer = topic.app.producer
    name = topic.get_topic_name()
    for record in records:
        await producer.send(name, record.key, record.value, None, None, record.headers)


_TransactionalProducer = transactions_module.AIOKafkaProducer


def _lingering_producer(*args: Any, **kwargs: Any) -> Any:
    return _TransactionalProducer(*args, **{**kwargs, "linger_ms": 5})


def main() -> None:
    """Apply the variants named in BENCH_VARIANT, then run `segstream worker`."""
    variants = {v for v in os.environ.get("BENCH_VARIANT", "").split(",") if v}
    unknown = variants - {"faust-passthrough", "producer-send", "txn-linger-5ms"}
    if unknown:
        raise SystemExit(f"unknown variants: {sorted(unknown)}")
    if "faust-passthrough" in variants:
        agents_module.process_records = _passthrough  # type: ignore[assignment]
    if "producer-send" in variants:
        agents_module._send_all = _producer_send
    if "txn-linger-5ms" in variants:
        transactions_module.AIOKafkaProducer = _lingering_producer  # type: ignore[misc]
    from stream_app.cli import main as segstream_main

    sys.argv = ["segstream", "worker"]
    segstream_main()


if __name__ == "__main__":
    main()
