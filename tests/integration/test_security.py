"""SASL against the real broker: workers and commands connect, and no secret is ever shown.

scripts/kafka-local always opens a SASL_PLAINTEXT listener (PLAIN and SCRAM-SHA-256) beside the
plaintext one; its address and its user's password are in the broker's state folder.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import (
    Broker,
    Names,
    WorkerFactory,
    run_segstream,
    segstream_env,
    write_signups,
)

pytestmark = pytest.mark.integration

N_EVENTS = 200
N_INVALID = 10


@dataclass(frozen=True)
class SaslListener:
    """The broker's SASL_PLAINTEXT listener and the one user it knows."""

    bootstrap: str
    username: str
    password: str


@pytest.fixture(scope="session")
def sasl(kafka: Broker) -> SaslListener:
    """The SASL listener of the session broker; the test fails if the broker has none."""
    bootstrap_file = kafka.state_dir / "bootstrap-sasl"
    users_file = kafka.state_dir / "sasl.properties"
    if not bootstrap_file.is_file() or not users_file.is_file():
        pytest.fail(f"kafka-local wrote no SASL listener details into {kafka.state_dir}")
    entries = dict(
        line.split("=", 1) for line in users_file.read_text().splitlines() if "=" in line
    )
    return SaslListener(
        bootstrap=bootstrap_file.read_text().strip(),
        username=entries["username"],
        password=entries["password"],
    )


def _sasl_env(sasl: SaslListener, mechanism: str, password: str | None = None) -> dict[str, str]:
    return {
        "SEGSTREAM_BOOTSTRAP_SERVERS": sasl.bootstrap,
        "SEGSTREAM_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "SEGSTREAM_SASL_MECHANISM": mechanism,
        "SEGSTREAM_SASL_USERNAME": sasl.username,
        "SEGSTREAM_SASL_PASSWORD": password or sasl.password,
    }


def _tail(env: dict[str, str], topic: str, expected: int) -> tuple[list[dict[str, object]], str]:
    args = ["--topic", topic, "--from-beginning", "--limit", str(expected), "--idle-timeout", "30"]
    done = run_segstream(["tail", *args], env=env)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()], done.stdout + done.stderr


def _assert_hidden(secrets: list[str], where: str, text: str) -> None:
    """Fail naming where a secret showed, without printing the text (and so the secret)."""
    for number, secret in enumerate(secrets, start=1):
        shown = secret in text
        assert not shown, f"secret {number} of {len(secrets)} appears in {where}"


@pytest.mark.parametrize(
    ("mechanism", "log_level"),
    [
        ("SCRAM-SHA-256", "info"),
        # Debug is where client libraries print what they send, the PLAIN token included.
        ("PLAIN", "debug"),
    ],
)
def test_a_worker_scores_over_sasl_and_never_shows_a_secret(
    kafka: Broker,
    sasl: SaslListener,
    names: Names,
    trained_model: Path,
    worker_factory: WorkerFactory,
    tmp_path: Path,
    mechanism: str,
    log_level: str,
) -> None:
    signing_key = f"signing-key-{uuid.uuid4().hex}"
    secrets = [sasl.password, signing_key]
    security = {**_sasl_env(sasl, mechanism), "SEGSTREAM_MODEL_SIGNING_KEY": signing_key}
    env = segstream_env(kafka, names, **security)
    outputs: dict[str, str] = {}

    for args in (["topics", "create"], ["publish", str(trained_model)]):
        done = run_segstream(args, env=env)
        assert done.returncode == 0, done.stderr
        outputs[" ".join(args[:1])] = done.stdout + done.stderr
    assert "(signed)" in outputs["publish"]

    # The model comes from the topic, signed: the worker checks it with the same key.
    worker = worker_factory(None, SEGSTREAM_LOG_LEVEL=log_level, **security)
    worker.wait_ready()
    signups = write_signups(tmp_path / "signups.jsonl", N_EVENTS, seed=5, invalid_share=0.05)
    replayed = run_segstream(["replay", str(signups)], env=env)
    assert replayed.returncode == 0, replayed.stderr
    outputs["replay"] = replayed.stdout + replayed.stderr

    assignments, outputs["tail"] = _tail(env, names.output_topic, N_EVENTS - N_INVALID)
    dead_letters, outputs["tail dlq"] = _tail(env, names.dlq_topic, N_INVALID)
    assert len({a["source_event_id"] for a in assignments}) == N_EVENTS - N_INVALID
    assert len(dead_letters) == N_INVALID
    # Echoing the customer's age, income and gender is off unless asked for.
    assert all(a.get("customer") is None for a in assignments)

    for path in ("/health", "/ready", "/metrics"):
        response = worker.health(path)
        assert response.status_code == 200, path
        outputs[path] = response.text
    assert json.loads(outputs["/ready"])["assigned"] == N_EVENTS - N_INVALID
    assert worker.stop() == 0, worker.log_tail()
    outputs["worker log"] = worker.log_path.read_text(errors="replace")
    assert f"via {mechanism}" in outputs["worker log"], "aiokafka logs the mechanism it used"
    for where, text in outputs.items():
        _assert_hidden(secrets, where, text)


def test_a_wrong_password_fails_in_one_line_that_does_not_show_it(
    kafka: Broker, sasl: SaslListener, names: Names
) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    env = segstream_env(kafka, names, **_sasl_env(sasl, "SCRAM-SHA-256", password=wrong))
    done = run_segstream(["topics", "create"], env=env, timeout=120)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"segstream: error: Kafka at {sasl.bootstrap}: authentication failed")
    _assert_hidden(
        [wrong, sasl.password], "the failing command's output", done.stdout + done.stderr
    )


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"SEGSTREAM_SASL_MECHANISM": "MD5"}, "SEGSTREAM_SASL_MECHANISM"),
        ({"SEGSTREAM_SECURITY_PROTOCOL": "PLAINTEXT"}, "does not use SASL"),
        ({"SEGSTREAM_SASL_USERNAME": ""}, "needs SEGSTREAM_SASL_USERNAME"),
    ],
)
def test_bad_security_settings_fail_in_one_line_that_does_not_show_a_secret(
    kafka: Broker, sasl: SaslListener, names: Names, extra: dict[str, str], expected: str
) -> None:
    signing_key = f"signing-key-{uuid.uuid4().hex}"
    security = {**_sasl_env(sasl, "SCRAM-SHA-256"), "SEGSTREAM_MODEL_SIGNING_KEY": signing_key}
    env = segstream_env(kafka, names, **{**security, **extra})
    done = run_segstream(["topics", "create"], env=env, timeout=60)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("segstream: error: invalid settings: ")
    assert expected in done.stderr
    _assert_hidden([sasl.password, signing_key], "the failing command's output", done.stderr)
