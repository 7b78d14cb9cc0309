"""The dataset report: values measured on tiny constructed datasets, files written, errors."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage

from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.config import load_config
from {{ cookiecutter.package_name }}.data.inspect import inspect_dataset, view_case
from {{ cookiecutter.package_name }}.data.inspect import inspection as inspect_module
from {{ cookiecutter.package_name }}.data.inspect.statistics import (
    intensity_stats,
    mask_sizes,
    mean_label_dice,
)
from {{ cookiecutter.package_name }}.data.io import ImageError, write_dicom, write_nifti, write_png
from {{ cookiecutter.package_name }}.data.manifest import Case, DataError, write_manifest
from {{ cookiecutter.package_name }}.viz.data_plots import LABEL_COLORS, RATER_COLOR, montage_slices

DAY = dt.date(2024, 5, 1)
SHAPE = (12, 10, 6)
SPACING = (0.8, 0.8, 2.5)
AFFINE = np.array(
    [[0.8, 0, 0, -4.0], [0, 0.8, 0, -3.0], [0, 0, 2.5, 10.0], [0, 0, 0, 1]], dtype=float
)
IDENTITY = ("Doe^Jane", "Doe", "Jane", "19800101")


def block(*slices: slice, value: int = 1) -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[slices] = value
    return mask


def make_segmentation(root: Path) -> dict[str, Any]:
    """Six 3D cases: c1 known values, c4 an exact copy of c1 (another patient), c5 a noisy copy
    of c2, c3 an empty mask, c2 a second annotator who marks half the lesion, c6 a DICOM series
    whose headers name the patient."""
    rng = np.random.default_rng(0)
    x, y, z = np.indices(SHAPE)
    c1 = (np.arange(np.prod(SHAPE)).reshape(SHAPE) - 300).astype(np.int16)
    blob = 400 * np.exp(-((x - 4) ** 2 + (y - 6) ** 2 + (z - 3) ** 2) / 8.0)
    c2 = (blob + rng.normal(0, 5, SHAPE)).astype(np.int16)
    c5 = (c2 + rng.normal(0, 3, SHAPE)).astype(np.int16)
    c3 = rng.normal(0, 100, SHAPE).astype(np.int16)
    c6 = rng.integers(-1000, 1000, SHAPE).astype(np.int16)
    m1 = block(slice(2, 6), slice(2, 5), slice(1, 3))  # 24 voxels of class 1
    m1[8:10, 6:8, 3] = 2  # 4 voxels of class 2
    m2 = block(slice(3, 7), slice(3, 7), slice(2, 4))  # 32 voxels
    m2_rater = block(slice(3, 7), slice(3, 7), slice(2, 3))  # 16 of them: Dice 2*16/48
    empty = np.zeros(SHAPE, dtype=np.uint8)
    m6 = block(slice(5, 8), slice(5, 8), slice(0, 6))
    cases = []
    for case_id, patient, image, mask, rater in [
        ("c1", "p1", c1, m1, m1),
        ("c2", "p1", c2, m2, m2_rater),
        ("c3", "p2", c3, empty, None),
        ("c4", "p3", c1, m1, None),
        ("c5", "p4", c5, m2, None),
    ]:
        image_path = write_nifti(image, AFFINE, root / "images" / f"{case_id}.nii.gz")
        mask_path = write_nifti(mask, AFFINE, root / "labels" / f"{case_id}.nii.gz")
        raters = {}
        if rater is not None:
            raters["rater2"] = write_nifti(rater, AFFINE, root / "rater2" / f"{case_id}.nii.gz")
        cases.append(Case(case_id, patient, image_path, mask_path, raters))
    write_dicom(
        c6,
        AFFINE,
        root / "images" / "c6",
        patient_id="p5",
        extra={"PatientName": IDENTITY[0], "PatientBirthDate": IDENTITY[3]},
    )
    m6_path = write_nifti(m6, AFFINE, root / "labels" / "c6.nii.gz")
    cases.append(Case("c6", "p5", root / "images" / "c6", m6_path))
    write_manifest(root, cases)
    splits = {
        "seed": 0,
        "dataset_hash": "x",
        "removed_duplicates": ["c4"],
        "test": ["c3"],
        "folds": [{"train": ["c1", "c2", "c6"], "val": ["c5"]}],
    }
    (root / "splits.json").write_text(json.dumps(splits), encoding="utf-8")
    return {"c1": c1, "c6": c6}


@pytest.fixture(scope="module")
def segmentation(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The segmentation dataset inspected once; its report, folder and arrays."""
    base = tmp_path_factory.mktemp("seg")
    arrays = make_segmentation(base / "data")
    path = inspect_dataset(base / "data", task="segmentation", out_dir=base / "out", day=DAY)
    return {
        "base": base,
        "path": path,
        "report": json.loads(path.read_text(encoding="utf-8")),
        "arrays": arrays,
    }


