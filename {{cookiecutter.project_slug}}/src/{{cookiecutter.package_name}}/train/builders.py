"""From config to objects: the pieces the training loop asks for, each a small function.

Kept apart from ``loop.py`` so the loop reads as the sequence of steps it is; each function here
maps a few config keys onto one object and turns a bad combination into a ``ConfigError``
naming the key.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import paths
from ..config import Config
from ..data.dataset import LoaderSettings, MedicalDataset
from ..models import build_model
from ..models import model_options as known_options
from ..models.pretrained import freeze_layers, load_pretrained
from ..models.registry import TASK_MODELS
from ..utils.errors import ConfigError
from ..utils.io import atomic_write_csv
from . import losses, optim
from .distributed import Dist

OVERFIT_CASES = 4  # overfit=true trains (and validates) on this many cases
OVERFIT_TARGET = 0.95  # the training metric an overfit run should reach

# config key -> model option, for the options the project's own models share.
MODEL_KEYS = {
    "model.width": ("base_channels", lambda c: c.model.width),
    "model.depth": ("depth", lambda c: c.model.depth),
    "model.norm": ("norm", lambda c: c.model.norm),
    "model.activation": ("activation", lambda c: c.model.activation),
    "model.residual": ("residual", lambda c: c.model.residual),
    "model.dropout": ("dropout", lambda c: c.model.dropout),
    "model.spatial_dropout": ("spatial_dropout", lambda c: c.model.spatial_dropout),
    "train.feature_noise": ("feature_noise", lambda c: c.train.feature_noise),
}


def regularisation_off(cfg: Config) -> Config:
    """The config of overfit mode: every regulariser off (dropout, noise, penalties, weight
    decay, clipping, augmentation, early stopping)."""
    return replace(
        cfg,
        model=replace(cfg.model, dropout=0.0, spatial_dropout=0.0),
        data=replace(cfg.data, augment=False),
        train=replace(
            cfg.train,
            weight_decay=0.0,
            grad_clip=0.0,
            input_noise=0.0,
            feature_noise=0.0,
            l1_activity=0.0,
            l2_activity=0.0,
            patience=0,
        ),
    )


def loader_settings(cfg: Config) -> LoaderSettings:
    """Preprocessing, patches and augmentation from ``data.*``."""
    segmentation = cfg.task == "segmentation"
    return LoaderSettings(
        # Classification sees whole images; segmentation trains on patches.
        patch_size=tuple(cfg.data.patch_size) if segmentation else None,
        foreground_fraction=cfg.data.foreground_fraction,
        target_spacing=tuple(cfg.data.target_spacing) if cfg.data.target_spacing else None,
        # The window is in HU: it belongs to CT only. Clipping MR or a 12-bit radiograph at
        # 300 would flatten most of the image (and every nodule) to one value.
        window=(
            tuple(cfg.data.window) if cfg.data.window and cfg.data.normalization == "ct" else None
        ),
        normalisation={"zscore": "mr"}.get(cfg.data.normalization, cfg.data.normalization),
        augment=cfg.data.augment,
        cache_dir=paths.resolve(cfg.data.cache_dir) if cfg.data.cache_dir else None,
    )


def dataset(cfg: Config, cases: list, classes: list[str] | None, *, train: bool) -> MedicalDataset:
    """The dataset of ``cases`` with the run's preprocessing; augmentation only for training."""
    settings = loader_settings(cfg)
    if not train:
        settings = replace(settings, augment=False)
    return MedicalDataset(
        cases,
        cfg.task,
        settings,
        classes=classes,
        train=train,
        seed=cfg.seed,
        spatial_dims=cfg.spatial_dims,
    )


def count_classes(cfg: Config, dataset: MedicalDataset, classes: list[str] | None) -> int:
    """Output channels: the class names (classification) or the largest mask label + 1."""
    if classes is not None:
        if len(classes) < 2:
            raise ConfigError(f"classification needs at least 2 classes, the data has {classes}")
        return len(classes)
    labels = {0}
    for index in range(len(dataset)):
        labels |= {
            int(k) for k in dataset.entry(index, names=[]).meta.get("foreground_classes", {})
        }
    return max(2, max(labels) + 1)


def model_options(cfg: Config) -> dict[str, Any]:
    """Model options from ``model.*``; a setting the chosen model has no use for is an error."""
    name = cfg.model.name
    if name not in TASK_MODELS.get(cfg.task, ()):
        raise ConfigError(
            f"config key 'model.name' = '{name}' is not valid: expected one of "
            f"{', '.join(TASK_MODELS[cfg.task])} for {cfg.task}"
        )
    known = known_options(name)
    defaults = Config()
    options = {}
    for key, (option, get) in MODEL_KEYS.items():
        value = get(cfg)
        if option in known:
            options[option] = value
        elif value != get(defaults) and key != "model.norm":
            raise ConfigError(f"config key '{key}' = {value!r} has no effect on model '{name}'")
    return options


