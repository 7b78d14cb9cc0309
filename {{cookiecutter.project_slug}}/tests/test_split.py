"""Splits: duplicates out first, patients never in two parts, stratified, reproducible, checked."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.config import load_config
from {{ cookiecutter.package_name }}.data import file_hashes
from {{ cookiecutter.package_name }}.data.file_hashes import HASHES, FileHashes
from {{ cookiecutter.package_name }}.data.inspect.duplicates import voxel_hash
from {{ cookiecutter.package_name }}.data.io import read_image, write_dicom, write_nifti
from {{ cookiecutter.package_name }}.data.manifest import (
    Case,
    DataError,
    read_manifest,
    write_manifest,
)
from {{ cookiecutter.package_name }}.data.split import (
    MIN_PATIENTS,
    SmallSplitWarning,
    _assign,
    _Unit,
    dataset_hash,
    fold_cases,
    load_splits,
    make_splits,
    verify_splits,
)
from {{ cookiecutter.package_name }}.data.split import test_cases as held_out_cases

SHAPE = (8, 8, 4)
STRATA = ("empty", "small", "large", "small", "large", "large")  # by case number, cycled
TOLERANCE = 0.15  # largest gap between a part's share of a stratum and the whole set's


def write_case(root: Path, task: str, case_id: str, patient: str, image, mask) -> Case:
    image_path = write_nifti(image, np.eye(4), root / "images" / f"{case_id}.nii.gz")
    mask_path = write_nifti(mask, np.eye(4), root / "masks" / f"{case_id}.nii.gz")
    if task == "segmentation":
        return Case(case_id, patient, image_path, mask_path)
    return Case(case_id, patient, image_path, "finding" if mask.any() else "normal")


def mask_of(stratum: str) -> np.ndarray:
    mask = np.zeros(SHAPE, np.uint8)
    if stratum == "small":
        mask[3:5, 3, 1] = 1  # 2 voxels
    elif stratum == "large":
        mask[1:7, 1:7, :2] = 1  # 72 voxels
    return mask


def make_dataset(root: Path, task: str, patients: int = 16, seed: int = 0) -> list[Case]:
    """``patients`` patients, half of them with two studies, plus (from 8 patients) three copies.

    With 16 patients: ``dup-a`` is an exact copy of c03 under patient p15 (who has scans of
    their own), ``dup-b`` an exact copy of c10 under p99 (no other scan), ``near-a`` c05 with
    noise added, under p14.
    """
    rng = np.random.default_rng(seed)
    cases, images = [], {}
    for p in range(patients):
        for _ in range(1 + (p % 2 == 0)):
            case_id = f"c{len(cases):02d}"
            images[case_id] = rng.normal(0, 100, SHAPE).astype(np.int16)
            stratum = STRATA[len(cases) % len(STRATA)]
            cases.append(
                write_case(root, task, case_id, f"p{p:02d}", images[case_id], mask_of(stratum))
            )
    if patients >= 8:
        noisy = (images["c05"] + rng.normal(0, 5, SHAPE)).astype(np.int16)
        cases += [
            write_case(
                root, task, "dup-a", f"p{patients - 1:02d}", images["c03"], mask_of("small")
            ),
            write_case(root, task, "dup-b", "p99", images["c10"], mask_of("large")),
            write_case(root, task, "near-a", f"p{patients - 2:02d}", noisy, mask_of("large")),
        ]
    write_manifest(root, cases)
    return cases


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One dataset per task, written once for the tests that only read it."""
    roots = {}
    for task in ("segmentation", "classification"):
        roots[task] = tmp_path_factory.mktemp(task)
        make_dataset(roots[task], task)
    return roots


@pytest.fixture(scope="module")
def split_of(datasets: dict[str, Path]):
    """``split_of(task, seed)``: the 3-fold splits (test fraction 0.2) of a shared dataset."""
    made: dict[tuple[str, int], dict] = {}

    def split(task: str, seed: int) -> dict:
        if (task, seed) not in made:
            made[task, seed] = make_splits(
                datasets[task], task=task, folds=3, test_fraction=0.2, seed=seed
            )
        return made[task, seed]

    return split


def parts_of(splits: dict, fold: int) -> dict[str, list[str]]:
    return {"test": splits["test"], **splits["folds"][fold]}


def patients_of(cases: list[Case]) -> dict[str, str]:
    return {case.case_id: case.patient_id for case in cases}


