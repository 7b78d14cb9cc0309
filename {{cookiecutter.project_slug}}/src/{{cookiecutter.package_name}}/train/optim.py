"""Optimizers and learning-rate schedules, chosen by ``train.optimizer`` and ``train.schedule``.

The schedule is one ``LambdaLR`` stepped once per epoch: a linear warm-up over
``warmup_epochs``, then constant, exponential (``gamma ** t``), step (``gamma ** (t // step_size)``)
or cosine decay to zero at the last epoch. Its state is a few numbers, so it resumes exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from ..config import TrainConfig


def build_optimizer(
    params: Iterable[torch.nn.Parameter], cfg: TrainConfig
) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD with momentum (Nesterov), with ``weight_decay``."""
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )
    raise ValueError(f"unknown optimizer '{cfg.optimizer}'")


def lr_factor(epoch: int, cfg: TrainConfig) -> float:
    """Multiplier of ``train.lr`` during ``epoch`` (0-based)."""
    if epoch < cfg.warmup_epochs:
        return (epoch + 1) / (cfg.warmup_epochs + 1)
    t = epoch - cfg.warmup_epochs
    span = max(1, cfg.epochs - cfg.warmup_epochs)
    if cfg.schedule == "none":
        return 1.0
    if cfg.schedule == "exponential":
        return cfg.gamma**t
    if cfg.schedule == "step":
        return cfg.gamma ** (t // cfg.step_size)
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t / span))
    raise ValueError(f"unknown schedule '{cfg.schedule}'")


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-epoch ``LambdaLR`` following :func:`lr_factor`."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: lr_factor(epoch, cfg))
