"""What a run ran on: Python, packages, torch, device, git commit and dirty state."""

from __future__ import annotations

import platform
import subprocess
import sys
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

PACKAGES = (
    "torch",
    "numpy",
    "scipy",
    "monai",
    "nibabel",
    "pydicom",
    "pillow",
    "matplotlib",
    "omegaconf",
    "captum",
    "optuna",
    "tensorboard",
    "mlflow",
)


def git_state(folder: Path) -> dict[str, Any]:
    """The commit checked out in ``folder`` and whether the tree has uncommitted changes."""

    def git(*args: str) -> str | None:
        try:
            result = subprocess.run(
                ["git", *args], cwd=folder, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return result.stdout.strip() if result.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "note": "not a git repository (or git missing)"}
    status = git("status", "--porcelain")
    return {"commit": commit, "dirty": bool(status)}


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def environment(device: torch.device, project: Path, seeding: dict[str, Any]) -> dict[str, Any]:
    """The record saved as ``environment.json`` in every run folder."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": describe_device(device),
        "git": git_state(project),
        "seeding": seeding,
        "start_time": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": sys.argv,
    }
