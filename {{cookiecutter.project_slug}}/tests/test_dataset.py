"""The data pipeline: preprocessing, the on-disk cache, patches, augmentation, items."""

from __future__ import annotations

import dataclasses
import os
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_data import SMALL, TASK, train_small
from torch.utils.data import DataLoader

from {{ cookiecutter.package_name }}.config import DataConfig, load_config
from {{ cookiecutter.package_name }}.data import dataset as dataset_module
from {{ cookiecutter.package_name }}.data.augment import AugmentSettings, augment
from {{ cookiecutter.package_name }}.data.cache import ArrayCache, CorruptEntryError
from {{ cookiecutter.package_name }}.data.dataset import (
    LoaderSettings,
    MedicalDataset,
    class_names,
    crop_pad,
    foreground_points,
)
from {{ cookiecutter.package_name }}.data.from_config import loader_settings
from {{ cookiecutter.package_name }}.data.io import Image, ImageError, write_nifti, write_png
from {{ cookiecutter.package_name }}.data.manifest import Case, DataError
from {{ cookiecutter.package_name }}.data.preprocess import normalize, preprocess
from {{ cookiecutter.package_name }}.train.lr_find import lr_range_test
from {{ cookiecutter.package_name }}.utils.seed import sample_rng

SPACING = (1.0, 1.0, 2.5)