def by_id(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["case_id"]: c for c in report["cases"]}


def pixels(path: Path) -> np.ndarray:
    with PILImage.open(path) as png:
        return np.asarray(png.convert("RGB"))


def has_color(picture: np.ndarray, color: str) -> bool:
    rgb = [int(color[i : i + 2], 16) for i in (1, 3, 5)]
    return bool(np.all(picture == rgb, axis=-1).any())


def test_report_is_written_in_a_dated_folder(segmentation: dict[str, Any]) -> None:
    path = segmentation["path"]
    assert path == segmentation["base"] / "out" / "2024-05-01_data" / "report.json"
    report = segmentation["report"]
    assert report["task"] == "segmentation"
    assert report["counts"] == {
        "cases": 6,
        "patients": 5,
        "studies_per_patient": {"1": 4, "2": 1},
        "patients_with_several_studies": 1,
        "max_studies_per_patient": 2,
    }


def test_case_geometry_and_intensities_are_measured(segmentation: dict[str, Any]) -> None:
    cases = by_id(segmentation["report"])
    c1 = segmentation["arrays"]["c1"]
    assert cases["c1"]["shape"] == list(SHAPE)
    assert cases["c1"]["spacing"] == pytest.approx(SPACING)
    assert cases["c1"]["intensity"] == pytest.approx(
        {"min": -300.0, "max": 419.0, "mean": float(c1.mean()), "std": float(c1.std())}
    )
    # The DICOM case: values as stored after RescaleIntercept, i.e. HU, not the raw uint16.
    c6 = segmentation["arrays"]["c6"]
    assert cases["c6"]["intensity"]["min"] == float(c6.min()) < -900
    assert cases["c6"]["intensity"]["mean"] == pytest.approx(float(c6.mean()))
    assert cases["c6"]["spacing"] == pytest.approx(SPACING, abs=1e-4)
    pooled = segmentation["report"]["intensity"]
    assert pooled["min"] == float(c6.min())
    assert pooled["voxels"] == 6 * int(np.prod(SHAPE))


def test_mask_sizes_per_class_in_voxels_and_ml(segmentation: dict[str, Any]) -> None:
    report = segmentation["report"]
    voxel_ml = float(np.prod(SPACING)) / 1000
    assert by_id(report)["c1"]["mask"] == {
        "1": {"voxels": 24, "ml": pytest.approx(24 * voxel_ml)},
        "2": {"voxels": 4, "ml": pytest.approx(4 * voxel_ml)},
    }
    masks = report["masks"]
    assert masks["empty_cases"] == 1
    assert masks["empty_case_ids"] == ["c3"]
    assert masks["classes"]["1"]["cases"] == 5  # c1, c2, c4, c5, c6
    assert masks["classes"]["2"]["cases"] == 2
    assert masks["classes"]["1"]["voxels"]["min"] == 24
    assert masks["classes"]["1"]["voxels"]["max"] == 54  # c6: 3 x 3 x 6


def test_exact_and_near_duplicates_are_found(segmentation: dict[str, Any]) -> None:
    dup = segmentation["report"]["duplicates"]
    assert dup["exact"] == [["c1", "c4"]]
    assert dup["near"] == [["c2", "c5"]]
    assert dup["groups_across_patients"] == [["c1", "c4"], ["c2", "c5"]]
    assert dup["cases_to_remove"] == 2
    markdown = (segmentation["path"].parent / "report.md").read_text(encoding="utf-8")
    assert "c1, c4: patients p1, p3 (different patients!)" in markdown
    assert "c2, c5" in markdown


