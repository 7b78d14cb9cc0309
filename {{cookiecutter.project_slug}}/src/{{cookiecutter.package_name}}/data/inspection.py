"""Look at a dataset before modelling it: the ``inspect`` command.

:func:`inspect_dataset` reads every case of ``manifest.csv`` once (its image, mask and other
annotators' masks) and writes a dated report folder ``<out_dir>/<YYYY-MM-DD>/``:

- ``report.json``: counts (cases, patients, studies per patient), the class distribution
  (classification) or the mask size per class in voxels and mL with the empty masks
  (segmentation), shapes, spacings, intensity statistics as stored (e.g. Hounsfield units), exact
  and near duplicates by group, agreement between annotators with the largest disagreements,
  patients per split when ``splits.json`` exists, a count of DICOM headers that carry patient
  identity (never the values), warnings, and a ``cases`` list of
  ``{case_id, shape, spacing, intensity: {min, max, mean, std}, ...}``;
- ``report.md``: the same for a person, with the plots inline;
- PNG plots (:mod:`..viz.data_plots`) and ``montages/<case_id>.png``, a few slices of each case
  with its label outlined, to look through the data by eye.

A second run on the same day replaces that day's folder as a whole (built beside it, then
swapped in); other days' reports are never touched. :func:`view_case` opens one case in ITK-SNAP
when it is installed, and otherwise points at its montage.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import shutil
import subprocess
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import paths
from ..utils.io import atomic_write_text, replace_folder
from ..viz import data_plots
from .duplicates import Fingerprint, exact_duplicates, fingerprint, near_duplicates
from .io import Image, file_format, read_image, read_label, source_path
from .manifest import SPLITS, Case, DataError, read_manifest

log = logging.getLogger(__name__)

TASKS = ("segmentation", "classification")
NEAR_THRESHOLD = 0.98  # thumbnail correlation above which two cases are near duplicates
SAMPLE_VOXELS = 20_000  # voxels per case kept for the intensity histogram
LARGEST_DISAGREEMENTS = 10
ANISOTROPY = 2.0  # a case whose largest spacing exceeds this times its smallest is anisotropic
PRIMARY = "label"  # the name of the manifest's own label column among the annotators
IDENTITY_TAGS = (
    "PatientName",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientBirthDate",
    "PatientBirthTime",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "OtherPatientIDs",
    "MedicalRecordLocator",
)
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}_")  # report folders: <YYYY-MM-DD>_<dataset>


def report_folder(out_dir: Path, root: Path, day: dt.date) -> Path:
    """``<out_dir>/<YYYY-MM-DD>_<dataset>``: one report folder per dataset and date.

    ``<dataset>`` is the dataset folder's name; a second dataset of the same name inspected on
    the same day gets ``<name>-2`` (and so on), so one never replaces the other's report.
    """
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(root).resolve().name).strip("-") or "dataset"
    base, k = f"{day.isoformat()}_{name}", 1
    while True:
        folder = Path(out_dir) / (base if k == 1 else f"{base}-{k}")
        try:
            recorded = json.loads((folder / "report.json").read_text(encoding="utf-8"))["root"]
        except (OSError, ValueError, KeyError, TypeError):
            recorded = None
        if not folder.exists() or recorded is None or recorded == str(Path(root).resolve()):
            return folder
        k += 1


# --- per case ------------------------------------------------------------------------------


@dataclass
class CaseResult:
    """What one pass over a case yields.

    Only small things are kept (no image or mask arrays), so a large dataset fits in memory.

    Attributes:
        record: the case's entry in ``report.json`` ``cases``.
        fingerprint: its duplicate fingerprint (voxel hash and thumbnail).
        sample: every k-th voxel value (about :data:`SAMPLE_VOXELS`), for the histograms.
        voxels: number of voxels, for pooled intensity statistics.
        agreement: ``(annotator, annotator) -> score`` for each pair that rated the case
            (Dice for masks, 1 or 0 for class names); empty with one annotator.
        labels: annotator -> class name (classification only).
    """

    record: dict[str, Any]
    fingerprint: Fingerprint
    sample: np.ndarray
    voxels: int
    agreement: dict[tuple[str, str], float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


def intensity_stats(array: np.ndarray) -> dict[str, float]:
    """``{min, max, mean, std}`` of the voxels, accumulated in float64.

    NaN and infinite voxels (a float image's masked-out background, say) are left out of the
    four statistics and counted under ``non_finite`` (present only when there are any).

    Args:
        array: a non-empty array of numbers with at least one finite value.

    Returns:
        The statistics as Python floats (``std`` is the population standard deviation).
    """
    array = np.asarray(array)
    if array.size == 0:
        raise ValueError("cannot compute intensity statistics of an empty array")
    finite = array
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        finite = array[np.isfinite(array)]
        if finite.size == 0:
            raise ValueError("the array has no finite value")
    stats = {
        "min": float(finite.min()),
        "max": float(finite.max()),
        "mean": float(finite.mean(dtype=np.float64)),
        "std": float(finite.std(dtype=np.float64)),
    }
    if finite.size != array.size:
        stats["non_finite"] = int(array.size - finite.size)
    return stats


def _label_key(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def mask_sizes(mask: np.ndarray, spacing: Sequence[float]) -> dict[str, dict[str, float]]:
    """Size of every label value > 0 of a mask, in voxels and in physical units.

    Args:
        mask: ``(X, Y)`` or ``(X, Y, Z)`` label values (0 is background).
        spacing: voxel size in mm per axis.

    Returns:
        ``{"1": {"voxels": n, "ml": v}, ...}`` for a volume (mL = voxels x voxel volume in mm3
        / 1000), ``{"1": {"voxels": n, "mm2": a}, ...}`` for a 2D image; empty when the mask has
        no foreground.
    """
    mask = np.asarray(mask)
    if len(spacing) != mask.ndim:
        raise ValueError(f"spacing needs {mask.ndim} values for a mask of shape {mask.shape}")
    values, counts = np.unique(mask, return_counts=True)
    voxel = float(np.prod(spacing))
    unit, scale = ("ml", voxel / 1000.0) if mask.ndim == 3 else ("mm2", voxel)
    return {
        _label_key(v): {"voxels": int(n), unit: float(n) * scale}
        for v, n in zip(values.tolist(), counts.tolist(), strict=True)
        if v > 0
    }


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two label masks, averaged over the label values > 0 in either.

    Args:
        a, b: masks of one shape.

    Returns:
        A value in ``[0, 1]``; 1 when both are empty (they agree that nothing is there).
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"masks of different shapes {a.shape} and {b.shape}")
    labels = sorted(set(np.unique(a).tolist()) | set(np.unique(b).tolist()))
    scores = []
    for value in (v for v in labels if v > 0):
        x, y = a == value, b == value
        scores.append(2.0 * np.count_nonzero(x & y) / (np.count_nonzero(x) + np.count_nonzero(y)))
    return float(np.mean(scores)) if scores else 1.0


def _sample(array: np.ndarray) -> np.ndarray:
    """Every k-th voxel (about :data:`SAMPLE_VOXELS` of them), finite values only."""
    flat = array.ravel()
    sample = flat[:: max(1, flat.size // SAMPLE_VOXELS)].astype(np.float32)
    return sample[np.isfinite(sample)]


def _montage_name(case_id: str) -> str:
    """A file name for ``case_id`` safe on every system (a short hash keeps altered ids apart)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", case_id).strip(".") or "case"
    if safe != case_id:
        safe += "-" + hashlib.sha1(case_id.encode("utf-8")).hexdigest()[:8]
    return f"{safe}.png"


def _montage(case: Case, image: Image, task: str, ratings: Mapping[str, Any], path: Path) -> Path:
    title = f"{case.case_id}  (patient {case.patient_id})"
    if task == "classification":
        title += f"  class: {case.label}"
        note = ", ".join(f"{r} says {v}" for r, v in ratings.items() if r != PRIMARY)
        return data_plots.plot_montage(
            image.array, path, spacing=image.spacing, title=title, note=note
        )
    others = {r: m for r, m in ratings.items() if r != PRIMARY}
    return data_plots.plot_montage(
        image.array,
        path,
        mask=ratings[PRIMARY],
        others=others or None,
        spacing=image.spacing,
        title=title,
    )


def inspect_case(case: Case, task: str, montage: Path | None = None) -> CaseResult:
    """Read one case (image once, masks once) and measure it.

    Args:
        case: a manifest row.
        task: ``segmentation`` or ``classification``.
        montage: where to draw its montage (``None``: none drawn).

    Returns:
        The :class:`CaseResult`.

    Raises:
        ImageError: the image or a mask cannot be read, or a mask does not fit its image.
    """
    image = read_image(case.image)
    if np.issubdtype(image.array.dtype, np.floating) and not np.isfinite(image.array).any():
        raise DataError(f"case '{case.case_id}': image '{case.image}' holds no finite value")
    record: dict[str, Any] = {
        "case_id": case.case_id,
        "patient_id": case.patient_id,
        "shape": list(image.shape),
        "spacing": [round(s, 6) for s in image.spacing],
        "intensity": intensity_stats(image.array),
        "dtype": str(image.array.dtype),
    }
    ratings: dict[str, Any] = {}
    if task == "classification":
        record["label"] = str(case.label)
        ratings = {PRIMARY: str(case.label), **{r: str(v) for r, v in case.raters.items()}}
    else:
        ratings[PRIMARY] = read_label(case.label, image).array
        for rater, path in case.raters.items():
            ratings[rater] = read_label(path, image).array
        sizes = mask_sizes(ratings[PRIMARY], record["spacing"])
        record["mask"] = sizes
        record["empty_mask"] = not sizes
    if montage is not None:
        _montage(case, image, task, ratings, montage)
        record["montage"] = f"montages/{montage.name}"
    return CaseResult(
        record,
        fingerprint(case.case_id, image),
        _sample(image.array),
        int(image.array.size),
        pair_agreement(ratings),
        dict(ratings) if task == "classification" else {},
    )


def pair_agreement(ratings: Mapping[str, Any]) -> dict[tuple[str, str], float]:
    """Agreement of every pair of annotators on one case.

    Args:
        ratings: annotator -> class name, or annotator -> mask array (all of one shape); the
            manifest's own ``label`` comes first in each pair, the others in name order.

    Returns:
        ``{(a, b): score}``: :func:`dice` of masks, or 1.0/0.0 for equal/different class names.
    """
    names = [n for n in ratings if n == PRIMARY] + sorted(n for n in ratings if n != PRIMARY)
    scores = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            x, y = ratings[a], ratings[b]
            scores[(a, b)] = float(x == y) if isinstance(x, str) else dice(x, y)
    return scores


# --- summaries -----------------------------------------------------------------------------


def _spread(values: Iterable[float]) -> dict[str, float]:
    v = np.asarray(list(values), dtype=np.float64)
    return {
        "min": float(v.min()),
        "median": float(np.median(v)),
        "mean": float(v.mean()),
        "max": float(v.max()),
    }


def count_summary(cases: Sequence[Case]) -> dict[str, Any]:
    """Cases, patients, and how many patients have 1, 2, ... studies (cases)."""
    per_patient = Counter(c.patient_id for c in cases)
    studies = Counter(per_patient.values())
    return {
        "cases": len(cases),
        "patients": len(per_patient),
        "studies_per_patient": {str(k): studies[k] for k in sorted(studies)},
        "patients_with_several_studies": sum(n for k, n in studies.items() if k > 1),
        "max_studies_per_patient": max(per_patient.values()),
    }


def class_summary(cases: Sequence[Case]) -> dict[str, Any]:
    """Cases and patients per class; the ratio of the largest class to the smallest."""
    counts = Counter(str(c.label) for c in cases)
    patients: dict[str, set[str]] = defaultdict(set)
    for c in cases:
        patients[str(c.label)].add(c.patient_id)
    names = sorted(counts)
    return {
        "counts": {n: counts[n] for n in names},
        "patients": {n: len(patients[n]) for n in names},
        "imbalance": max(counts.values()) / min(counts.values()),
    }


def mask_summary(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per label value: cases where present and size spread; the cases with an empty mask."""
    per_class: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        for value, size in record["mask"].items():
            for unit, amount in size.items():
                per_class[value][unit].append(amount)
    classes = {}
    for value in sorted(per_class, key=lambda v: float(v)):
        sizes = per_class[value]
        classes[value] = {"cases": len(sizes["voxels"])}
        classes[value].update({unit: _spread(amounts) for unit, amounts in sizes.items()})
    empty = [r["case_id"] for r in records if r["empty_mask"]]
    return {"classes": classes, "empty_cases": len(empty), "empty_case_ids": empty}


def geometry_summary(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Dimensions, the most common shapes and spacings, spacing range per axis, anisotropy."""
    shapes = Counter(tuple(r["shape"]) for r in records)
    spacings = Counter(tuple(r["spacing"]) for r in records)
    dims = Counter(len(r["shape"]) for r in records)
    ndim = max(dims)
    same = [r for r in records if len(r["shape"]) == ndim]
    axes = {
        "min": [min(r["spacing"][a] for r in same) for a in range(ndim)],
        "median": [float(np.median([r["spacing"][a] for r in same])) for a in range(ndim)],
        "max": [max(r["spacing"][a] for r in same) for a in range(ndim)],
    }
    anisotropic = [
        r["case_id"] for r in records if max(r["spacing"]) > ANISOTROPY * min(r["spacing"])
    ]
    return {
        "dimensions": {str(k): dims[k] for k in sorted(dims)},
        "shapes": [{"shape": list(s), "cases": n} for s, n in shapes.most_common(20)],
        "distinct_shapes": len(shapes),
        "size": {
            "min": [min(r["shape"][a] for r in same) for a in range(ndim)],
            "max": [max(r["shape"][a] for r in same) for a in range(ndim)],
        },
        "spacings": [{"spacing": list(s), "cases": n} for s, n in spacings.most_common(20)],
        "distinct_spacings": len(spacings),
        "spacing": axes,
        "anisotropic_cases": len(anisotropic),
    }


def pooled_intensity(results: Sequence[CaseResult]) -> dict[str, float]:
    """``{min, max, mean, std, voxels}`` over every voxel of every case (exact, from the
    per-case mean and std)."""
    n = np.array([r.voxels for r in results], dtype=np.float64)
    mean = np.array([r.record["intensity"]["mean"] for r in results])
    std = np.array([r.record["intensity"]["std"] for r in results])
    total = n.sum()
    pooled_mean = float((n * mean).sum() / total)
    second = float((n * (std**2 + mean**2)).sum() / total)
    return {
        "min": min(r.record["intensity"]["min"] for r in results),
        "max": max(r.record["intensity"]["max"] for r in results),
        "mean": pooled_mean,
        "std": float(np.sqrt(max(second - pooled_mean**2, 0.0))),
        "voxels": int(total),
    }


def duplicate_summary(
    prints: Sequence[Fingerprint], cases: Sequence[Case], threshold: float
) -> dict[str, Any]:
    """Exact and near duplicate groups, and which of them span more than one patient."""
    patient = {c.case_id: c.patient_id for c in cases}
    exact = exact_duplicates(prints)
    near = near_duplicates(prints, threshold)
    across = [g for g in exact + near if len({patient[c] for c in g}) > 1]
    return {
        "exact": exact,
        "near": near,
        "near_threshold": threshold,
        "groups_across_patients": across,
        "cases_to_remove": sum(len(g) - 1 for g in _merge_groups(exact + near)),
    }


def _merge_groups(groups: Sequence[Sequence[str]]) -> list[set[str]]:
    """Groups that share a case joined into one (a case can be in an exact and a near group)."""
    merged: list[set[str]] = []
    for group in groups:
        joined = set(group)
        for other in [m for m in merged if m & joined]:
            joined |= other
            merged.remove(other)
        merged.append(joined)
    return merged


def annotator_summary(results: Sequence[CaseResult], task: str) -> dict[str, Any] | None:
    """Agreement between annotators, per pair and per case, or ``None`` with one annotator.

    Segmentation compares masks with :func:`dice`; classification counts equal labels (and
    Cohen's kappa per pair). A case's agreement is its lowest pair; the cases with the lowest
    agreement are listed first under ``largest_disagreements``.
    """
    rated = [r for r in results if r.agreement]
    if not rated:
        return None
    pair_scores: dict[tuple[str, str], list[float]] = defaultdict(list)
    pair_labels: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for r in rated:
        for (a, b), score in r.agreement.items():
            pair_scores[(a, b)].append(score)
            if task == "classification":
                pair_labels[(a, b)].append((r.labels[a], r.labels[b]))
    pairs = []
    for (a, b), scores in pair_scores.items():
        entry: dict[str, Any] = {"a": a, "b": b, "cases": len(scores)}
        entry.update(mean=float(np.mean(scores)), min=float(np.min(scores)))
        if task == "classification":
            entry["kappa"] = cohen_kappa(pair_labels[(a, b)])
        pairs.append(entry)
    per_case = {r.record["case_id"]: min(r.agreement.values()) for r in rated}
    worst = sorted((r for r in rated if min(r.agreement.values()) < 1), key=_disagreement)
    largest = []
    for r in worst[:LARGEST_DISAGREEMENTS]:
        item: dict[str, Any] = {
            "case_id": r.record["case_id"],
            "agreement": min(r.agreement.values()),
        }
        item["pairs"] = {f"{a} vs {b}": score for (a, b), score in r.agreement.items()}
        if task == "classification":
            item["labels"] = dict(r.labels)
        largest.append(item)
    return {
        "metric": "agreement" if task == "classification" else "dice",
        "raters": sorted({name for r in rated for pair in r.agreement for name in pair}),
        "cases_rated": len(rated),
        "cases_disagreeing": len(worst),
        "pairs": pairs,
        "per_case": per_case,
        "largest_disagreements": largest,
    }


def _disagreement(result: CaseResult) -> tuple[float, str]:
    return min(result.agreement.values()), result.record["case_id"]


def cohen_kappa(labels: Sequence[tuple[str, str]]) -> float | None:
    """Cohen's kappa of two annotators' class labels (``None`` when chance agreement is 1)."""
    if not labels:
        raise ValueError("kappa needs at least one pair of labels")
    observed = float(np.mean([a == b for a, b in labels]))
    first = Counter(a for a, _ in labels)
    second = Counter(b for _, b in labels)
    n = len(labels)
    expected = sum(first[k] * second[k] for k in first) / (n * n)
    return None if expected >= 1 else (observed - expected) / (1 - expected)


def read_splits(path: Path) -> dict[str, Any]:
    """Read ``splits.json`` and check its shape: ``test`` and ``folds[{train, val}]`` lists.

    Raises:
        DataError: not JSON, or the keys are missing or of the wrong type (names the file).
    """
    try:
        splits = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"'{path}' is not a readable JSON file: {exc}".splitlines()[0]) from None

    def ids(value: Any) -> bool:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)

    folds = splits.get("folds") if isinstance(splits, dict) else None
    if (
        not isinstance(splits, dict)
        or not ids(splits.get("test"))
        or not isinstance(folds, list)
        or not all(isinstance(f, dict) and ids(f.get("train")) and ids(f.get("val")) for f in folds)
    ):
        raise DataError(
            f"'{path}' must hold 'test' (a list of case ids) and 'folds' (a list of "
            "{'train': [...], 'val': [...]})"
        )
    return splits


