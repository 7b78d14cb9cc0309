"""Every look at the held-out test set, recorded: the test set is meant to be looked at once.

A test metric is an unbiased estimate only for a model chosen without it. Comparing several models
on the test set and keeping the best selects on it, exactly as choosing on validation does, and
the reported figure is then optimistic. So every use of the test set is written down:

- ``evaluate --split test`` (also as part of ``demo``), ``compare --split test`` and ``predict``
  on images that ``splits.json`` lists as test cases each add one record to the project's log
  ``reports/test_set_log.jsonl`` (one JSON object a line, kept in git), to the run folder's
  ``test_set_uses.json`` (every run involved: an ensemble's members, both compared runs), and a
  row to ``EXPERIMENTS.md``;
- a record holds the date, what was done (``event``), the runs, the dataset (``data.root``) and
  the SHA-256 of its ``splits.json`` (so a result can be traced to its split), and the settings;
- the second and later uses of a dataset's test set by a *different* run print a warning that
  names the earlier runs; ``MODEL_CARD.md`` states how many times the test set was used in the
  project and by which runs.

Records are counted per dataset (``data.root`` as the config gives it): two datasets of one
project have two test sets.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import paths
from ..data.manifest import SPLITS
from ..utils.io import atomic_write_text

LOG_NAME = "test_set_log.jsonl"
RUN_RECORD = "test_set_uses.json"
EVENTS = ("evaluate", "compare", "predict")


def log_path() -> Path:
    """The project's record of test-set uses: ``reports/test_set_log.jsonl``."""
    return paths.reports_dir() / LOG_NAME


def splits_sha256(data_root: str | Path) -> str | None:
    """SHA-256 (hex) of the dataset's ``splits.json`` bytes; ``None`` if it cannot be read.

    Args:
        data_root: the dataset folder (``data.root``; relative to the project root or absolute).
    """
    try:
        return hashlib.sha256((paths.resolve(data_root) / SPLITS).read_bytes()).hexdigest()
    except OSError:
        return None


def read_log(path: Path | None = None) -> list[dict[str, Any]]:
    """The records of the project's log, oldest first (unreadable lines are skipped).

    Args:
        path: the log file (default :func:`log_path`).
    """
    path = log_path() if path is None else Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("runs"), list):
            records.append(record)
    return records


def uses_of(data_root: str, records: Sequence[Mapping[str, Any]] | None = None) -> list[dict]:
    """The records of the test set of ``data_root`` (the config's ``data.root`` text)."""
    records = read_log() if records is None else records
    return [dict(r) for r in records if r.get("data_root") == str(data_root)]


