"""The ``runs`` table: every run folder under ``runs/`` with its settings and results.

A row per folder, read without loading any model: the date and name from the folder name, the
first line of ``notes.md``, key settings from ``config.yaml``, the epochs done and the best value of
the monitored column of ``metrics.csv``, and the test metric of ``evaluation/test/metrics.json``
when the run was evaluated. A folder that crashed before writing its config or its first epoch
still gets a row, with a status that says so, instead of breaking the table.

Status: ``done`` (all epochs), ``early stop`` (the monitored metric stopped improving for
``train.patience`` epochs), ``incomplete`` (fewer epochs: crashed, interrupted or still running),
``no epochs`` (no ``metrics.csv`` row yet), ``no config`` / ``bad config`` (``config.yaml`` missing or
unreadable).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from ..config import MONITORS
from ..utils.errors import ProjectError
from ..utils.table import text_table
from .folder import FOLDER, best_of, column_mode, column_values, read_metrics

TEST_METRIC = {"segmentation": "dice", "classification": "auroc"}
NOTE_WIDTH = 40
COLUMNS = (
    "date",
    "name",
    "status",
    "note",
    "data",
    "norm",
    "model",
    "lr",
    "bs",
    "epochs",
    "fold",
    "done",
    "monitor",
    "best",
    "test",
)
SORT_KEYS = ("date", "name", "best")  # or any metrics.csv column, e.g. val_loss
# Never a test metric: picking the run with the best test figure selects on the test set.
TEST_SORT = "test"


@dataclass
class RunSummary:
    """What the table shows of one run folder (``None``/empty where the folder lacks it)."""

    path: Path
    name: str
    started: datetime | None
    status: str
    note: str = ""
    task: str | None = None
    # data (data.root), norm (the resolved data.normalization), model, lr, bs, epochs, fold
    settings: dict[str, Any] = field(default_factory=dict)
    epochs_done: int = 0
    monitor: str | None = None
    mode: str = "max"  # of the monitor: "max" or "min"
    best: float | None = None
    test: dict[str, Any] | None = None  # {"metric", "value", "low", "high"}
    columns: dict[str, list[float]] = field(default_factory=dict)  # metrics.csv, by column


def _monitor(raw: dict[str, Any]) -> tuple[str, str]:
    """The monitored column and its mode, as ``config.monitored_metric`` on a raw config dict."""
    task = raw.get("task", "segmentation")
    name = (raw.get("train") or {}).get("monitor", "auto")
    if name == "auto":
        name = MONITORS.get(task, ("val_loss",))[0]
    return name, column_mode(name)


def _stopped_early(values: Sequence[float], mode: str, patience: int, min_delta: float) -> bool:
    """Whether the training loop's early-stopping rule fired at the last of ``values``."""
    if patience <= 0:
        return False
    best, bad = None, 0
    for value in values:
        improved = best is None or (
            value > best + min_delta if mode == "max" else value < best - min_delta
        )
        best, bad = (value, 0) if improved else (best, bad + 1)
    return bad >= patience


def _note(run_dir: Path) -> str:
    """The first line of ``notes.md`` after its title, shortened to ``NOTE_WIDTH``."""
    try:
        lines = (run_dir / "notes.md").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return ""
    text = next((s.strip() for s in lines if s.strip() and not s.startswith("#")), "")
    return text if len(text) <= NOTE_WIDTH else text[: NOTE_WIDTH - 3].rstrip() + "..."


