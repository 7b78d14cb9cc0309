"""Segmentation metrics in physical units: Dice, IoU, HD95 and ASSD, per class and averaged.

Conventions (the project's spec; the tests check them against MONAI):

- Masks are arrays of the same shape, 2D ``(X, Y)`` or 3D ``(X, Y, Z)``; for the binary
  functions any non-zero voxel is foreground. Label maps hold one integer class per voxel.
- ``spacing`` is the voxel size along each axis in mm (the image's own, anisotropic allowed), so
  distances are in mm.
- The surface of a mask is its boundary voxels: foreground voxels with at least one background
  face-neighbour (``mask & ~binary_erosion(mask)``, with everything outside the image counted as
  background, so a mask touching the image border has a surface there).
- A directed surface distance from A to B is, for every surface voxel of A, the Euclidean distance
  in mm to the nearest surface voxel of B (``scipy.ndimage.distance_transform_edt`` with
  ``sampling=spacing``, evaluated on A's surface only).
- HD95 is the larger of the two directed 95th percentiles (linear interpolation, as
  ``numpy.percentile``), MONAI's ``compute_hausdorff_distance(percentile=95)`` convention. It is not
  the 95th percentile of both directions pooled (medpy's convention, which gives other values).
- ASSD is the mean of all surface distances of both directions together:
  ``(sum d(A->B) + sum d(B->A)) / (|surface A| + |surface B|)``.
- Both masks empty: Dice = IoU = 1, HD95 = ASSD = 0 (nothing to find, nothing found).
- Exactly one mask empty: Dice = IoU = 0, HD95 = ASSD = NaN (no surface to measure to).
  :func:`summarize_segmentation` counts these cases for every class, and whole-set means of the
  distances leave them out, so read the counts beside the means.

MONAI differs on the empty cases: by default (``ignore_empty=True``) its Dice and IoU are NaN for
an empty truth, and its distances are NaN or infinite whenever a mask is empty.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

METRICS = ("dice", "iou", "hd95", "assd")
"""The per-class metric names; :func:`segmentation_metrics` keys are ``<name>_<class>``."""


def _binary_pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks as boolean arrays, after checking that their shapes match."""
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(
            f"prediction and truth must have the same shape, got {pred.shape} and {truth.shape}"
        )
    if pred.ndim not in (2, 3):
        raise ValueError(f"masks must be 2D (X, Y) or 3D (X, Y, Z), got shape {pred.shape}")
    return pred.astype(bool, copy=False), truth.astype(bool, copy=False)


def _spacing(spacing: float | Sequence[float], ndim: int) -> tuple[float, ...]:
    """``spacing`` as a tuple of ``ndim`` positive finite floats (a single number: isotropic)."""
    values = [float(spacing)] * ndim if np.isscalar(spacing) else [float(s) for s in spacing]
    if len(values) != ndim:
        raise ValueError(
            f"spacing needs one value per axis ({ndim} for {ndim}D masks), got {len(values)}: "
            f"{tuple(values)}"
        )
    if not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing values must be positive and finite (mm), got {tuple(values)}")
    return tuple(values)


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice coefficient ``2|P & T| / (|P| + |T|)`` of two binary masks.

    Args:
        pred: predicted mask, 2D or 3D; non-zero voxels are foreground.
        truth: reference mask of the same shape.

    Returns:
        Dice in [0, 1]; 1.0 when both masks are empty, 0.0 when exactly one is.

    Raises:
        ValueError: the shapes differ or the masks are not 2D/3D.
    """
    pred, truth = _binary_pair(pred, truth)
    total = int(np.count_nonzero(pred)) + int(np.count_nonzero(truth))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(pred & truth)) / total


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union (Jaccard index) ``|P & T| / |P | T|`` of two binary masks.

    Args:
        pred: predicted mask, 2D or 3D; non-zero voxels are foreground.
        truth: reference mask of the same shape.

    Returns:
        IoU in [0, 1]; 1.0 when both masks are empty, 0.0 when exactly one is.

    Raises:
        ValueError: the shapes differ or the masks are not 2D/3D.
    """
    pred, truth = _binary_pair(pred, truth)
    intersection = int(np.count_nonzero(pred & truth))
    union = int(np.count_nonzero(pred)) + int(np.count_nonzero(truth)) - intersection
    if union == 0:
        return 1.0
    return intersection / union


