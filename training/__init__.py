"""Offline training: load customer tables, fit K-Means, name segments, save and report.

Submodules are imported on first use so that `segstream tail` does not pay for pandas and
scikit-learn.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = [
    "CustomerTable",
    "TrainedModel",
    "fit_model",
    "generate_customers",
    "generate_signups",
    "load_catalogue",
    "load_customers",
    "load_manifest",
    "name_segments",
    "save_model",
    "write_report",
]

_HOMES = {
    "CustomerTable": "training.data",
    "load_customers": "training.data",
    "TrainedModel": "training.fit",
    "fit_model": "training.fit",
    "save_model": "training.store",
    "load_manifest": "schemas.model_files",
    "write_report": "training.report",
    "generate_customers": "training.generate",
    "generate_signups": "training.generate",
    "load_catalogue": "training.naming",
    "name_segments": "training.naming",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'training' has no attribute {name!r}")
