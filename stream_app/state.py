"""The worker's live state: the models it scores with and the shadow comparison so far.

What the worker has done is counted in stream_app.metrics only; the status views read it there.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

from schemas import ModelManifest
from stream_app.exceptions import ModelNotReadyError
from stream_app.scorer import Scorer

__all__ = ["WorkerState"]


@dataclass
class WorkerState:
    """Live and candidate scorers, why no model is live, and the candidate's comparison."""

    scorer: Scorer | None = None
    candidate: Scorer | None = None
    model_source: str | None = None
    model_error: str | None = "no model loaded yet"
    model_ready: asyncio.Event = field(default_factory=asyncio.Event)
    last_refusal: str | None = None
    #: Events the candidate scored and, by `live->candidate` pair, where it disagreed; both
    #: start from zero with each new candidate (the metrics keep the worker's totals).
    shadow_compared: int = 0
    shadow_pairs: Counter[str] = field(default_factory=Counter)

    def make_live(self, manifest: ModelManifest, source: str = "file") -> bool:
        """Make manifest the live model; False when that version is already live."""
        if self.scorer is not None and self.scorer.manifest == manifest:
            return False
        self.scorer = Scorer(manifest)
        self.model_source = source
        self.model_error = None
        if self.candidate is not None and self.candidate.manifest.version == manifest.version:
            self.set_candidate(None)
        self.model_ready.set()
        return True

    def set_candidate(self, manifest: ModelManifest | None) -> bool:
        """Set or clear the shadow candidate; its comparison figures start again from zero."""
        current = self.candidate.manifest if self.candidate else None
        if current == manifest:
            return False
        self.candidate = Scorer(manifest) if manifest is not None else None
        self.shadow_compared = 0
        self.shadow_pairs = Counter()
        return True

    def refuse(self, reason: str) -> None:
        """Note why a manifest was refused; the model that is live stays."""
        self.last_refusal = reason

    def require_scorer(self) -> Scorer:
        """The live scorer; raises when no valid model is loaded."""
        if self.scorer is None:
            raise ModelNotReadyError(self.model_error or "no model loaded yet")
        return self.scorer

    def shadow_figures(self) -> dict[str, object] | None:
        """The candidate's comparison with the live model so far, or None without one."""
        if self.candidate is None:
            return None
        return {
            "candidate": self.candidate.manifest.version,
            "live": self.scorer.manifest.version if self.scorer else None,
            "compared": self.shadow_compared,
            "pairs": dict(self.shadow_pairs),
        }

    def snapshot(self) -> dict[str, object]:
        """Model facts as plain JSON-able values."""
        manifest = self.scorer.manifest if self.scorer else None
        return {
            "model": (
                {"name": manifest.name, "version": manifest.version, "source": self.model_source}
                if manifest
                else None
            ),
            "model_error": self.model_error,
            "last_refusal": self.last_refusal,
            "shadow": self.shadow_figures(),
        }
