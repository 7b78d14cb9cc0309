"""The rendered project's pre-commit checks: the required hooks are there, and its local hooks keep
medical images and the data/ folder out of git, in a real commit.

The remote hooks (ruff, nbstripout, ...) would be cloned from the network on first use, so the
commit test installs a copy of the configuration reduced to its local hooks, which run offline.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import render, run

PACKAGE = "medical_imaging_project"  # the default answers' package
REQUIRED_HOOKS = {
    "ruff-check",
    "ruff-format",
    "nbstripout",
    "check-added-large-files",
    "no-patient-data",
    "no-dicom-content",
}

# Files a commit must refuse, and files it must accept (paths relative to the project).
DICOM_HEADER = bytes(128) + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00"
REFUSED = {
    "data/dummy/manifest.csv": b"case_id,patient_id,image,label\n",
    "data/raw/notes.txt": b"anything under data/\n",
    "scans/ct_001.dcm": DICOM_HEADER,
    "scans/CT_002.DCM": DICOM_HEADER,
    "scan.nii.gz": b"\x1f\x8b\x08\x00",
    "brain.nii": b"\x5c\x01\x00\x00",
    "sub/liver.mha": b"ObjectType = Image\n",
    "sub/liver.mhd": b"ObjectType = Image\n",
    "sub/liver.raw": b"\x00\x01",
    "sub/knee.nrrd": b"NRRD0004\n",
    "sub/old.img": b"\x00\x00",
    "sub/old.hdr": b"\x5c\x01\x00\x00",
    "cache/volume.npy": b"\x93NUMPY",
    # A DICOM file as PACS exports often name them: no extension, found by its header.
    "export/IM000001": DICOM_HEADER,
}
ACCEPTED = {
    f"src/{PACKAGE}/data/extra_reader.py": b'"""Reads more formats."""\n',
    "tests/test_extra_reader.py": b'"""Tests."""\n',
    "docs/figure.png": b"\x89PNG\r\n\x1a\n" + bytes(200),
    "docs/about_the_data.md": b"# About the data\n",
    "mydata_notes.txt": b"not under data/\n",
}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(tmp_path_factory.mktemp("precommit"))


def load_config(project: Path) -> dict[str, Any]:
    return yaml.safe_load((project / ".pre-commit-config.yaml").read_text(encoding="utf-8"))


def hooks_by_id(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}


def test_config_has_the_required_hooks(project: Path) -> None:
    config = load_config(project)
    hooks = hooks_by_id(config)
    assert REQUIRED_HOOKS <= set(hooks)
    assert any(arg.startswith("--maxkb=") for arg in hooks["check-added-large-files"]["args"])
    for repo in config["repos"]:
        if repo["repo"] == "local":
            # Local hooks must work without a download: no environment to install.
            assert {h["language"] for h in repo["hooks"]} <= {"fail", "pygrep"}, repo
        else:  # pinned to a release tag, never a branch
            assert re.fullmatch(r"v?\d+(\.\d+)+", str(repo["rev"])), repo


def gitignored_patient_data(project: Path) -> list[str]:
    """The patterns of the rendered .gitignore's patient-data section."""
    text = (project / ".gitignore").read_text(encoding="utf-8")
    section = text.split("Patient data", 1)[1].split("\n# ---", 1)[0]
    patterns = [line for line in section.splitlines()[1:] if line and not line.startswith("#")]
    assert "/data/" in patterns and "*.dcm" in patterns  # the section was found
    return patterns


def test_hook_refuses_every_file_gitignore_keeps_out(project: Path) -> None:
    """`git add -f` gets past .gitignore; the hook must then refuse the same files. pre-commit
    selects files with ``re.search`` on their POSIX paths."""
    files = re.compile(hooks_by_id(load_config(project))["no-patient-data"]["files"])
    examples = []
    for pattern in gitignored_patient_data(project):
        if pattern.startswith("*."):
            ext = pattern[1:]
            examples += [f"scan{ext}", f"a/b/scan{ext}", f"a/scan{ext.upper()}"]
        else:
            assert pattern == "/data/"
            examples += ["data/manifest.csv", "data/a/b/c.txt", "Data/x.csv"]
    refused = [path for path in examples if files.search(path)]
    assert refused == examples
    accepted = [
        *ACCEPTED,
        f"src/{PACKAGE}/data/manifest.py",
        "notebooks/pipeline.ipynb",
        "docs/scan.nii.gz.md",
        "configs/default.yaml",
        "src/x/nifti.py",
    ]
    assert [path for path in accepted if files.search(path)] == []


def git(*args: str, cwd: Path, env: dict[str, str]) -> Any:
    return run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=cwd, env=env
    )


def test_commit_refuses_patient_data_and_accepts_ordinary_files(
    project: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "project"
    shutil.copytree(project, repo)
    config = load_config(repo)
    config["repos"] = [r for r in config["repos"] if r["repo"] == "local"]
    local_config = tmp_path / "local-hooks.yaml"
    local_config.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}
    env = {k: v for k, v in env.items() if not k.startswith("GIT_")}

    assert git("init", "-q", "-b", "main", cwd=repo, env=env).returncode == 0
    install = run(
        [sys.executable, "-m", "pre_commit", "install", "--config", str(local_config)],
        cwd=repo,
        env=env,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    # The rendered project itself passes its hooks (src/<package>/data/ is code, not data).
    assert git("add", "-A", cwd=repo, env=env).returncode == 0
    first = git("commit", "-q", "-m", "project", cwd=repo, env=env)
    assert first.returncode == 0, first.stdout + first.stderr

    for rel, content in {**REFUSED, **ACCEPTED}.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_bytes(content)
    added = git("add", "-f", *REFUSED, *ACCEPTED, cwd=repo, env=env)  # -f: past .gitignore
    assert added.returncode == 0, added.stderr
    refused = git("commit", "-q", "-m", "everything", cwd=repo, env=env)
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0, output
    assert "must not be committed (patient data)" in output
    assert [rel for rel in REFUSED if rel not in output] == []
    assert [rel for rel in ACCEPTED if rel in output] == []
    assert git("log", "--format=%s", cwd=repo, env=env).stdout.split() == ["project"]

    assert git("rm", "-q", "--cached", *REFUSED, cwd=repo, env=env).returncode == 0
    accepted = git("commit", "-q", "-m", "ordinary files", cwd=repo, env=env)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    tracked = set(git("ls-files", cwd=repo, env=env).stdout.splitlines())
    assert set(ACCEPTED) <= tracked and not set(REFUSED) & tracked
