"""The README keeps telling the truth about the settings and the set-up commands."""

from __future__ import annotations

import subprocess
from pathlib import Path

from stream_app.metrics import metrics_table
from stream_app.settings import settings_table
from tests.conftest import KAFKA_LOCAL, REPO


def _block(name: str) -> str:
    readme = (REPO / "README.md").read_text()
    start = readme.index(f"<!-- {name}:start -->") + len(f"<!-- {name}:start -->")
    return readme[start : readme.index(f"<!-- {name}:end -->")].strip()


def test_readme_settings_table_is_the_generated_one() -> None:
    assert _block("settings") == settings_table()


def test_readme_lists_every_metric_a_worker_serves() -> None:
    assert _block("metrics") == metrics_table()


def test_readme_says_how_to_point_the_cli_at_the_local_broker() -> None:
    readme = (REPO / "README.md").read_text()
    assert "export SEGSTREAM_BOOTSTRAP_SERVERS=$(scripts/kafka-local start)" in readme


def test_kafka_local_status_of_no_broker_is_one_word_and_exit_3(tmp_path: Path) -> None:
    # Scripts read the address from kafka-local's stdout (see the README), so nothing else
    # may go there: a stopped broker's status is the word "stopped" alone.
    done = subprocess.run(
        [str(KAFKA_LOCAL), "status", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout) == (3, "stopped\n")


def test_readme_set_up_commands_are_the_makefile_targets_ci_runs() -> None:
    readme = (REPO / "README.md").read_text()
    makefile = (REPO / "Makefile").read_text()
    assert "make demo" in readme
    assert "make test" in readme
    assert "\ndemo:" in makefile
    assert "\ntest:" in makefile
    assert "make test" in (REPO / ".ci" / "run").read_text()
