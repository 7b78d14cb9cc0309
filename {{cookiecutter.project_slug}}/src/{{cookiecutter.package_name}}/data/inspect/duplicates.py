"""Finding duplicate images before the data is divided.

A scan that appears twice (exported twice, copied under another case id) and lands in both the
training and the test set inflates every metric. Exact duplicates have identical voxel data (a
hash of the array, whatever the file format or name); near duplicates differ only by noise or
small intensity changes (high correlation of normalized low-resolution thumbnails).

Comparing every pair of N thumbnails grows with N squared; :func:`near_duplicates` keeps that
practical at 10,000 cases without missing a pair (the result is exactly that of the full
comparison):

* the thumbnails (unit vectors) are projected onto their :data:`PROJECTION` main directions
  (from a sample of at most :data:`SAMPLE` of them). A projection never lengthens a
  difference, and two unit vectors correlate at ``t`` or more exactly when their distance is at
  most ``sqrt(2 - 2 t)``, so every near-duplicate pair is also within that distance after the
  projection: the projected vectors (a few dozen numbers each) give the candidates;
* only the candidates are compared in full. Where a block of rows has too many candidates to
  gain from this (thumbnails that all look alike), that block is compared in full directly;
* rows are handled :data:`BLOCK` at a time, so memory grows with ``N * BLOCK``, not ``N ** 2``.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from ..io import Image, read_image
from ..manifest import Case

THUMBNAIL = 16  # voxels per axis of the thumbnail compared for near duplicates
BLOCK = 1024  # thumbnails compared against all the others at once
PROJECTION = 32  # dimensions of the projection that finds the candidate pairs
SAMPLE = 512  # thumbnails the projection's directions are computed from
CHECKED = 1024  # candidate pairs compared in full at once
DENSE = 0.05  # share of candidates in a block above which the block is compared in full
SLACK = 1e-4  # rounding allowance on the squared distance bound (float32 unit vectors)


@dataclass
class Fingerprint:
    """What is compared: the voxel hash and a normalized thumbnail of one case."""

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
        matrix = np.stack([p.thumbnail for p in group]).astype(np.float32, copy=False)
        for i, j in similar_pairs(matrix, threshold):
            if group[i].voxel_hash != group[j].voxel_hash:
                pairs.append((group[i].case_id, group[j].case_id))
    return _groups(pairs, order)


def similar_pairs(matrix: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """All index pairs ``i < j`` with ``matrix[i] @ matrix[j] >= threshold``, in row order.

    Exact for rows of norm 1 or 0 (normalized thumbnails): candidates come from a projection
    that cannot drop a pair (see the module docstring), and are then checked in full.

    Args:
        matrix: ``(N, D)`` rows of unit (or zero) norm.
        threshold: the correlation a pair must reach, in ``(0, 1]``.

    Returns:
        ``[(i, j), ...]`` sorted.
    """
    n = len(matrix)
    if n < 2:
        return []
    dims = min(PROJECTION, matrix.shape[1])
    sample = matrix[:: max(1, n // SAMPLE)][:SAMPLE]
    basis = np.linalg.svd(sample, full_matrices=False)[2][:dims].T.astype(np.float32)  # (D, k)
    projected = matrix @ basis
    squared = (projected * projected).sum(1)
    radius = 2 * (1 - threshold) + SLACK  # squared distance of unit vectors at the threshold
    found: list[tuple[int, int]] = []
    for start in range(0, n, BLOCK):
        stop = min(n, start + BLOCK)
        rest = slice(start, n)  # pairs within the block and with every later row
        near = (
            squared[start:stop, None]
            + squared[None, rest]
            - 2 * (projected[start:stop] @ projected[rest].T)
        )
        near = np.triu(near <= radius, k=1)  # row i of the block is column i of `rest`
        rows, cols = np.nonzero(near)
        if len(rows) > DENSE * near.size:  # too many candidates: compare the block in full
            corr = matrix[start:stop] @ matrix[rest].T
            rows, cols = np.nonzero(np.triu(corr >= threshold, k=1))
        else:
            keep = np.zeros(len(rows), bool)
            for at in range(0, len(rows), CHECKED):
                a, b = start + rows[at : at + CHECKED], start + cols[at : at + CHECKED]
                keep[at : at + CHECKED] = np.einsum("ij,ij->i", matrix[a], matrix[b]) >= threshold
            rows, cols = rows[keep], cols[keep]
        found += [(start + int(i), start + int(j)) for i, j in zip(rows, cols, strict=True)]
    return sorted(found)


def duplicate_summary(
    prints: Sequence[Fingerprint], cases: Sequence[Case], threshold: float
) -> dict[str, Any]:
    """Exact and near duplicate groups, and which of them span more than one patient."""
    patient = {c.case_id: c.patient_id for c in cases}
    exact = exact_duplicates(prints)
    near = near_duplicates(prints, threshold)
    across = [g for g in exact + near if len({patient[c] for c in g}) > 1]
    return {
        "exact": exact,
        "near": near,
        "near_threshold": threshold,
        "groups_across_patients": across,
        "cases_to_remove": sum(len(g) - 1 for g in _merge_groups(exact + near)),
    }


def _merge_groups(groups: Sequence[Sequence[str]]) -> list[set[str]]:
    """Groups that share a case joined into one (a case can be in an exact and a near group)."""
    merged: list[set[str]] = []
    for group in groups:
        joined = set(group)
        for other in [m for m in merged if m & joined]:
            joined |= other
            merged.remove(other)
        merged.append(joined)
    return merged
