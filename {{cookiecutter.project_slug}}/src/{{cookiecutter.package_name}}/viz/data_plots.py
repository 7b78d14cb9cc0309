"""Figures of a dataset that a person would rather look at than read.

Every function draws one PNG with matplotlib's object-oriented API (a ``Figure`` rendered by the
Agg canvas: no window, no global ``pyplot`` state, safe in scripts, notebooks and tests) and
writes it atomically. Arrays follow :mod:`..data.io`'s order, ``(X, Y)`` or ``(X, Y, Z)``;
slices are drawn as ``array.T`` so that image rows (Y) run down the page, as a viewer shows them,
with the pixel aspect ratio taken from the voxel spacing.
"""

from __future__ import annotations

import functools
import io
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

from ..utils.io import atomic_write_bytes

DPI = 100
LABEL_COLORS = (  # (name in the legend, RGB) per label value > 0, in turn
    ("red", "#ff3b30"),
    ("green", "#34c759"),
    ("yellow", "#ffcc00"),
    ("purple", "#af52de"),
    ("orange", "#ff9500"),
    ("blue", "#5ac8fa"),
    ("pink", "#ff2d55"),
)
RATER_COLOR = "#00e5ff"
MONTAGE_SLICES = 4
LABELLED_CASES = 20  # plots name each case up to this many cases


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Render ``fig`` as PNG and write it atomically to ``path`` (folders created)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return atomic_write_bytes(Path(path), buffer.getvalue())


def _plain_log(axis: Any) -> None:
    """Label a log axis 1, 10, 100 rather than with powers of ten (mathtext is slow to draw)."""
    axis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(ticker.NullFormatter())
    axis.set_minor_locator(ticker.NullLocator())


def _check_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"expected a .png file name, got '{path}'")
    return path