def test_annotator_disagreement_is_measured_with_dice(segmentation: dict[str, Any]) -> None:
    annotators = segmentation["report"]["annotators"]
    assert annotators["metric"] == "dice"
    assert annotators["raters"] == ["label", "rater2"]
    assert annotators["per_case"] == {"c1": 1.0, "c2": pytest.approx(2 / 3)}
    assert annotators["cases_disagreeing"] == 1
    worst = annotators["largest_disagreements"]
    assert [d["case_id"] for d in worst] == ["c2"]
    assert worst[0]["pairs"] == {"label vs rater2": pytest.approx(2 / 3)}
    assert annotators["pairs"][0]["mean"] == pytest.approx((1 + 2 / 3) / 2)


def test_patients_per_split(segmentation: dict[str, Any]) -> None:
    splits = segmentation["report"]["splits"]
    assert splits["test"] == {"cases": 1, "patients": 1}
    fold = splits["folds"][0]
    assert fold["train"] == {"cases": 3, "patients": 2}  # c1 and c2 are both p1's
    assert fold["val"] == {"cases": 1, "patients": 1}
    assert fold["shared_patients"] == 0
    assert splits["patients_in_test_and_development"] == 0
    assert splits["cases_in_no_part"] == 1  # c4, the removed duplicate
    assert splits["removed_duplicates"] == 1
    assert splits["unknown_case_ids"] == []


def test_identity_is_counted_but_never_written(segmentation: dict[str, Any]) -> None:
    report = segmentation["report"]
    assert report["identity"] == {
        "dicom_cases": 1,
        "cases_with_identity": 1,
        "tags": {"PatientName": 1, "PatientBirthDate": 1},
        "case_ids": ["c6"],
    }
    assert any("patient identity" in w for w in report["warnings"])
    for file in segmentation["path"].parent.rglob("*"):
        if file.is_file():
            data = file.read_bytes()
            for value in IDENTITY:
                assert value.encode() not in data, f"{value} leaked into {file}"


def test_plots_and_montages_are_written(segmentation: dict[str, Any]) -> None:
    folder = segmentation["path"].parent
    report = segmentation["report"]
    assert set(report["plots"]) == {"mask_sizes", "geometry", "intensities", "agreement"}
    for name in report["plots"].values():
        picture = pixels(folder / name)
        assert picture.shape[0] > 100 and picture.std() > 0, name
    for case in report["cases"]:
        assert (folder / case["montage"]).is_file()
    red, cyan = LABEL_COLORS[0][1], RATER_COLOR
    c1 = pixels(folder / "montages" / "c1.png")
    assert has_color(c1, red)  # the label is outlined
    assert has_color(pixels(folder / "montages" / "c2.png"), cyan)  # the second annotator too
    assert not has_color(pixels(folder / "montages" / "c3.png"), red)  # an empty mask
    markdown = (folder / "report.md").read_text(encoding="utf-8")
    assert "![mask sizes](mask_sizes.png)" in markdown
    assert "[montage](montages/c1.png)" in markdown


