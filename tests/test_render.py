"""Every choice renders a clean project: no template leftovers, valid files, lint-clean code."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml

from cookiecutter.main import cookiecutter

from conftest import CHOICE_KEYS, DEFAULTS, TEMPLATE, choices, combinations, render, run

LEFTOVER = re.compile(r"\{\{|\{%|\{#|%\}|cookiecutter\.")
TEXT_SUFFIXES = {".py", ".md", ".toml", ".yaml", ".yml", ".txt", ".cfg", ".ipynb", ".json", ".in"}


def text_files(project: Path) -> list[Path]:
    names = {"LICENSE", ".gitignore", ".gitattributes"}
    return [
        p for p in project.rglob("*")
        if p.is_file() and (p.suffix in TEXT_SUFFIXES or p.name in names)
    ]


def test_combinations_cover_every_value() -> None:
    combos = combinations()
    for key in CHOICE_KEYS:
        assert {c[key] for c in combos} == set(choices(key)), key


def test_no_template_syntax_left(rendered) -> None:
    _, project = rendered
    for path in text_files(project):
        text = path.read_text(encoding="utf-8")
        # GitHub Actions expressions are meant to stay.
        text = re.sub(r"\$\{\{[^}]*\}\}", "", text)
        match = LEFTOVER.search(text)
        assert match is None, f"{path.relative_to(project)}: {match.group(0)!r} left"


def test_python_parses_and_ruff_is_clean(rendered) -> None:
    _, project = rendered
    for path in project.rglob("*.py"):
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    lint = run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=project)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = run([sys.executable, "-m", "ruff", "format", "--check", "--no-cache", "."], cwd=project)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_config_files_load(rendered) -> None:
    answers, project = rendered
    for path in project.rglob("*.toml"):
        tomllib.loads(path.read_text(encoding="utf-8"))
    for path in [*project.rglob("*.yaml"), *project.rglob("*.yml")]:
        assert yaml.safe_load(path.read_text(encoding="utf-8")) is not None, path
    for path in project.rglob("*.ipynb"):
        nbformat.validate(nbformat.read(path, as_version=4))
    default = yaml.safe_load((project / "configs" / "default.yaml").read_text(encoding="utf-8"))
    assert default["task"] == answers["task"]
    assert default["spatial_dims"] == int(answers["spatial_dims"])
    assert default["data"]["format"] == answers["image_format"]


def test_answers_are_recorded(rendered) -> None:
    answers, project = rendered
    recorded = json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))
    for key, value in answers.items():
        assert recorded[key] == value, key
    public = {k for k in DEFAULTS if not k.startswith("_")}
    assert set(recorded) == public


def test_optional_files_follow_answers(rendered) -> None:
    answers, project = rendered
    assert (project / "notebooks" / "pipeline.ipynb").exists() == (
        answers["include_notebook"] == "true"
    )
    assert (project / ".github" / "workflows" / "ci.yml").exists() == (answers["ci"] == "github")
    assert (project / ".gitlab-ci.yml").exists() == (answers["ci"] == "gitlab")


def test_requirements_follow_answers(rendered) -> None:
    answers, project = rendered
    reqs = (project / "requirements.txt").read_text(encoding="utf-8")
    names = {re.split(r"[<>=!~ ]", line)[0] for line in reqs.splitlines() if line and line[0] != "#"}
    assert {"torch", "numpy", "scipy", "nibabel", "pydicom", "monai", "captum", "optuna"} <= names
    assert ("tensorboard" in names) == (answers["tracking"] == "tensorboard")
    assert ("mlflow" in names) == (answers["tracking"] == "mlflow")
    torch_line = next(line for line in reqs.splitlines() if line.startswith("torch"))
    assert torch_line == "torch>=2.2"  # a range that the local 2.13 CPU build satisfies


LICENSE_FIRST_WORDS = {
    "MIT": "MIT License",
    "BSD-3-Clause": "BSD 3-Clause License",
    "Apache-2.0": "Apache License",
    "GPL-3.0-only": "GNU GENERAL PUBLIC LICENSE",
    "Proprietary": "Copyright (c)",
}


def test_license_file_matches_answer(rendered) -> None:
    answers, project = rendered
    text = (project / "LICENSE").read_text(encoding="utf-8")
    assert text.strip().startswith(LICENSE_FIRST_WORDS[answers["license"]])
    if answers["license"] in ("MIT", "BSD-3-Clause", "Proprietary"):
        assert DEFAULTS["author_name"] in text



def readme_block(readme: str, heading: str) -> list[str]:
    """The command lines of the first code block under ``heading``."""
    block = re.search(r"```(?:bash)?\n(.*?)```", readme.split(heading, 1)[1], re.S)
    assert block, f"no code block under {heading}"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_gives_install_demo_and_test_commands(rendered) -> None:
    answers, project = rendered
    readme = (project / "README.md").read_text(encoding="utf-8")
    package = json.loads((project / ".cookiecutter.json").read_text())["package_name"]
    assert readme_block(readme, "## Install") == ['pip install -e ".[dev]"']
    assert readme_block(readme, "## Run") == [f"{package} demo"]
    assert readme_block(readme, "## Test") == ["pytest"]
    assert ("and the notebook" in readme) == (answers.get("include_notebook", "true") == "true")

def git_ignored(project: Path, paths: list[str]) -> set[str]:
    if not (project / ".git").exists():
        run(["git", "init", "-q"], cwd=project)
    result = run(["git", "check-ignore", "--no-index", *paths], cwd=project)
    return set(result.stdout.split())


def test_gitignore_keeps_patient_data_out(rendered) -> None:
    answers, project = rendered
    data = [
        "data/raw/scan.png", "data/dummy/manifest.csv", "scans/ct.dcm", "x/y/img.nii",
        "x/img.nii.gz", "a.mha", "a.mhd", "a.nrrd", "runs/2026-01-01_000000_b/metrics.csv",
        "notebooks/.ipynb_checkpoints/x.ipynb", "src/pkg/__pycache__/m.pyc",
    ]
    assert git_ignored(project, data) == set(data)
    kept = ["src/pkg/cli.py", "src/pkg/data/io.py", "tests/data/notes.md", "configs/default.yaml", "README.md", "EXPERIMENTS.md",
            "tests/test_cli.py", "requirements.txt", "setup.py"]
    assert git_ignored(project, kept) == set()
    checkpoints = ["runs/r/checkpoints/best.pt", "models/pretrained.pth", "checkpoints/last.pt"]
    ignored = git_ignored(project, checkpoints)
    if answers["commit_checkpoints"] == "true":
        assert ignored == set()
        # The rest of a run folder stays out even when its checkpoints go in.
        assert git_ignored(project, ["runs/r/metrics.csv"]) == {"runs/r/metrics.csv"}
    else:
        assert ignored == set(checkpoints)


@pytest.mark.parametrize("answer", ["true", "false"])
def test_notebook_answer(tmp_path: Path, answer: str) -> None:
    project = render(tmp_path, include_notebook=answer)
    assert (project / "notebooks").exists() == (answer == "true")
    assert (project / "tests" / "test_notebook.py").exists() == (answer == "true")
    setup_dev = run([sys.executable, "setup.py", "--version"], cwd=project)
    assert setup_dev.returncode == 0


def test_setup_py_metadata_is_exact_for_tricky_answers(tmp_path: Path) -> None:
    tricky = {
        "project_name": "Zoë's \"Quoted\" Project",
        "project_slug": "zoe-project",
        "package_name": "zoe_project",
        "description": 'Segments "livers" \\ kidneys; it\'s Ünïcode — ok',
        "author_name": "Zoë O'Brien \\ \"Doc\"",
        "author_email": "zoe.obrien@example.org",
        "license": "BSD-3-Clause",
    }
    project = render(tmp_path, **tricky)
    fields = ["--name", "--description", "--author", "--author-email", "--license"]
    result = subprocess.run(
        [sys.executable, "setup.py", *fields], cwd=project, capture_output=True,
        text=True, encoding="utf-8", timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        tricky["project_slug"], tricky["description"], tricky["author_name"],
        tricky["author_email"], tricky["license"],
    ]
    readme = (project / "README.md").read_text(encoding="utf-8")
    assert tricky["project_name"] in readme and tricky["description"] in readme
    notebook = nbformat.read(project / "notebooks" / "pipeline.ipynb", as_version=4)
    assert tricky["project_name"] in notebook.cells[0].source
    assert tricky["author_name"] in (project / "LICENSE").read_text(encoding="utf-8")
    lint = run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=project)
    assert lint.returncode == 0, lint.stdout


def test_generation_is_idempotent(tmp_path: Path) -> None:
    # cruft update renders again and runs the hooks again: same answers, same bytes.
    project = render(tmp_path, commit_checkpoints="true", ci="gitlab", include_notebook="false")
    before = {p.relative_to(project): p.read_bytes() for p in project.rglob("*") if p.is_file()}
    cookiecutter(
        str(TEMPLATE), no_input=True, output_dir=str(tmp_path), overwrite_if_exists=True,
        extra_context={"commit_checkpoints": "true", "ci": "gitlab", "include_notebook": "false"},
    )
    after = {p.relative_to(project): p.read_bytes() for p in project.rglob("*") if p.is_file()}
    assert after == before


def test_import_layers_are_checked_and_an_upward_import_breaks_them(tmp_path: Path) -> None:
    project = render(tmp_path, ci="github")
    package = next(p for p in (project / "src").iterdir() if (p / "__init__.py").exists())
    lint_imports = [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"]
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    kept = run(lint_imports, cwd=project, env=env)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert "broken" in kept.stdout and " 0 broken" in kept.stdout
    ci = (project / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8")
    assert "run: lint-imports" in ci
    # A metric that reaches up into training breaks the layers: the check is real.
    metrics = package / "metrics" / "bootstrap.py"
    upward = "\nfrom ..train import losses  # noqa\n"
    metrics.write_text(metrics.read_text(encoding="utf-8") + upward)
    broken = run(lint_imports, cwd=project, env=env)
    assert broken.returncode != 0
    report = " ".join(broken.stdout.split())  # the report wraps long lines
    assert "Layers point down only BROKEN" in report
    assert f"{package.name}.metrics.bootstrap -> {package.name}.train.losses" in report