def ct_volume(rng: np.random.Generator, shape=(16, 16, 8)) -> tuple[np.ndarray, np.ndarray]:
    """Air around a noisy soft-tissue block, a small lesion labelled 1 (int16 HU, uint8 mask)."""
    image = np.full(shape, -1000, dtype=np.int16)
    body = tuple(slice(n // 4, n - n // 4) for n in shape)
    image[body] = rng.normal(40, 20, size=image[body].shape).astype(np.int16)
    mask = np.zeros(shape, dtype=np.uint8)
    lesion = tuple(slice(n // 2 - 1, n // 2 + 1) for n in shape)
    mask[lesion] = 1
    image[lesion] += 80
    return image, mask


def write_case(folder: Path, name: str, image: np.ndarray, mask=None, spacing=SPACING) -> Case:
    affine = np.diag([*spacing[: image.ndim], *([1.0] * (3 - image.ndim)), 1.0])
    image_path = write_nifti(image, affine, folder / f"{name}.nii.gz")
    label: str | Path = "normal"
    if mask is not None:
        label = write_nifti(mask, affine, folder / f"{name}_mask.nii.gz")
    return Case(name, f"patient-{name}", image_path, label)


def age(*paths: Path, seconds: float = 60.0) -> None:
    """Set modification times in the past, as for a dataset written a while ago."""
    stamp = time.time() - seconds
    for path in paths:
        os.utime(path, (stamp, stamp))


@pytest.fixture
def cases(tmp_path: Path) -> list[Case]:
    rng = np.random.default_rng(0)
    return [write_case(tmp_path / "data", f"case{i}", *ct_volume(rng)) for i in range(3)]


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count how often the dataset decodes an image or a mask."""
    counts = {"image": 0, "label": 0}
    real_image, real_label = dataset_module.read_image, dataset_module.read_label

    def read_image(path, *args, **kwargs):
        counts["image"] += 1
        return real_image(path, *args, **kwargs)

    def read_label(path, *args, **kwargs):
        counts["label"] += 1
        return real_label(path, *args, **kwargs)

    monkeypatch.setattr(dataset_module, "read_image", read_image)
    monkeypatch.setattr(dataset_module, "read_label", read_label)
    return counts


# --- preprocessing ---------------------------------------------------------------------------


def test_ct_window_then_zscore_standardizes_the_voxels_inside_the_window() -> None:
    rng = np.random.default_rng(1)
    hu = np.concatenate([np.full(500, -1024.0), rng.normal(40, 30, 2000), np.full(50, 3000.0)])
    out = normalize(hu, "ct", window=(-1000, 1000))
    inside = (hu > -1000) & (hu < 1000)
    assert out.dtype == np.float32
    assert out[inside].mean() == pytest.approx(0.0, abs=1e-4)
    assert out[inside].std() == pytest.approx(1.0, abs=1e-4)
    # clipped: air and metal sit exactly at the window's ends, mapped like the inside voxels
    mean, std = hu[inside].mean(), hu[inside].std()
    assert np.allclose(out[:500], (-1000 - mean) / std, atol=1e-4)
    assert np.allclose(out[-50:], (1000 - mean) / std, atol=1e-4)


def test_mr_zscore_uses_the_nonzero_voxels_and_none_only_clips() -> None:
    rng = np.random.default_rng(2)
    mr = np.concatenate([np.zeros(1000), rng.gamma(4.0, 50.0, 3000)])
    out = normalize(mr, "mr")
    assert out[1000:].mean() == pytest.approx(0.0, abs=1e-4)
    assert out[1000:].std() == pytest.approx(1.0, abs=1e-4)
    assert np.array_equal(
        normalize(mr, "none", window=(0, 100)), np.clip(mr, 0, 100).astype(np.float32)
    )
    assert np.all(normalize(np.full(10, 7.0), "mr") == 0)  # constant image: zeros, not NaN
    with pytest.raises(ValueError, match="needs a window"):
        normalize(mr, "ct")
    with pytest.raises(ValueError, match="low < high"):
        normalize(mr, "ct", window=(100, -100))


@pytest.mark.parametrize("normalization", ["zscore", "mr", "none"])
def test_the_ct_window_is_applied_only_by_ct_normalization(normalization: str) -> None:
    # A 12-bit radiograph (uint16 0..4095) with a nodule at 2600 on a 1500 background: a CT
    # window of [-200, 300] HU would clip both to 300 and the nodule would vanish.
    from {{ cookiecutter.package_name }}.data.from_config import loader_settings

    cfg = load_config([f"data.normalization={normalization}", "data.window=[-200, 300]"])
    settings = loader_settings(cfg)
    assert settings.window is None
    image = np.full((32, 32), 1500, np.uint16)
    image[10:14, 10:14] = 2600
    image[0, 0] = 4095
    pre = preprocess(
        Image(image, np.eye(4)), None, normalization=settings.normalization, window=settings.window
    )
    nodule, background = pre.image[11, 11], pre.image[20, 20]
    assert nodule - background == pytest.approx(
        (2600 - 1500) / (image.std() if normalization != "none" else 1.0), rel=1e-3
    )
    ct = loader_settings(load_config(["data.normalization=ct", "data.window=[-200, 300]"]))
    assert ct.window == (-200.0, 300.0)


def test_resampling_to_a_target_spacing_gives_the_expected_grid_and_integral_labels() -> None:
    rng = np.random.default_rng(3)
    array = rng.normal(size=(20, 12, 8)).astype(np.float32)
    labels = rng.integers(0, 3, size=(20, 12, 8)).astype(np.uint8)
    affine = np.diag([0.5, 1.0, 3.0, 1.0])
    affine[:3, 3] = [10.0, -5.0, 2.0]
    image = Image(array, affine, Path("img.nii.gz"))
    mask = Image(labels, affine, Path("mask.nii.gz"))
    pre = preprocess(image, mask, normalization="none", window=None, target_spacing=(1.0, 1.0, 1.5))
    assert pre.image.shape == (10, 12, 16) and pre.mask.shape == (10, 12, 16)
    assert pre.spacing == pytest.approx((1.0, 1.0, 1.5))
    assert pre.mask.dtype == np.uint8 and set(np.unique(pre.mask)) <= {0, 1, 2}
    # the grid still covers the same extent: its center is at the same place in the world
    center = lambda aff, shape: (aff @ [*((np.array(shape) - 1) / 2), 1])[:3]  # noqa: E731
    assert np.allclose(center(pre.affine, pre.image.shape), center(affine, array.shape))
    with pytest.raises(ImageError, match="img.nii.gz"):
        preprocess(image, target_spacing=(1.0, 1.0))


def test_non_integer_mask_values_are_an_error_naming_the_mask() -> None:
    image = Image(np.zeros((4, 4, 4), np.float32), np.eye(4), Path("img.nii.gz"))
    mask = Image(np.full((4, 4, 4), 0.5), np.eye(4), Path("soft_mask.nii.gz"))
    with pytest.raises(ImageError, match="soft_mask.nii.gz"):
        preprocess(image, mask, window=(-1000, 1000))


# --- the cache ------------------------------------------------------------------------------


def test_second_read_comes_from_the_cache_without_decoding(
    tmp_path: Path, cases: list[Case], reads: dict[str, int]
) -> None:
    settings = LoaderSettings(cache_dir=tmp_path / "cache")
    first = MedicalDataset(cases, "segmentation", settings, train=False)[1]
    assert reads == {"image": 1, "label": 1}
    again = MedicalDataset(cases, "segmentation", settings, train=False)  # a new process, say
    second = again[1]
    assert reads == {"image": 1, "label": 1}  # nothing decoded
    assert again.cache.hits == 1
    assert torch.equal(first["image"], second["image"])
    assert torch.equal(first["label"], second["label"])


def test_cache_plan_measures_one_entry_and_says_what_the_rest_will_take(
    tmp_path: Path, cases: list[Case], reads: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = LoaderSettings(cache_dir=tmp_path / "cache")
    data = MedicalDataset(cases, "segmentation", settings, train=False)
    plan = data.cache_plan()
    assert reads == {"image": 1, "label": 1}  # only the first case was decoded, to measure it
    (entry,) = [p for p in (tmp_path / "cache").iterdir() if p.name != "stamps"]
    size = sum(f.stat().st_size for f in entry.iterdir())
    assert (plan.missing, plan.entry_bytes) == (len(cases), size)
    assert plan.total_bytes == len(cases) * size
    assert plan.fits and f"{len(cases)} cases" in plan.message()
    assert data.prepare() == len(cases) - 1  # the measured entry is not decoded again
    assert data.cache_plan() is None  # everything cached: nothing to say
    uncached = MedicalDataset(cases, "segmentation", LoaderSettings(cache_dir=None))
    assert uncached.cache_plan() is None
    # A disk too small for the rest: the message says so and names the setting that moves it.
    full = types.SimpleNamespace(total=10, used=9, free=1)
    monkeypatch.setattr(dataset_module.shutil, "disk_usage", lambda _: full)
    other = LoaderSettings(cache_dir=tmp_path / "cache2")
    small = MedicalDataset(cases, "segmentation", other, train=False).cache_plan()
    assert not small.fits and "data.cache_dir" in small.message()


def test_cache_follows_file_content_and_preprocessing_settings(
    tmp_path: Path, cases: list[Case], reads: dict[str, int]
) -> None:
    case = cases[0]
    age(case.image, case.label)
    settings = LoaderSettings(cache_dir=tmp_path / "cache", window=(-1000, 1000))
    MedicalDataset([case], "segmentation", settings, train=False)[0]
    assert reads["image"] == 1
    # touched but unchanged: same content, still cached
    age(case.image, seconds=30)
    MedicalDataset([case], "segmentation", settings, train=False)[0]
    assert reads["image"] == 1
    # settings after the cache (augmentation, patches) do not rebuild it; preprocessing does
    patched = dataclasses.replace(settings, augment=False, patch_size=(8, 8, 4))
    MedicalDataset([case], "segmentation", patched, train=False)[0]
    assert reads["image"] == 1
    narrow = dataclasses.replace(settings, window=(-200, 300))
    MedicalDataset([case], "segmentation", narrow, train=False)[0]
    assert reads["image"] == 2
    # new content: decoded again, and the new values are served
    image, mask = ct_volume(np.random.default_rng(99))
    write_case(tmp_path / "data", "case0", image + 500, mask)
    age(case.image, case.label, seconds=10)
    item = MedicalDataset([case], "segmentation", settings, train=False)[0]
    assert reads["image"] == 3
    expected = normalize(image + 500, "ct", (-1000, 1000))
    assert np.allclose(item["image"][0].numpy(), expected, atol=1e-5)


def test_a_file_changed_just_now_is_hashed_again(tmp_path: Path) -> None:
    source = tmp_path / "a.bin"
    source.write_bytes(b"first")
    cache = ArrayCache(tmp_path / "cache")
    key = cache.key([source], {})
    stat = source.stat()
    source.write_bytes(b"other")  # same size; maybe even the same timestamp tick
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert cache.key([source], {}) != key


def test_a_corrupt_cache_entry_is_rebuilt(
    tmp_path: Path, cases: list[Case], reads: dict[str, int]
) -> None:
    settings = LoaderSettings(cache_dir=tmp_path / "cache")
    good = MedicalDataset(cases[:1], "segmentation", settings, train=False)[0]
    [entry] = [p for p in (tmp_path / "cache").iterdir() if p.name != "stamps"]
    data = (entry / "image.npy").read_bytes()
    (entry / "image.npy").write_bytes(data[: len(data) // 2])  # truncated, as after a crash
    with pytest.warns(UserWarning, match="unreadable"):
        rebuilt = MedicalDataset(cases[:1], "segmentation", settings, train=False)[0]
    assert torch.equal(rebuilt["image"], good["image"])
    assert reads["image"] == 2
    (entry / "meta.json").write_text("{not json")
    with pytest.warns(UserWarning, match="rebuilding"):
        MedicalDataset(cases[:1], "segmentation", settings, train=False)[0]
    assert reads["image"] == 3
    MedicalDataset(cases[:1], "segmentation", settings, train=False)[0]  # whole again
    assert reads["image"] == 3


def test_copy_on_write_reads_are_private_and_never_reach_the_cache_file(tmp_path: Path) -> None:
    cache = ArrayCache(tmp_path / "cache")
    stored = {
        "image": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
        "big_endian": np.arange(6, dtype=">i4"),  # not mappable as a tensor: read whole
    }
    cache.store("k", stored, {})
    files = {name: (tmp_path / "cache" / "k" / f"{name}.npy") for name in stored}
    before = {name: path.read_bytes() for name, path in files.items()}
    first = cache.load("k", mmap="c").arrays
    for name, array in first.items():
        assert array.flags.writeable and np.array_equal(array, stored[name])
        array += 100  # in place, as an augmentation might
    torch.from_numpy(first["image"]).mul_(-1)  # and through a tensor sharing its memory
    assert {name: path.read_bytes() for name, path in files.items()} == before
    again = cache.load("k", mmap="c").arrays
    for name, array in again.items():
        assert np.array_equal(array, stored[name]), name
        assert np.array_equal(np.load(files[name]), stored[name]), name
    read_only = cache.load("k", ["image"]).arrays["image"]
    assert not read_only.flags.writeable and np.array_equal(read_only, stored["image"])
    with pytest.raises(ValueError, match="mmap"):
        cache.load("k", mmap="w")
    data = files["image"].read_bytes()
    files["image"].write_bytes(data[:-8])  # truncated: the map would run past its end
    with pytest.raises(CorruptEntryError, match="image.npy"):
        cache.load("k", mmap="c")


def test_copy_on_write_reads_fall_back_to_whole_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where a file cannot be mapped (e.g. a file system without mmap), it is read whole."""
    cache = ArrayCache(tmp_path / "cache")
    image = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    cache.store("k", {"image": image}, {})

    def refuse(*args, **kwargs):
        raise RuntimeError("mmap is not supported here")

    monkeypatch.setattr(torch.UntypedStorage, "from_file", refuse)
    array = cache.load("k", mmap="c").arrays["image"]
    assert array.flags.writeable and np.array_equal(array, image)
    array[:] = 0
    assert np.array_equal(cache.load("k", mmap="c").arrays["image"], image)


def test_changing_an_item_in_place_leaves_the_cache_unchanged(
    tmp_path: Path, cases: list[Case], reads: dict[str, int]
) -> None:
    settings = LoaderSettings(cache_dir=tmp_path / "cache", augment=False)
    dataset = MedicalDataset(cases, "segmentation", settings, train=False)
    dataset.prepare()
    [entry] = [p for p in (tmp_path / "cache").iterdir() if p.name == dataset.entry(0).key]
    files = sorted(entry.glob("*.npy"))
    before = [path.read_bytes() for path in files]
    item = dataset[0]  # from the cache: whole image and mask mapped copy-on-write
    expected_image, expected_label = item["image"].clone(), item["label"].clone()
    item["image"].add_(1000.0)
    item["label"].fill_(7)
    assert [path.read_bytes() for path in files] == before
    again = dataset[0]
    assert torch.equal(again["image"], expected_image)
    assert torch.equal(again["label"], expected_label)
    assert reads["image"] == len(cases)  # served from the cache each time, never decoded again


# --- patches ----------------------------------------------------------------------------------


def test_patches_have_the_requested_size_and_small_images_are_padded(
    tmp_path: Path, cases: list[Case]
) -> None:
    settings = LoaderSettings(patch_size=(8, 6, 4), augment=False, cache_dir=tmp_path / "c")
    item = MedicalDataset(cases, "segmentation", settings, train=True)[0]
    assert item["image"].shape == (1, 8, 6, 4) and item["label"].shape == (8, 6, 4)
    big = dataclasses.replace(settings, patch_size=(20, 16, 10))
    train = MedicalDataset(cases, "segmentation", big, train=True)[0]
    val = MedicalDataset(
        cases, "segmentation", dataclasses.replace(big, val_center_crop=True), train=False
    )[0]
    for item in (train, val):
        assert item["image"].shape == (1, 20, 16, 10) and item["label"].shape == (20, 16, 10)
    # the center crop pads evenly: the 16x16x8 image sits in the middle, with air around it
    image = val["image"][0]
    assert torch.all(image[:2] == image.min()) and torch.all(val["label"][:2] == 0)
    assert image[2:18, :, 1:9].std() > 0


def test_block_cut_outside_the_array_is_padding() -> None:
    array = np.arange(16, dtype=np.float32).reshape(4, 4)
    out = crop_pad(array, (-1, 2), (3, 3), pad_value=-9)
    assert np.array_equal(out, [[-9, -9, -9], [2, 3, -9], [6, 7, -9]])


def test_foreground_points_cover_each_label_evenly() -> None:
    mask = np.zeros((6, 5, 4), dtype=np.uint8)
    mask[1, 2, 3] = 2
    mask[2:5, :, 1] = 1  # 15 voxels
    points, ranges = foreground_points(mask, per_class=4)
    assert points.dtype == np.int32 and ranges == {"1": [0, 4], "2": [4, 5]}
    ones = points[:4]
    assert np.all(mask[tuple(ones.T)] == 1) and len({tuple(p) for p in ones}) == 4
    assert ones.tolist()[0] == [2, 0, 1] and ones.tolist()[-1] == [4, 4, 1]  # first and last
    assert points[4].tolist() == [1, 2, 3]
    empty, none = foreground_points(np.zeros((3, 3), np.uint8))
    assert empty.shape == (0, 2) and none == {}


@pytest.mark.parametrize(
    ("fraction", "low", "high"), [(0.0, 0.0, 0.1), (0.5, 0.4, 0.65), (1.0, 1.0, 1.0)]
)
def test_foreground_fraction_is_respected(
    tmp_path: Path, fraction: float, low: float, high: float
) -> None:
    image = np.zeros((40, 40, 20), dtype=np.int16)
    mask = np.zeros((40, 40, 20), dtype=np.uint8)
    mask[2:4, 30:32, 15:17] = 1  # a small lesion off-center: a random 8^3 patch rarely hits it
    case = write_case(tmp_path, "one", image, mask)
    settings = LoaderSettings(
        patch_size=(8, 8, 8), foreground_fraction=fraction, augment=False, cache_dir=tmp_path / "c"
    )
    dataset = MedicalDataset([case], "segmentation", settings, seed=5)
    hits = 0
    for epoch in range(200):
        dataset.set_epoch(epoch)
        hits += int(dataset[0]["label"].any())
    # 0.5 of patches centered on the lesion plus the few random patches (~1%) that cover it
    assert low <= hits / 200 <= high


# --- augmentation and determinism -----------------------------------------------------------


def test_spatial_augmentations_move_image_and_mask_together() -> None:
    rng = np.random.default_rng(4)
    mask = (rng.random((8, 8, 6)) > 0.7).astype(np.uint8)
    spatial_only = AugmentSettings(rotate_degrees=0, scale=0, shift=0, noise_std=0)
    changed = 0
    for epoch in range(8):
        image, out_mask = augment(
            mask.astype(np.float32), mask, sample_rng(1, epoch, 0), spatial_only
        )
        assert np.array_equal(image, out_mask) and out_mask.dtype == np.uint8
        changed += not np.array_equal(out_mask, mask)
    assert changed >= 6  # flips and quarter turns happen
    image, _ = augment(
        np.zeros((4, 6)),
        None,
        sample_rng(1, 0, 0),
        AugmentSettings(flip=False, rotate90=False, rotate_degrees=0, noise_std=0),
    )
    assert np.unique(image).size == 1 and image.flat[0] != 0  # intensity shift applied


def test_loader_and_augment_defaults_are_the_configs() -> None:
    # One source of truth: the code defaults are those of config.py (and so default.yaml).
    data = DataConfig()
    assert LoaderSettings().foreground_fraction == data.foreground_fraction
    assert LoaderSettings().window == tuple(data.window)
    assert LoaderSettings().augment == data.augment
    assert AugmentSettings() == AugmentSettings.from_config(data.augmentation)
    assert AugmentSettings().scale == data.augmentation.intensity_scale
    assert AugmentSettings().shift == data.augmentation.intensity_shift


def test_config_augmentation_strengths_reach_the_training_items(
    project: Path, cases: list[Case]
) -> None:
    only_shift = [
        "data.normalization=ct",
        "data.augmentation.flip=false",
        "data.augmentation.rotate90=false",
        "data.augmentation.rotate_degrees=0",
        "data.augmentation.intensity_scale=0",
        "data.augmentation.intensity_shift=0.5",
        "data.augmentation.noise_std=0",
    ]
    settings = loader_settings(load_config(only_shift))
    assert settings.augmentation == AugmentSettings(
        flip=False, rotate90=False, rotate_degrees=0, scale=0, shift=0.5, noise_std=0
    )
    settings = dataclasses.replace(settings, patch_size=None, cache_dir=None)
    train = MedicalDataset(cases, "segmentation", settings, seed=5)
    val = MedicalDataset(cases, "segmentation", settings, train=False)
    offsets = []
    for epoch in range(4):
        train.set_epoch(epoch)
        difference = (train[0]["image"] - val[0]["image"]).numpy()
        # Only the shift is on: the same offset on every voxel, drawn in [-0.5, 0.5].
        assert np.ptp(difference) < 1e-5
        offsets.append(float(difference.flat[0]))
    assert all(abs(o) <= 0.5 for o in offsets) and max(map(abs, offsets)) > 0.05


def test_augmentation_depends_on_seed_epoch_index_not_on_workers(
    tmp_path: Path, cases: list[Case]
) -> None:
    settings = LoaderSettings(patch_size=(8, 8, 4), cache_dir=tmp_path / "cache")
    dataset = MedicalDataset(cases, "segmentation", settings, seed=3)
    dataset.prepare()

    def epoch_items(workers: int, epoch: int, persistent: bool = False, loader=None):
        dataset.set_epoch(epoch)
        loader = loader or DataLoader(
            dataset, batch_size=3, num_workers=workers, persistent_workers=persistent
        )
        batch = next(iter(loader))
        return batch["image"], batch["label"], loader

    image0, label0, _ = epoch_items(0, epoch=1)
    image2, label2, persistent = epoch_items(2, epoch=1, persistent=True)
    assert torch.equal(image0, image2) and torch.equal(label0, label2)
    other, _, _ = epoch_items(0, epoch=2)
    assert not torch.equal(image0, other)
    # set_epoch reaches persistent workers too
    again, _, _ = epoch_items(2, epoch=2, loader=persistent)
    assert torch.equal(again, other)


def test_validation_items_are_deterministic(tmp_path: Path, cases: list[Case]) -> None:
    settings = LoaderSettings(
        patch_size=(8, 8, 4), cache_dir=tmp_path / "cache", window=(-1000.0, 1000.0)
    )
    val = MedicalDataset(cases, "segmentation", settings, train=False)
    first = val[0]
    val.set_epoch(7)
    assert torch.equal(val[0]["image"], first["image"])
    assert first["image"].shape == (1, 16, 16, 8)  # whole image: no crop, no augmentation
    expected = normalize(ct_volume(np.random.default_rng(0))[0], "ct", (-1000, 1000))
    assert np.allclose(first["image"][0].numpy(), expected, atol=1e-5)


# --- items ----------------------------------------------------------------------------------


def test_3d_segmentation_items(tmp_path: Path, cases: list[Case]) -> None:
    dataset = MedicalDataset(cases, "segmentation", LoaderSettings(patch_size=(8, 8, 4)), seed=1)
    assert len(dataset) == 3
    item = dataset[2]
    assert item["case_id"] == "case2"
    assert item["image"].dtype == torch.float32 and item["image"].shape == (1, 8, 8, 4)
    assert item["label"].dtype == torch.uint8 and item["label"].shape == (8, 8, 4)  # as stored
    batch = next(iter(DataLoader(dataset, batch_size=2)))
    assert batch["image"].shape == (2, 1, 8, 8, 4) and batch["case_id"] == ["case0", "case1"]


def test_2d_segmentation_items_from_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    image = rng.integers(0, 255, size=(12, 10)).astype(np.uint8)
    mask = np.zeros((12, 10), dtype=np.uint8)
    mask[3:6, 4:7] = 1
    case = Case(
        "xray", "p", write_png(image, tmp_path / "x.png"), write_png(mask, tmp_path / "m.png")
    )
    settings = LoaderSettings(normalization="mr", window=None, patch_size=(8, 8))
    dataset = MedicalDataset([case], "segmentation", settings, spatial_dims=2)
    item = dataset[0]
    assert item["image"].shape == (1, 8, 8) and item["image"].dtype == torch.float32
    assert item["label"].shape == (8, 8) and item["label"].dtype == torch.uint8
    whole = MedicalDataset([case], "segmentation", settings, train=False)[0]
    assert whole["image"].shape == (1, 12, 10)
    assert torch.equal(whole["label"], torch.from_numpy(mask))


def test_masks_keep_their_stored_dtype_in_items_and_batches(
    tmp_path: Path, cases: list[Case]
) -> None:
    settings = LoaderSettings(cache_dir=tmp_path / "cache")
    for train, patch in ((False, None), (True, (8, 8, 4)), (False, (8, 8, 4))):
        options = dataclasses.replace(settings, patch_size=patch, val_center_crop=patch is not None)
        dataset = MedicalDataset(cases, "segmentation", options, train=train)
        for index in (0, 0):  # built, then read back from the cache
            label = dataset[index]["label"]
            assert label.dtype == torch.uint8, (train, patch)
        batch = next(iter(DataLoader(dataset, batch_size=2)))
        assert batch["label"].dtype == torch.uint8
        # The training loop makes it a class-index target: what the losses take.
        logits = torch.zeros((2, 3, *batch["label"].shape[1:]), requires_grad=True)
        loss = torch.nn.functional.cross_entropy(logits, batch["label"].long())
        assert torch.isfinite(loss)
    whole = MedicalDataset(cases, "segmentation", settings, train=False)[0]["label"]
    assert torch.equal(whole, torch.from_numpy(ct_volume(np.random.default_rng(0))[1]))


def test_masks_with_labels_above_255_share_one_dtype_after_prepare(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    image, mask = ct_volume(rng)
    wide = mask.astype(np.int16) * 300  # stored as int16: too large for uint8
    cases = [
        write_case(tmp_path / "data", "narrow", image, mask),
        write_case(tmp_path / "data", "wide", image, wide),
    ]
    settings = LoaderSettings(cache_dir=tmp_path / "cache")
    dataset = MedicalDataset(cases, "segmentation", settings, train=False)
    assert dataset[0]["label"].dtype == torch.uint8  # before prepare(): each mask its own
    assert dataset[1]["label"].dtype == torch.int64
    assert dataset.prepare() == 0 and dataset.mask_dtype == np.int64
    labels = [dataset[i]["label"] for i in range(2)]
    assert [t.dtype for t in labels] == [torch.int64, torch.int64]
    assert int(labels[1].max()) == 300 and torch.equal(labels[0], torch.from_numpy(mask).long())
    narrow = MedicalDataset(cases[:1], "segmentation", settings, train=False)
    narrow.prepare()
    assert narrow.mask_dtype == np.uint8 and narrow[0]["label"].dtype == torch.uint8


@pytest.mark.slow  # trains real runs
def test_training_converts_uint8_masks_for_index_losses(tiny: Path) -> None:
    """``ce`` and ``focal`` need int64 targets: training, validation and lr-find convert."""
    if TASK != "segmentation":
        pytest.skip("classification labels are int64 class indices already")
    run = train_small("train.loss=ce", "train.epochs=1", "train.steps_per_epoch=1")
    rows = (run / "metrics.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 2
    found = lr_range_test(load_config([*SMALL, "train.loss=focal"]), steps=3, quiet=True)
    assert (found / "lr_find.json").exists()


def test_classification_items_carry_the_class_index(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    cases = [
        write_case(tmp_path, f"c{i}", rng.normal(size=(10, 10, 6)).astype(np.float32))
        for i in range(3)
    ]
    cases[1].label = "finding"
    classes = class_names(cases)
    assert classes == ["finding", "normal"]
    settings = LoaderSettings(normalization="mr", window=None, patch_size=(8, 8, 6))
    dataset = MedicalDataset(cases, "classification", settings, classes=classes)
    labels = [dataset[i]["label"] for i in range(3)]
    assert [int(t) for t in labels] == [1, 0, 1]
    assert labels[0].dtype == torch.int64 and labels[0].shape == ()
    assert dataset[0]["image"].shape == (1, 8, 8, 6)
    cases[2].label = "other"
    with pytest.raises(DataError, match="c2.*other"):
        MedicalDataset(cases, "classification", settings, classes=classes)
    with pytest.raises(ValueError, match="classes"):
        MedicalDataset(cases, "classification", settings)


def test_mismatched_image_and_mask_raise_an_error_naming_the_file(tmp_path: Path) -> None:
    case = write_case(tmp_path, "bad", np.zeros((8, 8, 4), np.int16), np.zeros((8, 8, 5), np.uint8))
    dataset = MedicalDataset([case], "segmentation", LoaderSettings(cache_dir=tmp_path / "c"))
    with pytest.raises(ImageError, match="bad_mask.nii.gz"):
        dataset[0]
    with pytest.raises(ImageError, match="bad_mask.nii.gz"):
        dataset.prepare()


def test_a_missing_file_is_an_error_naming_it(tmp_path: Path, cases: list[Case]) -> None:
    cases[1].label.unlink()
    for cache_dir in (None, tmp_path / "cache"):
        dataset = MedicalDataset(cases, "segmentation", LoaderSettings(cache_dir=cache_dir))
        with pytest.raises(ImageError, match="case1_mask.nii.gz"):
            dataset[1]


def test_bad_input_is_refused(tmp_path: Path, cases: list[Case]) -> None:
    with pytest.raises(DataError, match="no cases"):
        MedicalDataset([], "segmentation")
    with pytest.raises(ValueError, match="task"):
        MedicalDataset(cases, "detection")
    with pytest.raises(ValueError, match="patch_size"):
        LoaderSettings(patch_size=(8, 0, 4))
    with pytest.raises(ValueError, match="foreground_fraction"):
        LoaderSettings(foreground_fraction=1.5)
    with pytest.raises(ValueError, match="normalization"):
        LoaderSettings(normalization="pet")
    with pytest.raises(ImageError, match="case0.nii.gz.*3D"):
        MedicalDataset(cases, "segmentation", spatial_dims=2)[0]
    with pytest.raises(ImageError, match="patch_size"):
        MedicalDataset(cases, "segmentation", LoaderSettings(patch_size=(8, 8)))[0]


def test_prepare_fills_the_cache_and_geometry_describes_the_grids(
    tmp_path: Path, cases: list[Case], reads: dict[str, int]
) -> None:
    settings = LoaderSettings(cache_dir=tmp_path / "cache", target_spacing=(2.0, 2.0, 2.5))
    dataset = MedicalDataset(cases, "segmentation", settings, train=False)
    assert dataset.prepare(threads=2) == 3
    decoded = reads["image"]
    assert dataset.prepare() == 0 and reads["image"] == decoded
    geometry = dataset.geometry(0)
    assert geometry["source_shape"] == [16, 16, 8] and geometry["shape"] == [8, 8, 8]
    assert geometry["spacing"] == pytest.approx([2.0, 2.0, 2.5])
    assert dataset[0]["image"].shape == (1, 8, 8, 8)