def apply_pretrained(model: nn.Module, cfg: Config, quiet: bool) -> None:
    """Load local pretrained weights and freeze the first ``model.freeze`` layers."""
    if cfg.model.pretrained:
        report = load_pretrained(model, paths.resolve(cfg.model.pretrained))
        if not quiet:
            print(report)
    elif cfg.model.freeze:
        raise ConfigError("config key 'model.freeze' needs pretrained weights (model.pretrained)")
    if cfg.model.freeze:
        freeze_layers(model, cfg.model.freeze)


def loss(cfg: Config, dataset: MedicalDataset, num_classes: int) -> nn.Module:
    """The loss of ``train.loss``, with inverse-frequency class weights when asked."""
    weights = None
    if cfg.train.class_weights:
        counts = np.zeros(num_classes, dtype=np.int64)
        for index, case in enumerate(dataset.cases):
            if cfg.task == "classification":
                counts[dataset.classes.index(str(case.label))] += 1
            else:
                mask = dataset.entry(index, names=["mask"]).arrays["mask"]
                counts += np.bincount(mask.ravel(), minlength=num_classes)[:num_classes]
        weights = losses.class_weights(counts.tolist())
    return losses.build_loss(cfg.train.loss, cfg.task, weights)


def optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    return optim.build_optimizer(model.parameters(), cfg.train)


def scheduler(opt: torch.optim.Optimizer, cfg: Config) -> torch.optim.lr_scheduler.LambdaLR:
    return optim.build_scheduler(opt, cfg.train)


def activity_penalty(logits: torch.Tensor, cfg: Config) -> torch.Tensor:
    """L1/L2 penalties on the output activations (mean absolute / squared logit)."""
    penalty = logits.new_zeros(())
    if cfg.train.l1_activity > 0:
        penalty = penalty + cfg.train.l1_activity * logits.float().abs().mean()
    if cfg.train.l2_activity > 0:
        penalty = penalty + cfg.train.l2_activity * logits.float().pow(2).mean()
    return penalty


def shared_run_dir(ddp: Dist, make: Callable[[], Path]) -> Path:
    """Rank 0 creates the run folder; the other ranks learn its path.

    Args:
        ddp: this process's place in the ``torchrun`` job.
        make: creates the folder and returns its path (called on rank 0 only).

    Returns:
        The run folder, the same on every rank.

    Raises:
        TrainingError: ``make`` failed on rank 0: every rank stops with its message rather than
            waiting for a path that never comes (one process: ``make``'s own error).
    """
    if not ddp.active:
        return make()
    folder, failure = None, None
    if ddp.main:
        try:
            folder = str(make())
        except Exception as exc:  # raised on every rank by settle
            failure = exc
    ddp.settle(failure)
    return Path(ddp.share(folder))


def record_layers(
    run_dir: Path, epoch: int, activations: dict[str, dict[str, float]], grads: dict[str, float]
) -> None:
    """Append this epoch's per-layer statistics to ``layer_stats.csv`` (for the plots)."""
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
    atomic_write_csv(path, rows, ["epoch", "index", "layer", "act_mean", "act_std", "grad_norm"])


def plot_run(run_dir: Path) -> None:
    """Redraw the run's plots from ``metrics.csv`` and ``layer_stats.csv``."""
    from ..viz.training_plots import plot_training

    plot_training(run_dir)


def overfit_verdict(cfg: Config, metrics: Any) -> str:
    """Whether overfit mode fitted its tiny training set."""
    name = "val_dice" if cfg.task == "segmentation" else "val_accuracy"
    values = metrics.column(name)
    reached = max(values) if values else float("nan")
    if reached >= OVERFIT_TARGET:
        return f"overfit reached {name} {reached:.3f} >= {OVERFIT_TARGET} on {OVERFIT_CASES} cases"
    return (
        f"overfit did NOT reach {name} {OVERFIT_TARGET} (best {reached:.3f}): grow the model, "
        "train longer or check the data and labels"
    )


def settings_summary(cfg: Config) -> str:
    """The handful of settings that tell runs apart in EXPERIMENTS.md."""
    parts = [
        f"lr {cfg.train.lr:g}",
        f"bs {cfg.train.batch_size}",
        f"ep {cfg.train.epochs}",
        f"{cfg.train.optimizer}",
        f"fold {cfg.data.fold}",
    ]
    if cfg.overfit:
        parts.append("overfit")
    return ", ".join(parts)


def build(cfg: Config, num_classes: int, in_channels: int = 1) -> nn.Module:
    """The configured model (for evaluation code that needs the same network).

    Args:
        cfg: the run's configuration.
        num_classes: output channels.
        in_channels: input channels (the manifest's ``image_<channel>`` columns; 1 for one
            ``image`` column).
    """
    return build_model(
        cfg.model.name,
        spatial_dims=cfg.spatial_dims,
        in_channels=in_channels,
        out_channels=num_classes,
        **model_options(cfg),
    )
