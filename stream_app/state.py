"""The worker's live state: the model it scores with and what it has done so far."""

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
    """Current scorer plus counters shown by the health endpoints."""

    scorer: Scorer | None = None
    model_error: str | None = "no model loaded yet"
    model_ready: asyncio.Event = field(default_factory=asyncio.Event)
    consumed: int = 0
    assigned: int = 0
    dead_lettered: int = 0
    segments: Counter[str] = field(default_factory=Counter)
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)

    def use(self, manifest: ModelManifest) -> None:
        """Make manifest the live model."""
        self.scorer = Scorer(manifest)
        self.model_error = None
        self.model_ready.set()

    def require_scorer(self) -> Scorer:
        """The live scorer; raises when no valid model is loaded."""
        if self.scorer is None:
            raise ModelNotReadyError(self.model_error or "no model loaded yet")
        return self.scorer

    def snapshot(self) -> dict[str, object]:
        """Counters and model facts as plain JSON-able values."""
        manifest = self.scorer.manifest if self.scorer else None
        return {
            "model": ({"name": manifest.name, "version": manifest.version} if manifest else None),
            "model_error": self.model_error,
            "consumed": self.consumed,
            "assigned": self.assigned,
            "dead_lettered": self.dead_lettered,
            "segments": dict(self.segments),
            "dead_letter_reasons": dict(self.dead_letter_reasons),
        }