def record_test_use(
    event: str,
    run_dirs: Sequence[str | Path],
    data_root: str,
    settings: Mapping[str, Any] | None = None,
    *,
    echo: Any = print,
) -> list[dict[str, Any]]:
    """Record one use of the test set and warn when other runs used it before.

    Args:
        event: ``"evaluate"``, ``"compare"`` or ``"predict"``.
        run_dirs: the run folders involved (the run, an ensemble's members, compared runs).
        data_root: the dataset (``data.root`` as the run's config gives it).
        settings: what else identifies the use (checkpoint, reference, metric, images...).
        echo: where the warning goes (a line starting with ``warning:``).

    Returns:
        The earlier records of this dataset's test set (before this one).

    Raises:
        ValueError: an unknown ``event`` or no run.
    """
    if event not in EVENTS:
        raise ValueError(f"event must be one of {', '.join(EVENTS)}, got {event!r}")
    folders = [paths.resolve(p) for p in run_dirs]
    if not folders:
        raise ValueError("run_dirs must name at least one run folder")
    earlier = uses_of(data_root)
    record = {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "event": event,
        "runs": [p.name for p in folders],
        "data_root": str(data_root),
        "splits_sha256": splits_sha256(data_root),
        "settings": dict(settings or {}),
        "use": len(earlier) + 1,
    }
    line = json.dumps(record, sort_keys=True)
    log = log_path()
    try:
        old = log.read_text(encoding="utf-8")
    except FileNotFoundError:
        old = ""
    if old and not old.endswith("\n"):
        old += "\n"
    atomic_write_text(log, old + line + "\n")
    for folder in folders:
        own = folder / RUN_RECORD
        try:
            uses = json.loads(own.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            uses = []
        uses = uses if isinstance(uses, list) else []
        atomic_write_text(own, json.dumps([*uses, record], indent=2) + "\n")
    _log_experiment(folders[0], record)
    warning = selection_warning(earlier, [p.name for p in folders], data_root)
    if warning:
        echo(warning)
    return earlier


def selection_warning(
    earlier: Sequence[Mapping[str, Any]], runs: Sequence[str], data_root: str
) -> str | None:
    """The warning for a test-set use when *other* runs used the same test set before.

    Args:
        earlier: the earlier records of this test set.
        runs: the run folder names of this use.
        data_root: the dataset, for the message.

    Returns:
        One line naming the earlier run folders and dates, or ``None`` when only these runs used
        the test set before.
    """
    others: dict[str, str] = {}
    for record in earlier:
        for name in record.get("runs", []):
            if name not in runs:
                others.setdefault(str(name), str(record.get("date", "?"))[:16])
    if not others:
        return None
    named = ", ".join(f"{name} ({when})" for name, when in others.items())
    return (
        f"warning: the test set of {data_root} was already used {len(earlier)} time(s) in this "
        f"project, by other runs: {named}. Picking the best of several models on the test set "
        "selects on it and makes its figure optimistic: choose on validation (runs --sort best, "
        "compare --split val) and report the test set of the one model chosen."
    )


def summary_lines(data_root: str, run_name: str) -> list[str]:
    """The model card's account of the test set's use in the project.

    Args:
        data_root: the dataset (``data.root``).
        run_name: the run the card is about.

    Returns:
        Markdown lines: how many times the test set was used, by which runs, and what that means.
    """
    uses = uses_of(data_root)
    if not uses:
        return [f"The test set of `{data_root}` has not been evaluated in this project yet."]
    counts: dict[str, int] = {}
    for record in uses:
        for name in record.get("runs", []):
            counts[str(name)] = counts.get(str(name), 0) + 1
    by_run = ", ".join(
        f"`{name}`" + (f" ({n} times)" if n > 1 else "") for name, n in counts.items()
    )
    events = {event: sum(r.get("event") == event for r in uses) for event in EVENTS}
    kinds = ", ".join(f"{event} {n}" for event, n in events.items() if n)
    lines = [
        f"The test set of `{data_root}` was used {len(uses)} time(s) in this project ({kinds}; "
        f"recorded in `reports/{LOG_NAME}`), by: {by_run}."
    ]
    others = [name for name in counts if name != run_name]
    if others:
        lines.append(
            f"Other runs used it too ({len(others)}): if this run was chosen among them by its "
            "test figure, that figure is selected on the test set and optimistic."
        )
    hashes = sorted({str(r.get("splits_sha256")) for r in uses})
    if len(hashes) > 1:
        lines.append(
            f"`splits.json` changed between those uses ({len(hashes)} versions): the test sets "
            "were not the same cases every time."
        )
    return lines


def _log_experiment(run_dir: Path, record: Mapping[str, Any]) -> None:
    from ..runs.folder import append_experiment

    settings = ", ".join(f"{k}={v}" for k, v in record["settings"].items())
    others = [name for name in record["runs"] if name != run_dir.name]
    append_experiment(
        paths.experiments_log(),
        run_dir,
        {
            "note": f"TEST SET used ({record['event']}; use {record['use']} of {record['data_root']})"
            + (f" with {', '.join(others)}" if others else ""),
            "settings": settings,
            "status": f"splits.json sha256 {str(record['splits_sha256'])[:12]}",
        },
    )
