"""``evaluate``: whole-set metrics with confidence intervals, per-case metrics, predictions, figures.

:func:`evaluate_run` applies a run (or an ensemble of runs, whose probabilities are averaged) to
the validation cases of its fold or to the held-out test set and writes
``RUN_DIR/evaluation/<name>/``:

- ``metrics.json``: whole-set values, each with a bootstrap 95% interval that resamples
  *patients* (:mod:`..metrics.bootstrap`), under ``"summary"`` as ``{"value", "low", "high"}``,
  and what each of them means under ``"definitions"`` (which class, which convention, which
  tolerance); the full metric set (per class, empty-mask and lesion counts, confusion matrix)
  under ``"details"``; the failure cases; what was evaluated (run, checkpoint epoch, ensemble,
  reference, cases, patients). Classification adds ``positive_class`` (binary tasks: the class
  that sensitivity, specificity, PPV, NPV and AUROC are about, ``data.positive_class``, or the
  second class in sorted order when that is empty); segmentation adds ``nsd_tolerance_mm``
  (``eval.nsd_tolerance``) and ``empty_masks``: the convention for a case with exactly one empty
  mask and how many case-class pairs it touched (``hd95``/``assd`` leave them out,
  ``hd95_worst``/``assd_worst`` score them the image diagonal in mm).
- ``per_case.csv``: segmentation ``case_id``, then every metric of
  :data:`..metrics.segmentation.METRICS` (``dice, iou, hd95, assd, nsd, hd95_worst, ...``), every
  other metric of the registry (:mod:`..metrics.registry`) and the lesion counts ``lesion_tp,
  lesion_fn, lesion_fp`` (+ per class ``<metric>_<k>`` with several classes); classification
  ``case_id, label, prediction, prob_<class>...``; then ``patient_id``.
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
import re
import shutil
import sys
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..config import data_root
from ..data.io import nifti_header, read_image, read_label, write_nifti
from ..data.manifest import Case, DataError, label_names
from ..data.preprocess import same_grid
from ..metrics.bootstrap import bootstrap_ci, bootstrap_cis
from ..metrics.calibration import (
    N_BINS,
    calibration_target,
    choose_threshold,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
)
from ..metrics.classification import (
    classification_metrics,
    per_class_specificity,
    positive_class,
    positive_index,
    sensitivity,
)
from ..metrics.registry import Metric, classification_set, registered, segmentation_case
from ..metrics.segmentation import (
    DISTANCE_UNITS,
    LESION_COUNTS,
    METRICS,
    dice,
    lesion_detection,
    nanmean,
    segmentation_metrics,
    summarize_segmentation,
)
from ..utils.io import atomic_write_csv, atomic_write_text, replace_folder
from .inference import (
    CALIBRATION,
    LoadedRun,
    eval_dataset,
    load_runs,
    probabilities,
    split_cases,
    stored_temperature,
    to_source_grid,
)
from .test_use import record_test_use, splits_sha256

REPLICATES = 1000  # bootstrap replicates per interval
LEVEL = 0.95  # interval coverage
FIGURE_CASES = 3  # best, median, worst
DISAGREEMENT_CASES = 4  # cases shown where the annotators disagree most
CLASSIFICATION_SUMMARY = (
    "accuracy",
    "balanced_accuracy",
    "auroc",
    "sensitivity",
    "specificity",
    "ppv",
    "npv",
    "ece",
)
THRESHOLD_SUMMARY = ("sensitivity_at_threshold", "specificity_at_threshold")  # binary only
LESION_SUMMARY = ("lesion_sensitivity", "lesion_fp_per_case")
SPREAD_METRICS = ("dice", "iou", "nsd", "hd95", "assd")  # per-case spreads in metrics.png


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
            unknown reference, a ``data.positive_class`` that is not one of the classes; the
            message names the thing.
    """
    runs = load_runs(run_dir, ensemble, checkpoint)
    run = runs[0]
    positive = None
    if run.task == "classification":
        positive = positive_class(run.cfg.data.positive_class, run.classes or [])
        if not quiet and positive is not None and not run.cfg.data.positive_class:
            print(
                f"positive class: '{positive}' (data.positive_class is empty: the second of the "
                f"sorted classes {run.classes}; set data.positive_class to choose)"
            )
    cases = split_cases(run, split)
    validation = None
    if run.task == "classification":
        calibrate_runs(runs, quiet=quiet)
        if positive is not None and not (split == "val" and len(runs) == 1):
            validation = validation_outputs(runs, quiet=quiet)  # the threshold is chosen there
    splits_hash = splits_sha256(run.cfg.data.root)
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
            report = _classification(runs, dataset, bar, staging, originals, positive, validation)
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
                "data_root": str(run.cfg.data.root),
                "splits_sha256": splits_hash,
                "date": datetime.now().astimezone().isoformat(timespec="seconds"),
            }
        )
        ordered = {k: report[k] for k in sorted(report, key=_key_order)}
        atomic_write_text(staging / "metrics.json", json.dumps(ordered, indent=2) + "\n")
        replace_folder(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if split == "test":
        record_test_use(
            "evaluate",
            [r.run_dir for r in runs],
            str(run.cfg.data.root),
            {"checkpoint": checkpoint, "reference": reference, "folder": out.name},
            echo=lambda line: print(line, file=sys.stderr),
        )
    from .model_card import write_model_card  # the card reads every evaluation of the run

    write_model_card(run.run_dir)
    return out


def registered_extra(task: str) -> list[Metric]:
    """The registered metrics of ``task`` that the built-in evaluation does not already report
    (the registry's own built-ins are among its metrics, so they are never computed twice)."""
    builtin = METRICS if task == "segmentation" else CLASSIFICATION_SUMMARY
    return [m for m in registered(task) if m.name not in builtin]


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
    path = write_nifti(
        majority, masks[0].affine, folder / f"{case.case_id}.nii.gz", header=masks[0].meta
    )
    return replace(case, label=path)


# --- segmentation -----------------------------------------------------------------------------


def _segmentation(runs: list[LoadedRun], dataset, bar, out: Path, originals) -> dict[str, Any]:
    num_classes = runs[0].num_classes
    classes = tuple(range(1, num_classes))
    tolerance = float(runs[0].cfg.eval.nsd_tolerance)
    cfg = runs[0].cfg
    names = label_names(data_root(cfg), num_classes, cfg.data.labels) or [
        "background",
        *(f"class_{k}" for k in classes),
    ]
    extra = registered_extra("segmentation")
    computed = (*METRICS, *(m.name for m in extra))
    rows, results = [], []
    for index in bar:
        case = dataset.cases[index]
        item = dataset[index]
        meta = dataset.geometry(index)
        probs = probabilities(runs, item["image"][None])[0].cpu().numpy()
        if same_grid(meta):
            pred = probs.argmax(0)
            truth = item["label"].numpy()
            spacing = meta["spacing"]
        else:  # reoriented or resampled for the network: back onto the image's own grid
            pred = to_source_grid(probs, meta).argmax(0)
            image = read_image(case.image)
            truth = np.asarray(read_label(case.label, image).array)
            spacing = image.spacing
        pred = pred.astype(np.uint8 if num_classes <= 256 else np.int32)
        # the input's own qform/sform and codes (NIfTI), so ITK-based viewers overlay it exactly
        write_nifti(
            pred,
            np.asarray(meta["source_affine"]),
            out / "predictions" / f"{case.case_id}.nii.gz",
            header=nifti_header(case.image),
        )
        scores = segmentation_metrics(
            pred, truth, spacing, classes=classes, nsd_tolerance=tolerance
        )
        if extra:
            scores.update(segmentation_case(pred, truth, spacing, classes, extra))
        results.append(scores)
        per_case = (*computed, *LESION_COUNTS)
        row = {"case_id": case.case_id, **{m: scores[m] for m in per_case}}
        if len(classes) > 1:
            row.update({f"{m}_{c}": scores[f"{m}_{c}"] for c in classes for m in per_case})
        rows.append({**row, "patient_id": case.patient_id})
    details = summarize_segmentation(results, classes)
    for metric in extra:  # registered metrics: whole-set means as summarize_segmentation's
        for suffix in ("", *[f"_{c}" for c in classes]):
            details[metric.name + suffix] = nanmean([r[metric.name + suffix] for r in results])
    groups = [r["patient_id"] for r in rows]
    suffixes = [""] + ([f"_{c}" for c in classes] if len(classes) > 1 else [])
    summary = {}
    for suffix in suffixes:
        for metric in computed:
            name = metric + suffix
            values = np.array([r[name] for r in rows], dtype=float)
            summary[name] = _interval(values, groups, details[name])
        counts = tuple(np.array([r[m + suffix] for r in rows], dtype=float) for m in LESION_COUNTS)
        intervals = bootstrap_cis(
            counts, lesion_detection, groups=groups, n=REPLICATES, seed=0, level=LEVEL
        )
        for metric in LESION_SUMMARY:
            low, high = intervals[metric]
            summary[metric + suffix] = {"value": details[metric + suffix], "low": low, "high": high}
    order = sorted(range(len(rows)), key=lambda i: (_nan_low(rows[i]["dice"]), rows[i]["case_id"]))
    failures = [
        {"case_id": rows[i]["case_id"], "dice": rows[i]["dice"]} for i in order[:FIGURE_CASES]
    ]
    _write_csv(out / "per_case.csv", rows)
    _segmentation_figures(runs[0], dataset, rows, order, out, tolerance, names, extra)
    _disagreement_figure(originals, out, task="segmentation")
    one_empty = int(details["one_empty"])
    return {
        "n_cases": len(rows),
        "summary": summary,
        "definitions": segmentation_definitions(list(summary), details, tolerance, names),
        "class_names": {str(k): name for k, name in enumerate(names)},
        "nsd_tolerance_mm": tolerance,
        "empty_masks": {
            "both_empty": int(details["both_empty"]),
            "pred_empty": int(details["pred_empty"]),
            "truth_empty": int(details["truth_empty"]),
            "one_empty": one_empty,
            "unit": "case-class pairs",
            "convention": (
                "both masks empty: Dice = IoU = NSD = 1, distances 0. Exactly one empty: "
                "Dice = IoU = NSD = 0; hd95 and assd are NaN and left out of their means "
                f"({one_empty} case-class pairs); hd95_worst and assd_worst give them the "
                "diagonal of the image's field of view in mm (the BraTS convention)"
            ),
        },
        "details": details,
        "failures": failures,
    }


def segmentation_definitions(
    names: Sequence[str],
    details: dict[str, float],
    tolerance: float,
    class_names: Sequence[str] = (),
) -> dict[str, str]:
    """What each segmentation summary value means: its convention, tolerance and case counts.

    Args:
        names: the summary's metric names, e.g. ``dice``, ``hd95_worst``, ``nsd_2``.
        details: :func:`..metrics.segmentation.summarize_segmentation`'s result.
        tolerance: the NSD tolerance in mm.
        class_names: a name per label value (background first), to name the class of the
            ``_<k>`` values; none: the label value alone.

    Returns:
        ``{name: sentence}`` for every name.
    """
    texts = {
        "dice": "Dice overlap 2|P and T| / (|P| + |T|); both masks empty: 1, exactly one empty: 0",
        "iou": "intersection over union |P and T| / |P or T|; both masks empty: 1, exactly one "
        "empty: 0",
        "nsd": f"normalized surface Dice at a tolerance of {tolerance:g} mm: share of both "
        f"surfaces within {tolerance:g} mm of the other; both masks empty: 1, exactly one: 0",
        "hd95": "95th-percentile Hausdorff distance in mm (larger directed 95th percentile); "
        "cases with exactly one empty mask are NaN and left out of this mean "
        "({one} case-class pairs, see {name}_worst); both empty: 0",
        "assd": "average symmetric surface distance in mm; cases with exactly one empty mask "
        "are NaN and left out of this mean ({one} case-class pairs, see {name}_worst); "
        "both empty: 0",
        "hd95_worst": "95th-percentile Hausdorff distance in mm, with each case where exactly "
        "one mask is empty ({one} case-class pairs) scored the image diagonal in mm (BraTS "
        "convention); both empty: 0",
        "assd_worst": "average symmetric surface distance in mm, with each case where exactly "
        "one mask is empty ({one} case-class pairs) scored the image diagonal in mm; both "
        "empty: 0",
        "voxel_sensitivity": "share of the reference's voxels predicted, |P and T| / |T|; cases with "
        "an empty reference are undefined and left out ({truth_empty} case-class pairs)",
        "voxel_specificity": "share of the reference's background voxels not predicted; "
        "dominated by the background, near 1 for almost any prediction",
        "lesion_sensitivity": "lesion-wise detection: reference lesions (connected components, "
        "touching by face, edge or corner) that the prediction overlaps, over all reference "
        "lesions, pooled over cases ({tp} of {lesions})",
        "lesion_fp_per_case": "lesion-wise false positives: predicted connected components "
        "that touch no reference lesion, per case ({fp} in {n} cases)",
    }
    for metric in registered_extra("segmentation"):  # braces are literal in a definition
        texts[metric.name] = metric.definition.replace("{", "{" * 2).replace("}", "}" * 2)
    several = any(re.search(r"_\d+$", name) for name in names)  # per-class names: "dice_2"
    result = {}
    for name in names:
        metric, suffix = name, ""
        for candidate in texts:
            if name.startswith(candidate + "_") and name[len(candidate) + 1 :].isdigit():
                metric, suffix = candidate, name[len(candidate) :]
        counts = {
            "name": metric,
            "one": int(
                details.get(f"pred_empty{suffix}", 0) + details.get(f"truth_empty{suffix}", 0)
            ),
            "truth_empty": int(details.get(f"truth_empty{suffix}", 0)),
            "tp": int(details.get(f"lesion_tp{suffix}", 0)),
            "lesions": int(
                details.get(f"lesion_tp{suffix}", 0) + details.get(f"lesion_fn{suffix}", 0)
            ),
            "fp": int(details.get(f"lesion_fp{suffix}", 0)),
            "n": int(details.get("n_cases", 0)),
        }
        text = texts[metric].format(**counts)
        if suffix:
            k = int(suffix[1:])
            named = f": {class_names[k]}" if k < len(class_names) else ""
            text += f" (class {k}{named})"
        elif several:
            pooled = metric in LESION_SUMMARY
            text += " (all classes)" if pooled else " (per case the mean over the classes)"
        result[name] = text
    return result


def _nan_low(value: float) -> float:
    return -math.inf if math.isnan(value) else value


def _interval(values: np.ndarray, groups: list[str], value: float) -> dict[str, float]:
    low, high = bootstrap_ci(values, groups=groups, n=REPLICATES, seed=0, level=LEVEL)
    return {"value": float(value), "low": low, "high": high}


def _segmentation_figures(
    run: LoadedRun,
    dataset,
    rows,
    order,
    out: Path,
    tolerance: float,
    names: Sequence[str],
    extra: Sequence[Metric] = (),
) -> None:
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
    spread = {m: [r[m] for r in rows] for m in (*SPREAD_METRICS, *(x.name for x in extra))}
    if len(names) > 2:  # several classes: each one's Dice, by name
        for k in range(1, len(names)):
            spread[f"dice {names[k]}"] = [r[f"dice_{k}"] for r in rows]
    plot_metric_spread(
        spread,
        out / "metrics.png",
        f"per-case metrics ({len(rows)} cases; hd95 and assd leave out cases with one empty mask)",
        {
            **DISTANCE_UNITS,
            "nsd": f"tolerance {tolerance:g} mm",
            **{x.name: x.unit for x in extra if x.unit},
        },
    )


def _disagreement_figure(
    originals: Sequence[Case], out: Path, task: str, predicted: dict | None = None
) -> None:
    """The cases where the annotators disagree most, beside the model's answer."""
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


def validation_outputs(
    runs: Sequence[LoadedRun], quiet: bool = True
) -> tuple[np.ndarray, np.ndarray, str]:
    """Out-of-fold validation probabilities: each run applied to its own fold's validation cases.

    For one run these are its validation cases; for an ensemble (e.g. one run per fold) each
    member's validation cases, which it did not train on, pooled, so that a threshold chosen on
    them never sees the test set nor a member's training cases. (The threshold is then applied
    to the ensemble's averaged probabilities, a little less spread out than one member's.)

    Args:
        runs: one run or an ensemble's members (each with its calibration temperature).
        quiet: no progress bar.

    Returns:
        ``labels`` ``(N,)``, ``probabilities`` ``(N, K)`` and a description of the cases.
    """
    labels, probs, described = [], [], []
    for run in runs:
        cases = split_cases(run, "val")
        dataset = eval_dataset(run, cases)
        bar = tqdm(range(len(dataset)), desc="validation", disable=quiet, leave=False)
        for index in bar:
            item = dataset[index]
            labels.append(int(item["label"]))
            probs.append(probabilities([run], item["image"][None])[0].cpu().numpy())
        described.append(_fold_cases(run, len(cases)))
    what = "validation cases of " + "; ".join(described)
    return np.asarray(labels), np.stack(probs).astype(np.float64), what


def _fold_cases(run: LoadedRun, n_cases: int) -> str:
    return f"fold {run.cfg.data.fold} of {run.run_dir.name} ({n_cases} cases)"


def calibrate_runs(runs: Sequence[LoadedRun], quiet: bool = True) -> None:
    """Fit each run's temperature on its validation cases when ``eval.calibrate=temperature``.

    A run whose ``calibration.json`` already holds a temperature for its checkpoint keeps it;
    otherwise it is fitted (:func:`.calibration.fit_temperature`), stored in ``calibration.json``
    beside the other checkpoint's, and set on the run, so that ``predict`` uses the same one.

    Args:
        runs: classification runs; those with ``eval.calibrate=none`` are left as they are.
        quiet: no progress bar or message.
    """
    for run in runs:
        if run.task != "classification" or run.cfg.eval.calibrate != "temperature":
            continue
        stored = stored_temperature(run)
        if stored is not None:
            run.temperature = stored
            continue
        run.temperature = 1.0
        labels, probs, what = validation_outputs([run], quiet=quiet)
        fitted = fit_temperature(labels, probs)
        path = run.run_dir / CALIBRATION
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        data = data if isinstance(data, dict) else {}
        data[run.checkpoint.stem] = {
            **fitted,
            "epoch": run.epoch,
            "fitted_on": what,
            "method": "temperature scaling: softmax(logits / T), T minimizing the validation "
            "negative log-likelihood",
        }
        atomic_write_text(path, json.dumps(data, indent=2) + "\n")
        run.temperature = fitted["temperature"]
        if not quiet:
            print(
                f"temperature scaling: T = {fitted['temperature']:.3f} fitted on {what} "
                f"(NLL {fitted['nll_before']:.4f} -> {fitted['nll_after']:.4f}); wrote {path}"
            )


def _threshold_metrics(
    truth: np.ndarray, scores: np.ndarray, positive: int, threshold: float
) -> dict[str, float]:
    """Sensitivity and specificity of the positive class when it is predicted at ``p >= t``."""
    called = (scores[:, positive] >= threshold).astype(np.int64)
    predicted = np.where(called == 1, positive, 1 - positive)
    matrix = np.bincount(truth * 2 + predicted, minlength=4).reshape(2, 2)
    return {
        "sensitivity_at_threshold": sensitivity(truth, predicted, 2, positive),
        "specificity_at_threshold": float(per_class_specificity(matrix)[positive]),
    }


def _classification(
    runs: list[LoadedRun],
    dataset,
    bar,
    out: Path,
    originals,
    positive: str | None,
    validation: tuple[np.ndarray, np.ndarray, str] | None = None,
) -> dict[str, Any]:
    """Evaluate a classification run on ``dataset``: per-case rows, whole-set metrics with
    bootstrap intervals over patients, the threshold chosen on validation, the figures."""
    names = runs[0].classes or []
    truth, scores, rows, predicted = _classification_cases(runs, dataset, bar, names)
    index = positive_index(names, positive) if positive is not None else None
    extra = registered_extra("classification")
    cfg = runs[0].cfg
    threshold = None
    if index is not None:
        chosen_on = (
            validation
            if validation is not None
            else (truth, scores, "validation cases of " + _fold_cases(runs[0], len(rows)))
        )
        threshold = _choose(chosen_on, index, float(cfg.eval.target_sensitivity))
    cut = threshold["value"] if threshold is not None else None

    def statistics(t: np.ndarray, s: np.ndarray) -> dict[str, Any]:
        """Every whole-set metric of outcomes ``t`` and scores ``s``."""
        values = classification_metrics(t, s, names, positive)
        values["ece"] = expected_calibration_error(*calibration_target(t, s, index))
        # Registered metrics see the positive class's index (class 1 when none is set).
        values.update(classification_set(t, s, 1 if index is None else index, extra))
        if cut is not None:
            values.update(_threshold_metrics(t, s, index, cut))
        return values

    details = statistics(truth, scores)
    summarized = [
        *CLASSIFICATION_SUMMARY,
        *(m.name for m in extra),
        *(THRESHOLD_SUMMARY if "sensitivity_at_threshold" in details else ()),
    ]
    intervals = bootstrap_cis(
        (truth, scores),
        lambda t, s: {k: float(v) for k, v in statistics(t, s).items() if k in summarized},
        groups=[r["patient_id"] for r in rows],
        n=REPLICATES,
        seed=0,
        level=LEVEL,
    )
    summary = {
        name: {"value": float(details[name]), "low": intervals[name][0], "high": intervals[name][1]}
        for name in summarized
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
    what = f"probability of '{positive}'" if positive is not None else "top-class confidence"
    bins = reliability_bins(*calibration_target(truth, scores, index))
    _classification_figures(runs, dataset, out, names, positive, details, truth, scores, bins)
    _mistakes_figure(dataset, rows, scores, wrong, out)
    _disagreement_figure(originals, out, task="classification", predicted=predicted)
    return {
        "n_cases": len(rows),
        "positive_class": positive,
        "summary": summary,
        "definitions": _classification_definitions(names, positive, extra, threshold),
        "threshold": threshold,
        "calibration": {
            "ece": details["ece"],
            "bins": N_BINS,
            "of": what,
            "temperature": [r.temperature for r in runs]
            if cfg.eval.calibrate == "temperature"
            else None,
            "reliability": {k: [float(x) for x in v] for k, v in bins.items()},
        },
        "details": details,
        "failures": failures,
    }


def _classification_cases(
    runs: list[LoadedRun], dataset, bar, names: list[str]
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]], dict[str, str]]:
    """Run the network(s) on every case of ``bar``: outcomes ``(N,)``, probabilities
    ``(N, K)``, the ``per_case.csv`` rows and a ``case_id -> "class (p)"`` map for the figures."""
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
    return np.asarray(labels), np.stack(probs), rows, predicted


