"""Seeding every random number generator from one seed.

Reproducibility needs more than ``torch.manual_seed``: Python's ``random``, NumPy, torch on the
CPU and every GPU, the DataLoader's shuffling (its own ``generator``) and each worker process
(``worker_init_fn``). Randomness that must not depend on how many workers run (augmentation)
comes from :func:`sample_rng`, keyed by (seed, epoch, index) instead of a global generator.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = True) -> dict[str, Any]:
    """Seed Python, NumPy and torch (CPU and CUDA); optionally ask for deterministic kernels.

    Args:
        seed: a non-negative integer below 2**32.
        deterministic: make torch use deterministic algorithms where it has them, turn off cuDNN
            autotuning, and fix the cuBLAS workspace (needed for deterministic CUDA matmuls).

    Returns:
        What was set and what could not be made deterministic, for ``environment.json``.

    Raises:
        ValueError: ``seed`` outside ``[0, 2**32)``.
    """
    if not 0 <= int(seed) < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    torch.cuda.manual_seed_all(seed)
    notes = []
    if deterministic:
        # Must be set before the first cuBLAS call; harmless on the CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # warn_only: an op with no deterministic version warns instead of stopping the run.
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        notes.append(
            "ops without a deterministic implementation warn (warn_only=True) and may differ "
            "between runs; results on GPU can differ from CPU"
        )
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = True
        notes.append("deterministic=false: cuDNN autotuning and nondeterministic kernels allowed")
    notes.append(
        f"bit-identical results also need the same torch version, device and thread count "
        f"({torch.get_num_threads()} threads here)"
    )
    return {
        "seed": seed,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "cudnn_deterministic": torch.backends.cudnn.deterministic,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        "torch_threads": torch.get_num_threads(),
        "not_deterministic": notes,
    }


def worker_init_fn(worker_id: int) -> None:
    """Seed Python and NumPy in a DataLoader worker from the seed torch gave that worker.

    torch derives each worker's seed from the DataLoader's generator, so with
    ``generator=make_generator(seed)`` every worker's stream is fixed by ``seed``. Without this,
    NumPy in forked workers would repeat the parent's stream in every worker.
    """
    info = torch.utils.data.get_worker_info()
    worker_seed = (info.seed if info is not None else torch.initial_seed()) % 2**32
    random.seed(worker_seed)
    np.random.seed(worker_seed)


def make_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` for a DataLoader (shuffling, worker seeds), seeded with ``seed``."""
    generator = torch.Generator()
    generator.manual_seed(int(seed))
    return generator


def sample_rng(seed: int, *keys: int) -> np.random.Generator:
    """A NumPy generator that depends only on ``seed`` and ``keys`` (e.g. epoch, sample index).

    Use it for per-sample randomness (augmentation, patch positions): the draw for sample 7 in
    epoch 3 is the same whatever the worker count or the order samples are visited in, which is
    what makes a resumed run identical to an uninterrupted one.
    """
    return np.random.default_rng([int(seed), *(int(k) for k in keys)])
