"""Learning-rate range test (Smith 2017; the fastai ``lr_find``).

Train the configured model on the configured data with a learning rate that grows exponentially
every batch, from ``start_lr`` to ``end_lr``, until the (smoothed) loss passes ``diverge`` times
its best value. Plot loss against log learning rate; the suggestion is the learning rate of the
steepest descent of the smoothed loss. The model's weights are thrown away afterwards.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.utils.data import DataLoader

from .. import paths
from ..config import Config, data_root, save_config
from ..data.dataset import MedicalDataset, class_names
from ..data.fingerprint import resolve_config
from ..data.split import fold_cases
from ..runs.folder import new_run_dir
from ..utils.io import atomic_write_bytes, atomic_write_text
from ..utils.seed import make_generator, seed_everything, worker_init_fn
from . import builders


def suggest_lr(lrs: np.ndarray, losses: np.ndarray) -> float:
    """The learning rate where the loss falls fastest against log(lr).

    Args:
        lrs: learning rates, increasing, shape ``(N,)``.
        losses: smoothed losses at those rates, shape ``(N,)``.

    Returns:
        The rate at the most negative slope ``d loss / d log10(lr)``.

    Raises:
        ValueError: fewer than 3 points, or arrays of different lengths.
    """
    lrs, losses = np.asarray(lrs, float), np.asarray(losses, float)
    if lrs.shape != losses.shape or lrs.size < 3:
        raise ValueError("need at least 3 (lr, loss) points of equal count")
    slope = np.gradient(losses, np.log10(lrs))
    return float(lrs[int(np.argmin(slope))])


@dataclass
class RangeCurve:
    """The loss along the learning-rate range, one entry per batch taken.

    Attributes:
        lrs: the learning rate of each batch (increasing).
        raw: the batch's training loss.
        smooth: the bias-corrected exponential moving average of ``raw``.
    """

    lrs: list[float] = field(default_factory=list)
    raw: list[float] = field(default_factory=list)
    smooth: list[float] = field(default_factory=list)


def lr_range_test(
    cfg: Config,
    start_lr: float = 1e-6,
    end_lr: float = 1.0,
    steps: int = 100,
    diverge: float = 4.0,
    smoothing: float = 0.9,
    quiet: bool = False,
) -> Path:
    """Run the range test and write ``lr_find.png`` and ``lr_find.json`` in a new run folder.

    Args:
        cfg: the configuration (model, data, optimizer) to test.
        start_lr, end_lr: the range, multiplied by a constant factor each batch.
        steps: batches over the range (the training data is cycled when shorter).
        diverge: stop when the smoothed loss exceeds this many times its best.
        smoothing: exponential moving average factor of the loss.
        quiet: print nothing.

    Returns:
        The run folder.

    Raises:
        ValueError: not ``0 < start_lr < end_lr``.
    """
    if not 0 < start_lr < end_lr:
        raise ValueError(f"need 0 < start_lr < end_lr, got {start_lr}, {end_lr}")
    # 1. Data, model, loss and optimizer, built as `train` builds them.
    seed_everything(cfg.seed, cfg.deterministic)
    cfg, dataset, classes, loader = _data(cfg)
    num_classes = builders.count_classes(cfg, dataset, classes)
    model = builders.build(cfg, num_classes, dataset.in_channels)
    loss_fn = builders.loss(cfg, dataset, num_classes)
    optimizer = builders.optimizer(model, cfg)

    # 2. One batch per learning rate, growing geometrically, until the loss diverges.
    curve = _sweep(model, loss_fn, optimizer, loader, start_lr, end_lr, steps, diverge, smoothing)

    # 3. The suggestion: the steepest descent before the divergence.
    suggestion = _suggestion(curve)

    # 4. The run folder: config.yaml, lr_find.json and lr_find.png.
    run_dir = new_run_dir(paths.runs_dir(), f"lr-find_{cfg.run.name}")
    save_config(cfg, run_dir / "config.yaml")
    result = {
        "suggested_lr": suggestion,
        "start_lr": start_lr,
        "end_lr": end_lr,
        "steps": len(curve.lrs),
        "diverge": diverge,
        "lr": curve.lrs,
        "loss": curve.raw,
        "smoothed_loss": curve.smooth,
    }
    atomic_write_text(run_dir / "lr_find.json", json.dumps(result, indent=2) + "\n")
    atomic_write_bytes(run_dir / "lr_find.png", _plot(curve, suggestion))
    if not quiet:
        print(
            f"suggested learning rate {suggestion:.3g} (steepest descent); plot {run_dir / 'lr_find.png'}"
        )
    return run_dir


def _data(cfg: Config) -> tuple[Config, MedicalDataset, list[str] | None, DataLoader]:
    """Step 1: the fold's training cases, prepared, their class names (classification, else
    None) and a shuffling loader over them; returns the config with ``data.normalization:
    auto`` resolved (as ``train`` resolves it)."""
    root = data_root(cfg)
    train_cases, val_cases = fold_cases(root, cfg.task, cfg.data.fold)
    cfg = resolve_config(cfg, root, train_cases)  # data.normalization: auto, as train does
    classes = class_names(train_cases + val_cases) if cfg.task == "classification" else None
    dataset = builders.dataset(cfg, train_cases, classes, train=True)
    dataset.prepare()
    loader = DataLoader(
        dataset,
        batch_size=cfg.train.batch_size,
        shuffle=True,
        num_workers=cfg.data.num_workers,
        generator=make_generator(cfg.seed),
        worker_init_fn=worker_init_fn,
        drop_last=len(dataset) > cfg.train.batch_size,
    )
    return cfg, dataset, classes, loader


def _sweep(
    model: nn.Module,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    start_lr: float,
    end_lr: float,
    steps: int,
    diverge: float,
    smoothing: float,
) -> RangeCurve:
    """Step 2: train one batch at each learning rate from ``start_lr`` to ``end_lr`` (a constant
    factor apart; the data is cycled, a new epoch each time), stopping at a non-finite loss or
    when the smoothed loss passes ``diverge`` times its best."""
    factor = (end_lr / start_lr) ** (1 / max(1, steps - 1))
    for group in optimizer.param_groups:
        group["lr"] = start_lr
    curve = RangeCurve()
    best, average, epoch = math.inf, 0.0, 0
    batches = iter(loader)
    model.train()
    for step in range(steps):
        try:
            batch = next(batches)
        except StopIteration:
            epoch += 1
            loader.dataset.set_epoch(epoch)
            batches = iter(loader)
            batch = next(batches)
        lr = start_lr * factor**step
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss = loss_fn(model(batch["image"]), batch["label"].long())  # masks come as uint8
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value = float(loss.detach())
        average = smoothing * average + (1 - smoothing) * value
        smoothed = average / (1 - smoothing ** (step + 1))  # bias-corrected
        curve.lrs.append(lr)
        curve.raw.append(value)
        curve.smooth.append(smoothed)
        if not math.isfinite(value) or smoothed > diverge * best:
            break
        best = min(best, smoothed)
    return curve


def _suggestion(curve: RangeCurve) -> float:
    """Step 3: the steepest descent of the smoothed loss, leaving out the last point (the
    blow-up) when there are more than 3; the first rate when there are fewer than 3 points."""
    lrs = curve.lrs
    keep = max(3, len(lrs) - 1) if len(lrs) > 3 else len(lrs)
    if keep < 3:
        return lrs[0]
    return suggest_lr(np.array(lrs[:keep]), np.array(curve.smooth[:keep]))


def _plot(curve: RangeCurve, suggestion: float) -> bytes:
    """Step 4's figure: loss and smoothed loss against the learning rate (log scale), with the
    suggestion marked; PNG bytes."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.plot(curve.lrs, curve.raw, alpha=0.3, label="loss")
    ax.plot(curve.lrs, curve.smooth, label="smoothed loss")
    ax.axvline(suggestion, color="C3", linestyle="--", label=f"suggested lr {suggestion:.2e}")
    ax.set(
        xscale="log",
        xlabel="learning rate (log scale)",
        ylabel="training loss",
        title="Learning-rate range test",
    )
    ax.legend()
    ax.grid(alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()
