"""The manifest: paths relative to it, raters kept, every problem named by line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from {{ cookiecutter.package_name }}.data.io import write_nifti
from {{ cookiecutter.package_name }}.data.manifest import (
    Case,
    DataError,
    read_manifest,
    write_manifest,
)


def make_dataset(root: Path, n: int = 3) -> list[Case]:
    cases = []
    for i in range(n):
        image = write_nifti(
            np.zeros((4, 4, 2), np.int16), np.eye(4), root / "images" / f"c{i}.nii.gz"
        )
        label = write_nifti(
            np.zeros((4, 4, 2), np.uint8), np.eye(4), root / "labels" / f"c{i}.nii.gz"
        )
        raters = {"rater2": label} if i % 2 == 0 else {}
        cases.append(Case(f"c{i}", f"p{i // 2}", image, label, raters))
    write_manifest(root, cases)
    return cases


def test_round_trip_with_relative_paths(tmp_path: Path) -> None:
    cases = make_dataset(tmp_path)
    text = (tmp_path / "manifest.csv").read_text(encoding="utf-8")
    assert text.splitlines()[0] == "case_id,patient_id,image,label,label_rater2"
    assert "images/c0.nii.gz" in text and str(tmp_path) not in text
    assert read_manifest(tmp_path, "segmentation") == cases


def test_classification_labels_are_names(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "manifest.csv").write_text(
        "case_id,patient_id,image,label,label_r2\nc1,p1,a.png,nodule,normal\n", encoding="utf-8"
    )
    (case,) = read_manifest(tmp_path, "classification")
    assert case.label == "nodule" and case.raters == {"r2": "normal"}
    assert case.image == tmp_path / "a.png"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("case_id,patient_id,image\nc1,p1,a.nii\n", "lacks the column.*label"),
        ("case_id,patient_id,image,label\n", "lists no cases"),
        ("case_id,patient_id,image,label\nc1,,a.nii,b.nii\n", "line 2: empty 'patient_id'"),
        (
            "case_id,patient_id,image,label\nc1,p,a.nii,a.nii\nc1,p,a.nii,a.nii\n",
            "line 3: case_id 'c1' appears twice",
        ),
        ("case_id,patient_id,image,label\nc1,p,gone.nii,a.nii\n", "line 2: image .*gone.nii"),
    ],
)
def test_problems_are_named(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "a.nii").write_bytes(b"")
    (tmp_path / "manifest.csv").write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_manifest(tmp_path, "segmentation")


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no manifest at"):
        read_manifest(tmp_path, "segmentation")


def test_column_typo_names_the_unknown_column(tmp_path: Path) -> None:
    make_dataset(tmp_path)
    text = (tmp_path / "manifest.csv").read_text(encoding="utf-8")
    (tmp_path / "manifest.csv").write_text(text.replace("patient_id", "patiend_id", 1))
    with pytest.raises(DataError) as info:
        read_manifest(tmp_path, "segmentation")
    assert str(info.value) == (
        f"'{tmp_path / 'manifest.csv'}' lacks the column(s) patient_id; it has the unknown "
        "column(s) 'patiend_id' (did you mean 'patient_id'?)"
    )


def test_missing_column_without_look_alike_says_only_what_lacks(tmp_path: Path) -> None:
    (tmp_path / "manifest.csv").write_text("case_id,image,label,age\nc0,a.nii.gz,b.nii.gz,50\n")
    with pytest.raises(DataError, match=r"lacks the column\(s\) patient_id$"):
        read_manifest(tmp_path, "segmentation", check_files=False)


def test_multichannel_columns_round_trip(tmp_path: Path) -> None:
    cases = make_dataset(tmp_path)
    for case in cases:
        other = write_nifti(
            np.ones((4, 4, 2), np.int16), np.eye(4), tmp_path / "t2" / f"{case.case_id}.nii.gz"
        )
        case.channels = {"T1w": case.image, "T2w": other}
    write_manifest(tmp_path, cases)
    header = (tmp_path / "manifest.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header == "case_id,patient_id,image_T1w,image_T2w,label,label_rater2"
    again = read_manifest(tmp_path, "segmentation")
    assert again == cases and again[0].image == again[0].channels["T1w"]
    (tmp_path / "t2" / "c1.nii.gz").unlink()
    with pytest.raises(DataError, match=r"line 3: image '.*t2/c1.nii.gz' does not exist"):
        read_manifest(tmp_path, "segmentation")


def test_image_and_channel_columns_together_are_refused(tmp_path: Path) -> None:
    (tmp_path / "manifest.csv").write_text(
        "case_id,patient_id,image,image_T2w,label\nc0,p0,a.nii.gz,b.nii.gz,c.nii.gz\n"
    )
    with pytest.raises(DataError, match="has both 'image' and image_T2w"):
        read_manifest(tmp_path, "segmentation", check_files=False)


def test_series_in_a_shared_folder_is_checked_by_its_folder(tmp_path: Path) -> None:
    from {{ cookiecutter.package_name }}.data.io import write_dicom

    write_dicom(
        np.zeros((4, 4, 2), np.int16),
        np.eye(4),
        tmp_path / "dicom" / "a",
        patient_id="p",
        series_uid="1.2.3",
    )
    label = write_nifti(np.zeros((4, 4, 2), np.uint8), np.eye(4), tmp_path / "m.nii.gz")
    header = "case_id,patient_id,image,label\n"
    (tmp_path / "manifest.csv").write_text(header + "c0,p,dicom::1.2.3,m.nii.gz\n")
    (case,) = read_manifest(tmp_path, "segmentation")
    assert case.image == tmp_path / "dicom::1.2.3" and case.label == label
    (tmp_path / "manifest.csv").write_text(header + "c1,p,gone::1.2.3,m.nii.gz\n")
    with pytest.raises(DataError, match=r"line 2: image '.*gone::1.2.3' does not exist"):
        read_manifest(tmp_path, "segmentation")


def test_written_files_follow_the_umask(tmp_path: Path) -> None:
    import os

    from {{ cookiecutter.package_name }}.utils.io import atomic_write_text

    old = os.umask(0o027)
    try:
        fresh = atomic_write_text(tmp_path / "splits.json", "{}\n")
        assert fresh.stat().st_mode & 0o777 == 0o640  # 0o666 & ~0o027, like open() gives
        os.umask(0o022)
        assert atomic_write_text(tmp_path / "new.md", "x").stat().st_mode & 0o777 == 0o644
        fresh.chmod(0o664)  # a file replaced keeps the permissions it was given
        assert atomic_write_text(fresh, "{}\n").stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(old)
