"""Saliency maps: the gradient of the class score with respect to the input.

Simonyan, Vedaldi & Zisserman (2014), "Deep inside convolutional networks": the magnitude
``|d score_k / d x_v|`` of each voxel's gradient says how much a small change there would move
the score of class ``k``. Computed with :class:`captum.attr.Saliency`.
"""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import Saliency
from torch import nn


def saliency(scorer: nn.Module, image: torch.Tensor, target: int) -> np.ndarray:
    """The absolute input gradient of ``scorer``'s class ``target``.

    Args:
        scorer: ``(B, C, *S) -> (B, K)`` (see :mod:`.scores`), in eval mode.
        image: ``(1, C, *S)`` preprocessed image (``C`` channels, usually 1).
        target: class index into the ``K`` scores.

    Returns:
        ``(*S)`` float32 map, >= 0: with several channels, the sum over the channels of each
        one's absolute gradient.
    """
    _check(image)
    inputs = image.detach().clone().requires_grad_(True)
    attribution = Saliency(scorer).attribute(inputs, target=int(target), abs=True)
    return attribution[0].sum(0).detach().float().cpu().numpy()


def _check(image: torch.Tensor) -> None:
    if image.ndim not in (4, 5) or image.shape[0] != 1:
        raise ValueError(f"image must have shape (1, C, *S), got {tuple(image.shape)}")
