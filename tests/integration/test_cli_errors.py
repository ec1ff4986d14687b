"""Every command, given bad arguments, bad paths, bad files or a broker that is not there, says
what went wrong in exactly one line on stderr and exits 1 (2 for usage), never a traceback."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import (
    Broker,
    Names,
    clean_environment,
    free_port,
    run_segstream,
    segstream_env,
)

# One process runs the whole module (make test-suite, pytest-xdist --dist loadgroup): its
# module-scoped fixtures are made once.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("cli_errors")]

USAGE = 2


@dataclass(frozen=True)
class Files:
    """Paths the sweep points commands at."""

    model: Path
    customers: Path
    signups: Path
    folder: Path
    plain_file: Path
    latin1_model: Path


@pytest.fixture(scope="module")
def files(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Files:
    """A trained model, valid input files, a folder, a plain file and a non-UTF-8 manifest."""
    root = tmp_path_factory.mktemp("sweep")
    folder = root / "a-folder"
    folder.mkdir()
    plain = root / "plain.txt"
    plain.write_text("not a folder\n")
    latin1 = root / "latin1-model"
    latin1.mkdir()
    (latin1 / "manifest.json").write_bytes('{"name": "Caf\xe9"}'.encode("latin-1"))
    signups = root / "signups.jsonl"
    made = run_segstream(["generate", "signups", "--n", "5", "--out", str(signups)])
    assert made.returncode == 0, made.stderr
    return Files(
        model=trained_model,
        customers=REPO_CUSTOMERS,
        signups=signups,
        folder=folder,
        plain_file=plain,
        latin1_model=latin1,
    )


REPO_CUSTOMERS = Path(__file__).resolve().parents[2] / "data" / "customers.csv"


def _assert_one_line(done: subprocess.CompletedProcess[str], status: int, *words: str) -> str:
    """The command failed with status, one stderr line naming the problem, no traceback."""
    everything = done.stdout + done.stderr
    assert "Traceback" not in everything, everything[-3000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{done.stderr[-3000:]}"
    assert done.returncode == status, (done.returncode, lines[0])
    line = lines[0]
    assert line.startswith("segstream: error: "), line
    for word in words:
        assert word in line, (word, line)
    return line


# (arguments with placeholders, words the line must hold); usage errors exit 2.
USAGE_CASES = [
    (["bogus"], ["No such command"]),
    (["train"], ["train", "--data"]),
    (["train", "--data", "{customers}", "--k"], ["--k"]),
    (["tail", "--idle-timeout", "-1"], ["--idle-timeout"]),
    (["generate", "customers", "--n", "0"], ["--n"]),
    (["score", "--model", "{model}"], ["--input"]),
    (["publish", "--nope"], ["--nope"]),
    (["replay"], ["Missing argument 'file'"]),
]


@pytest.mark.parametrize(("args", "words"), USAGE_CASES, ids=[" ".join(a) for a, _ in USAGE_CASES])
def test_a_usage_error_is_one_line_with_exit_status_2(
    files: Files, args: list[str], words: list[str]
) -> None:
    done = run_segstream([a.format(**vars(files)) for a in args])
    _assert_one_line(done, USAGE, *words, "--help")


BAD_FILE_CASES = [
    (["schemas", "--out", "{plain_file}"], ["is a file"]),
    (["score", "--model", "{model}", "--input", "{signups}", "--out", "{folder}"], ["directory"]),
    (["score", "--model", "{model}", "--input", "{folder}"], ["directory"]),
    (["score", "--model", "{plain_file}", "--input", "{signups}"], ["plain.txt"]),
    (["generate", "signups", "--out", "{folder}"], ["directory"]),
    (["generate", "customers", "--out", "{folder}"], ["directory"]),
    (["train", "--data", "{customers}", "--out", "{plain_file}"], ["is a file"]),
    (["train", "--data", "{customers}", "--version", "../x"], ["--version"]),
    (["train", "--data", "{folder}"], ["directory"]),
    (["train", "--data", "{plain_file}.missing"], ["no such file"]),
    (["report", "{latin1_model}"], ["not UTF-8"]),
    (["report", "{folder}"], ["no model"]),
    (["replay", "{folder}"], ["directory"]),
    (["replay", "{signups}", "--topic", "bad name!"], ["not a legal Kafka topic name"]),
    (["tail", "--topic", "bad name!"], ["not a legal Kafka topic name"]),
    (["sign", "{model}"], ["SEGSTREAM_MODEL_SIGNING_KEY"]),
    (["publish"], ["MODEL_DIR"]),
    (["publish", "{folder}"], ["no manifest"]),
]


@pytest.mark.parametrize(
    ("args", "words"), BAD_FILE_CASES, ids=[" ".join(a) for a, _ in BAD_FILE_CASES]
)
def test_a_bad_path_or_file_is_one_line_with_exit_status_1(
    files: Files, args: list[str], words: list[str]
) -> None:
    done = run_segstream([a.format(**vars(files)) for a in args])
    _assert_one_line(done, 1, *words)


DEAD_BROKER_COMMANDS = [
    ["topics", "create"],
    ["replay", "{signups}"],
    ["tail"],
    ["publish", "{model}"],
    ["publish", "--rollback"],
    ["promote", "v1"],
    ["models"],
    ["worker"],
    ["train", "--data", "{customers}", "--k", "4", "--resamples", "0", "--no-report", "--publish",
     "--out", "{folder}/models"],
]  # fmt: skip


@pytest.mark.parametrize(
    "args", DEAD_BROKER_COMMANDS, ids=[" ".join(a) for a in DEAD_BROKER_COMMANDS]
)
def test_every_kafka_command_names_a_dead_broker_in_one_line(
    files: Files, args: list[str], tmp_path: Path
) -> None:
    address = f"127.0.0.1:{free_port()}"
    env = clean_environment(
        SEGSTREAM_BOOTSTRAP_SERVERS=address,
        SEGSTREAM_WEB_PORT=str(free_port()),
        SEGSTREAM_DATA_DIR=str(tmp_path / "data"),
    )
    done = run_segstream([a.format(**vars(files)) for a in args], env=env, timeout=60)
    _assert_one_line(done, 1, "cannot reach Kafka", address, "connection refused")


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    accepted: list[socket.socket] = []
    errors: list[OSError] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError as error:  # reaches the test at teardown, not the thread's end
                errors.append(error)
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()
    assert not errors, f"the silent listener failed: {errors!r}"


def test_a_broker_that_never_answers_is_given_up_after_the_connect_timeout(
    silent_port: int,
) -> None:
    env = clean_environment(
        SEGSTREAM_BOOTSTRAP_SERVERS=f"127.0.0.1:{silent_port}", SEGSTREAM_CONNECT_TIMEOUT="2"
    )
    began = time.monotonic()
    done = run_segstream(["models"], env=env, timeout=60)
    took = time.monotonic() - began
    _assert_one_line(done, 1, "did not answer within 2 s", "SEGSTREAM_CONNECT_TIMEOUT")
    assert took < 10, f"took {took:.1f} s with a 2 s connect timeout"


def test_a_wrong_sasl_password_says_authentication(kafka: Broker, names: Names) -> None:
    env = segstream_env(
        kafka,
        names,
        SEGSTREAM_BOOTSTRAP_SERVERS=(kafka.state_dir / "bootstrap-sasl").read_text().strip(),
        SEGSTREAM_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        SEGSTREAM_SASL_MECHANISM="SCRAM-SHA-256",
        SEGSTREAM_SASL_USERNAME="segstream",
        SEGSTREAM_SASL_PASSWORD="not-the-password",
    )
    done = run_segstream(["models"], env=env, timeout=60)
    line = _assert_one_line(done, 1, "authentication failed", "SCRAM-SHA-256")
    assert "not-the-password" not in line


def test_tailing_a_mistyped_topic_fails_and_does_not_create_it(kafka: Broker, names: Names) -> None:
    env = segstream_env(kafka, names)
    typo = f"{names.output_topic}-typo"
    for _ in range(2):  # the second run would succeed if the first had created the topic
        done = run_segstream(["tail", "--topic", typo, "--idle-timeout", "1"], env=env)
        _assert_one_line(done, 1, f"topic {typo} does not exist")


def test_replay_to_a_missing_topic_fails_at_once(kafka: Broker, names: Names, files: Files) -> None:
    env = segstream_env(kafka, names)
    done = run_segstream(["replay", str(files.signups)], env=env, timeout=60)
    _assert_one_line(done, 1, f"topic {names.input_topic} does not exist")


def test_a_second_worker_on_a_busy_web_port_says_so_in_one_line(
    kafka: Broker, names: Names, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        env = segstream_env(
            kafka, names, SEGSTREAM_WEB_PORT=str(port), SEGSTREAM_DATA_DIR=str(tmp_path / "d")
        )
        done = run_segstream(["worker"], env=env, timeout=60)
    _assert_one_line(done, 1, f"SEGSTREAM_WEB_PORT={port}", "in use")


def test_a_worker_without_its_topics_says_how_to_create_them(
    kafka: Broker, names: Names, tmp_path: Path
) -> None:
    env = segstream_env(
        kafka,
        names,
        SEGSTREAM_CREATE_TOPICS="false",
        SEGSTREAM_WEB_PORT=str(free_port()),
        SEGSTREAM_DATA_DIR=str(tmp_path / "d"),
    )
    done = run_segstream(["worker"], env=env, timeout=60)
    _assert_one_line(
        done, 1, names.input_topic, "segstream topics create", "SEGSTREAM_CREATE_TOPICS"
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SEGSTREAM_BATCH_SIZE", "abc"),
        ("SEGSTREAM_CONNECT_TIMEOUT", "0"),
        ("SEGSTREAM_TOPIC_REPLICATION_FACTOR", "0"),
        ("SEGSTREAM_PROCESSING_GUARANTEE", "maybe"),
    ],
)
def test_an_invalid_setting_stops_any_command_naming_the_variable(
    variable: str, value: str
) -> None:
    for args in (["settings"], ["generate", "signups", "--n", "1"]):
        done = run_segstream(args, env=clean_environment(**{variable: value}))
        _assert_one_line(done, 1, variable)
