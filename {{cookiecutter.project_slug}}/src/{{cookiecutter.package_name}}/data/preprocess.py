"""Preprocessing done once per case, before caching: orientation, resampling, normalization.

The order is: reorient a 3D image to ``orientation`` (axes permuted and flipped, no
interpolation; :mod:`.orientation`), cast to float32, resample to the target spacing (linear
interpolation for the image, nearest neighbour for the mask so that labels stay whole numbers),
clip to the intensity window, z-score. Everything here is deterministic; the result is what the
on-disk cache stores.

Normalization (``normalization``):
    ``"ct"``: clip to ``window`` (HU, e.g. ``(-1000, 1000)``), then subtract the mean and divide
        by the standard deviation of the voxels strictly *inside* the window. Air, bone and metal
        beyond the window do not drive the statistics, so soft tissue ends with mean 0 and std 1.
    ``"mr"``: z-score with the mean and standard deviation of the non-zero voxels (MR background
        and the zero padding of registered scans would otherwise dominate); all voxels when the
        image is all zero. A ``window``, when given, clips first.
    ``"none"``: values kept (clipped to ``window`` when given), only cast to float32.

The configuration's ``zscore`` is ``"mr"`` here (the same per-image z-score of the non-zero
voxels, named for images that are not MR, e.g. radiographs), and ``auto`` is resolved from the
dataset's fingerprint before any of this runs (:mod:`.fingerprint`).

:func:`to_source` puts a result computed on the preprocessed grid (class probabilities) back
on the image as stored: resampled to the reoriented source grid, then its axes put back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from .io import Image, ImageError
from .orientation import from_orientation, is_identity, reorient

NORMALIZATIONS = ("ct", "mr", "none")


@dataclass
class Preprocessed:
    """A case ready for training.

    Attributes:
        image: float32 intensities, shape ``(X, Y)`` or ``(X, Y, Z)``.
        mask: integer labels on the same grid (``uint8``, or ``int16``/``int32`` for label values
            above 255), or ``None`` without a mask.
        affine: ``(4, 4)`` voxel-to-RAS matrix of the (reoriented, resampled) grid.
        ornt: ``(ndim, 2)`` orientation transform applied to the source's axes
            (:func:`.orientation.reorient`; the identity when none was needed).
        oriented_shape: the source's shape after reorienting, before resampling.
    """

    image: np.ndarray
    mask: np.ndarray | None
    affine: np.ndarray
    ornt: np.ndarray | None = None
    oriented_shape: tuple[int, ...] | None = None

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size in mm along each array axis."""
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return tuple(float(s) for s in norms[: self.image.ndim])

    def geometry(self, source: Image) -> dict[str, Any]:
        """The grids before and after preprocessing, as the cache's ``meta`` records them.

        Args:
            source: the image as read (before reorienting), this case's first channel.

        Returns:
            ``source_shape``, ``source_affine`` (the file's own grid), ``oriented_shape`` and
            ``orientation_transform`` (how its axes were permuted and flipped), ``shape``,
            ``affine`` and ``spacing`` of the preprocessed grid.
        """
        ornt = self.ornt if self.ornt is not None else _identity(source.ndim)
        return {
            "source_shape": list(source.shape),
            "source_affine": np.asarray(source.affine).tolist(),
            "oriented_shape": list(self.oriented_shape or source.shape),
            "orientation_transform": np.asarray(ornt).tolist(),
            "shape": list(self.image.shape),
            "affine": np.asarray(self.affine).tolist(),
            "spacing": list(self.spacing),
        }


def _identity(ndim: int) -> np.ndarray:
    return np.array([[axis, 1.0] for axis in range(ndim)])


def same_grid(meta: dict[str, Any]) -> bool:
    """Whether the preprocessed grid is the source's own (no reorienting, no resampling)."""
    ornt = meta.get("orientation_transform")
    oriented = ornt is None or is_identity(np.asarray(ornt))
    return oriented and list(meta["shape"]) == list(meta["source_shape"])


