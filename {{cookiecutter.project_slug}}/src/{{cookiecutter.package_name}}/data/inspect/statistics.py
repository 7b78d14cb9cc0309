"""Numbers measured on the cases: intensities, mask sizes, counts, classes and geometry."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..fingerprint import clipped_share, resolve_normalization, summarize
from ..manifest import Case

if TYPE_CHECKING:
    from .cases import CaseResult

SAMPLE_VOXELS = 20_000  # voxels per case kept for the intensity histogram
ANISOTROPY = 2.0  # a case whose largest spacing exceeds this times its smallest is anisotropic


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


def mean_label_dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two label masks, averaged over the label values > 0 in either.

    (The binary Dice of the evaluation is :func:`..metrics.segmentation.dice`.)

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


def sample_voxels(array: np.ndarray) -> np.ndarray:
    """Every k-th voxel (about :data:`SAMPLE_VOXELS` of them), finite values only."""
    flat = array.ravel()
    sample = flat[:: max(1, flat.size // SAMPLE_VOXELS)].astype(np.float32)
    return sample[np.isfinite(sample)]


def spread(values: Iterable[float]) -> dict[str, float]:
    """``{min, median, mean, max}`` of ``values`` (at least one)."""
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
        classes[value].update({unit: spread(amounts) for unit, amounts in sizes.items()})
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


def fingerprint_report(
    results: Sequence[CaseResult],
    normalization: str,
    window: Sequence[float] | None,
    orientation: str | None,
) -> dict[str, Any]:
    """The dataset fingerprint (:func:`..fingerprint.summarize`, without the per-case lists
    that ``cases`` holds) and the normalization it implies.

    Returns:
        The fingerprint plus ``orientation`` (the one spacings are given in) and
        ``normalization``: ``requested``, ``resolved``, ``window``, ``why`` (one line),
        ``warnings`` (settings that do not fit the data) and ``clipped`` (share of the sampled
        foreground intensities outside the window).
    """
    prints = [r.print for r in results if r.print is not None]
    summary = summarize(prints)
    resolved = resolve_normalization(summary, normalization, window)
    pooled = np.concatenate([p.foreground for p in prints])
    report = {k: v for k, v in summary.items() if k not in ("spacings", "shapes")}
    report["orientation"] = orientation or "as stored"
    report["normalization"] = {
        "requested": normalization,
        "resolved": resolved.normalization,
        "window": resolved.window,
        "why": resolved.message or "set explicitly (data.normalization)",
        "warnings": resolved.warnings,
        "clipped": clipped_share(pooled, resolved.window),
    }
    return report
