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
    (
        "segstream: decode, validate, score, encode (pipeline.py)",
        ("process_records (stream_app/pipeline.py",),
    ),
    (
        "Faust: Topic.send per record (incl. aiokafka send() call)",
        ("Topic.send (faust/topics.py", "_send_all (stream_app/app.py"),
    ),
    (
        "segstream: exactly-once send, offsets and commit (transactions.py)",
        ("stream_app/transactions.py",),
    ),
    ("aiokafka: producer sender, produce requests", ("aiokafka/producer/sender.py",)),
    (
        "Faust: per-message delivery to the agent (drain, on_message)",
        ("_drain_messages (faust/transport/consumer.py", "faust/transport/conductor.py"),
    ),
    ("aiokafka: fetch and record decoding", ("aiokafka/consumer/fetcher.py",)),
    (
        "Faust: stream, take_events, acks, agent",
        ("faust/streams.py", "faust/agents/", "faust/channels.py"),
    ),
    ("segstream: agent body outside the pipeline", ("stream_app/app.py",)),
    ("aiokafka: network, protocol", ("aiokafka/",)),
    ("Faust: other (send callbacks, sensors, commit, web)", ("faust/",)),
)
# Every stack starts in mode's Worker, so what matches nothing above is the event loop itself.
_OTHER = "asyncio event loop: scheduling tasks and callbacks, select"


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
