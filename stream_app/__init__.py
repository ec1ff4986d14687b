"""The Faust stream app: decode signups, score them against the live model, emit segments.

Importing the package does not import Faust; `stream_app.app` does.
"""

from stream_app.scorer import Scorer
from stream_app.settings import Settings, get_settings

__all__ = ["Scorer", "Settings", "get_settings"]
