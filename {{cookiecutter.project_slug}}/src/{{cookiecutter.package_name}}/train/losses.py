"""Losses, chosen by ``train.loss``.

Segmentation: ``dice_ce`` (soft Dice + cross-entropy, the nnU-Net default; MONAI's DiceCELoss),
``ce`` (cross-entropy) and ``focal`` (cross-entropy down-weighting easy voxels, for tiny targets).
Classification: ``ce`` or ``focal``, optionally weighted by inverse class frequency.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..utils.monai_import import import_monai


class FocalLoss(nn.Module):
    """Multi-class focal loss: ``-(1 - p_t)^gamma * log(p_t)``, averaged.

    Args:
        gamma: focusing parameter; 0 gives cross-entropy.
        weight: per-class weights ``(K,)`` or ``None``.

    Shapes: logits ``(B, K, ...)``, target ``(B, ...)`` of class indices.
    """

    def __init__(self, gamma: float = 2.0, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = gamma
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits, dim=1)
        log_pt = log_p.gather(1, target.unsqueeze(1)).squeeze(1)
        loss = -((1 - log_pt.exp()) ** self.gamma) * log_pt
        if self.weight is not None:
            loss = loss * self.weight[target]
        return loss.mean()


class DiceCELoss(nn.Module):
    """Soft Dice (over the foreground classes) plus cross-entropy, equally weighted.

    Wraps MONAI's ``DiceCELoss`` so targets are plain index masks ``(B, X, Y[, Z])``.
    """

    def __init__(self, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        monai_dice_ce = import_monai("monai.losses").DiceCELoss
        self.loss = monai_dice_ce(
            to_onehot_y=True, softmax=True, include_background=False, weight=weight
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss(logits, target.unsqueeze(1))


def class_weights(counts: Sequence[int]) -> torch.Tensor:
    """Inverse-frequency weights ``N / (K * count_k)`` (a class never seen gets weight 0)."""
    counts_t = torch.as_tensor(counts, dtype=torch.float32)
    total, k = counts_t.sum(), len(counts)
    weights = torch.where(
        counts_t > 0, total / (k * counts_t.clamp(min=1)), torch.zeros_like(counts_t)
    )
    return weights


def build_loss(name: str, task: str, weights: torch.Tensor | None = None) -> nn.Module:
    """The loss called as ``loss(logits, target)`` with index targets.

    Raises:
        ValueError: a name that does not fit the task.
    """
    if name == "ce":
        return nn.CrossEntropyLoss(weight=weights)
    if name == "focal":
        return FocalLoss(weight=weights)
    if name == "dice_ce" and task == "segmentation":
        return DiceCELoss(weight=weights)
    raise ValueError(f"loss '{name}' does not fit task '{task}'")
