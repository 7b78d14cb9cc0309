"""How fast does the data layer feed a model? Volumes per second, ours beside MONAI's.

Writes a realistic set to a temporary folder (CT-like int16 volumes in HU with an organ and a
lesion mask, anisotropic spacing, ``.nii.gz`` via ``data.io.write_nifti``), then measures on the
same files, in one run:

* ours, first epoch: decode, preprocess (window + z-score) and fill the on-disk cache;
* ours, cached epoch: read back from the ``.npy`` cache, mapped copy-on-write (the collate's
  stack is the only copy);
* MONAI ``LoadImaged`` + ``CacheDataset`` with the same preprocessing (clip + z-score): the
  time to fill its in-memory cache, then a cached epoch;
* for reference, plain nibabel decoding of the images and masks;
* ours and MONAI in training mode: random 96x96x64 patches (MONAI: ``RandCropByPosNegLabeld``
  after the cache), a third centered on foreground.

Both pipelines return whole volumes in the comparisons of the first four lines: ours
``(1, X, Y, Z)`` float32 images with uint8 masks (as the dataset hands them to the training
loop, which makes them int64 on the device), MONAI float32 images and masks. Both run
through a DataLoader with batch size 1 and the same number of workers. Cached epochs are
repeated and the best is reported, as the machine may be busy with something else.

Run from the project root::

    python benchmarks/data_loading.py [--volumes 40] [--workers 0] [--repeats 3]

Targets: our cached epoch >= 2x MONAI's cached epoch; our first epoch >= MONAI's cache fill.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from {{ cookiecutter.package_name }}.data.dataset import LoaderSettings, MedicalDataset
from {{ cookiecutter.package_name }}.data.io import read_image, write_nifti
from {{ cookiecutter.package_name }}.data.manifest import Case

SPACING = (0.8, 0.8, 2.5)  # mm: anisotropic, as most CT
WINDOW = (-1000.0, 1000.0)
PATCH = (96, 96, 64)


def phantom(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A CT-like int16 volume in HU (air, body, organ, lesion, noise) and its uint8 mask."""
    x, y, z = (
        np.linspace(-1, 1, n, dtype=np.float32).reshape([-1 if a == i else 1 for a in range(3)])
        for i, n in enumerate(shape)
    )

    def ellipsoid(center: np.ndarray, radii: np.ndarray) -> np.ndarray:
        axes = [((g - c) / r) ** 2 for g, c, r in zip((x, y, z), center, radii, strict=True)]
        return (axes[0] + axes[1]) + axes[2] <= 1  # broadcast: one full-size pass

    body = np.broadcast_to((x / 0.85) ** 2 + (y / 0.65) ** 2 <= 1, shape)
    center = rng.uniform(-0.3, 0.3, size=3)
    organ = ellipsoid(center, rng.uniform(0.2, 0.35, size=3))
    lesion = ellipsoid(center + rng.uniform(-0.1, 0.1, size=3), np.full(3, 0.08)) & organ
    noise = rng.standard_normal(shape, dtype=np.float32) * np.float32(12.0)
    hu = np.where(body, np.float32(40.0) + noise + 0.5 * z, np.float32(-1000.0))
    hu += np.float32(30.0) * organ + np.float32(60.0) * lesion
    mask = organ.astype(np.uint8) + lesion
    return hu.astype(np.int16), mask


def make_dataset(folder: Path, count: int, shape: tuple[int, ...], seed: int = 0) -> list[Case]:
    """Write ``count`` image/mask pairs as ``.nii.gz``; return them as manifest cases."""
    rng = np.random.default_rng(seed)
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = [-50.0, -60.0, 100.0]
    cases = []
    for i in range(count):
        image, mask = phantom(rng, shape)
        image_path = write_nifti(image, affine, folder / f"case{i:03d}.nii.gz")
        mask_path = write_nifti(mask, affine, folder / f"case{i:03d}_mask.nii.gz")
        cases.append(Case(f"case{i:03d}", f"p{i:03d}", image_path, mask_path))
    return cases


def rate(count: int, run: Callable[[], object]) -> float:
    """Items per second of ``run()`` handling ``count`` items."""
    start = time.perf_counter()
    run()
    return count / (time.perf_counter() - start)


def consume(loader: Iterable) -> int:
    """Iterate a loader, touching every batch (as a training loop would)."""
    seen = 0
    for batch in loader:
        image = batch["image"]
        seen += image.shape[0]
    return seen


def monai_pipeline(cases: list[Case], workers: int, patches: bool = False):
    """MONAI's ``CacheDataset`` over ``LoadImaged`` with the same window and z-score."""
    from monai import transforms as mt
    from monai.data import CacheDataset

    keys = ["image", "label"]
    steps = [
        mt.LoadImaged(keys=keys, image_only=True),
        mt.EnsureChannelFirstd(keys=keys),
        mt.ScaleIntensityRanged(
            keys="image",
            a_min=WINDOW[0],
            a_max=WINDOW[1],
            b_min=WINDOW[0],
            b_max=WINDOW[1],
            clip=True,
        ),
        mt.NormalizeIntensityd(keys="image"),
    ]
    if patches:
        steps.append(
            mt.RandCropByPosNegLabeld(
                keys=keys, label_key="label", spatial_size=PATCH, pos=1, neg=2, num_samples=1
            )
        )
    data = [{"image": str(c.image), "label": str(c.label)} for c in cases]
    return CacheDataset(
        data, mt.Compose(steps), cache_rate=1.0, num_workers=max(workers, 1), progress=False
    )


