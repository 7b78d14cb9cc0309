"""Grad-CAM: class-discriminative heatmaps from the feature maps of one layer.

Selvaraju et al. (2017), "Grad-CAM: visual explanations from deep networks via gradient-based
localization": the gradients of the class score with respect to a layer's feature maps ``A^c``
are averaged over space into one weight per channel, ``w_c = mean_v d score / d A^c_v``; the map
is ``ReLU(sum_c w_c A^c)``, upsampled to the input and rescaled. Computed with
:class:`captum.attr.LayerGradCam`; the layer is the last convolution by default
(:mod:`.layers`).

Networks that pad their input internally (the U-Nets pad up to a multiple of their total
downsampling) compute their feature maps over the padded grid. The map is therefore upsampled
to the padded size, recorded from the largest input any convolution received during the forward
pass, and cropped back (the padding is at the far end of each axis), so that it lies on the
image and not shifted or stretched.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import LayerGradCam
from torch import nn

from .layers import CONVOLUTIONS, LayerError


def gradcam(scorer: nn.Module, image: torch.Tensor, target: int, layer: nn.Module) -> np.ndarray:
    """The Grad-CAM map of class ``target`` at ``layer``, on the input grid.

    Args:
        scorer: ``(B, 1, *S) -> (B, K)`` (see :mod:`.scores`), in eval mode.
        image: ``(1, 1, *S)`` preprocessed image.
        target: class index into the ``K`` scores.
        layer: a module of ``scorer`` whose output is a feature map ``(B, C, *L)``.

    Returns:
        ``(*S)`` float32 map, >= 0 (not normalized: divide by its maximum to display).

    Raises:
        LayerError: the layer's output is not a spatial feature map with the image's axes.
    """
    if image.ndim not in (4, 5) or image.shape[0] != 1:
        raise ValueError(f"image must have shape (1, C, *S), got {tuple(image.shape)}")
    sizes: list[tuple[int, ...]] = []

    def record(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        sizes.append(tuple(inputs[0].shape[2:]))

    hooks = [
        m.register_forward_pre_hook(record) for m in scorer.modules() if isinstance(m, CONVOLUTIONS)
    ]
    try:
        cam = LayerGradCam(scorer, layer).attribute(
            image.detach(), target=int(target), relu_attributions=True
        )
    finally:
        for hook in hooks:
            hook.remove()
    spatial = tuple(image.shape[2:])
    if not isinstance(cam, torch.Tensor) or cam.ndim != image.ndim:
        shape = tuple(cam.shape) if isinstance(cam, torch.Tensor) else type(cam).__name__
        raise LayerError(
            f"layer {type(layer).__name__} outputs {shape}, not a feature map with "
            f"{len(spatial)} spatial axes: choose a convolution layer"
        )
    return upsample_to_input(cam.detach(), padded_size(sizes, spatial), spatial)


def padded_size(seen: list[tuple[int, ...]], spatial: tuple[int, ...]) -> tuple[int, ...]:
    """The grid the network computed on: the largest convolution input seen, if it contains the
    image (``spatial``), else the image's own size."""
    candidates = [
        s
        for s in seen
        if len(s) == len(spatial) and all(a >= b for a, b in zip(s, spatial, strict=True))
    ]
    if not candidates:
        return spatial
    return max(candidates, key=math.prod)


def upsample_to_input(
    cam: torch.Tensor, padded: tuple[int, ...], spatial: tuple[int, ...]
) -> np.ndarray:
    """``(1, 1, *L)`` map -> ``(*spatial)``: linear interpolation to ``padded``, then the crop."""
    mode = "bilinear" if len(spatial) == 2 else "trilinear"
    up = F.interpolate(cam.float(), size=padded, mode=mode, align_corners=False)
    up = up[(0, 0, *(slice(0, n) for n in spatial))]
    return up.clamp_min(0).cpu().numpy().astype(np.float32)