def plot_class_distribution(counts: Mapping[str, int], path: str | Path) -> Path:
    """Bar chart of cases per class, with the count and share on each bar.

    Args:
        counts: class name -> number of cases (at least one class).
        path: the ``.png`` to write.

    Returns:
        ``path``.
    """
    path = _check_path(path)
    if not counts:
        raise ValueError("counts must name at least one class")
    names = list(counts)
    values = [int(counts[n]) for n in names]
    total = sum(values)
    fig = Figure(figsize=(max(4.0, 1.0 + 0.8 * len(names)), 3.5))
    fig.subplots_adjust(left=0.15, right=0.97, top=0.88, bottom=0.2 if len(names) > 4 else 0.1)
    ax = fig.add_subplot()
    bars = ax.bar(range(len(names)), values, color="#4c72b0")
    for bar, value in zip(bars, values, strict=True):
        share = 100.0 * value / total if total else 0.0
        ax.annotate(
            f"{value} ({share:.0f}%)",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_xticks(range(len(names)), names, rotation=30 if len(names) > 4 else 0)
    ax.set_ylabel("cases")
    ax.set_ylim(0, max(values) * 1.15 + 1)
    ax.set_title(f"Class distribution ({total} cases)")
    return save_figure(fig, path)


def plot_mask_sizes(
    sizes: Mapping[str, Sequence[float]],
    path: str | Path,
    *,
    unit: str,
    empty_cases: int = 0,
    total_cases: int | None = None,
) -> Path:
    """Mask size per class: one column of points per class with its box plot.

    Args:
        sizes: class label -> the size of that class in each case where it is present.
        path: the ``.png`` to write.
        unit: what the sizes measure, e.g. ``"mL"`` or ``"voxels"`` (the axis label).
        empty_cases: cases whose mask has no foreground (shown in the title).
        total_cases: number of cases (shown in the title when given).

    Returns:
        ``path``.
    """
    path = _check_path(path)
    if empty_cases < 0:
        raise ValueError(f"empty_cases must be >= 0, got {empty_cases}")
    names = list(sizes)
    fig = Figure(figsize=(max(5.0, 1.5 + 1.0 * len(names)), 4.0))
    fig.subplots_adjust(left=0.15, right=0.97, top=0.85, bottom=0.16)
    ax = fig.add_subplot()
    data = [np.asarray(sizes[n], dtype=float) for n in names]
    shown = [d for d in data if d.size]
    if shown:
        ax.boxplot(
            [d if d.size else [np.nan] for d in data], positions=range(len(names)), widths=0.5
        )
        jitter = np.random.default_rng(0)
        for i, d in enumerate(data):
            ax.scatter(i + jitter.uniform(-0.12, 0.12, d.size), d, s=12, alpha=0.6, zorder=3)
        values = np.concatenate(shown)
        positive = values[values > 0]
        if positive.size and positive.max() > 20 * positive.min():
            ax.set_yscale("log")
            _plain_log(ax.yaxis)
        ax.set_xticks(
            range(len(names)),
            [f"class {n}\n({d.size} cases)" for n, d in zip(names, data, strict=True)],
        )
    else:
        ax.text(0.5, 0.5, "no foreground in any mask", ha="center", va="center")
        ax.set_xticks([])
    ax.set_ylabel(f"size ({unit})")
    of = f" of {total_cases}" if total_cases is not None else ""
    ax.set_title(f"Mask size per class\n{empty_cases}{of} cases with an empty mask", fontsize=10)
    return save_figure(fig, path)


def _count_scatter(
    ax: Axes, points: Sequence[tuple[float, float]], xlabel: str, ylabel: str
) -> None:
    """Scatter of distinct points, marker area and label giving how many cases share each."""
    counts = Counter((float(a), float(b)) for a, b in points)
    xs, ys = zip(*counts, strict=True) if counts else ((), ())
    n = np.array(list(counts.values()), dtype=float)
    ax.scatter(xs, ys, s=20 + 80 * np.sqrt(n), alpha=0.6, color="#4c72b0")
    if len(counts) <= 15:
        for (x, y), k in counts.items():
            ax.annotate(f"{k}", (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.margins(0.2)


def plot_geometry(
    shapes: Sequence[Sequence[int]], spacings: Sequence[Sequence[float]], path: str | Path
) -> Path:
    """Spacings and shapes of all cases, side by side.

    Each panel puts the first array axis (X) against the last (Z for volumes, Y for 2D images),
    so anisotropic volumes and odd sizes stand out; a marker's size and number count the cases
    at that point, and the title says in how many volumes Y differs from X.

    Args:
        shapes: per case, the array shape ``(X, Y)`` or ``(X, Y, Z)``.
        spacings: per case, the voxel size in mm along the same axes.
        path: the ``.png`` to write.

    Returns:
        ``path``.
    """
    path = _check_path(path)
    if len(shapes) != len(spacings) or not shapes:
        raise ValueError(
            f"expected one shape and one spacing per case, got {len(shapes)} and {len(spacings)}"
        )
    fig = Figure(figsize=(10, 4.2))
    fig.subplots_adjust(left=0.08, right=0.97, top=0.86, bottom=0.13, wspace=0.3)
    panels = fig.subplots(1, 2)
    for ax, values, what, unit in [
        (panels[0], spacings, "spacing", "mm"),
        (panels[1], shapes, "size", "voxels"),
    ]:
        points = [(v[0], v[-1]) for v in values]
        last = "Z" if any(len(v) == 3 for v in values) else "Y"
        _count_scatter(ax, points, f"X {what} ({unit})", f"{last} {what} ({unit})")
        volumes = [v for v in values if len(v) == 3]
        title = f"{what.capitalize()} per case"
        if volumes:
            differ = sum(not np.isclose(float(v[0]), float(v[1])) for v in volumes)
            title += f"\nY differs from X in {differ} of {len(volumes)} volumes"
        ax.set_title(title, fontsize=10)
    return save_figure(fig, path)


def plot_intensities(
    samples: Mapping[str, np.ndarray], path: str | Path, *, bins: int = 100
) -> Path:
    """Intensity histogram over all cases, and each case's range beside the others.

    Args:
        samples: case id -> a sample of that case's voxel values (e.g. every k-th voxel),
            in stored units (Hounsfield units for CT).
        path: the ``.png`` to write.
        bins: histogram bins.

    Returns:
        ``path``. The right panel draws per case the 1st-99th percentile (bar), median (dot) and
        min-max (thin line): a case in other units or with a different window stands out.
    """
    path = _check_path(path)
    if not samples:
        raise ValueError("samples must hold at least one case")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    ids = list(samples)
    arrays = [np.asarray(samples[c], dtype=np.float64).ravel() for c in ids]
    arrays = [a[np.isfinite(a)] for a in arrays]
    named = len(ids) <= LABELLED_CASES
    longest = max(len(c) for c in ids) if named else 0
    height = 3.6 + 0.05 * longest  # inches; the rotated case ids take about 0.05 in a letter
    fig = Figure(figsize=(11, height))
    fig.subplots_adjust(
        left=0.085,
        right=0.98,
        top=0.9,
        bottom=(0.5 + 0.05 * longest) / height,
        wspace=0.25,
    )
    left, right = fig.subplots(1, 2, width_ratios=(1, 1.4))
    pooled = np.concatenate(arrays)
    left.hist(pooled, bins=bins, color="#4c72b0", log=True, histtype="stepfilled")
    _plain_log(left.yaxis)
    left.set_xlabel("intensity (as stored, e.g. HU)")
    left.set_ylabel("voxels (sampled)")
    left.set_title(f"Intensity histogram, {len(ids)} cases")
    q = np.array(
        [np.percentile(a, [0, 1, 50, 99, 100]) if a.size else [np.nan] * 5 for a in arrays]
    )
    x = np.arange(len(ids))
    right.vlines(x, q[:, 0], q[:, 4], color="grey", linewidth=0.8)
    right.vlines(x, q[:, 1], q[:, 3], color="#4c72b0", linewidth=4)
    right.scatter(x, q[:, 2], color="black", s=8, zorder=3)
    if named:
        right.set_xticks(x, ids, rotation=90, fontsize=7)
    else:  # too many to name them all: name the (at most 5) cases unlike the others
        right.set_xlabel("case (manifest order)")
        for i in _odd_cases(q[:, 1:4])[:5]:
            right.annotate(
                ids[i], (x[i], q[i, 3]), xytext=(2, 4), textcoords="offset points", fontsize=7
            )
    right.set_ylabel("intensity")
    right.set_title("Per case: min-max, 1st-99th percentile, median")
    return save_figure(fig, path)


def _odd_cases(percentiles: np.ndarray) -> list[int]:
    """Rows of ``(cases, 3)`` 1st/50th/99th percentiles that differ from the median case's by
    more than a quarter of the typical 1st-99th percentile range, most different first."""
    typical = np.nanmedian(percentiles, axis=0)
    scale = max(float(typical[2] - typical[0]), 1e-6)
    distance = np.nanmax(np.abs(percentiles - typical), axis=1) / scale
    order = np.argsort(-np.nan_to_num(distance, nan=0.0))
    return [int(i) for i in order if distance[i] > 0.25]


def plot_agreement(values: Mapping[str, float], path: str | Path, *, metric: str) -> Path:
    """Histogram of per-case agreement between annotators (Dice or agreement rate, 0 to 1).

    Args:
        values: case id -> agreement in ``[0, 1]``.
        path: the ``.png`` to write.
        metric: the name on the x axis, e.g. ``"Dice"``.

    Returns:
        ``path``.
    """
    path = _check_path(path)
    if not values:
        raise ValueError("values must hold at least one case")
    data = np.asarray(list(values.values()), dtype=float)
    fig = Figure(figsize=(5.5, 3.8))
    fig.subplots_adjust(left=0.12, right=0.97, top=0.9, bottom=0.15)
    ax = fig.add_subplot()
    ax.hist(data, bins=np.linspace(0, 1, 21), color="#4c72b0", histtype="stepfilled")
    ax.set_xlabel(f"{metric} between annotators (lowest pair per case)")
    ax.set_ylabel("cases")
    ax.yaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    below = int(np.sum(data < 1))
    ax.set_title(f"Annotator agreement: {below} of {data.size} cases below 1")
    return save_figure(fig, path)


def montage_slices(shape: Sequence[int], mask: np.ndarray | None, count: int) -> list[int]:
    """Which Z slices of a volume a montage shows.

    Args:
        shape: the volume's shape ``(X, Y, Z)``.
        mask: its label ``(X, Y, Z)`` or ``None``.
        count: how many slices (at most Z).

    Returns:
        Increasing slice indices: spread over the slices that hold foreground when the mask has
        any (always including the slice with the most of it), else over the middle 80% of the
        volume.
    """
    if len(shape) != 3:
        raise ValueError(f"expected a volume shape (X, Y, Z), got {tuple(shape)}")
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    depth = int(shape[2])
    count = min(count, depth)
    area = None if mask is None else np.count_nonzero(mask, axis=(0, 1))
    if area is not None and area.any():
        labelled = np.flatnonzero(area)
        largest = int(np.argmax(area))
        spread = np.linspace(0, labelled.size - 1, min(count, labelled.size)).round().astype(int)
        picks = {int(labelled[i]) for i in spread} | {largest}
        while len(picks) > count:  # drop a pick closest to its neighbour, never the largest
            ordered = sorted(picks)
            i = int(np.argmin(np.diff(ordered)))
            picks.discard(ordered[i + 1] if ordered[i + 1] != largest else ordered[i])
        return sorted(picks)
    low, high = 0.1 * (depth - 1), 0.9 * (depth - 1)
    return sorted(set(np.linspace(low, high, count).round().astype(int).tolist()))


def _window(array: np.ndarray) -> tuple[float, float]:
    """Display range: 1st to 99th percentile of (a sample of) the values."""
    flat = array.ravel()
    sample = flat[:: max(1, flat.size // 100_000)].astype(np.float64)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(sample, [1, 99])
    if high <= low:
        low, high = float(sample.min()), float(sample.max())
    return float(low), float(high if high > low else low + 1)


def _hex_rgb(color: str) -> np.ndarray:
    return np.array([int(color[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.uint8)


def _edges(region: np.ndarray) -> np.ndarray:
    """The pixels of ``region`` (2D bool) that touch a pixel outside it (4-neighbourhood)."""
    inner = region.copy()
    inner[1:, :] &= region[:-1, :]
    inner[:-1, :] &= region[1:, :]
    inner[:, 1:] &= region[:, :-1]
    inner[:, :-1] &= region[:, 1:]
    return region & ~inner


def _tile(
    plane: np.ndarray,
    labels: list[tuple[np.ndarray, str, bool]],
    window: tuple[float, float],
    zoom: tuple[int, int],
) -> np.ndarray:
    """One slice as an RGB ``(rows, columns, 3)`` uint8 picture, outlines drawn on it.

    ``plane`` is ``(X, Y)``; the picture is its transpose (rows are Y), each voxel drawn as
    ``zoom = (x, y)`` pixels; ``labels`` are ``(bool plane, color, dashed)`` outlines.
    """
    low, high = window
    grey = np.clip(np.nan_to_num((plane.T.astype(np.float32) - low) / (high - low)), 0, 1)
    grey = np.repeat(np.repeat((grey * 255).astype(np.uint8), zoom[1], 0), zoom[0], 1)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    rows, cols = np.indices(grey.shape)
    dashes = ((rows + cols) // 4) % 2 == 0
    for region, color, dashed in labels:
        big = np.repeat(np.repeat(region.T, zoom[1], 0), zoom[0], 1)
        edge = _edges(big)
        if dashed:
            edge &= dashes
        rgb[edge] = _hex_rgb(color)
    return rgb


def _zoom(shape: Sequence[int], spacing: Sequence[float] | None, target: int) -> tuple[int, int]:
    """Whole-number pixels per voxel along X and Y: about ``target`` pixels across the larger
    side, the ratio following the spacing so that anatomy keeps its proportions."""
    sx, sy = (1.0, 1.0) if spacing is None else (float(spacing[0]), float(spacing[1]))
    per_mm = target / max(shape[0] * sx, shape[1] * sy)
    return max(1, round(sx * per_mm)), max(1, round(sy * per_mm))


def plot_montage(
    array: np.ndarray,
    path: str | Path,
    *,
    mask: np.ndarray | None = None,
    others: Mapping[str, np.ndarray] | None = None,
    spacing: Sequence[float] | None = None,
    title: str = "",
    note: str = "",
    slices: int = MONTAGE_SLICES,
    size: int = 256,
) -> Path:
    """A few slices of one case with its label outlined (a 2D image: the image itself).

    The slices are drawn voxel by voxel (no smoothing), so the outlines follow the voxel edges
    exactly.

    Args:
        array: the image, ``(X, Y)`` or ``(X, Y, Z)``; drawn as ``array.T`` (rows are Y) in grey
            between its 1st and 99th percentile.
        path: the ``.png`` to write.
        mask: the label, same shape; each value > 0 is outlined in its own color.
        others: more annotators' masks (name -> array of the same shape), their foreground
            outlined in dashed cyan, so disagreements show.
        spacing: voxel size in mm per axis; sets the pixel aspect ratio (square when ``None``).
        title: first line above the slices (e.g. the case id and class).
        note: more text for the second line, after the color legend of the outlines (e.g.
            what other annotators said).
        slices: how many Z slices of a volume to show (see :func:`montage_slices`).
        size: about how many pixels the larger side of a slice gets (never below 1 per voxel).

    Returns:
        ``path``.
    """
    path = _check_path(path)
    array = np.asarray(array)
    if array.ndim not in (2, 3):
        raise ValueError(f"expected an (X, Y) or (X, Y, Z) array, got shape {array.shape}")
    for name, other in [("mask", mask), *((others or {}).items())]:
        if other is not None and np.shape(other) != array.shape:
            raise ValueError(f"{name} has shape {np.shape(other)}, expected {array.shape}")
    if spacing is not None and (len(spacing) != array.ndim or min(spacing) <= 0):
        raise ValueError(f"spacing needs {array.ndim} positive values, got {tuple(spacing)}")
    if size < 16:
        raise ValueError(f"size must be >= 16 pixels, got {size}")
    picks: list[int | None] = (
        [None] if array.ndim == 2 else list(montage_slices(array.shape, mask, slices))
    )
    window = _window(array)
    zoom = _zoom(array.shape, spacing, size)
    mask_arr = None if mask is None else np.asarray(mask)
    classes = [] if mask_arr is None else [v for v in np.unique(mask_arr).tolist() if v > 0]
    tiles = []
    for k in picks:

        def cut(a: np.ndarray, k: int | None = k) -> np.ndarray:
            return a if k is None else a[:, :, k]

        outlines = [
            (cut(mask_arr) == value, LABEL_COLORS[i % len(LABEL_COLORS)][1], False)
            for i, value in enumerate(classes)
        ]
        outlines += [(cut(np.asarray(o)) > 0, RATER_COLOR, True) for o in (others or {}).values()]
        tiles.append(_tile(cut(array), outlines, window, zoom))
    legend = [f"class {v}: {LABEL_COLORS[i % len(LABEL_COLORS)][0]}" for i, v in enumerate(classes)]
    if mask is not None and not classes:
        legend.append("empty mask")
    if others:
        legend.append(f"dashed cyan: {', '.join(others)}")
    if note:
        legend.append(note)
    captions = [None if k is None else f"z = {k}" for k in picks]
    return _write_picture(tiles, captions, title, "; ".join(legend), path)


@functools.lru_cache(maxsize=8)
def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """The DejaVu Sans that matplotlib ships (Pillow's own font when it cannot be loaded)."""
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    try:
        return ImageFont.truetype(
            str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), size
        )
    except OSError:
        return ImageFont.load_default()


def _write_picture(
    tiles: Sequence[np.ndarray],
    captions: Sequence[str | None],
    title: str,
    legend: str,
    path: Path,
    gap: int = 6,
) -> Path:
    """Put RGB tiles side by side under a title and a legend line, a caption under each, on a
    canvas wide enough for the text; write it as PNG.

    A montage is a picture rather than a chart, so it is composed with NumPy and Pillow: this is
    several times faster than drawing it through a matplotlib figure, which matters with a
    montage per case.
    """
    height, width = tiles[0].shape[:2]
    header, footer = 36 if legend else 20, 18 if any(captions) else 0
    text_w = max(_font(13, bold=True).getlength(title), _font(11).getlength(legend))
    total_w = max(len(tiles) * width + (len(tiles) - 1) * gap, int(text_w) + 8)
    canvas = np.full((header + height + footer, total_w, 3), 255, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        canvas[header : header + height, i * (width + gap) : i * (width + gap) + width] = tile
    picture = PILImage.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    draw.text((4, 3), title, fill="black", font=_font(13, bold=True))
    draw.text((4, 20), legend, fill="black", font=_font(11))
    for i, caption in enumerate(captions):
        if caption:
            center = (i * (width + gap) + width // 2, header + height + 2)
            draw.text(center, caption, fill="black", font=_font(11), anchor="mt")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=3)
    return atomic_write_bytes(path, buffer.getvalue())