def best_of(repeats: int, runs: dict[str, Callable[[], float]]) -> dict[str, float]:
    """Run each measurement ``repeats`` times, interleaved, and keep the best of each."""
    best = dict.fromkeys(runs, 0.0)
    for _ in range(repeats):
        for name, run in runs.items():
            best[name] = max(best[name], run())
    return best


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=40, help="volumes to generate (40)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (0)")
    parser.add_argument("--repeats", type=int, default=3, help="cached epochs, best kept (3)")
    parser.add_argument("--shape", type=int, nargs=3, default=[128, 128, 64], metavar="N")
    args = parser.parse_args(argv)
    if args.volumes < 1 or args.workers < 0 or args.repeats < 1 or min(args.shape) < 1:
        parser.error("--volumes, --repeats and --shape must be >= 1, --workers >= 0")
    warnings.filterwarnings("ignore", category=UserWarning)
    from monai.data import DataLoader as MonaiLoader

    n, workers, shape = args.volumes, args.workers, tuple(args.shape)
    folder = Path(tempfile.mkdtemp(prefix="data-loading-"))
    try:
        start = time.perf_counter()
        cases = make_dataset(folder / "data", n, shape)
        written = sum(p.stat().st_size for p in (folder / "data").iterdir())
        print(
            f"{n} volumes of {'x'.join(map(str, shape))} int16 with masks as .nii.gz "
            f"({written / 2**20:.0f} MiB), written in {time.perf_counter() - start:.1f} s; "
            f"{workers} DataLoader workers, {torch.get_num_threads()} torch threads",
            flush=True,
        )

        def epoch(dataset, cls=DataLoader, set_epoch: bool = False) -> Callable[[], float]:
            counter = iter(range(10**6))

            def run() -> float:
                if set_epoch:
                    dataset.set_epoch(next(counter))
                return rate(n, lambda: consume(cls(dataset, batch_size=1, num_workers=workers)))

            return run

        settings = LoaderSettings(
            window=WINDOW, normalization="ct", augment=False, cache_dir=folder / "cache"
        )
        ours = MedicalDataset(cases, "segmentation", settings, train=False)
        results = {"ours_first": epoch(ours)()}
        # Like MONAI's fill: decode, preprocess and write the cache, without making items.
        refill = dataclasses.replace(settings, cache_dir=folder / "cache-fill")
        filling = MedicalDataset(cases, "segmentation", refill, train=False)
        results["ours_fill"] = rate(n, lambda: filling.prepare(threads=max(workers, 1)))
        start = time.perf_counter()
        monai_whole = monai_pipeline(cases, workers)
        results["monai_fill"] = n / (time.perf_counter() - start)
        results["decode"] = rate(
            n, lambda: [(read_image(c.image), read_image(c.label)) for c in cases]
        )
        results |= best_of(
            args.repeats,
            {"ours_cached": epoch(ours), "monai_cached": epoch(monai_whole, MonaiLoader)},
        )
        del monai_whole  # its RAM cache

        patches = dataclasses.replace(settings, patch_size=PATCH)
        ours_patches = MedicalDataset(cases, "segmentation", patches, train=True)
        augmented = dataclasses.replace(patches, augment=True)
        ours_augmented = MedicalDataset(cases, "segmentation", augmented, train=True)
        monai_patches = monai_pipeline(cases, workers, patches=True)
        results |= best_of(
            args.repeats,
            {
                "ours_patches": epoch(ours_patches, set_epoch=True),
                "ours_patches_aug": epoch(ours_augmented, set_epoch=True),
                "monai_patches": epoch(monai_patches, MonaiLoader),
            },
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    patch = "x".join(map(str, PATCH))
    rows = [
        ("Whole volumes (validation mode; MONAI with the same clip + z-score)", None),
        ("ours: first epoch (decode, preprocess, write cache)", results["ours_first"]),
        ("ours: cache fill only (prepare())", results["ours_fill"]),
        ("MONAI LoadImaged + CacheDataset: cache fill", results["monai_fill"]),
        ("ours: cached epoch (.npy cache)", results["ours_cached"]),
        ("MONAI CacheDataset: cached epoch (RAM)", results["monai_cached"]),
        ("reference: read_image of image + mask (.nii.gz)", results["decode"]),
        (f"Training patches {patch}, 1/3 centered on foreground, cached", None),
        ("ours: no augmentation (memory-mapped reads)", results["ours_patches"]),
        ("ours: with augmentation", results["ours_patches_aug"]),
        ("MONAI: RandCropByPosNegLabeld after the cache", results["monai_patches"]),
    ]
    print()
    for name, value in rows:
        print(f"  {name:52s} {value:8.1f} volumes/s" if value is not None else name)
    checks = [
        (
            "cached epoch vs MONAI's cached epoch",
            results["ours_cached"] / results["monai_cached"],
            2,
        ),
        ("training patches vs MONAI's", results["ours_patches"] / results["monai_patches"], 2),
        ("first epoch vs MONAI's cache fill", results["ours_first"] / results["monai_fill"], 1),
        ("cache fill vs MONAI's cache fill", results["ours_fill"] / results["monai_fill"], 1),
    ]
    print()
    for name, ratio, target in checks:
        verdict = "met" if ratio >= target else "NOT met"
        print(f"  {name:40s} {ratio:5.2f}x (target >= {target}x: {verdict})")
    return results


if __name__ == "__main__":
    main()
