"""The run folder: ``runs/<YYYY-MM-DD_HHMMSS>_<name>/`` and the experiment log, written and read.

Everything a run produces lives in its folder, named by its start time so that folders sort by
date and none is ever overwritten. ``EXPERIMENTS.md`` at the project root gets one line per run:
the lab notebook that a student forgets to keep. Training writes ``metrics.csv`` through
:class:`MetricsLog`; evaluation, the model card, the ``runs`` table, sweeps and ablations read it
back through :func:`read_metrics` and :func:`best_epoch` (checkpoints: :mod:`.checkpoint`).
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import paths
from ..metrics.registry import monitor_mode
from ..utils.io import atomic_write_csv, atomic_write_text

FOLDER = re.compile(r"^(\d{4}-\d{2}-\d{2})_(\d{6})_(.+)$")  # runs/<date>_<time>_<name>
# The files of a run folder (the project's spec, "A run folder").
CONFIG = "config.yaml"
ENVIRONMENT = "environment.json"
METRICS_CSV = "metrics.csv"
NOTES = "notes.md"
CHECKPOINT_NAMES = ("best", "last")


def config_path(run_dir: Path) -> Path:
    """``run_dir/config.yaml``: the run's resolved configuration."""
    return Path(run_dir) / CONFIG


def metrics_path(run_dir: Path) -> Path:
    """``run_dir/metrics.csv``: one row per epoch."""
    return Path(run_dir) / METRICS_CSV


def checkpoint_path(run_dir: Path, which: str) -> Path:
    """``run_dir/checkpoints/<which>.pt``.

    Args:
        run_dir: the run folder.
        which: ``"best"`` (the best validation epoch) or ``"last"`` (the last finished epoch).

    Raises:
        ValueError: another name.
    """
    if which not in CHECKPOINT_NAMES:
        raise ValueError(f"checkpoint must be one of {', '.join(CHECKPOINT_NAMES)}, got {which!r}")
    return Path(run_dir) / "checkpoints" / f"{which}.pt"


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
    path = run_dir / NOTES
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
        raw = yaml.safe_load(config_path(run_dir).read_text(encoding="utf-8"))
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


# --- reading a run folder back -------------------------------------------------------------


def read_metrics(path: Path) -> list[dict[str, str]]:
    """The rows of a ``metrics.csv`` (empty when the file is missing or unreadable)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except (OSError, csv.Error, UnicodeDecodeError):
        return []


def column_values(rows: Sequence[dict[str, str]], column: str) -> list[float]:
    """The values of ``column`` as floats, one per row that has a number there (NaN kept)."""
    values = []
    for row in rows:
        try:
            values.append(float(row.get(column) or ""))
        except ValueError:
            continue
    return values


def best_of(values: Iterable[float], mode: str) -> float | None:
    """The largest (``mode="max"``) or smallest (``"min"``) finite value, ``None`` if none."""
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None
    return max(finite) if mode == "max" else min(finite)


def best_epoch(run_dir: Path, column: str, mode: str) -> tuple[float, int] | None:
    """The best finite value of ``column`` in ``run_dir/metrics.csv`` and the first epoch that
    reached it; ``None`` if the column has no finite value."""
    rows = read_metrics(metrics_path(run_dir))
    scored = [(v[0], row) for row in rows if (v := column_values([row], column))]
    best = best_of((value for value, _ in scored), mode)
    if best is None:
        return None
    return best, next(int(row["epoch"]) for value, row in scored if value == best)


def best_metric(run_dir: Path, column: str, mode: str) -> float | None:
    """The best finite value of ``column`` in ``run_dir/metrics.csv`` (``None`` if none)."""
    return best_of(column_values(read_metrics(metrics_path(run_dir)), column), mode)


def relative_path(path: Path) -> str:
    """``path`` relative to the project root when inside it (portable), else absolute."""
    try:
        return Path(path).resolve().relative_to(paths.project_root().resolve()).as_posix()
    except ValueError:
        return str(path)


def new_run_folder(before: set[Path], name: str) -> Path | None:
    """The run folder of ``run.name=name`` created since ``before`` (the folders then), e.g. by
    a training run that failed before it could return its folder; ``None`` if there is none."""
    runs_dir = paths.runs_dir()
    if not runs_dir.is_dir():
        return None
    pattern = re.compile(re.escape(name) + r"(-\d+)?")  # new_run_dir adds -2, -3 on clashes
    new = [
        p
        for p in runs_dir.iterdir()
        if p not in before and (m := FOLDER.match(p.name)) and pattern.fullmatch(m[3])
    ]
    return max(new, default=None)


def run_folders() -> set[Path]:
    """The folders under ``runs/`` now (to find the one a run creates)."""
    runs_dir = paths.runs_dir()
    return set(runs_dir.iterdir()) if runs_dir.is_dir() else set()


def column_mode(column: str) -> str:
    """``"min"`` for losses and lower-is-better registered metrics, ``"max"`` for the others."""
    return monitor_mode(column)
