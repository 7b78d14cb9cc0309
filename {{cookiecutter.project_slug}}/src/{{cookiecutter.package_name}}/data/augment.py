"""Data augmentation whose randomness comes only from a per-sample generator.

:func:`augment` takes its random draws from the generator it is given, which the dataset makes
with ``utils.seed.sample_rng`` ``(seed, epoch, index)``. So the augmentation of sample 7 in
epoch 3 is the same with 0, 2 or 8 DataLoader workers, in any visiting order, and after a resume.
Every draw is made whether or not its augmentation is switched on, so turning one off does not
change what the others do (useful for ablations).

Spatial augmentations act on the image and the mask together; intensity augmentations on the
image only. Rotations turn the first two axes (the axial plane for ``(X, Y, Z)`` volumes), where
the spacing is usually isotropic; quarter turns are only used between axes of equal length, so
the patch shape never changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..config import AugmentationConfig

# The defaults are the config's (``data.augmentation.*``): one place for both.
_DEFAULTS = AugmentationConfig()


@dataclass
class AugmentSettings:
    """Which augmentations run, and how strongly.

    The defaults are those of ``data.augmentation.*`` (:class:`.config.AugmentationConfig`);
    :meth:`from_config` makes the settings of a run's config.

    Attributes:
        flip: mirror each axis with probability 0.5.
        rotate90: turn by a random multiple of 90 degrees in the first two axes (when they have
            the same length).
        rotate_degrees: maximum angle of a small rotation in the first two axes (0 = off).
        rotate_probability: how often the small rotation is applied.
        scale: multiply intensities by a factor in ``[1 - scale, 1 + scale]`` (0 = off).
        shift: add an offset in ``[-shift, shift]`` (normalized units; 0 = off).
        noise_std: largest standard deviation of added Gaussian noise (0 = off).
        noise_probability: how often noise is added.
    """

    flip: bool = _DEFAULTS.flip
    rotate90: bool = _DEFAULTS.rotate90
    rotate_degrees: float = _DEFAULTS.rotate_degrees
    rotate_probability: float = _DEFAULTS.rotate_probability
    scale: float = _DEFAULTS.intensity_scale
    shift: float = _DEFAULTS.intensity_shift
    noise_std: float = _DEFAULTS.noise_std
    noise_probability: float = _DEFAULTS.noise_probability

    @classmethod
    def from_config(cls, config: AugmentationConfig) -> AugmentSettings:
        """The settings of ``data.augmentation.*``.

        Args:
            config: the run's ``cfg.data.augmentation``.

        Returns:
            The same strengths (``intensity_scale`` and ``intensity_shift`` become ``scale`` and
            ``shift``).

        Raises:
            ValueError: a strength out of range (the config loader reports it first, by key).
        """
        return cls(
            flip=config.flip,
            rotate90=config.rotate90,
            rotate_degrees=config.rotate_degrees,
            rotate_probability=config.rotate_probability,
            scale=config.intensity_scale,
            shift=config.intensity_shift,
            noise_std=config.noise_std,
            noise_probability=config.noise_probability,
        )

    def __post_init__(self) -> None:
        for name in ("rotate_degrees", "scale", "shift", "noise_std"):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"augmentation {name} must be >= 0, got {getattr(self, name)}")
        for name in ("rotate_probability", "noise_probability"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ValueError(
                    f"augmentation {name} must be in [0, 1], got {getattr(self, name)}"
                )
        if self.scale >= 1:
            raise ValueError(
                f"augmentation scale must be < 1 (factor 1 +- scale), got {self.scale}"
            )


def augment(
    image: np.ndarray,
    mask: np.ndarray | None,
    rng: np.random.Generator,
    settings: AugmentSettings | None = None,
    *,
    channel_axis: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Apply random flips, rotations, intensity scale/shift and noise.

    Args:
        image: float32 intensities, shape ``(X, Y)`` or ``(X, Y, Z)``; with ``channel_axis``,
            ``(C, X, Y)`` or ``(C, X, Y, Z)``: every channel gets the same spatial transform
            and the same intensity scale, shift and noise level (noise drawn per voxel).
        mask: integer labels of the spatial shape, or ``None`` (classification).
        rng: the sample's generator (``utils.seed.sample_rng``); it is the only source of
            randomness.
        settings: what to apply; the defaults of :class:`AugmentSettings` when ``None``.
        channel_axis: ``image`` has a leading channel axis (a multi-channel case).

    Returns:
        New C-contiguous ``(image, mask)`` arrays of the input shapes and dtypes; the inputs are
        not modified.

    Raises:
        ValueError: ``image`` is not 2D or 3D, or ``mask`` has another shape.
    """
    settings = settings or AugmentSettings()
    o = int(bool(channel_axis))  # the first spatial axis
    spatial = image.shape[o:]
    if len(spatial) not in (2, 3):
        what = "(C, X, Y[, Z])" if o else "2D or 3D"
        raise ValueError(f"image must be {what}, got shape {image.shape}")
    if mask is not None and mask.shape != spatial:
        raise ValueError(f"mask shape {mask.shape} differs from image shape {spatial}")
    # Every draw, in a fixed order, whatever is switched on.
    flips = rng.random(len(spatial)) < 0.5
    quarter_turns = int(rng.integers(4))
    rotate = rng.random() < settings.rotate_probability
    angle = rng.uniform(-1.0, 1.0) * settings.rotate_degrees
    factor = 1.0 + rng.uniform(-1.0, 1.0) * settings.scale
    offset = rng.uniform(-1.0, 1.0) * settings.shift
    noisy = rng.random() < settings.noise_probability
    sigma = rng.uniform(0.0, 1.0) * settings.noise_std
    noise_seed = int(rng.integers(2**63))

    if settings.flip and flips.any():
        axes = tuple(int(a) for a in np.flatnonzero(flips))
        image = np.flip(image, tuple(a + o for a in axes))
        mask = np.flip(mask, axes) if mask is not None else None
    if settings.rotate90 and quarter_turns:
        k = quarter_turns if spatial[0] == spatial[1] else quarter_turns // 2 * 2
        if k:
            image = np.rot90(image, k, axes=(o, o + 1))
            mask = np.rot90(mask, k, axes=(0, 1)) if mask is not None else None
    if settings.rotate_degrees > 0 and rotate and angle != 0:
        image = ndimage.rotate(
            np.ascontiguousarray(image),
            angle,
            axes=(o, o + 1),
            reshape=False,
            order=1,
            mode="nearest",
        )
        if mask is not None:
            mask = ndimage.rotate(
                np.ascontiguousarray(mask),
                angle,
                axes=(0, 1),
                reshape=False,
                order=0,
                mode="nearest",
            )
    image = np.array(image, dtype=np.float32)  # a C-contiguous copy that can be changed in place
    if settings.scale > 0:
        image *= np.float32(factor)
    if settings.shift > 0:
        image += np.float32(offset)
    if settings.noise_std > 0 and noisy and sigma > 0:
        noise = np.random.default_rng(noise_seed).standard_normal(image.shape, dtype=np.float32)
        image += noise * np.float32(sigma)
    mask = np.ascontiguousarray(mask) if mask is not None else None
    return image, mask
