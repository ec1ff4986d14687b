"""docker-compose.yml is valid and its containers run the same segstream commands as the tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support import REPO, clean_environment, run_segstream


def _compose() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services: dict[str, dict[str, Any]] = document["services"]
    return services


def test_docker_compose_config_is_valid() -> None:
    compose = shutil.which("docker-compose")
    assert compose, "docker-compose is required (make test installs Debian's package)"
    done = subprocess.run(
        [compose, "config", "-q"],
        cwd=REPO,
        env=clean_environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_services_run_the_segstream_commands_the_tests_use() -> None:
    services = _compose()
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"
    pom = (REPO / "scripts" / "kafka" / "pom.xml").read_text()
    assert "<kafka.version>4.1.1</kafka.version>" in pom, "compose and local broker must agree"
    assert services["topic-init"]["command"] == ["segstream", "topics", "create"]
    assert services["worker"]["command"] == ["segstream", "worker"]
    assert services["trainer"]["command"][:2] == ["segstream", "train"]
    assert "container_name" not in services["worker"], "a fixed name would prevent --scale"
    assert "ports" not in services["worker"], "fixed host ports would prevent --scale"


def test_kafka_keeps_its_log_on_the_volume() -> None:
    kafka = _compose()["kafka"]
    log_dirs = kafka["environment"]["KAFKA_LOG_DIRS"]
    assert f"kafka-data:{log_dirs}" in kafka["volumes"]


def test_the_trainer_command_works_on_the_shipped_sample(tmp_path: Path) -> None:
    command = list(_compose()["trainer"]["command"])
    # Publishing is the compose test's business (tests/compose): here nothing runs Kafka.
    args = [str(a) for a in command[1:] if a not in ("--publish", "--unless-live")]
    args[args.index("/data/customers.csv")] = str(REPO / "data" / "customers.csv")
    args[args.index("/models")] = str(tmp_path / "models")
    done = run_segstream(args)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "models" / "LATEST").is_file()
