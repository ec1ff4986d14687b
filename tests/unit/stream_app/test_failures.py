"""The error policy: which Kafka errors are retried, abort the batch, or stop the worker."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from stream_app.failures import Verdict, classify, retrying


@pytest.mark.parametrize(
    ("error", "verdict"),
    [
        (KafkaError(KafkaError._TRANSPORT), Verdict.RETRY),
        (KafkaError(KafkaError._ALL_BROKERS_DOWN), Verdict.RETRY),
        (KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION, retriable=True), Verdict.RETRY),
        (KafkaError(KafkaError._TIMED_OUT, retriable=True), Verdict.RETRY),
        (KafkaError(KafkaError.ILLEGAL_GENERATION, txn_requires_abort=True), Verdict.ABORT),
        (KafkaError(KafkaError._FENCED, fatal=True), Verdict.FATAL),
        (KafkaError(KafkaError.PRODUCER_FENCED), Verdict.FATAL),
        (KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), Verdict.FATAL),
        (KafkaError(KafkaError._AUTHENTICATION), Verdict.FATAL),
        (KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART), Verdict.FATAL),
        (KafkaError(KafkaError.INVALID_CONFIG), Verdict.FATAL),
        # librdkafka's own verdict comes first: an abortable error is not fatal by its code.
        (
            KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, txn_requires_abort=True),
            Verdict.ABORT,
        ),
    ],
)
def test_each_error_gets_its_verdict(error: KafkaError, verdict: Verdict) -> None:
    assert classify(error) is verdict


def test_transient_errors_are_retried_until_the_call_succeeds() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, retriable=True))
        return "done"

    result = None
    for attempt in retrying("a flaky call"):
        with attempt:
            result = flaky()
    assert (result, len(calls)) == ("done", 3)


def test_a_fatal_error_is_not_retried() -> None:
    calls = []

    def refused() -> None:
        calls.append(1)
        raise KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))

    def call() -> None:
        for attempt in retrying("a refused call"):
            with attempt:
                refused()

    with pytest.raises(KafkaException):
        call()
    assert len(calls) == 1


def test_retries_end_when_the_worker_gives_up() -> None:
    calls = []

    def down() -> None:
        calls.append(1)
        raise KafkaException(KafkaError(KafkaError._TRANSPORT))

    def call() -> None:
        for attempt in retrying("a call to a dead broker", give_up=lambda: len(calls) >= 2):
            with attempt:
                down()

    with pytest.raises(KafkaException):
        call()
    assert len(calls) == 2
