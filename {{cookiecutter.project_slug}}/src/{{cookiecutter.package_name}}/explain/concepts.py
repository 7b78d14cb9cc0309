"""Examples of a concept, and random counterexamples, for TCAV (:mod:`.tcav`).

A concept is given by example images: a folder of them, a text file listing them (one path a
line, relative to the list's folder; blank lines and ``#`` comments skipped) or the image files
themselves. On segmentation data the default concept is *lesion patches*: crops around the
labelled regions of the training cases. Counterexamples are random crops of the training images
of the same sizes, kept off the labelled regions where there are any: "random images without
the concept", as in the TCAV paper's random sets.

Arrays are preprocessed images ``(X, Y)`` or ``(X, Y, Z)``, as the network sees them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..data.io import DICOM_SUFFIXES, NIFTI_SUFFIXES, PNG_SUFFIXES
from ..utils.errors import ProjectError

LIST_SUFFIXES = (".txt", ".lst", ".list")
IMAGE_SUFFIXES = NIFTI_SUFFIXES + PNG_SUFFIXES + DICOM_SUFFIXES
PLACEMENT_TRIES = 20  # random positions tried per crop to stay off the labelled region


class ConceptError(ProjectError):
    """A concept given as a missing folder, an empty list, or a file that is no image."""


def concept_files(sources: Sequence[str | Path]) -> list[Path]:
    """The image files (or DICOM series folders) of a concept.

    Args:
        sources: one folder (its images, sorted; sub-folders count as DICOM series), one list
            file (``.txt``/``.lst``/``.list``), or image files.

    Raises:
        ConceptError: a source does not exist, or no image is found.
    """
    files: list[Path] = []
    for source in (Path(s) for s in sources):
        if not source.exists():
            raise ConceptError(f"concept '{source}' does not exist")
        if source.is_dir():
            files += sorted(
                p
                for p in source.iterdir()
                if not p.name.startswith(".")
                and (p.is_dir() or p.name.lower().endswith(IMAGE_SUFFIXES))
            )
        elif source.name.lower().endswith(LIST_SUFFIXES):
            lines = source.read_text(encoding="utf-8").splitlines()
            entries = [s.strip() for s in lines if s.strip() and not s.strip().startswith("#")]
            for entry in entries:
                path = Path(entry) if Path(entry).is_absolute() else source.parent / entry
                if not path.exists():
                    raise ConceptError(f"'{path}' listed in '{source}' does not exist")
                files.append(path)
        else:
            files.append(source)
    if not files:
        shown = ", ".join(str(s) for s in sources)
        raise ConceptError(f"concept '{shown}' holds no images (.nii.gz, .png, .dcm, ...)")
    return files


def crop(array: np.ndarray, center: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """The block of ``size`` (clipped to the array) around ``center``, shifted inside the array."""
    out = []
    for c, s, n in zip(center, size, array.shape, strict=True):
        s = min(int(s), n)
        start = min(max(int(c) - s // 2, 0), n - s)
        out.append(slice(start, start + s))
    return np.array(array[tuple(out)], dtype=np.float32)


def lesion_patches(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    rng: np.random.Generator,
    count: int,
) -> list[np.ndarray]:
    """About ``count`` crops around the labelled regions (connected components) of ``masks``.

    Each crop is twice the region's bounding box per axis (at least 4 voxels, clipped to the
    image), centered on the region and jittered by up to a quarter of the box, so that repeated
    crops of one lesion differ a little.

    Returns:
        The crops (empty when no mask has foreground).
    """
    regions = []
    for image, mask in zip(images, masks, strict=True):
        labelled, _ = ndimage.label(np.asarray(mask) > 0)
        for box in ndimage.find_objects(labelled):
            if box is not None:
                regions.append((image, box))
    if not regions or count < 1:
        return []
    per_region = max(1, -(-count // len(regions)))
    patches = []
    for image, box in regions:
        extent = [b.stop - b.start for b in box]
        size = [max(4, 2 * e) for e in extent]
        for _ in range(per_region):
            center = [
                (b.start + b.stop) // 2 + int(rng.integers(-(e // 4), e // 4 + 1))
                for b, e in zip(box, extent, strict=True)
            ]
            patches.append(crop(image, center, size))
    return patches[: max(count, len(regions))]


def random_crops(
    images: Sequence[np.ndarray],
    sizes: Sequence[Sequence[int]],
    rng: np.random.Generator,
    avoid: Sequence[np.ndarray | None] | None = None,
) -> list[np.ndarray]:
    """One random crop per entry of ``sizes``, each from a randomly drawn image.

    Args:
        images: the images to cut from.
        sizes: the size of each crop (clipped to the image drawn).
        rng: the random generator.
        avoid: per image, a mask of voxels the crop should not cover (the concept); of
            :data:`PLACEMENT_TRIES` random positions the one covering the fewest is kept.
    """
    if not images:
        raise ValueError("random_crops needs at least one image")
    crops = []
    for size in sizes:
        index = int(rng.integers(len(images)))
        image = images[index]
        mask = None if avoid is None else avoid[index]
        best, best_overlap = None, None
        for _ in range(PLACEMENT_TRIES if mask is not None else 1):
            center = [int(rng.integers(n)) for n in image.shape]
            overlap = 0 if mask is None else int(crop(np.asarray(mask) > 0, center, size).sum())
            if best_overlap is None or overlap < best_overlap:
                best, best_overlap = center, overlap
            if overlap == 0:
                break
        crops.append(crop(image, best, size))
    return crops
