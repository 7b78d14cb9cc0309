"""``MODEL_CARD.md``: what a run's model is for, what it saw, how well it did, where it fails.

Written into the run folder by ``evaluate`` (and refreshed by ``explain``) from the files the
run already holds: ``config.yaml``, ``environment.json``, ``metrics.csv``, every
``evaluation/<name>/metrics.json``, every ``explain/<method>/summary.json``, and the dataset's
``splits.json``. Nothing here is invented: a section whose source is missing says so and names
the command that fills it. The layout follows Mitchell et al., "Model Cards for Model
Reporting" (2019), cut down to what a student project can state honestly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import paths
from ..config import load_config, monitored_metric
from ..data.dummy import MARKER
from ..data.manifest import SPLITS
from ..utils.io import atomic_write_text
from ..workflow.runs import best_epoch, read_metrics

SMALL_SET = 30  # fewer patients than this: the card warns that intervals are wide


def _json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _metric_rows(report: dict[str, Any]) -> list[str]:
    rows = []
    for name, entry in report.get("summary", {}).items():
        rows.append(
            f"| {name} | {_number(entry.get('value'))} | "
            f"{_number(entry.get('low'))} – {_number(entry.get('high'))} |"
        )
    return rows


def write_model_card(run_dir: str | Path) -> Path:
    """Write (or rewrite) ``RUN_DIR/MODEL_CARD.md`` from the run's files; returns its path."""
    run_dir = Path(run_dir)
    cfg = load_config(path=run_dir / "config.yaml")
    env = _json(run_dir / "environment.json") or {}
    data_root = paths.resolve(cfg.data.root)
    splits = _json(data_root / SPLITS) or {}
    monitor, mode = monitored_metric(cfg)
    epochs_done = len(read_metrics(run_dir / "metrics.csv"))
    found = best_epoch(run_dir, monitor, mode)
    best = f"{monitor} {found[0]:.4f} at epoch {found[1]}" if found else "n/a"
    dims = f"{cfg.spatial_dims}D"
    lines = [
        f"# Model card: {run_dir.name}",
        "",
        "## Intended use",
        "",
        f"{dims} {cfg.task} of medical images ({cfg.model.name}), trained for research and "
        "teaching. **Not a medical device**: it has not been validated for clinical use, on "
        "other scanners, sites or populations, and must not inform decisions about patients.",
        "",
        "## Data",
        "",
        f"- Dataset: `{cfg.data.root}` (fold {cfg.data.fold}).",
    ]
    data = env.get("data", {})
    if data:
        lines.append(
            f"- Training cases: {data.get('train_cases')}; validation cases: "
            f"{data.get('val_cases')}; classes: {data.get('classes')}."
        )
    if splits:
        removed = len(splits.get("removed_duplicates", []))
        lines += [
            f"- Held-out test cases: {len(splits.get('test', []))}; cross-validation folds: "
            f"{len(splits.get('folds', []))}; exact duplicates removed before splitting: "
            f"{removed}; splits grouped by patient (seed {splits.get('seed')}).",
            f"- Strata ({(splits.get('stratify') or {}).get('by', 'label')}): "
            + ", ".join(f"{k} {v}" for k, v in splits.get("strata", {}).get("all", {}).items())
            + ".",
        ]
    else:
        lines.append(f"- No `splits.json` under `{cfg.data.root}` (run `split`).")
    lines += [
        "",
        "## Model and training",
        "",
        f"- Model `{cfg.model.name}`, width {cfg.model.width}, depth {cfg.model.depth}, "
        f"norm {cfg.model.norm}, activation {cfg.model.activation}, dropout {cfg.model.dropout}.",
        f"- {cfg.train.optimizer}, lr {cfg.train.lr:g}, batch {cfg.train.batch_size}, "
        f"weight decay {cfg.train.weight_decay:g}, schedule {cfg.train.schedule}, loss "
        f"{cfg.train.loss}, augmentation {'on' if cfg.data.augment else 'off'}, seed {cfg.seed}.",
        f"- Epochs run: {epochs_done} of {cfg.train.epochs}; best validation {best}.",
        f"- Software: torch {env.get('torch', 'n/a')}, Python {env.get('python', 'n/a')}; "
        f"device {env.get('device', 'n/a')}; git commit "
        f"{(env.get('git') or {}).get('commit') or 'n/a'}"
        + (" (uncommitted changes)" if (env.get("git") or {}).get("dirty") else "")
        + ".",
        "- Full settings: `config.yaml`; environment: `environment.json`.",
        "",
        "## Metrics",
        "",
    ]
    evaluations = sorted((run_dir / "evaluation").glob("*/metrics.json"))
    reports = [(p.parent.name, _json(p)) for p in evaluations]
    reports = [(name, r) for name, r in reports if r]
    failures: list[str] = []
    small = False
    for name, report in reports:
        ensemble = report.get("ensemble") or []
        what = f"ensemble of {len(ensemble)} runs" if ensemble else f"epoch {report.get('epoch')}"
        lines += [
            f"### `{name}`: {report.get('n_cases')} cases, {report.get('n_patients')} patients, "
            f"reference `{report.get('reference')}`, {what}",
            "",
            "Whole-set values with bootstrap 95% intervals over patients.",
            "",
            "| metric | value | 95% interval |",
            "|---|---|---|",
            *_metric_rows(report),
            "",
        ]
        details = report.get("details", {})
        if report.get("task") == "segmentation":
            lines += [
                f"Empty-mask cases: {int(details.get('both_empty', 0))} with nothing to find "
                f"and nothing found (Dice 1), {int(details.get('pred_empty', 0))} missed "
                f"entirely, {int(details.get('truth_empty', 0))} false alarms on an empty "
                "mask (Dice 0; left out of the distance means).",
                "",
            ]
        for failure in report.get("failures", []):
            shown = ", ".join(f"{k} {_number(v)}" for k, v in failure.items() if k != "case_id")
            failures.append(f"- `{name}`: `{failure['case_id']}` ({shown})")
        small = small or (report.get("n_patients") or 0) < SMALL_SET
    if not reports:
        lines += ["Not evaluated yet: run `evaluate RUN_DIR --split test`.", ""]
    lines += ["## Failure cases", ""]
    lines += failures or ["None listed (no evaluation yet, or no mistakes)."]
    lines += [
        "",
        "Figures: `evaluation/<name>/` (best, median and worst cases; confusion matrix and ROC).",
        "",
        "## Interpretability",
        "",
    ]
    findings = []
    for summary in sorted((run_dir / "explain").glob("*/summary.json")):
        data = _json(summary) or {}
        if data.get("finding"):
            findings.append(f"- {data['finding']} (`explain/{summary.parent.name}/`)")
    lines += findings or ["Not run yet: `explain RUN_DIR --method gradcam` (and the others)."]
    limitations = [
        "- Trained on one fold of one dataset; performance on data from other scanners, "
        "sites or populations is unknown.",
        "- Validation cases chose the checkpoint (best epoch), so validation metrics are "
        "optimistic; report the test set.",
    ]
    if small:
        limitations.append(
            f"- Fewer than {SMALL_SET} patients were evaluated: the intervals are wide; read "
            "them before the point values."
        )
    if (data_root / MARKER).exists():
        limitations.append(
            "- The data is the project's **synthetic** dummy dataset: these numbers say the "
            "pipeline works, nothing about real images."
        )
    if "label" not in {r.get("reference") for _, r in reports} and reports:
        limitations.append("- Evaluated against a non-default reference annotation only.")
    lines += ["", "## Limitations", "", *limitations, ""]
    return atomic_write_text(run_dir / "MODEL_CARD.md", "\n".join(lines))
