"""`.ci/run` runs the README's test command and fails when the tests fail."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from conftest import TEMPLATE, run


def readme_block(heading: str) -> list[str]:
    """The command lines of the first fenced code block under ``heading`` in README.md."""
    text = (TEMPLATE / "README.md").read_text(encoding="utf-8")
    section = text.split(heading, 1)[1]
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", section, re.S)
    assert block, f"no code block under {heading!r}"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_ci_calls_the_readme_test_command() -> None:
    test_command = readme_block("## Test")
    ci_lines = [line.strip() for line in (TEMPLATE / ".ci" / "run").read_text().splitlines()]
    for command in test_command:
        assert command in ci_lines, f"{command!r} from README.md is not run by .ci/run"


@pytest.mark.skipif(sys.platform == "win32", reason=".ci/run is a bash script for CI machines")
@pytest.mark.parametrize(("body", "passes"), [("assert 1 + 1 == 2", True), ("assert 1 == 2", False)])
def test_ci_exit_status_follows_tests(tmp_path: Path, body: str, passes: bool) -> None:
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    (repo / "tests").mkdir()
    shutil.copy(TEMPLATE / ".ci" / "run", repo / ".ci" / "run")
    (repo / "requirements-dev.txt").write_text("# nothing to add\n", encoding="utf-8")
    (repo / "tests" / "test_x.py").write_text(f"def test_x():\n    {body}\n", encoding="utf-8")
    env = {"VENV": sys.prefix, "PATH": "/usr/bin:/bin"}
    result = run(["bash", ".ci/run"], cwd=repo, env=env)
    assert (result.returncode == 0) == passes, result.stdout + result.stderr
    assert ("1 passed" if passes else "1 failed") in result.stdout
