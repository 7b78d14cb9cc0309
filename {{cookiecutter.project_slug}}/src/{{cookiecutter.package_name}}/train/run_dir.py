"""The run folder: ``runs/<YYYY-MM-DD_HHMMSS>_<name>/`` and the experiment log.

Everything a run produces lives in its folder, named by its start time so that folders sort by
date and none is ever overwritten. ``EXPERIMENTS.md`` at the project root gets one line per run:
the lab notebook that a student forgets to keep.
"""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path
from typing import Any

from ..utils.io import atomic_write_csv, atomic_write_text

EXPERIMENTS_HEADER = (
    "# Experiments\n\nOne line per training run, appended by `train`, and one per use of the "
    "held-out test set (TEST SET), appended by `evaluate`, `compare` and `predict`.\n\n"
    "| date | run | note | task | dataset | normalization | model | settings | status "
    "| best validation |\n"
    "|---|---|---|---|---|---|---|---|---|---|\n"
)
TABLE_HEADER = EXPERIMENTS_HEADER[EXPERIMENTS_HEADER.index("| date") :]


def new_run_dir(runs_root: Path, name: str, now: datetime | None = None) -> Path:
    """Create and return a new, empty run folder; an existing folder is never reused."""
    stamp = (now or datetime.now()).strftime("%Y-%m-%d_%H%M%S")
    runs_root.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        suffix = "" if attempt == 1 else f"-{attempt}"
        folder = runs_root / f"{stamp}_{name}{suffix}"
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise RuntimeError(f"could not create a new run folder in {runs_root}")


class MetricsLog:
    """``metrics.csv``: one row per epoch, rewritten atomically after each epoch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = []
        if path.exists():
            with open(path, newline="", encoding="utf-8") as handle:
                self.rows = [dict(r) for r in csv.DictReader(handle)]

    def truncate(self, last_epoch: int) -> None:
        """Drop rows after ``last_epoch`` (a resumed run redoes the epochs after its checkpoint)."""
        self.rows = [r for r in self.rows if int(r["epoch"]) <= last_epoch]
        self._write()

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append({k: _format(v) for k, v in row.items()})
        self._write()

    def column(self, name: str) -> list[float]:
        return [float(r[name]) for r in self.rows if r.get(name, "") != ""]

    def _write(self) -> None:
        fields: list[str] = []
        for row in self.rows:
            fields += [k for k in row if k not in fields]
        atomic_write_csv(self.path, self.rows, fields)


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_notes(run_dir: Path, note: str | None, resumed: bool = False) -> None:
    """``notes.md``: the note given with ``--note`` (appended to on resume)."""
    path = run_dir / "notes.md"
    text = path.read_text(encoding="utf-8") if path.exists() else f"# {run_dir.name}\n\n"
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M")
    if resumed:
        text += f"\n- {stamp}: resumed" + (f": {note}" if note else "") + "\n"
    elif note:
        text += f"{note}\n"
    atomic_write_text(path, text)


def _data_settings(run_dir: Path) -> dict[str, str]:
    """``dataset`` (data.root) and ``normalization`` from the run's ``config.yaml`` ('' where
    it lacks them), so runs on different datasets never look the same in the log."""
    import yaml

    try:
        raw = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
        data = raw.get("data") or {}
        return {
            "dataset": str(data.get("root") or ""),
            "normalization": str(data.get("normalization") or ""),
        }
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
        return {"dataset": "", "normalization": ""}


def append_experiment(log: Path, run_dir: Path, fields: dict[str, str]) -> None:
    """Append one line for this run to ``EXPERIMENTS.md`` (created with a header if missing;
    a log with an older table header gets the current header before the line).

    ``fields`` gives ``note``, ``task``, ``model``, ``settings``, ``status``, ``best``;
    ``dataset`` and ``normalization`` default to the run's ``config.yaml`` values.
    """
    text = log.read_text(encoding="utf-8") if log.exists() else EXPERIMENTS_HEADER
    if TABLE_HEADER.splitlines()[0] not in text.splitlines():
        text = text.rstrip("\n") + "\n\n" + TABLE_HEADER
    fields = {**_data_settings(run_dir), **fields}

    def cell(value: str) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    date = datetime.now().strftime("%Y-%m-%d %H:%M")
    cells = [date, f"`{run_dir.name}`"] + [
        cell(fields.get(k, ""))
        for k in ("note", "task", "dataset", "normalization", "model", "settings", "status", "best")
    ]
    atomic_write_text(log, text + "| " + " | ".join(cells) + " |\n")
