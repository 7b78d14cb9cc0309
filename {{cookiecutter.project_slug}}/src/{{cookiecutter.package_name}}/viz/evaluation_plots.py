"""Figures of an evaluation: cases with their outlines, metric spreads, confusion matrix, ROC.

Like :mod:`.data_plots`, every function draws one PNG with matplotlib's object-oriented API (no
window, no global state) and writes it atomically. Arrays are ``(X, Y)`` or ``(X, Y, Z)``;
slices are drawn transposed (image rows are Y) with the pixel aspect ratio of the voxel spacing.
A 3D case is shown as three orthogonal slices through a point of interest (the center of the
structure), so one row shows where a prediction and the truth differ in every direction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .data_plots import _window, save_figure

OUTLINE_COLORS = ("#34c759", "#ff3b30", "#00e5ff", "#ffcc00", "#af52de")
VIEWS_3D = (("axial", 2), ("coronal", 1), ("sagittal", 0))  # (name, axis held fixed)


def center_of(masks: Sequence[np.ndarray | None], shape: Sequence[int]) -> tuple[int, ...]:
    """The voxel to slice through: the center of mass of the first mask with foreground, or the
    middle of the image."""
    for mask in masks:
        if mask is not None and np.any(mask):
            points = np.argwhere(mask)
            return tuple(int(round(v)) for v in points.mean(axis=0))
    return tuple(int(n) // 2 for n in shape)


def orthogonal_slices(
    array: np.ndarray, center: Sequence[int], spacing: Sequence[float]
) -> list[tuple[str, np.ndarray, float]]:
    """The planes through ``center``: ``[(view, plane (A, B), aspect)]``.

    A 2D array gives itself (``"image"``); a 3D array its axial, coronal and sagittal planes.
    ``aspect`` is the displayed height/width of a pixel (row spacing / column spacing).
    """
    if array.ndim == 2:
        return [("image", array, float(spacing[1]) / float(spacing[0]))]
    if array.ndim != 3:
        raise ValueError(f"expected a 2D or 3D array, got shape {array.shape}")
    views = []
    for name, axis in VIEWS_3D:
        plane = np.take(array, int(center[axis]), axis=axis)
        kept = [a for a in range(3) if a != axis]
        views.append((name, plane, float(spacing[kept[1]]) / float(spacing[kept[0]])))
    return views


def plot_case_rows(
    rows: Sequence[Mapping[str, object]],
    path: str | Path,
    title: str,
) -> Path:
    """One row per case: its image slices with each mask outlined in its own color.

    Args:
        rows: per case ``{"title": str, "image": array, "spacing": (mm, ...),
            "masks": {legend name: bool/int array or None}}``; masks share the image's shape.
        path: the PNG to write.
        title: the figure's title.

    Returns:
        ``path``.
    """
    if not rows:
        raise ValueError("plot_case_rows needs at least one case")
    n_views = 1 if np.asarray(rows[0]["image"]).ndim == 2 else 3
    fig = Figure(figsize=(3.2 * n_views, 3.0 * len(rows) + 0.6))
    axes = np.atleast_2d(fig.subplots(len(rows), n_views, squeeze=False))
    legend: dict[str, str] = {}
    for r, row in enumerate(rows):
        image = np.asarray(row["image"], dtype=np.float32)
        masks = {k: v for k, v in dict(row["masks"]).items() if v is not None}  # type: ignore[arg-type]
        spacing = tuple(row.get("spacing") or (1.0,) * image.ndim)  # type: ignore[arg-type]
        center = center_of(list(masks.values()), image.shape)
        low, high = _window(image)
        planes = orthogonal_slices(image, center, spacing)
        mask_planes = {
            name: orthogonal_slices(np.asarray(mask) > 0, center, spacing)
            for name, mask in masks.items()
        }
        for v, (view, plane, aspect) in enumerate(planes):
            axis = axes[r, v]
            axis.imshow(plane.T, cmap="gray", vmin=low, vmax=high, aspect=aspect)
            for m, (name, views) in enumerate(mask_planes.items()):
                color = OUTLINE_COLORS[m % len(OUTLINE_COLORS)]
                legend[name] = color
                region = views[v][1]
                if region.any() and not region.all():
                    axis.contour(
                        region.T.astype(float), levels=[0.5], colors=[color], linewidths=1.2
                    )
            axis.set_xticks([])
            axis.set_yticks([])
            axis.set_title(view if r == 0 and n_views > 1 else "", fontsize=9)
            if v == 0:
                axis.set_ylabel(str(row["title"]), fontsize=9)
    handles = [Line2D([0], [0], color=c, lw=2, label=n) for n, c in legend.items()]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.05 if handles else 0, 1, 0.97))
    return save_figure(fig, path)


def plot_metric_spread(
    values: Mapping[str, Sequence[float]], path: str | Path, title: str, units: Mapping[str, str]
) -> Path:
    """Per-case values of each metric as a box plot with the cases drawn as points.

    Args:
        values: metric name -> per-case values (NaN left out).
        path: the PNG to write.
        title: the figure's title.
        units: metric name -> unit (or qualifier, e.g. an NSD tolerance) for its axis label;
            a metric not in it has none.

    Each panel's title says how many cases it shows, and of how many when some were NaN.
    """
    names = [n for n, v in values.items() if np.isfinite(np.asarray(v, dtype=float)).any()]
    if not names:
        raise ValueError("no metric has a finite value to plot")
    fig = Figure(figsize=(3.0 * len(names), 3.6))
    axes = np.atleast_1d(fig.subplots(1, len(names), squeeze=False)[0])
    rng = np.random.default_rng(0)  # jitter only, fixed so the figure is reproducible
    for axis, name in zip(axes, names, strict=True):
        data = np.asarray(values[name], dtype=float)
        total = data.size
        data = data[np.isfinite(data)]
        axis.boxplot(data, widths=0.5, showfliers=False)
        axis.scatter(1 + rng.uniform(-0.12, 0.12, data.size), data, s=12, alpha=0.7)
        unit = units.get(name, "")
        axis.set_ylabel(f"{name} ({unit})" if unit else name)
        axis.set_xticks([])
        shown = f"{data.size} cases" if data.size == total else f"{data.size} of {total} cases"
        axis.set_title(f"{name}: {shown}", fontsize=9)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: str | Path, title: str
) -> Path:
    """Counts with the truth on rows and the prediction on columns, each cell annotated."""
    counts = np.asarray(matrix, dtype=np.int64)
    k = len(class_names)
    if counts.shape != (k, k):
        raise ValueError(f"matrix must be {k}x{k} for {k} classes, got shape {counts.shape}")
    fig = Figure(figsize=(1.2 * k + 2.4, 1.1 * k + 1.8))
    axis = fig.subplots()
    image = axis.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=axis, label="cases")
    axis.set_xticks(range(k), labels=list(class_names), rotation=30, ha="right")
    axis.set_yticks(range(k), labels=list(class_names))
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    top = counts.max() if counts.size else 0
    for (i, j), value in np.ndenumerate(counts):
        axis.text(
            j,
            i,
            str(value),
            ha="center",
            va="center",
            color="white" if value > top / 2 else "black",
        )
    axis.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def roc_points(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every threshold (ties taken together), from (0, 0)."""
    positive = np.asarray(positive, dtype=bool)
    scores = np.asarray(scores, dtype=float)
    order = np.argsort(-scores, kind="stable")
    sorted_scores, hits = scores[order], positive[order]
    last_of_tie = np.r_[np.diff(sorted_scores) != 0, True]
    tp = np.cumsum(hits)[last_of_tie]
    fp = np.cumsum(~hits)[last_of_tie]
    n_pos, n_neg = max(int(positive.sum()), 1), max(int((~positive).sum()), 1)
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos]


