"""Segmentation metrics in physical units: overlap, boundary, voxel-wise and lesion-wise.

Per class: Dice, IoU, HD95, ASSD, normalized surface Dice (NSD), voxel-level sensitivity and
specificity, and lesion-wise detection counts; and their means over the classes.

Conventions (the project's spec; the tests check them against MONAI and hand-worked cases):

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
- NSD (normalized surface Dice, Nikolov et al. 2021; recommended beside Dice by Metrics Reloaded)
  at a tolerance ``tau`` mm is the share of both surfaces that lies within ``tau`` of the other:
  ``(|{a: d(a, B) <= tau}| + |{b: d(b, A) <= tau}|) / (|surface A| + |surface B|)``, as MONAI's
  ``compute_surface_dice`` (without sub-voxel areas).
- Voxel sensitivity ``|P & T| / |T|`` and voxel specificity ``|~P & ~T| / |~T|`` count voxels of
  the whole image; specificity is dominated by the background and is close to 1 for almost any
  prediction. Undefined values (sensitivity of an empty truth, specificity of a truth filling the
  image) are NaN and left out of means.
- Lesion-wise detection: lesions are the connected components of a mask (full connectivity:
  voxels touching by a face, edge or corner, 8 in 2D / 26 in 3D). A truth lesion overlapped by at
  least one predicted voxel of the class is a true positive, one not overlapped a false negative;
  a predicted component that overlaps no truth voxel is a false positive. (A truth lesion split
  into two predicted pieces is one true positive; two truth lesions covered by one predicted
  component are two.)

Empty masks (per class and case):

- Both masks empty: Dice = IoU = NSD = 1, HD95 = ASSD = 0 (nothing to find, nothing found).
- Exactly one mask empty: Dice = IoU = NSD = 0, and there is no surface to measure a distance
  to. Two conventions are reported side by side, under different names:

  - ``hd95`` and ``assd`` are NaN for such a case, and whole-set means leave it out. This
    rewards a model that misses lesions (a miss never raises the mean), so
    :func:`summarize_segmentation` counts these cases for every class: read the counts beside
    the means.
  - ``hd95_worst`` and ``assd_worst`` give such a case the worst possible value, the diagonal
    of the image's field of view in mm, ``sqrt(sum((n_i * s_i) ** 2))`` for ``n_i`` voxels of
    ``s_i`` mm (:func:`image_diagonal`), as the BraTS challenges do (373.13 mm for their
    240 x 240 x 155 1-mm images). Otherwise they equal ``hd95`` and ``assd``.

MONAI differs on the empty cases: by default (``ignore_empty=True``) its Dice and IoU are NaN for
an empty truth, its distances are NaN or infinite whenever a mask is empty, and its NSD is NaN
when both masks are empty.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import ndimage

METRICS = (
    "dice",
    "iou",
    "hd95",
    "assd",
    "nsd",
    "hd95_worst",
    "assd_worst",
    "voxel_sensitivity",
    "voxel_specificity",
)
"""The per-class metrics averaged over classes and cases; per-class keys are ``<name>_<class>``."""

LESION_COUNTS = ("lesion_tp", "lesion_fn", "lesion_fp")
"""Lesion-wise detection counts per case (summed over classes); per class ``<name>_<class>``."""

DISTANCE_UNITS = {"hd95": "mm", "assd": "mm", "hd95_worst": "mm", "assd_worst": "mm"}
"""The metrics measured in mm; every other metric of :data:`METRICS` is a fraction in [0, 1]."""


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


def image_diagonal(shape: Sequence[int], spacing: float | Sequence[float]) -> float:
    """Diagonal of an image's field of view in mm: the worst value a distance is given.

    Args:
        shape: the image's size in voxels per axis, e.g. ``(240, 240, 155)``.
        spacing: voxel size per axis in mm (or one number for isotropic voxels).

    Returns:
        ``sqrt(sum((n_i * s_i) ** 2))`` in mm (373.13 for BraTS's 240 x 240 x 155 1-mm images).

    Raises:
        ValueError: ``spacing`` has the wrong length or a non-positive value, or a size is < 1.
    """
    sizes = [int(n) for n in shape]
    if not sizes or any(n < 1 for n in sizes):
        raise ValueError(f"shape must give a positive size per axis, got {tuple(shape)}")
    sampling = _spacing(spacing, len(sizes))
    return float(math.sqrt(sum((n * s) ** 2 for n, s in zip(sizes, sampling, strict=True))))


def _nsd_tolerance(tolerance: float) -> float:
    value = float(tolerance)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"the NSD tolerance must be a finite distance >= 0 mm, got {tolerance}")
    return value


def _nsd_from(pred_to_truth: np.ndarray, truth_to_pred: np.ndarray, tolerance: float) -> float:
    within = np.count_nonzero(pred_to_truth <= tolerance) + np.count_nonzero(
        truth_to_pred <= tolerance
    )
    return float(within / (pred_to_truth.size + truth_to_pred.size))


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


def normalized_surface_dice(
    pred: np.ndarray, truth: np.ndarray, spacing: float | Sequence[float], tolerance: float
) -> float:
    """Normalized surface Dice: the share of both surfaces within ``tolerance`` mm of the other.

    Args:
        pred: predicted mask, 2D or 3D; non-zero voxels are foreground.
        truth: reference mask of the same shape.
        spacing: voxel size per axis in mm (or one number for isotropic voxels).
        tolerance: the largest boundary distance in mm counted as agreement (e.g. 2.0), >= 0.

    Returns:
        NSD in [0, 1]; 1.0 when both masks are empty, 0.0 when exactly one is.

    Raises:
        ValueError: mismatched shapes, masks that are not 2D/3D, a bad ``spacing`` or a negative
            or non-finite ``tolerance``.
    """
    tolerance = _nsd_tolerance(tolerance)
    pred, truth = _binary_pair(pred, truth)
    sampling = _spacing(spacing, pred.ndim)
    pred_any, truth_any = bool(pred.any()), bool(truth.any())
    if pred_any != truth_any:
        return 0.0
    if not pred_any:
        return 1.0
    return _nsd_from(*surface_distances(pred, truth, sampling), tolerance)


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator > 0 else math.nan


def voxel_sensitivity(pred: np.ndarray, truth: np.ndarray) -> float:
    """Share of the truth's voxels that are predicted, ``|P & T| / |T|``.

    Args:
        pred: predicted mask, 2D or 3D; non-zero voxels are foreground.
        truth: reference mask of the same shape.

    Returns:
        Sensitivity in [0, 1]; NaN when the truth is empty (nothing to find).

    Raises:
        ValueError: the shapes differ or the masks are not 2D/3D.
    """
    pred, truth = _binary_pair(pred, truth)
    return _ratio(int(np.count_nonzero(pred & truth)), int(np.count_nonzero(truth)))


def voxel_specificity(pred: np.ndarray, truth: np.ndarray) -> float:
    """Share of the truth's background voxels left unpredicted, ``|~P & ~T| / |~T|``.

    Args:
        pred: predicted mask, 2D or 3D; non-zero voxels are foreground.
        truth: reference mask of the same shape.

    Returns:
        Specificity in [0, 1] (near 1 for almost any prediction: the background is large);
        NaN when the truth fills the image.

    Raises:
        ValueError: the shapes differ or the masks are not 2D/3D.
    """
    pred, truth = _binary_pair(pred, truth)
    negatives = int(truth.size - np.count_nonzero(truth))
    return _ratio(negatives - int(np.count_nonzero(pred & ~truth)), negatives)


def lesion_counts(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    """Lesion-wise detection: true positive, false negative and false positive components.

    Components use full connectivity (8 neighbours in 2D, 26 in 3D). A truth component that
    shares at least one voxel with the prediction is detected (true positive), else missed (false
    negative); a predicted component that shares no voxel with the truth is a false positive.

    Args:
        pred: predicted mask, 2D or 3D; non-zero voxels are foreground.
        truth: reference mask of the same shape.

    Returns:
        ``(tp, fn, fp)``: counts of truth lesions detected, truth lesions missed, and predicted
        components touching no truth lesion.

    Raises:
        ValueError: the shapes differ or the masks are not 2D/3D.
    """
    pred, truth = _binary_pair(pred, truth)
    either = pred | truth
    if not either.any():
        return 0, 0, 0
    # Components lie inside the bounding box of both masks: label that crop only.
    box = tuple(slice(int(idx.min()), int(idx.max()) + 1) for idx in np.nonzero(either))
    pred, truth = pred[box], truth[box]
    structure = ndimage.generate_binary_structure(pred.ndim, pred.ndim)
    truth_components, n_truth = ndimage.label(truth, structure=structure)
    pred_components, n_pred = ndimage.label(pred, structure=structure)
    overlap = pred & truth
    detected = np.count_nonzero(np.unique(truth_components[overlap]))
    touching = np.count_nonzero(np.unique(pred_components[overlap]))
    return int(detected), int(n_truth - detected), int(n_pred - touching)


def lesion_detection(
    tp: Sequence[float] | np.ndarray,
    fn: Sequence[float] | np.ndarray,
    fp: Sequence[float] | np.ndarray,
) -> dict[str, float]:
    """Whole-set lesion-wise detection rates from per-case counts (:func:`lesion_counts`).

    Args:
        tp: true positive lesions per case, shape ``(N,)``.
        fn: missed lesions per case, shape ``(N,)``.
        fp: false positive components per case, shape ``(N,)``.

    Returns:
        ``lesion_sensitivity``: detected truth lesions over all truth lesions, pooled over the
        cases (NaN with no truth lesion); ``lesion_fp_per_case``: false positive components per
        case.

    Raises:
        ValueError: the arrays are empty or of different lengths.
    """
    counts = [np.asarray(values, dtype=np.float64) for values in (tp, fn, fp)]
    if counts[0].ndim != 1 or counts[0].size == 0 or {c.shape for c in counts} != {counts[0].shape}:
        raise ValueError(
            "tp, fn and fp must be non-empty 1-D arrays of the same length (one count per case), "
            f"got shapes {[c.shape for c in counts]}"
        )
    found, missed, false = (float(c.sum()) for c in counts)
    return {
        "lesion_sensitivity": found / (found + missed) if found + missed > 0 else math.nan,
        "lesion_fp_per_case": false / counts[0].size,
    }


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
    nsd_tolerance: float = 2.0,
) -> dict[str, float]:
    """Every segmentation metric of one case, per class and averaged over the classes.

    Args:
        pred_labels: predicted label map, integer class per voxel, shape ``(X, Y)`` or ``(X, Y, Z)``.
        truth_labels: reference label map of the same shape.
        spacing: voxel size per axis in mm (or one number for isotropic voxels).
        classes: the label values to evaluate, e.g. ``(1,)`` for a binary task or ``(1, 2)``;
            include 0 to score the background too. A class missing from one map follows the
            empty-mask conventions (module docstring).
        nsd_tolerance: the NSD tolerance in mm (``eval.nsd_tolerance``), >= 0.

    Returns:
        For each class ``c``: ``<m>_c`` for every metric ``m`` of :data:`METRICS` (distances in
        mm; ``hd95``/``assd`` NaN and ``hd95_worst``/``assd_worst`` the image diagonal when
        exactly one mask is empty), ``lesion_tp_c``, ``lesion_fn_c``, ``lesion_fp_c``
        (:func:`lesion_counts`), and ``pred_voxels_c``, ``truth_voxels_c`` (voxel counts, used by
        :func:`summarize_segmentation` to count empty masks). Then ``<m>``: the mean of ``<m>_c``
        over the classes that have a value (NaN entries are left out; NaN if every class is NaN);
        ``lesion_tp``, ``lesion_fn``, ``lesion_fp``: sums over the classes; and ``diagonal_mm``
        (:func:`image_diagonal`).

    Raises:
        ValueError: mismatched shapes (both named), masks that are not 2D/3D, a bad ``spacing``,
            an empty or repeated ``classes`` or a negative ``nsd_tolerance``.
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
    tolerance = _nsd_tolerance(nsd_tolerance)
    diagonal = image_diagonal(pred_labels.shape, sampling)
    labels = _classes(classes)
    result: dict[str, float] = {}
    for c in labels:
        pred = pred_labels == c
        truth = truth_labels == c
        n_pred, n_truth = int(np.count_nonzero(pred)), int(np.count_nonzero(truth))
        n_both = int(np.count_nonzero(pred & truth))
        result[f"dice_{c}"] = dice(pred, truth)
        result[f"iou_{c}"] = iou(pred, truth)
        if n_pred == 0 and n_truth == 0:
            result[f"hd95_{c}"] = result[f"assd_{c}"] = 0.0
            result[f"nsd_{c}"] = 1.0
        elif n_pred == 0 or n_truth == 0:
            result[f"hd95_{c}"] = result[f"assd_{c}"] = math.nan
            result[f"nsd_{c}"] = 0.0
        else:
            distances = surface_distances(pred, truth, sampling)
            result[f"hd95_{c}"] = _hd95_from(*distances)
            result[f"assd_{c}"] = _assd_from(*distances)
            result[f"nsd_{c}"] = _nsd_from(*distances, tolerance)
        for name in ("hd95", "assd"):
            value = result[f"{name}_{c}"]
            result[f"{name}_worst_{c}"] = diagonal if math.isnan(value) else value
        result[f"voxel_sensitivity_{c}"] = _ratio(n_both, n_truth)
        negatives = truth.size - n_truth
        result[f"voxel_specificity_{c}"] = _ratio(negatives - (n_pred - n_both), negatives)
        tp, fn, fp = lesion_counts(pred, truth)
        result[f"lesion_tp_{c}"], result[f"lesion_fn_{c}"] = float(tp), float(fn)
        result[f"lesion_fp_{c}"] = float(fp)
        result[f"pred_voxels_{c}"] = float(n_pred)
        result[f"truth_voxels_{c}"] = float(n_truth)
    for name in METRICS:
        result[name] = nanmean([result[f"{name}_{c}"] for c in labels])
    for name in LESION_COUNTS:
        result[name] = float(sum(result[f"{name}_{c}"] for c in labels))
    result["diagonal_mm"] = diagonal
    return result


def summarize_segmentation(
    per_case: Sequence[Mapping[str, float]], classes: Sequence[int] = (1,)
) -> dict[str, float]:
    """Whole-set means of the per-case metrics, with the empty-mask cases and lesions counted.

    Args:
        per_case: one :func:`segmentation_metrics` result per case, all for the same ``classes``.
        classes: the classes those results were computed for.

    Returns:
        ``n_cases``; for each metric ``m`` of :data:`METRICS`: ``m`` (mean over cases of the
        class-averaged value) and ``m_<c>`` per class, all leaving NaN out (so ``hd95`` and
        ``assd`` means are over the cases where both masks are non-empty or both empty, while
        ``hd95_worst`` and ``assd_worst`` count every case); per class ``both_empty_<c>`` (cases
        scored 1/0 by convention), ``pred_empty_<c>`` (structure present but not predicted: Dice
        0, distances NaN / the diagonal), ``truth_empty_<c>`` (structure predicted where there is
        none: Dice 0, distances NaN / the diagonal), plus their totals over the classes
        ``both_empty``, ``pred_empty``, ``truth_empty`` (in case-class pairs) and ``one_empty``
        (``pred_empty + truth_empty``: the case-class pairs left out of ``hd95``/``assd`` and
        scored the diagonal in ``hd95_worst``/``assd_worst``); lesion-wise ``lesion_tp``,
        ``lesion_fn``, ``lesion_fp`` (totals over cases, and ``_<c>`` per class),
        ``lesion_sensitivity`` and ``lesion_fp_per_case`` (:func:`lesion_detection`, also per
        class).

    Raises:
        ValueError: ``per_case`` is empty or a result lacks a key for one of ``classes``.
    """
    if not per_case:
        raise ValueError("per_case must hold at least one case's metrics")
    labels = _classes(classes)
    per_class = (*METRICS, *LESION_COUNTS, "pred_voxels", "truth_voxels")
    needed = [f"{m}_{c}" for c in labels for m in per_class]
    for index, case in enumerate(per_case):
        missing = [key for key in (*needed, *METRICS, *LESION_COUNTS) if key not in case]
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
    for suffix in ("", *[f"_{c}" for c in labels]):
        counts = [[case[f"{name}{suffix}"] for case in per_case] for name in LESION_COUNTS]
        for name, values in zip(LESION_COUNTS, counts, strict=True):
            summary[f"{name}{suffix}"] = float(sum(values))
        for name, value in lesion_detection(*counts).items():
            summary[f"{name}{suffix}"] = value
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
    summary["one_empty"] = float(totals["pred_empty"] + totals["truth_empty"])
    return summary
