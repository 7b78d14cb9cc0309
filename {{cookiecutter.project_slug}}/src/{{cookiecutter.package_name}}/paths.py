"""Every path the project uses, in one place.

The project root is found from the working directory (the nearest folder upwards that holds
``configs/default.yaml`` next to ``setup.py``), or from the ``{{ cookiecutter.package_name.upper() }}_ROOT``
environment variable, so commands work from any sub-folder and on any operating system. Relative
paths in the config (``data.root``) are resolved against it.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
ROOT_ENV = "{{ cookiecutter.package_name.upper() }}_ROOT"


def _is_project_root(folder: Path) -> bool:
    return (folder / "configs" / "default.yaml").is_file() and (folder / "setup.py").is_file()


def project_root() -> Path:
    """The project folder: ``$ROOT_ENV``, else the nearest project upwards of the working
    directory, else the source checkout this package was installed from, else the working
    directory."""
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV]).expanduser().resolve()
    cwd = Path.cwd().resolve()
    for folder in (cwd, *cwd.parents):
        if _is_project_root(folder):
            return folder
    checkout = PACKAGE_DIR.parents[1]  # src/<package>/ -> project root in an editable install
    return checkout if _is_project_root(checkout) else cwd


def resolve(path: str | Path) -> Path:
    """``path`` itself when absolute, else relative to the project root."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else project_root() / path


def configs_dir() -> Path:
    """``configs/``: the default config and search spaces."""
    return project_root() / "configs"


def data_dir() -> Path:
    """``data/``: raw and generated datasets (never committed, never modified in place)."""
    return project_root() / "data"


def runs_dir() -> Path:
    """``runs/``: one dated folder per training run."""
    return project_root() / "runs"


def reports_dir() -> Path:
    """``reports/``: dataset reports, ablation tables."""
    return project_root() / "reports"


def experiments_log() -> Path:
    """``EXPERIMENTS.md``: one line per run, kept in git."""
    return project_root() / "EXPERIMENTS.md"
