"""Contracts shared by training and the stream app: events, dead letters, model manifest."""

from schemas.audiences import (
    CHANGE_NAMESPACE,
    PROFILE_UPDATE,
    CustomerState,
    ProfileUpdate,
    SegmentChanged,
    segment_change_id,
)
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
    "CHANGE_NAMESPACE",
    "PROFILE_UPDATE",
    "BadRowSummary",
    "ConfigurationError",
    "CustomerSignup",
    "CustomerState",
    "DataError",
    "DeadLetter",
    "Gender",
    "InvalidEventError",
    "ManifestError",
    "ModelManifest",
    "ProfileUpdate",
    "ScalerParams",
    "SegmentAssignment",
    "SegmentChanged",
    "SegmentProfile",
    "SegstreamError",
    "assignment_event_id",
    "export_json_schemas",
    "segment_change_id",
]
