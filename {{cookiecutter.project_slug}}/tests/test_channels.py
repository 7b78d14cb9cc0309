"""Multi-channel inputs (``image_<channel>`` columns) and named multi-class segmentation labels.

The data are planted: channel ``t1`` is noise only, channel ``t2`` shows the labelled region, so
a network that sees ``t2`` can segment it and one that sees ``t1`` alone cannot.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage
from tiny_data import AFFINE, DIMS, SHAPE, SMALL

from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.config import Config, load_config
from {{ cookiecutter.package_name }}.data.augment import AugmentSettings, augment
from {{ cookiecutter.package_name }}.data.dataset import LoaderSettings, MedicalDataset
from {{ cookiecutter.package_name }}.data.io import ImageError, write_nifti
from {{ cookiecutter.package_name }}.data.manifest import (
    Case,
    DataError,
    label_names,
    read_manifest,
    write_manifest,
)
from {{ cookiecutter.package_name }}.data.split import make_splits
from {{ cookiecutter.package_name }}.data.synthetic.dummy import generate_dataset
from {{ cookiecutter.package_name }}.evaluate.inference import load_run
from {{ cookiecutter.package_name }}.runs.checkpoint import load_checkpoint, save_checkpoint
from {{ cookiecutter.package_name }}.train import loop

segmentation_only = pytest.mark.applies(task="segmentation")  # trains a segmentation network


def planted(
    root: Path, cases: int = 12, *, classes: int = 1, channels: tuple[str, ...] = ("t1", "t2")
) -> Path:
    """Cases whose box (labels 1..classes, nested) shows in channel ``t2`` only.

    With ``channels=("t1",)`` the same cases get one ``image`` column holding ``t1``.
    """
    rng = np.random.default_rng(0)
    rows = []
    for i in range(cases):
        t1 = rng.normal(0, 20, SHAPE).astype(np.int16)
        t2 = rng.normal(0, 20, SHAPE).astype(np.int16)
        mask = np.zeros(SHAPE, np.uint8)
        size = [min(6, s - 2) for s in SHAPE]
        start = rng.integers(1, [s - b for s, b in zip(SHAPE, size, strict=True)])
        outer = tuple(slice(s, s + b) for s, b in zip(start, size, strict=True))
        mask[outer] = 1
        t2[outer] += 150
        if classes == 2:  # an inner core: label 2, brighter still
            inner = tuple(slice(s + 1, s + b - 1) for s, b in zip(start, size, strict=True))
            mask[inner] = 2
            t2[inner] += 150
        files = {
            "t1": write_nifti(t1, AFFINE, root / "images" / f"c{i}_t1.nii.gz"),
            "t2": write_nifti(t2, AFFINE, root / "images" / f"c{i}_t2.nii.gz"),
        }
        label = write_nifti(mask, AFFINE, root / "labels" / f"c{i}.nii.gz")
        chosen = {name: files[name] for name in channels}
        several = chosen if len(chosen) > 1 else {}
        rows.append(Case(f"c{i}", f"p{i}", files[channels[0]], label, channels=several))
    write_manifest(root, rows)
    make_splits(root, task="segmentation", folds=2, test_fraction=0.2, seed=0)
    return root


def train_on(root: str, *overrides: str) -> Path:
    cfg = load_config([*SMALL, f"data.root={root}", "data.normalization=mr", *overrides])
    return loop.train(cfg, quiet=True)


def best(run: Path, column: str = "val_dice") -> float:
    with (run / "metrics.csv").open(newline="") as f:
        return max(float(row[column]) for row in csv.DictReader(f))


# --- the data ---------------------------------------------------------------------------------


def test_items_stack_the_channels_each_normalized_on_its_own(tmp_path: Path) -> None:
    root = tmp_path / "d"
    t1 = np.random.default_rng(1).normal(300, 20, SHAPE).round()  # no zero voxel
    first = write_nifti(t1.astype(np.int16), AFFINE, root / "t1.nii.gz")
    scaled = write_nifti((t1 * 10 + 500).astype(np.int16), AFFINE, root / "scaled.nii.gz")
    label = write_nifti((t1 > 300).astype(np.uint8), AFFINE, root / "m.nii.gz")
    cases = [Case("a", "p", first, label, channels={"t1": first, "scaled": scaled})]
    settings = LoaderSettings(normalization="mr", window=None, cache_dir=tmp_path / "cache")
    dataset = MedicalDataset(cases, "segmentation", settings, train=False)
    assert dataset.in_channels == 2 and dataset.channel_names == ["t1", "scaled"]
    dataset.prepare()
    image = dataset[0]["image"]
    assert tuple(image.shape) == (2, *SHAPE)
    # a linear rescaling of a channel is undone by its own z-score (of its non-zero voxels)
    torch.testing.assert_close(image[1], image[0], atol=2e-3, rtol=0)
    assert abs(float(image[0].mean())) < 0.1 and abs(float(image[0].std()) - 1) < 0.1


def test_training_items_cut_the_same_patch_from_every_channel(tmp_path: Path) -> None:
    root = tmp_path / "d"
    base = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    first = write_nifti(base.astype(np.int16), AFFINE, root / "a.nii.gz")
    second = write_nifti((base * 2).astype(np.int16), AFFINE, root / "b.nii.gz")
    label = write_nifti((base > base.mean()).astype(np.uint8), AFFINE, root / "m.nii.gz")
    case = Case("a", "p", first, label, channels={"a": first, "b": second})
    patch = tuple(max(2, s // 2) for s in SHAPE)
    settings = LoaderSettings(
        patch_size=patch, normalization="none", window=None, foreground_fraction=0.5,
        augmentation=AugmentSettings(scale=0, shift=0, noise_std=0, rotate_degrees=0),
    )  # fmt: skip
    dataset = MedicalDataset([case], "segmentation", settings, train=True)
    for epoch in range(4):
        dataset.set_epoch(epoch)
        item = dataset[0]
        image = item["image"]
        assert tuple(image.shape) == (2, *patch)
        torch.testing.assert_close(image[1], image[0] * 2)  # one crop, one flip/turn for both
        # the mask follows the same transform: it is the bright half of the first channel
        assert torch.equal(item["label"].bool(), image[0] > float(base.mean()))


def test_augment_moves_all_channels_as_one() -> None:
    rng_image = np.random.default_rng(3)
    image = rng_image.normal(size=SHAPE).astype(np.float32)
    mask = (image > 0.5).astype(np.uint8)
    settings = AugmentSettings(rotate_probability=1.0, noise_std=0.0)
    for seed in range(6):
        alone, alone_mask = augment(image, mask, np.random.default_rng(seed), settings)
        both, both_mask = augment(
            np.stack([image, 3 * image]), mask, np.random.default_rng(seed), settings,
            channel_axis=True,
        )  # fmt: skip
        np.testing.assert_array_equal(both_mask, alone_mask)
        np.testing.assert_allclose(both[0], alone, atol=1e-5)
        first_only, _ = augment(3 * image, mask, np.random.default_rng(seed), settings)
        np.testing.assert_allclose(both[1], first_only, atol=1e-4)


@pytest.mark.parametrize("what", ["shape", "affine"])
def test_channels_on_another_grid_are_refused_in_one_line(tmp_path: Path, what: str) -> None:
    root = tmp_path / "d"
    first = write_nifti(np.zeros(SHAPE, np.int16), AFFINE, root / "t1.nii.gz")
    other_shape = tuple(s + 2 for s in SHAPE) if what == "shape" else SHAPE
    other_affine = AFFINE.copy()
    if what == "affine":
        other_affine[:3, 3] += 5.0  # the same voxels, 5 mm away
    second = write_nifti(np.zeros(other_shape, np.int16), other_affine, root / "t2.nii.gz")
    label = write_nifti(np.zeros(SHAPE, np.uint8), AFFINE, root / "m.nii.gz")
    case = Case("c7", "p", first, label, channels={"t1": first, "t2": second})
    dataset = MedicalDataset([case], "segmentation", LoaderSettings(window=None,
                             normalization="mr"), train=False)  # fmt: skip
    with pytest.raises(ImageError) as raised:
        dataset.prepare()
    message = str(raised.value)
    assert "\n" not in message
    assert "case 'c7' channel 't2'" in message and "t2.nii.gz" in message
    assert ("shape" in message) if what == "shape" else ("affine" in message)


def test_cases_with_different_channels_are_refused(tmp_path: Path) -> None:
    root = planted(tmp_path / "d", cases=4)
    images = root / "images"
    cases = [
        Case("a", "p", images / "c0_t1.nii.gz", "", channels={"t1": images / "c0_t1.nii.gz",
             "t2": images / "c0_t2.nii.gz"}),
        Case("b", "q", images / "c1_t1.nii.gz", ""),
    ]  # fmt: skip
    with pytest.raises(DataError, match="every case needs the same image columns"):
        MedicalDataset(cases, "segmentation", train=False)


def test_label_names_come_from_the_config_then_manifest_json(tmp_path: Path) -> None:
    assert label_names(tmp_path, 3) is None  # nothing names them
    (tmp_path / "manifest.json").write_text(json.dumps({"labels": {"0": "bg", "2": "tumour"}}))
    assert label_names(tmp_path, 3) == ["bg", "class_1", "tumour"]
    (tmp_path / "manifest.json").write_text(json.dumps({"labels": {"background": 0, "la": 1}}))
    assert label_names(tmp_path, 2) == ["background", "la"]
    assert label_names(tmp_path, 2, ["b", "x", "y"]) == ["b", "x"]
    with pytest.raises(DataError, match="give one name per label value"):
        label_names(tmp_path, 3, ["b", "x"])


def test_old_checkpoints_without_channels_load_as_one_channel(trained: Path) -> None:
    path = trained / "checkpoints" / "best.pt"
    state = load_checkpoint(path)
    assert state["in_channels"] == 1 and state["channels"] == ["image"]
    del state["in_channels"], state["channels"]
    save_checkpoint(path, state)
    run = load_run(trained)
    assert run.in_channels == 1 and run.channels == ["image"]


# --- dummy-data --channels ----------------------------------------------------------------------


def test_dummy_channels_show_one_anatomy_in_other_contrasts(tmp_path: Path) -> None:
    shape = (32, 32, 12) if DIMS == 3 else (48, 48)
    options = {"task": "segmentation", "spatial_dims": DIMS, "fmt": "nifti", "shape": shape}
    generate_dataset(tmp_path / "one", cases=8, seed=3, **options)
    generate_dataset(tmp_path / "three", cases=8, seed=3, channels=3, **options)
    header = (tmp_path / "three" / "manifest.csv").read_text().splitlines()[0].split(",")
    assert [c for c in header if c.startswith("image")] == ["image_ch1", "image_ch2", "image_ch3"]
    single = {c.case_id: c for c in read_manifest(tmp_path / "one", "segmentation")}
    cases = read_manifest(tmp_path / "three", "segmentation")
    lesions = 0
    for case in cases:
        arrays = [nib.load(p) for p in case.channels.values()]
        assert all(a.shape == shape for a in arrays)
        for a in arrays[1:]:
            np.testing.assert_array_equal(a.affine, arrays[0].affine)
        ch = [np.asarray(a.dataobj, dtype=np.float64) for a in arrays]
        # channel 1 is exactly the single-channel dataset's image
        np.testing.assert_array_equal(ch[0], nib.load(single[case.case_id].image).get_fdata())
        mask = nib.load(case.label).get_fdata() > 0
        if mask.sum() < 4:
            continue
        ring = ndimage.binary_dilation(mask, iterations=2) & ~mask  # what surrounds the lesion
        contrast = [c[mask].mean() - c[ring].mean() for c in ch]
        # CT: the lesion is denser than its surroundings; ch2 (CHANNEL_CONTRASTS[0]) shows it
        # darker than them, ch3 brighter: the same anatomy in another contrast
        assert contrast[0] > 0 and contrast[1] < 0 and contrast[2] > 0, contrast
        lesions += 1
    assert lesions >= 4
    # exact duplicates stay exact duplicates in every channel
    key = json.loads((tmp_path / "three" / ".dummy-data.json").read_text())
    assert key["channels"]["count"] == 3
    by_id = {c.case_id: c for c in cases}
    for first, second in key["pitfalls"]["exact_duplicates"]:
        for name in ("ch1", "ch2", "ch3"):
            a = nib.load(by_id[first].channels[name]).get_fdata()
            np.testing.assert_array_equal(a, nib.load(by_id[second].channels[name]).get_fdata())


def test_dummy_data_command_takes_channels(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # DICOM holds one image per series here: several channels are refused in one line.
    assert main(["dummy-data", "--channels", "2", "data.format=dicom", "--out", "data/d"]) == 2
    assert "not dicom" in capsys.readouterr().err
    fmt = "nifti" if Config().data.format == "dicom" else Config().data.format
    command = ["dummy-data", "--cases", "4", "--channels", "2", "--out", "data/two"]
    assert main([*command, f"data.format={fmt}"]) == 0
    cases = read_manifest(project / "data" / "two", Config().task)
    assert [list(c.channels) for c in cases] == [["ch1", "ch2"]] * 4
    dataset = MedicalDataset(cases, Config().task, classes=sorted({str(c.label) for c in cases}),
                             train=False)  # fmt: skip
    assert dataset.in_channels == 2 and dataset[0]["image"].shape[0] == 2
    with pytest.raises(ValueError, match="channels must be a whole number"):
        generate_dataset(project / "x", task="segmentation", spatial_dims=DIMS, fmt="nifti",
                         channels=0)  # fmt: skip


# --- end to end -------------------------------------------------------------------------------


@segmentation_only
@pytest.mark.slow
def test_a_channel_that_shows_the_target_is_used(project: Path) -> None:
    planted(project / "data" / "two")
    planted(project / "data" / "one", channels=("t1",))
    # ~0.8 against ~0.1 (3D and 2D renders); one case per step: 80 steps in 10 epochs
    options = ["train.epochs=10", "train.lr=0.01", "train.batch_size=1", "data.augment=false"]
    two = train_on("data/two", *options, "run.name=two")
    one = train_on("data/one", *options, "run.name=one")
    state = load_checkpoint(two / "checkpoints" / "best.pt")
    assert state["in_channels"] == 2 and state["channels"] == ["t1", "t2"]
    assert load_checkpoint(one / "checkpoints" / "best.pt")["in_channels"] == 1
    assert best(two) > 0.5 and best(two) > best(one) + 0.3, (best(two), best(one))


@segmentation_only
@pytest.mark.slow
def test_multi_class_multi_channel_run_evaluates_predicts_and_explains(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    planted(project / "data" / "two", classes=2)
    run = train_on(
        "data/two", "train.epochs=2", "data.labels=[background, edema, tumor]", "run.name=mc"
    )
    lr = ["lr-find", "--steps", "5", *SMALL, "data.root=data/two", "data.normalization=mr"]
    assert main(lr) == 0  # builds the 2-channel network too
    assert main(["evaluate", str(run), "--split", "val"]) == 0
    out = run / "evaluation" / "val"
    report = json.loads((out / "metrics.json").read_text())
    assert report["class_names"] == {"0": "background", "1": "edema", "2": "tumor"}
    assert {"dice", "dice_1", "dice_2", "hd95_2"} <= set(report["summary"])
    assert "(class 2: tumor)" in report["definitions"]["dice_2"]
    with (out / "per_case.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert {"dice_1", "dice_2"} <= set(rows[0]) and len(rows) == report["n_cases"]
    assert "`_2` = tumor" in (run / "MODEL_CARD.md").read_text()

    # predict one new 2-channel case, on its own grid
    new = tmp_path / "new"
    big = tuple(s + 4 for s in SHAPE)
    affine = np.diag([0.6, 0.7, 1.5, 1.0])
    rng = np.random.default_rng(9)
    t1 = write_nifti(rng.normal(0, 20, big).astype(np.int16), affine, new / "x_t1.nii.gz")
    t2 = write_nifti(rng.normal(0, 20, big).astype(np.int16), affine, new / "x_t2.nii.gz")
    assert main(["predict", str(run), f"{t1},{t2}", "--out", str(tmp_path / "p")]) == 0
    written = nib.load(tmp_path / "p" / "x_t1.nii.gz")
    assert written.shape == big
    np.testing.assert_allclose(written.affine, affine)
    with (tmp_path / "p" / "predictions.csv").open(newline="") as f:
        row = next(csv.DictReader(f))
    unit = "ml" if DIMS == 3 else "mm2"
    assert {f"{unit}_edema", f"{unit}_tumor"} <= set(row) and row["input"] == f"{t1},{t2}"
    capsys.readouterr()
    assert main(["predict", str(run), str(t1), "--out", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "the run takes 2 channels" in err

    # explain: one map for both channels, said in the figure title
    for method in ("saliency", "occlusion"):
        assert main(["explain", str(run), "--method", method, "--cases", "1"]) == 0
        summary = json.loads((run / "explain" / method / "summary.json").read_text())
        assert len(summary["cases"]) == 1
    assert main(["explain", str(run), "--method", "tcav"]) == 2
    assert "TCAV takes single-channel runs" in capsys.readouterr().err
