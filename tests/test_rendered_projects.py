"""Rendered projects install and pass their own test suites, as a student would run them.

The projects are installed (editable, no dependency resolution) into one virtual environment
layered on this one, so the heavy dependencies are installed once.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import render, run

pytestmark = pytest.mark.slow

PROJECTS = [
    {"task": "segmentation", "spatial_dims": "3", "image_format": "nifti"},
    {"task": "classification", "spatial_dims": "2", "image_format": "png", "tracking": "csv"},
    {"task": "segmentation", "spatial_dims": "2", "image_format": "dicom", "ci": "gitlab"},
    {"task": "classification", "spatial_dims": "3", "image_format": "nifti", "tracking": "csv"},
]
CLASSIFIERS = [i for i, answers in enumerate(PROJECTS) if answers["task"] == "classification"]


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


@pytest.fixture(scope="module")
def shared_env(tmp_path_factory: pytest.TempPathFactory):
    """A virtual environment that sees this environment's packages, with the projects installed."""
    root = tmp_path_factory.mktemp("shared")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv_python(venv)
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                  cwd=root).stdout.strip()
    parents = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib"), *site.getsitepackages()}
    Path(purelib, "_template_parent.pth").write_text("\n".join(sorted(parents)) + "\n", "utf-8")
    projects = []
    for i, answers in enumerate(PROJECTS):
        name = f"Shared {i} {answers['task']} {answers['spatial_dims']}d {answers['image_format']}"
        project = render(root / "projects", project_name=name, **answers)
        install = run(
            [str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation",
             "--no-index", "-e", ".[dev]"],
            cwd=project,
        )
        assert install.returncode == 0, install.stdout + install.stderr
        projects.append(project)
    return python, projects


@pytest.mark.parametrize("index", range(len(PROJECTS)), ids=lambda i: "-".join(PROJECTS[i].values()))
def test_rendered_suite_passes(shared_env, index: int) -> None:
    python, projects = shared_env
    project = projects[index]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    result = run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project,
                 env=env, timeout=900)
    tail = "\n".join(result.stdout.splitlines()[-30:])
    assert result.returncode == 0, tail + result.stderr
    assert " passed" in tail and "skipped" not in tail, tail


def test_default_project_slow_suite_passes(shared_env) -> None:
    """The slow tests of the default project: SIGKILL-and-resume, DDP, overfitting, full dummy set."""
    python, projects = shared_env
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    result = run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "slow"],
                 cwd=projects[0], env=env, timeout=1800)
    tail = "\n".join(result.stdout.splitlines()[-30:])
    assert result.returncode == 0, tail + result.stderr
    assert " passed" in tail and "failed" not in tail, tail


@pytest.mark.parametrize("index", CLASSIFIERS, ids=lambda i: "-".join(PROJECTS[i].values()))
def test_classification_demo_learns(shared_env, index: int) -> None:
    """The classification demos learn (issue 10: they stayed at chance), in 2D and in 3D."""
    python, projects = shared_env
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    result = run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "slow",
                  "-k", "demo_learns"], cwd=projects[index], env=env, timeout=900)
    tail = "\n".join(result.stdout.splitlines()[-30:])
    assert result.returncode == 0, tail + result.stderr
    assert "1 passed" in tail, tail
