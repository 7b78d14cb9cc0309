"""Figures of the statistics: a reliability diagram and a paired comparison of two runs.

As the other ``viz`` modules: one PNG per function, matplotlib's object-oriented API, written
atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .data_plots import save_figure


def plot_reliability(
    bins: Mapping[str, np.ndarray], path: str | Path, title: str, xlabel: str, ece: float
) -> Path:
    """Observed frequency against mean predicted probability per bin, with the diagonal.

    Args:
        bins: :func:`..metrics.calibration.reliability_bins`'s result (``edges``, ``count``,
            ``predicted``, ``observed``).
        path: the PNG to write.
        title: the figure's title.
        xlabel: what the probability is (e.g. "predicted probability of 'nodule'").
        ece: the expected calibration error, shown in the legend.

    Returns:
        ``path``.
    """
    count = np.asarray(bins["count"])
    filled = count > 0
    fig = Figure(figsize=(5.0, 5.6))
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfectly calibrated")
    top.plot(
        np.asarray(bins["predicted"])[filled],
        np.asarray(bins["observed"])[filled],
        marker="o",
        color="#0a84ff",
        label=f"model (ECE {ece:.3f})",
    )
    top.set_ylabel("observed frequency")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.legend(loc="upper left", fontsize=8)
    top.set_title(title, fontsize=10)
    edges = np.asarray(bins["edges"])
    bottom.bar(edges[:-1], count, width=np.diff(edges), align="edge", color="#8e8e93")
    bottom.set_ylabel("cases")
    bottom.set_xlabel(xlabel)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_paired(
    first: Sequence[float],
    second: Sequence[float],
    labels: tuple[str, str],
    path: str | Path,
    title: str,
    metric: str,
) -> Path:
    """One line per patient from its value under the first run to its value under the second.

    Args:
        first: per-patient values of the first run, shape ``(P,)``.
        second: the same patients' values of the second run, shape ``(P,)``.
        labels: the two runs' names.
        path: the PNG to write.
        title: the figure's title.
        metric: the metric's name (the y axis).

    Returns:
        ``path``.

    Raises:
        ValueError: the two sequences differ in length.
    """
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"first and second must be 1-D of one length, got {a.shape}, {b.shape}")
    fig = Figure(figsize=(4.8, 4.8))
    axis = fig.subplots()
    for x, y in zip(a, b, strict=True):
        color = "#34c759" if y > x else "#ff3b30" if y < x else "#8e8e93"
        axis.plot([0, 1], [x, y], color=color, alpha=0.6, marker="o", markersize=3)
    axis.plot([0, 1], [np.nanmean(a), np.nanmean(b)], color="black", linewidth=2.5, label="mean")
    axis.set_xticks([0, 1], labels=list(labels))
    axis.set_xlim(-0.3, 1.3)
    axis.set_ylabel(metric)
    axis.legend(fontsize=8)
    axis.set_title(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
