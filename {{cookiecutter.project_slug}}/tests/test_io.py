"""Reading and writing images keeps values and geometry; bad files give one clear error."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from nibabel.testing import data_path as NIBABEL_DATA
from pydicom.data import get_testdata_file

from {{ cookiecutter.package_name }}.data.io import (
    Image,
    ImageError,
    read_image,
    read_label,
    to_canonical,
    write_dicom,
    write_like,
    write_nifti,
    write_png,
)

# 0.8 x 0.9 x 2.5 mm voxels, x and y flipped (as a LPS scanner frame is in RAS), shifted origin.
AFFINE = np.array(
    [[-0.8, 0.0, 0.0, 12.0], [0.0, -0.9, 0.0, 30.0], [0.0, 0.0, 2.5, -40.0], [0.0, 0.0, 0.0, 1.0]]
)


def volume(shape: tuple[int, ...] = (6, 5, 4), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 1500, size=shape).astype(np.int16)


def world(affine: np.ndarray, index: tuple[int, ...]) -> np.ndarray:
    return (affine @ [*index, *([0] * (3 - len(index))), 1])[:3]


# --- real files shipped by pydicom and nibabel ------------------------------------------------


def test_ct_small_in_hounsfield_units_with_geometry() -> None:
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    image = read_image(path)
    expected = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
    assert image.shape == (ds.Columns, ds.Rows)
    assert np.array_equal(image.array, expected.T)  # (rows, cols) -> (X, Y)
    assert image.spacing == pytest.approx((0.661468, 0.661468))
    assert image.array.min() < -800  # air in HU, not raw stored values
    # DICOM LPS position (-158.1, -179.0, -75.7) is RAS (158.1, 179.0, -75.7).
    assert world(image.affine, (0, 0)) == pytest.approx([158.135803, 179.035797, -75.699997])
    assert image.meta["modality"] == "CT"


def test_mr_small() -> None:
    image = read_image(get_testdata_file("MR_small.dcm"))
    assert image.shape == (64, 64)
    assert image.spacing == pytest.approx((0.3125, 0.3125))


def test_nibabel_image_keeps_affine_and_values() -> None:
    path = Path(NIBABEL_DATA) / "anatomical.nii"
    image = read_image(path)
    reference = nib.load(str(path))
    assert image.shape == (33, 41, 25)
    assert np.array_equal(image.affine, reference.affine)
    assert np.array_equal(image.array, np.asarray(reference.dataobj))


def test_canonical_reorientation_keeps_world_positions() -> None:
    image = read_image(Path(NIBABEL_DATA) / "anatomical.nii")  # x axis points left (-2 mm)
    canon = read_image(Path(NIBABEL_DATA) / "anatomical.nii", canonical=True)
    assert np.all(np.diag(canon.affine)[:3] > 0)
    # The voxel at the same world point holds the same value.
    i, j, k = 3, 7, 11
    ci, cj, ck = np.round(np.linalg.inv(canon.affine) @ [*world(image.affine, (i, j, k)), 1])[
        :3
    ].astype(int)
    assert canon.array[ci, cj, ck] == image.array[i, j, k]


def test_4d_nifti_is_refused() -> None:
    with pytest.raises(ImageError, match="example4d.nii.gz.*expected a 2D or 3D image"):
        read_image(Path(NIBABEL_DATA) / "example4d.nii.gz")


# --- round trips -------------------------------------------------------------------------------


def test_nifti_round_trip(tmp_path: Path) -> None:
    vol = volume()
    path = write_nifti(vol, AFFINE, tmp_path / "a" / "img.nii.gz")
    image = read_image(path)
    assert np.array_equal(image.array, vol) and image.array.dtype == np.int16
    assert np.allclose(image.affine, AFFINE)
    assert image.spacing == pytest.approx((0.8, 0.9, 2.5))
    assert [p.name for p in path.parent.iterdir()] == ["img.nii.gz"]  # no temporary file left


def test_dicom_series_sorted_by_position_not_instance_number(tmp_path: Path) -> None:
    vol = volume()
    write_dicom(vol, AFFINE, tmp_path / "series", patient_id="p1", instance_numbers=[3, 1, 4, 2])
    image = read_image(tmp_path / "series")
    assert image.shape == vol.shape
    assert np.array_equal(image.array, vol)
    assert np.allclose(image.affine, AFFINE)
    assert image.meta["patient_id"] == "p1" and image.meta["files"] == 4


def test_dicom_series_written_top_down_keeps_world_positions(tmp_path: Path) -> None:
    # Slices stored from head to feet: the reader orders them along the normal, so the array is
    # flipped along Z, but each value stays at its world position.
    flipped = AFFINE.copy()
    flipped[2, 2] = -2.5
    vol = volume()
    write_dicom(vol, flipped, tmp_path / "series", patient_id="p1")
    image = read_image(tmp_path / "series")
    for index in [(0, 0, 0), (5, 4, 3), (2, 1, 2)]:
        target = np.linalg.inv(image.affine) @ [*world(flipped, index), 1]
        i, j, k = np.round(target[:3]).astype(int)
        assert image.array[i, j, k] == vol[index]


def test_dicom_2d_round_trip(tmp_path: Path) -> None:
    img = volume((7, 5))
    write_dicom(img, AFFINE, tmp_path / "xray.dcm", patient_id="p2", modality="DX")
    image = read_image(tmp_path / "xray.dcm")
    assert np.array_equal(image.array, img)
    assert image.spacing == pytest.approx((0.8, 0.9))


def test_png_round_trip_and_rgb_to_grey(tmp_path: Path) -> None:
    from PIL import Image as PILImage

    for dtype in (np.uint8, np.uint16):
        arr = np.arange(12, dtype=dtype).reshape(4, 3) * 50
        image = read_image(write_png(arr, tmp_path / f"{np.dtype(dtype).name}.png"))
        assert np.array_equal(image.array, arr) and image.array.dtype == dtype
    PILImage.new("RGB", (5, 3), (200, 200, 200)).save(tmp_path / "rgb.png")
    assert read_image(tmp_path / "rgb.png").shape == (5, 3)  # (X, Y): width first


def test_write_like_uses_source_geometry(tmp_path: Path) -> None:
    source = Image(volume(), AFFINE, tmp_path / "src.nii.gz")
    pred = write_like(np.ones(source.shape, dtype=np.uint8), source, tmp_path / "pred.nii.gz")
    assert np.allclose(read_image(pred).affine, AFFINE)
    with pytest.raises(ImageError, match=r"prediction for .*src.nii.gz.* has shape \(2, 2\)"):
        write_like(np.ones((2, 2)), source, tmp_path / "bad.nii.gz")


# --- errors ------------------------------------------------------------------------------------


def series_folder_with_two_series(tmp_path: Path) -> Path:
    folder = tmp_path / "mixed"
    write_dicom(volume(), AFFINE, folder / "a", patient_id="p", series_uid="1.2.3.1")
    write_dicom(volume(seed=1), AFFINE, folder / "b", patient_id="p", series_uid="1.2.3.2")
    return folder


def test_several_series_need_a_choice(tmp_path: Path) -> None:
    folder = series_folder_with_two_series(tmp_path)
    with pytest.raises(ImageError, match=r"holds 2 series: 1\.2\.3\.1 .*1\.2\.3\.2 .*--series"):
        read_image(folder)
    assert np.array_equal(read_image(folder, series_uid="1.2.3.2").array, volume(seed=1))
    with pytest.raises(ImageError, match="has no series 9.9"):
        read_image(folder, series_uid="9.9")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("scan.nii.gz", None, "does not exist"),
        ("notes.txt", b"hello", "unsupported format"),
        ("fake.dcm", b"not a dicom file at all" * 10, "is not a DICOM file"),
        ("broken.nii.gz", b"\x1f\x8b\x08\x00garbage", "cannot read"),
        ("broken.png", b"\x89PNG\r\n\x1a\n", "cannot read"),
    ],
)
def test_bad_files_are_named(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageError, match=message) as info:
        read_image(path)
    assert name in str(info.value) and "\n" not in str(info.value)


def test_truncated_files_are_named(tmp_path: Path) -> None:
    nifti = write_nifti(volume(), AFFINE, tmp_path / "cut.nii.gz")
    nifti.write_bytes(nifti.read_bytes()[:200])
    with pytest.raises(ImageError, match="cut.nii.gz"):
        read_image(nifti)
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "cut.dcm")
    data = (tmp_path / "cut.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.dcm"):
        read_image(tmp_path / "cut.dcm")


def test_mask_must_match_its_image(tmp_path: Path) -> None:
    image = read_image(write_nifti(volume(), AFFINE, tmp_path / "img.nii.gz"))
    good = write_nifti(np.zeros(image.shape, np.uint8), AFFINE, tmp_path / "ok.nii.gz")
    assert read_label(good, image).shape == image.shape
    small = write_nifti(np.zeros((6, 5, 3), np.uint8), AFFINE, tmp_path / "small.nii.gz")
    with pytest.raises(ImageError, match=r"mask .*small.nii.gz.* shape \(6, 5, 3\).*img.nii.gz"):
        read_label(small, image)
    moved = AFFINE.copy()
    moved[0, 3] += 5
    shifted = write_nifti(np.zeros(image.shape, np.uint8), moved, tmp_path / "shifted.nii.gz")
    with pytest.raises(ImageError, match="shifted.nii.gz.*different geometry"):
        read_label(shifted, image)


def test_canonical_of_2d_is_unchanged() -> None:
    image = Image(np.zeros((3, 2)), np.eye(4))
    assert to_canonical(Image(np.zeros((3, 2, 1)), np.eye(4))).shape == (3, 2, 1)
    assert image.spacing == (1.0, 1.0)
