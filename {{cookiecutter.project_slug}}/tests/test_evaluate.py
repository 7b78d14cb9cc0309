"""evaluate, predict and the model card: files, values that agree with each other, errors."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_data import AFFINE, DIMS, SHAPE, TASK, train_small

from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.data.io import read_image, write_dicom, write_nifti
from {{ cookiecutter.package_name }}.data.manifest import read_manifest, write_manifest
from {{ cookiecutter.package_name }}.data.split import make_splits
from {{ cookiecutter.package_name }}.evaluate.classification_metrics import auroc
from {{ cookiecutter.package_name }}.evaluate.inference import load_run, load_runs
from {{ cookiecutter.package_name }}.evaluate.segmentation_metrics import segmentation_metrics
from {{ cookiecutter.package_name }}.viz.evaluation_plots import roc_points

SEGMENTATION = TASK == "segmentation"
METRIC = "dice" if SEGMENTATION else "auroc"


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def add_second_rater(root: Path) -> None:
    """Give every case a second annotator who disagrees: an empty mask or the other class."""
    cases = read_manifest(root, TASK)
    for case in cases:
        if SEGMENTATION:
            path = write_nifti(
                np.zeros(SHAPE, np.uint8), AFFINE, root / "rater2" / f"{case.case_id}.nii.gz"
            )
            case.raters["rater2"] = path
        else:
            case.raters["rater2"] = "normal" if case.label == "finding" else "finding"
    write_manifest(root, cases)
    make_splits(root, task=TASK, folds=2, test_fraction=0.2, seed=0)


def test_evaluate_writes_consistent_metrics(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(trained)]) == 0
    out = trained / "evaluation" / "val"
    assert f"wrote {out}" in capsys.readouterr().out
    report = json.loads((out / "metrics.json").read_text())
    rows = read_rows(out / "per_case.csv")
    run = load_run(trained)
    assert report["split"] == "val" and report["epoch"] == run.epoch
    assert report["n_cases"] == len(rows) == report["details"]["n_cases"]
    assert report["bootstrap"] == {"replicates": 1000, "level": 0.95, "unit": "patient"}
    for name, entry in report["summary"].items():
        assert entry["low"] <= entry["value"] + 1e-9 <= entry["high"] + 2e-9, name
    if SEGMENTATION:
        assert list(rows[0])[:5] == ["case_id", "dice", "iou", "hd95", "assd"]
        assert report["summary"]["dice"]["value"] == pytest.approx(
            np.mean([float(r["dice"]) for r in rows]), abs=1e-5
        )
        # The written prediction lies on the image's grid and gives the per-case Dice again.
        cases = {c.case_id: c for c in read_manifest(trained.parents[1] / "data" / "tiny", TASK)}
        for row in rows:
            image = read_image(cases[row["case_id"]].image)
            pred = read_image(out / "predictions" / f"{row['case_id']}.nii.gz")
            assert pred.shape == image.shape
            np.testing.assert_allclose(pred.affine, image.affine, atol=1e-5)
            truth = read_image(cases[row["case_id"]].label).array
            scores = segmentation_metrics(pred.array, truth, image.spacing)
            assert scores["dice"] == pytest.approx(float(row["dice"]), abs=1e-5)
        assert (out / "cases.png").stat().st_size > 0 and (out / "metrics.png").exists()
    else:
        assert list(rows[0])[:3] == ["case_id", "label", "prediction"]
        probs = np.array([[float(r[k]) for k in r if k.startswith("prob_")] for r in rows])
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
        assert (out / "confusion_matrix.png").exists() and (out / "roc.png").exists()
        matrix = np.array(report["details"]["confusion_matrix"])
        assert matrix.sum() == len(rows)
        accuracy = np.mean([r["label"] == r["prediction"] for r in rows])
        assert report["summary"]["accuracy"]["value"] == pytest.approx(accuracy)
    card = (trained / "MODEL_CARD.md").read_text()
    for heading in (
        "Intended use",
        "Data",
        "Model and training",
        "Metrics",
        "Failure cases",
        "Limitations",
    ):
        assert f"## {heading}" in card
    value = report["summary"][METRIC]["value"]
    assert f"| {METRIC} | {value:.3f} |" in card


@pytest.mark.slow
def test_each_split_and_reference_keeps_its_own_folder(trained: Path) -> None:
    assert main(["evaluate", str(trained)]) == 0
    first = (trained / "evaluation" / "val" / "metrics.json").read_text()
    assert main(["evaluate", str(trained), "--split", "test"]) == 0
    test = json.loads((trained / "evaluation" / "test" / "metrics.json").read_text())
    splits = json.loads((trained.parents[1] / "data" / "tiny" / "splits.json").read_text())
    assert test["n_cases"] == len(splits["test"])
    # evaluating the test set did not touch the validation results; no staging left behind
    assert (trained / "evaluation" / "val" / "metrics.json").read_text() == first
    assert sorted(p.name for p in (trained / "evaluation").iterdir()) == ["test", "val"]
    assert "`test`" in (trained / "MODEL_CARD.md").read_text()


@pytest.mark.slow
def test_reference_annotator_and_majority(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = trained.parents[1] / "data" / "tiny"
    add_second_rater(root)
    assert main(["evaluate", str(trained), "--reference", "label_rater2"]) == 0
    rater = json.loads((trained / "evaluation" / "val-label_rater2" / "metrics.json").read_text())
    assert rater["reference"] == "label_rater2"
    assert main(["evaluate", str(trained), "--reference", "majority"]) == 0
    majority = trained / "evaluation" / "val-majority"
    assert (majority / "annotator_disagreement.png").exists()
    if SEGMENTATION:
        # With two annotators the majority is where both agree: here nowhere.
        masks = sorted((majority / "reference").glob("*.nii.gz"))
        assert masks and all(read_image(m).array.max() == 0 for m in masks)
        # Against empty masks: a prediction scores Dice 0, an empty one 1 (the conventions).
        for row in read_rows(majority / "per_case.csv"):
            assert float(row["dice"]) in (0.0, 1.0)
    else:
        rows = read_rows(majority / "per_case.csv")
        labels = {c.case_id: c.label for c in read_manifest(root, TASK)}
        assert all(r["label"] == labels[r["case_id"]] for r in rows)  # ties: first annotator
    assert main(["evaluate", str(trained), "--reference", "label_rater9"]) == 2
    err = capsys.readouterr().err
    assert "reference 'label_rater9' is not valid" in err and "label_rater2, majority" in err


@pytest.mark.slow
def test_ensemble_averages_probabilities(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = trained.with_name(trained.name + "-copy")
    shutil.copytree(trained, other)
    assert main(["evaluate", str(trained), "--ensemble", str(other)]) == 0
    both = json.loads((trained / "evaluation" / "val-ensemble" / "metrics.json").read_text())
    assert main(["evaluate", str(trained)]) == 0
    alone = json.loads((trained / "evaluation" / "val" / "metrics.json").read_text())
    assert both["ensemble"] == [trained.name, other.name]
    # Two copies of one model average to that model.
    assert both["summary"][METRIC]["value"] == pytest.approx(alone["summary"][METRIC]["value"])
    different = train_small("data.window=[-500, 500]", "train.epochs=1")
    with pytest.raises(Exception, match="differs from .* in its preprocessing"):
        load_runs(trained, [different])
    assert main(["evaluate", str(trained), "--ensemble", str(different)]) == 2
    assert "an ensemble needs the same" in capsys.readouterr().err


def test_bad_run_folders_are_refused(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "is not a run folder: it has no config.yaml" in capsys.readouterr().err
    (trained / "checkpoints" / "best.pt").write_bytes(b"not a checkpoint")
    assert main(["evaluate", str(trained)]) == 2
    assert "is not a checkpoint of this project" in capsys.readouterr().err
    assert (
        main(["predict", str(trained), str(tmp_path / "missing.nii.gz"), "--checkpoint", "last"])
        == 2
    )
    assert "missing.nii.gz' does not exist" in capsys.readouterr().err


def test_predict_writes_each_image_in_its_own_geometry(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = tmp_path / "new"
    rng = np.random.default_rng(5)
    big = tuple(s + 6 for s in SHAPE)  # larger than the training patch: sliding windows
    affine = np.array([[0, -0.7, 0, 10], [0.9, 0, 0, -4], [0, 0, 2.5, 30], [0, 0, 0, 1.0]])
    if DIMS == 2:
        affine = np.diag([0.5, 0.5, 1.0, 1.0])
    write_nifti(rng.normal(0, 20, big).astype(np.int16), affine, new / "a.nii.gz")
    write_nifti(rng.normal(0, 20, SHAPE).astype(np.int16), AFFINE, new / "sub" / "b.nii.gz")
    if DIMS == 3:
        write_dicom(
            rng.normal(0, 20, SHAPE).astype(np.int16), AFFINE, new / "series", patient_id="x"
        )
    (new / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert main(["predict", str(trained), str(new), "--out", str(out)]) == 0
    rows = read_rows(out / "predictions.csv")
    inputs = sorted(Path(r["input"]).name for r in rows)
    assert inputs == sorted(["a.nii.gz", "b.nii.gz"] + (["series"] if DIMS == 3 else []))
    if SEGMENTATION:
        for row in rows:
            source = read_image(row["input"])
            pred = read_image(out / row["output"])
            assert pred.shape == source.shape
            np.testing.assert_allclose(pred.affine, source.affine, atol=1e-4)
            voxels = int(np.count_nonzero(pred.array == 1))
            column, unit = ("ml_1", 1000) if DIMS == 3 else ("mm2_1", 1)  # ml, or mm² in 2D
            assert float(row[column]) == pytest.approx(
                voxels * np.prod(source.spacing) / unit, rel=1e-4
            )
    else:
        names = load_run(trained).classes
        for row in rows:
            probs = [float(row[f"prob_{n}"]) for n in names]
            assert sum(probs) == pytest.approx(1.0, abs=1e-5)
            assert row["prediction"] == names[int(np.argmax(probs))]
    # A corrupt input: the others are still written, the command fails naming the file.
    (new / "broken.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    shutil.rmtree(out)
    assert main(["predict", str(trained), str(new), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "broken.nii.gz" in err and "1 of" in err
    assert len(read_rows(out / "predictions.csv")) == len(rows)


def test_predict_refuses_images_of_the_wrong_dimension(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = (24, 24) if DIMS == 3 else (16, 16, 8)
    write_nifti(np.zeros(other, np.int16), np.eye(4), tmp_path / "wrong.nii.gz")
    assert (
        main(
            ["predict", str(trained), str(tmp_path / "wrong.nii.gz"), "--out", str(tmp_path / "o")]
        )
        == 2
    )
    assert f"the run was trained on {DIMS}D images" in capsys.readouterr().err


def test_ensemble_probabilities_are_the_mean(trained: Path) -> None:
    from {{ cookiecutter.package_name }}.evaluate.inference import probabilities

    runs = load_runs(trained)
    torch.manual_seed(0)
    image = torch.randn(1, 1, *SHAPE)
    second = load_run(trained)
    with torch.no_grad():
        for p in second.model.parameters():
            p.mul_(0.5)
    mean = probabilities([runs[0], second], image)
    expected = (probabilities([runs[0]], image) + probabilities([second], image)) / 2
    torch.testing.assert_close(mean, expected)


def test_roc_points_integrate_to_the_auroc() -> None:
    rng = np.random.default_rng(0)
    positive = rng.random(60) < 0.4
    scores = np.round(rng.random(60) + positive * 0.5, 1)  # rounded: ties
    fpr, tpr = roc_points(positive, scores)
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert area == pytest.approx(auroc(positive, scores))
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)


@pytest.mark.slow
def test_a_resampling_run_scores_and_writes_on_the_source_grid(trained: Path) -> None:
    spacing = [1.6, 1.6, 2.0] if DIMS == 3 else [1.6, 1.6]
    patch = [8, 8, 8] if DIMS == 3 else [12, 12]
    run = train_small(
        f"data.target_spacing={spacing}", f"data.patch_size={patch}", "train.epochs=1"
    )
    assert main(["evaluate", str(run)]) == 0
    out = run / "evaluation" / "val"
    cases = {c.case_id: c for c in read_manifest(run.parents[1] / "data" / "tiny", TASK)}
    for row in read_rows(out / "per_case.csv"):
        image = read_image(cases[row["case_id"]].image)
        if SEGMENTATION:
            pred = read_image(out / "predictions" / f"{row['case_id']}.nii.gz")
            assert pred.shape == image.shape == SHAPE
            np.testing.assert_allclose(pred.affine, image.affine, atol=1e-5)
            truth = read_image(cases[row["case_id"]].label).array
            assert float(row["dice"]) == pytest.approx(
                segmentation_metrics(pred.array, truth, image.spacing)["dice"], abs=1e-5
            )