def to_source(values: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """Per-class values ``(K, *S)`` on the preprocessed grid, put back on the source's grid.

    Resampled linearly to the reoriented source grid (when it was resampled), then its axes
    permuted and flipped back to the file's own orientation.

    Args:
        values: ``(K, *S)`` on the grid of ``meta["shape"]`` (e.g. class probabilities).
        meta: :meth:`Preprocessed.geometry` of the case (an older cache entry without the
            orientation keys was not reoriented).

    Returns:
        ``(K, *source_shape)``; ``values`` itself when the grid is the source's.
    """
    oriented = tuple(int(n) for n in meta.get("oriented_shape", meta["source_shape"]))
    if tuple(values.shape[1:]) != oriented:
        values = np.stack([resample(channel, oriented, order=1) for channel in values])
    ornt = meta.get("orientation_transform")
    return values if ornt is None else from_orientation(values, np.asarray(ornt))


def check_window(window: Sequence[float] | None) -> tuple[float, float] | None:
    """Validate an intensity window ``(low, high)``; ``None`` passes through.

    Raises:
        ValueError: not two finite numbers with ``low < high``.
    """
    if window is None:
        return None
    values = tuple(float(v) for v in window)
    if len(values) != 2 or not np.all(np.isfinite(values)) or values[0] >= values[1]:
        raise ValueError(f"window must be (low, high) with low < high, got {tuple(window)}")
    return values[0], values[1]


def normalize(
    array: np.ndarray, normalization: str, window: Sequence[float] | None = None
) -> np.ndarray:
    """Clip to ``window`` and z-score as the module docstring describes.

    Args:
        array: intensities of any shape and numeric dtype (e.g. HU).
        normalization: ``"ct"``, ``"mr"`` or ``"none"``.
        window: ``(low, high)`` clipping range; required for ``"ct"``.

    Returns:
        A new float32 array of the same shape. A constant region gives zeros, never NaN.

    Raises:
        ValueError: unknown ``normalization``, a bad window, or ``"ct"`` without a window.
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    window = check_window(window)
    if normalization == "ct" and window is None:
        raise ValueError("normalization 'ct' needs a window (low, high) in HU, e.g. (-1000, 1000)")
    # Always a C-ordered copy (the caller's array is not changed); one pass even from the
    # Fortran order that NIfTI files are stored in.
    out = np.array(array, dtype=np.float32, order="C")
    inside = None
    if window is not None:
        if normalization == "ct":
            inside = (out > window[0]) & (out < window[1])
        np.clip(out, window[0], window[1], out=out)
    if normalization == "none":
        return out
    if normalization == "mr":
        inside = out != 0
    values = out[inside] if inside is not None and inside.any() else out.ravel().copy()
    if values.size == 0:
        return out
    mean = float(values.mean(dtype=np.float64))
    values -= np.float32(mean)
    std = float(np.sqrt(np.dot(values, values) / values.size))  # BLAS: one fast pass
    out -= np.float32(mean)
    if std > 0:
        out /= np.float32(std)
    return out


def resampled_shape(
    shape: Sequence[int], spacing: Sequence[float], target_spacing: Sequence[float]
) -> tuple[int, ...]:
    """The grid size that covers the same extent at ``target_spacing`` (at least 1 voxel).

    Raises:
        ValueError: lengths differ or a spacing is not positive.
    """
    if not len(shape) == len(spacing) == len(target_spacing):
        raise ValueError(
            f"shape {tuple(shape)}, spacing {tuple(spacing)} and target spacing "
            f"{tuple(target_spacing)} must have one value per axis"
        )
    if min(spacing) <= 0 or min(target_spacing) <= 0:
        raise ValueError(
            f"spacings must be positive, got {tuple(spacing)} -> {tuple(target_spacing)}"
        )
    return tuple(
        max(1, int(round(n * s / t)))
        for n, s, t in zip(shape, spacing, target_spacing, strict=True)
    )


def resample(array: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """Resample ``array`` to ``shape`` over the same physical extent.

    Voxels are treated as cells (``grid_mode``): the first and last voxel's outer edges stay in
    place, as when a scanner reconstructs the same field of view at another resolution.

    Args:
        array: 2D or 3D array.
        shape: the new shape, one value per axis.
        order: 1 (linear) for intensities, 0 (nearest neighbour) for labels, which keeps their
            values and dtype.

    Returns:
        The resampled array (float32 for ``order > 0``, ``array``'s dtype for ``order == 0``).
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) != array.ndim or min(shape) < 1:
        raise ValueError(f"shape {shape} must give a positive size for each of {array.ndim} axes")
    if shape == array.shape:
        return array if order == 0 else np.asarray(array, dtype=np.float32)
    data = array if order == 0 else np.asarray(array, dtype=np.float32)
    zoom = [n / s for n, s in zip(shape, array.shape, strict=True)]
    out = ndimage.zoom(data, zoom, order=order, mode="nearest", grid_mode=True, prefilter=False)
    if out.shape != shape:  # zoom rounds shape * zoom; guard against a floating-point off-by-one
        raise AssertionError(f"resampling gave {out.shape}, expected {shape}")
    return out


def resampled_affine(
    affine: np.ndarray, shape: Sequence[int], new_shape: Sequence[int]
) -> np.ndarray:
    """The affine of ``new_shape`` voxels covering the extent of ``shape`` voxels (cell grids).

    New voxel ``i`` spans old voxel coordinates ``[i f - 0.5, (i + 1) f - 0.5]`` with
    ``f = old / new``, so its center is at ``(i + 0.5) f - 0.5``.
    """
    affine = np.asarray(affine, dtype=np.float64)
    factors = np.ones(3)
    factors[: len(shape)] = [o / n for o, n in zip(shape, new_shape, strict=True)]
    scale = np.eye(4)
    scale[:3, :3] = np.diag(factors)
    scale[:3, 3] = 0.5 * factors - 0.5  # 0 on an axis the array does not have (factor 1)
    return affine @ scale


def as_mask(array: np.ndarray, path: str | Path | None) -> np.ndarray:
    """Integer labels in the smallest dtype that holds them (``uint8`` usually), C-ordered.

    Raises:
        ImageError: negative or non-integer values; the message names ``path``.
    """
    array = np.asarray(array)
    if array.dtype == bool or array.size == 0:
        return np.asarray(array, dtype=np.uint8, order="C")
    if not np.issubdtype(array.dtype, np.integer) and (
        not np.all(np.isfinite(array)) or np.any(np.mod(array, 1) != 0)
    ):
        raise ImageError(f"mask '{path}' holds non-integer values: expected class labels")
    low, high = float(array.min()), float(array.max())
    if low < 0:
        raise ImageError(f"mask '{path}' holds negative values (min {low:g}): expected labels >= 0")
    for dtype in (np.uint8, np.int16, np.int32):
        if high <= np.iinfo(dtype).max:
            return np.asarray(array, dtype=dtype, order="C")
    raise ImageError(f"mask '{path}' holds label {high:g}: too large for a class index")


def preprocess(
    image: Image,
    mask: Image | None = None,
    *,
    normalization: str = "ct",
    window: Sequence[float] | None = (-1000.0, 1000.0),
    target_spacing: Sequence[float] | None = None,
    orientation: str | None = None,
) -> Preprocessed:
    """Reorient, resample and normalize one case.

    Args:
        image: the image as :func:`~.io.read_image` returns it.
        mask: its mask, already checked against the image (:func:`~.io.read_label`), or ``None``.
        normalization: ``"ct"``, ``"mr"`` or ``"none"`` (see the module docstring).
        window: ``(low, high)`` clipping range, e.g. HU; required for ``"ct"``.
        target_spacing: mm per axis to resample to, one value per image axis (of the
            reoriented grid); ``None`` keeps the grid.
        orientation: axis codes to reorient a 3D image (and its mask) to, e.g. ``"RAS"``;
            ``None`` keeps the axes as stored.

    Returns:
        The :class:`Preprocessed` case.

    Raises:
        ImageError: the mask holds non-integer or negative values, or ``target_spacing`` has
            the wrong number of axes for the image; the message names the file.
        ValueError: bad ``normalization`` or ``window``.
    """
    ornt = _identity(image.ndim)
    if orientation is not None:
        image, ornt = reorient(image, orientation)
        if mask is not None:
            mask, _ = reorient(mask, orientation)
    oriented_shape = image.shape
    array = image.array
    labels = as_mask(mask.array, mask.path) if mask is not None else None
    affine = np.asarray(image.affine, dtype=np.float64)
    if target_spacing is not None:
        if len(target_spacing) != image.ndim:
            raise ImageError(
                f"image '{image.path}' is {image.ndim}D but target_spacing "
                f"{tuple(target_spacing)} has {len(target_spacing)} values"
            )
        shape = resampled_shape(array.shape, image.spacing, target_spacing)
        affine = resampled_affine(affine, array.shape, shape)
        array = resample(array, shape, order=1)
        if labels is not None:
            labels = resample(labels, shape, order=0)
    return Preprocessed(
        normalize(array, normalization, window), labels, affine, ornt, tuple(oriented_shape)
    )