def _classification_figures(
    runs: list[LoadedRun],
    dataset,
    out: Path,
    names: list[str],
    positive: str | None,
    details: dict[str, Any],
    truth: np.ndarray,
    scores: np.ndarray,
    bins: dict[str, np.ndarray],
) -> None:
    """The confusion matrix, the ROC curves and the reliability diagram."""
    from ..viz.evaluation_plots import plot_confusion_matrix, plot_roc
    from ..viz.statistics_plots import plot_reliability

    title = runs[0].run_dir.name
    plot_confusion_matrix(details["confusion_matrix"], names, out / "confusion_matrix.png", title)
    aurocs = {n: float(details[f"auroc_{n}"]) for n in names}
    plot_roc(truth, scores, names, aurocs, out / "roc.png", title, positive=positive)
    what = f"probability of '{positive}'" if positive is not None else "top-class confidence"
    plot_reliability(
        bins, out / "reliability.png", f"{title}: reliability", f"predicted {what}", details["ece"]
    )


def _mistakes_figure(
    dataset, rows: list[dict[str, Any]], scores: np.ndarray, wrong: list[int], out: Path
) -> None:
    """``failures.png``: the most confident mistakes, with their true and predicted class."""
    if not wrong:
        return
    from ..viz.evaluation_plots import plot_image_grid

    items = [
        {
            "image": read_image(dataset.cases[i].image).array,
            "caption": f"{rows[i]['case_id']}\ntrue {rows[i]['label']}, "
            f"predicted {rows[i]['prediction']} ({scores[i].max():.2f})",
        }
        for i in wrong[: 2 * FIGURE_CASES]
    ]
    plot_image_grid(items, out / "failures.png", "most confident mistakes")