def _test_metric(run_dir: Path, task: str | None) -> dict[str, Any] | None:
    """Dice (segmentation) or AUROC (classification) of ``evaluation/test/metrics.json``."""
    try:
        summary = json.loads(
            (run_dir / "evaluation" / "test" / "metrics.json").read_text(encoding="utf-8")
        )["summary"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    names = [TEST_METRIC[task]] if task in TEST_METRIC else list(TEST_METRIC.values())
    for name in names:
        entry = summary.get(name) if isinstance(summary, dict) else None
        if isinstance(entry, dict) and isinstance(entry.get("value"), int | float):
            return {"metric": name, **{k: entry.get(k) for k in ("value", "low", "high")}}
    return None


def _started(run_dir: Path) -> tuple[str, datetime | None]:
    """The run's name and start time from its folder name (the folder's mtime as fallback)."""
    match = FOLDER.match(run_dir.name)
    if match:
        try:
            stamp = datetime.strptime(f"{match[1]}_{match[2]}", "%Y-%m-%d_%H%M%S")
            return match[3], stamp
        except ValueError:
            pass
    try:
        return run_dir.name, datetime.fromtimestamp(run_dir.stat().st_mtime)
    except OSError:
        return run_dir.name, None


def summarize_run(run_dir: Path) -> RunSummary:
    """Read one run folder into a :class:`RunSummary`; never raises for a broken folder."""
    run_dir = Path(run_dir)
    name, started = _started(run_dir)
    summary = RunSummary(run_dir, name, started, status="no config", note=_note(run_dir))
    config_file = run_dir / "config.yaml"
    if not config_file.is_file():
        return summary
    try:
        raw = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        raw = None
    if not isinstance(raw, dict):
        summary.status = "bad config"
        return summary
    train, data, model = (raw.get(k) or {} for k in ("train", "data", "model"))
    summary.task = raw.get("task")
    summary.settings = {
        "data": data.get("root"),
        "norm": data.get("normalization"),
        "model": model.get("name"),
        "lr": train.get("lr"),
        "bs": train.get("batch_size"),
        "epochs": train.get("epochs"),
        "fold": data.get("fold"),
    }
    summary.monitor, summary.mode = _monitor(raw)
    summary.test = _test_metric(run_dir, summary.task)
    rows = read_metrics(run_dir / "metrics.csv")
    summary.epochs_done = len(rows)
    if rows:
        summary.columns = {c: column_values(rows, c) for c in rows[0] if c != "epoch"}
    monitored = summary.columns.get(summary.monitor, [])
    summary.best = best_of(monitored, summary.mode)
    epochs = train.get("epochs")
    if not rows:
        summary.status = "no epochs"
    elif isinstance(epochs, int) and len(rows) >= epochs:
        summary.status = "done"
    elif _stopped_early(
        monitored, summary.mode, int(train.get("patience") or 0), float(train.get("min_delta") or 0)
    ):
        summary.status = "early stop"
    else:
        summary.status = "incomplete"
    return summary


def list_runs(runs_dir: Path) -> list[RunSummary]:
    """A summary of every run folder directly under ``runs_dir``, oldest first."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    folders = [p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sort_runs([summarize_run(p) for p in folders], "date")


def filter_runs(
    runs: Iterable[RunSummary],
    name: str | None = None,
    since: date | None = None,
    until: date | None = None,
) -> list[RunSummary]:
    """The runs whose folder name contains ``name`` (any case) and whose start date lies in
    ``[since, until]`` (both inclusive; ``None`` leaves that side open)."""
    kept = []
    for run in runs:
        if name and name.lower() not in run.path.name.lower():
            continue
        day = run.started.date() if run.started else None
        if (since or until) and day is None:
            continue
        if (since and day < since) or (until and day > until):
            continue
        kept.append(run)
    return kept


def sort_value(run: RunSummary, key: str) -> float | None:
    """The number ``key`` sorts ``run`` by: its best of that metrics.csv column (validation and
    training columns) or the best monitored value (``best``)."""
    if key == "best":
        return run.best
    return best_of(run.columns.get(key, []), column_mode(key))


def sort_runs(runs: Iterable[RunSummary], key: str = "date") -> list[RunSummary]:
    """Order runs by ``key``: ``date`` (oldest first), ``name``, or a metric, best first.

    A metric is ``best`` (the monitored validation value; runs with the same monitor together) or
    a metrics.csv column such as ``val_loss`` (smallest first for losses, else largest first).
    Runs without the value come last, by date. Test figures are shown, never sorted by: the run
    chosen by its test figure has an optimistic one.

    Raises:
        ProjectError: ``key`` is ``test`` or a metric that none of the runs has.
    """
    runs = list(runs)
    if key.lower() == TEST_SORT or key.lower().startswith("test_"):
        raise ProjectError(
            f"runs are not sorted by a test metric ('{key}'): choosing the run with the best "
            "test figure selects on the test set and makes that figure optimistic; sort by "
            "validation (--sort best, or a val_ column of metrics.csv) and evaluate the test set "
            "of the one run chosen"
        )
    by_date = sorted(runs, key=lambda r: (r.started or datetime.min, r.path.name))
    if key == "date":
        return by_date
    if key == "name":
        return sorted(by_date, key=lambda r: r.name.lower())
    known = sorted({c for r in runs for c in r.columns})
    if runs and key not in SORT_KEYS and key not in known:
        raise ProjectError(
            f"cannot sort by '{key}': no run has that metric; use one of "
            f"{', '.join([*SORT_KEYS, *known])}"
        )

    def order(run: RunSummary) -> tuple[Any, ...]:
        value = sort_value(run, key)
        if value is None:
            return (1, "", 0.0)
        if key == "best":
            group, mode = run.monitor or "", run.mode
        else:
            group, mode = "", column_mode(key)
        return (0, group, -value if mode == "max" else value)

    return sorted(by_date, key=order)


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) and not isinstance(value, bool) else ""


def table_rows(runs: Iterable[RunSummary], extra: str | None = None) -> list[dict[str, str]]:
    """The text cells of the table, one dict per run (``extra``: one more metric column)."""
    rows = []
    for run in runs:
        test = ""
        if run.test:
            test = f"{run.test['metric']} {run.test['value']:.4f}"
            if isinstance(run.test.get("low"), int | float) and isinstance(
                run.test.get("high"), int | float
            ):
                test += f" [{run.test['low']:.3f}, {run.test['high']:.3f}]"
        row = {
            "date": run.started.strftime("%Y-%m-%d %H:%M") if run.started else "",
            "name": run.name,
            "status": run.status,
            "note": run.note,
            "data": str(run.settings.get("data") or ""),
            "norm": str(run.settings.get("norm") or ""),
            "model": str(run.settings.get("model") or ""),
            "lr": _number(run.settings.get("lr")),
            "bs": _number(run.settings.get("bs")),
            "epochs": _number(run.settings.get("epochs")),
            "fold": _number(run.settings.get("fold")),
            "done": str(run.epochs_done) if run.settings else "",
            "monitor": run.monitor or "",
            "best": f"{run.best:.4f}" if run.best is not None else "",
            "test": test,
        }
        if extra:
            value = sort_value(run, extra)
            row[extra] = f"{value:.4f}" if value is not None else ""
        rows.append(row)
    return rows


def runs_table(runs: Sequence[RunSummary], sort: str = "date") -> str:
    """The aligned text table of ``runs`` (already filtered), sorted by ``sort``."""
    ordered = sort_runs(runs, sort)
    extra = sort if sort not in (*SORT_KEYS, *COLUMNS) else None
    return text_table(table_rows(ordered, extra), [*COLUMNS, *([extra] if extra else [])])
