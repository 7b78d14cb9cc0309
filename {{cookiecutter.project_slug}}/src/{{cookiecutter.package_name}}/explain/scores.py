"""What is explained: one scalar per sample and class, for classifiers and segmenters alike.

Captum's methods differentiate (or perturb) a *score*: a network output ``(B, K)`` and a target
class index. A classifier's logits already are that. A segmentation network returns logits
``(B, K, *S)``; :class:`RegionScore` turns them into ``(B, K)`` by summing each class's logit over
the region the network predicted for that class on the unperturbed image,
``score[b, k] = sum_v logits[b, k, v] * region[k, v]``, so the explanation answers "what in the
image makes the network segment what it segments". The region is fixed before the explanation
runs, so perturbed inputs (occlusion) are scored over the same voxels. A class predicted nowhere
is scored over the whole image (its total evidence).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


class RegionScore(nn.Module):
    """A segmentation network seen as a scorer: ``(B, 1, *S) -> (B, K)``.

    Args:
        model: segmentation network, ``(B, C, *S) -> (B, K, *S)`` logits.
        regions: ``(K, *S)`` weights, usually 0/1 masks: the voxels each class's logit is
            summed over.
    """

    def __init__(self, model: nn.Module, regions: torch.Tensor) -> None:
        super().__init__()
        if regions.ndim not in (3, 4):
            raise ValueError(f"regions must be (K, *S) with 2 or 3 axes in S, got {regions.shape}")
        self.model = model
        self.register_buffer("regions", regions.float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        if logits.shape[1:] != self.regions.shape:
            raise ValueError(
                f"logits {tuple(logits.shape)} do not match regions {tuple(self.regions.shape)}"
            )
        return (logits * self.regions[None]).flatten(2).sum(dim=2)


@dataclass
class Explained:
    """A network prepared to explain one image.

    Attributes:
        scorer: ``(B, 1, *S) -> (B, K)`` (the classifier itself, or a :class:`RegionScore`).
        target: the class index explained: the predicted class (classification) or the
            foreground class with the most predicted voxels (segmentation; class 1 when none).
        probability: the network's probability for ``target`` (classification), or the share
            of voxels predicted as ``target`` (segmentation).
        prediction: ``(*S)`` int64 predicted labels (segmentation), or ``None``.
        region: how the segmentation score was formed: ``"predicted"`` or ``"whole image"``
            (``None`` for classification).
    """

    scorer: nn.Module
    target: int
    probability: float
    prediction: torch.Tensor | None = None
    region: str | None = None


@torch.no_grad()
def prepare(model: nn.Module, task: str, image: torch.Tensor) -> Explained:
    """Run ``model`` on ``image`` once and choose what to explain.

    Args:
        model: the network in eval mode.
        task: ``"classification"`` or ``"segmentation"``.
        image: ``(1, C, *S)`` preprocessed image on the model's device.

    Returns:
        The :class:`Explained` scorer and target.
    """
    if image.ndim not in (4, 5) or image.shape[0] != 1:
        raise ValueError(f"image must have shape (1, C, *S), got {tuple(image.shape)}")
    logits = model(image).float()
    if task == "classification":
        probs = torch.softmax(logits, dim=1)[0]
        target = int(probs.argmax())
        return Explained(model, target, float(probs[target]))
    if task != "segmentation":
        raise ValueError(f"task must be classification or segmentation, got {task!r}")
    prediction = logits.argmax(dim=1)[0]
    classes = logits.shape[1]
    counts = torch.bincount(prediction.flatten(), minlength=classes)
    target = 1 + int(counts[1:].argmax()) if counts[1:].sum() > 0 else min(1, classes - 1)
    regions = torch.stack([prediction == k for k in range(classes)]).float()
    empty = regions.flatten(1).sum(dim=1) == 0
    regions[empty] = 1.0
    share = float(counts[target]) / prediction.numel()
    region = "whole image" if bool(empty[target]) else "predicted"
    return Explained(RegionScore(model, regions), target, share, prediction, region)
