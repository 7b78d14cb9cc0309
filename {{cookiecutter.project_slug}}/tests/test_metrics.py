"""The project's metrics agree with MONAI (and scikit-learn, if installed) and follow the spec.

MONAI is the reference for every metric on seeded random cases and on edge cases. Two of its
defaults would hide real disagreements, so they are set explicitly: ``spacing`` (without it MONAI
measures in voxels) and ``ignore_empty=False`` (its default gives NaN where the spec says 1).
Where the spec's convention differs from MONAI's (distances of empty masks) the test checks both
sides of the difference. Tolerance: MONAI computes in float32, so values must agree to
``1e-5`` relative or ``1e-4`` absolute (mm for distances).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from monai.metrics import (
    compute_average_surface_distance,
    compute_confusion_matrix_metric,
    compute_dice,
    compute_hausdorff_distance,
    compute_iou,
    compute_roc_auc,
    compute_surface_dice,
    get_confusion_matrix,
)
from scipy import ndimage
from scipy.spatial.distance import cdist

from {{ cookiecutter.package_name }}.metrics.bootstrap import bootstrap_ci, bootstrap_cis
from {{ cookiecutter.package_name }}.metrics.classification import (
    accuracy,
    auroc,
    balanced_accuracy,
    classification_metrics,
    confusion_matrix,
    macro_auroc,
    per_class_auroc,
    positive_index,
    sensitivity,
    specificity,
)
from {{ cookiecutter.package_name }}.metrics.registry import (
    MONITORS,
    classification_set,
    monitor_mode,
    monitors,
    register,
    registered,
    segmentation_case,
    unregister,
)
from {{ cookiecutter.package_name }}.metrics.segmentation import (
    assd,
    dice,
    hd95,
    image_diagonal,
    iou,
    lesion_counts,
    lesion_detection,
    normalized_surface_dice,
    segmentation_metrics,
    summarize_segmentation,
    surface,
    voxel_sensitivity,
    voxel_specificity,
)

RTOL, ATOL = 1e-5, 1e-4


def close(ours: float, reference: float) -> bool:
    return math.isclose(ours, reference, rel_tol=RTOL, abs_tol=ATOL)


# --------------------------------------------------------------------------- segmentation helpers


def blobs(rng: np.random.Generator, shape: tuple[int, ...], fraction: float) -> np.ndarray:
    """Irregular, possibly disconnected structures covering about ``fraction`` of the image."""
    field = ndimage.gaussian_filter(rng.random(shape), sigma=2.0)
    return field > np.quantile(field, 1.0 - fraction)


def label_map(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Labels 0 (background), 1 and 2 (class 2 drawn over class 1)."""
    labels = np.zeros(shape, dtype=np.int64)
    labels[blobs(rng, shape, 0.3)] = 1
    labels[blobs(rng, shape, 0.15)] = 2
    return labels


def monai_segmentation(
    pred: np.ndarray, truth: np.ndarray, spacing, classes: list[int]
) -> dict[str, list[float]]:
    """MONAI's Dice, IoU, HD95 and symmetric ASD for each class, from one-hot channels."""

    def one_hot(labels: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.stack([labels == c for c in classes])[None].astype(np.float32))

    p, t = one_hot(pred), one_hot(truth)
    with warnings.catch_warnings():  # MONAI warns about empty masks and its own deprecations
        warnings.simplefilter("ignore")
        values = {
            "dice": compute_dice(p, t, include_background=True, ignore_empty=False),
            "iou": compute_iou(p, t, include_background=True, ignore_empty=False),
            "hd95": compute_hausdorff_distance(
                p, t, include_background=True, percentile=95, spacing=list(spacing)
            ),
            "assd": compute_average_surface_distance(
                p, t, include_background=True, symmetric=True, spacing=list(spacing)
            ),
        }
    return {name: tensor[0].tolist() for name, tensor in values.items()}


def brute_force_distances(pred: np.ndarray, truth: np.ndarray, spacing) -> tuple[float, float]:
    """HD95 and ASSD from all pairwise distances between surface voxels (small masks only)."""

    def boundary(mask: np.ndarray) -> np.ndarray:
        padded = np.pad(mask, 1)
        inner = np.ones_like(mask)
        for axis in range(mask.ndim):
            for step in (-1, 1):
                inner &= np.roll(padded, step, axis=axis)[
                    tuple(slice(1, -1) for _ in range(mask.ndim))
                ]
        return np.argwhere(mask & ~inner) * np.asarray(spacing)

    distances = cdist(boundary(pred), boundary(truth))
    forward, backward = distances.min(axis=1), distances.min(axis=0)
    hd = max(np.percentile(forward, 95), np.percentile(backward, 95))
    return hd, (forward.sum() + backward.sum()) / (forward.size + backward.size)


CASES = [
    ((24, 20, 16), (1.0, 1.0, 1.0)),
    ((24, 20, 16), (0.7, 1.2, 3.0)),
    ((40, 36), (1.0, 1.0)),
    ((40, 36), (0.5, 2.0)),
]


# --------------------------------------------------------------------------- segmentation vs MONAI


