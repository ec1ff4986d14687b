"""The worker's start-up check of the exact pins against the installed libraries."""

from __future__ import annotations

from importlib import metadata

import pytest

from schemas import ConfigurationError
from stream_app import pins


def test_the_installed_environment_matches_the_pins() -> None:
    assert pins.pin_mismatches() == []


def test_a_different_version_stops_the_worker_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    requirements = [
        "faust-streaming==0.15.3",
        "aiokafka[lz4]==0.14.0",
        "numpy>=2",
        'ruff==0.1; extra == "dev"',
    ]
    versions = {"faust-streaming": "0.15.4", "aiokafka": "0.13.0", "numpy": "2.0.0"}
    monkeypatch.setattr(metadata, "requires", lambda _name: requirements)
    monkeypatch.setattr(metadata, "version", lambda name: versions[name])

    with pytest.raises(ConfigurationError) as failure:
        pins.check_pins()

    assert str(failure.value) == (
        "installed libraries differ from segstream's exact pins (aiokafka: installed 0.13.0, "
        "pinned 0.14.0; faust-streaming: installed 0.15.4, pinned 0.15.3): install from the "
        "lock (make install, or the docker image)"
    )