def surface(mask: np.ndarray) -> np.ndarray:
    """The boundary voxels of a binary mask: foreground voxels with a background face-neighbour.

    Outside the array counts as background, so foreground on the image border is surface.

    Args:
        mask: boolean mask, any number of dimensions.

    Returns:
        Boolean array of the same shape, True on the surface.
    """
    mask = np.asarray(mask, dtype=bool)
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def surface_distances(
    pred: np.ndarray, truth: np.ndarray, spacing: float | Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances in mm: prediction to truth, and truth to prediction.

    Only the bounding box of both masks is processed, and distances are read off
    a distance transform of each surface at the other surface's voxels, never computed pairwise,
    so the cost grows with the size of the structures, not of the image.

    Args:
        pred: predicted mask, 2D or 3D; non-zero voxels are foreground.
        truth: reference mask of the same shape.
        spacing: voxel size per axis in mm (or one number for isotropic voxels).

    Returns:
        ``(pred_to_truth, truth_to_pred)``: 1-D float64 arrays with one distance per surface voxel
        of the first mask; both empty if either mask is empty.

    Raises:
        ValueError: the shapes differ, the masks are not 2D/3D, or ``spacing`` has the wrong length
            or a non-positive value.
    """
    pred, truth = _binary_pair(pred, truth)
    sampling = _spacing(spacing, pred.ndim)
    empty = np.zeros(0, dtype=np.float64)
    if not pred.any() or not truth.any():
        return empty, empty
    # Crop to the bounding box of both masks: every surface voxel lies inside it, and the erosion
    # treats the outside of the crop as background, which is what lies there in the full image.
    box = tuple(slice(int(idx.min()), int(idx.max()) + 1) for idx in np.nonzero(pred | truth))
    pred_surface = surface(pred[box])
    truth_surface = surface(truth[box])
    to_truth = ndimage.distance_transform_edt(~truth_surface, sampling=sampling)
    to_pred = ndimage.distance_transform_edt(~pred_surface, sampling=sampling)
    return to_truth[pred_surface].astype(np.float64), to_pred[truth_surface].astype(np.float64)


def _hd95_from(pred_to_truth: np.ndarray, truth_to_pred: np.ndarray) -> float:
    return float(max(np.percentile(pred_to_truth, 95), np.percentile(truth_to_pred, 95)))


def _assd_from(pred_to_truth: np.ndarray, truth_to_pred: np.ndarray) -> float:
    total = pred_to_truth.sum() + truth_to_pred.sum()
    return float(total / (pred_to_truth.size + truth_to_pred.size))


def _distance_metric(pred: np.ndarray, truth: np.ndarray, spacing, reduce) -> float:
    pred, truth = _binary_pair(pred, truth)
    pred_any, truth_any = bool(pred.any()), bool(truth.any())
    if not pred_any and not truth_any:
        _spacing(spacing, pred.ndim)  # still reject a bad spacing
        return 0.0
    if pred_any != truth_any:
        _spacing(spacing, pred.ndim)
        return math.nan
    return reduce(*surface_distances(pred, truth, spacing))


def hd95(pred: np.ndarray, truth: np.ndarray, spacing: float | Sequence[float]) -> float:
    """95th-percentile Hausdorff distance in mm (the larger of the two directed 95th percentiles).

    Args:
        pred: predicted mask, 2D or 3D; non-zero voxels are foreground.
        truth: reference mask of the same shape.
        spacing: voxel size per axis in mm (or one number for isotropic voxels).

    Returns:
        HD95 in mm; 0.0 when both masks are empty, NaN when exactly one is.

    Raises:
        ValueError: mismatched shapes, masks that are not 2D/3D, or a bad ``spacing``.
    """
    return _distance_metric(pred, truth, spacing, _hd95_from)


def assd(pred: np.ndarray, truth: np.ndarray, spacing: float | Sequence[float]) -> float:
    """Average symmetric surface distance in mm (mean over both surfaces' voxels together).

    Args:
        pred: predicted mask, 2D or 3D; non-zero voxels are foreground.
        truth: reference mask of the same shape.
        spacing: voxel size per axis in mm (or one number for isotropic voxels).

    Returns:
        ASSD in mm; 0.0 when both masks are empty, NaN when exactly one is.

    Raises:
        ValueError: mismatched shapes, masks that are not 2D/3D, or a bad ``spacing``.
    """
    return _distance_metric(pred, truth, spacing, _assd_from)


def nanmean(values: Sequence[float] | np.ndarray) -> float:
    """Mean of the non-NaN values; NaN (without a warning) when there are none."""
    array = np.asarray(values, dtype=np.float64)
    array = array[~np.isnan(array)]
    return float(array.mean()) if array.size else math.nan


def _classes(classes: Sequence[int]) -> list[int]:
    values = [int(c) for c in classes]
    if not values:
        raise ValueError("classes must name at least one label value, e.g. (1,)")
    if len(set(values)) != len(values) or any(c < 0 for c in values):
        raise ValueError(f"classes must be distinct non-negative label values, got {values}")
    return values


def segmentation_metrics(
    pred_labels: np.ndarray,
    truth_labels: np.ndarray,
    spacing: float | Sequence[float],
    classes: Sequence[int] = (1,),
) -> dict[str, float]:
    """Every segmentation metric of one case, per class and averaged over the classes.

    Args:
        pred_labels: predicted label map, integer class per voxel, shape ``(X, Y)`` or ``(X, Y, Z)``.
        truth_labels: reference label map of the same shape.
        spacing: voxel size per axis in mm (or one number for isotropic voxels).
        classes: the label values to evaluate, e.g. ``(1,)`` for a binary task or ``(1, 2)``;
            include 0 to score the background too. A class missing from one map follows the
            empty-mask conventions (module docstring).

    Returns:
        For each class ``c``: ``dice_c``, ``iou_c``, ``hd95_c``, ``assd_c`` (mm), and
        ``pred_voxels_c``, ``truth_voxels_c`` (voxel counts, used by :func:`summarize_segmentation`
        to count empty masks); and ``dice``, ``iou``, ``hd95``, ``assd``: the means over the classes
        that have a value (NaN entries, i.e. classes with exactly one empty mask, are left out; NaN
        if every class is NaN).

    Raises:
        ValueError: mismatched shapes (both named), masks that are not 2D/3D, a bad ``spacing`` or
            an empty or repeated ``classes``.
    """
    pred_labels = np.asarray(pred_labels)
    truth_labels = np.asarray(truth_labels)
    if pred_labels.shape != truth_labels.shape:
        raise ValueError(
            f"prediction and truth must have the same shape, got {pred_labels.shape} and "
            f"{truth_labels.shape}"
        )
    if pred_labels.ndim not in (2, 3):
        raise ValueError(
            f"label maps must be 2D (X, Y) or 3D (X, Y, Z), got shape {pred_labels.shape}"
        )
    sampling = _spacing(spacing, pred_labels.ndim)
    result: dict[str, float] = {}
    for c in _classes(classes):
        pred = pred_labels == c
        truth = truth_labels == c
        n_pred, n_truth = int(np.count_nonzero(pred)), int(np.count_nonzero(truth))
        result[f"dice_{c}"] = dice(pred, truth)
        result[f"iou_{c}"] = iou(pred, truth)
        if n_pred == 0 and n_truth == 0:
            result[f"hd95_{c}"] = result[f"assd_{c}"] = 0.0
        elif n_pred == 0 or n_truth == 0:
            result[f"hd95_{c}"] = result[f"assd_{c}"] = math.nan
        else:
            distances = surface_distances(pred, truth, sampling)
            result[f"hd95_{c}"] = _hd95_from(*distances)
            result[f"assd_{c}"] = _assd_from(*distances)
        result[f"pred_voxels_{c}"] = float(n_pred)
        result[f"truth_voxels_{c}"] = float(n_truth)
    for name in METRICS:
        result[name] = nanmean([result[f"{name}_{c}"] for c in _classes(classes)])
    return result


def summarize_segmentation(
    per_case: Sequence[Mapping[str, float]], classes: Sequence[int] = (1,)
) -> dict[str, float]:
    """Whole-set means of the per-case metrics, with the empty-mask cases counted.

    Args:
        per_case: one :func:`segmentation_metrics` result per case, all for the same ``classes``.
        classes: the classes those results were computed for.

    Returns:
        ``n_cases``; for each metric ``m`` in ``dice, iou, hd95, assd``: ``m`` (mean over cases of
        the class-averaged value) and ``m_<c>`` per class, all leaving NaN out (so distance means
        are over the cases where both masks are non-empty or both empty); and per class
        ``both_empty_<c>`` (cases scored 1/0 by convention), ``pred_empty_<c>`` (structure present
        but not predicted: Dice 0, distances NaN), ``truth_empty_<c>`` (structure predicted where
        there is none: Dice 0, distances NaN), plus their totals over the classes ``both_empty``,
        ``pred_empty``, ``truth_empty`` (in case-class pairs).

    Raises:
        ValueError: ``per_case`` is empty or a result lacks a key for one of ``classes``.
    """
    if not per_case:
        raise ValueError("per_case must hold at least one case's metrics")
    labels = _classes(classes)
    needed = [f"{m}_{c}" for c in labels for m in (*METRICS, "pred_voxels", "truth_voxels")]
    for index, case in enumerate(per_case):
        missing = [key for key in (*needed, *METRICS) if key not in case]
        if missing:
            raise ValueError(
                f"per-case result {index} lacks {missing}: compute it with "
                f"segmentation_metrics(..., classes={tuple(labels)})"
            )
    summary: dict[str, float] = {"n_cases": float(len(per_case))}
    for name in METRICS:
        summary[name] = nanmean([case[name] for case in per_case])
        for c in labels:
            summary[f"{name}_{c}"] = nanmean([case[f"{name}_{c}"] for case in per_case])
    totals = {"both_empty": 0, "pred_empty": 0, "truth_empty": 0}
    for c in labels:
        pred_empty = np.array([case[f"pred_voxels_{c}"] == 0 for case in per_case])
        truth_empty = np.array([case[f"truth_voxels_{c}"] == 0 for case in per_case])
        counts = {
            "both_empty": int(np.sum(pred_empty & truth_empty)),
            "pred_empty": int(np.sum(pred_empty & ~truth_empty)),
            "truth_empty": int(np.sum(truth_empty & ~pred_empty)),
        }
        for key, count in counts.items():
            summary[f"{key}_{c}"] = float(count)
            totals[key] += count
    summary.update({key: float(count) for key, count in totals.items()})
    return summary
