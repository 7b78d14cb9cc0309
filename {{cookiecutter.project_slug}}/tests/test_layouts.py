"""`manifest`: each layout built from small files written here, then inspect, split and train.

Every image carries a planted value (its case number times 100, or its channel's) so that a row
pointing at the wrong file, series or channel is caught by value, not only by name.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from tiny_data import AFFINE, DIMS, SHAPE, TASK, train_small

from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.data.inspect import inspect_dataset
from {{ cookiecutter.package_name }}.data.io import read_image, write_dicom, write_nifti, write_png
from {{ cookiecutter.package_name }}.data.layouts import build_manifest, detect_layout
from {{ cookiecutter.package_name }}.data.manifest import DataError, read_manifest
from {{ cookiecutter.package_name }}.data.split import load_splits, make_splits
from {{ cookiecutter.package_name }}.runs.checkpoint import load_checkpoint

SHAPE3 = (16, 16, 8)


def box(shape: tuple[int, ...], seed: int) -> tuple[slice, ...]:
    """A 4-voxel box whose place depends on ``seed`` (so no two cases look like duplicates)."""
    rng = np.random.default_rng(seed + 1000)
    return tuple(slice(s, s + 4) for s in (int(rng.integers(0, n - 4)) for n in shape))


def planted(value: int, shape: tuple[int, ...] = SHAPE3, seed: int = 0) -> np.ndarray:
    """Noise around ``value`` with a bright box (the mask of the same seed), int16."""
    rng = np.random.default_rng(seed)
    image = (value + rng.normal(0, 5, shape)).astype(np.int16)
    image[box(shape, seed)] += 300
    return image


def box_mask(shape: tuple[int, ...] = SHAPE3, seed: int = 0) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[box(shape, seed)] = 1
    return mask


def rows(manifest: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(manifest.read_text(encoding="utf-8").splitlines()))


def pipeline(out: Path, task: str, project: Path, *overrides: str) -> None:
    """inspect and split the manifest in ``out``; train briefly when the render can."""
    report = inspect_dataset(out, task=task, out_dir=project / "reports" / "inspect")
    assert json.loads(report.read_text())["counts"]["cases"] == len(read_manifest(out, task))
    patients = len({c.patient_id for c in read_manifest(out, task)})
    splits = make_splits(out, task=task, folds=2, test_fraction=0.2 if patients > 2 else 0, seed=0)
    assert splits["folds"]
    dims = {read_image(c.image).ndim for c in read_manifest(out, task)}
    if task == TASK and dims == {DIMS}:
        run = train_small(f"data.root={out}", "train.epochs=1", *overrides)
        assert (run / "config.yaml").is_file()


# --- Decathlon / nnU-Net -----------------------------------------------------------------------


def decathlon_4d(src: Path, cases: int = 3) -> None:
    names = {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}
    for i in range(cases):
        volume = np.stack([planted(1000 * i + 100 * k, seed=i) for k in range(4)], axis=-1)
        write_nifti(volume, AFFINE, src / "imagesTr" / f"BRATS_{i:03d}.nii.gz")
        write_nifti(box_mask(seed=i), AFFINE, src / "labelsTr" / f"BRATS_{i:03d}.nii.gz")
    (src / "imagesTr" / "._BRATS_000.nii.gz").write_bytes(b"\x00\x05\x16\x07 macOS junk")
    write_nifti(planted(0), AFFINE, src / "imagesTs" / "BRATS_900.nii.gz")
    meta = {"name": "BRATS", "modality": names, "labels": {"0": "background", "1": "tumour"}}
    (src / "dataset.json").write_text(json.dumps(meta))


def test_decathlon_4d_becomes_multichannel_cases(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = project / "Task01_BrainTumour"
    decathlon_4d(src)
    assert main(["manifest", str(src), "--out", "data/brats"]) == 0
    printed = capsys.readouterr().out
    assert "layout: decathlon (guessed" in printed
    assert "WARNING: no patient id found for 3 of 3 cases" in printed
    assert "1 unlabelled cases in imagesTs/" in printed
    out = project / "data" / "brats"
    table = rows(out / "manifest.csv")
    assert list(table[0]) == [
        "case_id",
        "patient_id",
        "image_FLAIR",
        "image_T1w",
        "image_t1gd",
        "image_T2w",
        "label",
    ]
    assert [r["case_id"] for r in table] == ["BRATS_000", "BRATS_001", "BRATS_002"]
    assert table[1]["image_t1gd"].endswith("Task01_BrainTumour/imagesTr/BRATS_001.nii.gz::2")
    cases = read_manifest(out, "segmentation")
    for i, case in enumerate(cases):
        assert list(case.channels) == ["FLAIR", "T1w", "t1gd", "T2w"]
        for k, path in enumerate(case.channels.values()):  # each column reads its own volume
            assert abs(np.median(read_image(path).array) - (1000 * i + 100 * k)) < 10
        assert case.image == case.channels["FLAIR"]
    sidecar = json.loads((out / "manifest.json").read_text())
    assert sidecar["channels"] == ["FLAIR", "T1w", "t1gd", "T2w"]
    assert sidecar["modalities"]["2"] == "t1gd"
    report = inspect_dataset(out, task="segmentation", out_dir=project / "reports")
    assert json.loads(report.read_text())["counts"]["cases"] == 3
    assert make_splits(out, task="segmentation", folds=2, test_fraction=0.0, seed=0)["folds"]
    if TASK == "segmentation" and DIMS == 3:  # the four channels, not channel 0 alone
        run = train_small(f"data.root={out}", "train.epochs=1")
        state = load_checkpoint(run / "checkpoints" / "last.pt")
        assert state["in_channels"] == 4 and state["channels"] == ["FLAIR", "T1w", "t1gd", "T2w"]


def test_nnunet_channel_files_become_one_case(project: Path) -> None:
    src = project / "Dataset002_Heart"
    for i in range(3):
        for k in range(2):
            write_nifti(
                planted(100 * i + 10 * k, seed=i),
                AFFINE,
                src / "imagesTr" / f"la_{i:03d}_{k:04d}.nii.gz",
            )
        write_nifti(box_mask(seed=i), AFFINE, src / "labelsTr" / f"la_{i:03d}.nii.gz")
    meta = {"channel_names": {"0": "MRI (T2)", "1": "ADC"}, "labels": {"background": 0, "la": 1}}
    (src / "dataset.json").write_text(json.dumps(meta))
    assert detect_layout(src)[0] == "nnunet"
    manifest, found = build_manifest(src, project / "data" / "heart")
    assert found.layout == "nnunet"
    table = rows(manifest)
    assert list(table[0])[2:5] == ["image_MRI_T2", "image_ADC", "label"]
    assert table[2]["image_ADC"].endswith("imagesTr/la_002_0001.nii.gz")
    case = read_manifest(manifest.parent, "segmentation")[2]
    assert abs(np.median(read_image(case.channels["ADC"]).array) - 210) < 10
    # split hashes every channel: a changed second channel makes splits.json stale
    make_splits(manifest.parent, task="segmentation", folds=2, test_fraction=0.0, seed=0)
    load_splits(manifest.parent, "segmentation")
    write_nifti(planted(999, seed=2), AFFINE, case.channels["ADC"])
    with pytest.raises(DataError, match=r"is stale: .*la_002_0001.nii.gz"):
        load_splits(manifest.parent, "segmentation")


def test_nnunet_single_channel_with_patient_regex_trains(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = project / "Dataset003_Liver"
    for i in range(6):  # two scans per patient: liver_<patient><a|b>
        name = f"liver_{i // 2}{'ab'[i % 2]}"
        write_nifti(planted(100 * i, SHAPE, i), AFFINE, src / "imagesTr" / f"{name}_0000.nii.gz")
        write_nifti(box_mask(SHAPE, i), AFFINE, src / "labelsTr" / f"{name}.nii.gz")
    (src / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}}))
    assert (
        main(["manifest", str(src), "--out", "data/liver", "--patient-regex", r"(liver_\d)"]) == 0
    )
    printed = capsys.readouterr().out
    assert "3 patients for 6 cases" in printed and "WARNING" not in printed
    table = rows(project / "data" / "liver" / "manifest.csv")
    assert list(table[0]) == ["case_id", "patient_id", "image", "label"]
    assert [r["patient_id"] for r in table] == ["liver_0"] * 2 + ["liver_1"] * 2 + ["liver_2"] * 2
    pipeline(project / "data" / "liver", "segmentation", project)


def test_patient_regex_that_does_not_match_is_named(project: Path) -> None:
    src = project / "Dataset004"
    write_nifti(planted(0), AFFINE, src / "imagesTr" / "case_1_0000.nii.gz")
    write_nifti(box_mask(), AFFINE, src / "labelsTr" / "case_1.nii.gz")
    with pytest.raises(DataError, match=r"'pat\(\\d\+\)' does not match 'imagesTr/case_1_0000"):
        build_manifest(src, src, patient_regex=r"pat(\d+)")


# --- DICOM -------------------------------------------------------------------------------------


def dicom_studies(src: Path) -> dict[str, str]:
    """Two patients: A has one study with a CT series and a 3-plane localizer sharing a folder,
    and a second study with a series whose slices have irregular gaps; B has one series in its
    own folder. Masks for the usable series in ``src/labels``. Returns name -> SeriesInstanceUID.
    """
    uids = {"ct_a": "1.2.826.0.1.1", "loc_a": "1.2.826.0.1.2", "gap_a": "1.2.826.0.1.3"}
    uids["ct_b"] = "1.2.826.0.1.4"
    study_a1, study_a2, study_b = "1.2.826.0.2.1", "1.2.826.0.2.2", "1.2.826.0.2.3"
    folder = src / "A" / "study1"
    write_dicom(
        planted(100, SHAPE3, 1),
        AFFINE,
        folder,
        patient_id="A",
        study_uid=study_a1,
        series_uid=uids["ct_a"],
        extra={"SeriesDescription": "abdomen", "SeriesNumber": 2},
    )
    for k, (plane, name) in enumerate(
        [
            (np.eye(4), "ax"),
            (np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1.0]]), "cor"),
            (np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1.0]]), "sag"),
        ]
    ):
        write_dicom(
            planted(0, SHAPE3[:2]),
            plane,
            folder / f"loc_{name}.dcm",
            patient_id="A",
            study_uid=study_a1,
            series_uid=uids["loc_a"],
            extra={"SeriesDescription": "localizer", "SeriesNumber": 1, "InstanceNumber": k + 1},
        )
    gap = src / "A" / "study2" / "gapped"
    write_dicom(
        planted(200, SHAPE3, 2),
        AFFINE,
        gap,
        patient_id="A",
        study_uid=study_a2,
        series_uid=uids["gap_a"],
    )
    for k in (3, 4, 5):  # slices at 0, 2, 4, 12, 14 mm: an 8 mm gap among 2 mm ones
        (gap / f"slice_{k:04d}.dcm").unlink()
    write_dicom(
        planted(300, SHAPE3, 3),
        AFFINE,
        src / "B" / "s1" / "series1",
        patient_id="B",
        study_uid=study_b,
        series_uid=uids["ct_b"],
    )
    write_dicom(
        planted(400, SHAPE3, 4),
        AFFINE,
        src / "B" / "s2" / "x",
        patient_id="B",
        study_uid="1.2.826.0.2.4",
        series_uid="1.2.826.0.1.5",
    )
    for name, seed in (("ct_a", 1), ("ct_b", 3)):
        write_nifti(box_mask(seed=seed), AFFINE, src / "labels" / f"{uids[name]}.nii.gz")
    write_nifti(box_mask(seed=4), AFFINE, src / "labels" / "B_st2_se1.nii.gz")
    return uids


def test_dicom_studies_one_row_per_series_patient_from_header(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = project / "dicom_export"
    uids = dicom_studies(src)
    assert main(["manifest", str(src), "--out", "data/ct"]) == 0
    printed = capsys.readouterr().out
    assert "layout: dicom (guessed" in printed
    assert "2 patients (PatientID), 4 studies, 5 series; 3 cases, 2 series skipped" in printed
    assert f"series {uids['loc_a']} (3 files):" in printed and "mixed orientation" in printed
    assert f"series {uids['gap_a']} (5 files):" in printed and "irregular slice gaps" in printed
    assert "8 mm between 4 and 12" in printed
    assert "kept CT 'abdomen'" in printed  # the study's two series and the choice are printed
    out = project / "data" / "ct"
    table = {r["case_id"]: r for r in rows(out / "manifest.csv")}
    assert sorted(table) == ["A_st1_se2", "B_st1_se1", "B_st2_se1"]
    assert table["A_st1_se2"]["image"].endswith(f"A/study1::{uids['ct_a']}")  # shares a folder
    assert table["B_st1_se1"]["image"].endswith("B/s1/series1")  # alone in its folder
    assert [table[c]["patient_id"] for c in sorted(table)] == ["A", "B", "B"]
    assert table["B_st2_se1"]["label"].endswith("labels/B_st2_se1.nii.gz")
    cases = {c.case_id: c for c in read_manifest(out, "segmentation")}
    assert abs(np.median(read_image(cases["A_st1_se2"].image).array) - 100) < 10
    assert read_image(cases["A_st1_se2"].image).meta["series_uid"] == uids["ct_a"]
    splits = make_splits(out, task="segmentation", folds=2, test_fraction=0.0, seed=0)
    fold_of = {c: k for k, fold in enumerate(splits["folds"]) for c in fold["val"]}
    assert fold_of["B_st1_se1"] == fold_of["B_st2_se1"]  # one patient, one fold
    if TASK == "segmentation":
        assert main(["inspect", "--data", "data/ct"]) == 0


def test_dicom_series_rule_picks_and_says_so(project: Path) -> None:
    src = project / "dicom_export"
    uids = dicom_studies(src)
    _, found = build_manifest(src, project / "out", series_rule="most-slices")
    assert [c.case_id for c in found.cases] == ["A_st1_se2", "B_st1_se1", "B_st2_se1"]
    _, found = build_manifest(src, project / "out2", series_rule="localizer")
    assert any(uids["loc_a"] in s for s in found.skipped)
    assert not any(c.case_id == "A_st1_se2" for c in found.cases)
    with pytest.raises(DataError, match="--series-rule"):
        build_manifest(src, project / "out3", series_rule="(")


@pytest.mark.applies(task="segmentation", dims=3)  # trains a 3D segmentation
def test_dicom_manifest_trains(project: Path) -> None:
    src = project / "dicom_export"
    dicom_studies(src)
    build_manifest(src, project / "data" / "ct")
    pipeline(project / "data" / "ct", "segmentation", project)


# --- BIDS --------------------------------------------------------------------------------------


def test_bids_subjects_are_patients(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = project / "bids"
    entities = ["sub-01_ses-1", "sub-01_ses-2", "sub-02", "sub-03", "sub-04"]
    for i, key in enumerate(entities):
        subject, *session = key.split("_")
        anat = src / subject / (session[0] if session else "") / "anat"
        write_nifti(planted(100 * i, SHAPE, i), AFFINE, anat / f"{key}_T1w.nii.gz")
        write_nifti(planted(0, SHAPE, i), AFFINE, anat / f"{key}_T2w.nii.gz")
        if key != "sub-04":
            deriv = src / "derivatives" / "manual" / subject / (session[0] if session else "")
            write_nifti(
                box_mask(SHAPE, i), AFFINE, deriv / "anat" / f"{key}_desc-lesion_mask.nii.gz"
            )
    # a mask of session 10 must not be taken for session 1
    write_nifti(
        box_mask(SHAPE),
        AFFINE,
        src / "derivatives" / "x" / "sub-01" / "ses-10" / "anat" / "sub-01_ses-10_mask.nii.gz",
    )
    assert main(["manifest", str(src), "--out", "data/bids"]) == 0
    printed = capsys.readouterr().out
    assert "layout: bids" in printed and "also found T2w (5), not used" in printed
    assert "sub-04/anat/sub-04_T1w.nii.gz: no *_mask/*_dseg" in printed
    table = rows(project / "data" / "bids" / "manifest.csv")
    assert [(r["case_id"], r["patient_id"]) for r in table] == [
        ("sub-01_ses-1", "sub-01"),
        ("sub-01_ses-2", "sub-01"),
        ("sub-02", "sub-02"),
        ("sub-03", "sub-03"),
    ]
    assert table[0]["label"].endswith(
        "manual/sub-01/ses-1/anat/sub-01_ses-1_desc-lesion_mask.nii.gz"
    )
    pipeline(project / "data" / "bids", "segmentation", project)


# --- CSV table and class folders ---------------------------------------------------------------


def write_class_image(path_stem: Path, value: int, seed: int) -> Path:
    if DIMS == 2:
        image = np.clip(planted(value, SHAPE, seed), 0, 255).astype(np.uint8)
        return write_png(image, path_stem.with_suffix(".png"))
    return write_nifti(planted(value, SHAPE, seed), AFFINE, Path(f"{path_stem}.nii.gz"))


def test_csv_table_with_guessed_columns(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = project / "xrays"
    lines = ["Patient,File,Diagnosis"]
    for i in range(8):
        path = write_class_image(src / "img" / f"x{i}", 40 if i % 2 else 120, i)
        lines.append(
            f"P{i // 2},{path.relative_to(src).as_posix()},{'finding' if i % 2 == 0 else 'normal'}"
        )
    (src / "labels.csv").write_text("\n".join(lines) + "\n")
    assert main(["manifest", str(src / "labels.csv"), "--out", "data/xr"]) == 0
    printed = capsys.readouterr().out
    assert "image <- 'File'" in printed and "label <- 'Diagnosis'" in printed
    assert "patient_id <- 'Patient'" in printed and "no case_id column" in printed
    table = rows(project / "data" / "xr" / "manifest.csv")
    assert [r["patient_id"] for r in table] == [f"P{i // 2}" for i in range(8)]
    assert table[0]["label"] == "finding" and table[1]["label"] == "normal"
    pipeline(project / "data" / "xr", "classification", project)


def test_class_folders(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = project / "classes"
    for i in range(8):
        cls = "nodule" if i % 2 == 0 else "normal"
        write_class_image(src / cls / f"scan{i}", 120 if cls == "nodule" else 40, i)
    (src / "normal" / "README.txt").write_text("notes")
    assert main(["manifest", str(src), "--out", "data/cls", "--layout", "folders"]) == 0
    printed = capsys.readouterr().out
    assert "classes (one per folder): nodule (4), normal (4)" in printed
    assert "normal/README.txt: not an image" in printed
    assert "WARNING: no patient id found for 8 of 8 cases" in printed
    table = rows(project / "data" / "cls" / "manifest.csv")
    assert {r["case_id"]: r["label"] for r in table}["scan3"] == "normal"
    pipeline(project / "data" / "cls", "classification", project, "data.positive_class=nodule")


def test_unknown_layout_is_one_line(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "empty").mkdir()
    (project / "empty" / "notes.txt").write_text("nothing here")
    assert main(["manifest", "empty"]) == 2
    err = capsys.readouterr().err
    assert "cannot tell its layout" in err and "--layout" in err and err.count("\n") == 1


@pytest.mark.applies(dims=3)  # a DICOM series is a 3D image
def test_predict_reads_a_series_named_in_a_manifest_row(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "dicom_export"
    uids = dicom_studies(src)
    manifest, _ = build_manifest(src, tmp_path / "ct")
    (case,) = [r for r in rows(manifest) if r["case_id"] == "A_st1_se2"]
    assert main(["predict", str(trained), case["image"], "--out", str(tmp_path / "pred")]) == 0
    (row,) = list(csv.DictReader((tmp_path / "pred" / "predictions.csv").open()))
    assert row["input"] == case["image"]
    if TASK == "segmentation":
        assert row["output"] == f"study1_{uids['ct_a']}.nii.gz"
        pred = read_image(tmp_path / "pred" / row["output"])
        source = read_image(case["image"])
        assert pred.shape == source.shape and np.allclose(pred.affine, source.affine, atol=1e-4)


def test_dicom_series_of_one_number_get_distinct_case_ids(project: Path) -> None:
    src = project / "export"
    for k, uid in enumerate(("1.2.826.0.9.1", "1.2.826.0.9.2")):
        write_dicom(
            planted(100 * k, SHAPE3, k),
            AFFINE,
            src / f"s{k}",
            patient_id="X",
            study_uid="1.2.826.0.8.1",
            series_uid=uid,
            extra={"SeriesNumber": 3},
        )
    _, found = build_manifest(src, project / "out")
    assert [c.case_id for c in found.cases] == ["X_st1_se3", "X_st1_se3-2"]
