"""Duplicates are found by their voxels, whatever the file; near ones by their thumbnails."""

from __future__ import annotations

import numpy as np
import pytest

from {{ cookiecutter.package_name }}.data.duplicates import (
    exact_duplicates,
    fingerprint,
    near_duplicates,
    thumbnail,
    voxel_hash,
)
from {{ cookiecutter.package_name }}.data.io import Image


def blob(seed: int, shape: tuple[int, ...] = (24, 24, 8)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"))
    centre = rng.uniform(4, 20, size=len(shape))[:, None, None, None]
    centre[-1] = rng.uniform(2, 6)
    return (1000 * np.exp(-((grid - centre) ** 2).sum(0) / 30)).astype(np.int16)


def prints(arrays: dict[str, np.ndarray]):
    return [fingerprint(k, Image(v, np.eye(4))) for k, v in arrays.items()]


def test_exact_duplicates_ignore_the_geometry_but_not_the_values() -> None:
    a, b = blob(0), blob(1)
    found = exact_duplicates(prints({"a": a, "b": b, "a-copy": a.copy(), "b-copy": b.copy()}))
    assert found == [["a", "a-copy"], ["b", "b-copy"]]
    shifted = a.copy()
    shifted[0, 0, 0] += 1
    assert voxel_hash(shifted) != voxel_hash(a)
    assert voxel_hash(a.astype(np.int32)) != voxel_hash(a)  # dtype is part of the identity


def test_near_duplicates_found_and_distinct_images_not() -> None:
    a, b, c = blob(0), blob(1), blob(2)
    noisy = (a + np.random.default_rng(9).normal(0, 10, a.shape)).astype(np.int16)
    found = near_duplicates(prints({"a": a, "b": b, "noisy-a": noisy, "c": c, "a2": a.copy()}))
    # noisy-a matches a (and a's exact copy); exact copies alone are not "near" duplicates.
    assert found == [["a", "noisy-a", "a2"]]
    assert near_duplicates(prints({"a": a, "a2": a.copy()})) == []


def test_thumbnail_is_normalised() -> None:
    t = thumbnail(blob(3))
    assert t.shape == (16**3,)
    assert abs(t.mean()) < 1e-5 and np.linalg.norm(t) == pytest.approx(1.0, abs=1e-5)
    assert np.all(thumbnail(np.zeros((5, 5))) == 0)


def test_threshold_is_checked() -> None:
    with pytest.raises(ValueError, match="threshold must be in"):
        near_duplicates([], threshold=0)
