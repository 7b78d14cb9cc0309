"""``ablate``: the baseline and each change alone, one training run each, in one table.

The recipe of the README's regularization step: change one thing at a time and keep it only if
validation improves. ``ablate train.epochs=30 --try model.dropout=0.2 --try train.weight_decay=1e-4``
trains ``ablate-baseline`` (the config and the overrides) and one run per ``--try`` (the baseline
plus that change alone, named ``ablate-<key>-<value>``), then tabulates the best monitored
validation metric of each and its difference from the baseline. Every ``--try`` is checked by the
config loader before anything trains, so a typo costs nothing.

Is a change real? Each finished run is evaluated on its validation cases (``evaluate``), and each
change is compared with the baseline case by case (:mod:`..evaluate.compare`): the mean
per-patient difference of the per-case metric (Dice; the Brier score for classification) with a
95% bootstrap interval over patients and a paired permutation p-value, Holm-adjusted over the
changes. ``ablation.md`` says in words which changes are distinguishable from noise at this
number of patients; the others may still matter, the validation set is too small to tell.

The table goes to ``reports/ablate/<date>_<time>/ablation.csv`` and ``ablation.md``, rewritten after
each run, so an interrupted ablation keeps the rows it finished.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from .. import paths
from ..config import load_config, monitored_metric, to_dict
from ..evaluate.compare import ALPHA, DEFAULT_METRIC, higher_is_better, holm, paired_runs, too_few
from ..evaluate.evaluation import evaluate_run
from ..runs.folder import best_metric, new_run_folder, read_metrics, relative_path, run_folders
from ..train.loop import train
from ..utils.errors import ConfigError, ProjectError
from ..utils.io import atomic_write_csv, atomic_write_text
from ..utils.table import markdown_table, text_table

FIXED = {
    "run.name": "ablate names the runs itself",
    "train.monitor": "the runs must be compared on one metric; set it as an override",
}
RUN_ERRORS = (ProjectError, torch.cuda.OutOfMemoryError)  # one run fails, the others go on


@dataclass
class Change:
    """One run of the ablation: the baseline, or the baseline plus one ``key=value``."""

    label: str  # "baseline" or the --try text
    overrides: list[str]  # everything on top of the config file, run.name last
    run_name: str


@dataclass
class AblationResult:
    """The ablation's table and where it was saved."""

    folder: Path
    rows: list[dict[str, str]]
    columns: list[str]
    table: str  # the printed text table
    failed: int  # runs that did not complete


def run_name(key: str, value: str) -> str:
    """``ablate-<key>-<value>`` with every character a folder name cannot hold replaced."""
    text = re.sub(r"[^A-Za-z0-9.+-]+", "_", f"{key}-{value}").strip("_.")
    return f"ablate-{text[:80]}"


def plan(
    overrides: Sequence[str], tries: Sequence[str], config: Path | None = None
) -> list[Change]:
    """The baseline and one change per ``--try``, every one checked by the config loader.

    Raises:
        ValueError: no ``tries``.
        ConfigError: a bad override or ``--try`` (unknown key, wrong type, invalid value, a key
            ablate sets itself, a repeated try, or one that does not change the baseline); the
            message names it.
    """
    if not tries:
        raise ValueError("ablate needs at least one --try KEY=VALUE")
    base = to_dict(load_config(overrides, config))
    changes = [Change("baseline", [*overrides, "run.name=ablate-baseline"], "ablate-baseline")]
    seen: set[str] = set()
    for text in tries:
        key = text.partition("=")[0].strip()
        try:
            changed = to_dict(load_config([*overrides, text], config))
            if key in FIXED:
                raise ConfigError(f"config key '{key}' cannot be ablated: {FIXED[key]}")
        except ConfigError as exc:
            raise ConfigError(f"--try '{text}': {exc}") from None
        if text in seen:
            raise ConfigError(f"--try '{text}' is given twice")
        seen.add(text)
        if changed == base:
            raise ConfigError(
                f"--try '{text}' does not change the baseline (it already has this value)"
            )
        name = run_name(key, text.partition("=")[2].strip())
        changes.append(Change(text, [*overrides, text, f"run.name={name}"], name))
    return changes