def split_summary(splits: Mapping[str, Any], cases: Sequence[Case]) -> dict[str, Any]:
    """Cases and patients in the test set and each fold; patients shared between parts."""
    patient = {c.case_id: c.patient_id for c in cases}
    known = [cid for part in _split_parts(splits) for cid in part[1] if cid in patient]
    unknown = sorted({cid for _, ids in _split_parts(splits) for cid in ids if cid not in patient})

    def part(ids: Sequence[str]) -> dict[str, int]:
        return {"cases": len(ids), "patients": len({patient[c] for c in ids if c in patient})}

    test_patients = {patient[c] for c in splits["test"] if c in patient}
    development = {
        patient[c] for f in splits["folds"] for c in f["train"] + f["val"] if c in patient
    }
    folds = []
    for fold in splits["folds"]:
        train = {patient[c] for c in fold["train"] if c in patient}
        val = {patient[c] for c in fold["val"] if c in patient}
        folds.append(
            {
                "train": part(fold["train"]),
                "val": part(fold["val"]),
                "shared_patients": len(train & val),
            }
        )
    removed = splits.get("removed_duplicates")
    return {
        "test": part(splits["test"]),
        "folds": folds,
        "patients_in_test_and_development": len(test_patients & development),
        "cases_in_no_part": len(set(patient) - set(known)),
        "removed_duplicates": len(removed) if isinstance(removed, list) else None,
        "unknown_case_ids": unknown,
    }


