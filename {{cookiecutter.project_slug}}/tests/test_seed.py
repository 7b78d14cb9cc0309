"""One seed fixes Python, NumPy, torch and the DataLoader."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from {{ cookiecutter.package_name }}.utils.seed import (
    make_generator,
    sample_rng,
    seed_everything,
    worker_init_fn,
)


def draw() -> tuple[float, float, list[float]]:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_same_seed_same_numbers() -> None:
    seed_everything(123)
    first = draw()
    seed_everything(123)
    assert draw() == first


def test_different_seed_different_numbers() -> None:
    seed_everything(1)
    first = draw()
    seed_everything(2)
    assert draw() != first


def test_report_records_settings() -> None:
    report = seed_everything(5, deterministic=True)
    assert report["seed"] == 5
    assert report["deterministic_algorithms"] is True
    assert report["cudnn_benchmark"] is False
    assert report["not_deterministic"]
    report = seed_everything(5, deterministic=False)
    assert report["deterministic_algorithms"] is False
    seed_everything(5)  # leave the process deterministic for the other tests


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_seed_out_of_range(seed: int) -> None:
    with pytest.raises(ValueError, match="seed must be in"):
        seed_everything(seed)


def shuffled_order(seed: int, workers: int) -> list[int]:
    data = TensorDataset(torch.arange(20))
    loader = DataLoader(
        data,
        batch_size=4,
        shuffle=True,
        num_workers=workers,
        generator=make_generator(seed),
        worker_init_fn=worker_init_fn,
    )
    return [int(x) for (batch,) in loader for x in batch]


def test_dataloader_order_follows_the_seed() -> None:
    assert shuffled_order(7, 0) == shuffled_order(7, 0)
    assert shuffled_order(7, 0) != shuffled_order(8, 0)
    assert sorted(shuffled_order(7, 0)) == list(range(20))


class NumpyNoise(torch.utils.data.Dataset):
    """Returns NumPy random numbers drawn inside the worker."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> float:
        return float(np.random.rand())


def noise(seed: int) -> list[float]:
    loader = DataLoader(
        NumpyNoise(),
        batch_size=1,
        num_workers=2,
        generator=make_generator(seed),
        worker_init_fn=worker_init_fn,
    )
    return [float(x) for x in loader]


@pytest.mark.slow
def test_workers_are_seeded_and_distinct() -> None:
    first = noise(3)
    assert noise(3) == first  # repeatable
    assert len(set(first)) == len(first)  # workers do not repeat each other's stream


def test_sample_rng_depends_only_on_its_keys() -> None:
    a = sample_rng(42, 3, 7).random(4)
    np.random.seed(999)  # global state must not matter
    assert np.array_equal(sample_rng(42, 3, 7).random(4), a)
    assert not np.array_equal(sample_rng(42, 3, 8).random(4), a)
    assert not np.array_equal(sample_rng(42, 4, 7).random(4), a)
