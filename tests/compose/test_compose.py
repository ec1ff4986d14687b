"""docker-compose.yml as platform teams run it: up, scaled, a worker killed, down and up again.

The tests run in file order on one stack, each going on from where the one before left it;
signups are replayed from the host with the host's `segstream replay`, and every output is
read back with read_committed.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stream_app.model_registry import read_registry
from stream_app.settings import Settings
from tests.compose.conftest import ComposeStack, committed_offsets, docker
from tests.support import (
    delivery_figures,
    ok,
    poll,
    read_topic,
    run_segstream,
    signup_ids,
    start_segstream,
    wait_until_consumed,
    wait_until_settled,
)

pytestmark = pytest.mark.compose

SIGNUPS = 5_000
INVALID_SHARE = 0.01
INPUT_TOPIC = "customer-signups"
OUTPUT_TOPIC = "customer-segments"
DLQ_TOPIC = "customer-signups.dlq"
STATE_TOPIC = "customer-segments.current"
GROUP = "segstream"  # the worker's default app id
MODEL = "customer-segments"


@dataclass
class Ledger:
    """Every signup replayed into the stack so far."""

    valid: set[str] = field(default_factory=set)
    invalid: int = 0

    @property
    def sent(self) -> int:
        """Records produced to the input topic."""
        return len(self.valid) + self.invalid


@pytest.fixture(scope="module")
def ledger() -> Ledger:
    """What the module's tests have replayed, shared because they share one stack."""
    return Ledger()


def _signups(tmp_path: Path, seed: int, n: int, ledger: Ledger) -> Path:
    """Generate n signups (1% broken) with the host's segstream; note them in the ledger."""
    path = tmp_path / f"signups-{seed}.jsonl"
    options = {"--n": n, "--seed": seed, "--invalid-share": INVALID_SHARE, "--out": path}
    ok(["generate", "signups", *(str(x) for o in options.items() for x in o)])
    valid, invalid = signup_ids(path)
    assert invalid == round(n * INVALID_SHARE)
    ledger.valid |= valid
    ledger.invalid += invalid
    return path


def _replay(stack: ComposeStack, path: Path, rate: int = 0) -> subprocess.CompletedProcess[str]:
    return run_segstream(
        ["replay", str(path), "--rate", str(rate)], env=stack.segstream_env(), timeout=300
    )


def _outcome(stack: ComposeStack, ledger: Ledger) -> dict[str, int]:
    """Wait until the workers have committed every signup; figures over all of them."""
    wait_until_consumed(stack.bootstrap, GROUP, INPUT_TOPIC, timeout=240)
    wait_until_settled(stack.bootstrap, [OUTPUT_TOPIC, DLQ_TOPIC])
    assignments = read_topic(stack.bootstrap, OUTPUT_TOPIC)
    letters = read_topic(stack.bootstrap, DLQ_TOPIC)
    return delivery_figures(assignments, letters, ledger.valid, ledger.invalid)


def _registry(stack: ComposeStack) -> tuple[str | None, list[str]]:
    """The live model version and the versions that have been live, from the model topic."""
    registry = asyncio.run(read_registry(Settings(bootstrap_servers=stack.bootstrap), MODEL))
    return (registry.live.version if registry.live else None), registry.history


def test_up_with_two_workers_gets_healthy_without_creating_a_network(
    stack: ComposeStack, report: list[dict[str, object]]
) -> None:
    started = time.monotonic()
    stack.compose("up", "-d", "--scale", "worker=2")
    stack.wait_healthy("worker", 2)
    seconds = round(time.monotonic() - started, 1)

    assert stack.labelled("network") == [], "the stack must not create networks here"
    assert "published customer-segments" in stack.logs("trainer")
    live, _ = _registry(stack)
    assert live is not None
    report.append({"phase": "up", "workers": 2, "seconds": seconds, "note": f"model {live}"})


def test_two_workers_assign_every_valid_signup_once_and_dead_letter_the_rest(
    stack: ComposeStack, ledger: Ledger, tmp_path: Path, report: list[dict[str, object]]
) -> None:
    path = _signups(tmp_path, seed=11, n=SIGNUPS, ledger=ledger)
    started = time.monotonic()
    replayed = _replay(stack, path)
    assert replayed.returncode == 0, replayed.stderr
    figures = _outcome(stack, ledger)
    seconds = round(time.monotonic() - started, 1)

    assert figures["missing"] == 0, figures
    assert figures["duplicates"] == 0, figures
    assert figures["assigned"] == len(ledger.valid), figures
    assert figures["dead_lettered"] == ledger.invalid, figures
    consumed = [stack.worker_health(c)["consumed"] for c in stack.containers("worker")]
    assert sum(consumed) == SIGNUPS  # type: ignore[arg-type]  # JSON numbers
    report.append(
        {
            "phase": "replay",
            "workers": 2,
            **figures,
            "seconds": seconds,
            "note": "consumed per worker " + " / ".join(map(str, consumed)),
        }
    )