def _classification_definitions(
    names: list[str], positive: str | None, extra, threshold: dict[str, Any] | None
) -> dict[str, str]:
    """What each number of ``metrics.json`` means, the registered metrics' and the
    threshold's included."""
    definitions = classification_definitions(names, positive)
    definitions.update({m.name: m.definition for m in extra})
    if threshold is not None and threshold["value"] is not None:
        shown = f"{threshold['value']:.4g}"
        definitions["sensitivity_at_threshold"] = (
            f"sensitivity of '{positive}' when it is predicted at p('{positive}') >= {shown}, "
            f"the threshold chosen on the {threshold['chosen_on']}"
        )
        definitions["specificity_at_threshold"] = (
            f"specificity for '{positive}' at the same threshold p('{positive}') >= {shown}"
        )
    return definitions


def _choose(
    validation: tuple[np.ndarray, np.ndarray, str], positive: int, target: float
) -> dict[str, Any]:
    """The threshold chosen on the validation outputs, with what it was chosen on."""
    labels, probs, what = validation
    entry: dict[str, Any] = {"chosen_on": what, "target_sensitivity": target}
    try:
        chosen = choose_threshold(labels == positive, probs[:, positive], target)
    except ValueError as exc:  # one class only among the validation cases
        return {**entry, "value": None, "rule": None, "why_none": str(exc)}
    return {
        **entry,
        "value": chosen["threshold"],
        "rule": chosen["rule"],
        "validation_sensitivity": chosen["sensitivity"],
        "validation_specificity": chosen["specificity"],
    }


