"""Contracts shared by training and the stream app: events, dead letters, model manifest."""

from schemas.errors import (
    ConfigurationError,
    DataError,
    InvalidEventError,
    ManifestError,
    SegstreamError,
)
from schemas.events import (
    CustomerSignup,
    DeadLetter,
    Gender,
    SegmentAssignment,
    assignment_event_id,
)
from schemas.export import export_json_schemas
from schemas.manifest import BadRowSummary, ModelManifest, ScalerParams, SegmentProfile

__all__ = [
    "BadRowSummary",
    "ConfigurationError",
    "CustomerSignup",
    "DataError",
    "DeadLetter",
    "Gender",
    "InvalidEventError",
    "ManifestError",
    "ModelManifest",
    "ScalerParams",
    "SegmentAssignment",
    "SegmentProfile",
    "SegstreamError",
    "assignment_event_id",
    "export_json_schemas",
]
