"""The exact pins of pyproject.toml, checked against what is installed before a worker starts.

The worker relies on the internals or exact behaviour of the libraries pinned with `==`
(Faust's boot strategy, librdkafka's transactions, pydantic-core's JSON bytes); with any other
version installed it refuses to start rather than run on untested ground.
"""

from __future__ import annotations

from importlib import metadata

from packaging.requirements import Requirement

from schemas import ConfigurationError

__all__ = ["check_pins", "pin_mismatches"]


def _pins(distribution: str) -> dict[str, str]:
    """The `==` requirements of the installed distribution's core (no extras of its own;
    a pinned library may name extras of its, as `aiokafka[lz4]==0.14.0`)."""
    pins = {}
    for text in metadata.requires(distribution) or []:
        requirement = Requirement(text)
        if requirement.marker is not None and "extra" in str(requirement.marker):
            continue  # needed by one of the distribution's extras, not by the worker
        exact = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        if exact:
            pins[requirement.name] = exact[0]
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