@pytest.mark.parametrize(("shape", "spacing"), CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_random_label_maps_match_monai(shape, spacing, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pred, truth = label_map(rng, shape), label_map(rng, shape)
    classes = [0, 1, 2]  # with the background: MONAI's include_background=True
    ours = segmentation_metrics(pred, truth, spacing, classes=classes)
    reference = monai_segmentation(pred, truth, spacing, classes)
    for name, values in reference.items():
        for c, value in zip(classes, values, strict=True):
            assert math.isfinite(value)
            assert close(ours[f"{name}_{c}"], value), (name, c, ours[f"{name}_{c}"], value)
    # Foreground only (include_background=False): the means are over classes 1 and 2.
    foreground = segmentation_metrics(pred, truth, spacing, classes=[1, 2])
    for name, values in reference.items():
        assert close(foreground[name], float(np.mean(values[1:])))


@pytest.mark.parametrize(("shape", "spacing"), CASES)
def test_distances_match_brute_force(shape, spacing) -> None:
    rng = np.random.default_rng(7)
    pred, truth = blobs(rng, shape, 0.1), blobs(rng, shape, 0.1)
    hd, mean = brute_force_distances(pred, truth, spacing)
    assert hd95(pred, truth, spacing) == pytest.approx(hd, rel=1e-12)
    assert assd(pred, truth, spacing) == pytest.approx(mean, rel=1e-12)


def test_single_voxels_anisotropic() -> None:
    spacing = (0.5, 1.0, 3.0)
    pred = np.zeros((9, 8, 7), dtype=bool)
    truth = np.zeros_like(pred)
    pred[2, 3, 1] = True
    truth[4, 4, 2] = True
    expected = math.sqrt((2 * 0.5) ** 2 + (1 * 1.0) ** 2 + (1 * 3.0) ** 2)
    assert hd95(pred, truth, spacing) == pytest.approx(expected)
    assert assd(pred, truth, spacing) == pytest.approx(expected)
    assert dice(pred, truth) == 0.0
    reference = monai_segmentation(pred.astype(int), truth.astype(int), spacing, [1])
    assert close(reference["hd95"][0], expected)
    assert close(reference["assd"][0], expected)
    # Spacing is applied: in voxels the distance would be sqrt(6).
    assert hd95(pred, truth, 1.0) == pytest.approx(math.sqrt(6))


@pytest.mark.parametrize(
    "case", ["identical", "voxel_in_blob", "touches_border", "fills_image", "one_voxel_off"]
)
def test_edge_shapes_match_monai(case: str) -> None:
    shape, spacing = (12, 10, 8), (0.8, 0.8, 2.5)
    rng = np.random.default_rng(3)
    truth = blobs(rng, shape, 0.25)
    pred = truth.copy()
    if case == "voxel_in_blob":
        pred = np.zeros(shape, dtype=bool)
        pred[tuple(np.argwhere(truth)[0])] = True
    elif case == "touches_border":
        truth = np.zeros(shape, dtype=bool)
        truth[:5, :, :3] = True
        pred = np.zeros(shape, dtype=bool)
        pred[:7, 2:, :] = True
    elif case == "fills_image":
        pred = np.ones(shape, dtype=bool)
    elif case == "one_voxel_off":
        pred = np.roll(truth, 1, axis=2)
    ours = segmentation_metrics(pred.astype(int), truth.astype(int), spacing, classes=[1])
    reference = monai_segmentation(pred.astype(int), truth.astype(int), spacing, [1])
    for name, values in reference.items():
        assert close(ours[f"{name}_1"], values[0]), (name, ours[f"{name}_1"], values[0])
    if case == "identical":
        assert ours["dice"] == ours["iou"] == 1.0
        assert ours["hd95"] == ours["assd"] == 0.0


def test_surface_is_boundary_including_image_border() -> None:
    mask = np.zeros((5, 5), dtype=bool)
    mask[0:3, 1:4] = True  # touches the top border
    expected = mask.copy()
    expected[1, 2] = False  # the only voxel with four foreground face-neighbours
    np.testing.assert_array_equal(surface(mask), expected)


# --------------------------------------------------------------------------- empty masks


def test_both_empty_follow_spec_not_monai_defaults() -> None:
    empty = np.zeros((6, 6, 4), dtype=int)
    ours = segmentation_metrics(empty, empty, (1.0, 1.0, 2.0), classes=[1])
    assert (ours["dice_1"], ours["iou_1"], ours["hd95_1"], ours["assd_1"]) == (1.0, 1.0, 0.0, 0.0)
    reference = monai_segmentation(empty, empty, (1.0, 1.0, 2.0), [1])
    assert reference["dice"] == reference["iou"] == [1.0]  # with ignore_empty=False
    assert not math.isfinite(reference["hd95"][0])  # MONAI: NaN, the spec: 0
    one_hot = torch.zeros(1, 1, 6, 6, 4)
    assert math.isnan(compute_dice(one_hot, one_hot).item())  # MONAI's default: NaN, spec: 1


@pytest.mark.parametrize("empty_side", ["pred", "truth"])
def test_one_empty_gives_zero_overlap_and_nan_distances(empty_side: str) -> None:
    full = np.zeros((8, 7, 5), dtype=int)
    full[2:5, 2:4, 1:3] = 1
    empty = np.zeros_like(full)
    pred, truth = (empty, full) if empty_side == "pred" else (full, empty)
    ours = segmentation_metrics(pred, truth, (1.0, 1.0, 1.0), classes=[1])
    assert ours["dice"] == ours["iou"] == 0.0
    assert math.isnan(ours["hd95"]) and math.isnan(ours["assd"])
    assert math.isnan(hd95(pred, truth, 1.0)) and math.isnan(assd(pred, truth, 1.0))
    reference = monai_segmentation(pred, truth, (1.0, 1.0, 1.0), [1])
    assert reference["dice"] == reference["iou"] == [0.0]
    assert not math.isfinite(reference["hd95"][0]) and not math.isfinite(reference["assd"][0])


def test_class_absent_from_truth_and_summary_counts() -> None:
    rng = np.random.default_rng(11)
    shape, spacing = (20, 18, 10), (1.0, 1.0, 2.0)
    truth = np.where(blobs(rng, shape, 0.2), 1, 0)  # class 2 absent from the truth
    pred = label_map(rng, shape)
    ours = segmentation_metrics(pred, truth, spacing, classes=[1, 2])
    assert ours["dice_2"] == 0.0 and math.isnan(ours["hd95_2"])
    assert ours["dice"] == pytest.approx(ours["dice_1"] / 2)
    assert ours["hd95"] == ours["hd95_1"] and ours["assd"] == ours["assd_1"]  # NaN left out
    reference = monai_segmentation(pred, truth, spacing, [1])
    assert close(ours["hd95_1"], reference["hd95"][0])
    assert close(ours["dice_1"], reference["dice"][0])

    empty = np.zeros(shape, dtype=int)
    cases = [
        ours,
        segmentation_metrics(truth, truth, spacing, classes=[1, 2]),  # class 2 empty in both
        segmentation_metrics(empty, truth, spacing, classes=[1, 2]),  # class 1 missed
    ]
    summary = summarize_segmentation(cases, classes=[1, 2])
    assert summary["n_cases"] == 3
    assert (summary["both_empty_1"], summary["pred_empty_1"], summary["truth_empty_1"]) == (0, 1, 0)
    assert (summary["both_empty_2"], summary["pred_empty_2"], summary["truth_empty_2"]) == (2, 0, 1)
    assert (summary["both_empty"], summary["pred_empty"], summary["truth_empty"]) == (2, 1, 1)
    assert summary["dice_1"] == pytest.approx((ours["dice_1"] + 1.0 + 0.0) / 3)
    assert summary["hd95_1"] == pytest.approx((ours["hd95_1"] + 0.0) / 2)  # the NaN case left out
    with pytest.raises(ValueError, match="lacks"):
        summarize_segmentation(cases, classes=[1, 3])


# --------------------------------------------------------------------------- NSD


def monai_nsd(pred: np.ndarray, truth: np.ndarray, spacing, classes: list[int], tolerance: float):
    """MONAI's normalized surface Dice per class (no sub-voxel areas, Euclidean distances)."""
    one_hot = [
        torch.from_numpy(np.stack([labels == c for c in classes])[None].astype(np.float32))
        for labels in (pred, truth)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = compute_surface_dice(
            *one_hot,
            class_thresholds=[tolerance] * len(classes),
            include_background=True,
            spacing=list(spacing),
        )
    return values[0].tolist()


# Tolerances that no voxel-to-voxel distance of these spacings equals: MONAI compares float32
# distances with the tolerance, the project float64, so an exact tie could go either way.
@pytest.mark.parametrize(("shape", "spacing"), CASES)
@pytest.mark.parametrize("tolerance", [0.0, 1.3, 2.9])
def test_nsd_matches_monai(shape, spacing, tolerance: float) -> None:
    rng = np.random.default_rng(4)
    pred, truth = label_map(rng, shape), label_map(rng, shape)
    classes = [0, 1, 2]
    ours = segmentation_metrics(pred, truth, spacing, classes=classes, nsd_tolerance=tolerance)
    reference = monai_nsd(pred, truth, spacing, classes, tolerance)
    for c, value in zip(classes, reference, strict=True):
        assert math.isfinite(value) and 0.0 < value < 1.0 or tolerance == 0.0
        assert close(ours[f"nsd_{c}"], value), (c, ours[f"nsd_{c}"], value)
        binary = normalized_surface_dice(pred == c, truth == c, spacing, tolerance)
        assert binary == ours[f"nsd_{c}"]
    assert close(ours["nsd"], float(np.mean(reference)))


def test_nsd_by_hand_and_empty_masks() -> None:
    # A 4 x 4 square (rows 2-5, columns 3-6) and the same square two rows (2 x 1.5 mm) lower.
    # Each surface has 12 voxels. From the truth's surface to the prediction's: row 2 (4 voxels)
    # 3 mm away; row 3's two voxels 1.5 mm; row 4's two voxels 0 mm (on the prediction's top
    # row); row 5: its end voxels 0 mm, its two middle ones 1 mm (one column from the
    # prediction's side). By symmetry the other direction is the same.
    truth = np.zeros((12, 10), dtype=bool)
    truth[2:6, 3:7] = True
    pred = np.roll(truth, 2, axis=0)
    spacing = (1.5, 1.0)
    one_side = np.array([3.0] * 4 + [1.5] * 2 + [0.0] * 2 + [0.0, 1.0, 1.0, 0.0])
    points_p, points_t = (np.argwhere(surface(m)) * spacing for m in (pred, truth))
    np.testing.assert_allclose(np.sort(cdist(points_t, points_p).min(axis=1)), np.sort(one_side))
    for tolerance, within in [(0.0, 4), (1.0, 6), (1.6, 8), (3.1, 12)]:
        assert normalized_surface_dice(pred, truth, spacing, tolerance) == pytest.approx(
            2 * within / 24
        )
        assert close(
            monai_nsd(pred.astype(int), truth.astype(int), spacing, [1], tolerance)[0],
            2 * within / 24,
        )
    empty = np.zeros_like(truth)
    assert normalized_surface_dice(empty, empty, spacing, 2.0) == 1.0  # MONAI: NaN
    assert math.isnan(monai_nsd(empty.astype(int), empty.astype(int), spacing, [1], 2.0)[0])
    assert normalized_surface_dice(pred, empty, spacing, 2.0) == 0.0
    assert monai_nsd(pred.astype(int), empty.astype(int), spacing, [1], 2.0) == [0.0]
    with pytest.raises(ValueError, match="tolerance"):
        normalized_surface_dice(pred, truth, spacing, -1.0)


# --------------------------------------------------------------------------- one empty: worst value


def test_image_diagonal_is_the_brats_worst_value() -> None:
    assert image_diagonal((240, 240, 155), 1.0) == pytest.approx(373.13, abs=0.01)
    assert image_diagonal((10, 20), (0.5, 2.0)) == pytest.approx(math.hypot(5.0, 40.0))
    with pytest.raises(ValueError, match="positive"):
        image_diagonal((10, 0), 1.0)


def test_missed_lesion_gets_the_diagonal_in_the_worst_convention() -> None:
    shape, spacing = (20, 16, 8), (0.8, 0.8, 2.5)
    diagonal = math.sqrt(16.0**2 + 12.8**2 + 20.0**2)
    truth = np.zeros(shape, dtype=int)
    truth[5:9, 5:9, 2:5] = 1
    close_pred = np.roll(truth, 1, axis=0)
    good = segmentation_metrics(close_pred, truth, spacing)
    missed = segmentation_metrics(np.zeros(shape, dtype=int), truth, spacing)
    false_alarm = segmentation_metrics(truth, np.zeros(shape, dtype=int), spacing)
    assert good["hd95_worst"] == good["hd95"] > 0 and good["assd_worst"] == good["assd"]
    for case in (missed, false_alarm):
        assert math.isnan(case["hd95"]) and math.isnan(case["assd"])
        assert case["hd95_worst"] == case["assd_worst"] == pytest.approx(diagonal)
        assert case["nsd"] == 0.0 and case["diagonal_mm"] == pytest.approx(diagonal)
    summary = summarize_segmentation([good, missed, false_alarm])
    # Left out, a miss makes the mean look as good as the one good case ...
    assert summary["hd95"] == pytest.approx(good["hd95"])
    # ... while the worst-value convention counts it.
    assert summary["hd95_worst"] == pytest.approx((good["hd95"] + 2 * diagonal) / 3)
    assert summary["one_empty"] == 2 and summary["pred_empty"] == summary["truth_empty"] == 1


# --------------------------------------------------------------------------- voxel-wise, lesion-wise


def test_voxel_sensitivity_and_specificity_match_scikit_learn() -> None:
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(8)
    for shape in [(24, 20, 16), (40, 36)]:
        pred, truth = label_map(rng, shape), label_map(rng, shape)
        ours = segmentation_metrics(pred, truth, 1.0, classes=[1, 2])
        for c in (1, 2):
            p, t = (pred == c).ravel(), (truth == c).ravel()
            assert ours[f"voxel_sensitivity_{c}"] == pytest.approx(sk.recall_score(t, p))
            assert ours[f"voxel_specificity_{c}"] == pytest.approx(
                sk.recall_score(t, p, pos_label=False)
            )
            assert voxel_sensitivity(pred == c, truth == c) == ours[f"voxel_sensitivity_{c}"]
            assert voxel_specificity(pred == c, truth == c) == ours[f"voxel_specificity_{c}"]
    empty, full = np.zeros((4, 4), dtype=bool), np.ones((4, 4), dtype=bool)
    assert math.isnan(voxel_sensitivity(full, empty)) and voxel_specificity(full, empty) == 0.0
    assert math.isnan(voxel_specificity(empty, full)) and voxel_sensitivity(empty, full) == 0.0


def test_lesion_counts_by_hand() -> None:
    truth = np.zeros((12, 12), dtype=int)
    truth[1:4, 1:5] = 1  # lesion A: found by two separate predicted pieces
    truth[1:3, 8:11] = 1  # lesion B: missed
    truth[6, 6] = truth[7, 7] = 1  # lesion C: two voxels touching at a corner, one lesion
    truth[9:11, 2] = 2  # a lesion of class 2: found
    pred = np.zeros_like(truth)
    pred[1, 1] = pred[3, 4] = 1  # two pieces on A, apart: one true positive, no false positive
    pred[7, 7] = 1  # on C
    pred[10, 10] = pred[4, 10] = 1  # two false positives, apart from everything
    pred[10, 2] = 2
    pred[0, 6] = 2  # a class-2 false positive
    assert lesion_counts(pred == 1, truth == 1) == (2, 1, 2)  # TP A and C, FN B, FP two
    assert lesion_counts(pred == 2, truth == 2) == (1, 0, 1)
    ours = segmentation_metrics(pred, truth, 1.0, classes=[1, 2])
    assert (ours["lesion_tp_1"], ours["lesion_fn_1"], ours["lesion_fp_1"]) == (2, 1, 2)
    assert (ours["lesion_tp"], ours["lesion_fn"], ours["lesion_fp"]) == (3, 1, 3)
    # Face connectivity would split C in two and count 3 truth lesions of class 1: it is not used.
    assert ndimage.label(truth == 1)[1] == 4
    # One predicted component covering two lesions: two true positives, no false positive.
    bridge = np.zeros((3, 9), dtype=bool)
    bridge[1, :] = True
    two = np.zeros_like(bridge)
    two[1, 1] = two[1, 7] = True
    assert lesion_counts(bridge, two) == (2, 0, 0)
    assert lesion_counts(two, bridge) == (1, 0, 0)
    summary = summarize_segmentation([ours, ours], classes=[1, 2])
    assert summary["lesion_tp"] == 6 and summary["lesion_fn"] == 2 and summary["lesion_fp"] == 6
    assert summary["lesion_sensitivity"] == pytest.approx(6 / 8)
    assert summary["lesion_sensitivity_1"] == pytest.approx(4 / 6)
    assert summary["lesion_fp_per_case"] == pytest.approx(3.0)
    assert lesion_detection([0, 0], [0, 0], [1, 0]) == {
        "lesion_sensitivity": pytest.approx(math.nan, nan_ok=True),
        "lesion_fp_per_case": 0.5,
    }


# --------------------------------------------------------------------------- validation, speed


def test_bad_segmentation_inputs() -> None:
    a, b = np.zeros((4, 5, 6), dtype=int), np.zeros((4, 5, 7), dtype=int)
    with pytest.raises(ValueError, match=r"\(4, 5, 6\) and \(4, 5, 7\)"):
        segmentation_metrics(a, b, (1, 1, 1))
    with pytest.raises(ValueError, match=r"\(4, 5, 6\) and \(4, 5, 7\)"):
        dice(a, b)
    with pytest.raises(ValueError, match="one value per axis"):
        segmentation_metrics(a, a, (1.0, 1.0))
    with pytest.raises(ValueError, match="positive"):
        hd95(a, a, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="2D"):
        iou(np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match="classes"):
        segmentation_metrics(a, a, 1.0, classes=[])


def random_scores(rng: np.random.Generator, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and informative probabilities, rounded so that ties occur."""
    labels = rng.integers(0, k, size=n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[labels]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return labels, np.round(probabilities, 2)


def monai_classification(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, np.ndarray]:
    k = probabilities.shape[1]
    one_hot = torch.from_numpy(np.eye(k, dtype=np.float32)[labels])
    predicted = torch.from_numpy(np.eye(k, dtype=np.float32)[probabilities.argmax(axis=1)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        counts = get_confusion_matrix(predicted, one_hot, include_background=True).sum(dim=0)
        return {
            "counts": counts.numpy(),  # per class: tp, fp, tn, fn
            "sensitivity": compute_confusion_matrix_metric("sensitivity", counts).numpy(),
            "specificity": compute_confusion_matrix_metric("specificity", counts).numpy(),
            "auroc": np.asarray(
                compute_roc_auc(torch.from_numpy(probabilities), one_hot, average="none"),
                dtype=np.float64,
            ),
        }


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("seed", [0, 1])
def test_classification_matches_monai(k: int, seed: int) -> None:
    labels, probabilities = random_scores(np.random.default_rng(seed), 120, k)
    names = [f"c{i}" for i in range(k)]
    ours = classification_metrics(labels, probabilities, names)
    reference = monai_classification(labels, probabilities)
    matrix = np.asarray(ours["confusion_matrix"])
    tp = np.diag(matrix)
    fp, fn = matrix.sum(axis=0) - tp, matrix.sum(axis=1) - tp
    tn = matrix.sum() - tp - fp - fn
    np.testing.assert_array_equal(np.stack([tp, fp, tn, fn], axis=1), reference["counts"])
    for i, name in enumerate(names):
        for metric in ("sensitivity", "specificity", "auroc"):
            assert close(ours[f"{metric}_{name}"], float(reference[metric][i])), (metric, name)
    summary = 1 if k == 2 else slice(None)
    for metric in ("sensitivity", "specificity", "auroc"):
        assert close(ours[metric], float(np.mean(reference[metric][summary])))
    assert ours["accuracy"] == pytest.approx(np.trace(matrix) / 120)
    assert ours["balanced_accuracy"] == pytest.approx(float(np.mean(reference["sensitivity"])))
    assert ours["n_cases"] == 120 and matrix.sum() == 120


def test_class_absent_from_truth() -> None:
    rng = np.random.default_rng(5)
    labels, probabilities = random_scores(rng, 60, 3)
    labels[labels == 2] = 0  # class 2 never occurs
    ours = classification_metrics(labels, probabilities, ["a", "b", "c"])
    reference = monai_classification(labels, probabilities)
    assert math.isnan(ours["auroc_c"]) and math.isnan(reference["auroc"][2])
    assert math.isnan(ours["sensitivity_c"])
    assert close(ours["auroc"], float(np.mean(reference["auroc"][:2])))  # defined classes only
    assert close(ours["auroc_a"], float(reference["auroc"][0]))
    recall = np.asarray([ours["sensitivity_a"], ours["sensitivity_b"]])
    assert ours["balanced_accuracy"] == pytest.approx(recall.mean())
    assert math.isfinite(ours["specificity_c"])  # class c has negatives: specificity is defined


def test_binary_by_hand() -> None:
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.6, 0.4, 0.8])  # one tie between a positive and a negative
    # Pairs (pos, neg): 0.4 vs {0.1 win, 0.4 tie, 0.6 loss}, 0.8 wins all -> (1 + .5 + 3) / 6
    assert auroc(labels == 1, scores) == pytest.approx(4.5 / 6)
    probabilities = np.stack([1 - scores, scores], axis=1)
    predictions = probabilities.argmax(axis=1)  # 0.4 -> class 0, 0.6 -> class 1
    np.testing.assert_array_equal(confusion_matrix(labels, predictions, 2), [[2, 1], [1, 1]])
    assert sensitivity(labels, predictions, 2) == pytest.approx(1 / 2)
    assert specificity(labels, predictions, 2) == pytest.approx(2 / 3)
    assert accuracy(labels, predictions) == pytest.approx(3 / 5)
    assert balanced_accuracy(labels, predictions, 2) == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert macro_auroc(labels, probabilities) == pytest.approx(4.5 / 6)
    assert math.isnan(auroc(np.zeros(4, dtype=bool), np.arange(4.0)))


def test_positive_class_decides_binary_sensitivity() -> None:
    sk = pytest.importorskip("sklearn.metrics")
    # Sorted names put 'nodule' first: index 1 is 'normal', not the abnormal class.
    names = ["nodule", "normal"]
    labels = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1])
    p_nodule = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.6, 0.1, 0.2, 0.3, 0.1, 0.4, 0.2])
    probabilities = np.stack([p_nodule, 1 - p_nodule], axis=1)
    predictions = probabilities.argmax(axis=1)  # nodule: 3 of 5 found, 1 false alarm of 7
    ours = classification_metrics(labels, probabilities, names, positive_class="nodule")
    assert ours["positive_class"] == "nodule"
    assert ours["sensitivity"] == pytest.approx(3 / 5) == ours["sensitivity_nodule"]
    assert ours["specificity"] == pytest.approx(6 / 7) == ours["specificity_nodule"]
    assert ours["ppv"] == pytest.approx(3 / 4) and ours["npv"] == pytest.approx(6 / 8)
    assert ours["sensitivity"] == pytest.approx(sk.recall_score(labels, predictions, pos_label=0))
    assert ours["ppv"] == pytest.approx(sk.precision_score(labels, predictions, pos_label=0))
    assert ours["npv"] == pytest.approx(sk.precision_score(labels, predictions, pos_label=1))
    assert ours["auroc"] == pytest.approx(sk.roc_auc_score(labels == 0, p_nodule))
    assert sensitivity(labels, predictions, 2, positive=0) == pytest.approx(3 / 5)
    assert specificity(labels, predictions, 2, positive=0) == pytest.approx(6 / 7)
    # Without a positive class: the second name, 'normal', whose sensitivity is nodule's
    # specificity. This is what the default used to report as "sensitivity".
    default = classification_metrics(labels, probabilities, names)
    assert default["positive_class"] == "normal"
    assert default["sensitivity"] == pytest.approx(6 / 7)
    assert positive_index(names, "") == 1 and positive_index(names, "nodule") == 0
    with pytest.raises(
        ValueError, match=r"'lesion' is not one of the classes \['nodule', 'normal'\]"
    ):
        classification_metrics(labels, probabilities, names, positive_class="lesion")
    three = np.full((3, 3), 1 / 3)
    with pytest.raises(ValueError, match="binary"):
        classification_metrics([0, 1, 2], three, ["a", "b", "c"], positive_class="a")
    assert classification_metrics([0, 1, 2], three, ["a", "b", "c"])["positive_class"] is None


def test_ppv_and_npv_match_scikit_learn_one_vs_rest() -> None:
    sk = pytest.importorskip("sklearn.metrics")
    labels, probabilities = random_scores(np.random.default_rng(3), 150, 3)
    ours = classification_metrics(labels, probabilities, ["a", "b", "c"])
    predictions = probabilities.argmax(axis=1)
    for k, name in enumerate("abc"):
        assert ours[f"ppv_{name}"] == pytest.approx(
            sk.precision_score(labels == k, predictions == k)
        )
        assert ours[f"npv_{name}"] == pytest.approx(
            sk.precision_score(labels == k, predictions == k, pos_label=False)
        )
    assert ours["ppv"] == pytest.approx(sk.precision_score(labels, predictions, average="macro"))


def test_matches_scikit_learn() -> None:
    sk = pytest.importorskip("sklearn.metrics")
    for k, seed in [(2, 0), (3, 1), (5, 2)]:
        labels, probabilities = random_scores(np.random.default_rng(seed), 150, k)
        probabilities /= probabilities.sum(axis=1, keepdims=True)  # scikit-learn insists
        ours = classification_metrics(labels, probabilities, [str(i) for i in range(k)])
        predictions = probabilities.argmax(axis=1)
        np.testing.assert_array_equal(
            ours["confusion_matrix"], sk.confusion_matrix(labels, predictions, labels=range(k))
        )
        assert ours["balanced_accuracy"] == pytest.approx(
            sk.balanced_accuracy_score(labels, predictions)
        )
        if k == 2:
            expected_auc = sk.roc_auc_score(labels, probabilities[:, 1])
            expected_sensitivity = sk.recall_score(labels, predictions)
        else:
            expected_auc = sk.roc_auc_score(labels, probabilities, multi_class="ovr")
            expected_sensitivity = sk.recall_score(labels, predictions, average="macro")
        assert ours["auroc"] == pytest.approx(expected_auc)
        assert ours["sensitivity"] == pytest.approx(expected_sensitivity)
        np.testing.assert_allclose(
            per_class_auroc(labels, probabilities),
            [sk.roc_auc_score(labels == i, probabilities[:, i]) for i in range(k)],
        )


def test_bad_classification_inputs() -> None:
    labels, probabilities = np.array([0, 1, 2]), np.full((3, 3), 1 / 3)
    with pytest.raises(ValueError, match="class_names"):
        classification_metrics(labels, probabilities, ["a", "b"])
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        classification_metrics(labels, probabilities[:, 0], ["a", "b", "c"])
    with pytest.raises(ValueError, match="one row per case"):
        classification_metrics(labels[:2], probabilities, ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"0\.\.2"):
        classification_metrics(np.array([0, 1, 3]), probabilities, ["a", "b", "c"])
    with pytest.raises(ValueError, match="finite"):
        classification_metrics(labels, np.full((3, 3), np.nan), ["a", "b", "c"])


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_contains_estimate_and_is_deterministic() -> None:
    values = np.random.default_rng(0).normal(0.8, 0.1, size=400)
    low, high = bootstrap_ci(values, n=4000, seed=3)
    assert low < values.mean() < high
    # The mean is about normal with standard error sd / sqrt(400): the 95% percentile interval is
    # about +-1.96 standard errors, the 50% one +-0.674 (4000 replicates: within a few percent).
    standard_error = values.std() / 20
    assert high - low == pytest.approx(2 * 1.96 * standard_error, rel=0.06)
    narrow = bootstrap_ci(values, n=4000, seed=3, level=0.5)
    assert narrow[1] - narrow[0] == pytest.approx(2 * 0.674 * standard_error, rel=0.06)
    assert low < narrow[0] < narrow[1] < high
    assert bootstrap_ci(values, n=4000, seed=3) == (low, high)
    assert bootstrap_ci(values, n=4000, seed=4) != (low, high)


def test_bootstrap_cis_draws_the_same_replicates_for_every_statistic() -> None:
    rng = np.random.default_rng(5)
    values = rng.normal(0.7, 0.1, 40)
    groups = np.repeat(np.arange(20), 2)
    both = bootstrap_cis(
        values, lambda v: {"mean": v.mean(), "median": np.median(v)}, groups=groups, n=300
    )
    assert both["mean"] == bootstrap_ci(values, np.mean, groups=groups, n=300)
    assert both["median"] == bootstrap_ci(values, np.median, groups=groups, n=300)
    assert both["median"] != both["mean"]


def test_bootstrap_default_statistic_ignores_nan() -> None:
    values = np.arange(1.0, 21.0)
    values[::2] = np.nan  # e.g. HD95 of cases with one empty mask; nearly every resample has one
    low, high = bootstrap_ci(values, n=200)
    assert 2.0 <= low < np.nanmean(values) < high <= 20.0


def test_bootstrap_narrows_with_more_data() -> None:
    rng = np.random.default_rng(1)
    small, large = rng.normal(size=25), rng.normal(size=2500)
    width_small = np.subtract(*bootstrap_ci(small, n=500)[::-1])
    width_large = np.subtract(*bootstrap_ci(large, n=500)[::-1])
    assert width_large < width_small / 5  # about sqrt(100) = 10 times narrower


def test_bootstrap_by_patient_widens_correlated_cases() -> None:
    rng = np.random.default_rng(2)
    patients = np.repeat(np.arange(20), 5)  # 20 patients, 5 images each
    values = rng.normal(0.0, 1.0, size=20)[patients] + rng.normal(0.0, 0.1, size=100)
    by_case = bootstrap_ci(values, n=500)
    by_patient = bootstrap_ci(values, groups=patients, n=500)
    # Resampling images acts as if there were 100 independent values; there are 20.
    assert (by_patient[1] - by_patient[0]) > 1.8 * (by_case[1] - by_case[0])
    assert by_patient[0] < values.mean() < by_patient[1]


def test_bootstrap_of_paired_arrays_skips_undefined_replicates() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1])  # about 1 resample in 11 has no positive case
    probabilities = np.array(
        [[0.9, 0.1], [0.6, 0.4], [0.7, 0.3], [0.2, 0.8], [0.5, 0.5], [0.3, 0.7]]
    )
    low, high = bootstrap_ci((labels, probabilities), macro_auroc, n=200, seed=0)
    point = macro_auroc(labels, probabilities)
    assert 0.0 <= low <= point <= high <= 1.0
    constant = np.zeros(10, dtype=int)  # AUROC never defined
    both_nan = bootstrap_ci((constant, np.full((10, 2), 0.5)), macro_auroc, n=20)
    assert all(math.isnan(v) for v in both_nan)


def test_bad_bootstrap_inputs() -> None:
    values = np.arange(10.0)
    with pytest.raises(ValueError, match="one group per case"):
        bootstrap_ci(values, groups=np.arange(9))
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(values, level=1.0)
    with pytest.raises(ValueError, match="at least 10"):
        bootstrap_ci(values, n=5)
    with pytest.raises(ValueError, match="no cases"):
        bootstrap_ci(np.array([]))
    with pytest.raises(ValueError, match="lengths"):
        bootstrap_ci((values, values[:5]), lambda a, b: 0.0)


# --------------------------------------------------------------------------- the metric registry


def test_registry_builtins_are_the_validation_metrics_and_agree_with_the_full_sets() -> None:
    assert [m.column for m in registered("segmentation")] == ["val_dice"]
    assert [m.column for m in registered("classification")] == [
        "val_accuracy",
        "val_balanced_accuracy",
        "val_auroc",
    ]
    assert monitors("segmentation") == ("val_dice", "val_loss")
    assert MONITORS["classification"][0] == "val_auroc" and MONITORS["classification"][-1] == (
        "val_loss"
    )
    rng = np.random.default_rng(3)
    truth = np.zeros((12, 10, 6), dtype=int)
    truth[2:7, 2:6, 1:4], truth[8:11, 6:9, 2:5] = 1, 2
    pred = np.where(rng.random(truth.shape) < 0.1, rng.integers(0, 3, truth.shape), truth)
    full = segmentation_metrics(pred, truth, (0.8, 0.8, 2.5), classes=(1, 2))
    ours = segmentation_case(pred, truth, (0.8, 0.8, 2.5), classes=(1, 2))
    assert ours == {"dice_1": full["dice_1"], "dice_2": full["dice_2"], "dice": full["dice"]}
    for k in (2, 3):
        labels = rng.integers(0, k, 40)
        probabilities = rng.dirichlet(np.ones(k), 40)
        names = [str(i) for i in range(k)]
        for positive in (0, 1) if k == 2 else (1,):
            reference = classification_metrics(
                labels, probabilities, names, names[positive] if k == 2 else None
            )
            values = classification_set(labels, probabilities, positive)
            assert values == {m: reference[m] for m in ("accuracy", "balanced_accuracy", "auroc")}


def test_registering_a_metric_makes_it_a_monitor_and_unregistering_removes_it() -> None:
    @register("segmentation", "hausdorff_like", definition="a distance", higher_is_better=False)
    def _distance(pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, ...]) -> float:
        return float(np.count_nonzero(pred ^ truth)) * spacing[0]

    try:
        assert MONITORS["segmentation"] == ("val_dice", "val_hausdorff_like", "val_loss")
        assert monitor_mode("val_hausdorff_like") == "min"
        assert monitor_mode("val_dice") == "max" and monitor_mode("val_loss") == "min"
        pred = np.zeros((4, 4), dtype=int)
        truth = pred.copy()
        pred[0, :2], truth[0, :3], truth[3, 3] = 1, 1, 2
        # Per class: class 1 differs in 1 voxel, class 2 in 1 voxel; x-spacing 2 mm.
        scores = segmentation_case(pred, truth, (2.0, 1.0), classes=(1, 2))
        assert scores["hausdorff_like_1"] == 2.0 and scores["hausdorff_like_2"] == 2.0
        assert scores["hausdorff_like"] == 2.0
    finally:
        unregister("segmentation", "hausdorff_like")
    assert MONITORS["segmentation"] == ("val_dice", "val_loss")
    assert monitor_mode("val_hausdorff_like") == "max"


def test_bad_registrations_are_refused() -> None:
    with pytest.raises(ValueError, match="task must be one of"):
        register("detection", "x", definition="y")
    for bad in ("Dice", "2x", "loss", "a-b", ""):
        with pytest.raises(ValueError, match="lower-case"):
            register("segmentation", bad, definition="y")
    with pytest.raises(ValueError, match="already registered"):
        register("segmentation", "dice", definition="again")
    with pytest.raises(ValueError, match="definition"):
        register("classification", "nothing", definition="  ")
    with pytest.raises(ValueError, match="no classification metric named 'nope'"):
        unregister("classification", "nope")
    with pytest.raises(ValueError, match="same shape"):
        segmentation_case(np.zeros((2, 2)), np.zeros((2, 3)), (1.0, 1.0), classes=(1,))
