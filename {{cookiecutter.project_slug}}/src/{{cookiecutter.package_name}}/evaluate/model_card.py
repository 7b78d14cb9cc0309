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

from ..config import Config, data_root, load_config, monitored_metric
from ..data.manifest import SPLITS, SYNTHETIC_MARKER
from ..runs.folder import ENVIRONMENT, best_epoch, config_path, metrics_path, read_metrics
from ..utils.io import atomic_write_text
from .test_use import summary_lines

SMALL_SET = 30  # fewer patients than this: the card's limitations state the interval widths
FEW_PATIENTS = 5  # fewer than this: the bootstrap has too few distinct resamples to mean much
PRIMARY = ("dice", "auroc")  # the metric whose interval the card describes in words


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


def _width(entry: dict[str, Any]) -> float | None:
    low, high = entry.get("low"), entry.get("high")
    if not isinstance(low, int | float) or not isinstance(high, int | float):
        return None
    width = float(high) - float(low)
    return width if width == width else None


def _metric_rows(report: dict[str, Any]) -> list[str]:
    definitions = report.get("definitions") or {}
    rows = []
    for name, entry in report.get("summary", {}).items():
        meaning = str(definitions.get(name, "")).replace("|", "\\|")  # not a column break
        rows.append(
            f"| {name} | {_number(entry.get('value'))} | "
            f"{_number(entry.get('low'))} – {_number(entry.get('high'))} | "
            f"{_number(_width(entry))} | {meaning} |"
        )
    return rows


def interval_sentence(report: dict[str, Any]) -> str:
    """The intervals of one evaluation described from their actual width.

    Args:
        report: an evaluation's ``metrics.json`` content.

    Returns:
        One sentence: the width of the main metric's interval (Dice or AUROC) and the number of
        patients, saying that a zero width is no evidence of certainty (over one patient the
        uncertainty is not measured at all) and that fewer than :data:`FEW_PATIENTS` patients
        understate it.
    """
    summary = report.get("summary") or {}
    patients = int(report.get("n_patients") or 0)
    name = next((m for m in PRIMARY if m in summary), next(iter(summary), None))
    entry = summary.get(name) if name else None
    width = _width(entry) if entry else None
    if width is None:
        return f"No interval could be computed over {patients} patient(s)."
    people = f"{patients} patient" + ("" if patients == 1 else "s")
    what = (
        f"The 95% interval of {name} is {_number(entry.get('low'))} – "
        f"{_number(entry.get('high'))}, {_number(width)} wide, over {people}"
    )
    if patients < 2:
        return (
            f"{what}: zero width because every bootstrap resample holds the same patient, so "
            "the uncertainty is not measured at all, which is not the same as none."
        )
    few = (
        f"; with fewer than {FEW_PATIENTS} patients the bootstrap has few distinct resamples and "
        "understates the uncertainty"
        if patients < FEW_PATIENTS
        else ""
    )
    if width == 0.0:
        return (
            f"{what}: zero width because every resample gave the same value, which does not "
            f"make the value certain{few}."
        )
    if few:
        return f"{what}{few}."
    return f"{what}."


def _threshold_lines(report: dict[str, Any]) -> list[str]:
    """The decision threshold (chosen on validation) and the calibration of a classification."""
    lines = []
    threshold = report.get("threshold")
    if isinstance(threshold, dict):
        if threshold.get("value") is None:
            lines.append(f"No decision threshold: {threshold.get('why_none', 'not chosen')}.")
        else:
            summary = report.get("summary") or {}
            sens = (summary.get("sensitivity_at_threshold") or {}).get("value")
            spec = (summary.get("specificity_at_threshold") or {}).get("value")
            lines.append(
                f"Decision threshold p(`{report.get('positive_class')}`) >= "
                f"{_number(threshold['value'], 4)}, chosen by {threshold.get('rule')} on the "
                f"{threshold.get('chosen_on')} (there: sensitivity "
                f"{_number(threshold.get('validation_sensitivity'))}, specificity "
                f"{_number(threshold.get('validation_specificity'))}) and applied unchanged "
                f"here: sensitivity {_number(sens)}, specificity {_number(spec)} on these "
                f"{report.get('n_cases')} cases."
            )
    calibration = report.get("calibration")
    if isinstance(calibration, dict):
        temperature = calibration.get("temperature")
        scaled = (
            f"; temperature scaling T = {', '.join(_number(t) for t in temperature)} "
            "(fitted on validation)"
            if temperature
            else "; no recalibration (eval.calibrate=none)"
        )
        lines.append(
            f"Calibration: expected calibration error {_number(calibration.get('ece'))} of the "
            f"{calibration.get('of')} over {calibration.get('bins')} bins{scaled}; reliability "
            "diagram `reliability.png`."
        )
    return [*lines, ""] if lines else []


