"""``evaluate``: whole-set metrics with confidence intervals, per-case metrics, predictions, figures.

:func:`evaluate_run` applies a run (or an ensemble of runs, whose probabilities are averaged) to
the validation cases of its fold or to the held-out test set and writes
``RUN_DIR/evaluation/<name>/``:

- ``metrics.json``: whole-set values, each with a bootstrap 95% interval that resamples
  *patients* (:mod:`.bootstrap`), under ``"summary"`` as ``{"value", "low", "high"}``; the
  full metric set (per class, empty-mask counts, confusion matrix) under ``"details"``; the
  failure cases; what was evaluated (run, checkpoint epoch, ensemble, reference, cases, patients).
- ``per_case.csv``: segmentation ``case_id, dice, iou, hd95, assd`` (+ per class with several
  classes), classification ``case_id, label, prediction, prob_<class>...``; then ``patient_id``.
- ``predictions/<case_id>.nii.gz`` (segmentation): the predicted labels on the image's own grid,
  with its affine, ready to open beside the image in a viewer.
- figures: best, median and worst cases with truth and prediction outlined (3D as three
  orthogonal slices through the structure) and the spread of each metric; a confusion matrix and
  ROC curves for classification; and, when the manifest has more annotators, the cases where
  they disagree most beside the model's answer.

``<name>`` is the split (``val`` or ``test``), with ``-ensemble`` for an ensemble and
``-<reference>`` for a reference other than ``label``, so evaluations never overwrite each
other's results. The folder is built aside and moved into place when complete.

Metrics are computed on each image's own grid (predictions are resampled back when the run
resamples to ``data.target_spacing``), so distances are in the scanner's millimetres.

References (``reference``): ``label`` (the manifest's annotator), ``label_<rater>`` (another
annotator's column; cases without it are left out and counted), or ``majority``: a voxel (or a
case) takes the label that more than half of the annotators gave it, background otherwise for
segmentation; for classification a tie goes to the first annotator (``label``). With two
annotators the segmentation majority is where both agree.
"""

from __future__ import annotations

import json
import math
import shutil
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..data.io import read_image, read_label, write_nifti
from ..data.manifest import Case, DataError
from ..utils.io import atomic_write_csv, atomic_write_text, replace_folder
from .bootstrap import bootstrap_ci, bootstrap_cis
from .classification_metrics import classification_metrics
from .inference import (
    LoadedRun,
    eval_dataset,
    load_runs,
    probabilities,
    split_cases,
    to_source_grid,
)
from .segmentation_metrics import METRICS, segmentation_metrics, summarize_segmentation

REPLICATES = 1000  # bootstrap replicates per interval
LEVEL = 0.95  # interval coverage
FIGURE_CASES = 3  # best, median, worst
DISAGREEMENT_CASES = 4  # cases shown where the annotators disagree most
CLASSIFICATION_SUMMARY = ("accuracy", "balanced_accuracy", "auroc", "sensitivity", "specificity")
UNITS = {"dice": "", "iou": "", "hd95": "mm", "assd": "mm"}


class EvaluationError(DataError):
    """The cases cannot be evaluated as asked (an unknown reference, no annotated case)."""


def evaluation_name(split: str, ensemble: bool, reference: str) -> str:
    """The evaluation folder's name: ``val``, ``test-ensemble``, ``val-majority``..."""
    name = split + ("-ensemble" if ensemble else "")
    return name + (f"-{reference}" if reference != "label" else "")


