"""The bench's own virtualenvs, `bench/.venvs/<name>`, for programs segstream does not depend on.

Each is made from `bench/peers/requirements-<name>.txt` on first use and made again when that
file changes (its text is kept in the virtualenv as the stamp), so the Quix Streams peer and
the librdkafka clients never enter the product's environment.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["NAMES", "PEERS", "ensure", "python", "versions"]

BENCH = Path(__file__).resolve().parent
PEERS = BENCH / "peers"
VENVS = BENCH / ".venvs"
NAMES = ("quix", "confluent")
_STAMP = ".requirements"


def python(name: str) -> Path:
    """The interpreter of bench/.venvs/<name> (made by `ensure`)."""
    return VENVS / name / "bin" / "python"


def ensure(name: str, log: Callable[[str], None] = print) -> Path:
    """Make bench/.venvs/<name> from its requirements file unless it is up to date already."""
    requirements = PEERS / f"requirements-{name}.txt"
    wanted = requirements.read_text()
    venv = VENVS / name
    stamp = venv / _STAMP
    if python(name).exists() and stamp.exists() and stamp.read_text() == wanted:
        return python(name)
    log(f"creating bench/.venvs/{name} from {requirements.relative_to(BENCH.parent)}")
    shutil.rmtree(venv, ignore_errors=True)
    # The project's interpreter makes the virtualenv, so every program runs on one Python.
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [
            *(str(python(name)), "-m", "pip", "install", "--quiet"),
            *("--disable-pip-version-check", "-r", str(requirements)),
        ],
        check=True,
    )
    stamp.write_text(wanted)
    return python(name)


def versions(name: str, distributions: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of the named distributions in bench/.venvs/<name>."""
    script = (
        "import importlib.metadata as m, json, sys; "
        "print(json.dumps({d: m.version(d) for d in sys.argv[1:]}))"
    )
    done = subprocess.run(
        [str(python(name)), "-c", script, *distributions],
        capture_output=True,
        text=True,
        check=True,
    )
    found: dict[str, str] = json.loads(done.stdout)
    return found