def plot_roc(
    labels: Sequence[int],
    probabilities: np.ndarray,
    class_names: Sequence[str],
    aurocs: Mapping[str, float],
    path: str | Path,
    title: str,
    positive: str | None = None,
) -> Path:
    """ROC curves, one-vs-rest per class (the positive class only for two classes).

    Args:
        labels: true class indices, shape ``(N,)``.
        probabilities: scores per class, shape ``(N, K)``.
        class_names: K names in class-index order.
        aurocs: class name -> AUROC, shown in the legend.
        path: the PNG to write.
        title: the figure's title.
        positive: binary tasks: the positive class's name (default: ``class_names[1]``); the
            axes name it.

    Raises:
        ValueError: ``positive`` is not one of two class names.
    """
    truth = np.asarray(labels)
    probs = np.asarray(probabilities, dtype=float)
    names = [str(n) for n in class_names]
    if positive is not None and (len(names) != 2 or positive not in names):
        raise ValueError(f"positive must be one of two class names {names}, got '{positive}'")
    index = names.index(positive) if positive is not None else 1
    shown = [index] if len(names) == 2 else list(range(len(names)))
    fig = Figure(figsize=(4.6, 4.4))
    axis = fig.subplots()
    axis.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="chance")
    for index in shown:
        positive = truth == index
        if positive.all() or not positive.any():
            continue  # a curve needs both classes
        fpr, tpr = roc_points(positive, probs[:, index])
        name = class_names[index]
        axis.plot(fpr, tpr, lw=1.8, label=f"{name} (AUROC {aurocs.get(name, float('nan')):.3f})")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.01)
    about = f" of '{names[index]}'" if len(names) == 2 else ", one-vs-rest"
    axis.set_xlabel(f"false positive rate (1 - specificity{about})")
    axis.set_ylabel(f"true positive rate (sensitivity{about})")
    axis.set_title(title, fontsize=10)
    axis.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_image_grid(
    items: Sequence[Mapping[str, object]], path: str | Path, title: str, columns: int = 4
) -> Path:
    """Images with a caption each (e.g. classification cases and what each annotator said).

    Args:
        items: ``{"image": 2D or 3D array (3D: its middle axial slice), "caption": str}``.
        path: the PNG to write.
        title: the figure's title.
        columns: images per row.
    """
    if not items:
        raise ValueError("plot_image_grid needs at least one image")
    columns = max(1, min(columns, len(items)))
    rows = -(-len(items) // columns)
    fig = Figure(figsize=(3.0 * columns, 3.2 * rows + 0.5))
    axes = fig.subplots(rows, columns, squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for axis, item in zip(axes.ravel(), items, strict=False):
        image = np.asarray(item["image"], dtype=np.float32)
        if image.ndim == 3:
            image = image[:, :, image.shape[2] // 2]
        low, high = _window(image)
        axis.imshow(image.T, cmap="gray", vmin=low, vmax=high)
        axis.set_title(str(item["caption"]), fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)