@pytest.mark.parametrize("task", ["segmentation", "classification"])
def test_no_patient_and_no_image_in_two_parts(
    datasets: dict[str, Path], split_of, task: str
) -> None:
    root = datasets[task]
    splits = split_of(task, 0)
    cases = {c.case_id: c for c in read_manifest(root, task)}
    patient = {cid: case.patient_id for cid, case in cases.items()}
    hashes = {cid: voxel_hash(read_image(case.image).array) for cid, case in cases.items()}
    kept = set(cases) - {"dup-a", "dup-b"}
    assert len(splits["folds"]) == 3 and splits["test"]
    for k in range(3):
        parts = parts_of(splits, k)
        assert sorted(sum(parts.values(), [])) == sorted(kept)  # each kept case exactly once
        for a in parts:
            for b in parts:
                if a < b:
                    assert not {patient[c] for c in parts[a]} & {patient[c] for c in parts[b]}
                    assert not {hashes[c] for c in parts[a]} & {hashes[c] for c in parts[b]}
    vals = [set(f["val"]) for f in splits["folds"]]
    assert set().union(*vals) == kept - set(splits["test"])  # the val parts tile the rest
    assert sum(len(v) for v in vals) == len(kept) - len(splits["test"])


def test_exact_duplicates_removed_and_recorded(datasets: dict[str, Path], split_of) -> None:
    root = datasets["segmentation"]
    splits = split_of("segmentation", 0)
    assert splits["removed_duplicates"] == [
        {"case_id": "dup-a", "patient_id": "p15", "duplicate_of": "c03"},
        {"case_id": "dup-b", "patient_id": "p99", "duplicate_of": "c10"},
    ]
    everywhere = set(splits["test"]) | {c for f in splits["folds"] for p in f.values() for c in p}
    assert not everywhere & {"dup-a", "dup-b"}
    patient = patients_of(read_manifest(root, "segmentation"))
    # c03's patient and p15 are now one group: all their cases share a part.
    linked = {patient["c03"], "p15"}
    assert sorted(linked) in splits["linked_patients"]
    group = [c for c, p in patient.items() if p in linked and c != "dup-a"]
    for k in range(3):
        assert (
            len({name for name, ids in parts_of(splits, k).items() if set(group) & set(ids)}) == 1
        )


def test_near_duplicates_kept_together(split_of) -> None:
    for seed in (0, 1):
        splits = split_of("classification", seed)
        assert splits["near_duplicates"] == [["c05", "near-a"]]
        assert all(r["case_id"] != "near-a" for r in splits["removed_duplicates"])
        for k in range(3):
            holding = [name for name, ids in parts_of(splits, k).items() if "c05" in ids]
            assert holding and "near-a" in parts_of(splits, k)[holding[0]]


@pytest.mark.parametrize("task", ["segmentation", "classification"])
def test_stratified_within_tolerance(datasets: dict[str, Path], split_of, task: str) -> None:
    root = datasets[task]
    cases = read_manifest(root, task)
    stratum = {c.case_id: STRATA[i % len(STRATA)] for i, c in enumerate(cases[:24])}
    stratum |= {"near-a": "large"}
    if task == "classification":
        stratum = {c: "normal" if s == "empty" else "finding" for c, s in stratum.items()}
    for seed in (0, 1):
        splits = split_of(task, seed)
        kept = [c for f in splits["folds"][:1] for c in f["train"] + f["val"]] + splits["test"]
        names = sorted(set(stratum.values()))
        overall = {n: sum(stratum[c] == n for c in kept) / len(kept) for n in names}
        for name, ids in [("test", splits["test"])] + [
            (f"val {k}", f["val"]) for k, f in enumerate(splits["folds"])
        ]:
            for n in names:
                share = sum(stratum[c] == n for c in ids) / len(ids)
                assert abs(share - overall[n]) <= TOLERANCE, (seed, name, n, share, overall[n])
        recorded = splits["strata"]["test"]
        assert recorded == {n: sum(stratum[c] == n for c in splits["test"]) for n in recorded}
    if task == "segmentation":
        assert set(splits["strata"]["all"]) == {"empty", "small", "large"}


