"""The README keeps telling the truth about the settings and the set-up commands."""

from __future__ import annotations

from stream_app.settings import settings_table
from tests.conftest import REPO


def test_readme_settings_table_is_the_generated_one() -> None:
    readme = (REPO / "README.md").read_text()
    start = readme.index("<!-- settings:start -->") + len("<!-- settings:start -->")
    end = readme.index("<!-- settings:end -->")
    assert readme[start:end].strip() == settings_table()


def test_readme_set_up_commands_are_the_makefile_targets_ci_runs() -> None:
    readme = (REPO / "README.md").read_text()
    makefile = (REPO / "Makefile").read_text()
    assert "make demo" in readme
    assert "make test" in readme
    assert "\ndemo:" in makefile
    assert "\ntest:" in makefile
    assert "make test" in (REPO / ".ci" / "run").read_text()