def test_rerun_replaces_that_day_only(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_segmentation(root)
    out = tmp_path / "out"
    other_day = out / "2024-04-30_data" / "keep.txt"
    other_day.parent.mkdir(parents=True)
    other_day.write_text("earlier report", encoding="utf-8")
    first = inspect_dataset(root, task="segmentation", out_dir=out, day=DAY, figures=False)
    stale = first.parent / "gone.png"
    stale.write_bytes(b"old")
    second = inspect_dataset(root, task="segmentation", out_dir=out, day=DAY, figures=False)
    assert second == first and second.is_file()
    assert not stale.exists()
    assert other_day.read_text(encoding="utf-8") == "earlier report"
    assert sorted(p.name for p in out.iterdir()) == ["2024-04-30_data", "2024-05-01_data"]


def test_two_datasets_on_one_day_keep_their_reports(tmp_path: Path) -> None:
    out = tmp_path / "out"
    make_segmentation(tmp_path / "lungs")
    make_segmentation(tmp_path / "other" / "lungs")  # same folder name, another dataset
    make_segmentation(tmp_path / "livers")
    first = inspect_dataset(
        tmp_path / "lungs", task="segmentation", out_dir=out, day=DAY, figures=False
    )
    second = inspect_dataset(
        tmp_path / "livers", task="segmentation", out_dir=out, day=DAY, figures=False
    )
    third = inspect_dataset(
        tmp_path / "other" / "lungs", task="segmentation", out_dir=out, day=DAY, figures=False
    )
    assert [p.parent.name for p in (first, second, third)] == [
        "2024-05-01_lungs",
        "2024-05-01_livers",
        "2024-05-01_lungs-2",
    ]
    assert all(p.is_file() for p in (first, second, third))
    recorded = json.loads(third.read_text(encoding="utf-8"))["root"]
    assert recorded == str((tmp_path / "other" / "lungs").resolve())
    again = inspect_dataset(
        tmp_path / "lungs", task="segmentation", out_dir=out, day=DAY, figures=False
    )
    assert again == first  # the same dataset the same day: its own report, replaced


def make_classification(root: Path) -> None:
    """Four 2D PNG cases, one "finding" among three "normal"; a second annotator flips b."""
    rng = np.random.default_rng(1)
    labels = [("a", "finding", "finding"), ("b", "normal", "finding"), ("c", "normal", "normal")]
    labels.append(("d", "normal", "normal"))
    cases = []
    for i, (case_id, label, rater) in enumerate(labels):
        image = rng.integers(0, 255, (20, 16)).astype(np.uint8)
        path = write_png(image, root / "images" / f"{case_id}.png")
        cases.append(Case(case_id, f"p{i}", path, label, {"rater2": rater}))
    write_manifest(root, cases)


def test_classification_report_on_png(tmp_path: Path) -> None:
    make_classification(tmp_path / "xray")
    path = inspect_dataset(tmp_path / "xray", task="classification", out_dir=tmp_path, day=DAY)
    report = json.loads(path.read_text(encoding="utf-8"))
    assert report["task"] == "classification"
    assert report["classes"]["counts"] == {"finding": 1, "normal": 3}
    assert report["classes"]["imbalance"] == 3
    assert by_id(report)["a"]["shape"] == [20, 16]
    assert by_id(report)["a"]["spacing"] == [1.0, 1.0]
    annotators = report["annotators"]
    assert annotators["metric"] == "agreement"
    assert annotators["pairs"][0]["mean"] == 0.75
    disagreement = annotators["largest_disagreements"]
    assert disagreement[0]["labels"] == {"label": "normal", "rater2": "finding"}
    assert report["splits"] is None and report["identity"]["dicom_cases"] == 0
    assert set(report["plots"]) == {"class_distribution", "geometry", "intensities", "agreement"}
    assert pixels(path.parent / "class_distribution.png").std() > 0
    assert pixels(path.parent / "montages" / "b.png").std() > 0


def test_cli_inspect_writes_the_report(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = load_config().task
    if task == "classification":
        make_classification(project / "mydata")
    else:
        make_segmentation(project / "mydata")
    assert main(["inspect", "--data", "mydata"]) == 0
    today = dt.date.today().isoformat()
    path = project / "reports" / "inspect" / f"{today}_mydata" / "report.json"
    assert f"wrote {path}" in capsys.readouterr().out
    report = json.loads(path.read_text(encoding="utf-8"))
    assert report["task"] == task
    assert len(report["cases"]) == (4 if task == "classification" else 6)


def test_cli_inspect_checks_the_configured_normalization(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``inspect`` checks the settings training would use (``data.*`` overrides), not ``auto``."""
    task = load_config().task
    if task == "classification":
        make_classification(project / "mydata")
    else:
        make_segmentation(project / "mydata")
    overrides = ["data.normalization=ct", "data.window=[-50,50]", "data.orientation=none"]
    assert main(["inspect", "--data", "mydata", *overrides]) == 0
    today = dt.date.today().isoformat()
    path = project / "reports" / "inspect" / f"{today}_mydata" / "report.json"
    fingerprint = json.loads(path.read_text(encoding="utf-8"))["fingerprint"]
    assert fingerprint["normalization"]["requested"] == "ct"
    assert fingerprint["normalization"]["resolved"] == "ct"
    assert fingerprint["normalization"]["window"] == [-50.0, 50.0]
    assert fingerprint["orientation"] == "as stored"


def test_unreadable_image_names_the_file_and_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_segmentation(root)
    (root / "images" / "c3.nii.gz").write_bytes(b"not an image")
    out = tmp_path / "out"
    with pytest.raises(ImageError, match="c3.nii.gz"):
        inspect_dataset(root, task="segmentation", out_dir=out, day=DAY)
    assert list(out.iterdir()) == []


def test_malformed_splits_file_is_named(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_segmentation(root)
    (root / "splits.json").write_text('{"test": "c3", "folds": []}', encoding="utf-8")
    with pytest.raises(DataError, match="splits.json' must hold 'test'"):
        inspect_dataset(root, task="segmentation", out_dir=tmp_path / "out", figures=False)
    (root / "splits.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="splits.json' is not a readable JSON file"):
        inspect_dataset(root, task="segmentation", out_dir=tmp_path / "out", figures=False)


def test_intensity_stats_leave_out_nan() -> None:
    values = np.array([[1.0, np.nan], [3.0, np.inf]], dtype=np.float32)
    assert intensity_stats(values) == {
        "min": 1.0,
        "max": 3.0,
        "mean": 2.0,
        "std": 1.0,
        "non_finite": 2,
    }
    assert intensity_stats(np.array([2, 4], dtype=np.int16)) == {
        "min": 2.0,
        "max": 4.0,
        "mean": 3.0,
        "std": 1.0,
    }
    with pytest.raises(ValueError, match="empty"):
        intensity_stats(np.array([]))


def test_view_case_shows_the_montage_without_itksnap(
    segmentation: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(inspect_module.shutil, "which", lambda name: None)
    root, out = segmentation["base"] / "data", segmentation["base"] / "out"
    assert view_case(root, "c2", task="segmentation", out_dir=out) == 0
    assert str(out / "2024-05-01_data" / "montages" / "c2.png") in capsys.readouterr().out
    fresh = segmentation["base"] / "elsewhere"
    assert view_case(root, "c2", task="segmentation", out_dir=fresh) == 0
    made = fresh / f"{dt.date.today().isoformat()}_data" / "montages" / "c2.png"
    assert made.is_file() and str(made) in capsys.readouterr().out


def test_view_case_opens_itksnap_when_installed(
    segmentation: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[list[str]] = []
    monkeypatch.setattr(inspect_module.shutil, "which", lambda name: "/opt/itksnap")
    monkeypatch.setattr(inspect_module.subprocess, "Popen", lambda cmd, **kw: started.append(cmd))
    root = segmentation["base"] / "data"
    assert view_case(root, "c1", task="segmentation") == 0
    assert started == [
        [
            "/opt/itksnap",
            "-g",
            str(root / "images" / "c1.nii.gz"),
            "-s",
            str(root / "labels" / "c1.nii.gz"),
        ]
    ]


def test_view_case_unknown_id_is_an_error(segmentation: dict[str, Any]) -> None:
    with pytest.raises(DataError, match="'nope'"):
        view_case(segmentation["base"] / "data", "nope", task="segmentation")


def test_dice_and_mask_sizes() -> None:
    a = block(slice(0, 2), slice(0, 2), slice(0, 1))  # 4 voxels
    b = block(slice(0, 2), slice(0, 1), slice(0, 1))  # 2 of them
    assert mean_label_dice(a, b) == pytest.approx(2 * 2 / 6)
    assert mean_label_dice(np.zeros(SHAPE), np.zeros(SHAPE)) == 1.0
    assert mean_label_dice(a, np.zeros(SHAPE)) == 0.0
    assert mask_sizes(a[:, :, 0], (0.5, 2.0)) == {"1": {"voxels": 4, "mm2": 4.0}}
    with pytest.raises(ValueError, match="spacing"):
        mask_sizes(a, (1.0, 1.0))


def test_montage_slices_spread_over_the_label_and_keep_the_largest() -> None:
    mask = np.zeros((5, 5, 20), dtype=np.uint8)
    mask[:2, :2, [3, 4]] = 1  # area 4
    mask[:, :, 10] = 1  # area 25, the largest
    mask[0, 0, [15, 16, 17]] = 1  # area 1
    assert montage_slices(mask.shape, mask, 4) == [3, 10, 15, 17]
    assert montage_slices(mask.shape, mask, 2) == [10, 17]
    assert montage_slices(mask.shape, mask, 1) == [10]
    assert montage_slices(mask.shape, np.zeros_like(mask), 3) == [2, 10, 17]
    assert montage_slices((4, 4, 3), None, 4) == [0, 1, 2]


def test_cli_missing_manifest_is_one_line(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "nodata").mkdir()
    assert main(["inspect", "--data", "nodata"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no manifest") and "nodata" in err[0]


def mr_dataset(root: Path, affines: list[np.ndarray]) -> list[Case]:
    """MR-like cases (background 0, tissue about 900, lesion about 1400), one per affine; an
    affine with negative diagonal entries stores the same voxels with those axes reversed."""
    rng = np.random.default_rng(3)
    cases = []
    for i, affine in enumerate(affines):
        image = np.zeros(SHAPE, np.float32)
        image[2:10, 2:8, 1:5] = rng.normal(900, 100, (8, 6, 4))
        mask = block(slice(4, 8), slice(3, 7), slice(2, 4))
        image[mask == 1] = rng.normal(1400, 80, int(mask.sum()))
        flips = [a for a in range(3) if affine[a, a] < 0]
        image, mask = np.flip(image, flips).copy(), np.flip(mask, flips).copy()
        cases.append(
            Case(
                f"m{i}",
                f"p{i}",
                write_nifti(image, affine, root / "images" / f"m{i}.nii.gz"),
                write_nifti(mask, affine, root / "labels" / f"m{i}.nii.gz"),
            )
        )
    write_manifest(root, cases)
    return cases


def inspect_quietly(root: Path, out: Path, **options: Any) -> dict[str, Any]:
    path = inspect_dataset(
        root, task="segmentation", out_dir=out, day=DAY, figures=False, **options
    )
    return json.loads(path.read_text(encoding="utf-8"))


def test_mixed_spacings_warn_and_a_spacing_is_proposed(tmp_path: Path) -> None:
    coarse = np.diag([0.7, 0.7, 3.0, 1.0])
    mr_dataset(tmp_path / "data", [AFFINE, AFFINE, coarse, coarse])
    report = inspect_quietly(tmp_path / "data", tmp_path / "out")
    proposed = [0.75, 0.75, 2.75]  # the median: no axis is 3 x coarser than the others
    assert report["fingerprint"]["proposed_spacing"] == proposed
    assert report["fingerprint"]["distinct_spacings"] == 2
    assert (
        f"2 distinct voxel spacings over 4 cases: without data.target_spacing each case keeps "
        f"its own grid; proposed data.target_spacing={proposed} (median, nnU-Net's rule)"
    ) in report["warnings"]


def test_mixed_orientations_warn(tmp_path: Path) -> None:
    lps = AFFINE @ np.diag([-1.0, -1.0, 1.0, 1.0])  # same spacing, axes 0 and 1 reversed
    mr_dataset(tmp_path / "data", [AFFINE, AFFINE, lps])
    report = inspect_quietly(tmp_path / "data", tmp_path / "out")
    assert report["fingerprint"]["orientations"] == {"RAS": 2, "LPS": 1}
    assert by_id(report)["m2"]["orientation"] == "LPS"
    assert any(
        w.startswith("mixed orientations (LPS: 1, RAS: 2 cases)") for w in report["warnings"]
    )
    # Reoriented to RAS, the three cases share one spacing: no spacing warning.
    assert report["fingerprint"]["distinct_spacings"] == 1


def test_a_ct_window_on_mr_intensities_warns(tmp_path: Path) -> None:
    mr_dataset(tmp_path / "data", [AFFINE, AFFINE])
    auto = inspect_quietly(tmp_path / "data", tmp_path / "auto")
    norm = auto["fingerprint"]["normalization"]
    assert (norm["resolved"], norm["window"], norm["clipped"]) == ("mr", None, 0.0)
    assert not any("window" in w for w in auto["warnings"])
    ct = inspect_quietly(
        tmp_path / "data", tmp_path / "ct", normalization="ct", window=[-200.0, 300.0]
    )
    assert ct["fingerprint"]["normalization"]["clipped"] == 1.0  # every lesion voxel > 300
    warnings = [w for w in ct["warnings"] if "window" in w]
    assert len(warnings) == 2
    assert warnings[0].startswith("data.normalization is ct (window [-200, 300] HU)")
    assert warnings[1].startswith("100% of the sampled foreground intensities lie outside")


def test_the_report_says_which_normalization_auto_picks(segmentation: dict[str, Any]) -> None:
    report = segmentation["report"]
    fp = report["fingerprint"]
    assert fp["modality"] == "ct" and fp["normalization"]["resolved"] == "ct"
    low, high = fp["normalization"]["window"]
    assert (low, high) == (
        round(fp["intensity"]["p00_5"], 1),
        round(fp["intensity"]["p99_5"], 1),
    )
    text = (segmentation["path"].parent / "report.md").read_text(encoding="utf-8")
    assert f"Normalization auto -> ct, window [{low:g}, {high:g}]" in text
