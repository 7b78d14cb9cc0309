"""Finding duplicate images before the data is divided.

A scan that appears twice (exported twice, copied under another case id) and lands in both the
training and the test set inflates every metric. Exact duplicates have identical voxel data (a
hash of the array, whatever the file format or name); near duplicates differ only by noise or
small intensity changes (high correlation of normalised low-resolution thumbnails).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .io import Image, read_image
from .manifest import Case

THUMBNAIL = 16  # voxels per axis of the thumbnail compared for near duplicates


@dataclass
class Fingerprint:
    """What is compared: the voxel hash and a normalised thumbnail of one case."""

    case_id: str
    voxel_hash: str
    thumbnail: np.ndarray  # (THUMBNAIL,) * ndim, zero mean, unit norm (flattened)


def voxel_hash(array: np.ndarray) -> str:
    """SHA-256 of the voxel values, their shape and dtype (not of the file bytes)."""
    digest = hashlib.sha256()
    digest.update(str((array.shape, str(array.dtype))).encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def thumbnail(array: np.ndarray, size: int = THUMBNAIL) -> np.ndarray:
    """A ``size``-per-axis copy of ``array``, zero mean and unit norm, flattened."""
    array = np.asarray(array, dtype=np.float32)
    zoom = [size / s for s in array.shape]
    small = ndimage.zoom(array, zoom, order=1, grid_mode=True, mode="nearest")
    small = small - small.mean()
    norm = float(np.linalg.norm(small))
    return (small / norm if norm > 0 else small).ravel()


def fingerprint(case_id: str, image: Image) -> Fingerprint:
    return Fingerprint(case_id, voxel_hash(image.array), thumbnail(image.array))


def fingerprints(
    cases: Sequence[Case], reader: Callable[[Case], Image] | None = None
) -> list[Fingerprint]:
    """Read every case's image and fingerprint it (``reader`` defaults to :func:`read_image`)."""
    read = reader or (lambda case: read_image(case.image))
    return [fingerprint(case.case_id, read(case)) for case in cases]


def _groups(pairs: list[tuple[str, str]], order: list[str]) -> list[list[str]]:
    """Connected components of ``pairs``, each in ``order``, groups of 2 or more."""
    parent = {c: c for c in order}

    def find(c: str) -> str:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    for a, b in pairs:
        parent[find(a)] = find(b)
    members: dict[str, list[str]] = defaultdict(list)
    for c in order:
        members[find(c)].append(c)
    return [g for g in members.values() if len(g) > 1]


def exact_duplicates(prints: Sequence[Fingerprint]) -> list[list[str]]:
    """Groups of case ids with identical voxel data, in input order."""
    by_hash: dict[str, list[str]] = defaultdict(list)
    for p in prints:
        by_hash[p.voxel_hash].append(p.case_id)
    return [ids for ids in by_hash.values() if len(ids) > 1]


def near_duplicates(prints: Sequence[Fingerprint], threshold: float = 0.98) -> list[list[str]]:
    """Groups of case ids whose thumbnails correlate above ``threshold`` but whose voxels differ.

    Args:
        prints: fingerprints of cases of one dimensionality (others are compared by shape).
        threshold: Pearson correlation of the thumbnails, in ``(0, 1]``.

    Returns:
        Groups (2 or more case ids each); exact duplicates of each other are not listed here.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    order = [p.case_id for p in prints]
    by_shape: dict[tuple[int, ...], list[Fingerprint]] = defaultdict(list)
    for p in prints:
        by_shape[p.thumbnail.shape].append(p)
    pairs = []
    for group in by_shape.values():
        if len(group) < 2:
            continue
        matrix = np.stack([p.thumbnail for p in group])
        corr = matrix @ matrix.T
        rows, cols = np.nonzero(np.triu(corr >= threshold, k=1))
        for i, j in zip(rows, cols, strict=True):
            if group[i].voxel_hash != group[j].voxel_hash:
                pairs.append((group[i].case_id, group[j].case_id))
    return _groups(pairs, order)