def test_same_seed_same_bytes_other_seed_other_assignment(tmp_path: Path) -> None:
    root = tmp_path
    make_dataset(root, "segmentation", patients=8)
    make_splits(root, task="segmentation", folds=3, test_fraction=0.2, seed=7)
    first = (root / "splits.json").read_bytes()
    make_splits(root, task="segmentation", folds=3, test_fraction=0.2, seed=7)
    assert (root / "splits.json").read_bytes() == first
    other = make_splits(root, task="segmentation", folds=3, test_fraction=0.2, seed=8)
    same = json.loads(first)
    assert (other["test"], other["folds"]) != (same["test"], same["folds"])
    assert other["dataset_hash"] == same["dataset_hash"]


def test_stale_splits_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "data"
    cases = make_dataset(root, "segmentation", patients=6)
    written = make_splits(root, task="segmentation", folds=3, test_fraction=0.2, seed=0)
    assert load_splits(root, "segmentation") == written
    before = dataset_hash(root, cases)
    assert before == written["dataset_hash"]

    shutil.copytree(root, tmp_path / "moved")  # paths enter relative: a moved dataset is valid
    assert load_splits(tmp_path / "moved", "segmentation") == written

    write_nifti(np.ones(SHAPE, np.int16), np.eye(4), cases[0].image)
    assert dataset_hash(root, cases) != before
    with pytest.raises(DataError, match="stale.*re-run split"):
        load_splits(root, "segmentation")
    with pytest.raises(DataError, match="stale"):
        fold_cases(root, "segmentation", 0)


