"""Helpers for testing the template the way a user uses it: render, lint, install, test."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parents[1]
DEFAULTS: dict[str, Any] = json.loads((TEMPLATE / "cookiecutter.json").read_text(encoding="utf-8"))
CHOICE_KEYS = [k for k, v in DEFAULTS.items() if isinstance(v, list) and not k.startswith("_")]


def choices(key: str) -> list[str]:
    return list(DEFAULTS[key])


def combinations() -> list[dict[str, str]]:
    """Answers that render every value of every choice at least once.

    task x spatial_dims x image_format interact (models, dummy data, loaders) and are crossed;
    the other choices are cycled through the crossed ones so each value appears.
    """
    crossed = [
        {"task": t, "spatial_dims": d, "image_format": f}
        for t, d, f in itertools.product(
            choices("task"), choices("spatial_dims"), choices("image_format")
        )
        if not (f == "png" and d == "3")  # PNG holds 2D images only: refused by the hook
    ]
    cycled = [k for k in CHOICE_KEYS if k not in crossed[0]]
    for i, answers in enumerate(crossed):
        for key in cycled:
            values = choices(key)
            answers[key] = values[i % len(values)]
        answers["project_name"] = f"Render {i} {answers['task']} {answers['spatial_dims']}d"
    return crossed


def render(output_dir: Path, **answers: str) -> Path:
    """Render the template without prompts, the hooks included; return the project folder."""
    return Path(
        cookiecutter(
            str(TEMPLATE),
            no_input=True,
            extra_context=answers,
            output_dir=str(output_dir),
        )
    )


def run(cmd: list[str], cwd: Path, timeout: int = 600, **kwargs: Any) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, **kwargs)


def cookiecutter_cli(output_dir: Path, *answers: str) -> subprocess.CompletedProcess:
    """Run the cookiecutter command line as a user would, answers as ``key=value``."""
    return run(
        [sys.executable, "-m", "cookiecutter", "--no-input", "-o", str(output_dir),
         str(TEMPLATE), *answers],
        cwd=output_dir,
    )


@pytest.fixture(scope="session", params=combinations(), ids=lambda a: "-".join(
    f"{a[k]}" for k in ("task", "spatial_dims", "image_format", "tracking", "ci", "license")
))
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """One rendered project per answer combination: ``(answers, project_dir)``."""
    answers = request.param
    project = render(tmp_path_factory.mktemp("render"), **answers)
    return answers, project