def write_model_card(run_dir: str | Path) -> Path:
    """Write (or rewrite) ``RUN_DIR/MODEL_CARD.md`` from the run's files; returns its path.

    The card is its sections in order, each written by one function below from the files it
    names: intended use and data (``config.yaml``, ``environment.json``, ``splits.json``),
    model and training (``config.yaml``, ``metrics.csv``), metrics (every
    ``evaluation/<name>/metrics.json``) and test-set use, failure cases, interpretability
    (``explain/<method>/summary.json``) and limitations.
    """
    run_dir = Path(run_dir)
    cfg = load_config(path=config_path(run_dir))
    env = _json(run_dir / ENVIRONMENT) or {}
    dataset_dir = data_root(cfg)
    reports = _reports(run_dir)
    lines = [
        f"# Model card: {run_dir.name}",
        "",
        *_intended_use(cfg),
        *_data_section(cfg, env, _json(dataset_dir / SPLITS) or {}),
        *_training_section(run_dir, cfg, env),
        *_metrics_section(reports),
        "### Test set use",
        "",
        *summary_lines(str(cfg.data.root), run_dir.name),
        "",
        *_failures_section(reports),
        *_interpretability_section(run_dir),
        *_limitations_section(reports, dataset_dir),
    ]
    return atomic_write_text(run_dir / "MODEL_CARD.md", "\n".join(lines))


