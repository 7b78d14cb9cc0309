"""One pass over one case: its record in the report, samples for the plots, its montage."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...viz import data_plots
from ..fingerprint import CaseFingerprint, case_fingerprint
from ..io import Image, read_image, read_label
from ..manifest import Case, DataError
from .annotators import PRIMARY, pair_agreement
from .duplicates import Fingerprint, fingerprint
from .statistics import intensity_stats, mask_sizes, sample_voxels


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
        print: its share of the dataset fingerprint (:mod:`..fingerprint`): modality, spacing
            after reorienting, orientation as stored, sampled foreground intensities.
    """

    record: dict[str, Any]
    fingerprint: Fingerprint
    sample: np.ndarray
    voxels: int
    agreement: dict[tuple[str, str], float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    print: CaseFingerprint | None = None


def montage_name(case_id: str) -> str:
    """A file name for ``case_id`` safe on every system (a short hash keeps altered ids apart)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", case_id).strip(".") or "case"
    if safe != case_id:
        safe += "-" + hashlib.sha1(case_id.encode("utf-8")).hexdigest()[:8]
    return f"{safe}.png"


def draw_montage(
    case: Case, image: Image, task: str, ratings: Mapping[str, Any], path: Path
) -> Path:
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


def inspect_case(
    case: Case, task: str, montage: Path | None = None, orientation: str | None = "RAS"
) -> CaseResult:
    """Read one case (image once, masks once) and measure it.

    Args:
        case: a manifest row.
        task: ``segmentation`` or ``classification``.
        montage: where to draw its montage (``None``: none drawn).
        orientation: the orientation training reorients to (the fingerprint's spacings are
            given in it; ``None``: as stored).

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
    mask = ratings[PRIMARY] if task == "segmentation" else None
    case_print = case_fingerprint(case.case_id, image, mask, orientation)
    if case_print.orientation:
        record["orientation"] = case_print.orientation
    if montage is not None:
        draw_montage(case, image, task, ratings, montage)
        record["montage"] = f"montages/{montage.name}"
    return CaseResult(
        record,
        fingerprint(case.case_id, image),
        sample_voxels(image.array),
        int(image.array.size),
        pair_agreement(ratings),
        dict(ratings) if task == "classification" else {},
        case_print,
    )
