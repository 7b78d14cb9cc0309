"""Shared fixtures: every test runs in its own temporary project folder, offline."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }} import paths

PROJECT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of this project's configs in a temporary folder, set as the project root.

    Commands write their data, runs and reports there, never into the real project.
    """
    shutil.copytree(PROJECT / "configs", tmp_path / "configs")
    shutil.copy(PROJECT / "setup.py", tmp_path / "setup.py")
    monkeypatch.setenv(paths.ROOT_ENV, str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path
