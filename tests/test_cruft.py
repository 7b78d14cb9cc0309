"""cruft (and so `cruft update`) works with the template from a git checkout.

Everything is local and offline: the template is copied into a temporary git repository and cruft
is pointed at its path. Each test takes a few seconds, so none is marked slow.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from conftest import TEMPLATE, run

SLUG = "{{cookiecutter.project_slug}}"
PROJECT = "medical-imaging-project"  # the default slug


def git(*args: str, cwd: Path) -> str:
    result = run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def template_repo(tmp_path: Path) -> Path:
    """A git repository holding the template's files as they are in this working tree."""
    repo = tmp_path / "template"
    ignore = shutil.ignore_patterns(
        ".git",
        "__pycache__",
        "*.py[cod]",
        ".pytest_cache",
        ".ruff_cache",
        "build",
        ".venv",
        "venv",
        "*.egg-info",
    )
    shutil.copytree(TEMPLATE, repo, ignore=ignore)
    git("init", "-q", "-b", "main", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "template", cwd=repo)
    return repo


def cruft(*args: str, cwd: Path) -> str:
    result = run([sys.executable, "-m", "cruft", *args], cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def cruft_create(repo: Path, out: Path, *answers: str) -> Path:
    """``cruft create`` the template at ``repo``'s HEAD into ``out``; return the project."""
    out.mkdir(parents=True)
    context = ["--extra-context", json.dumps(dict(a.split("=", 1) for a in answers))]
    cruft("create", "--no-input", "--output-dir", str(out), *context, str(repo), cwd=out)
    return out / PROJECT


def files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` but git's own, by POSIX path relative to ``root``."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


def test_cruft_create_then_check(tmp_path: Path) -> None:
    repo = template_repo(tmp_path)
    project = cruft_create(repo, tmp_path / "out")
    state = json.loads((project / ".cruft.json").read_text(encoding="utf-8"))
    assert state["commit"] == git("rev-parse", "HEAD", cwd=repo)
    assert state["context"]["cookiecutter"]["task"] == "segmentation"
    assert (project / "setup.py").is_file()  # the post hook ran under cruft
    cruft("check", cwd=project)


def test_cruft_update_brings_in_template_changes(tmp_path: Path) -> None:
    """A project made at commit A and updated to commit B equals a fresh render of B, plus the
    user's own changes; the post-generation hook's files follow B's answers and rules."""
    answers = (
        "ci=gitlab",
        "include_notebook=false",
        "task=classification",
        "spatial_dims=2",
        "image_format=png",
    )
    repo = template_repo(tmp_path)
    project = cruft_create(repo, tmp_path / "out", *answers)
    git("init", "-q", "-b", "main", cwd=project)
    git("add", "-A", cwd=project)
    git("commit", "-q", "-m", "project from template A", cwd=project)
    # The user's work: a committed file, a committed edit, an untracked and an ignored file.
    (project / "mine.py").write_text("VALUE = 1\n", encoding="utf-8")
    config = project / "configs" / "default.yaml"
    config.write_text(config.read_text(encoding="utf-8") + "# my note\n", encoding="utf-8")
    git("add", "-A", cwd=project)
    git("commit", "-q", "-m", "my work", cwd=project)
    (project / "scratch.txt").write_text("untracked\n", encoding="utf-8")
    (project / "data" / "dummy").mkdir(parents=True)
    (project / "data" / "dummy" / "manifest.csv").write_text("case_id\n", encoding="utf-8")

    # Commit B: an edited file, a new rendered file, an edit in a file the answers leave out
    # (.github, removed by the hook for ci=gitlab) and a new requirement in the post hook.
    template = repo / SLUG
    readme = template / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8") + "\nTemplate change B.\n", "utf-8")
    (template / "NEWS.md").write_text("# News for {{ cookiecutter.package_name }}\n", "utf-8")
    workflow = template / ".github" / "workflows" / "ci.yml"
    workflow.write_text(workflow.read_text(encoding="utf-8") + "# change B\n", "utf-8")
    hook = repo / "hooks" / "post_gen_project.py"
    text = hook.read_text(encoding="utf-8")
    anchor = '    ("tqdm>=4.66", None),\n'
    assert anchor in text
    hook.write_text(text.replace(anchor, anchor + '    ("rich>=13.0", None),\n'), "utf-8")
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "template B", cwd=repo)
    commit_b = git("rev-parse", "HEAD", cwd=repo)

    result = run([sys.executable, "-m", "cruft", "check"], cwd=project)
    assert result.returncode != 0  # the template moved on
    cruft("update", "--skip-apply-ask", "--allow-untracked-files", cwd=project)

    state = json.loads((project / ".cruft.json").read_text(encoding="utf-8"))
    assert state["commit"] == commit_b
    assert state["context"]["cookiecutter"]["task"] == "classification"
    cruft("check", cwd=project)
    assert (project / "README.md").read_text(encoding="utf-8").endswith("Template change B.\n")
    news = (project / "NEWS.md").read_text(encoding="utf-8")
    assert news == "# News for medical_imaging_project\n"
    assert not (project / ".github").exists()
    assert not (project / "notebooks").exists()
    assert (project / ".gitlab-ci.yml").is_file()
    assert "rich>=13.0" in (project / "requirements.txt").read_text(encoding="utf-8").splitlines()
    recorded = json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))
    assert recorded["task"] == "classification" and recorded["ci"] == "gitlab"
    # The user's work is kept.
    assert (project / "mine.py").read_text(encoding="utf-8") == "VALUE = 1\n"
    assert config.read_text(encoding="utf-8").endswith("# my note\n")
    assert (project / "scratch.txt").is_file()
    assert (project / "data" / "dummy" / "manifest.csv").is_file()

    # Apart from the user's work, the project is exactly what a fresh render of B gives.
    fresh = cruft_create(repo, tmp_path / "fresh", *answers)
    updated = files(project)
    for own in ("mine.py", "scratch.txt", "data/dummy/manifest.csv"):
        del updated[own]
    updated["configs/default.yaml"] = updated["configs/default.yaml"].removesuffix(b"# my note\n")
    expected = files(fresh)
    assert set(updated) == set(expected)
    assert [name for name in expected if updated[name] != expected[name]] == []
