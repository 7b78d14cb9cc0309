"""What a run records about itself besides its metrics: per-layer statistics, plots, and
whether overfit mode fitted its tiny training set.

``layer_stats.csv`` (one row per layer and epoch: mean and standard deviation of the layer's
activations on the validation set, mean gradient norm over the sampled training steps) feeds
``plots/`` next to ``metrics.csv``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..config import Config
from ..runs.folder import MetricsLog
from ..utils.io import atomic_write_csv

OVERFIT_CASES = 4  # overfit=true trains (and validates) on this many cases
OVERFIT_TARGET = 0.95  # the training metric an overfit run should reach
LAYER_COLUMNS = ["epoch", "index", "layer", "act_mean", "act_std", "grad_norm"]


def record_layers(
    run_dir: Path, epoch: int, activations: dict[str, dict[str, float]], grads: dict[str, float]
) -> None:
    """Write this epoch's per-layer statistics into ``layer_stats.csv`` (for the plots).

    Rows of this epoch and later ones (left by an interrupted run that resumes) are replaced.

    Args:
        run_dir: the run folder.
        epoch: the epoch, counted from 1 as in ``metrics.csv``.
        activations: per layer, ``{"mean": ..., "std": ...}`` of its activations.
        grads: per layer, its mean gradient norm (NaN is written for a layer without one).
    """
    path = run_dir / "layer_stats.csv"
    rows = []
    if path.exists():
        with open(path, newline="", encoding="utf-8") as handle:
            rows = [r for r in csv.DictReader(handle) if int(r["epoch"]) < epoch]
    for index, (layer, stats) in enumerate(activations.items()):
        rows.append(
            {
                "epoch": epoch,
                "index": index,
                "layer": layer,
                "act_mean": f"{stats['mean']:.6g}",
                "act_std": f"{stats['std']:.6g}",
                "grad_norm": f"{grads.get(layer, float('nan')):.6g}",
            }
        )
    atomic_write_csv(path, rows, LAYER_COLUMNS)


def plot_run(run_dir: Path) -> None:
    """Redraw the run's plots from ``metrics.csv`` and ``layer_stats.csv``."""
    from ..viz.training_plots import plot_training  # matplotlib: only when plotting

    plot_training(run_dir)


def overfit_verdict(cfg: Config, metrics: MetricsLog) -> str:
    """Whether overfit mode fitted its tiny training set, as a sentence for the run's status.

    Args:
        cfg: the run's configuration (its task picks the metric).
        metrics: the run's ``metrics.csv``.

    Returns:
        The best validation Dice (segmentation) or accuracy (classification) reached on the
        :data:`OVERFIT_CASES` training cases, compared with :data:`OVERFIT_TARGET`.
    """
    name = "val_dice" if cfg.task == "segmentation" else "val_accuracy"
    values = metrics.column(name)
    reached = max(values) if values else float("nan")
    if reached >= OVERFIT_TARGET:
        return f"overfit reached {name} {reached:.3f} >= {OVERFIT_TARGET} on {OVERFIT_CASES} cases"
    return (
        f"overfit did NOT reach {name} {OVERFIT_TARGET} (best {reached:.3f}): grow the model, "
        "train longer or check the data and labels"
    )
