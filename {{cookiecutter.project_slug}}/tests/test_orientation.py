"""One orientation for training, predictions back in each input's own orientation and header.

The planted truth: the same anatomy stored twice, once RAS and once with its first two axes
flipped (LPS, as DICOM-derived NIfTI often is). Everything the network sees must be identical,
and everything written must overlay its own input exactly.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from tiny_data import TASK

from {{ cookiecutter.package_name }}.config import ConfigError, load_config
from {{ cookiecutter.package_name }}.data.dataset import LoaderSettings, MedicalDataset
from {{ cookiecutter.package_name }}.data.io import Image, read_image, write_nifti
from {{ cookiecutter.package_name }}.data.manifest import Case
from {{ cookiecutter.package_name }}.data.orientation import (
    axis_codes,
    check_orientation,
    from_orientation,
    reorient,
)
from {{ cookiecutter.package_name }}.data.preprocess import preprocess, same_grid, to_source
from {{ cookiecutter.package_name }}.data.split import make_splits
from {{ cookiecutter.package_name }}.evaluate.evaluation import evaluate_run
from {{ cookiecutter.package_name }}.evaluate.inference import load_run, preprocess_image
from {{ cookiecutter.package_name }}.evaluate.predict import predict

RAS = np.array([[0.8, 0, 0, -10.0], [0, 0.9, 0, -20.0], [0, 0, 2.5, 30.0], [0, 0, 0, 1]])


def lps_copy(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same voxels in the same world positions, stored with axes 0 and 1 reversed."""
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[0, 3], flip[1, 3] = array.shape[0] - 1, array.shape[1] - 1  # new index -> old index
    return np.ascontiguousarray(array[::-1, ::-1]), affine @ flip


