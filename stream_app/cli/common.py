"""What every command of the program shares: the console, settings and output files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import BinaryIO

import typer
from rich.console import Console

from schemas import DataError
from stream_app.settings import Settings, get_settings, unknown_variable_warnings

__all__ = ["console", "load_settings", "open_output", "say"]

console = Console(stderr=True)

_warned = False


def load_settings() -> Settings:
    """The settings; the first call warns about SEGSTREAM_ variables that are no setting."""
    global _warned
    current = get_settings()
    if not _warned:
        _warned = True
        for warning in unknown_variable_warnings():
            typer.echo(f"segstream: warning: {warning}", err=True)
    return current


def say(text: str) -> None:
    """One plain line on stderr: no wrapping in logs, and no markup taken from the text."""
    console.print(text, soft_wrap=True, markup=False, highlight=False)


def open_output(out: Path | None, option: str) -> BinaryIO:
    """A binary handle for an output file option; stdout when it is None or `-`."""
    if out is None or str(out) == "-":
        return sys.stdout.buffer
    if out.is_dir():
        raise DataError(f"{option} {out} is a directory; give a file name")
    if out.parent.exists() and not out.parent.is_dir():
        raise DataError(f"{option} {out}: {out.parent} is a file, not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out.open("wb")
