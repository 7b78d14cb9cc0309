"""Duplicates are found by their voxels, whatever the file; near ones by their thumbnails."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from {{ cookiecutter.package_name }}.data.inspect import duplicates
from {{ cookiecutter.package_name }}.data.inspect.duplicates import (
    exact_duplicates,
    fingerprint,
    near_duplicates,
    similar_pairs,
    thumbnail,
    voxel_hash,
)
from {{ cookiecutter.package_name }}.data.io import Image


def blob(seed: int, shape: tuple[int, ...] = (24, 24, 8)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"))
    center = rng.uniform(4, 20, size=len(shape))[:, None, None, None]
    center[-1] = rng.uniform(2, 6)
    return (1000 * np.exp(-((grid - center) ** 2).sum(0) / 30)).astype(np.int16)


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


def test_thumbnail_is_normalized() -> None:
    t = thumbnail(blob(3))
    assert t.shape == (16**3,)
    assert abs(t.mean()) < 1e-5 and np.linalg.norm(t) == pytest.approx(1.0, abs=1e-5)
    assert np.all(thumbnail(np.zeros((5, 5))) == 0)


def test_threshold_is_checked() -> None:
    with pytest.raises(ValueError, match="threshold must be in"):
        near_duplicates([], threshold=0)


def unit_rows(rng: np.random.Generator, n: int, dims: int, spread: float) -> np.ndarray:
    """``n`` unit rows around a shared direction (``spread`` 0: all alike), some of them noisy
    copies of others (near duplicates), one all zero (a constant image's thumbnail)."""
    rows = rng.normal(size=dims) + spread * rng.normal(size=(n, dims))
    copies = rng.choice(n, size=n // 10, replace=False)
    rows[copies[: len(copies) // 2]] = rows[copies[len(copies) // 2 :]] + 0.1 * rng.normal(
        size=(len(copies) // 2, dims)
    )
    rows -= rows.mean(1, keepdims=True)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    rows[7] = 0
    return rows.astype(np.float32)


def all_pairs(rows: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """The full N x N comparison that :func:`similar_pairs` must reproduce."""
    i, j = np.nonzero(np.triu(rows @ rows.T >= threshold, k=1))
    return sorted(zip(i.tolist(), j.tolist(), strict=True))


@pytest.mark.parametrize("spread", [3.0, 0.05])  # distinct thumbnails / all much alike
@pytest.mark.parametrize("dense", [0.0, 1.0])  # every block in full / always via candidates
def test_similar_pairs_are_those_of_the_full_comparison(
    monkeypatch: pytest.MonkeyPatch, spread: float, dense: float
) -> None:
    monkeypatch.setattr(duplicates, "BLOCK", 37)
    monkeypatch.setattr(duplicates, "SAMPLE", 50)
    monkeypatch.setattr(duplicates, "CHECKED", 16)
    monkeypatch.setattr(duplicates, "DENSE", dense)
    rows = unit_rows(np.random.default_rng(int(spread * 10)), 300, 64, spread)
    for threshold in (0.98, 0.9, 0.5):
        expected = all_pairs(rows, threshold)
        assert similar_pairs(rows, threshold) == expected
    assert len(all_pairs(rows, 0.98)) >= 10  # the planted copies are there to be found
    assert similar_pairs(rows[:1], 0.98) == []


def test_similar_pairs_memory_does_not_grow_with_the_square(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(duplicates, "BLOCK", 128)
    rows = unit_rows(np.random.default_rng(3), 3000, 128, 3.0)
    tracemalloc.start()
    try:
        found = similar_pairs(rows, 0.98)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert found == all_pairs(rows, 0.98) and found
    square = len(rows) ** 2 * 4  # the full float32 correlation matrix: 36 MB
    assert peak < square / 4, f"peak {peak / 1e6:.1f} MB"