def test_the_workers_image_tails_what_the_host_replayed(
    stack: ComposeStack, ledger: Ledger
) -> None:
    # The README's way to read the stack without Python on the host.
    out = stack.compose(
        "exec", "-T", "worker", "segstream", "tail", "--topic", DLQ_TOPIC, "--from-beginning",
        "--idle-timeout", "5",
    )  # fmt: skip
    letters = [json.loads(line) for line in out.splitlines()]
    assert len(letters) == ledger.invalid
    assert {letter["source_topic"] for letter in letters} == {INPUT_TOPIC}


def test_every_worker_answers_a_lookup_of_any_customer(stack: ComposeStack) -> None:
    # A customer's state lives on the worker that owns its partition; the other one routes.
    out = stack.compose(
        "exec", "-T", "worker", "segstream", "tail", "--topic", STATE_TOPIC, "--from-beginning",
        "--limit", "1", "--idle-timeout", "5",
    )  # fmt: skip
    state = json.loads(out.splitlines()[0])
    workers = stack.containers("worker")
    assert len(workers) == 2
    answers = [
        json.loads(docker("exec", worker, "segstream", "customer", state["customer_id"]))
        for worker in workers
    ]
    for answer in answers:
        assert answer["segment_id"] == state["segment_id"]
        assert answer["revision"] == state["revision"]
    assert answers[0]["answered_by"] == answers[1]["answered_by"], "one owner answers for both"


def test_a_worker_killed_mid_replay_loses_and_duplicates_nothing(
    stack: ComposeStack, ledger: Ledger, tmp_path: Path, report: list[dict[str, object]]
) -> None:
    stack.compose("up", "-d", "--scale", "worker=3")
    stack.wait_healthy("worker", 3)
    path = _signups(tmp_path, seed=12, n=SIGNUPS, ledger=ledger)
    before = sum(committed_offsets(stack.bootstrap, GROUP, INPUT_TOPIC).values())
    started = time.monotonic()
    replay = start_segstream(
        ["replay", str(path), "--rate", "500"], stack.segstream_env(), tmp_path / "replay.log"
    )
    try:
        # Kill a worker once the three are busy with the new batch, well before its end. The
        # group's committed offsets tell progress in one request, however busy the machine.
        def committed_of_the_batch() -> int:
            return sum(committed_offsets(stack.bootstrap, GROUP, INPUT_TOPIC).values()) - before

        poll(lambda: committed_of_the_batch() >= 500, "the workers start on the new batch", 60)
        assigned = committed_of_the_batch()
        victim = stack.containers("worker")[0]
        docker("kill", victim)
        replay.finish(timeout=300)
    finally:
        replay.kill()
    figures = _outcome(stack, ledger)
    seconds = round(time.monotonic() - started, 1)

    assert assigned < SIGNUPS * 0.8, f"killed after {assigned} committed records: not mid-replay"
    assert docker("inspect", "-f", "{{.State.ExitCode}}", victim).strip() == "137"
    assert figures["missing"] == 0, figures
    assert figures["duplicates"] == 0, figures
    report.append(
        {
            "phase": "kill -9",
            "workers": "3 -> 2",
            **figures,
            "seconds": seconds,
            "note": f"docker kill after {assigned} of the batch's records committed",
        }
    )


def test_down_and_up_keep_the_model_and_the_committed_offsets(
    stack: ComposeStack, ledger: Ledger, tmp_path: Path, report: list[dict[str, object]]
) -> None:
    model_before = _registry(stack)
    offsets_before = committed_offsets(stack.bootstrap, GROUP, INPUT_TOPIC)
    stack.down()
    assert stack.containers(stopped=True) == []
    assert len(stack.labelled("volume")) == 2, "kafka-data and models outlive `down`"

    started = time.monotonic()
    stack.compose("up", "-d", "--scale", "worker=2")
    stack.wait_healthy("worker", 2)
    seconds = round(time.monotonic() - started, 1)
    model_after = _registry(stack)
    offsets_after = committed_offsets(stack.bootstrap, GROUP, INPUT_TOPIC)
    # The workers carry on from the committed offsets: a new batch comes out exactly once,
    # and nothing replayed before comes out again.
    path = _signups(tmp_path, seed=13, n=500, ledger=ledger)
    replayed = _replay(stack, path)
    assert replayed.returncode == 0, replayed.stderr
    figures = _outcome(stack, ledger)

    assert model_after == model_before, "the trainer must not replace a live model"
    assert "nothing trained" in stack.logs("trainer")
    assert offsets_after == offsets_before
    assert sum(offsets_before.values()) == 2 * SIGNUPS
    assert figures["missing"] == 0, figures
    assert figures["duplicates"] == 0, figures
    report.append(
        {
            "phase": "down, up",
            "workers": 2,
            **figures,
            "seconds": seconds,
            "note": f"model {model_after[0]} and offsets {sum(offsets_after.values())} kept",
        }
    )


def test_down_with_volumes_leaves_nothing_behind(stack: ComposeStack) -> None:
    stack.down("--volumes")

    assert stack.containers(stopped=True) == []
    assert stack.labelled("volume") == []
    assert stack.labelled("network") == []
