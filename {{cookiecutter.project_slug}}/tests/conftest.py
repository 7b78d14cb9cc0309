"""Shared fixtures: every test runs in its own temporary project folder, offline."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tiny_data import tiny_dataset, train_small

from {{ cookiecutter.package_name }} import paths

PROJECT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the tests marked ``applies(task=..., dims=...)`` that are about another kind of
    project (a classification setting in a segmentation project, a 3D series in a 2D one).

    They are deselected rather than skipped: they do not apply here, nothing is missing.
    """
    from tiny_data import DIMS, TASK

    keep, drop = [], []
    for item in items:
        marker = item.get_closest_marker("applies")
        wanted = marker.kwargs if marker else {}
        ok = wanted.get("task", TASK) == TASK and wanted.get("dims", DIMS) == DIMS
        (keep if ok else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


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


@pytest.fixture
def tiny(project: Path) -> Path:
    """The temporary project with the tiny dataset in ``data/tiny`` (see ``tiny_data.py``)."""
    tiny_dataset(project / "data" / "tiny")
    return project


@pytest.fixture(scope="session")
def _trained_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with the tiny dataset and one short training run, made once per session."""
    root = tmp_path_factory.mktemp("trained")
    shutil.copytree(PROJECT / "configs", root / "configs")
    shutil.copy(PROJECT / "setup.py", root / "setup.py")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(paths.ROOT_ENV, str(root))
        patch.chdir(root)
        tiny_dataset(root / "data" / "tiny")
        train_small("train.epochs=3", "run.name=trained")
    return root


@pytest.fixture
def trained(_trained_once: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The run folder of a short training run, in a fresh copy of its project (set as root).

    Tests may write into it freely: each gets its own copy.
    """
    root = tmp_path / "project"
    shutil.copytree(_trained_once, root)
    monkeypatch.setenv(paths.ROOT_ENV, str(root))
    monkeypatch.chdir(root)
    (run,) = sorted((root / "runs").iterdir())
    return run
