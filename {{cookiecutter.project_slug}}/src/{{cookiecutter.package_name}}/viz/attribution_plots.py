"""Figures of interpretability results: attribution overlays and TCAV scores.

As in :mod:`.data_plots`, each function draws one PNG with matplotlib's object-oriented API and
writes it atomically. Arrays are ``(X, Y)`` or ``(X, Y, Z)``; planes are drawn transposed (image
rows are Y) with the pixel aspect ratio of the voxel spacing. A 3D case is shown as three
orthogonal planes through the voxel of strongest attribution, the image alone above and the
attribution over it below; a 2D case as the image beside its overlay. The labelled region, when
known, is outlined in both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .data_plots import _window, save_figure

REGION_COLOR = "#34c759"
SHOWN_FROM = 0.05  # attributions below this share of the maximum stay transparent
VIEWS_3D = (("axial", 2), ("coronal", 1), ("sagittal", 0))  # (name, axis held fixed)
AXIS_NAMES = ("X", "Y", "Z")


def strongest_voxel(attribution: np.ndarray) -> tuple[int, ...]:
    """The index of the largest absolute attribution (the image center if all are zero)."""
    values = np.nan_to_num(np.abs(np.asarray(attribution, dtype=np.float64)))
    if not values.any():
        return tuple(n // 2 for n in values.shape)
    return tuple(int(i) for i in np.unravel_index(int(values.argmax()), values.shape))


def _planes(
    array: np.ndarray, center: Sequence[int], spacing: Sequence[float]
) -> list[tuple[str, np.ndarray, float, tuple[str, str]]]:
    """``[(view, plane, aspect, (column axis, row axis))]`` through ``center``."""
    if array.ndim == 2:
        return [("image", array, float(spacing[1]) / float(spacing[0]), ("X", "Y"))]
    planes = []
    for name, axis in VIEWS_3D:
        kept = [a for a in range(3) if a != axis]
        plane = np.take(array, int(center[axis]), axis=axis)
        aspect = float(spacing[kept[1]]) / float(spacing[kept[0]])
        planes.append((name, plane, aspect, (AXIS_NAMES[kept[0]], AXIS_NAMES[kept[1]])))
    return planes


def plot_attribution(
    image: np.ndarray,
    attribution: np.ndarray,
    path: str | Path,
    *,
    title: str,
    region: np.ndarray | None = None,
    spacing: Sequence[float] | None = None,
    signed: bool = False,
    units: str = "attribution (share of maximum)",
) -> Path:
    """The image and the attribution map over it, with the labelled region outlined.

    Args:
        image: ``(*S)`` preprocessed image.
        attribution: ``(*S)`` map (same shape).
        path: the ``.png`` to write.
        title: the figure title (case, class, method).
        region: ``(*S)`` labelled region to outline, or ``None``.
        spacing: voxel size in mm per axis (pixel aspect ratio); isotropic when ``None``.
        signed: draw positive and negative values in a diverging map (occlusion) rather than
            magnitudes.
        units: the color bar's label.

    Returns:
        ``path``.
    """
    image = np.asarray(image, dtype=np.float32)
    attribution = np.nan_to_num(np.asarray(attribution, dtype=np.float32))
    if image.shape != attribution.shape or image.ndim not in (2, 3):
        raise ValueError(f"image {image.shape} and attribution {attribution.shape} must match")
    if region is not None and np.asarray(region).shape != image.shape:
        raise ValueError(f"region {np.asarray(region).shape} does not match image {image.shape}")
    spacing = tuple(spacing) if spacing is not None else (1.0,) * image.ndim
    center = strongest_voxel(attribution)
    scale = float(np.abs(attribution).max()) or 1.0
    shown = attribution / scale
    low, high = _window(image)
    views = _planes(image, center, spacing)
    maps = _planes(shown, center, spacing)
    outlines = _planes(np.asarray(region) > 0, center, spacing) if region is not None else None
    if image.ndim == 2:
        fig = Figure(figsize=(8.4, 4.4))
        axes = np.array(fig.subplots(1, 2)).reshape(2, 1)
    else:
        fig = Figure(figsize=(10.5, 7.4))
        axes = np.array(fig.subplots(2, 3))
    cmap, vmin = ("RdBu_r", -1.0) if signed else ("inferno", 0.0)
    picture = None
    for v, (view, plane, aspect, (column, row)) in enumerate(views):
        for r, overlay in enumerate((False, True)):
            axis = axes[r, v]  # 2D: the (2, 1) array holds the image and the overlay
            axis.imshow(plane.T, cmap="gray", vmin=low, vmax=high, aspect=aspect)
            if overlay:
                values = maps[v][1].T
                hidden = np.abs(values) < SHOWN_FROM
                picture = axis.imshow(
                    np.ma.masked_where(hidden, values),
                    cmap=cmap,
                    vmin=vmin,
                    vmax=1.0,
                    alpha=0.65,
                    aspect=aspect,
                )
            if outlines is not None:
                mask = outlines[v][1]
                if mask.any() and not mask.all():
                    axis.contour(
                        mask.T.astype(float), levels=[0.5], colors=[REGION_COLOR], linewidths=1.2
                    )
            axis.set_xticks([])
            axis.set_yticks([])
            axis.set_xlabel(f"{column} (voxels)", fontsize=8)
            axis.set_ylabel(f"{row} (voxels)", fontsize=8)
            what = "attribution" if overlay else "image"
            axis.set_title(f"{view}: {what}" if image.ndim == 3 else what, fontsize=9)
    if picture is not None:
        bar = fig.colorbar(picture, ax=axes.ravel().tolist(), shrink=0.8)
        bar.set_label(f"{units}; max {scale:.3g}", fontsize=8)
    if region is not None:
        handle = Line2D([0], [0], color=REGION_COLOR, lw=2, label="labelled region")
        fig.legend(handles=[handle], loc="lower left", frameon=False, fontsize=8)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def plot_tcav(results: Sequence[Mapping[str, Any]], path: str | Path, *, title: str) -> Path:
    """Bars of the concept's mean TCAV score beside random sets', per class, with p-values.

    The concept's dots are its scores against each random set; the random sets' dots are each
    random set's mean score against the other sets, the null the concept's mean is tested
    against. The p-value shown is the Bonferroni-corrected one.

    Args:
        results: per class ``{"name", "tcav", "tcav_std", "random_tcav", "random_tcav_std",
            "scores", "random_scores", "p_value_corrected", "alpha", "tests", "significant"}``
            (see :func:`..explain.tcav.assess_concept`), and ``"layer"`` (shown under the class
            names when the results span several layers).
        path: the ``.png`` to write.
        title: the figure title (concept, layer).

    Returns:
        ``path``.
    """
    if not results:
        raise ValueError("plot_tcav needs at least one class")
    fig = Figure(figsize=(max(4.5, 1.8 * len(results) + 2), 4.4), layout="constrained")
    axis = fig.add_subplot()
    width = 0.36
    rng = np.random.default_rng(0)  # jitter of the dots only
    for i, result in enumerate(results):
        for offset, key, color, label in (
            (-width / 2, "tcav", "#0a84ff", "concept"),
            (width / 2, "random_tcav", "#8e8e93", "random sets"),
        ):
            mean, std = float(result[key]), float(result[f"{key}_std"])
            axis.bar(
                i + offset,
                mean,
                width,
                yerr=std,
                color=color,
                capsize=3,
                label=label if i == 0 else None,
                alpha=0.85,
            )
            dots = np.asarray(result["scores" if key == "tcav" else "random_scores"], dtype=float)
            axis.scatter(
                i + offset + rng.uniform(-width / 5, width / 5, len(dots)),
                dots,
                s=9,
                color="black",
                zorder=3,
            )
        p = float(result["p_value_corrected"])
        star = " *" if result["significant"] else ""
        axis.text(i, 1.04, f"p = {p:.2g}{star}", ha="center", fontsize=9)
    several = len({r.get("layer") for r in results}) > 1
    labels = [f"{r['name']}\n{r['layer']}" if several else str(r["name"]) for r in results]
    axis.set_xticks(range(len(results)), labels)
    axis.set_ylim(0, 1.12)
    axis.axhline(0.5, color="#c7c7cc", lw=0.8, ls="--")
    axis.set_xlabel("class and layer" if several else "class")
    axis.set_ylabel("TCAV score (share of inputs with positive sensitivity)")
    axis.legend(loc="lower right", fontsize=8)
    first = results[0]
    tests = int(first["tests"])
    axis.set_title(
        f"{title}\np: two-sided, Bonferroni-corrected for {tests} test{'s' * (tests != 1)}; "
        f"* p < {float(first['alpha']):g}\ndots: concept vs each random set; each random set's mean",
        fontsize=9,
    )
    return save_figure(fig, path)
