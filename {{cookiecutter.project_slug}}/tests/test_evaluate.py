"""evaluate, predict and the model card: files, values that agree with each other, errors."""

from __future__ import annotations

import csv
import json
import math
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
from {{ cookiecutter.package_name }}.evaluate.inference import load_run, load_runs
from {{ cookiecutter.package_name }}.evaluate.model_card import interval_sentence
from {{ cookiecutter.package_name }}.metrics.classification import auroc
from {{ cookiecutter.package_name }}.metrics.registry import register, unregister
from {{ cookiecutter.package_name }}.metrics.segmentation import (
    image_diagonal,
    normalized_surface_dice,
    segmentation_metrics,
)
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
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed
    # The printed summary says what its numbers are about, as metrics.json does.
    label = "positive class: 'finding'" if TASK == "classification" else "tolerance of 2 mm"
    assert label in printed
    report = json.loads((out / "metrics.json").read_text())
    rows = read_rows(out / "per_case.csv")
    run = load_run(trained)
    assert report["split"] == "val" and report["epoch"] == run.epoch
    assert report["n_cases"] == len(rows) == report["details"]["n_cases"]
    assert report["bootstrap"] == {"replicates": 1000, "level": 0.95, "unit": "patient"}
    for name, entry in report["summary"].items():
        if math.isnan(entry["value"]):  # undefined, e.g. the NPV of a model never saying 'normal'
            continue
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
        # NSD at the run's tolerance, and the worst-value convention, both say what they are.
        assert report["nsd_tolerance_mm"] == load_run(trained).cfg.eval.nsd_tolerance == 2.0
        assert "2 mm" in report["definitions"]["nsd"]
        missed = [r for r in rows if math.isnan(float(r["hd95"]))]
        assert report["empty_masks"]["one_empty"] == report["details"]["one_empty"] == len(missed)
        assert f"({len(missed)} case-class pairs" in report["definitions"]["hd95"]
        for row in rows:
            image = read_image(cases[row["case_id"]].image)
            pred = read_image(out / "predictions" / f"{row['case_id']}.nii.gz").array
            truth = read_image(cases[row["case_id"]].label).array
            nsd = normalized_surface_dice(pred, truth, image.spacing, 2.0)
            assert float(row["nsd"]) == pytest.approx(nsd, abs=1e-5)
            worst = float(row["hd95_worst"])
            if row in missed:
                assert worst == pytest.approx(image_diagonal(image.shape, image.spacing), rel=1e-5)
            else:
                assert worst == pytest.approx(float(row["hd95"]), rel=1e-5)
        found, lost = (sum(int(r[k]) for r in rows) for k in ("lesion_tp", "lesion_fn"))
        lesions = report["summary"]["lesion_sensitivity"]["value"]
        assert lesions == pytest.approx(
            found / (found + lost) if found + lost else math.nan, nan_ok=True
        )
    else:
        assert list(rows[0])[:3] == ["case_id", "label", "prediction"]
        probs = np.array([[float(r[k]) for k in r if k.startswith("prob_")] for r in rows])
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
        assert (out / "confusion_matrix.png").exists() and (out / "roc.png").exists()
        matrix = np.array(report["details"]["confusion_matrix"])
        assert matrix.sum() == len(rows)
        accuracy = np.mean([r["label"] == r["prediction"] for r in rows])
        assert report["summary"]["accuracy"]["value"] == pytest.approx(accuracy)
        # Sensitivity is that of the abnormal class the config names, and says so.
        assert report["positive_class"] == "finding" == report["details"]["positive_class"]
        findings = [r for r in rows if r["label"] == "finding"]
        found = np.mean([r["prediction"] == "finding" for r in findings])
        assert report["summary"]["sensitivity"]["value"] == pytest.approx(found)
        assert report["details"]["sensitivity_finding"] == pytest.approx(found)
        for name in ("sensitivity", "specificity", "ppv", "npv", "auroc"):
            assert "positive class 'finding'" in report["definitions"][name]
        assert "Positive class: `finding`" in (trained / "MODEL_CARD.md").read_text()
    assert set(report["definitions"]) == set(report["summary"])  # every value is explained
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
    entry = report["summary"][METRIC]
    assert f"| {METRIC} | {entry['value']:.3f} |" in card
    width = f"{entry['high'] - entry['low']:.3f} wide, over {report['n_patients']} patients"
    assert width in card and "the intervals are wide" not in card