def evaluate_run(
    run_dir: str | Path,
    split: str = "val",
    *,
    ensemble: Sequence[str | Path] = (),
    reference: str = "label",
    checkpoint: str = "best",
    quiet: bool = False,
) -> Path:
    """Evaluate a run (or an ensemble) on ``split`` and write its evaluation folder.

    Args:
        run_dir: the run folder; its config says the data, fold and preprocessing.
        split: ``"val"`` (the run's fold) or ``"test"`` (the held-out test set).
        ensemble: more run folders whose probabilities are averaged with ``run_dir``'s.
        reference: ``"label"``, ``"label_<rater>"`` or ``"majority"`` (module docstring).
        checkpoint: ``"best"`` or ``"last"``.
        quiet: no progress bar.

    Returns:
        The evaluation folder ``RUN_DIR/evaluation/<name>/``.

    Raises:
        ProjectError: a bad run folder or checkpoint, stale splits, an unreadable image, an
            unknown reference; the message names the thing.
    """
    runs = load_runs(run_dir, ensemble, checkpoint)
    run = runs[0]
    cases = split_cases(run, split)
    out = run.run_dir / "evaluation" / evaluation_name(split, len(runs) > 1, reference)
    staging = out.with_name(f".{out.name}.{uuid.uuid4().hex}.tmp")
    staging.mkdir(parents=True)
    try:
        originals = cases  # the annotators' own labels, for the disagreement figure
        cases, skipped = with_reference(cases, reference, run.task, staging / "reference")
        dataset = eval_dataset(run, cases)
        bar = tqdm(range(len(dataset)), desc=f"evaluate {split}", disable=quiet, leave=False)
        if run.task == "segmentation":
            report = _segmentation(runs, dataset, bar, staging, originals)
        else:
            report = _classification(runs, dataset, bar, staging, originals)
        report.update(
            {
                "run": run.run_dir.name,
                "split": split,
                "reference": reference,
                "checkpoint": checkpoint,
                "epoch": run.epoch,
                "ensemble": [r.run_dir.name for r in runs] if len(runs) > 1 else [],
                "task": run.task,
                "n_patients": len({c.patient_id for c in cases}),
                "skipped_without_reference": skipped,
                "bootstrap": {"replicates": REPLICATES, "level": LEVEL, "unit": "patient"},
                "date": datetime.now().astimezone().isoformat(timespec="seconds"),
            }
        )
        ordered = {k: report[k] for k in sorted(report, key=_key_order)}
        atomic_write_text(staging / "metrics.json", json.dumps(ordered, indent=2) + "\n")
        replace_folder(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    from .model_card import write_model_card  # the card reads every evaluation of the run

    write_model_card(run.run_dir)
    return out


def _key_order(key: str) -> int:
    first = ("run", "split", "task", "reference", "checkpoint", "epoch", "ensemble", "n_cases")
    return first.index(key) if key in first else len(first)


def annotators(cases: Sequence[Case]) -> list[str]:
    """The rater names of the manifest's ``label_<rater>`` columns, in first-seen order."""
    names: list[str] = []
    for case in cases:
        names += [r for r in case.raters if r not in names]
    return names


def with_reference(
    cases: Sequence[Case], reference: str, task: str, folder: Path
) -> tuple[list[Case], int]:
    """The cases with ``label`` replaced by the chosen reference; and how many were left out.

    Raises:
        EvaluationError: an unknown reference (the message lists the valid ones), or no case
            has the chosen annotator.
    """
    raters = annotators(cases)
    valid = ["label", *[f"label_{r}" for r in raters], "majority"]
    if reference not in valid:
        raise EvaluationError(
            f"reference '{reference}' is not valid: expected one of {', '.join(valid)}"
        )
    if reference == "label":
        return list(cases), 0
    if reference == "majority":
        return [_majority(case, task, folder) for case in cases], 0
    rater = reference.removeprefix("label_")
    kept = [
        replace(c, label=c.raters[rater]) for c in cases if c.raters.get(rater) not in (None, "")
    ]
    if not kept:
        raise EvaluationError(f"no case to evaluate has a '{reference}' annotation")
    return kept, len(cases) - len(kept)


def _majority(case: Case, task: str, folder: Path) -> Case:
    labels = [case.label, *[v for v in case.raters.values() if v not in (None, "")]]
    if task == "classification":
        counts = Counter(str(v) for v in labels)
        top = max(counts.values())
        winner = next(str(v) for v in labels if counts[str(v)] == top)  # ties: first annotator
        return replace(case, label=winner)
    image = read_image(case.image)
    masks = [read_label(path, image) for path in labels]
    stacked = np.stack([np.asarray(m.array).astype(np.int64) for m in masks])
    majority = np.zeros(stacked.shape[1:], dtype=np.uint8)
    for value in np.unique(stacked):
        if value != 0:
            majority[(stacked == value).sum(axis=0) * 2 > len(masks)] = value
    path = write_nifti(majority, masks[0].affine, folder / f"{case.case_id}.nii.gz")
    return replace(case, label=path)


# --- segmentation -----------------------------------------------------------------------------


def _segmentation(runs: list[LoadedRun], dataset, bar, out: Path, originals) -> dict[str, Any]:
    num_classes = runs[0].num_classes
    classes = tuple(range(1, num_classes))
    rows, results = [], []
    for index in bar:
        case = dataset.cases[index]
        item = dataset[index]
        meta = dataset.geometry(index)
        probs = probabilities(runs, item["image"][None])[0].cpu().numpy()
        if tuple(probs.shape[1:]) == tuple(meta["source_shape"]):
            pred = probs.argmax(0)
            truth = item["label"].numpy()
            spacing = meta["spacing"]
        else:  # resampled for the network: back onto the image's own grid
            pred = to_source_grid(probs, meta).argmax(0)
            image = read_image(case.image)
            truth = np.asarray(read_label(case.label, image).array)
            spacing = image.spacing
        pred = pred.astype(np.uint8 if num_classes <= 256 else np.int32)
        write_nifti(
            pred, np.asarray(meta["source_affine"]), out / "predictions" / f"{case.case_id}.nii.gz"
        )
        scores = segmentation_metrics(pred, truth, spacing, classes=classes)
        results.append(scores)
        row = {"case_id": case.case_id, **{m: scores[m] for m in METRICS}}
        if len(classes) > 1:
            row.update({f"{m}_{c}": scores[f"{m}_{c}"] for c in classes for m in METRICS})
        rows.append({**row, "patient_id": case.patient_id})
    details = summarize_segmentation(results, classes)
    groups = [r["patient_id"] for r in rows]
    names = list(METRICS) + [f"{m}_{c}" for c in classes for m in METRICS if len(classes) > 1]
    summary = {
        name: _interval(np.array([r[name] for r in rows], dtype=float), groups, details[name])
        for name in names
    }
    order = sorted(range(len(rows)), key=lambda i: (_nan_low(rows[i]["dice"]), rows[i]["case_id"]))
    failures = [
        {"case_id": rows[i]["case_id"], "dice": rows[i]["dice"]} for i in order[:FIGURE_CASES]
    ]
    _write_csv(out / "per_case.csv", rows)
    _segmentation_figures(runs[0], dataset, rows, order, out)
    _disagreement_figure(originals, out, task="segmentation")
    return {"n_cases": len(rows), "summary": summary, "details": details, "failures": failures}


def _nan_low(value: float) -> float:
    return -math.inf if math.isnan(value) else value


def _interval(values: np.ndarray, groups: list[str], value: float) -> dict[str, float]:
    low, high = bootstrap_ci(values, groups=groups, n=REPLICATES, seed=0, level=LEVEL)
    return {"value": float(value), "low": low, "high": high}


def _segmentation_figures(run: LoadedRun, dataset, rows, order, out: Path) -> None:
    picks = {"worst": order[0], "median": order[len(order) // 2], "best": order[-1]}
    figure_rows = []
    for kind in ("best", "median", "worst"):
        index = picks[kind]
        case = dataset.cases[index]
        image = read_image(case.image)
        truth = read_label(case.label, image).array
        pred = read_label(out / "predictions" / f"{case.case_id}.nii.gz", image).array
        figure_rows.append(
            {
                "title": f"{kind}: {case.case_id}\nDice {rows[index]['dice']:.3f}",
                "image": image.array,
                "spacing": image.spacing,
                "masks": {"truth": truth, "prediction": pred},
            }
        )
    from ..viz.evaluation_plots import plot_case_rows, plot_metric_spread

    plot_case_rows(figure_rows, out / "cases.png", f"{run.run_dir.name}: best, median, worst")
    plot_metric_spread(
        {m: [r[m] for r in rows] for m in METRICS},
        out / "metrics.png",
        f"per-case metrics ({len(rows)} cases)",
        UNITS,
    )


def _disagreement_figure(
    originals: Sequence[Case], out: Path, task: str, predicted: dict | None = None
) -> None:
    """The cases where the annotators disagree most, beside the model's answer."""
    from ..data.inspection import dice
    from ..viz.evaluation_plots import plot_case_rows, plot_image_grid

    if predicted is not None:
        evaluated = set(predicted)
    else:
        evaluated = {p.name.removesuffix(".nii.gz") for p in (out / "predictions").glob("*.nii.gz")}
    cases = [c for c in originals if c.raters and c.case_id in evaluated]
    if not cases:
        return
    if task == "classification":
        rows = [c for c in cases if any(str(v) != str(c.label) for v in c.raters.values())]
        items = [
            {
                "image": read_image(c.image).array,
                "caption": f"{c.case_id}\nlabel: {c.label}; "
                + "; ".join(f"{r}: {v}" for r, v in c.raters.items())
                + f"\nmodel: {predicted[c.case_id]}",
            }
            for c in rows[: 2 * DISAGREEMENT_CASES]
        ]
        if items:
            plot_image_grid(
                items, out / "annotator_disagreement.png", "cases the annotators disagree on"
            )
        return
    scored = []
    for case in cases:
        image = read_image(case.image)
        truth = read_label(case.label, image).array
        others = {
            r: read_label(p, image).array for r, p in case.raters.items() if p not in (None, "")
        }
        agreement = min((dice(truth > 0, m > 0) for m in others.values()), default=1.0)
        scored.append((agreement, case.case_id, case, image, truth, others))
    scored = sorted((s for s in scored if s[0] < 1.0), key=lambda s: (s[0], s[1]))
    if not scored:
        return  # the annotators agree on every case
    rows = []
    for agreement, case_id, _case, image, truth, others in scored[:DISAGREEMENT_CASES]:
        pred = read_label(out / "predictions" / f"{case_id}.nii.gz", image).array
        rows.append(
            {
                "title": f"{case_id}\nannotators' Dice {agreement:.2f}",
                "image": image.array,
                "spacing": image.spacing,
                "masks": {"label": truth, **others, "model": pred},
            }
        )
    plot_case_rows(rows, out / "annotator_disagreement.png", "where the annotators disagree most")


# --- classification ---------------------------------------------------------------------------


def _classification(runs: list[LoadedRun], dataset, bar, out: Path, originals) -> dict[str, Any]:
    names = runs[0].classes or []
    labels, probs, rows, predicted = [], [], [], {}
    for index in bar:
        case = dataset.cases[index]
        item = dataset[index]
        p = probabilities(runs, item["image"][None])[0].cpu().numpy().astype(np.float64)
        label = int(item["label"])
        labels.append(label)
        probs.append(p)
        predicted[case.case_id] = f"{names[int(p.argmax())]} ({p.max():.2f})"
        rows.append(
            {
                "case_id": case.case_id,
                "label": names[label],
                "prediction": names[int(p.argmax())],
                **{f"prob_{n}": float(p[k]) for k, n in enumerate(names)},
                "patient_id": case.patient_id,
            }
        )
    truth, scores = np.asarray(labels), np.stack(probs)
    details = classification_metrics(truth, scores, names)
    groups = [r["patient_id"] for r in rows]
    intervals = bootstrap_cis(
        (truth, scores),
        lambda t, s: {
            k: float(v)
            for k, v in classification_metrics(t, s, names).items()
            if k in CLASSIFICATION_SUMMARY
        },
        groups=groups,
        n=REPLICATES,
        seed=0,
        level=LEVEL,
    )
    summary = {
        name: {"value": float(details[name]), "low": intervals[name][0], "high": intervals[name][1]}
        for name in CLASSIFICATION_SUMMARY
    }
    wrong = [i for i in range(len(rows)) if rows[i]["label"] != rows[i]["prediction"]]
    wrong.sort(key=lambda i: (-float(scores[i].max()), rows[i]["case_id"]))
    failures = [
        {
            "case_id": rows[i]["case_id"],
            "label": rows[i]["label"],
            "prediction": rows[i]["prediction"],
            "probability": float(scores[i].max()),
        }
        for i in wrong[:FIGURE_CASES]
    ]
    _write_csv(out / "per_case.csv", rows)
    from ..viz.evaluation_plots import plot_confusion_matrix, plot_image_grid, plot_roc

    title = runs[0].run_dir.name
    plot_confusion_matrix(details["confusion_matrix"], names, out / "confusion_matrix.png", title)
    aurocs = {n: float(details[f"auroc_{n}"]) for n in names}
    plot_roc(truth, scores, names, aurocs, out / "roc.png", title)
    if wrong:
        items = [
            {
                "image": read_image(dataset.cases[i].image).array,
                "caption": f"{rows[i]['case_id']}\ntrue {rows[i]['label']}, "
                f"predicted {rows[i]['prediction']} ({scores[i].max():.2f})",
            }
            for i in wrong[: 2 * FIGURE_CASES]
        ]
        plot_image_grid(items, out / "failures.png", "most confident mistakes")
    _disagreement_figure(originals, out, task="classification", predicted=predicted)
    return {"n_cases": len(rows), "summary": summary, "details": details, "failures": failures}


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    shown = [{k: f"{v:.6g}" if isinstance(v, float) else v for k, v in r.items()} for r in rows]
    atomic_write_csv(path, shown, list(rows[0]))
