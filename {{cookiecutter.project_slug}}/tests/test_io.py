"""Reading and writing images keeps values and geometry; bad files give one clear error."""

from __future__ import annotations

import copy
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


# --- series that cannot be one volume (pydicom's own test series) ------------------------------

DICOMDIR_TESTS = Path(get_testdata_file("CT_small.dcm")).parent / "dicomdirtests"


def copy_series(tmp_path: Path, relative: str) -> Path:
    folder = tmp_path / Path(relative).name
    shutil.copytree(DICOMDIR_TESTS / relative, folder)
    return folder


@pytest.mark.parametrize(
    ("series", "orientations"),
    [("98892001/CT2N", 2), ("98892003/MR700", 7)],  # sagittal + coronal slice; a radial MR
)
def test_mixed_orientations_are_refused(tmp_path: Path, series: str, orientations: int) -> None:
    folder = copy_series(tmp_path, series)
    with pytest.raises(ImageError) as info:
        read_image(folder)
    message = str(info.value)
    assert f"'{folder}': mixed orientation" in message and "\n" not in message
    assert f"have {orientations} different ImageOrientationPatient" in message


def test_three_plane_localizer_is_refused(tmp_path: Path) -> None:
    axial, coronal, sagittal = np.eye(4), np.eye(4)[[0, 2, 1, 3]].T, np.eye(4)[[2, 0, 1, 3]].T
    for k, plane in enumerate((axial, coronal, sagittal)):
        write_dicom(
            volume((6, 5)), plane, tmp_path / "loc" / f"{k}.dcm", patient_id="p", series_uid="1.2.3"
        )
    with pytest.raises(ImageError, match="mixed orientation: its 3 slices have 3 different"):
        read_image(tmp_path / "loc")


def test_irregular_gaps_are_refused_with_their_positions(tmp_path: Path) -> None:
    folder = copy_series(tmp_path, "77654033/CT2")  # slices at -99.48, 103.02, 104.27, 105.52
    with pytest.raises(ImageError) as info:
        read_image(folder)
    message = str(info.value)
    assert f"'{folder}': irregular slice gaps (1.25 to 202.5 mm" in message
    assert "202.5 mm between -99.48 and 103" in message and "--resample-slices" in message


def test_resampling_irregular_slices_is_exact_in_world_coordinates(tmp_path: Path) -> None:
    # slice k holds the value 10 * z (z in mm): linear interpolation must give 10 * z exactly
    affine = np.diag([-0.8, -0.9, 2.0, 1.0])
    affine[:3, 3] = [12.0, 30.0, -40.0]
    shape = (6, 5, 8)
    z = affine[2, 3] + 2.0 * np.arange(shape[2])
    vol = np.broadcast_to((10 * z + 1000).astype(np.int16), shape).copy()
    folder = tmp_path / "gapped"
    write_dicom(vol, affine, folder, patient_id="p")
    for k in (2, 3, 5):  # left: z = -40, -38, -32, -28, -26 (gaps 2, 6, 4, 2)
        (folder / f"slice_{k:04d}.dcm").unlink()
    with pytest.raises(ImageError, match="irregular slice gaps"):
        read_image(folder)
    image = read_image(folder, resample_irregular=True)
    assert image.meta["resampled"] is True
    assert image.shape == (6, 5, 8) and image.spacing == pytest.approx((0.8, 0.9, 2.0))
    assert np.allclose(image.affine, affine)  # the first slice's place, a 2 mm step
    for k in range(8):
        z_k = world(image.affine, (0, 0, k))[2]
        assert np.allclose(image.array[:, :, k], 10 * z_k + 1000)


def test_resampling_pydicom_ct2_keeps_first_and_last_slice(tmp_path: Path) -> None:
    folder = copy_series(tmp_path, "77654033/CT2")
    image = read_image(folder, resample_irregular=True)
    assert image.shape == (16, 16, 165)  # 205 mm / 1.25 mm + 1
    assert image.spacing[2] == pytest.approx(1.25)
    first, last = (pydicom.dcmread(f) for f in sorted(folder.iterdir())[::3])
    ends = sorted([first, last], key=lambda ds: float(ds.ImagePositionPatient[2]))
    assert world(image.affine, (0, 0, 164))[2] == pytest.approx(105.52, abs=1e-3)
    for k, ds in ((0, ends[0]), (164, ends[1])):
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert np.allclose(image.array[:, :, k], hu.T)


# --- multi-frame DICOM ------------------------------------------------------------------------


def test_rtdose_multiframe_reads_with_frame_offsets() -> None:
    path = get_testdata_file("rtdose.dcm")
    ds = pydicom.dcmread(path)
    image = read_image(path)
    offsets = [float(v) for v in ds.GridFrameOffsetVector]
    assert image.shape == (ds.Columns, ds.Rows, int(ds.NumberOfFrames))
    assert image.spacing[2] == pytest.approx(offsets[1] - offsets[0])
    origin_lps = [float(v) for v in ds.ImagePositionPatient]
    assert np.allclose(
        world(image.affine, (0, 0, 0)), [-origin_lps[0], -origin_lps[1], origin_lps[2]]
    )
    gy = ds.pixel_array[3].T * float(ds.DoseGridScaling)  # frame 3 in Gy
    assert np.allclose(image.array[:, :, 3], gy, rtol=1e-6)