def _split_parts(splits: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    parts = [("test", list(splits["test"]))]
    for i, fold in enumerate(splits["folds"]):
        parts += [(f"fold {i} train", list(fold["train"])), (f"fold {i} val", list(fold["val"]))]
    return parts


def _first_dicom_header(path: Path, tags: Sequence[str]) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = source_path(path)  # a folder::SeriesInstanceUID image: its folder
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        try:
            return pydicom.dcmread(file, stop_before_pixels=True, specific_tags=list(tags))
        except (InvalidDicomError, OSError):
            continue
    return None


def identity_summary(cases: Sequence[Case]) -> dict[str, Any]:
    """Which DICOM cases carry patient identity in their headers (counted, never shown).

    Reads the header of one file per case (a series shares its patient module), without pixel
    data, and counts the non-empty :data:`IDENTITY_TAGS`.
    """
    tag_counts: Counter[str] = Counter()
    flagged = []
    dicom = 0
    for case in cases:
        if file_format(case.image) != "dicom":
            continue
        dicom += 1
        ds = _first_dicom_header(case.image, IDENTITY_TAGS)
        if ds is None:
            continue
        present = [t for t in IDENTITY_TAGS if str(ds.get(t, "") or "").strip()]
        tag_counts.update(present)
        if present:
            flagged.append(case.case_id)
    return {
        "dicom_cases": dicom,
        "cases_with_identity": len(flagged),
        "tags": {t: tag_counts[t] for t in IDENTITY_TAGS if tag_counts[t]},
        "case_ids": flagged,
    }


def collect_warnings(report: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> list[str]:
    """One sentence per finding in ``report`` (and the per-case ``records``) that needs action
    before training."""
    warnings = []
    identity = report["identity"]
    if identity["cases_with_identity"]:
        tags = ", ".join(identity["tags"])
        warnings.append(
            f"{identity['cases_with_identity']} of {identity['dicom_cases']} DICOM cases carry "
            f"patient identity in their headers ({tags}); de-identify them before sharing"
        )
    dup = report["duplicates"]
    if dup["exact"] or dup["near"]:
        warnings.append(
            f"{len(dup['exact'])} exact and {len(dup['near'])} near duplicate groups "
            f"({dup['cases_to_remove']} cases to remove before splitting)"
        )
    if dup["groups_across_patients"]:
        warnings.append(
            f"{len(dup['groups_across_patients'])} duplicate groups span different patient ids"
        )
    non_finite = [c["case_id"] for c in records if c["intensity"].get("non_finite")]
    if non_finite:
        warnings.append(
            f"{len(non_finite)} cases hold NaN or infinite voxels (left out of the statistics), "
            f"e.g. {non_finite[0]}"
        )
    if len(report["geometry"]["dimensions"]) > 1:
        warnings.append(f"mixed dimensions: {report['geometry']['dimensions']} cases per ndim")
    splits = report.get("splits")
    if splits:
        if splits["patients_in_test_and_development"]:
            warnings.append(
                f"{splits['patients_in_test_and_development']} patients are in the test set "
                "and in training/validation"
            )
        if any(f["shared_patients"] for f in splits["folds"]):
            warnings.append("a fold shares patients between train and val")
        if splits["unknown_case_ids"]:
            warnings.append(
                f"splits.json names {len(splits['unknown_case_ids'])} case ids not in the "
                "manifest (stale splits: run split again)"
            )
    return warnings


# --- plots and the Markdown report ---------------------------------------------------------


def write_plots(
    report: Mapping[str, Any], results: Sequence[CaseResult], folder: Path
) -> dict[str, str]:
    """Draw the dataset plots into ``folder``; returns plot name -> file name."""
    plots = {}
    if report["task"] == "classification":
        plots["class_distribution"] = data_plots.plot_class_distribution(
            report["classes"]["counts"], folder / "class_distribution.png"
        ).name
    else:
        masks = report["masks"]
        three_d = any(len(r.record["shape"]) == 3 for r in results)
        unit, key = ("mL", "ml") if three_d else ("mm²", "mm2")
        sizes = {
            f"{value}": [
                r.record["mask"][value][key]
                for r in results
                if value in r.record["mask"] and key in r.record["mask"][value]
            ]
            for value in masks["classes"]
        }
        plots["mask_sizes"] = data_plots.plot_mask_sizes(
            sizes,
            folder / "mask_sizes.png",
            unit=unit,
            empty_cases=masks["empty_cases"],
            total_cases=len(results),
        ).name
    plots["geometry"] = data_plots.plot_geometry(
        [r.record["shape"] for r in results],
        [r.record["spacing"] for r in results],
        folder / "geometry.png",
    ).name
    plots["intensities"] = data_plots.plot_intensities(
        {r.record["case_id"]: r.sample for r in results}, folder / "intensities.png"
    ).name
    if report["annotators"]:
        metric = "Dice" if report["task"] == "segmentation" else "agreement"
        plots["agreement"] = data_plots.plot_agreement(
            report["annotators"]["per_case"], folder / "agreement.png", metric=metric
        ).name
    return plots


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return [*lines, ""]


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _groups(groups: Sequence[Sequence[str]], patient: Mapping[str, str]) -> list[str]:
    lines = []
    for group in groups:
        owners = sorted({patient[c] for c in group})
        note = " (different patients!)" if len(owners) > 1 else ""
        lines.append(f"- {', '.join(group)}: patients {', '.join(owners)}{note}")
    return lines or ["- none"]


def _figure(report: Mapping[str, Any], name: str, text: str) -> list[str]:
    """The Markdown image line of plot ``name`` when it was drawn."""
    file = report["plots"].get(name)
    return [f"![{text}]({file})", ""] if file else []


def render_markdown(report: Mapping[str, Any]) -> str:
    """``report.md``: the report for a person, plots inline (paths relative to the report)."""
    c, geo = report["counts"], report["geometry"]
    patient = {r["case_id"]: r["patient_id"] for r in report["cases"]}
    out = [
        f"# Dataset report: {report['root']}",
        "",
        f"Written {report['created']} for the {report['task']} task by `inspect`."
        + (" Montages of every case are under `montages/`." if report["plots"] else ""),
        "",
        "## Warnings",
        "",
        *([f"- **{w}**" for w in report["warnings"]] or ["- none"]),
        "",
        "## Counts",
        "",
        *_table(
            ["cases", "patients", "patients with several studies", "most studies of a patient"],
            [
                [
                    c["cases"],
                    c["patients"],
                    c["patients_with_several_studies"],
                    c["max_studies_per_patient"],
                ]
            ],
        ),
        "Studies per patient: "
        + ", ".join(f"{k}: {n} patients" for k, n in c["studies_per_patient"].items()),
        "",
    ]
    if report["task"] == "classification":
        cls = report["classes"]
        total = sum(cls["counts"].values())
        out += ["## Classes", ""]
        out += _table(
            ["class", "cases", "share", "patients"],
            [
                [n, k, f"{100 * k / total:.1f}%", cls["patients"][n]]
                for n, k in cls["counts"].items()
            ],
        )
        out += [f"Largest class / smallest class: {cls['imbalance']:.2f}", ""]
        out += _figure(report, "class_distribution", "class distribution")
    else:
        masks = report["masks"]
        out += ["## Mask sizes per class", ""]
        rows = []
        for value, s in masks["classes"].items():
            unit = "ml" if "ml" in s else "mm2"
            size = s.get(unit)
            rows.append(
                [
                    value,
                    s["cases"],
                    f"{s['voxels']['median']:.0f} ({s['voxels']['min']:.0f}-{s['voxels']['max']:.0f})",
                    f"{_num(size['median'])} ({_num(size['min'])}-{_num(size['max'])}) {unit}"
                    if size
                    else "-",
                ]
            )
        out += _table(
            ["class", "cases", "voxels: median (min-max)", "size: median (min-max)"], rows
        )
        empty = masks["empty_case_ids"]
        shown = ", ".join(empty[:20]) + (" ..." if len(empty) > 20 else "")
        out += [
            f"Cases with an empty mask: {masks['empty_cases']} of {c['cases']}"
            + (f" ({shown})" if empty else ""),
            "",
        ]
        out += _figure(report, "mask_sizes", "mask sizes")
    out += ["## Shapes and spacings", ""]
    out += [
        f"Dimensions: {', '.join(f'{k}D: {n} cases' for k, n in geo['dimensions'].items())}; "
        f"{geo['distinct_shapes']} distinct shapes, {geo['distinct_spacings']} distinct spacings, "
        f"{geo['anisotropic_cases']} anisotropic cases (largest spacing > {ANISOTROPY:g} x smallest).",
        "",
    ]
    out += _table(
        ["", *"XYZ"[: len(geo["spacing"]["min"])]],
        [
            ["size min (voxels)", *geo["size"]["min"]],
            ["size max (voxels)", *geo["size"]["max"]],
            *(
                [f"spacing {k} (mm)", *(f"{v:.4g}" for v in geo["spacing"][k])]
                for k in ("min", "median", "max")
            ),
        ],
    )
    out += _figure(report, "geometry", "shapes and spacings")
    it = report["intensity"]
    out += ["## Intensities (as stored, e.g. HU)", ""]
    out += _table(
        ["min", "max", "mean", "std", "voxels"],
        [[_num(it["min"]), _num(it["max"]), _num(it["mean"]), _num(it["std"]), it["voxels"]]],
    )
    out += _figure(report, "intensities", "intensities")
    dup = report["duplicates"]
    out += [
        "## Duplicates",
        "",
        "Exact duplicates (identical voxel data):",
        *_groups(dup["exact"], patient),
        "",
    ]
    out += [
        f"Near duplicates (thumbnail correlation >= {dup['near_threshold']}):",
        *_groups(dup["near"], patient),
        "",
    ]
    out += [
        "`split` keeps one case of each group and removes the rest before dividing the data.",
        "",
    ]
    ann = report["annotators"]
    out += ["## Annotators", ""]
    if ann is None:
        out += ["One annotator (no `label_<rater>` columns).", ""]
    else:
        metric = "Dice" if ann["metric"] == "dice" else "agreement rate"
        rows = [
            [
                f"{p['a']} vs {p['b']}",
                p["cases"],
                _num(p["mean"]),
                _num(p["min"]),
                _num(p.get("kappa")),
            ]
            for p in ann["pairs"]
        ]
        out += _table(["pair", "cases", f"mean {metric}", "lowest", "Cohen's kappa"], rows)
        out += [
            f"{ann['cases_disagreeing']} of {ann['cases_rated']} rated cases disagree. Largest disagreements:",
            "",
        ]
        rows = [
            [
                d["case_id"],
                _num(d["agreement"]),
                "; ".join(f"{k}: {_num(v)}" for k, v in d["pairs"].items()),
            ]
            + ([", ".join(f"{k}: {v}" for k, v in d["labels"].items())] if "labels" in d else [])
            for d in ann["largest_disagreements"]
        ]
        header = ["case", metric, "pairs"] + (["labels"] if ann["metric"] == "agreement" else [])
        out += _table(header, rows) if rows else ["none", ""]
        out += _figure(report, "agreement", "annotator agreement")
    out += ["## Splits", ""]
    sp = report["splits"]
    if sp is None:
        out += ["No `splits.json` yet (run `split`).", ""]
    else:
        rows = [["test", sp["test"]["cases"], sp["test"]["patients"], "-"]]
        for i, f in enumerate(sp["folds"]):
            rows += [
                [
                    f"fold {i} train",
                    f["train"]["cases"],
                    f["train"]["patients"],
                    f["shared_patients"],
                ]
            ]
            rows += [
                [f"fold {i} val", f["val"]["cases"], f["val"]["patients"], f["shared_patients"]]
            ]
        out += _table(["part", "cases", "patients", "patients shared train/val"], rows)
        out += [
            f"Patients in both test and training/validation: {sp['patients_in_test_and_development']}; "
            f"cases in no part: {sp['cases_in_no_part']}; case ids unknown to the manifest: "
            f"{len(sp['unknown_case_ids'])}.",
            "",
        ]
    ident = report["identity"]
    out += ["## Patient identity in DICOM headers", ""]
    if ident["dicom_cases"] == 0:
        out += ["No DICOM images.", ""]
    else:
        tags = ", ".join(f"{t} ({n})" for t, n in ident["tags"].items()) or "none"
        out += [
            f"{ident['cases_with_identity']} of {ident['dicom_cases']} DICOM cases carry identity "
            f"tags: {tags}. The values are not shown here.",
            "",
        ]
    out += ["## Cases", ""]
    label = "label" if report["task"] == "classification" else "mask (voxels per class)"
    rows = []
    for r in report["cases"]:
        what = (
            r.get("label")
            if "label" in r
            else (", ".join(f"{k}: {v['voxels']}" for k, v in r["mask"].items()) or "empty")
        )
        it = r["intensity"]
        montage = f"[montage]({r['montage']})" if "montage" in r else "-"
        rows.append(
            [
                r["case_id"],
                r["patient_id"],
                what,
                " x ".join(map(str, r["shape"])),
                " x ".join(f"{s:.3g}" for s in r["spacing"]),
                _num(it["min"]),
                _num(it["max"]),
                _num(it["mean"]),
                _num(it["std"]),
                montage,
            ]
        )
    out += _table(
        ["case", "patient", label, "shape", "spacing (mm)", "min", "max", "mean", "std", "montage"],
        rows,
    )
    return "\n".join(out)


# --- the report folder ---------------------------------------------------------------------


def inspect_dataset(
    root: Path,
    *,
    task: str,
    out_dir: Path,
    near_threshold: float = NEAR_THRESHOLD,
    day: dt.date | None = None,
    figures: bool = True,
) -> Path:
    """Inspect the dataset of ``<root>/manifest.csv`` and write the report folder.

    Args:
        root: the dataset folder (``manifest.csv``, optionally ``splits.json``).
        task: ``segmentation`` or ``classification``.
        out_dir: where dated report folders go (``reports/inspect``).
        near_threshold: thumbnail correlation in ``(0, 1]`` above which two cases are near
            duplicates.
        day: the date naming the folder (today when ``None``).
        figures: draw the plots and a montage per case (the slowest part); without them only
            ``report.json`` and ``report.md`` are written.

    Returns:
        The path of ``<out_dir>/<YYYY-MM-DD>_<dataset>/report.json`` (:func:`report_folder`).

    Raises:
        ValueError: unknown ``task`` or a threshold outside ``(0, 1]``.
        DataError: no manifest, an empty or malformed one, a missing file, a bad ``splits.json``.
        ImageError: an image or mask cannot be read, or a mask does not fit its image.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if not 0 < near_threshold <= 1:
        raise ValueError(f"near_threshold must be in (0, 1], got {near_threshold}")
    root, out_dir = Path(root), Path(out_dir)
    cases = read_manifest(root, task)
    splits_path = root / SPLITS
    splits = read_splits(splits_path) if splits_path.is_file() else None
    final = report_folder(out_dir, root, day or dt.date.today())
    out_dir.mkdir(parents=True, exist_ok=True)
    build = out_dir / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    (build / "montages" if figures else build).mkdir(parents=True)
    try:
        results = [
            inspect_case(
                c, task, build / "montages" / _montage_name(c.case_id) if figures else None
            )
            for c in cases
        ]
        records = [r.record for r in results]
        report: dict[str, Any] = {
            "created": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "root": str(root.resolve()),
            "task": task,
            "counts": count_summary(cases),
        }
        if task == "classification":
            report["classes"] = class_summary(cases)
        else:
            report["masks"] = mask_summary(records)
        report["geometry"] = geometry_summary(records)
        report["intensity"] = pooled_intensity(results)
        report["duplicates"] = duplicate_summary(
            [r.fingerprint for r in results], cases, near_threshold
        )
        report["annotators"] = annotator_summary(results, task)
        report["splits"] = None if splits is None else split_summary(splits, cases)
        report["identity"] = identity_summary(cases)
        report["warnings"] = collect_warnings(report, records)
        report["plots"] = write_plots(report, results, build) if figures else {}
        report["cases"] = records
        atomic_write_text(
            build / "report.json", json.dumps(report, indent=2, allow_nan=False) + "\n"
        )
        atomic_write_text(build / "report.md", render_markdown(report) + "\n")
        replace_folder(build, final)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    for warning in report["warnings"]:  # stderr, unless the application configures logging
        log.warning("warning: %s", warning)
    return final / "report.json"


# --- one case ------------------------------------------------------------------------------


def find_montage(case_id: str, out_dir: Path, root: Path | None = None) -> Path | None:
    """The newest ``<out_dir>/<date>_<dataset>/montages/<case>.png`` (of the dataset in
    ``root`` when given), or ``None``."""
    name = _montage_name(case_id)
    days = sorted(
        (d for d in Path(out_dir).glob("*") if d.is_dir() and DAY.match(d.name)), reverse=True
    )
    if root is not None:
        today = report_folder(out_dir, root, dt.date.today()).name.split("_", 1)[1]
        days = [d for d in days if d.name.split("_", 1)[1] == today]
    for day in days:
        if (day / "montages" / name).is_file():
            return day / "montages" / name
    return None


def _viewer_file(path: Path) -> Path:
    """ITK-SNAP opens a DICOM series from one of its files."""
    path = source_path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        return files[0] if files else path
    return path


def view_case(root: Path, case_id: str, *, task: str, out_dir: Path | None = None) -> int:
    """Show one case: in ITK-SNAP when ``itksnap`` is on the PATH, else point at its montage.

    Args:
        root: the dataset folder.
        case_id: a ``case_id`` of the manifest.
        task: ``segmentation`` (the mask is loaded as ITK-SNAP's segmentation) or
            ``classification``.
        out_dir: the dated report folders (default ``reports/inspect`` of the project); a
            montage missing there is drawn into today's folder.

    Returns:
        0 (the exit status).

    Raises:
        DataError: ``case_id`` is not in the manifest (or no manifest).
        ImageError: the case's image or mask cannot be read (when its montage is drawn).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    cases = {c.case_id: c for c in read_manifest(root, task)}
    if case_id not in cases:
        raise DataError(f"case '{case_id}' is not in '{Path(root) / 'manifest.csv'}'")
    case = cases[case_id]
    viewer = shutil.which("itksnap")
    if viewer is not None:
        command = [viewer, "-g", str(_viewer_file(case.image))]
        if task == "segmentation":
            command += ["-s", str(case.label)]
        try:
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError as exc:
            print(f"could not start ITK-SNAP ({exc}); showing the montage instead")
        else:
            print(f"opened {case_id} in ITK-SNAP")
            return 0
    out_dir = Path(out_dir) if out_dir is not None else paths.reports_dir() / "inspect"
    montage = find_montage(case_id, out_dir, root)
    if montage is None:
        folder = report_folder(out_dir, root, dt.date.today())
        montage = folder / "montages" / _montage_name(case_id)
        inspect_case(case, task, montage)
    print(f"montage of {case_id}: {montage}")
    print("(install ITK-SNAP, http://www.itksnap.org, to browse the case in 3D)")
    return 0
