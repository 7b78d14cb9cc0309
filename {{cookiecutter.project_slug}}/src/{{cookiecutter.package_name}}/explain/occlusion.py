"""Occlusion: how the class score falls when part of the image is hidden.

Zeiler & Fergus (2014), "Visualizing and understanding convolutional networks". Two modes:

- :func:`occlusion_map`: a patch slides over the image (:class:`captum.attr.Occlusion`); each
  voxel gets the mean drop of the score over the patch positions that covered it
  (``score(image) - score(image with the patch set to the baseline)``). Positive: the voxel
  supports the class; negative: it speaks against it.
- :func:`region_test`: one known region (the label mask) is covered at once, and the prediction
  before and after is compared, beside a control: the same shape moved half the image away
  (``np.roll``), which tells a drop caused by *that* region from one caused by hiding any
  region of that size.

The baseline (the value hidden voxels get) is the image's minimum by default: background or air
after this project's normalization, i.e. "nothing there".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from captum.attr import Occlusion
from torch import nn

GRID_3D = 6  # patch positions per axis (about): 3D images take ~GRID_3D**3 forward passes
GRID_2D = 12
BATCH = 8  # occluded copies per forward pass


def patch_geometry(
    spatial: Sequence[int], grid: int | None = None
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A sliding patch for an image of size ``spatial``: ``(window, stride)`` per axis.

    The stride is ``ceil(size / grid)`` and the patch twice the stride (clipped to the image),
    so neighbouring positions overlap by half and each axis sees about ``grid`` positions.
    """
    if grid is None:
        grid = GRID_3D if len(spatial) == 3 else GRID_2D
    if grid < 1:
        raise ValueError(f"grid must be >= 1, got {grid}")
    stride = tuple(max(1, math.ceil(int(n) / grid)) for n in spatial)
    window = tuple(min(2 * s, int(n)) for s, n in zip(stride, spatial, strict=True))
    return window, stride


def occlusion_map(
    scorer: nn.Module,
    image: torch.Tensor,
    target: int,
    *,
    window: Sequence[int] | None = None,
    stride: Sequence[int] | None = None,
    baseline: float | None = None,
) -> np.ndarray:
    """The mean score drop per voxel under a sliding patch.

    Args:
        scorer: ``(B, C, *S) -> (B, K)`` (see :mod:`.scores`), in eval mode.
        image: ``(1, C, *S)`` preprocessed image; the patch hides every channel at once.
        target: class index into the ``K`` scores.
        window: patch size per spatial axis (default :func:`patch_geometry`).
        stride: step per spatial axis (default :func:`patch_geometry`).
        baseline: value of hidden voxels (default: the image minimum).

    Returns:
        ``(*S)`` float32 map in score units (positive: the voxel supports the class).
    """
    if image.ndim not in (4, 5) or image.shape[0] != 1:
        raise ValueError(f"image must have shape (1, C, *S), got {tuple(image.shape)}")
    channels, spatial = int(image.shape[1]), tuple(image.shape[2:])
    default_window, default_stride = patch_geometry(spatial)
    window = tuple(int(w) for w in (window or default_window))
    stride = tuple(int(s) for s in (stride or default_stride))
    for name, values in (("window", window), ("stride", stride)):
        if len(values) != len(spatial) or min(values) < 1:
            raise ValueError(f"{name} must be {len(spatial)} positive sizes, got {values}")
    if any(w > n for w, n in zip(window, spatial, strict=True)):
        raise ValueError(f"window {window} is larger than the image {spatial}")
    value = float(image.min()) if baseline is None else float(baseline)
    with torch.no_grad():
        attribution = Occlusion(scorer).attribute(
            image.detach(),
            sliding_window_shapes=(channels, *window),
            strides=(channels, *stride),
            baselines=value,
            target=int(target),
            perturbations_per_eval=BATCH,
        )
    return attribution[0, 0].float().cpu().numpy()


def control_region(region: np.ndarray) -> np.ndarray:
    """``region`` moved by half the image size along every axis (wrapping round)."""
    region = np.asarray(region, dtype=bool)
    return np.roll(region, [n // 2 for n in region.shape], axis=tuple(range(region.ndim)))


def covered(image: torch.Tensor, region: np.ndarray, baseline: float) -> torch.Tensor:
    """A copy of ``image`` ``(1, C, *S)`` with the voxels of ``region`` ``(*S)`` set to
    ``baseline`` in every channel."""
    mask = torch.as_tensor(np.asarray(region, dtype=bool), device=image.device)
    out = image.detach().clone()
    out[0][:, mask] = baseline
    return out


def region_test(
    measure: Callable[[torch.Tensor], dict[str, float]],
    image: torch.Tensor,
    region: np.ndarray,
    baseline: float | None = None,
) -> dict[str, Any]:
    """Cover ``region`` and a control region of the same shape; measure the prediction each time.

    Args:
        measure: ``image (1, 1, *S) -> {name: value}``, e.g. the class score and probability.
        image: ``(1, 1, *S)`` preprocessed image.
        region: ``(*S)`` bool mask of the voxels to hide (not empty).
        baseline: value of hidden voxels (default: the image minimum).

    Returns:
        ``{"original": {...}, "occluded": {...}, "control": {...}, "region_voxels": n,
        "region_fraction": share of the image, "baseline": value}``; each ``{...}`` is
        ``measure``'s result.
    """
    region = np.asarray(region, dtype=bool)
    if region.shape != tuple(image.shape[2:]):
        raise ValueError(f"region {region.shape} does not match the image {tuple(image.shape)}")
    if not region.any():
        raise ValueError("region is empty")
    value = float(image.min()) if baseline is None else float(baseline)
    with torch.no_grad():
        return {
            "original": measure(image),
            "occluded": measure(covered(image, region, value)),
            "control": measure(covered(image, control_region(region), value)),
            "region_voxels": int(region.sum()),
            "region_fraction": float(region.mean()),
            "baseline": value,
        }
