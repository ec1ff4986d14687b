"""Why an input record was dead-lettered (one InvalidEventError subclass per failure kind), and
why Kafka could not be used (one BrokerUnavailableError subclass per kind of failure)."""

from __future__ import annotations

from schemas.errors import InvalidEventError, SegstreamError

__all__ = [
    "BrokerAuthenticationError",
    "BrokerAuthorizationError",
    "BrokerTimeoutError",
    "BrokerUnavailableError",
    "KeyMismatchError",
    "ModelNotReadyError",
    "NotJsonError",
    "NotObjectError",
    "NotUtf8Error",
    "OversizedEventError",
    "SchemaViolationError",
    "TombstoneError",
    "UnknownTopicError",
    "WorkerUnavailableError",
]


class TombstoneError(InvalidEventError):
    """The record has a null value."""

    reason = "tombstone"


class OversizedEventError(InvalidEventError):
    """The value is larger than the configured maximum."""

    reason = "oversized"


class NotUtf8Error(InvalidEventError, UnicodeError):
    """The value's bytes are not UTF-8."""

    reason = "not_utf8"


class NotJsonError(InvalidEventError):
    """The value is not a JSON document."""

    reason = "not_json"


class NotObjectError(InvalidEventError, TypeError):
    """The value is JSON but not an object."""

    reason = "not_object"


class SchemaViolationError(InvalidEventError):
    """The object misses fields, has wrong types or out-of-range values."""

    reason = "schema"


class KeyMismatchError(InvalidEventError):
    """The record key is not the body's customer_id, so per-customer ordering cannot hold."""

    reason = "key_mismatch"


class UnknownCustomerError(InvalidEventError, LookupError):
    """A profile update for a customer never seen, without age and income to start from."""

    reason = "unknown_customer"


class StateDisabledError(InvalidEventError):
    """A profile update reached a worker that keeps no customer state."""

    reason = "state_disabled"


class ModelNotReadyError(SegstreamError, RuntimeError):
    """No valid model is loaded yet."""


class BrokerUnavailableError(SegstreamError, ConnectionError):
    """Kafka cannot be reached or refused a request."""


class BrokerAuthenticationError(BrokerUnavailableError):
    """Kafka answered but refused the credentials (SASL) or the TLS handshake."""


class BrokerAuthorizationError(BrokerUnavailableError, PermissionError):
    """Kafka knows who we are but does not allow what was asked (ACLs)."""


class BrokerTimeoutError(BrokerUnavailableError, TimeoutError):
    """Kafka did not answer within SEGSTREAM_CONNECT_TIMEOUT."""


class UnknownTopicError(SegstreamError, LookupError):
    """A topic that must exist does not, or its name is not a legal Kafka topic name."""


class WorkerUnavailableError(SegstreamError, ConnectionError):
    """A worker's health endpoint does not answer, or answers other than 200."""


class CustomerNotFoundError(SegstreamError, LookupError):
    """No worker holds state for the customer asked about."""
