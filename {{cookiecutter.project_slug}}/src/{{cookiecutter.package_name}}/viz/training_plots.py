"""Plots of a run, redrawn after every epoch into ``<run>/plots/``.

- ``loss.png``: training and validation loss per epoch;
- ``metrics.png``: every validation metric per epoch;
- ``lr.png``: the learning rate per epoch;
- ``activations.png``: mean and standard deviation of each layer's output, one line per epoch
  (with a good initialization the std stays of one order from the first layer to the last;
  a steady shrink or growth means vanishing or exploding signals);
- ``gradient_norms.png``: each layer's gradient norm, averaged over the epoch's steps (the
  values to choose a clipping threshold from).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from matplotlib.figure import Figure

from ..utils.io import atomic_write_bytes


def _read(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _save(fig: Figure, path: Path) -> Path:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return atomic_write_bytes(path, buffer.getvalue())


def _floats(rows: list[dict[str, str]], key: str) -> tuple[list[int], list[float]]:
    points = [(int(r["epoch"]), float(r[key])) for r in rows if r.get(key, "") not in ("", None)]
    return [p[0] for p in points], [p[1] for p in points]


def plot_training(run_dir: Path) -> list[Path]:
    """Draw every plot of ``run_dir`` from its CSV files; returns the files written."""
    rows = _read(run_dir / "metrics.csv")
    out = run_dir / "plots"
    written: list[Path] = []
    if rows:
        fig = Figure(figsize=(6, 4), layout="tight")
        ax = fig.add_subplot()
        for key in ("train_loss", "val_loss"):
            ax.plot(*_floats(rows, key), marker="o", ms=3, label=key)
        ax.set(xlabel="epoch", ylabel="loss", title="Loss")
        ax.legend()
        ax.grid(alpha=0.3)
        written.append(_save(fig, out / "loss.png"))

        metric_keys = [k for k in rows[0] if k.startswith("val_") and k != "val_loss"]
        fig = Figure(figsize=(6, 4), layout="tight")
        ax = fig.add_subplot()
        for key in metric_keys:
            ax.plot(*_floats(rows, key), marker="o", ms=3, label=key)
        ax.set(xlabel="epoch", ylabel="value", title="Validation metrics (whole set)")
        if metric_keys:
            ax.legend()
        ax.grid(alpha=0.3)
        written.append(_save(fig, out / "metrics.png"))

        fig = Figure(figsize=(6, 3), layout="tight")
        ax = fig.add_subplot()
        ax.plot(*_floats(rows, "lr"), marker="o", ms=3)
        ax.set(xlabel="epoch", ylabel="learning rate", title="Learning rate", yscale="log")
        ax.grid(alpha=0.3)
        written.append(_save(fig, out / "lr.png"))

    layers = _read(run_dir / "layer_stats.csv")
    if layers:
        by_epoch: dict[int, list[dict[str, str]]] = defaultdict(list)
        for row in layers:
            by_epoch[int(row["epoch"])].append(row)
        epochs = sorted(by_epoch)
        shown = sorted({epochs[0], epochs[len(epochs) // 2], epochs[-1]})
        fig = Figure(figsize=(8, 5), layout="tight")
        ax_mean, ax_std = fig.subplots(2, 1, sharex=True)
        for epoch in shown:
            part = sorted(by_epoch[epoch], key=lambda r: int(r["index"]))
            index = [int(r["index"]) for r in part]
            ax_mean.plot(
                index, [float(r["act_mean"]) for r in part], marker=".", label=f"epoch {epoch}"
            )
            ax_std.plot(
                index, [float(r["act_std"]) for r in part], marker=".", label=f"epoch {epoch}"
            )
        ax_mean.set(ylabel="mean", title="Activations per layer (validation data)")
        ax_std.set(ylabel="std", xlabel="layer (input to output)", yscale="log")
        ax_mean.legend(fontsize=8)
        for ax in (ax_mean, ax_std):
            ax.grid(alpha=0.3)
        written.append(_save(fig, out / "activations.png"))

        fig = Figure(figsize=(8, 4), layout="tight")
        ax = fig.add_subplot()
        for epoch in shown:
            part = sorted(by_epoch[epoch], key=lambda r: int(r["index"]))
            ax.plot(
                [int(r["index"]) for r in part],
                [float(r["grad_norm"]) for r in part],
                marker=".",
                label=f"epoch {epoch}",
            )
        ax.set(
            xlabel="layer (input to output)",
            ylabel="gradient L2 norm",
            yscale="log",
            title="Gradient norm per layer (mean over the epoch's steps)",
        )
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        written.append(_save(fig, out / "gradient_norms.png"))
    return written
