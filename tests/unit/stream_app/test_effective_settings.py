"""`segstream settings`: the values in effect, where each came from, and misspelt variables."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from stream_app.cli import app
from stream_app.settings import Settings, effective_settings_table, unknown_variable_warnings

PASSWORD = "pw-7f3e1c"


def _row(table: str, variable: str) -> list[str]:
    line = next(line for line in table.splitlines() if line.startswith(f"| `{variable}`"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_each_value_shows_where_it_came_from_and_secrets_are_masked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "SEGSTREAM_BATCH_WINDOW_MS=25\nSEGSTREAM_BATCH_SIZE=9\nOTHER_TOOL=1\n"
    )
    monkeypatch.setenv("SEGSTREAM_BATCH_SIZE", "7")  # the environment wins over .env
    monkeypatch.setenv("SEGSTREAM_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("SEGSTREAM_SASL_USERNAME", "segstream")
    monkeypatch.setenv("SEGSTREAM_SASL_PASSWORD", PASSWORD)
    table = effective_settings_table(Settings())
    assert _row(table, "SEGSTREAM_BATCH_SIZE") == ["`SEGSTREAM_BATCH_SIZE`", "`7`", "environment"]
    assert _row(table, "SEGSTREAM_BATCH_WINDOW_MS")[1:] == ["`25`", ".env file"]
    assert _row(table, "SEGSTREAM_SESSION_TIMEOUT_MS")[1:] == ["`10000`", "default"]
    assert _row(table, "SEGSTREAM_SASL_PASSWORD")[1:] == ["**********", "environment"]
    assert PASSWORD not in table


def test_the_settings_command_prints_the_values_in_effect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SEGSTREAM_BATCH_SIZE", "7")
    result = CliRunner().invoke(app, ["settings"])
    assert result.exit_code == 0, result.stderr
    assert "| `SEGSTREAM_BATCH_SIZE` | `7` | environment |" in result.stdout


def test_an_invalid_value_stops_the_settings_command_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SEGSTREAM_BATCH_SIZE", "abc")
    result = CliRunner().invoke(app, ["settings"])
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("segstream: error: invalid settings: SEGSTREAM_BATCH_SIZE")


def test_a_misspelt_variable_is_named_with_the_closest_setting() -> None:
    warnings = unknown_variable_warnings(
        {
            "SEGSTREAM_BOOTSTRAP_SERVER": "x",  # one letter short
            "segstream_batch_sise": "1",  # any case, as pydantic-settings reads them
            "SEGSTREAM_KAFKA_DIR": "/tmp",  # scripts/kafka-local's own variable
            "SEGSTREAM_BATCH_SIZE": "1",
            "PATH": "/bin",
        }
    )
    assert warnings == [
        "SEGSTREAM_BATCH_SISE is not a segstream setting and is ignored; did you mean "
        "SEGSTREAM_BATCH_SIZE?",
        "SEGSTREAM_BOOTSTRAP_SERVER is not a segstream setting and is ignored; did you mean "
        "SEGSTREAM_BOOTSTRAP_SERVERS?",
    ]


def test_the_cli_warns_about_a_misspelt_variable_and_carries_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SEGSTREAM_BOOTSTRAP_SERVER", "kafka:9092")
    result = CliRunner().invoke(app, ["settings"])
    assert result.exit_code == 0
    assert result.stderr.strip() == (
        "segstream: warning: SEGSTREAM_BOOTSTRAP_SERVER is not a segstream setting and is "
        "ignored; did you mean SEGSTREAM_BOOTSTRAP_SERVERS?"
    )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SEGSTREAM_TOPIC_REPLICATION_FACTOR", "0"),
        ("SEGSTREAM_TOPIC_REPLICATION_FACTOR", "-2"),
        ("SEGSTREAM_TOPIC_MIN_INSYNC_REPLICAS", "0"),
        ("SEGSTREAM_CONNECT_TIMEOUT", "0"),
    ],
)
def test_replication_and_timeout_settings_are_checked(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    result = CliRunner().invoke(app, ["settings"])
    assert result.exit_code == 1
    assert variable in result.stderr


def test_topics_default_to_the_brokers_replication() -> None:
    settings = Settings()
    assert settings.topic_replication_factor == -1
    assert settings.topic_min_insync_replicas is None
    assert settings.create_topics is False


def test_version_prints_the_package_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.startswith("segstream 0.")
