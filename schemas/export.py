"""Export the JSON Schemas of the contracts so other teams can validate against them."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from schemas.audiences import CustomerState, ProfileUpdate, SegmentChanged
from schemas.errors import DataError
from schemas.events import CustomerSignup, DeadLetter, SegmentAssignment
from schemas.manifest import ModelManifest

__all__ = ["CONTRACTS", "export_json_schemas"]

CONTRACTS: dict[str, type[BaseModel]] = {
    "customer-signup": CustomerSignup,
    "segment-assignment": SegmentAssignment,
    "dead-letter": DeadLetter,
    "model-manifest": ModelManifest,
    "profile-update": ProfileUpdate,
    "customer-state": CustomerState,
    "segment-changed": SegmentChanged,
}


def export_json_schemas(out_dir: Path) -> list[Path]:
    """Write one `<name>.schema.json` per contract into out_dir; return the paths written."""
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"--out {out_dir} is a file; give a folder for the schema files")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in CONTRACTS.items():
        path = out_dir / f"{name}.schema.json"
        schema = model.model_json_schema(mode="serialization")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
