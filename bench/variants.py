"""Bench-only variants of `segstream worker`, to see where Faust's per-event time goes.

`python -m bench.variants` runs exactly `segstream worker` after patching stream_app.agents in
this process only; BENCH_VARIANT names the patches (comma-separated):

- faust-passthrough: every input record is sent on unchanged, with no decoding or scoring,
  through the worker's own Faust agent and send path: the floor of the Faust app itself.
- drain-unguarded: Faust's consumer hands each record to the streams by awaiting the
  callback alone, instead of `wait_first(callback(message), suspend_flow.wait())`, which
  creates four tasks and an `asyncio.wait` per record (faust/transport/consumer.py,
  `_drain_messages`). The guard is there so that a rebalance cannot deadlock a full stream
  buffer (faust-streaming#229), so this is unsafe in production; it measures what the guard
  costs. Faust being far slower than a bare aiokafka consumer is robinhood/faust#563.
- txn-linger-5ms: the per-partition transactional producers (exactly-once) get back the
  5 ms linger they had before, to show what dropping it bought.

Faust's own settings need no patch: Faust reads STREAM_BUFFER_MAXSIZE, PRODUCER_LINGER and
friends from the environment, which the harness sets per variant or with --worker-env.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any

from faust.transport.consumer import Consumer as FaustConsumer

import stream_app.agents as agents_module
import stream_app.transactions as transactions_module
from stream_app.pipeline import BatchOutcome, OutgoingRecord, SourceRecord


def _passthrough(records: Sequence[SourceRecord], *_args: Any, **_kwargs: Any) -> BatchOutcome:
    return BatchOutcome(
        assignments=[OutgoingRecord(key=r.key, value=r.value or b"") for r in records]
    )


async def _callback_only(_consumer: Any, callback: Any, *guards: Any, **_: Any) -> Any:
    for guard in guards:
        if asyncio.iscoroutine(guard):
            guard.close()
    return await callback


_TransactionalProducer = transactions_module.AIOKafkaProducer  # type: ignore[attr-defined]


def _lingering_producer(*args: Any, **kwargs: Any) -> Any:
    return _TransactionalProducer(*args, **{**kwargs, "linger_ms": 5})


def main() -> None:
    """Apply the variants named in BENCH_VARIANT, then run `segstream worker`."""
    variants = {v for v in os.environ.get("BENCH_VARIANT", "").split(",") if v}
    unknown = variants - {"faust-passthrough", "drain-unguarded", "txn-linger-5ms"}
    if unknown:
        raise SystemExit(f"unknown variants: {sorted(unknown)}")
    if "faust-passthrough" in variants:
        agents_module.process_records = _passthrough  # type: ignore[attr-defined]
    if "drain-unguarded" in variants:
        FaustConsumer.wait_first = _callback_only  # type: ignore[method-assign,assignment]
    if "txn-linger-5ms" in variants:
        transactions_module.AIOKafkaProducer = _lingering_producer  # type: ignore[attr-defined]
    from stream_app.cli import main as segstream_main

    sys.argv = ["segstream", "worker"]
    segstream_main()


if __name__ == "__main__":
    main()