def planted(shape: tuple[int, ...] = (9, 7, 5)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.normal(100, 30, shape).astype(np.float32)
    mask = np.zeros(shape, np.uint8)
    mask[1:4, 2:6, 1:3] = 1  # off-center, so that a flip moves it
    return image, mask


def test_orientation_codes_are_checked() -> None:
    assert check_orientation("ras") == "RAS" and check_orientation("PLI") == "PLI"
    for bad in ("RRS", "RA", "XYZ", "RASL"):
        with pytest.raises(ValueError, match="one of each pair"):
            check_orientation(bad)
    with pytest.raises(ConfigError, match="data.orientation"):
        load_config(["data.orientation=RRS"])
    assert load_config(["data.orientation=none"]).data.orientation == "none"


def test_reorient_keeps_every_voxel_at_its_world_position() -> None:
    image, _ = planted()
    array, affine = lps_copy(image, RAS)
    assert axis_codes(affine) == "LPS" and axis_codes(RAS) == "RAS"
    oriented, ornt = reorient(Image(array, affine), "RAS")
    np.testing.assert_array_equal(oriented.array, image)
    np.testing.assert_allclose(oriented.affine, RAS)
    np.testing.assert_array_equal(from_orientation(oriented.array, ornt), array)
    # (K, *S): the class axis stays first
    stacked = from_orientation(np.stack([oriented.array, -oriented.array]), ornt)
    np.testing.assert_array_equal(stacked[1], -array)


def test_preprocess_sees_the_same_anatomy_whatever_the_storage() -> None:
    image, mask = planted()
    lps, lps_affine = lps_copy(image, RAS)
    lps_mask, _ = lps_copy(mask, RAS)
    options = {"normalization": "mr", "window": None, "target_spacing": (1.6, 1.8, 2.5)}
    a = preprocess(Image(image, RAS), Image(mask, RAS), orientation="RAS", **options)
    b = preprocess(
        Image(lps, lps_affine), Image(lps_mask, lps_affine), orientation="RAS", **options
    )
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_allclose(a.affine, b.affine)
    # As stored (the old behaviour), the two differ: the anatomy is flipped.
    c = preprocess(Image(lps, lps_affine), Image(lps_mask, lps_affine), **options)
    assert not np.array_equal(a.mask, c.mask)
    # Back on each file's own grid: the same values, the LPS file's flipped like its voxels.
    onehot = np.stack([b.mask == 0, b.mask == 1]).astype(np.float32)
    meta_a = a.geometry(Image(image, RAS))
    meta_b = b.geometry(Image(lps, lps_affine))
    assert not same_grid(meta_b) and meta_b["source_shape"] == list(lps.shape)
    back_a, back_b = to_source(onehot, meta_a), to_source(onehot, meta_b)
    np.testing.assert_array_equal(back_b, back_a[:, ::-1, ::-1])
    # Without resampling the round trip is exact: the LPS file's own mask comes back.
    options["target_spacing"] = None
    d = preprocess(
        Image(lps, lps_affine), Image(lps_mask, lps_affine), orientation="RAS", **options
    )
    exact = to_source(np.stack([d.mask == 0, d.mask == 1]), d.geometry(Image(lps, lps_affine)))
    np.testing.assert_array_equal(exact.argmax(0), lps_mask)


def test_cached_items_are_reoriented_and_the_key_names_the_orientation(tmp_path: Path) -> None:
    image, mask = planted()
    lps, lps_affine = lps_copy(image, RAS)
    lps_mask, _ = lps_copy(mask, RAS)
    cases = [
        Case(
            "ras",
            "p1",
            write_nifti(image, RAS, tmp_path / "ras.nii.gz"),
            write_nifti(mask, RAS, tmp_path / "ras_mask.nii.gz"),
        ),
        Case(
            "lps",
            "p2",
            write_nifti(lps, lps_affine, tmp_path / "lps.nii.gz"),
            write_nifti(lps_mask, lps_affine, tmp_path / "lps_mask.nii.gz"),
        ),
    ]
    settings = LoaderSettings(normalization="mr", window=None, cache_dir=tmp_path / "cache")
    data = MedicalDataset(cases, "segmentation", settings, train=False)
    ras_item, lps_item = data[0], data[1]
    torch.testing.assert_close(ras_item["image"], lps_item["image"])
    torch.testing.assert_close(ras_item["label"], lps_item["label"])
    stored = LoaderSettings(normalization="mr", window=None, orientation=None)
    assert stored.preprocessing() != settings.preprocessing()  # a different cache entry
    raw = MedicalDataset(cases, "segmentation", stored, train=False)
    assert not torch.equal(raw[1]["label"], ras_item["label"])


@pytest.mark.applies(task="segmentation", dims=3)
def test_predictions_overlay_their_input_in_its_own_orientation_and_header(
    trained: Path, tmp_path: Path
) -> None:
    # The tiny dataset's first case, stored RAS and as an LPS copy with a distinct sform code.
    source = read_image(trained.parents[1] / "data" / "tiny" / "images" / "c0.nii.gz")
    array, affine = lps_copy(source.array, source.affine)
    ras_path = write_nifti(source.array, source.affine, tmp_path / "in" / "ras.nii.gz")
    img = nib.Nifti1Image(array, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=2)
    lps_path = tmp_path / "in" / "lps.nii.gz"
    nib.save(img, str(lps_path))

    run = load_run(trained)
    ras_tensor, _ = preprocess_image(run, read_image(ras_path))
    lps_tensor, meta = preprocess_image(run, read_image(lps_path))
    torch.testing.assert_close(ras_tensor, lps_tensor)  # the network sees one anatomy
    assert meta["orientation_transform"] != [[0, 1], [1, 1], [2, 1]]

    out = predict(trained, [ras_path, lps_path], tmp_path / "out", quiet=True)
    ras_pred = nib.load(str(out / "ras.nii.gz"))
    lps_pred = nib.load(str(out / "lps.nii.gz"))
    assert lps_pred.shape == array.shape
    np.testing.assert_allclose(lps_pred.affine, affine)
    assert int(lps_pred.header["qform_code"]) == 1 and int(lps_pred.header["sform_code"]) == 2
    np.testing.assert_array_equal(
        np.asarray(lps_pred.dataobj), np.asarray(ras_pred.dataobj)[::-1, ::-1]
    )


@pytest.mark.applies(task="segmentation", dims=3)
def test_old_runs_without_an_orientation_keep_the_files_own_axes(trained: Path) -> None:
    config = trained / "config.yaml"
    text = config.read_text(encoding="utf-8")
    assert "orientation: RAS" in text
    config.write_text(text.replace("  orientation: RAS\n", ""), encoding="utf-8")
    assert load_run(trained).cfg.data.orientation == "none"


@pytest.mark.applies(task="segmentation")
def test_evaluate_writes_predictions_with_the_inputs_qform_and_sform(trained: Path) -> None:
    tiny = trained.parents[1] / "data" / "tiny"
    for path in sorted((tiny / "images").glob("*.nii.gz")):
        img = nib.load(str(path))
        img = nib.Nifti1Image(np.asarray(img.dataobj), img.affine)
        img.set_qform(img.affine, code=1)
        img.set_sform(img.affine, code=2)  # "aligned": not what a default writer puts
        nib.save(img, str(path))
    make_splits(tiny, task=TASK, folds=2, test_fraction=0.2, seed=0)  # the same cases again
    out = evaluate_run(trained, "val", quiet=True)
    folder = out if out.is_dir() else out.parent
    written = sorted((folder / "predictions").glob("*.nii.gz"))
    assert written
    for path in written:
        header = nib.load(str(path)).header
        assert (int(header["qform_code"]), int(header["sform_code"])) == (1, 2), path.name
