"""The README tells the truth: the commands it shows exist with those options, its tables are the
generated ones, and the make targets, scripts, files and variables it names are real."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer.main

from stream_app.cli import app
from stream_app.metrics import metrics_table
from stream_app.settings import Settings, settings_table, unknown_variable_warnings
from tests.support import KAFKA_LOCAL, REPO, clean_environment

README = (REPO / "README.md").read_text()


def _block(name: str) -> str:
    start = README.index(f"<!-- {name}:start -->") + len(f"<!-- {name}:start -->")
    return README[start : README.index(f"<!-- {name}:end -->")].strip()


def _code() -> Iterator[str]:
    """Every code span and every line of a shell code block, comments cut off."""
    for block in re.findall(r"```sh\n(.*?)```", README, flags=re.DOTALL):
        for line in block.splitlines():
            yield line.split(" #", 1)[0]
    prose = re.sub(r"```.*?```", "", README, flags=re.DOTALL)
    # A span that starts "segstream: " quotes what segstream prints, not a command.
    yield from (s for s in re.findall(r"`([^`]+)`", prose) if not s.startswith("segstream: "))


def _invocations() -> list[list[str]]:
    """The words after each `segstream` the README shows as a command, up to a shell operator."""
    found = []
    for code in _code():
        words = code.split()
        for i, word in enumerate(words):
            # "docker run --rm segstream segstream --version": the image, then the command.
            if word.strip("($") == "segstream" and words[i + 1 : i + 2] != ["segstream"]:
                rest = []
                for token in words[i + 1 :]:
                    if token in {"|", "&&", ";", ">", ">>"} or token.startswith(")"):
                        break
                    rest.append(token.rstrip(")"))
                found.append(rest)
    return found


def _options(token: str) -> list[str]:
    """The option names in a README token such as `[--k auto\\|N]` or `--rate=500`."""
    names = []
    for part in re.split(r"\\?\|", token.strip("[]")):
        part = part.strip("[]").split("=", 1)[0]
        if part.startswith("--"):
            names.append(part)
    return names


INVOCATIONS = _invocations()


def _resolve(words: list[str]) -> tuple[list[str], object, list[str]]:
    """The command path the words name, its click command, and the words after it."""
    command = typer.main.get_command(app)
    path: list[str] = []
    rest = list(words)
    while rest and rest[0] in getattr(command, "commands", {}):
        path.append(rest[0])
        command = command.commands[rest.pop(0)]  # type: ignore[attr-defined]
    return path, command, rest


@pytest.mark.parametrize("words", INVOCATIONS, ids=[" ".join(w) for w in INVOCATIONS])
def test_every_command_the_readme_shows_exists_with_those_options(words: list[str]) -> None:
    path, command, rest = _resolve(words)
    if rest and re.fullmatch(r"[a-z][a-z-]*", rest[0]) and hasattr(command, "commands"):
        pytest.fail(f"segstream {' '.join([*path, rest[0]])} is no command")
    accepted = {"--help", *(o for p in command.params for o in p.opts)}  # type: ignore[attr-defined]
    unknown = [o for token in rest for o in _options(token) if o not in accepted]
    assert not unknown, f"segstream {' '.join(path)} has no option {unknown}"


def test_the_readme_shows_every_command() -> None:
    shown = {" ".join(_resolve(words)[0]) for words in INVOCATIONS}

    def leaves(command: object, prefix: str) -> Iterator[str]:
        children = getattr(command, "commands", None)
        if not children:
            yield prefix.strip()
        for name, child in (children or {}).items():
            yield from leaves(child, f"{prefix} {name}")

    missing = sorted(set(leaves(typer.main.get_command(app), "")) - shown)
    assert not missing, f"commands the README never shows: {missing}"


def test_readme_settings_table_is_the_generated_one() -> None:
    assert _block("settings") == settings_table()


def test_readme_lists_every_metric_a_worker_serves() -> None:
    assert _block("metrics") == metrics_table()


def test_every_segstream_variable_the_readme_names_is_a_setting_or_a_quoted_warning() -> None:
    settings = {f"SEGSTREAM_{name.upper()}" for name in Settings.model_fields}
    text = " ".join(README.split())
    for variable in set(re.findall(r"\bSEGSTREAM_[A-Z][A-Z_]*[A-Z]\b", README)) - settings:
        if variable.startswith("SEGSTREAM_KAFKA_"):  # scripts/kafka-local's own
            assert variable in KAFKA_LOCAL.read_text(), variable
            continue
        # A misspelt name, shown with the warning segstream prints for it.
        (warning,) = unknown_variable_warnings({variable: "x"})
        assert f"segstream: warning: {warning}" in text, variable


def test_every_make_target_the_readme_names_exists() -> None:
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, flags=re.MULTILINE))
    named = {target for code in _code() for target in re.findall(r"\bmake ([a-z][\w-]*)", code)}
    assert named, "the README names no make target"
    assert named <= targets, f"not in the Makefile: {sorted(named - targets)}"
    assert {"demo", "test"} <= named
    assert "make test" in (REPO / ".ci" / "run").read_text(), "CI runs what the README says"


def test_every_repository_path_the_readme_names_exists() -> None:
    tops = "|".join(p.name for p in REPO.iterdir() if p.is_dir() and not p.name.startswith("."))
    named = set(re.findall(rf"`((?:{tops}|\.ci)/[\w./-]*[\w])`", README))
    assert named, "the README names no file"
    # Files a run writes (figures, wheels, caches) are named for where they appear.
    missing = sorted(p for p in named if not (REPO / p).exists() and not _made_by_a_run(Path(p)))
    assert not missing, f"the README names paths that do not exist: {missing}"
    for script in {p for p in named if p.startswith("scripts/")}:
        assert os.access(REPO / script, os.X_OK), f"{script} is not executable"


def _made_by_a_run(path: Path) -> bool:
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(path)], cwd=REPO, env=clean_environment(), check=False
    )
    return ignored.returncode == 0


def test_readme_says_how_to_point_the_cli_at_the_local_broker() -> None:
    assert "export SEGSTREAM_BOOTSTRAP_SERVERS=$(scripts/kafka-local start)" in README


def test_kafka_local_status_of_no_broker_is_one_word_and_exit_3(tmp_path: Path) -> None:
    # Scripts read the address from kafka-local's stdout (see the README), so nothing else
    # may go there: a stopped broker's status is the word "stopped" alone.
    done = subprocess.run(
        [str(KAFKA_LOCAL), "status", str(tmp_path)],
        env=clean_environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout) == (3, "stopped\n")
