"""The synthetic dataset: every task x dims x format reads back, and the pitfalls are really there."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.config import load_config
from {{ cookiecutter.package_name }}.data.inspect.duplicates import (
    exact_duplicates,
    fingerprints,
    near_duplicates,
)
from {{ cookiecutter.package_name }}.data.io import read_image, read_label, write_nifti, write_png
from {{ cookiecutter.package_name }}.data.manifest import (
    Case,
    DataError,
    read_manifest,
    write_manifest,
)
from {{ cookiecutter.package_name }}.data.synthetic.dummy import FORMATS, MARKER, TASKS, generate_dataset

COMBOS = [
    (task, dims, fmt)
    for task in TASKS
    for dims in (3, 2)
    for fmt in FORMATS
    if not (fmt == "png" and dims == 3)
]
SMALL = {3: (32, 32, 8), 2: (64, 64)}  # small arrays keep the tests fast
CASES = 8  # enough for one exact and one near duplicate, follow-ups and rater disagreement


def combo_id(combo: tuple[str, int, str]) -> str:
    task, dims, fmt = combo
    return f"{task}-{dims}d-{fmt}"


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, int, str], Path]:
    """One small dataset per combination, written once for the whole module."""
    made = {}
    for task, dims, fmt in COMBOS:
        out = tmp_path_factory.mktemp("dummy") / f"{task}{dims}{fmt}"
        generate_dataset(
            out,
            task=task,
            spatial_dims=dims,
            fmt=fmt,
            cases=CASES,
            seed=7,
            like=None,
            shape=SMALL[dims],
        )
        made[(task, dims, fmt)] = out
    return made


def answer_key(root: Path) -> dict:
    return json.loads((root / MARKER).read_text(encoding="utf-8"))


def is_ct(task: str, dims: int) -> bool:
    return not (task == "classification" and dims == 2)


@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
def test_every_combination_reads_back(
    datasets: dict[tuple[str, int, str], Path], combo: tuple[str, int, str]
) -> None:
    task, dims, fmt = combo
    root = datasets[combo]
    cases = read_manifest(root, task)
    assert len(cases) == CASES
    for case in cases:
        image = read_image(case.image)
        assert image.shape == SMALL[dims]
        values = image.array
        if fmt == "png":
            assert np.array_equal(image.affine, np.eye(4))  # PNG keeps no geometry
            assert values.dtype == (np.uint16 if not is_ct(task, dims) else np.uint8)
        else:
            spacing = image.spacing
            assert max(spacing) / min(spacing) > 1.2, spacing  # anisotropic voxels
            assert image.affine[0, 0] < 0  # x flipped, as in a DICOM (LPS) frame
            assert not np.allclose(image.affine[:3, 3], 0)  # origin moved
        if is_ct(task, dims) and fmt != "png":
            assert values.min() >= -1024 and values.max() <= 3071
            assert values.min() < -900  # air around the body
            body = values[values > -500]
            assert -60 < np.median(body) < 100  # soft tissue in HU
        if not is_ct(task, dims):
            assert values.min() >= 0 and values.max() <= 4095
            assert values.std() > 100

        if task == "segmentation":
            mask = read_label(case.label, image).array
            rater2 = read_label(case.raters["rater2"], image).array
            assert set(np.unique(mask).tolist()) == {0, 1}
            assert set(np.unique(rater2).tolist()) <= {0, 1}
        else:
            assert case.label in ("normal", "nodule")
            assert case.raters["rater2"] in ("normal", "nodule")


@pytest.mark.parametrize("combo", COMBOS, ids=combo_id)
def test_injected_pitfalls_are_there(
    datasets: dict[tuple[str, int, str], Path], combo: tuple[str, int, str]
) -> None:
    task, dims, fmt = combo
    root = datasets[combo]
    key = answer_key(root)["pitfalls"]
    cases = read_manifest(root, task)
    prints = fingerprints(cases)

    def groups(found: list[list[str]]) -> list[list[str]]:
        return sorted(sorted(g) for g in found)

    # The duplicate finders find exactly what was injected: nothing is missed, and follow-up
    # studies of one patient are not mistaken for near duplicates.
    assert len(key["exact_duplicates"]) == len(key["near_duplicates"]) == 1
    assert groups(exact_duplicates(prints)) == groups(key["exact_duplicates"])
    assert groups(near_duplicates(prints)) == groups(key["near_duplicates"])

    patients: dict[str, list[str]] = {}
    for case in cases:
        patients.setdefault(case.patient_id, []).append(case.case_id)
    several = {p: ids for p, ids in patients.items() if len(ids) > 1}
    assert several and several == key["patients_with_several_studies"]

    if task == "segmentation":
        differs = {
            c.case_id
            for c in cases
            if not np.array_equal(read_image(c.label).array, read_image(c.raters["rater2"]).array)
        }
    else:
        differs = {c.case_id for c in cases if c.label != c.raters["rater2"]}
    assert 0 < len(differs) < len(cases)
    assert differs == set(key["rater2_disagrees"])


@pytest.mark.parametrize("dims", [3, 2])
def test_dicom_series_have_consistent_uids_and_rescale(
    datasets: dict[tuple[str, int, str], Path], dims: int
) -> None:
    root = datasets[("segmentation", dims, "dicom")]
    key = answer_key(root)["pitfalls"]
    series_uids = set()
    for case in read_manifest(root, "segmentation"):
        files = sorted(case.image.glob("*.dcm")) if dims == 3 else [case.image]
        assert len(files) == (SMALL[3][2] if dims == 3 else 1)
        headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
        assert len({h.SeriesInstanceUID for h in headers}) == 1
        assert len({h.StudyInstanceUID for h in headers}) == 1
        assert all(h.PatientID == case.patient_id for h in headers)
        assert all(float(h.RescaleIntercept) == -1024 for h in headers)
        series_uids.add(headers[0].SeriesInstanceUID)
        if dims == 3:
            numbers = [int(h.InstanceNumber) for h in headers]  # files are in position order
            in_order = numbers == sorted(numbers)
            assert in_order == (case.case_id not in key["dicom_instance_numbers_out_of_order"])
    assert len(series_uids) == CASES  # re-exported duplicates got new UIDs too
    if dims == 3:
        assert key["dicom_instance_numbers_out_of_order"]


def test_default_volumes_have_a_learnable_target(tmp_path: Path) -> None:
    """Default shape and spacing; the lesion is 60-100 HU brighter than the tissue around it."""
    generate_dataset(
        tmp_path / "d", task="segmentation", spatial_dims=3, fmt="nifti", cases=4, seed=3, like=None
    )
    from scipy import ndimage

    for case in read_manifest(tmp_path / "d", "segmentation"):
        image = read_image(case.image)
        assert image.shape == (64, 64, 32)
        assert np.allclose(image.spacing, (0.8, 0.8, 2.5))
        mask = read_label(case.label, image).array.astype(bool)
        assert 0.001 < mask.mean() < 0.05
        core = ndimage.binary_erosion(mask, iterations=1)
        ring = ndimage.binary_dilation(mask, iterations=3) & ~ndimage.binary_dilation(mask)
        ring &= (image.array > -50) & (image.array < 200)  # soft tissue next to the lesion
        contrast = image.array[core].mean() - image.array[ring].mean()
        assert 40 < contrast < 120, (case.case_id, contrast)


def test_classification_is_imbalanced(tmp_path: Path) -> None:
    generate_dataset(
        tmp_path / "c",
        task="classification",
        spatial_dims=2,
        fmt="nifti",
        cases=20,
        seed=1,
        like=None,
    )
    labels = [c.label for c in read_manifest(tmp_path / "c", "classification")]
    share = labels.count("normal") / len(labels)
    assert 0.6 <= share <= 0.8, share
    assert "nodule" in labels


@pytest.mark.parametrize(("fmt", "dims"), [("nifti", 3), ("dicom", 2)])
def test_same_seed_same_data(tmp_path: Path, fmt: str, dims: int) -> None:
    def make(name: str, seed: int) -> list[Case]:
        generate_dataset(
            tmp_path / name,
            task="segmentation",
            spatial_dims=dims,
            fmt=fmt,
            cases=6,
            seed=seed,
            like=None,
            shape=SMALL[dims],
        )
        return read_manifest(tmp_path / name, "segmentation")

    first, again, other = make("a", 5), make("b", 5), make("c", 6)
    for x, y, z in zip(first, again, other, strict=True):
        assert (x.case_id, x.patient_id) == (y.case_id, y.patient_id)
        assert np.array_equal(read_image(x.image).array, read_image(y.image).array)
        assert np.array_equal(read_image(x.label).array, read_image(y.label).array)
        assert not np.array_equal(read_image(x.image).array, read_image(z.image).array)
    for name in ("manifest.csv", MARKER):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    if fmt == "nifti":  # gzip without a time stamp: the very same files
        assert first[0].image.read_bytes() == again[0].image.read_bytes()
    else:  # UIDs come from the seed
        a = pydicom.dcmread(first[0].image, stop_before_pixels=True)
        b = pydicom.dcmread(again[0].image, stop_before_pixels=True)
        assert (a.StudyInstanceUID, a.SeriesInstanceUID) == (
            b.StudyInstanceUID,
            b.SeriesInstanceUID,
        )


def test_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "scan.nii.gz").write_bytes(b"precious")
    with pytest.raises(DataError, match="theirs.*not made by dummy-data"):
        generate_dataset(
            theirs, task="segmentation", spatial_dims=2, fmt="png", cases=2, seed=0, like=None
        )
    assert [p.name for p in theirs.iterdir()] == ["scan.nii.gz"]
    assert (theirs / "scan.nii.gz").read_bytes() == b"precious"

    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="is a file"):
        generate_dataset(
            tmp_path / "file",
            task="segmentation",
            spatial_dims=2,
            fmt="png",
            cases=2,
            seed=0,
            like=None,
        )


def test_rerun_replaces_its_own_folder_only(tmp_path: Path) -> None:
    out = tmp_path / "dummy"
    out.mkdir()  # an empty folder is fine
    generate_dataset(
        out,
        task="segmentation",
        spatial_dims=2,
        fmt="nifti",
        cases=7,
        seed=0,
        like=None,
        shape=(32, 32),
    )
    (out / "notes.txt").write_text("mine")
    (out / "splits.json").write_text("{}")  # describes the old data
    generate_dataset(
        out,
        task="segmentation",
        spatial_dims=2,
        fmt="nifti",
        cases=3,
        seed=1,
        like=None,
        shape=(32, 32),
    )
    cases = read_manifest(out, "segmentation")
    assert len(cases) == 3
    assert len(list((out / "images").iterdir())) == 3  # the old cases are gone
    assert (out / "notes.txt").read_text() == "mine"  # what it did not write is kept
    assert not (out / "splits.json").exists()
    assert answer_key(out)["parameters"]["cases"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["dummy"]  # no staging folders left behind


def test_bad_arguments_are_value_errors(tmp_path: Path) -> None:
    def make(**kwargs: object) -> None:
        args = {
            "task": "segmentation",
            "spatial_dims": 3,
            "fmt": "nifti",
            "cases": 2,
            "seed": 0,
            "like": None,
        }
        generate_dataset(tmp_path / "x", **{**args, **kwargs})  # type: ignore[arg-type]

    with pytest.raises(ValueError, match="png holds 2D images only"):
        make(fmt="png")
    with pytest.raises(ValueError, match="task must be one of"):
        make(task="detection")
    with pytest.raises(ValueError, match="fmt must be one of"):
        make(fmt="jpeg")
    with pytest.raises(ValueError, match="cases must be"):
        make(cases=0)
    with pytest.raises(ValueError, match="spatial_dims must be"):
        make(spatial_dims=4)
    assert not (tmp_path / "x").exists()


def write_source_dataset(root: Path) -> None:
    """A 'real' dataset to copy: 4 volumes of 160 x 160 x 24 at 0.7 x 0.7 x 3 mm, 2% foreground."""
    affine = np.diag([-0.7, -0.7, 3.0, 1.0])
    cases = []
    for i in range(4):
        image = np.full((160, 160, 24), -1000, np.int16)
        image[20:140, 30:130, :] = 40
        mask = np.zeros(image.shape, np.uint8)
        mask[60:90, 60:80, 8:16] = 1  # 4800 of 614400 voxels: 0.8%
        if i % 2:
            mask[60:100, 60:90, 6:18] = 1  # 14400 voxels: 2.3%
        write_nifti(image, affine, root / f"img{i}.nii.gz")
        write_nifti(mask, affine, root / f"seg{i}.nii.gz")
        cases.append(Case(f"c{i}", f"p{i // 2}", root / f"img{i}.nii.gz", root / f"seg{i}.nii.gz"))
    write_manifest(root, cases)


def test_like_makes_a_smaller_twin(tmp_path: Path) -> None:
    source = tmp_path / "real"
    write_source_dataset(source)
    generate_dataset(
        tmp_path / "twin",
        task="segmentation",
        spatial_dims=3,
        fmt="nifti",
        cases=None,
        seed=0,
        like=source,
    )
    cases = read_manifest(tmp_path / "twin", "segmentation")
    assert len(cases) == 4  # no more cases than the source
    image = read_image(cases[0].image)
    assert image.shape == (96, 96, 14)  # downscaled by one factor to fit 96 x 96 x 48
    field_of_view = np.array(image.shape) * np.array(image.spacing)
    assert np.allclose(field_of_view, [112, 112, 72], rtol=0.02)
    fraction = np.mean([read_image(c.label).array.mean() for c in cases])
    assert 0.0155 / 2 < fraction < 0.0155 * 2  # the source's mean foreground fraction
    assert answer_key(tmp_path / "twin")["source"]["shape"] == [160, 160, 24]


def test_like_keeps_class_balance_and_dimensionality(tmp_path: Path) -> None:
    source = tmp_path / "xrays"
    labels = ["benign"] * 12 + ["malignant"] * 4
    cases = []
    for i, label in enumerate(labels):
        path = write_png(np.full((40, 50), 100 + i, np.uint8), source / f"{i}.png")
        cases.append(Case(f"x{i}", f"p{i}", path, label))
    write_manifest(source, cases)
    generate_dataset(
        tmp_path / "twin",
        task="classification",
        spatial_dims=2,
        fmt="png",
        cases=None,
        seed=0,
        like=source,
    )
    twin = read_manifest(tmp_path / "twin", "classification")
    assert len(twin) == 16
    assert read_image(twin[0].image).shape == (40, 50)
    counts = [c.label for c in twin]
    assert set(counts) == {"benign", "malignant"}
    assert 0.6 <= counts.count("benign") / len(counts) <= 0.9

    with pytest.raises(DataError, match="2D images but this project has spatial_dims=3"):
        generate_dataset(
            tmp_path / "t3",
            task="classification",
            spatial_dims=3,
            fmt="nifti",
            cases=None,
            seed=0,
            like=source,
        )
    with pytest.raises(DataError, match="has no manifest.csv"):
        generate_dataset(
            tmp_path / "t4",
            task="classification",
            spatial_dims=2,
            fmt="png",
            cases=None,
            seed=0,
            like=tmp_path / "twin" / "images",
        )


def test_command_line_writes_the_configured_dataset(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dummy-data", "--cases", "2", "--seed", "1"]) == 0
    manifest = project / "data" / "dummy" / "manifest.csv"
    assert f"wrote {manifest}" in capsys.readouterr().out
    cfg = load_config([])
    key = answer_key(manifest.parent)["parameters"]
    assert (key["task"], key["spatial_dims"], key["format"]) == (
        cfg.task,
        cfg.spatial_dims,
        cfg.data.format,
    )
    assert len(read_manifest(manifest.parent, cfg.task)) == 2

    foreign = project / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    assert main(["dummy-data", "--out", str(foreign)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "mine" in err[0]


@pytest.mark.slow
def test_default_dataset_is_small_and_quick(tmp_path: Path) -> None:
    start = time.perf_counter()
    generate_dataset(
        tmp_path / "d",
        task="segmentation",
        spatial_dims=3,
        fmt="nifti",
        cases=None,
        seed=42,
        like=None,
    )
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in (tmp_path / "d").rglob("*") if p.is_file())
    cases = read_manifest(tmp_path / "d", "segmentation")
    assert len(cases) == 40
    assert len({c.patient_id for c in cases}) < 35
    assert size < 20e6, size
    assert seconds < 30, seconds
