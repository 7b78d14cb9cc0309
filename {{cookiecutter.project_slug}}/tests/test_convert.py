"""`convert`: a student's everyday DICOM-to-NIfTI step, from the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.data.io import read_image, write_dicom

AFFINE = np.diag([-0.7, -0.7, 3.0, 1.0])


def test_series_folder_to_nifti(tmp_path: Path, capsys) -> None:
    vol = np.arange(4 * 3 * 5, dtype=np.int16).reshape(4, 3, 5) - 500
    write_dicom(vol, AFFINE, tmp_path / "ct", patient_id="p", instance_numbers=[5, 4, 3, 2, 1])
    assert main(["convert", str(tmp_path / "ct"), str(tmp_path / "ct.nii.gz")]) == 0
    assert "shape (4, 3, 5)" in capsys.readouterr().out
    img = nib.load(str(tmp_path / "ct.nii.gz"))
    assert np.array_equal(np.asarray(img.dataobj), vol)
    assert np.allclose(img.affine, AFFINE)
    assert img.header["sform_code"] == 1


def test_convert_refuses_mixed_series_in_one_line(tmp_path: Path) -> None:
    vol = np.zeros((2, 2, 2), np.int16)
    write_dicom(vol, AFFINE, tmp_path / "in" / "a", patient_id="p", series_uid="1.2.1")
    write_dicom(vol + 1, AFFINE, tmp_path / "in" / "b", patient_id="p", series_uid="1.2.2")
    out = tmp_path / "out.nii.gz"
    pkg = "{{ cookiecutter.package_name }}"
    result = subprocess.run(
        [sys.executable, "-m", pkg, "convert", str(tmp_path / "in"), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "1.2.1" in result.stderr and "1.2.2" in result.stderr
    assert not out.exists()
    assert main(["convert", str(tmp_path / "in"), str(out), "--series", "1.2.2"]) == 0
    assert read_image(out).array.min() == 1


def test_convert_refuses_a_non_nifti_destination(tmp_path: Path, capsys) -> None:
    write_dicom(np.zeros((2, 2), np.int16), AFFINE, tmp_path / "x.dcm", patient_id="p")
    assert main(["convert", str(tmp_path / "x.dcm"), str(tmp_path / "x.png")]) == 2
    assert "expected a .nii or .nii.gz" in capsys.readouterr().err