def _new_report_folder() -> Path:
    """``reports/ablate/<YYYY-MM-DD_HHMMSS>/``, a fresh folder (``-2``, ... on a clash)."""
    root = paths.reports_dir() / "ablate"
    root.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y-%m-%d_%H%M%S")
    for attempt in range(1, 1000):
        folder = root / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        return folder
    raise RuntimeError(f"could not create a new folder in {root}")


PAIRED = "difference [95% interval]"  # column of the paired comparison with the baseline


def compare_with_baseline(results: Sequence[dict[str, Any]], metric: str) -> None:
    """Add the paired comparison with the baseline to every evaluated change, in place.

    Each result with an evaluated ``run_dir`` gets ``"paired"``: the result of
    :func:`..evaluate.compare.paired_runs` against the baseline on the validation cases (or
    ``"why"``: why it could not be compared), and ``"holm"``: its p-value adjusted over all the
    changes compared so far.

    Args:
        results: per run, ``{"change", "run_dir" (absolute or relative path), "evaluated"}``; the
            first is the baseline.
        metric: the per-case metric compared.
    """
    if not results or not results[0].get("evaluated"):
        return
    base = paths.resolve(results[0]["run_dir"])
    compared = []
    for result in results[1:]:
        result.pop("paired", None)
        if not result.get("evaluated"):
            continue
        try:
            result["paired"] = paired_runs(base, paths.resolve(result["run_dir"]), "val", metric)[0]
            compared.append(result)
        except ProjectError as exc:
            result["why"] = str(exc).splitlines()[0]
    for result, adjusted in zip(
        compared, holm([r["paired"]["p_value"] for r in compared]), strict=True
    ):
        result["holm"] = adjusted


def table_rows(results: Sequence[dict[str, Any]], monitor: str, mode: str) -> list[dict[str, str]]:
    """The table's text cells: the metric, its difference from the baseline and the verdict.

    Args:
        results: per run, ``{"change", "value" (float or None), "epochs", "status", "run_dir"}``;
            the first is the baseline; ``"paired"`` and ``"holm"`` when
            :func:`compare_with_baseline` compared it with the baseline.
        monitor: the metric's name (a column header).
        mode: ``"max"`` or ``"min"``: which direction is better.
    """
    baseline = results[0]["value"] if results else None
    rows = []
    for result in results:
        value = result["value"]
        delta = verdict = ""
        if value is not None and baseline is not None and result is not results[0]:
            diff = value - baseline
            delta = f"{diff:+.4f}"
            gain = diff if mode == "max" else -diff
            verdict = "better" if gain > 1e-12 else "worse" if gain < -1e-12 else "same"
        paired = result.get("paired")
        interval = p = adjusted = ""
        if paired is not None:
            interval = f"{paired['difference']:+.4f} [{paired['low']:+.4f}, {paired['high']:+.4f}]"
            p, adjusted = f"{paired['p_value']:.3g}", f"{result['holm']:.3g}"
        elif result.get("why"):
            interval = f"not compared: {result['why']}"
        rows.append(
            {
                "change": result["change"],
                monitor: "" if value is None else f"{value:.4f}",
                "delta": delta,
                "vs baseline": verdict,
                PAIRED: interval,
                "p": p,
                "p (Holm)": adjusted,
                "epochs": str(result["epochs"]),
                "status": result["status"],
                "run_dir": result["run_dir"],
            }
        )
    return rows


def distinguishable(results: Sequence[dict[str, Any]], metric: str) -> str:
    """In words: which changes differ from the baseline beyond noise (Holm-adjusted p < 0.05)."""
    compared = [r for r in results[1:] if r.get("paired") is not None]
    if not compared:
        return "No change could be compared with the baseline case by case."
    n = max(r["paired"]["n_patients"] for r in compared)
    real = []
    for result in compared:
        if result["holm"] < ALPHA:
            gain = result["paired"]["difference"] * (1 if higher_is_better(metric) else -1)
            real.append(f"`{result['change']}` ({'better' if gain > 0 else 'worse'})")
    if not real:
        return (
            f"At this sample size ({n} validation patients) no change is distinguishable from "
            f"noise in the per-patient {metric} (Holm-adjusted p >= {ALPHA} for all "
            f"{len(compared)}): the deltas above may be chance; more patients, or folds, are "
            f"needed to tell{too_few(n)}."
        )
    rest = len(compared) - len(real)
    return (
        f"Distinguishable from noise in the per-patient {metric} at this sample size ({n} "
        f"validation patients, Holm-adjusted p < {ALPHA}): {', '.join(real)}. "
        + (
            f"The other {rest} change(s) are not: their deltas may be chance."
            if rest
            else "Every change is."
        )
    )


