"""Calibration error, reliability bins, the validation-chosen threshold and temperature scaling."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from tiny_data import TASK

from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.config import load_config
from {{ cookiecutter.package_name }}.metrics.calibration import (
    apply_temperature,
    calibration_target,
    choose_threshold,
    expected_calibration_error,
    fit_temperature,
    reliability_bins,
)
from {{ cookiecutter.package_name }}.utils.errors import ConfigError

CLASSIFICATION = TASK == "classification"


def test_ece_of_a_calibrated_classifier_is_near_zero_and_of_an_overconfident_one_is_not() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 20000)
    y = rng.uniform(0, 1, p.size) < p  # the event happens with exactly the stated probability
    assert expected_calibration_error(y, p) < 0.015
    overconfident = np.where(p > 0.5, 1 - (1 - p) ** 3, p**3)  # pushed towards 0 and 1
    # Planted gap: sum over bins of |p - f(p)| weighted by the bin's share, about 0.11.
    assert expected_calibration_error(y, overconfident) > 0.08
    # A classifier that always says 0.8 for events that happen half the time: ECE = 0.3 exactly.
    assert expected_calibration_error([1, 0] * 50, [0.8] * 100) == pytest.approx(0.3)


def test_reliability_bins_match_sklearn_calibration_curve() -> None:
    calibration = pytest.importorskip("sklearn.calibration")
    rng = np.random.default_rng(1)
    p = np.concatenate([rng.uniform(0, 1, 300), [0.0, 0.1, 0.2, 0.5, 0.9, 1.0]])  # inner edges
    y = (rng.uniform(0, 1, p.size) < p).astype(int)
    for n_bins in (5, 10, 15):
        bins = reliability_bins(y, p, n_bins)
        observed, predicted = calibration.calibration_curve(y, p, n_bins=n_bins)
        filled = bins["count"] > 0
        np.testing.assert_allclose(bins["observed"][filled], observed)
        np.testing.assert_allclose(bins["predicted"][filled], predicted)
        assert bins["count"].sum() == p.size


def test_calibration_target_is_the_positive_class_or_the_top_label() -> None:
    labels = np.array([0, 1, 2, 1])
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.2, 0.6], [0.3, 0.5, 0.2]])
    outcome, confidence = calibration_target(labels, probs, None)
    np.testing.assert_array_equal(outcome, [1, 0, 1, 1])
    np.testing.assert_allclose(confidence, [0.7, 0.6, 0.6, 0.5])
    outcome, probability = calibration_target(np.array([0, 1]), np.array([[0.3, 0.7]] * 2), 0)
    np.testing.assert_array_equal(outcome, [1, 0])
    np.testing.assert_allclose(probability, [0.3, 0.3])


def _brute_force_youden(truth: np.ndarray, prob: np.ndarray) -> float:
    best, best_t = -2.0, math.nan
    for t in sorted(set(prob.tolist()), reverse=True):
        called = prob >= t
        j = called[truth == 1].mean() + (~called[truth == 0]).mean() - 1
        if j > best + 1e-12:
            best, best_t = j, t
    return best_t


def test_threshold_by_youden_and_by_target_sensitivity() -> None:
    truth = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    prob = np.array([0.05, 0.2, 0.45, 0.6, 0.3, 0.65, 0.7, 0.9])
    # By hand: at 0.65, 3 of 4 positives and every negative (J = 0.75); 0.3 and 0.7 give 0.5.
    chosen = choose_threshold(truth, prob)
    assert chosen["threshold"] == 0.65
    assert (chosen["sensitivity"], chosen["specificity"]) == (0.75, 1.0)
    assert "Youden" in chosen["rule"]
    rng = np.random.default_rng(2)
    for _ in range(20):
        t = rng.integers(0, 2, 40)
        if t.min() == t.max():
            continue
        p = np.round(np.clip(rng.normal(0.4 + 0.2 * t, 0.2), 0, 1), 2)
        assert choose_threshold(t, p)["threshold"] == _brute_force_youden(t, p)
    # Every positive found: the lowest positive's probability, 0.3, keeping specificity 2/4.
    full = choose_threshold(truth, prob, target_sensitivity=1.0)
    assert (full["threshold"], full["sensitivity"], full["specificity"]) == (0.3, 1.0, 0.5)
    with pytest.raises(ValueError, match="positive and negative"):
        choose_threshold([1, 1], [0.2, 0.4])
    with pytest.raises(ValueError, match="target_sensitivity"):
        choose_threshold(truth, prob, target_sensitivity=1.5)


def test_temperature_scaling_recovers_a_planted_temperature() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 3, (6000, 3))
    true_probs = apply_temperature(np.exp(logits), 2.0)  # the truth is twice as uncertain
    labels = np.array([rng.choice(3, p=row) for row in true_probs])
    model = apply_temperature(np.exp(logits), 1.0)  # the overconfident model's softmax
    fitted = fit_temperature(labels, model)
    assert fitted["temperature"] == pytest.approx(2.0, rel=0.08)
    assert fitted["nll_after"] < fitted["nll_before"]
    calibrated = apply_temperature(model, fitted["temperature"])
    np.testing.assert_array_equal(calibrated.argmax(1), model.argmax(1))  # ranking unchanged
    np.testing.assert_allclose(calibrated.sum(1), 1.0)
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature(model, 0.0)


def test_calibration_config_keys_are_checked(project: Path) -> None:
    assert load_config().eval.target_sensitivity == 0.0
    assert load_config().eval.calibrate == "none"
    with pytest.raises(ConfigError, match="eval.target_sensitivity"):
        load_config(["eval.target_sensitivity=1.5"])
    with pytest.raises(ConfigError, match="eval.calibrate"):
        load_config(["eval.calibrate=platt"])
    if not CLASSIFICATION:
        with pytest.raises(ConfigError, match="classification"):
            load_config(["eval.calibrate=temperature"])


def _per_case(folder: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    with open(folder / "per_case.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    names = [k.removeprefix("prob_") for k in rows[0] if k.startswith("prob_")]
    probs = np.array([[float(r[f"prob_{n}"]) for n in names] for r in rows])
    labels = np.array([names.index(r["label"]) for r in rows])
    return labels, probs, names


@pytest.mark.slow
@pytest.mark.applies(task="classification")  # calibration and thresholds
def test_evaluate_reports_ece_and_applies_the_validation_threshold_to_test(trained: Path) -> None:
    assert main(["evaluate", str(trained)]) == 0
    val = json.loads((trained / "evaluation" / "val" / "metrics.json").read_text())
    labels, probs, names = _per_case(trained / "evaluation" / "val")
    positive = names.index("finding")
    outcome, probability = calibration_target(labels, probs, positive)
    assert val["summary"]["ece"]["value"] == pytest.approx(
        expected_calibration_error(outcome, probability), abs=1e-5
    )
    assert val["summary"]["ece"]["low"] <= val["summary"]["ece"]["high"]
    assert (trained / "evaluation" / "val" / "reliability.png").stat().st_size > 0
    threshold = val["threshold"]
    if labels.min() == labels.max():  # the tiny fold holds one class: no threshold, said why
        assert threshold["value"] is None and "positive and negative" in threshold["why_none"]
    else:
        assert threshold["value"] == pytest.approx(
            choose_threshold(labels == positive, probs[:, positive])["threshold"], abs=1e-5
        )
    assert main(["evaluate", str(trained), "--split", "test"]) == 0
    test = json.loads((trained / "evaluation" / "test" / "metrics.json").read_text())
    assert test["threshold"]["value"] == val["threshold"]["value"]  # chosen once, on validation
    assert "validation cases of fold 0" in test["threshold"]["chosen_on"]
    if test["threshold"]["value"] is not None:
        t_labels, t_probs, _ = _per_case(trained / "evaluation" / "test")
        called = t_probs[:, positive] >= test["threshold"]["value"]
        found = called[t_labels == positive]
        assert test["summary"]["sensitivity_at_threshold"]["value"] == pytest.approx(
            found.mean() if found.size else math.nan, nan_ok=True
        )
        card = (trained / "MODEL_CARD.md").read_text()
        assert "Decision threshold p(`finding`) >=" in card and "applied unchanged" in card
    assert "Calibration: expected calibration error" in (trained / "MODEL_CARD.md").read_text()


@pytest.mark.slow
@pytest.mark.applies(task="classification")  # temperature scaling
def test_temperature_is_fitted_on_validation_stored_and_used_by_predict(trained: Path) -> None:
    assert main(["evaluate", str(trained)]) == 0
    labels, raw, _ = _per_case(trained / "evaluation" / "val")
    config = yaml.safe_load((trained / "config.yaml").read_text())
    config["eval"]["calibrate"] = "temperature"
    (trained / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["evaluate", str(trained)]) == 0
    stored = json.loads((trained / "calibration.json").read_text())["best"]
    expected = fit_temperature(labels, raw)["temperature"]
    assert stored["temperature"] == pytest.approx(expected, rel=1e-3)
    _, calibrated, _ = _per_case(trained / "evaluation" / "val")
    np.testing.assert_allclose(calibrated, apply_temperature(raw, stored["temperature"]), atol=2e-5)
    report = json.loads((trained / "evaluation" / "val" / "metrics.json").read_text())
    assert report["calibration"]["temperature"] == [pytest.approx(stored["temperature"])]
    images = trained.parents[1] / "data" / "tiny" / "images"
    assert main(["predict", str(trained), str(images), "--out", "pred"]) == 0
    with open(trained.parents[1] / "pred" / "predictions.csv", newline="") as handle:
        predicted = {
            Path(r["input"]).name.removesuffix(".nii.gz"): r for r in csv.DictReader(handle)
        }
    with open(trained / "evaluation" / "val" / "per_case.csv", newline="") as handle:
        val_rows = list(csv.DictReader(handle))
    for row in val_rows:  # the same images: the same calibrated probabilities
        for key in (k for k in row if k.startswith("prob_")):
            assert float(predicted[row["case_id"]][key]) == pytest.approx(float(row[key]), abs=1e-5)
