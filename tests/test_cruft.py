"""cruft (and so `cruft update`) works with the template from a git checkout."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from conftest import TEMPLATE, run

pytestmark = pytest.mark.slow


def git(*args: str, cwd: Path) -> str:
    result = run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def template_repo(tmp_path: Path) -> Path:
    """A git repository holding the template's files as they are in this working tree."""
    repo = tmp_path / "template"
    ignore = shutil.ignore_patterns(".git", "__pycache__", ".pytest_cache", ".ruff_cache", "build")
    shutil.copytree(TEMPLATE, repo, ignore=ignore)
    git("init", "-q", "-b", "main", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "template", cwd=repo)
    return repo


def cruft(*args: str, cwd: Path) -> None:
    result = run([sys.executable, "-m", "cruft", *args], cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cruft_create_then_check(tmp_path: Path) -> None:
    repo = template_repo(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    cruft("create", "--no-input", "--output-dir", str(out), str(repo), cwd=out)
    project = out / "medical-imaging-project"
    state = json.loads((project / ".cruft.json").read_text(encoding="utf-8"))
    assert state["commit"] == git("rev-parse", "HEAD", cwd=repo)
    assert state["context"]["cookiecutter"]["task"] == "segmentation"
    assert (project / "setup.py").is_file()  # the post hook ran under cruft
    cruft("check", cwd=project)
