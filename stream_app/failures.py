"""What to do when Kafka says no: retry with capped backoff, abort the batch, or stop.

One policy for the whole data plane (STYLE 12): `classify` maps a librdkafka error to a
verdict, and `retrying` gives the capped exponential backoff with jitter that every retried
call uses. Neither touches a broker, so both are unit-tested alone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import StrEnum

from confluent_kafka import KafkaError, KafkaException
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_never,
    stop_when_event_set,
    wait_exponential_jitter,
)

from schemas import SegstreamError

__all__ = [
    "FatalKafkaError",
    "TransactionAbortedError",
    "Verdict",
    "classify",
    "kafka_error",
    "retrying",
]

log = logging.getLogger(__name__)


class Verdict(StrEnum):
    """What the data plane does about an error."""

    RETRY = "retry"  # transient: the same call again after a pause
    ABORT = "abort"  # the batch in flight is discarded and read again; the worker goes on
    FATAL = "fatal"  # the worker stops with exit status 1 so its orchestrator restarts it


class FatalKafkaError(SegstreamError, RuntimeError):
    """Kafka refused in a way no retry can mend (fenced, not authorised, misconfigured)."""


class TransactionAbortedError(SegstreamError, RuntimeError):
    """The batch in flight was aborted; nothing of it is visible and its offsets are uncommitted."""


# Errors that say the worker itself is wrong or no longer the owner: retrying cannot help.
_FATAL_CODES = frozenset(
    {
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError._AUTHENTICATION,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._INVALID_ARG,
        KafkaError.INVALID_CONFIG,
        KafkaError.TOPIC_EXCEPTION,
        KafkaError._SSL,
    }
)


def kafka_error(exc: BaseException) -> KafkaError | None:
    """The KafkaError a confluent-kafka exception carries, if it carries one."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def classify(error: KafkaError) -> Verdict:
    """Fatal, abort or retry, from what librdkafka says of the error."""
    if error.fatal():
        return Verdict.FATAL
    if error.txn_requires_abort():
        return Verdict.ABORT
    if error.code() in _FATAL_CODES:
        return Verdict.FATAL
    # Transport errors, timeouts, leader changes and a broker that is down all pass.
    return Verdict.RETRY


def _is_retriable(exc: BaseException) -> bool:
    error = kafka_error(exc)
    return error is not None and classify(error) is Verdict.RETRY


def _log_retry(what: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        log.warning(
            "segstream: %s failed (attempt %d), retrying: %s",
            what,
            state.attempt_number,
            kafka_error(error) if error is not None else "?",
        )

    return before_sleep


def retrying(what: str, give_up: Callable[[], bool] | None = None) -> Retrying:
    """Retry transient Kafka errors with capped exponential backoff and jitter.

    Retries go on while the broker is away (the worker keeps its place) until give_up()
    says the worker is stopping; the last error is then raised to the caller.
    """
    return Retrying(
        retry=retry_if_exception(_is_retriable),
        wait=wait_exponential_jitter(multiplier=0.1, max=5.0, jitter=0.5),
        stop=stop_when_event_set(_Flag(give_up)) if give_up is not None else stop_never,  # type: ignore[arg-type]
        before_sleep=_log_retry(what),
        reraise=True,
    )


class _Flag:
    """A callable seen as the `threading.Event` that tenacity's stop condition polls."""

    def __init__(self, predicate: Callable[[], bool]) -> None:
        self._predicate = predicate

    def is_set(self) -> bool:
        return self._predicate()
