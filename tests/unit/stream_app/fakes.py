"""Stand-ins for librdkafka's messages, consumer and a delivery guarantee, for broker-less tests.

The real clients are exercised against the real broker in tests/integration and
tests/reliability; these only let the data plane's bookkeeping be tested alone.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import TopicPartition

from stream_app.audiences import PartitionStore
from stream_app.dataplane import DataPlane
from stream_app.metrics import WorkerMetrics
from stream_app.pipeline import OutgoingRecord
from stream_app.settings import Settings
from stream_app.state import WorkerState


@dataclass
class FakeMessage:
    """A consumed record as confluent_kafka.Message presents it."""

    _topic: str
    _partition: int
    _offset: int
    _key: bytes | None
    _value: bytes | None
    _timestamp_ms: int = 1_700_000_000_000

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return 1, self._timestamp_ms  # TIMESTAMP_CREATE_TIME


@dataclass
class RecordingDelivery:
    """A delivery guarantee that keeps what it was given; `refuse` makes the next commit abort."""

    sent: defaultdict[str, list[OutgoingRecord]] = field(default_factory=lambda: defaultdict(list))
    committed: list[list[tuple[str, int, int]]] = field(default_factory=list)
    aborted: int = 0
    refuse: bool = False
    refuse_send: bool = False

    def send(self, topic: str, records: Sequence[OutgoingRecord]) -> None:
        from stream_app.failures import TransactionAbortedError

        if self.refuse_send:
            self.refuse_send = False
            raise TransactionAbortedError("the producer could not start")
        self.sent[topic].extend(records)

    def commit(
        self, offsets: list[TopicPartition], meanwhile: Callable[[], None] | None = None
    ) -> None:
        from stream_app.failures import TransactionAbortedError

        if meanwhile is not None:
            meanwhile()
        if self.refuse:
            self.refuse = False
            self.abort()
            raise TransactionAbortedError("refused by the test")
        self.committed.append(sorted((tp.topic, tp.partition, tp.offset) for tp in offsets))

    def abort(self) -> None:
        self.aborted += 1
        self.sent.clear()

    def close(self, timeout: float) -> None:
        pass

    def poll(self) -> None:
        pass


@dataclass
class SeekingConsumer:
    """Records the seeks the data plane asks for."""

    seeks: list[tuple[str, int, int]] = field(default_factory=list)

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append((tp.topic, tp.partition, tp.offset))


def no_restore(
    store: PartitionStore, partition: int, timeout: float, stopping: Callable[[], bool]
) -> int:
    """Stands in for a restore from the state topic: nothing to replay without a broker."""
    return 0


def no_end_offset(partition: int) -> int | None:
    """Stands in for the state topic's end offset: none known without a broker."""
    return None


def plane_with_fakes(
    settings: Settings, partitions: Sequence[int] = (0, 1)
) -> tuple[DataPlane, RecordingDelivery]:
    """A DataPlane wired to a RecordingDelivery and a SeekingConsumer instead of Kafka.

    With customer state on, the stores of `partitions` are open, empty, in a temporary
    folder removed with the plane (nothing to restore without a broker).
    """
    if settings.customer_state:
        folder = Path(tempfile.mkdtemp(prefix="segstream-plane-"))
        settings = settings.model_copy(update={"data_dir": folder})
    plane = DataPlane(settings, WorkerState(), WorkerMetrics())
    if plane.audiences is not None:
        weakref.finalize(plane, shutil.rmtree, settings.data_dir, True)
        audiences = plane.audiences
        audiences._restore = no_restore  # type: ignore[method-assign]
        audiences._end_offset = no_end_offset  # type: ignore[method-assign]
        for partition in partitions:
            audiences.open(partition, 1.0)
    delivery = RecordingDelivery()
    plane._delivery = delivery
    plane._consumer = SeekingConsumer()  # type: ignore[assignment]
    return plane, delivery
