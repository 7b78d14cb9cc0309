"""``compare``: paired differences with a patient bootstrap interval and a permutation p-value."""

from __future__ import annotations

import csv
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from tiny_data import TASK

from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.evaluate.compare import (
    higher_is_better,
    holm,
    paired_difference,
    per_patient,
    sign_flip_p_value,
    smallest_p,
)
from {{ cookiecutter.package_name }}.metrics.registry import register, unregister


def patients(values: np.ndarray) -> dict[str, float]:
    return {f"p{i:03d}": float(v) for i, v in enumerate(values)}


def test_direction_of_built_in_and_registered_metrics() -> None:
    assert higher_is_better("dice") and higher_is_better("dice_2") and higher_is_better("nsd")
    assert not higher_is_better("hd95") and not higher_is_better("assd_worst_1")
    assert not higher_is_better("brier") and not higher_is_better("log_loss")
    register("segmentation", "surface_error", definition="mm", higher_is_better=False)(
        lambda pred, truth, spacing: 0.0
    )
    try:
        assert not higher_is_better("surface_error") and not higher_is_better("surface_error_2")
    finally:
        unregister("segmentation", "surface_error")
    assert higher_is_better("surface_error")  # unknown names: larger is better


def test_a_constant_difference_gives_exactly_that_interval() -> None:
    a = np.random.default_rng(0).uniform(0.5, 0.9, 30)
    result = paired_difference(patients(a), patients(a + 0.05))
    assert result["difference"] == pytest.approx(0.05)
    assert result["low"] == pytest.approx(0.05) and result["high"] == pytest.approx(0.05)
    # Only the all-plus pattern (and all-minus) reaches the observed mean: p = 1 / (1 + 10000).
    assert result["p_value"] == pytest.approx(1 / 10001)
    assert result["wilcoxon_p"] < 1e-5 and not result["exact"]


def test_a_noisy_known_difference_gives_the_normal_theory_interval() -> None:
    rng = np.random.default_rng(1)
    a = rng.uniform(0.5, 0.9, 60)
    d = rng.normal(0.03, 0.05, 60)
    result = paired_difference(patients(a), patients(a + d))
    half = stats.norm.ppf(0.975) * d.std(ddof=0) / np.sqrt(d.size)  # the bootstrap's normal limit
    assert result["difference"] == pytest.approx(d.mean())
    assert result["low"] == pytest.approx(d.mean() - half, abs=0.1 * half)
    assert result["high"] == pytest.approx(d.mean() + half, abs=0.1 * half)
    assert result["low"] <= 0.03 <= result["high"]  # covers the planted difference
    assert result["p_value"] < 0.01  # and finds it


def test_a_null_difference_is_called_significant_about_five_percent_of_the_time() -> None:
    rng = np.random.default_rng(2)
    calls, repeats = 0, 300
    for _ in range(repeats):
        a = rng.uniform(0.5, 0.9, 20)
        b = a + rng.normal(0, 0.05, 20)  # the same model up to noise
        result = paired_difference(patients(a), patients(b), replicates=200, permutations=1000)
        calls += result["p_value"] < 0.05
    assert 0.02 <= calls / repeats <= 0.09


def test_exact_p_value_enumerates_every_sign_pattern() -> None:
    d = np.array([0.3, -0.1, 0.25, 0.4, 0.05, 0.2])
    hits = sum(
        abs(np.mean(np.array(signs) * d)) >= abs(d.mean()) - 1e-12
        for signs in itertools.product((1, -1), repeat=d.size)
    )
    assert sign_flip_p_value(d) == pytest.approx(hits / 2**d.size)
    assert sign_flip_p_value(np.zeros(5)) == 1.0
    assert sign_flip_p_value(np.full(4, 0.5)) == smallest_p(4) == 0.125  # never below 0.05
    assert smallest_p(6) < 0.05
    with pytest.raises(ValueError, match="finite"):
        sign_flip_p_value([0.1, float("nan")])


def test_holm_and_per_patient_means() -> None:
    # By hand: sorted 0.005, 0.01, 0.03, 0.04 -> 4x, 3x, 2x, 1x = 0.02, 0.03, 0.06, 0.04 -> 0.06.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert per_patient([0.2, 0.4, 0.9, float("nan")], ["x", "x", "y", "y"]) == pytest.approx(
        {"x": 0.3, "y": 0.9}
    )
    with pytest.raises(ValueError, match="same patients"):
        paired_difference({"x": 1.0}, {"y": 1.0})


def _rewrite(path: Path, change) -> None:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    columns = list(rows[0])
    rows = change(rows)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


@pytest.mark.slow
def test_compare_runs_on_the_same_cases_and_refuses_others(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = shutil.copytree(trained, trained.parent / "2099-01-01_000000_other")
    assert main(["compare", str(trained), str(other)]) == 2
    assert "has no evaluation on val" in capsys.readouterr().err
    assert main(["evaluate", str(trained)]) == 0
    assert main(["evaluate", str(other)]) == 0
    capsys.readouterr()
    assert main(["compare", str(trained), str(other)]) == 0  # the same model: no difference
    out = capsys.readouterr().out
    assert "difference +0.0000" in out and "no difference" in out
    (report,) = (trained.parents[1] / "reports" / "compare").glob("*_trained_vs_other.md")
    assert report.with_suffix(".png").stat().st_size > 0
    # A planted difference: B right on every case (classification) or Dice + 0.1 everywhere.
    per_case = other / "evaluation" / "val" / "per_case.csv"
    if TASK == "segmentation":
        metric, planted = "dice", None

        def change(rows):
            for row in rows:
                row["dice"] = str(float(row["dice"]) + 0.1)
            return rows
    else:
        metric = "accuracy"
        with open(trained / "evaluation" / "val" / "per_case.csv", newline="") as handle:
            wrong = [r["label"] != r["prediction"] for r in csv.DictReader(handle)]
        planted = float(np.mean(wrong))  # one case per patient in the tiny data

        def change(rows):
            for row in rows:
                row["prediction"] = row["label"]
            return rows

    _rewrite(per_case, change)
    assert main(["compare", str(trained), str(other), "--metric", metric]) == 0
    out = capsys.readouterr().out
    expected = 0.1 if planted is None else planted
    assert f"difference {expected:+.4f}" in out
    # Different cases, different splits files, an unknown metric: one-line errors.
    _rewrite(per_case, lambda rows: rows[1:])
    assert main(["compare", str(trained), str(other)]) == 2
    assert "different cases" in capsys.readouterr().err
    shutil.copy(trained / "evaluation" / "val" / "per_case.csv", per_case)
    metrics = other / "evaluation" / "val" / "metrics.json"
    report_b = json.loads(metrics.read_text())
    metrics.write_text(json.dumps({**report_b, "splits_sha256": "0" * 64}))
    assert main(["compare", str(trained), str(other)]) == 2
    assert "different splits files" in capsys.readouterr().err
    metrics.write_text(json.dumps(report_b))
    assert main(["compare", str(trained), str(other), "--metric", "auroc"]) == 2
    assert "auroc" in capsys.readouterr().err