def classification_definitions(class_names: Sequence[str], positive: str | None) -> dict[str, str]:
    """What each classification summary value means, naming the positive class.

    Args:
        class_names: the classes, in class-index order.
        positive: the binary task's positive class (:func:`positive_class`), ``None`` for more
            than two classes.

    Returns:
        ``{name: sentence}`` for every name of :data:`CLASSIFICATION_SUMMARY`.
    """
    result = {
        "accuracy": "share of cases whose most probable class is the true class",
        "balanced_accuracy": "mean over the classes present of each class's recall",
        "ece": f"expected calibration error over {N_BINS} equal-width bins: case-weighted mean "
        "|observed frequency - mean predicted probability| of "
        + (
            f"the probability of '{positive}' (0 = perfectly calibrated)"
            if positive is not None
            else "the top-class confidence against how often the top class is right"
        ),
    }
    if positive is None:
        macro = f"macro mean over the classes {list(class_names)} of the one-vs-rest "
        result.update(
            {
                "auroc": macro + "AUROC",
                "sensitivity": macro + "sensitivity TP/(TP+FN)",
                "specificity": macro + "specificity TN/(TN+FP)",
                "ppv": macro + "positive predictive value TP/(TP+FP)",
                "npv": macro + "negative predictive value TN/(TN+FN)",
            }
        )
        return result
    other = next(str(n) for n in class_names if str(n) != positive)
    pos = f"positive class '{positive}'"
    result.update(
        {
            "auroc": f"AUROC of the probability of the {pos} against '{other}'",
            "sensitivity": f"sensitivity of the {pos}: '{positive}' cases predicted "
            f"'{positive}' / all '{positive}' cases",
            "specificity": f"specificity for the {pos}: '{other}' cases predicted '{other}' "
            f"/ all '{other}' cases",
            "ppv": f"positive predictive value of the {pos}: cases predicted '{positive}' "
            f"that are '{positive}' / all predicted '{positive}'",
            "npv": f"negative predictive value for the {pos}: cases predicted '{other}' that "
            f"are '{other}' / all predicted '{other}'",
        }
    )
    return result


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    shown = [{k: f"{v:.6g}" if isinstance(v, float) else v for k, v in r.items()} for r in rows]
    atomic_write_csv(path, shown, list(rows[0]))
