"""The plot of a hyper-parameter sweep: the value of each trial and the best so far."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from matplotlib.figure import Figure

from ..utils.io import atomic_write_bytes


def best_so_far(values: Sequence[float | None], maximize: bool) -> list[float | None]:
    """The running best of ``values`` (``None`` entries, failed trials, are skipped)."""
    best: float | None = None
    out: list[float | None] = []
    for value in values:
        if value is not None and (best is None or (value > best if maximize else value < best)):
            best = value
        out.append(best)
    return out


def plot_sweep(
    trials: Sequence[tuple[int, float | None]],
    path: Path,
    *,
    metric: str,
    maximize: bool,
    title: str = "Sweep",
) -> Path:
    """Draw the value per trial (dots), the best so far (steps) and failed trials (red marks).

    Args:
        trials: ``(trial number, value)`` per trial in order; ``None`` for a trial that failed
            or has not finished.
        path: the PNG to write (atomically).
        metric: the objective's name, for the y axis (e.g. ``val_dice``).
        maximize: whether larger values are better (sets the best-so-far line).
        title: the plot's title.

    Returns:
        ``path``.
    """
    numbers = [n for n, _ in trials]
    values = [v for _, v in trials]
    fig = Figure(figsize=(6, 4), layout="tight")
    ax = fig.add_subplot()
    done = [(n, v) for n, v in trials if v is not None]
    if done:
        ax.plot(*zip(*done, strict=True), "o", ms=5, label="trial")
        best = [
            (n, b)
            for n, b in zip(numbers, best_so_far(values, maximize), strict=True)
            if b is not None
        ]
        ax.step(*zip(*best, strict=True), where="post", color="tab:orange", label="best so far")
    failed = [n for n, v in trials if v is None]
    for i, n in enumerate(failed):
        ax.axvline(n, color="tab:red", alpha=0.4, ls=":", label="failed" if i == 0 else None)
    direction = "higher is better" if maximize else "lower is better"
    ax.set(xlabel="trial number", ylabel=f"{metric} ({direction})", title=title)
    if trials:
        ax.legend()
    ax.grid(alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return atomic_write_bytes(Path(path), buffer.getvalue())
