"""Whole-image logits: one forward pass, or overlapping windows when the image exceeds the patch.

Validation during training and every later use of a run (evaluation, prediction, export checks,
explanations) run a whole image through the network the same way, so the numbers agree.
"""

from __future__ import annotations

import torch
from torch import nn

from ..utils.monai_import import import_monai

# Without the optional libraries MONAI would import (utils/monai_import.py).
sliding_window_inference = import_monai("monai.inferers").sliding_window_inference


def predict_logits(
    model: nn.Module, image: torch.Tensor, patch: tuple[int, ...] | None
) -> torch.Tensor:
    """Logits for one whole image: sliding windows when it exceeds the patch.

    Args:
        model: the network, already in the wanted mode (``eval()`` for inference).
        image: one image, shape ``(1, C, *S)``.
        patch: the training patch size (the window), or ``None`` for whole-image models.

    Returns:
        The logits, shape ``(1, K, *S)`` (segmentation) or ``(1, K)`` (classification); windows
        overlap by a quarter and are blended with Gaussian weights.
    """
    if patch is None or all(s <= p for s, p in zip(image.shape[2:], patch, strict=True)):
        return model(image)
    return sliding_window_inference(
        image, roi_size=patch, sw_batch_size=2, predictor=model, overlap=0.25, mode="gaussian"
    )
