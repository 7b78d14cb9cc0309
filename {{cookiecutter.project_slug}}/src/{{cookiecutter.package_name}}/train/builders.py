"""From config to objects: the pieces the training loop asks for, each a small function.

Kept apart from ``loop.py`` so the loop reads as the sequence of steps it is; each function here
maps a few config keys onto one object and turns a bad combination into a ``ConfigError``
naming the key.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import nn

from .. import paths
from ..config import Config
from ..data.dataset import MedicalDataset
from ..data.from_config import dataset as dataset
from ..data.from_config import loader_settings as loader_settings
from ..models.from_config import build as build
from ..models.from_config import model_options as model_options
from ..models.pretrained import freeze_layers, load_pretrained
from ..utils.errors import ConfigError
from . import losses, optim


def regularization_off(cfg: Config) -> Config:
    """The config of overfit mode: every regularizer off (dropout, noise, penalties, weight
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