def test_dataset_hash_covers_rows_and_series_folders(tmp_path: Path) -> None:
    volume = np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE)
    files = write_dicom(volume, np.eye(4), tmp_path / "series", patient_id="p1")
    case = Case("c1", "p1", tmp_path / "series", "normal")
    first = dataset_hash(tmp_path, [case])
    assert dataset_hash(tmp_path, [Case("c1", "p2", case.image, "normal")]) != first
    assert dataset_hash(tmp_path, [Case("c1", "p1", case.image, "finding")]) != first
    files[2].write_bytes(files[2].read_bytes()[:-2] + b"\x00\x01")  # one slice's pixels
    assert dataset_hash(tmp_path, [case]) != first
    with pytest.raises(DataError, match="case 'c9'.*does not exist"):
        dataset_hash(tmp_path, [Case("c9", "p1", tmp_path / "missing.nii.gz", "normal")])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rewrite_keeping_size_and_mtime(path: Path, data: bytes) -> None:
    """Write ``data`` (as long as the file) over ``path`` and set its old mtime back."""
    before = path.stat()
    assert len(data) == before.st_size and data != path.read_bytes()
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size
    assert path.stat().st_mtime_ns == before.st_mtime_ns


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files whose bytes are hashed from now on; no "racy" window (files are fresh here)."""
    monkeypatch.setattr(file_hashes, "RACY_SECONDS", 0.0)
    names: list[str] = []
    real = hashlib.file_digest

    def spy(handle, digest):
        names.append(Path(handle.name).name)
        return real(handle, digest)

    monkeypatch.setattr(file_hashes.hashlib, "file_digest", spy)
    return names


def test_start_check_reads_only_changed_files_and_catches_them(
    tmp_path: Path, reads: list[str]
) -> None:
    root = tmp_path / "data"
    cases = make_dataset(root, "segmentation", patients=6)
    written = make_splits(root, task="segmentation", folds=3, test_fraction=0.2, seed=0)
    files = [p for c in cases for p in (c.image, c.label)]
    assert sorted(reads) == sorted(p.name for p in files)  # split reads every byte
    assert written["files"] == {
        p.relative_to(root).as_posix(): sha256(p)[:16] for p in files
    }  # each file's own hash, to name what changed
    reads.clear()
    assert load_splits(root, "segmentation") == written
    assert reads == []  # sizes and times unchanged: no byte read

    image = cases[0].image
    original = image.read_bytes()
    changed = bytearray(original)
    changed[len(changed) // 2] ^= 0xFF
    rewrite_keeping_size_and_mtime(image, bytes(changed))
    with pytest.raises(DataError, match=r"stale.*changed: 'images/c00\.nii\.gz';.*re-run split"):
        load_splits(root, "segmentation")
    assert reads == [image.name]  # only the changed file was read again
    with pytest.raises(DataError, match="stale"):
        fold_cases(root, "segmentation", 0)  # and caught again, from its new record

    rewrite_keeping_size_and_mtime(image, original)
    reads.clear()
    assert load_splits(root, "segmentation") == written  # the same bytes are the same data
    assert reads == [image.name]
    reads.clear()
    assert load_splits(root, "segmentation") == written
    assert reads == []


def test_stale_splits_name_new_and_gone_files(tmp_path: Path) -> None:
    cases = make_dataset(tmp_path, "segmentation", patients=6)
    make_splits(tmp_path, task="segmentation", folds=2, test_fraction=0, seed=0)
    write_manifest(tmp_path, cases[1:])
    with pytest.raises(DataError, match=r"gone: 'images/c00\.nii\.gz', 'masks/c00\.nii\.gz'"):
        load_splits(tmp_path, "segmentation")
    write_manifest(tmp_path, [*cases, Case("c99", "p99", cases[0].image, cases[1].label)])
    with pytest.raises(DataError, match="stale.*manifest's rows changed"):
        load_splits(tmp_path, "segmentation")  # the same files, one more row
    splits = json.loads((tmp_path / "splits.json").read_text(encoding="utf-8"))
    del splits["files"]  # written before per-file hashes existed: still checked as a whole
    (tmp_path / "splits.json").write_text(json.dumps(splits), encoding="utf-8")
    with pytest.raises(DataError, match="stale.*files are not named"):
        load_splits(tmp_path, "segmentation")


def test_file_hash_records_are_reused_until_the_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "images" / "a.bin"
    file.parent.mkdir()
    file.write_bytes(b"0123456789" * 100)
    first = FileHashes(tmp_path)
    assert first.digest(file) == sha256(file) and first.hashed == 1
    first.save()
    assert not (tmp_path / HASHES).exists()  # just written: "racy", never recorded
    assert FileHashes(tmp_path).digest(file) == sha256(file)

    monkeypatch.setattr(file_hashes, "RACY_SECONDS", 0.0)
    first = FileHashes(tmp_path)
    first.digest(file)
    first.save()
    record = json.loads((tmp_path / HASHES).read_text(encoding="utf-8"))["files"]["images/a.bin"]
    info = file.stat()
    assert record == [info.st_size, info.st_mtime_ns, info.st_ctime_ns, sha256(file)]
    again = FileHashes(tmp_path)
    assert again.digest(file) == sha256(file) and again.hashed == 0

    rewrite_keeping_size_and_mtime(file, b"9876543210" * 100)  # the ctime moves on
    later = FileHashes(tmp_path)
    assert later.digest(file) == sha256(file) == hashlib.sha256(b"9876543210" * 100).hexdigest()
    assert later.hashed == 1
    later.save()
    saved = json.loads((tmp_path / HASHES).read_text(encoding="utf-8"))["files"]
    assert saved["images/a.bin"][3] == sha256(file)
    every = FileHashes(tmp_path, trust_stat=False)
    assert every.digest(file) == sha256(file) and every.hashed == 1

    (tmp_path / HASHES).write_text("{not json", encoding="utf-8")  # a broken cache is ignored
    broken = FileHashes(tmp_path)
    assert broken.digest(file) == sha256(file) and broken.hashed == 1


def test_split_verify_rehashes_what_the_start_check_trusts(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(file_hashes, "RACY_SECONDS", 0.0)
    data = project / "data" / "mine"
    cases = make_dataset(data, "segmentation", patients=6)
    make_splits(data, task="segmentation", folds=2, test_fraction=0, seed=0)
    assert verify_splits(data, "segmentation")["files"] == 2 * len(cases)
    assert main(["split", "--data", str(data), "--verify", "task=segmentation"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [
        f"{data / 'splits.json'} matches the data: {len(cases)} cases, "
        f"{2 * len(cases)} files (0.00 GB) re-hashed"
    ]

    # An edit the start check cannot see (as if size and both times had stayed the same):
    image = cases[1].image
    changed = bytearray(image.read_bytes())
    changed[len(changed) // 2] ^= 0xFF
    image.write_bytes(bytes(changed))
    records = json.loads((data / HASHES).read_text(encoding="utf-8"))
    info = image.stat()
    records["files"]["images/c01.nii.gz"][:3] = [info.st_size, info.st_mtime_ns, info.st_ctime_ns]
    (data / HASHES).write_text(json.dumps(records), encoding="utf-8")
    load_splits(data, "segmentation")  # trusted, by design
    assert main(["split", "--data", str(data), "--verify", "task=segmentation"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stale" in err[0] and "changed: 'images/c01.nii.gz'" in err[0]
    with pytest.raises(DataError, match="stale"):
        load_splits(data, "segmentation")  # --verify refreshed the record


def test_fold_and_test_cases(tmp_path: Path) -> None:
    make_dataset(tmp_path, "classification", patients=8)
    splits = make_splits(tmp_path, task="classification", folds=3, test_fraction=0.2, seed=0)
    train, val = fold_cases(tmp_path, "classification", 2)
    assert [c.case_id for c in train] == splits["folds"][2]["train"]
    assert [c.case_id for c in val] == splits["folds"][2]["val"]
    assert all(isinstance(c.label, str) for c in train)
    assert [c.case_id for c in held_out_cases(tmp_path, "classification")] == splits["test"]
    for fold in (3, -1):
        with pytest.raises(DataError, match=f"fold {fold} is out of range.*3 fold"):
            fold_cases(tmp_path, "classification", fold)
    with pytest.raises(ValueError, match="fold must be an integer"):
        fold_cases(tmp_path, "classification", "0")  # type: ignore[arg-type]


def test_bad_splits_files_are_named(tmp_path: Path) -> None:
    make_dataset(tmp_path, "classification", patients=6)
    with pytest.raises(DataError, match="no splits file.*run split"):
        load_splits(tmp_path, "classification")
    path = tmp_path / "splits.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError, match="not valid JSON"):
        load_splits(tmp_path, "classification")
    good = make_splits(tmp_path, task="classification", folds=2, test_fraction=0, seed=0)
    for broken, message in [
        ({**good, "folds": []}, "'folds' is empty"),
        ({**good, "dataset_hash": None}, "'dataset_hash' is missing"),
        ({**good, "test": good["folds"][0]["val"][:1]}, "in two parts of fold 0"),
        ({**good, "test": ["nobody"]}, "test lists case 'nobody'"),
    ]:
        path.write_text(json.dumps(broken), encoding="utf-8")
        with pytest.raises(DataError, match=message):
            load_splits(tmp_path, "classification")
    path.write_text(json.dumps(good), encoding="utf-8")
    with pytest.raises(DataError, match="made for task 'classification'"):
        load_splits(tmp_path, "segmentation")


def test_small_datasets_and_single_split(tmp_path: Path) -> None:
    make_dataset(tmp_path, "segmentation", patients=6)  # 9 cases, 6 patients
    with pytest.raises(DataError, match="6 patient.*6 folds and a test set need at least 7"):
        make_splits(tmp_path, task="segmentation", folds=6, test_fraction=0.2, seed=0)
    with pytest.raises(DataError, match="7 folds need at least 7: use fewer folds, or add"):
        make_splits(tmp_path, task="segmentation", folds=7, test_fraction=0, seed=0)
    tight = make_splits(tmp_path, task="segmentation", folds=5, test_fraction=0.2, seed=0)
    assert tight["test"] and all(f["val"] for f in tight["folds"])

    single = make_splits(tmp_path, task="segmentation", folds=1, test_fraction=0.2, seed=0)
    (fold,) = single["folds"]
    assert fold["train"] and fold["val"] and single["test"]
    assert not set(fold["train"]) & set(fold["val"])
    assert len(fold["val"]) < len(fold["train"])

    no_test = make_splits(tmp_path, task="segmentation", folds=5, test_fraction=0, seed=0)
    assert no_test["test"] == [] and all(f["val"] for f in no_test["folds"])
    with pytest.raises(DataError, match="no test set"):
        held_out_cases(tmp_path, "segmentation")


def test_few_patients_to_evaluate_on_warn(tmp_path: Path) -> None:
    cases = patients_of(make_dataset(tmp_path / "few", "classification", patients=16))
    with pytest.warns(SmallSplitWarning) as record:
        splits = make_splits(
            tmp_path / "few", task="classification", folds=4, test_fraction=0.2, seed=0
        )
    (warning,) = [w for w in record if w.category is SmallSplitWarning]
    message = str(warning.message)
    counts = {"test set": len({cases[c] for c in splits["test"]})}
    counts.update(
        {
            f"fold {k} validation": len({cases[c] for c in f["val"]})
            for k, f in enumerate(splits["folds"])
        }
    )
    small = {name: n for name, n in counts.items() if n < MIN_PATIENTS}
    assert small and "test set" in small  # 16 patients: about 3 to test on, 3 or 4 per fold
    for name, n in counts.items():
        assert (f"{name} {n}" in message) == (name in small), (name, message)
    assert "zero width" in message
    # Enough patients everywhere: no warning.
    make_dataset(tmp_path / "enough", "classification", patients=30)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmallSplitWarning)
        splits = make_splits(
            tmp_path / "enough", task="classification", folds=2, test_fraction=0.25, seed=0
        )
    assert len(splits["test"]) >= MIN_PATIENTS


def test_patients_linked_by_duplicates_count_as_one(tmp_path: Path) -> None:
    image = np.random.default_rng(0).normal(0, 100, SHAPE).astype(np.int16)
    cases = [
        write_case(tmp_path, "classification", f"c{i}", f"p{i}", image, mask_of("empty"))
        for i in range(4)
    ]
    write_manifest(tmp_path, cases)
    with pytest.raises(DataError, match="4 patient.*only 1 independent group.*duplicates"):
        make_splits(tmp_path, task="classification", folds=2, test_fraction=0, seed=0)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"folds": 0}, "folds must be"),
        ({"test_fraction": 1.0}, "test fraction must be in"),
        ({"seed": -1}, "seed must be"),
        ({"task": "detection"}, "task must be one of"),
    ],
)
def test_bad_arguments(tmp_path: Path, arguments: dict, message: str) -> None:
    given = {"task": "segmentation", "folds": 3, "test_fraction": 0.2, "seed": 0} | arguments
    with pytest.raises(ValueError, match=message) as raised:
        make_splits(tmp_path, **given)
    assert isinstance(raised.value, DataError)  # so the command line prints one line


def test_empty_manifest_and_bad_mask(tmp_path: Path) -> None:
    (tmp_path / "manifest.csv").write_text("case_id,patient_id,image,label\n", encoding="utf-8")
    with pytest.raises(DataError, match="lists no cases"):
        make_splits(tmp_path, task="segmentation", folds=2, test_fraction=0, seed=0)
    cases = make_dataset(tmp_path, "segmentation", patients=4)
    write_nifti(np.zeros((8, 8, 3), np.uint8), np.eye(4), cases[1].label)
    with pytest.raises(DataError, match=r"case 'c01'.*shape \(8, 8, 3\)"):
        make_splits(tmp_path, task="segmentation", folds=2, test_fraction=0, seed=0)
    assert not (tmp_path / "splits.json").exists()


def test_cli_split(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = project / "data" / "mine"
    make_dataset(data, load_config([]).task, patients=8)
    assert main(["split", "--data", str(data), "--folds", "3"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(f"wrote {data / 'splits.json'}")
    assert "3 folds, 2 duplicates removed" in out[0]
    assert len(json.loads((data / "splits.json").read_text(encoding="utf-8"))["folds"]) == 3

    assert main(["split", "--data", str(project / "nothing-here")]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1
    assert lines[0].startswith("error: no manifest at") and "nothing-here" in lines[0]


def shortfall(units: list[_Unit], part: list[int], weights: list[float]) -> float:
    """The cost the assignment minimizes: squared gaps to each part's share of each stratum."""
    vectors = np.array([[*u.counts, u.patients] for u in units], dtype=float)
    totals = vectors.sum(0)
    cost = 0.0
    for p, weight in enumerate(weights):
        held = vectors[np.array(part) == p].sum(0)
        cost += float((((held - weight * totals) / np.maximum(totals, 1)) ** 2).sum())
    return cost


def test_assignment_is_locally_optimal() -> None:
    """No single move or swap of groups would bring any part closer to its targets."""
    for seed in range(8):
        rng = np.random.default_rng(seed)
        units = []
        for i in range(int(rng.integers(10, 25))):
            counts = [0, 0, 0]
            for _ in range(int(rng.integers(1, 4))):
                counts[int(rng.choice(3, p=[0.6, 0.3, 0.1]))] += 1
            units.append(_Unit([f"u{i}"], counts, int(rng.integers(1, 3))))
        weights = [0.8, 0.2] if seed % 2 else [1 / 3] * 3
        part = _assign(units, weights, [1] * len(weights), np.random.default_rng(seed))
        assert sorted(set(part)) == list(range(len(weights)))
        best = shortfall(units, part, weights)
        for i in range(len(units)):
            for b in range(len(weights)):
                moved = [b if k == i else q for k, q in enumerate(part)]
                if b != part[i] and part.count(part[i]) > 1:
                    assert shortfall(units, moved, weights) >= best - 1e-9, (seed, i, b)
            for j in range(i + 1, len(units)):
                swapped = list(part)
                swapped[i], swapped[j] = part[j], part[i]
                assert shortfall(units, swapped, weights) >= best - 1e-9, (seed, i, j)