def _reports(run_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    """``(name, metrics.json)`` of every readable ``evaluation/<name>/``, sorted by name."""
    evaluations = sorted((run_dir / "evaluation").glob("*/metrics.json"))
    reports = [(p.parent.name, _json(p)) for p in evaluations]
    return [(name, r) for name, r in reports if r]


def _intended_use(cfg: Config) -> list[str]:
    return [
        "## Intended use",
        "",
        f"{cfg.spatial_dims}D {cfg.task} of medical images ({cfg.model.name}), trained for "
        "research and teaching. **Not a medical device**: it has not been validated for "
        "clinical use, on other scanners, sites or populations, and must not inform decisions "
        "about patients.",
        "",
    ]


def _data_section(cfg: Config, env: dict[str, Any], splits: dict[str, Any]) -> list[str]:
    """The dataset, the fold's case counts and how ``splits.json`` was made."""
    lines = ["## Data", "", f"- Dataset: `{cfg.data.root}` (fold {cfg.data.fold})."]
    data = env.get("data", {})
    if data:
        lines.append(
            f"- Training cases: {data.get('train_cases')}; validation cases: "
            f"{data.get('val_cases')}; classes: {data.get('classes')}."
        )
    if not splits:
        return [*lines, f"- No `splits.json` under `{cfg.data.root}` (run `split`).", ""]
    removed = len(splits.get("removed_duplicates", []))
    strata = splits.get("strata", {}).get("all", {})
    return [
        *lines,
        f"- Held-out test cases: {len(splits.get('test', []))}; cross-validation folds: "
        f"{len(splits.get('folds', []))}; exact duplicates removed before splitting: "
        f"{removed}; splits grouped by patient (seed {splits.get('seed')}).",
        f"- Strata ({(splits.get('stratify') or {}).get('by', 'label')}): "
        + ", ".join(f"{k} {v}" for k, v in strata.items())
        + ".",
        "",
    ]


def _training_section(run_dir: Path, cfg: Config, env: dict[str, Any]) -> list[str]:
    """The network, the optimization, the best epoch and the software it ran on."""
    monitor, mode = monitored_metric(cfg)
    epochs_done = len(read_metrics(metrics_path(run_dir)))
    found = best_epoch(run_dir, monitor, mode)
    best = f"{monitor} {found[0]:.4f} at epoch {found[1]}" if found else "n/a"
    git = env.get("git") or {}
    model, train = cfg.model, cfg.train
    return [
        "## Model and training",
        "",
        f"- Model `{model.name}`, width {model.width}, depth {model.depth}, "
        f"norm {model.norm}, activation {model.activation}, dropout {model.dropout}.",
        f"- {train.optimizer}, lr {train.lr:g}, batch {train.batch_size}, "
        f"weight decay {train.weight_decay:g}, schedule {train.schedule}, loss "
        f"{train.loss}, augmentation {'on' if cfg.data.augment else 'off'}, seed {cfg.seed}.",
        f"- Epochs run: {epochs_done} of {train.epochs}; best validation {best}.",
        f"- Software: torch {env.get('torch', 'n/a')}, Python {env.get('python', 'n/a')}; "
        f"device {env.get('device', 'n/a')}; git commit {git.get('commit') or 'n/a'}"
        + (" (uncommitted changes)" if git.get("dirty") else "")
        + ".",
        "- Full settings: `config.yaml`; environment: `environment.json`.",
        "",
    ]


def _metrics_section(reports: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """One subsection per evaluated set: what the numbers mean, then their table."""
    lines = ["## Metrics", ""]
    for name, report in reports:
        lines += _report_lines(name, report)
    if not reports:
        lines += ["Not evaluated yet: run `evaluate RUN_DIR --split test`.", ""]
    return lines


def _report_lines(name: str, report: dict[str, Any]) -> list[str]:
    """The subsection of ``evaluation/<name>/metrics.json``."""
    ensemble = report.get("ensemble") or []
    what = f"ensemble of {len(ensemble)} runs" if ensemble else f"epoch {report.get('epoch')}"
    lines = [
        f"### `{name}`: {report.get('n_cases')} cases, {report.get('n_patients')} patients, "
        f"reference `{report.get('reference')}`, {what}",
        "",
        "Whole-set values with bootstrap 95% intervals over patients. " + interval_sentence(report),
        "",
    ]
    if report.get("task") == "segmentation" and len(report.get("class_names") or {}) > 2:
        named = ", ".join(
            f"`_{k}` = {label}" for k, label in report["class_names"].items() if k != "0"
        )
        lines += [f"Per-class metrics (label value: name): {named}.", ""]
    if report.get("positive_class"):
        lines += [
            f"Positive class: `{report['positive_class']}`; sensitivity, specificity, PPV, "
            "NPV and AUROC are about it.",
            "",
        ]
    lines += _threshold_lines(report)
    lines += [
        "| metric | value | 95% interval | width | meaning |",
        "|---|---|---|---|---|",
        *_metric_rows(report),
        "",
    ]
    if any(_number(e.get("value")) == "n/a" for e in report.get("summary", {}).values()):
        lines += [
            "n/a: undefined on these cases, never 0 (a sensitivity without positive cases, "
            "a PPV of a class never predicted, a distance without a case where both masks "
            "are non-empty).",
            "",
        ]
    if report.get("task") == "segmentation":
        lines += _segmentation_conventions(report.get("details", {}))
    return lines


def _segmentation_conventions(details: dict[str, Any]) -> list[str]:
    """How empty masks entered the distances, and the lesion-wise detection counts."""
    one = int(details.get("pred_empty", 0)) + int(details.get("truth_empty", 0))
    lines = [
        f"Empty masks (case-class pairs): {int(details.get('both_empty', 0))} with "
        f"nothing to find and nothing found (Dice 1, distances 0), "
        f"{int(details.get('pred_empty', 0))} missed entirely, "
        f"{int(details.get('truth_empty', 0))} false alarms on an empty reference "
        f"(Dice 0). `hd95` and `assd` leave these {one} out of their means; "
        "`hd95_worst` and `assd_worst` score them the image diagonal in mm (the BraTS "
        "convention).",
        "",
    ]
    if "lesion_tp" in details:
        found = int(details["lesion_tp"])
        total = found + int(details.get("lesion_fn", 0))
        lines += [
            f"Lesion-wise detection (connected components; detected = overlapped by "
            f"the prediction): {found} of {total} reference lesions detected, "
            f"{int(details.get('lesion_fp', 0))} predicted components touching no "
            "reference lesion.",
            "",
        ]
    return lines


def _failures_section(reports: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The worst cases each evaluation listed."""
    failures = []
    for name, report in reports:
        for failure in report.get("failures", []):
            shown = ", ".join(f"{k} {_number(v)}" for k, v in failure.items() if k != "case_id")
            failures.append(f"- `{name}`: `{failure['case_id']}` ({shown})")
    return [
        "## Failure cases",
        "",
        *(failures or ["None listed (no evaluation yet, or no mistakes)."]),
        "",
        "Figures: `evaluation/<name>/` (best, median and worst cases; confusion matrix and ROC).",
        "",
    ]


def _interpretability_section(run_dir: Path) -> list[str]:
    """The one-line finding of each ``explain`` method that was run."""
    findings = []
    for summary in sorted((run_dir / "explain").glob("*/summary.json")):
        data = _json(summary) or {}
        if data.get("finding"):
            findings.append(f"- {data['finding']} (`explain/{summary.parent.name}/`)")
    return [
        "## Interpretability",
        "",
        *(findings or ["Not run yet: `explain RUN_DIR --method gradcam` (and the others)."]),
    ]


def _limitations_section(reports: list[tuple[str, dict[str, Any]]], dataset_dir: Path) -> list[str]:
    """What the numbers cannot say: one fold, optimistic validation, small sets, synthetic data."""
    limitations = [
        "- Trained on one fold of one dataset; performance on data from other scanners, "
        "sites or populations is unknown.",
        "- Validation cases chose the checkpoint (best epoch), so validation metrics are "
        "optimistic; report the test set.",
    ]
    small = [
        f"- `{name}`: {interval_sentence(report)}"
        for name, report in reports
        if (report.get("n_patients") or 0) < SMALL_SET
    ]
    if small:
        limitations.append(
            f"- Fewer than {SMALL_SET} patients were evaluated; read the intervals before the "
            "point values:"
        )
        limitations += [f"  {line}" for line in small]
    if (dataset_dir / SYNTHETIC_MARKER).exists():
        limitations.append(
            "- The data is the project's **synthetic** dummy dataset: these numbers say the "
            "pipeline works, nothing about real images."
        )
    if "label" not in {r.get("reference") for _, r in reports} and reports:
        limitations.append("- Evaluated against a non-default reference annotation only.")
    return ["", "## Limitations", "", *limitations, ""]
