"""Exactly-once output: each input partition's results and offsets commit in one transaction.

faust-streaming's own exactly_once mode has open reports of duplicates after a kill
(faust-streaming#517) and on rebalance (faust-streaming#323), and it picks the transactional
producer from the event being processed, which does not fit batches spanning partitions. So
segstream runs its own consume-transform-produce transactions, the classic Kafka way: one
transactional producer per input partition, its transactional.id derived from the consumer
group, topic and partition. Whoever owns a partition next initialises the same id, which
aborts any transaction a crashed owner left open and fences a zombie owner out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from stream_app.pipeline import OutgoingRecord
from stream_app.settings import Settings

__all__ = ["PartitionTransactions"]

log = logging.getLogger(__name__)


class PartitionTransactions:
    """Transactional producers for the input partitions this worker owns."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producers: dict[TopicPartition, AIOKafkaProducer] = {}
        self._locks: dict[TopicPartition, asyncio.Lock] = {}
        self._revoked: set[TopicPartition] = set()

    def transactional_id(self, tp: TopicPartition) -> str:
        """Stable per (consumer group, input topic, partition), whichever worker owns it."""
        return f"{self.settings.app_id}-{tp.topic}-{tp.partition}"

    async def _producer(self, tp: TopicPartition) -> AIOKafkaProducer:
        producer = self._producers.get(tp)
        if producer is None:
            producer = AIOKafkaProducer(
                **self.settings.kafka_client_options(),
                transactional_id=self.transactional_id(tp),
                enable_idempotence=True,
                acks="all",
                # Each transaction awaits its own sends at once, so lingering only adds delay.
                linger_ms=0,
            )
            await producer.start()  # initialises the id: aborts and fences any earlier owner
            self._producers[tp] = producer
        return producer

    async def commit(
        self,
        tp: TopicPartition,
        outgoing: Sequence[tuple[str, OutgoingRecord]],
        next_offset: int,
    ) -> bool:
        """Produce outgoing and commit next_offset for tp atomically; False if tp was revoked."""
        lock = self._locks.setdefault(tp, asyncio.Lock())
        async with lock:
            if tp in self._revoked:
                return False
            producer = await self._producer(tp)
            try:
                async with producer.transaction():
                    sent = [
                        await producer.send(
                            topic, value=record.value, key=record.key, headers=record.headers
                        )
                        for topic, record in outgoing
                    ]
                    await asyncio.gather(*sent)
                    await producer.send_offsets_to_transaction(
                        {tp: next_offset}, self.settings.app_id
                    )
            except KafkaError:
                # A fenced or broken producer cannot be reused; the next owner (or this
                # worker's next attempt) starts a fresh one, aborting what is left open.
                await self._drop(tp)
                raise
        return True

    def assigned(self, tps: Iterable[TopicPartition]) -> None:
        """Partitions given to this worker may be committed again."""
        self._revoked.difference_update(tps)

    async def revoke(self, tps: Iterable[TopicPartition]) -> None:
        """Stop committing for partitions taken away; waits for a transaction in flight."""
        for tp in tps:
            self._revoked.add(tp)
            async with self._locks.setdefault(tp, asyncio.Lock()):
                await self._drop(tp)

    async def _drop(self, tp: TopicPartition) -> None:
        producer = self._producers.pop(tp, None)
        if producer is not None:
            try:
                await producer.stop()
            except KafkaError as exc:
                log.warning("segstream: closing the producer of %s failed: %r", tp, exc)

    async def close(self) -> None:
        """Close every producer (open transactions are aborted by the next owner)."""
        await self.revoke(list(self._producers))
