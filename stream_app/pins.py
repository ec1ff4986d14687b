"""The exact pins of pyproject.toml, checked against what is installed before a worker starts.

The worker relies on the internals or exact behaviour of the libraries pinned with `==`
(Faust's boot strategy, librdkafka's transactions, pydantic-core's JSON bytes); with any other
version installed it refuses to start rather than run on untested ground.
"""

from __future__ import annotations

import re
from importlib import metadata

from schemas import ConfigurationError

__all__ = ["check_pins", "pin_mismatches"]

# `name==version`, optionally with environment markers; a requirement of an extra says
# `extra == "..."` in its markers and is not the worker's.
_EXACT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;,]+)\s*(?:;(.*))?$")


def _pins(distribution: str) -> dict[str, str]:
    """The `==` requirements of the installed distribution's core (no extras)."""
    pins = {}
    for requirement in metadata.requires(distribution) or []:
        match = _EXACT.match(requirement)
        if match and "extra" not in (match.group(3) or ""):
            pins[match.group(1)] = match.group(2)
    return pins


def pin_mismatches(distribution: str = "segstream") -> list[str]:
    """`name: installed X, pinned Y` for each exact pin the installed version breaks."""
    try:
        pins = _pins(distribution)
    except metadata.PackageNotFoundError:
        return []  # run from a source tree without installing: nothing declares pins
    mismatches = []
    for name, pinned in sorted(pins.items()):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "none"
        if installed != pinned:
            mismatches.append(f"{name}: installed {installed}, pinned {pinned}")
    return mismatches


def check_pins(distribution: str = "segstream") -> None:
    """Raise ConfigurationError naming every exact pin the installed libraries break."""
    mismatches = pin_mismatches(distribution)
    if mismatches:
        raise ConfigurationError(
            f"installed libraries differ from {distribution}'s exact pins ("
            + "; ".join(mismatches)
            + "): install from the lock (make install, or the docker image)"
        )