@pytest.mark.applies(task="classification")  # the positive class
def test_positive_class_is_checked_and_an_empty_one_is_printed(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = trained / "config.yaml"
    text = config.read_text()
    assert "positive_class: finding" in text
    config.write_text(text.replace("positive_class: finding", "positive_class: nodule"))
    assert main(["evaluate", str(trained)]) == 2
    err = capsys.readouterr().err
    assert "'data.positive_class' = 'nodule' is not one of the classes found" in err
    assert "['finding', 'normal']" in err and len(err.strip().splitlines()) == 1
    config.write_text(text.replace("positive_class: finding", "positive_class: ''"))
    assert main(["evaluate", str(trained)]) == 0
    assert "positive class: 'normal' (data.positive_class is empty" in capsys.readouterr().out
    report = json.loads((trained / "evaluation" / "val" / "metrics.json").read_text())
    assert report["positive_class"] == "normal"
    assert report["summary"]["sensitivity"]["value"] == pytest.approx(
        report["details"]["sensitivity_normal"], nan_ok=True
    )


def test_segmentation_definitions_name_class_convention_and_tolerance() -> None:
    from {{ cookiecutter.package_name }}.evaluate.evaluation import segmentation_definitions
    from {{ cookiecutter.package_name }}.metrics.segmentation import (
        summarize_segmentation,
    )

    truth = np.zeros((12, 12), dtype=int)
    truth[2:5, 2:5], truth[7:10, 7:10] = 1, 2
    cases = [
        segmentation_metrics(truth, truth, 1.0, classes=(1, 2)),
        segmentation_metrics(np.where(truth == 2, 0, truth), truth, 1.0, classes=(1, 2)),
    ]
    details = summarize_segmentation(cases, classes=(1, 2))
    names = ["dice", "hd95", "hd95_worst", "nsd", "lesion_sensitivity", "hd95_2", "nsd_1"]
    text = segmentation_definitions(names, details, 1.5)
    assert "(1 case-class pairs, see hd95_worst)" in text["hd95"]  # class 2 missed once
    assert "(1 case-class pairs) scored the image diagonal" in text["hd95_worst"]
    assert text["hd95_2"].endswith("(class 2)") and "(1 case-class pairs" in text["hd95_2"]
    assert "(0 case-class pairs" in segmentation_definitions(["hd95_1"], details, 1.5)["hd95_1"]
    assert "1.5 mm" in text["nsd"] and text["nsd_1"].endswith("(class 1)")
    assert text["dice"].endswith("(per case the mean over the classes)")
    assert "(3 of 4)" in text["lesion_sensitivity"]
    binary = segmentation_definitions(["dice", "hd95"], details, 1.5)
    assert not binary["dice"].endswith(")") and "class" not in binary["hd95"].split(";")[-1]


def test_model_card_describes_intervals_from_their_width() -> None:
    def report(patients: int, low: float, high: float) -> dict:
        entry = {"value": (low + high) / 2, "low": low, "high": high}
        return {"n_patients": patients, "summary": {"accuracy": entry, METRIC: entry}}

    one = interval_sentence(report(1, 0.8, 0.8))
    assert "0.000 wide, over 1 patient: zero width" in one and "not measured at all" in one
    three = interval_sentence(report(3, 0.5, 0.9))
    assert f"{METRIC} is 0.500 – 0.900, 0.400 wide, over 3 patients" in three
    assert "fewer than 5 patients" in three and "zero" not in three
    many = interval_sentence(report(40, 0.71, 0.79))
    assert "0.080 wide, over 40 patients." in many and "fewer" not in many
    perfect = interval_sentence(report(40, 1.0, 1.0))  # every case right in every resample
    assert "zero width because every resample gave the same value" in perfect
    assert "fewer" not in perfect


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
    different = train_small("data.normalization=none", "train.epochs=1")
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


@pytest.fixture
def extra_metric() -> tuple[str, str]:
    """A metric registered for this test only: the built-in one it must equal, and its name.

    Segmentation: Dice written out again; classification: accuracy written out again. Both
    are computed on everything the built-in is computed on, so every value must agree.
    """
    if SEGMENTATION:

        def again(pred: np.ndarray, truth: np.ndarray, spacing: tuple[float, ...]) -> float:
            total = np.count_nonzero(pred) + np.count_nonzero(truth)
            return 1.0 if total == 0 else 2.0 * np.count_nonzero(pred & truth) / total

    else:

        def again(labels: np.ndarray, probabilities: np.ndarray, positive: int) -> float:
            return float(np.mean(np.argmax(probabilities, axis=1) == labels))

    builtin = "dice" if SEGMENTATION else "accuracy"
    register(TASK, f"{builtin}_again", definition=f"{builtin}, computed a second time")(again)
    yield builtin, f"{builtin}_again"
    unregister(TASK, f"{builtin}_again")


def test_a_registered_metric_reaches_metrics_csv_metrics_json_and_the_card(
    tiny: Path, extra_metric: tuple[str, str]
) -> None:
    builtin, name = extra_metric
    # One registration and nothing else: a validation column, a valid monitor, ...
    run = train_small("train.epochs=2", f"train.monitor=val_{name}")
    epochs = read_rows(run / "metrics.csv")
    assert len(epochs) == 2
    for row in epochs:
        assert float(row[f"val_{name}"]) == pytest.approx(float(row[f"val_{builtin}"]), abs=1e-12)
    # ... and an evaluated value with its interval, definition and per-case column.
    assert main(["evaluate", str(run)]) == 0
    out = run / "evaluation" / "val"
    report = json.loads((out / "metrics.json").read_text())
    ours, reference = report["summary"][name], report["summary"][builtin]
    assert ours == pytest.approx(reference, abs=1e-12)  # value, low and high
    assert report["definitions"][name] == f"{builtin}, computed a second time"
    if SEGMENTATION:
        rows = read_rows(out / "per_case.csv")
        assert [float(r[name]) for r in rows] == pytest.approx([float(r["dice"]) for r in rows])
    assert f"| {name} | {ours['value']:.3f} |" in (run / "MODEL_CARD.md").read_text()


def test_find_images_keeps_the_other_images_beside_a_dicom_series(tmp_path: Path) -> None:
    """A folder holding DICOM files is one series, and its NIfTI/PNG files and sub-folders are
    still inputs (they were silently dropped)."""
    from {{ cookiecutter.package_name }}.evaluate.predict import find_images

    (tmp_path / "sub").mkdir()
    for name in ("slice1.dcm", "slice2.dcm", "a.nii.gz", "sub/b.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert find_images([tmp_path]) == [tmp_path, tmp_path / "a.nii.gz", tmp_path / "sub" / "b.png"]
