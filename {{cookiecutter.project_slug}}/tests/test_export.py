"""``export``: TorchScript and ONNX files that reproduce PyTorch, and ``predict --format dicom-seg``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_data import TASK

from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.data.from_config import loader_settings
from {{ cookiecutter.package_name }}.data.io import read_image, write_dicom
from {{ cookiecutter.package_name }}.evaluate.dicom_seg import (
    DicomSegError,
    check_dicom_inputs,
    write_dicom_seg,
)
from {{ cookiecutter.package_name }}.evaluate.export import (
    ExportError,
    Probabilities,
    central_patch,
    check_inputs,
    export_run,
)
from {{ cookiecutter.package_name }}.evaluate.inference import load_runs


def test_central_patch_crops_and_pads() -> None:
    image = torch.arange(2 * 7, dtype=torch.float32).reshape(1, 1, 2, 7)
    patch = central_patch(image, (4, 3))
    assert patch.shape == (1, 1, 4, 3)
    np.testing.assert_array_equal(patch[0, 0, 1:3].numpy(), image[0, 0, :, 2:5].numpy())
    assert float(patch[0, 0, 0].abs().sum()) == 0.0 == float(patch[0, 0, 3].abs().sum())


def test_exported_ensemble_is_the_mean_of_tempered_softmaxes() -> None:
    torch.manual_seed(0)
    first, second = torch.nn.Conv2d(1, 3, 1), torch.nn.Conv2d(1, 3, 1)
    image = torch.randn(2, 1, 4, 5)
    model = Probabilities([first, second], [1.0, 2.0]).eval()
    with torch.no_grad():
        expected = (torch.softmax(first(image), 1) + torch.softmax(second(image) / 2.0, 1)) / 2
        np.testing.assert_allclose(model(image).numpy(), expected.numpy(), atol=1e-7)
    with pytest.raises(ValueError, match="one temperature per model"):
        Probabilities([first], [1.0, 2.0])


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_matches_pytorch(
    trained: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if fmt == "onnx":
        pytest.importorskip("onnx")
        ort = pytest.importorskip("onnxruntime")
    assert main(["export", str(trained), "--format", fmt]) == 0
    out = capsys.readouterr().out
    assert "largest difference from PyTorch on" in out
    suffix = "ts" if fmt == "torchscript" else "onnx"
    path = trained / "export" / f"model.{suffix}"
    meta = json.loads(path.with_name(path.name + ".json").read_text())
    runs = load_runs(trained)
    assert meta["classes"] == runs[0].label_names() and meta["task"] == runs[0].task
    assert meta["check"]["max_abs_difference"] <= 1e-4 and meta["check"]["cases"] >= 1
    settings = loader_settings(runs[0].cfg).preprocessing()
    assert meta["preprocessing"]["window"] == settings["window"]
    assert meta["preprocessing"]["normalization"] == settings["normalization"]
    # Independently of the command's own check: the file reproduces PyTorch within 1e-4.
    reference = Probabilities([runs[0].model], [1.0]).eval()
    for image in check_inputs(runs):
        with torch.no_grad():
            expected = reference(image).numpy()
        if fmt == "torchscript":
            extra = {"metadata.json": ""}
            loaded = torch.jit.load(str(path), _extra_files=extra)
            assert json.loads(extra["metadata.json"])["classes"] == meta["classes"]
            got = loaded(image).detach().numpy()
        else:
            import onnx

            props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
            assert json.loads(props["metadata.json"])["classes"] == meta["classes"]
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            got = session.run(None, {"image": image.numpy()})[0]
        np.testing.assert_allclose(got, expected, atol=1e-4)
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-4)  # probabilities


@pytest.mark.slow
def test_export_mismatch_and_missing_extra_are_one_line_errors(
    trained: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ExportError, match="differs from PyTorch by up to"):
        export_run(trained, "torchscript", tolerance=-1.0)  # no export can pass: it must say so
    assert not (trained / "export").exists()  # nothing kept
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # the extra is not installed
    assert main(["export", str(trained), "--format", "onnx"]) == 2
    assert 'pip install -e ".[export]"' in capsys.readouterr().err
    assert main(["export", str(trained.parent / "nothing"), "--format", "onnx"]) == 2
    assert "does not exist" in capsys.readouterr().err


def _three_slice_series(folder: Path) -> tuple[np.ndarray, list[Path]]:
    """A 3-slice CT series written out of instance order, and a mask with a different box per
    slice (label 1) and one label-2 pixel block on the middle slice."""
    image = np.zeros((6, 5, 3), np.int16)
    files = write_dicom(
        image, np.diag([0.7, 0.8, 2.5, 1.0]), folder, patient_id="p1", instance_numbers=[3, 1, 2]
    )
    mask = np.zeros(image.shape, np.uint8)
    for z in range(3):
        mask[z : z + 2, 1 : 1 + z + 1, z] = 1  # shape and place differ per slice
    mask[4, 3, 1] = 2
    return mask, files


def test_dicom_seg_frames_reference_their_source_slices(tmp_path: Path) -> None:
    hd = pytest.importorskip("highdicom")
    import pydicom

    mask, files = _three_slice_series(tmp_path / "series")
    out = write_dicom_seg(mask, tmp_path / "series", tmp_path / "mask.seg.dcm", ["bg", "1", "2"])
    sources = [pydicom.dcmread(f) for f in files]  # file k holds slice k (array order)
    slice_of = {str(ds.SOPInstanceUID): k for k, ds in enumerate(sources)}
    seg = hd.seg.segread(out)
    assert seg.SeriesInstanceUID != sources[0].SeriesInstanceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == sources[0].SeriesInstanceUID
    assert seg.PatientID == "p1" and seg.StudyInstanceUID == sources[0].StudyInstanceUID
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    assert len(seg.SegmentSequence) == 2
    raw = pydicom.dcmread(out)  # read back with pydicom alone too
    pixels = raw.pixel_array.reshape(-1, raw.Rows, raw.Columns)
    seen = set()
    for index, frame in enumerate(raw.PerFrameFunctionalGroupsSequence):
        uid = str(frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        segment = int(frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        z = slice_of[uid]
        np.testing.assert_array_equal(pixels[index], (segment == mask[:, :, z].T).astype(np.uint8))
        seen.add((z, segment))
    # Every non-empty (slice, segment) pair has its frame; empty ones are left out.
    assert seen == {(z, s) for z in range(3) for s in (1, 2) if np.any(mask[:, :, z] == s)}
    with pytest.raises(DicomSegError, match="shape"):
        write_dicom_seg(mask[:, :, :2], tmp_path / "series", tmp_path / "x.dcm", ["bg", "1"])
    with pytest.raises(DicomSegError, match="not DICOM"):
        check_dicom_inputs([tmp_path / "series", tmp_path / "image.nii.gz"])


@pytest.mark.slow
def test_predict_dicom_seg_lays_the_predicted_mask_over_the_series(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hd = pytest.importorskip("highdicom")
    import pydicom

    nifti = trained.parents[1] / "data" / "tiny" / "images" / "c0.nii.gz"
    if TASK != "segmentation":
        assert main(["predict", str(trained), str(nifti), "--format", "dicom-seg"]) == 2
        assert "writes segmentation masks" in capsys.readouterr().err
        return
    assert main(["predict", str(trained), str(nifti), "--format", "dicom-seg"]) == 2
    assert "needs DICOM inputs" in capsys.readouterr().err
    image = read_image(nifti)
    series = trained.parents[1] / "dicom" / "c0"
    files = write_dicom(np.clip(image.array, -1000, None), image.affine, series, patient_id="p0")
    assert main(["predict", str(trained), str(series), "--format", "dicom-seg", "--out", "o"]) == 0
    out = trained.parents[1] / "o"
    mask = read_image(out / "c0.nii.gz").array
    seg = hd.seg.segread(out / "c0.seg.dcm")
    slice_of = {str(pydicom.dcmread(f).SOPInstanceUID): k for k, f in enumerate(files)}
    raw = pydicom.dcmread(out / "c0.seg.dcm")
    assert (
        raw.ReferencedSeriesSequence[0].SeriesInstanceUID
        == pydicom.dcmread(files[0]).SeriesInstanceUID
    )
    pixels = raw.pixel_array.reshape(-1, raw.Rows, raw.Columns) if "PixelData" in raw else []
    for index, frame in enumerate(raw.get("PerFrameFunctionalGroupsSequence", [])):
        uid = str(frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        np.testing.assert_array_equal(pixels[index], (mask[:, :, slice_of[uid]].T == 1))
    assert len(seg.SegmentSequence) == 1
    assert int(np.sum(pixels)) == int(np.sum(mask == 1))  # every predicted voxel is in a frame
