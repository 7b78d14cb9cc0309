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


def test_convert_keeps_the_inputs_qform_and_sform(tmp_path: Path) -> None:
    qform = np.diag([-0.7, -0.7, 3.0, 1.0])
    qform[:3, 3] = [20.0, -5.0, 0.0]  # 20 mm from the sform: ITK viewers use the qform
    img = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), AFFINE)
    img.set_qform(qform, code=1)
    img.set_sform(AFFINE, code=4)
    nib.save(img, str(tmp_path / "in.nii.gz"))
    assert main(["convert", str(tmp_path / "in.nii.gz"), str(tmp_path / "out.nii")]) == 0
    out = nib.load(str(tmp_path / "out.nii"))
    q, q_code = out.get_qform(coded=True)
    s, s_code = out.get_sform(coded=True)
    assert (int(q_code), int(s_code)) == (1, 4)
    assert np.allclose(q, qform, atol=1e-4) and np.allclose(s, AFFINE)


def test_convert_resamples_irregular_slices_only_when_asked(tmp_path: Path, capsys) -> None:
    vol = np.zeros((4, 3, 6), np.int16) + np.arange(6, dtype=np.int16) * 10
    write_dicom(vol, AFFINE, tmp_path / "ct", patient_id="p")
    (tmp_path / "ct" / "slice_0002.dcm").unlink()  # slices at 0, 3, 9, 12, 15 mm
    assert main(["convert", str(tmp_path / "ct"), str(tmp_path / "a.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "irregular slice gaps (3 to 6 mm: 6 mm between 3 and 9" in err
    assert not (tmp_path / "a.nii.gz").exists()
    args = ["convert", str(tmp_path / "ct"), str(tmp_path / "a.nii.gz"), "--resample-slices"]
    assert main(args) == 0
    assert "shape (4, 3, 6)" in capsys.readouterr().out
    assert np.array_equal(read_image(tmp_path / "a.nii.gz").array, vol)  # 20 = (10 + 30) / 2


def test_nibabel_header_chatter_is_one_line(tmp_path: Path, capsys) -> None:
    img = nib.Nifti1Image(np.zeros((2, 3, 4), np.int16), AFFINE)
    nib.save(img, str(tmp_path / "odd.nii"))
    data = bytearray((tmp_path / "odd.nii").read_bytes())
    data[0:4] = (0).to_bytes(4, "little")  # sizeof_hdr 0 instead of 348: nibabel repairs it
    (tmp_path / "odd.nii").write_bytes(bytes(data))
    pkg = "{{ cookiecutter.package_name }}"
    result = subprocess.run(
        [sys.executable, "-m", pkg, "convert", str(tmp_path / "odd.nii"), str(tmp_path / "o.nii")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0
    assert result.stderr == (
        "warning: NIfTI header repaired on reading: sizeof_hdr should be 348; set sizeof_hdr "
        "to 348\n"
    )


def test_python_warnings_are_one_line_without_source(tmp_path: Path) -> None:
    code = (
        "import warnings, sys\n"
        "from {{ cookiecutter.package_name }}.utils import messages\n"
        "messages.install()\n"
        "for _ in range(3):\n"
        "    warnings.warn('slice spacing varies\\nsecond line', UserWarning)\n"
        "warnings.warn('another', RuntimeWarning)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.stderr == "warning: slice spacing varies\nwarning: another\n"
