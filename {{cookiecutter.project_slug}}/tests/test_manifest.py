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
