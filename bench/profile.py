"""Where a worker's time goes: py-spy samples of a running process, grouped by layer."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

__all__ = ["LAYERS", "attach", "summarise"]

PY_SPY = Path(sys.executable).with_name("py-spy")

#: (layer, markers): a sample belongs to the first layer any of whose markers is in its stack.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("segstream: decode and validate (decoding.py)", ("stream_app/decoding.py",)),
    ("segstream: assignment JSON and ids (pipeline.py)", ("_assignment_values (stream_app",)),
    ("segstream: dead letters (pipeline.py)", ("dead_letter (stream_app/pipeline.py",)),
    ("segstream: scoring (scorer.py)", ("stream_app/scorer.py",)),
    ("segstream: the rest of process_records", ("process_records (stream_app/pipeline.py",)),
    ("librdkafka: produce calls (delivery.py)", ("produce_all (stream_app/delivery.py",)),
    ("librdkafka: transactions and offset commits", ("commit (stream_app/delivery.py",)),
    ("librdkafka: consume and batch assembly (dataplane.py)", ("stream_app/dataplane.py",)),
    ("Faust and aiokafka: web, model follower, timers", ("faust/", "aiokafka/", "mode/")),
)
# What matches nothing above: the event loop waiting, and the interpreter's own threads.
_OTHER = "other: the event loop, idle waits"


def attach(pid: int, out: Path, rate: int = 100) -> subprocess.Popen[bytes]:
    """Start py-spy recording the process in collapsed-stack form until it exits."""
    return subprocess.Popen(
        [
            *(str(PY_SPY), "record", "--pid", str(pid), "--format", "raw"),
            *("--rate", str(rate), "--gil", "--output", str(out)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def summarise(raw: Path) -> dict[str, float]:
    """Share of samples per layer (0-1), from py-spy's collapsed stacks, largest first."""
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not number.isdigit():
            continue
        layer = next((name for name, markers in LAYERS if any(m in stack for m in markers)), _OTHER)
        counts[layer] += int(number)
    total = sum(counts.values()) or 1
    return {layer: n / total for layer, n in counts.most_common()}