def _markdown(
    rows: list[dict[str, str]],
    columns: list[str],
    overrides: Sequence[str],
    monitor: str,
    mode: str,
    results: Sequence[dict[str, Any]] = (),
    metric: str = "",
) -> str:
    better = "higher" if mode == "max" else "lower"
    settings = " ".join(f"`{o}`" for o in overrides) or "the config file alone"
    paired = (
        f"\n{PAIRED}: the mean per-patient difference of `{metric}` on the validation cases "
        "(change minus baseline), 95% bootstrap interval over patients; p: paired permutation "
        "test; p (Holm): adjusted over the changes.\n\n" + distinguishable(results, metric) + "\n"
        if metric
        else ""
    )
    return (
        f"# Ablation {datetime.now().strftime('%Y-%m-%d %H:%M')}\n\n"
        f"Baseline: {settings}. Each change is tried alone on top of it, one training run each.\n"
        f"Metric: the best `{monitor}` over the epochs of each run ({better} is better); delta is "
        f"the change minus the baseline.\n{paired}\n" + markdown_table(rows, columns)
    )


def ablate(
    overrides: Sequence[str],
    tries: Sequence[str],
    *,
    config: Path | None = None,
    plots: bool = True,
    echo: Callable[[str], None] = print,
) -> AblationResult:
    """Train the baseline and each change alone, and save the table of their metrics.

    Args:
        overrides: ``key=value`` overrides of the baseline (and so of every run).
        tries: ``key=value`` changes, each tried alone on top of the baseline.
        config: the YAML file of defaults (``configs/default.yaml`` when ``None``).
        plots: draw each run's training plots.
        echo: where progress lines go.

    Returns:
        The :class:`AblationResult`; a run that failed has a status and no metric.

    Raises:
        ValueError: no ``tries``. ConfigError: a bad override or ``--try`` (before any run).
    """
    changes = plan(overrides, tries, config)
    base_cfg = load_config(overrides, config)
    monitor, mode = monitored_metric(base_cfg)
    metric = DEFAULT_METRIC[base_cfg.task]
    folder = _new_report_folder()
    columns = [
        "change",
        monitor,
        "delta",
        "vs baseline",
        PAIRED,
        "p",
        "p (Holm)",
        "epochs",
        "status",
        "run_dir",
    ]
    results: list[dict[str, Any]] = []
    rows: list[dict[str, str]] = []
    for i, change in enumerate(changes, 1):
        echo(f"[{i}/{len(changes)}] {change.label}: training {change.run_name}")
        before = run_folders()
        status = "done"
        try:
            run_dir: Path | None = train(
                load_config(change.overrides, config), quiet=True, plots=plots
            )
        except RUN_ERRORS as exc:
            run_dir = new_run_folder(before, change.run_name)
            status = f"failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        value = best_metric(run_dir, monitor, mode) if run_dir is not None else None
        epochs = len(read_metrics(run_dir / "metrics.csv")) if run_dir is not None else 0
        evaluated = False
        if run_dir is not None and status == "done":
            try:
                evaluate_run(run_dir, "val", quiet=True)
                evaluated = True
            except RUN_ERRORS as exc:
                status = f"done; not evaluated: {str(exc).splitlines()[0]}"
        results.append(
            {
                "change": change.label,
                "value": value,
                "epochs": epochs,
                "status": status,
                "run_dir": relative_path(run_dir) if run_dir is not None else "",
                "evaluated": evaluated,
            }
        )
        compare_with_baseline(results, metric)
        rows = table_rows(results, monitor, mode)
        atomic_write_csv(folder / "ablation.csv", rows, columns)
        atomic_write_text(
            folder / "ablation.md",
            _markdown(rows, columns, overrides, monitor, mode, results, metric),
        )
        shown = "" if value is None else f"{monitor} {value:.4f}"
        echo(f"[{i}/{len(changes)}] {change.label}: {status}" + (f", {shown}" if shown else ""))
    failed = sum(not r["status"].startswith("done") for r in results)
    echo(distinguishable(results, metric))
    return AblationResult(folder, rows, columns, text_table(rows, columns), failed)
