"""The command line's own options: --version, `probe` (health checks) and missing extras."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stream_app.cli import WEB_PORT_FILE, app


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def endpoint() -> Iterator[Callable[[int, dict[str, object]], int]]:
    """Serve one status and JSON body on a free loopback port, as a worker's view would."""
    servers: list[ThreadingHTTPServer] = []

    def serve(status: int, body: dict[str, object]) -> int:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                payload = json.dumps({"path": self.path, **body}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        port: int = server.server_address[1]
        return port

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def test_version_prints_the_installed_distributions_version() -> None:
    code, out, _ = _run("--version")
    assert code == 0
    assert out.strip() == f"segstream {version('segstream')}"


def test_probe_prints_the_body_and_succeeds_when_the_worker_answers_200(
    endpoint: Callable[[int, dict[str, object]], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEGSTREAM_WEB_PORT", str(endpoint(200, {"ready": True})))
    code, out, _ = _run("probe")
    assert code == 0
    assert json.loads(out) == {"path": "/ready", "ready": True}


def test_probe_fails_in_one_line_when_the_worker_is_not_ready(
    endpoint: Callable[[int, dict[str, object]], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    port = endpoint(503, {"ready": False})
    monkeypatch.setenv("SEGSTREAM_WEB_PORT", str(port))
    code, out, err = _run("probe", "/ready")
    assert code == 1
    assert json.loads(out)["ready"] is False
    assert err == f"segstream: error: http://127.0.0.1:{port}/ready answered 503\n"


def test_probe_on_port_0_asks_the_port_the_worker_noted(
    endpoint: Callable[[int, dict[str, object]], int],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    (tmp_path / WEB_PORT_FILE).write_text(f"{endpoint(200, {})}\n")
    monkeypatch.setenv("SEGSTREAM_WEB_PORT", "0")
    monkeypatch.setenv("SEGSTREAM_DATA_DIR", str(tmp_path))
    code, out, _ = _run("probe", "/health")
    assert code == 0
    assert json.loads(out) == {"path": "/health"}


def test_probe_on_port_0_without_a_noted_port_says_where_it_looked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SEGSTREAM_WEB_PORT", "0")
    monkeypatch.setenv("SEGSTREAM_DATA_DIR", str(tmp_path))
    code, _, err = _run("probe")
    assert code == 1
    assert err == f"segstream: error: no worker has noted its port in {tmp_path / WEB_PORT_FILE}\n"


def test_a_training_command_without_the_training_libraries_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # As in the worker's image: pandas is not installed.
    monkeypatch.setitem(sys.modules, "pandas", None)
    monkeypatch.delitem(sys.modules, "training.generate", raising=False)
    code, _, err = _run("generate", "customers", "--out", str(tmp_path / "c.csv"))
    assert code == 1
    assert err.startswith("segstream: error: pandas is not installed (")
    assert "pip install 'segstream[train]'" in err
    assert len(err.splitlines()) == 1