def enhanced_from_series(folder: Path, out: Path, positions: bool = True) -> Path:
    """One enhanced (multi-frame) file holding the slices of a single-frame series."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    slices = [pydicom.dcmread(p) for p in sorted(folder.iterdir())]
    ds = copy.deepcopy(slices[0])
    ds.NumberOfFrames = len(slices)
    for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        delattr(ds, tag)
    shared = Dataset()
    orientation, measures, transform = Dataset(), Dataset(), Dataset()
    orientation.ImageOrientationPatient = slices[0].ImageOrientationPatient
    measures.PixelSpacing = slices[0].PixelSpacing
    transform.RescaleSlope, transform.RescaleIntercept = 1, slices[0].RescaleIntercept
    shared.PlaneOrientationSequence = Sequence([orientation])
    shared.PixelMeasuresSequence = Sequence([measures])
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for s in slices[::-1]:  # frames in reverse order: the reader must sort by position
        group, position = Dataset(), Dataset()
        position.ImagePositionPatient = s.ImagePositionPatient
        if positions:
            group.PlanePositionSequence = Sequence([position])
        frames.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = b"".join(s.PixelData for s in slices[::-1])
    ds.save_as(out, enforce_file_format=True)
    return out


def test_enhanced_multiframe_reads_like_its_series(tmp_path: Path) -> None:
    vol = volume()
    write_dicom(vol, AFFINE, tmp_path / "series", patient_id="p")
    path = enhanced_from_series(tmp_path / "series", tmp_path / "enhanced.dcm")
    image = read_image(path)
    assert np.array_equal(image.array, vol) and np.allclose(image.affine, AFFINE)


def test_multiframe_without_positions_is_refused(tmp_path: Path) -> None:
    write_dicom(volume(), AFFINE, tmp_path / "series", patient_id="p")
    path = enhanced_from_series(tmp_path / "series", tmp_path / "flat.dcm", positions=False)
    with pytest.raises(
        ImageError, match=r"flat.dcm': multi-frame DICOM whose frame 1 has no position"
    ):
        read_image(path)


# --- parts of containers: a series in a shared folder, a volume of a 4D NIfTI ------------------


def test_series_named_in_the_path(tmp_path: Path) -> None:
    folder = series_folder_with_two_series(tmp_path)
    assert np.array_equal(read_image(f"{folder}::1.2.3.2").array, volume(seed=1))
    with pytest.raises(ImageError, match="has no series 9.9"):
        read_image(f"{folder}::9.9")


def test_4d_nifti_volume_named_in_the_path(tmp_path: Path) -> None:
    channels = np.stack([volume(seed=k) for k in range(3)], axis=-1)
    path = write_nifti(channels, AFFINE, tmp_path / "brats.nii.gz")
    for k in range(3):
        image = read_image(f"{path}::{k}")
        assert np.array_equal(image.array, volume(seed=k)) and np.allclose(image.affine, AFFINE)
    with pytest.raises(ImageError, match=r"expected a volume index 0..2"):
        read_image(f"{path}::3")
    with pytest.raises(ImageError, match="expected a 2D or 3D image.*brats.nii.gz::0"):
        read_image(path)


# --- NIfTI qform and sform ---------------------------------------------------------------------


def nifti_with_two_forms(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A NIfTI file whose qform (code 1, scanner) is 15 mm from its sform (code 2, aligned)."""
    qform = AFFINE.copy()
    qform[:3, 3] += [15.0, 0.0, 0.0]
    img = nib.Nifti1Image(volume(), AFFINE)
    img.set_qform(qform, code=1)
    img.set_sform(AFFINE, code=2)
    nib.save(img, str(path))
    return qform, AFFINE


def test_write_like_keeps_qform_sform_and_codes(tmp_path: Path) -> None:
    qform, sform = nifti_with_two_forms(tmp_path / "in.nii.gz")
    image = read_image(tmp_path / "in.nii.gz")
    out = nib.load(str(write_like(np.ones(image.shape, np.uint8), image, tmp_path / "mask.nii.gz")))
    q, q_code = out.get_qform(coded=True)
    s, s_code = out.get_sform(coded=True)
    assert (int(q_code), int(s_code)) == (1, 2)
    assert np.allclose(q, qform, atol=1e-4) and np.allclose(s, sform, atol=1e-4)


def test_canonical_moves_qform_and_sform_together() -> None:
    image = Image(
        volume(),
        AFFINE,
        None,
        {"qform": AFFINE + 0, "qform_code": 1, "sform": AFFINE + 0, "sform_code": 2},
    )
    image.meta["qform"][:3, 3] += [15.0, 0.0, 0.0]
    canon = to_canonical(image)
    index = (1, 2, 3)
    flipped = (image.shape[0] - 1 - 1, image.shape[1] - 1 - 2, 3)  # x and y flipped in AFFINE
    assert canon.array[flipped] == image.array[index]
    for key in ("qform", "sform"):
        assert np.allclose(world(canon.meta[key], flipped), world(image.meta[key], index))
