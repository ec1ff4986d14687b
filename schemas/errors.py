"""The one exception root of segstream; each error also inherits the built-in it resembles."""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "DataError",
    "InvalidEventError",
    "ManifestError",
    "SegstreamError",
]


class SegstreamError(Exception):
    """Root of every error segstream raises on purpose."""


class ConfigurationError(SegstreamError, ValueError):
    """A setting or option is missing or contradicts another."""


class DataError(SegstreamError, ValueError):
    """A customer table or input file cannot be used as it is."""


class ManifestError(SegstreamError, ValueError):
    """A model manifest is missing, malformed or inconsistent."""


class InvalidEventError(SegstreamError, ValueError):
    """An input record cannot be turned into a CustomerSignup; it goes to the dead-letter topic."""

    #: A short, stable name of the failure kind, used in dead letters and metrics.
    reason = "invalid"
