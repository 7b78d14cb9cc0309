"""A tiny dataset and a small training config that the tests of training, evaluation,
interpretation and the workflow commands share.

The images hold a bright box: the mask (segmentation) or the class 'finding' (classification),
so a couple of epochs already learn something and the answer depends on a known region.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from {{ cookiecutter.package_name }}.config import Config, load_config
from {{ cookiecutter.package_name }}.data.io import write_nifti
from {{ cookiecutter.package_name }}.data.manifest import Case, write_manifest
from {{ cookiecutter.package_name }}.data.split import make_splits
from {{ cookiecutter.package_name }}.train import loop

TASK = Config().task
DIMS = Config().spatial_dims
SHAPE = (16, 16, 8) if DIMS == 3 else (24, 24)
AFFINE = np.diag([0.8, 0.8, 2.0, 1.0])


def tiny_dataset(root: Path, cases: int = 10, seed: int = 0, box: int = 3) -> Path:
    """``cases`` images of ``SHAPE`` with a bright box, a manifest and splits (2 folds)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(cases):
        image = rng.normal(0, 20, SHAPE).astype(np.int16)
        mask = np.zeros(SHAPE, np.uint8)
        has_box = TASK == "segmentation" or i % 2 == 0
        if has_box:
            size = [min(box, s - 2) for s in SHAPE]
            start = rng.integers(1, [s - b for s, b in zip(SHAPE, size, strict=True)])
            region = tuple(slice(s, s + b) for s, b in zip(start, size, strict=True))
            image[region] += 200
            mask[region] = 1
        image_path = write_nifti(image, AFFINE, root / "images" / f"c{i}.nii.gz")
        if TASK == "segmentation":
            label = write_nifti(mask, AFFINE, root / "labels" / f"c{i}.nii.gz")
        else:
            label = "finding" if has_box else "normal"
        rows.append(Case(f"c{i}", f"p{i}", image_path, label))
    write_manifest(root, rows)
    make_splits(root, task=TASK, folds=2, test_fraction=0.2, seed=0)
    return root


SMALL = [
    "data.root=data/tiny",
    f"data.patch_size={list(SHAPE)}",
    "data.cache_dir=data/cache",
    "model.width=4",
    "model.depth=2",
    "train.batch_size=2",
    "train.epochs=2",
    "device=cpu",
    # the tiny data's abnormal class (the config's default names the dummy data's 'nodule')
    *(["data.positive_class=finding"] if TASK == "classification" else []),
]


def train_small(*overrides: str, note: str | None = None, plots: bool = False) -> Path:
    """Train on the tiny dataset (``data/tiny`` of the current project) and return the run."""
    return loop.train(load_config([*SMALL, *overrides]), note=note, quiet=True, plots=plots)
