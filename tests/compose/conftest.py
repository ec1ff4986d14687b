"""A docker-compose project of this repository's files for tests/compose, removed at the end.

Run by `make compose-test` (scripts/compose-test), which provides a Docker daemon, the base
images and the built segstream images; without a Docker daemon these tests fail, never skip.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.support import REPO, clean_environment, free_port, poll, write_figures

COMPOSE_FILES = (REPO / "docker-compose.yml", REPO / "tests" / "compose" / "docker-compose.ci.yml")
REPORT: list[dict[str, object]] = []


def docker(*args: str, timeout: float = 120) -> str:
    """Run a docker command; fail the test with its error output when it fails."""
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"docker {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


@dataclass(frozen=True)
class ComposeStack:
    """One docker-compose project: Kafka on a loopback port, topic set-up, trainer, workers."""

    project: str
    env: dict[str, str]
    bootstrap: str
    #: Volumes the project's containers had: the Kafka image declares anonymous volumes
    #: (secrets, config) that a plain `down` leaves behind unlabelled.
    volumes_seen: set[str] = field(default_factory=set)

    def _command(self, *args: str) -> list[str]:
        files = [arg for path in COMPOSE_FILES for arg in ("-f", str(path))]
        return ["docker-compose", "-p", self.project, *files, *args]

    def compose(self, *args: str, timeout: float = 600) -> str:
        """Run docker-compose on the project; fail the test with its output when it fails."""
        done = subprocess.run(
            self._command(*args),
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(
                f"docker-compose {' '.join(args)} failed ({done.returncode}):\n"
                f"{done.stderr[-3000:]}\n{self.logs()}"
            )
        return done.stdout

    def down(self, *args: str) -> None:
        """`docker-compose down` with extra options; never fails (used in teardown too)."""
        for container in self.containers(stopped=True):
            mounts = docker("inspect", "-f", "{{range .Mounts}}{{.Name}} {{end}}", container)
            self.volumes_seen.update(mounts.split())
        subprocess.run(
            self._command("down", "--timeout", "20", *args),
            cwd=REPO,
            env=self.env,
            capture_output=True,
            timeout=300,
            check=False,
        )

    def logs(self, service: str | None = None, lines: int = 40) -> str:
        """The end of the project's container logs, for failure messages."""
        only = [service] if service else []
        done = subprocess.run(
            self._command("logs", "--no-color", "--tail", str(lines), *only),
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return done.stdout[-6000:]

    def containers(self, service: str | None = None, *, stopped: bool = False) -> list[str]:
        """Ids of the project's running (or all) containers, optionally of one service."""
        filters = ["--filter", f"label=com.docker.compose.project={self.project}"]
        if service:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        return docker("ps", "-q", *(["-a"] if stopped else []), *filters).split()

    def labelled(self, kind: str) -> list[str]:
        """The project's volumes or networks (`kind` is volume or network)."""
        label = f"label=com.docker.compose.project={self.project}"
        return docker(kind, "ls", "-q", "--filter", label).split()

    def wait_healthy(self, service: str, count: int, timeout: float = 240) -> float:
        """Wait until exactly count containers of service run and report healthy; seconds taken."""
        started = time.monotonic()

        def states() -> list[str]:
            return [
                docker("inspect", "-f", "{{.State.Health.Status}}", cid).strip()
                for cid in self.containers(service)
            ]

        poll(
            lambda: states() == ["healthy"] * count,
            f"{count} healthy {service} containers",
            timeout,
            interval=1,
            explain=lambda: f"{states()}\n{self.logs()}",
        )
        return time.monotonic() - started

    def worker_health(self, container: str) -> dict[str, object]:
        """A worker's /health, asked in its container by `segstream probe`, which finds the port."""
        body: dict[str, object] = json.loads(
            docker("exec", container, "segstream", "probe", "/health")
        )
        return body

    def segstream_env(self) -> dict[str, str]:
        """Environment for the host's `segstream` commands against this stack."""
        return clean_environment(SEGSTREAM_BOOTSTRAP_SERVERS=self.bootstrap)


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The consumer group's committed offset of every partition of topic."""

    async def read() -> dict[int, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(group)
        finally:
            await admin.close()
        return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}

    return asyncio.run(read())


@pytest.fixture(scope="module")
def stack() -> Iterator[ComposeStack]:
    """The compose project on free loopback ports; `down -v` at the end, whatever happened."""
    done = subprocess.run(
        ["docker", "version"], env=clean_environment(), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"no Docker daemon answers; `make compose-test` provides one: {done.stderr}")
    kafka_port = free_port()
    controller_port = free_port()
    while controller_port == kafka_port:
        controller_port = free_port()
    # KAFKA_ variables would reach the Kafka container through the compose file's defaults.
    env = {k: v for k, v in clean_environment().items() if not k.startswith("KAFKA_")}
    env.update(CI_KAFKA_PORT=str(kafka_port), CI_CONTROLLER_PORT=str(controller_port))
    compose_stack = ComposeStack(
        project=f"segstream-test-{uuid.uuid4().hex[:8]}",
        env=env,
        bootstrap=f"127.0.0.1:{kafka_port}",
    )
    try:
        yield compose_stack
    finally:
        compose_stack.down("--volumes", "--remove-orphans")
        left = set(docker("volume", "ls", "-q").split()) & compose_stack.volumes_seen
        if left:
            docker("volume", "rm", *sorted(left))


@pytest.fixture
def report() -> list[dict[str, object]]:
    """Rows of figures the tests record; printed at the end of the run."""
    return REPORT


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the figures of every phase, and keep them in compose-report.json."""
    columns = ["phase", "workers", "in", "assigned", "dead_lettered", "duplicates", "missing"]
    columns.append("seconds")
    write_figures(
        terminalreporter, "docker-compose figures", columns, REPORT, Path("compose-report.json")
    )
