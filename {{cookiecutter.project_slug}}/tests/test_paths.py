"""Paths are found from the project root, whatever the working directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from {{ cookiecutter.package_name }} import paths


def test_root_from_environment(project: Path) -> None:
    assert paths.project_root() == project.resolve()
    assert paths.runs_dir() == project.resolve() / "runs"


def test_root_found_from_a_subfolder(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(paths.ROOT_ENV)
    sub = project / "notebooks" / "deep"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    assert paths.project_root() == project.resolve()


def test_resolve_keeps_absolute_and_roots_relative(project: Path, tmp_path: Path) -> None:
    assert paths.resolve("data/dummy") == project.resolve() / "data" / "dummy"
    assert paths.resolve(tmp_path / "x") == tmp_path / "x"
