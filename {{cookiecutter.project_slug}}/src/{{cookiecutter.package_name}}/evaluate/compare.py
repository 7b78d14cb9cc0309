"""``compare``: is the difference between two runs real, or the noise of a small evaluation set?

Two runs evaluated on the *same* cases are compared case by case, not by their two whole-set
numbers: most of the spread between patients is shared by both runs and cancels in the paired
difference, so a paired comparison sees differences that two separate intervals would hide.

- Per-case values (``per_case.csv`` of ``evaluate``) are averaged per patient (several images
  of one patient are one piece of evidence), and the per-patient difference ``B - A`` is taken.
  Patients whose value is undefined (NaN) under either run are left out and counted.
- The mean difference gets a 95% percentile bootstrap interval resampling patients (the pairs
  stay together).
- The p-value is that of a paired sign-flip permutation test of "no difference": under the
  null hypothesis each patient's difference is as likely to have the opposite sign, so the
  observed mean is compared with the means of randomly sign-flipped differences (every one of
  the ``2^n`` sign patterns up to :data:`EXACT_UP_TO` patients, else :data:`PERMUTATIONS` random
  ones, counting the observed one). The Wilcoxon signed-rank p-value (SciPy) is given beside it.
- Several changes tested against one baseline (``ablate``) get Holm-adjusted p-values, which keep
  the chance of calling any null change real at 5% or less.

Classification has no per-case AUROC; its per-case metrics are ``brier`` (squared error of the
probability vector against the one-hot truth, lower is better), ``log_loss`` (minus the log of the
true class's probability) and ``accuracy`` (1 if the predicted class is right).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import wilcoxon

from .. import paths
from ..metrics.registry import monitor_mode
from ..utils.errors import ProjectError
from ..utils.io import atomic_write_text

LEVEL = 0.95
REPLICATES = 10000  # bootstrap replicates of the mean difference
PERMUTATIONS = 10000  # random sign patterns when there are too many patients to enumerate
EXACT_UP_TO = 16  # patients: up to 2^16 sign patterns are enumerated exactly
ALPHA = 0.05
CLASSIFICATION_METRICS = ("brier", "log_loss", "accuracy")
LOWER_IS_BETTER = ("hd95", "assd", "hd95_worst", "assd_worst", "brier", "log_loss", "lesion_fp")
DEFAULT_METRIC = {"segmentation": "dice", "classification": "brier"}
FOLDER = re.compile(r"^\d{4}-\d{2}-\d{2}_\d{6}_(.+)$")


class CompareError(ProjectError):
    """The two runs cannot be compared as asked (no evaluation, different cases or splits)."""


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of ``metric`` (or of its per-class ``metric_<k>``) is better
    (a registered metric says so itself, see :mod:`..metrics.registry`)."""
    base = re.sub(r"_\d+$", "", metric)
    return base not in LOWER_IS_BETTER and monitor_mode(f"val_{base}") == "max"


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of p-values (family-wise error control).

    Args:
        p_values: one p-value per hypothesis; NaN stays NaN and is not counted.

    Returns:
        The adjusted p-values in the input order: the ``i``-th smallest of ``m`` becomes
        ``max_{j <= i} (m - j + 1) p_(j)``, capped at 1.
    """
    values = np.asarray(p_values, dtype=float)
    adjusted = np.full(values.shape, math.nan)
    defined = np.flatnonzero(~np.isnan(values))
    order = defined[np.argsort(values[defined], kind="stable")]
    m, running = order.size, 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * values[index]))
        adjusted[index] = running
    return adjusted.tolist()


def sign_flip_p_value(
    differences: Sequence[float] | np.ndarray, permutations: int = PERMUTATIONS, seed: int = 0
) -> float:
    """Two-sided p-value of a paired sign-flip permutation test of a zero mean difference.

    Args:
        differences: per-patient differences ``(n,)``, finite.
        permutations: random sign patterns when ``n > EXACT_UP_TO`` (at least 100).
        seed: seed of those random patterns.

    Returns:
        The share of sign patterns whose absolute mean is at least the observed one: exact over
        all ``2^n`` patterns for ``n <= EXACT_UP_TO``, else ``(1 + hits) / (1 + permutations)``.
        1.0 when every difference is 0.

    Raises:
        ValueError: no differences, a non-finite one, or too few permutations.
    """
    d = np.asarray(differences, dtype=float)
    if d.ndim != 1 or d.size == 0 or not np.all(np.isfinite(d)):
        raise ValueError(f"differences must be a non-empty 1-D array of finite values, got {d}")
    if int(permutations) < 100:
        raise ValueError(f"permutations must be at least 100, got {permutations}")
    observed = abs(d.mean())
    tolerance = 1e-12 * max(1.0, float(np.abs(d).max()))
    if d.size <= EXACT_UP_TO:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
        return float(np.mean(np.abs(signs @ d) / d.size >= observed - tolerance))
    rng = np.random.default_rng(int(seed))
    hits = 0
    for start in range(0, int(permutations), 2000):  # in chunks: n x 2000 at most in memory
        count = min(2000, int(permutations) - start)
        signs = rng.choice((-1.0, 1.0), size=(count, d.size))
        hits += int(np.sum(np.abs(signs @ d) / d.size >= observed - tolerance))
    return (1.0 + hits) / (1.0 + int(permutations))


def per_patient(values: Sequence[float], patients: Sequence[str]) -> dict[str, float]:
    """The mean of each patient's defined values (NaN when the patient has none)."""
    sums: dict[str, list[float]] = {}
    for value, patient in zip(values, patients, strict=True):
        sums.setdefault(str(patient), []).append(float(value))
    result = {}
    for patient, items in sums.items():
        defined = [v for v in items if not math.isnan(v)]
        result[patient] = float(np.mean(defined)) if defined else math.nan
    return result


def paired_difference(
    first: Mapping[str, float],
    second: Mapping[str, float],
    *,
    replicates: int = REPLICATES,
    permutations: int = PERMUTATIONS,
    seed: int = 0,
    level: float = LEVEL,
) -> dict[str, Any]:
    """Paired comparison of two runs' per-patient values on the same patients.

    Args:
        first: ``{patient: value}`` of run A.
        second: ``{patient: value}`` of run B, the same patients.
        replicates: bootstrap replicates of the mean difference (at least 100).
        permutations: random sign patterns for the p-value with many patients.
        seed: seed of the bootstrap and of the random patterns.
        level: coverage of the interval, in (0, 1).

    Returns:
        ``n_patients`` (with a value under both), ``left_out`` (undefined under either),
        ``mean_a``, ``mean_b``, ``difference`` (mean of B - A), ``low``/``high`` (the interval),
        ``p_value`` (sign-flip permutation), ``wilcoxon_p`` (NaN when all differences are 0),
        ``exact`` (whether the permutation p-value enumerated every pattern) and the per-patient
        ``patients``, ``a``, ``b`` lists.

    Raises:
        ValueError: the patients differ, no patient has a value under both, bad settings.
    """
    if set(first) != set(second):
        only = sorted(set(first) ^ set(second))
        raise ValueError(f"the two runs must have the same patients; these differ: {only[:5]}")
    if int(replicates) < 100 or not 0 < float(level) < 1:
        raise ValueError(f"need replicates >= 100 and 0 < level < 1, got {replicates}, {level}")
    patients = sorted(first)
    both = [p for p in patients if not (math.isnan(first[p]) or math.isnan(second[p]))]
    if not both:
        raise ValueError("no patient has a defined value under both runs")
    a = np.array([first[p] for p in both])
    b = np.array([second[p] for p in both])
    d = b - a
    rng = np.random.default_rng(int(seed))
    means = np.empty(int(replicates))
    for start in range(0, int(replicates), 1000):
        count = min(1000, int(replicates) - start)
        drawn = rng.integers(0, d.size, size=(count, d.size))
        means[start : start + count] = d[drawn].mean(axis=1)
    alpha = (1 - float(level)) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    nonzero = d[d != 0]
    return {
        "n_patients": int(d.size),
        "left_out": len(patients) - len(both),
        "mean_a": float(a.mean()),
        "mean_b": float(b.mean()),
        "difference": float(d.mean()),
        "low": float(low),
        "high": float(high),
        "level": float(level),
        "p_value": sign_flip_p_value(d, permutations, seed),
        "exact": bool(d.size <= EXACT_UP_TO),
        "wilcoxon_p": float(wilcoxon(d).pvalue) if nonzero.size else math.nan,
        "patients": both,
        "a": a.tolist(),
        "b": b.tolist(),
    }


def smallest_p(n_patients: int) -> float:
    """The smallest p-value the exact sign-flip test can give with ``n_patients``: ``2 / 2^n``
    (all differences of one sign); with fewer than 6 patients it is above 0.05, so no difference
    can be called real however large."""
    return 2.0 / 2.0 ** int(n_patients) if n_patients <= EXACT_UP_TO else 0.0


def too_few(n_patients: int) -> str:
    """A clause saying that ``n_patients`` cannot reach p < 0.05, or ``""``."""
    if smallest_p(n_patients) < ALPHA:
        return ""
    return (
        f"; with {n_patients} patients no p-value can fall below {smallest_p(n_patients):.3g}, "
        "so no difference could be called real here"
    )


def verdict(result: Mapping[str, Any], metric: str, names: tuple[str, str]) -> str:
    """The comparison in words: which run is better, or that noise cannot be ruled out."""
    n = result["n_patients"]
    if result["p_value"] < ALPHA and not result["low"] <= 0 <= result["high"]:
        gain = result["difference"] if higher_is_better(metric) else -result["difference"]
        better, worse = (names[1], names[0]) if gain > 0 else names
        return (
            f"{better} is better than {worse} on {metric}, a difference distinguishable from "
            f"noise with {n} patients (p = {result['p_value']:.3g} < {ALPHA})"
        )
    return (
        f"no difference in {metric} distinguishable from noise with {n} patients (p = "
        f"{result['p_value']:.3g}; the interval includes 0 or p >= {ALPHA}); this is not "
        "evidence that the runs are equal, only that this sample cannot tell them apart"
        + too_few(n)
    )


# --- runs -------------------------------------------------------------------------------------


def _evaluation(run_dir: Path, split: str) -> tuple[dict[str, Any], list[dict[str, str]]]:
    folder = run_dir / "evaluation" / split
    try:
        report = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        with open(folder / "per_case.csv", newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, ValueError):
        raise CompareError(
            f"run '{run_dir}' has no evaluation on {split}: run `evaluate {run_dir} --split "
            f"{split}` first"
        ) from None
    if not rows or not isinstance(report, dict):
        raise CompareError(f"'{folder}' holds no evaluated case: evaluate the run again")
    return report, rows


def case_values(rows: Sequence[Mapping[str, str]], metric: str, task: str) -> list[float]:
    """The per-case values of ``metric`` from ``per_case.csv`` rows.

    Raises:
        CompareError: the metric is not one the rows have (the message lists them).
    """
    if task == "classification":
        if metric not in CLASSIFICATION_METRICS:
            raise CompareError(
                f"metric '{metric}' has no per-case value for classification: use one of "
                f"{', '.join(CLASSIFICATION_METRICS)}"
            )
        values = []
        for row in rows:
            probs = {
                k.removeprefix("prob_"): float(v) for k, v in row.items() if k.startswith("prob_")
            }
            if metric == "accuracy":
                values.append(float(row["prediction"] == row["label"]))
            elif metric == "log_loss":
                values.append(-math.log(max(probs[row["label"]], 1e-12)))
            else:
                values.append(sum((p - (k == row["label"])) ** 2 for k, p in probs.items()))
        return values
    numeric = [k for k in rows[0] if k not in ("case_id", "patient_id")]
    if metric not in numeric:
        raise CompareError(
            f"metric '{metric}' is not in per_case.csv: use one of {', '.join(numeric)}"
        )
    return [float(row[metric]) if row[metric] not in ("", None) else math.nan for row in rows]


def _short(run_dir: Path) -> str:
    match = FOLDER.match(run_dir.name)
    return match[1] if match else run_dir.name


@dataclass
class Comparison:
    """A finished comparison: the numbers, the sentence and where the report is."""

    result: dict[str, Any]
    metric: str
    text: str
    report: Path
    figure: Path


def paired_runs(
    run_a: str | Path, run_b: str | Path, split: str = "val", metric: str | None = None
) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """The paired comparison of two evaluated runs, checked to be on the same cases.

    Args:
        run_a: the first (reference) run folder.
        run_b: the second run folder; differences are B - A.
        split: ``val`` or ``test``: the evaluation folder compared.
        metric: a per-case metric (default ``dice`` for segmentation, ``brier`` for
            classification).

    Returns:
        ``(result of paired_difference, metric, report of run A)``.

    Raises:
        CompareError: a run without that evaluation, runs of different tasks, evaluated on
            different splits files or on different cases, or a metric without per-case values.
    """
    if split not in ("val", "test"):
        raise ValueError(f"split must be val or test, got {split!r}")
    folders = [paths.resolve(run_a), paths.resolve(run_b)]
    for folder in folders:
        if not folder.is_dir():
            raise CompareError(f"run folder '{folder}' does not exist")
    (report_a, rows_a), (report_b, rows_b) = (_evaluation(f, split) for f in folders)
    if report_a.get("task") != report_b.get("task"):
        raise CompareError(
            f"the runs are of different tasks ({report_a.get('task')} vs {report_b.get('task')})"
        )
    hashes = [report_a.get("splits_sha256"), report_b.get("splits_sha256")]
    if None in hashes:
        which = folders[hashes.index(None)]
        raise CompareError(
            f"'{which}' was evaluated before evaluations recorded their splits.json: evaluate it "
            "again"
        )
    if hashes[0] != hashes[1]:
        raise CompareError(
            f"the runs were evaluated on different splits files (splits.json sha256 "
            f"{hashes[0][:12]} vs {hashes[1][:12]}): re-evaluate both on the same split"
        )
    cases_a = {r["case_id"]: r for r in rows_a}
    cases_b = {r["case_id"]: r for r in rows_b}
    if set(cases_a) != set(cases_b):
        only_a, only_b = sorted(set(cases_a) - set(cases_b)), sorted(set(cases_b) - set(cases_a))
        raise CompareError(
            f"the runs were evaluated on different cases ({len(only_a)} only in "
            f"{folders[0].name}, e.g. {only_a[:3]}; {len(only_b)} only in {folders[1].name}, "
            f"e.g. {only_b[:3]}; different folds?): a paired comparison needs the same cases"
        )
    task = str(report_a.get("task"))
    metric = metric or DEFAULT_METRIC.get(task, "dice")
    order = sorted(cases_a)
    patients = [cases_a[c]["patient_id"] for c in order]
    first = per_patient(case_values([cases_a[c] for c in order], metric, task), patients)
    second = per_patient(case_values([cases_b[c] for c in order], metric, task), patients)
    try:
        result = paired_difference(first, second)
    except ValueError as exc:
        raise CompareError(f"cannot compare {metric}: {exc}") from None
    return result, metric, report_a


def compare_runs(
    run_a: str | Path,
    run_b: str | Path,
    split: str = "val",
    metric: str | None = None,
) -> Comparison:
    """Compare two evaluated runs, write ``reports/compare/<date>_<a>_vs_<b>.md`` and a plot.

    Args:
        run_a: the reference run.
        run_b: the changed run; differences are B - A.
        split: ``val`` or ``test`` (a use of the test set, recorded as :mod:`.test_use` says).
        metric: as :func:`paired_runs`.

    Returns:
        The :class:`Comparison`.

    Raises:
        CompareError: as :func:`paired_runs`.
    """
    result, metric, report = paired_runs(run_a, run_b, split, metric)
    folders = [paths.resolve(run_a), paths.resolve(run_b)]
    names = (folders[0].name, folders[1].name)
    if split == "test":
        from .test_use import record_test_use

        record_test_use(
            "compare",
            folders,
            str(report.get("data_root", "")),
            {"metric": metric},
            echo=lambda line: print(line, file=sys.stderr),
        )
    stem = f"{datetime.now():%Y-%m-%d_%H%M%S}_{_short(folders[0])}_vs_{_short(folders[1])}"
    stem = re.sub(r"[^A-Za-z0-9._+-]+", "_", stem)[:150]
    out = paths.reports_dir() / "compare"
    from ..viz.statistics_plots import plot_paired

    figure = plot_paired(
        result["a"],
        result["b"],
        (_short(folders[0]), _short(folders[1])),
        out / f"{stem}.png",
        f"{metric} per patient ({split}, {result['n_patients']} patients)",
        metric,
    )
    text = summary_text(result, metric, names, split)
    lines = [
        f"# Compare: {names[0]} vs {names[1]}",
        "",
        f"Split `{split}` (splits.json sha256 `{str(report.get('splits_sha256'))[:12]}`), metric "
        f"`{metric}` ({'higher' if higher_is_better(metric) else 'lower'} is better), averaged "
        f"per patient; difference = B - A with A = `{names[0]}`, B = `{names[1]}`.",
        "",
        "| | value |",
        "|---|---|",
        f"| patients compared | {result['n_patients']} (left out, undefined: "
        f"{result['left_out']}) |",
        f"| mean A | {result['mean_a']:.4f} |",
        f"| mean B | {result['mean_b']:.4f} |",
        f"| mean difference B - A | {result['difference']:+.4f} |",
        f"| 95% interval (bootstrap over patients, paired) | [{result['low']:+.4f}, "
        f"{result['high']:+.4f}] |",
        f"| p, paired sign-flip permutation ({'exact' if result['exact'] else 'random'}) | "
        f"{result['p_value']:.4g} |",
        f"| p, Wilcoxon signed-rank | {result['wilcoxon_p']:.4g} |",
        "",
        verdict(result, metric, names) + ".",
        "",
        f"![one line per patient]({figure.name})",
        "",
    ]
    report_path = atomic_write_text(out / f"{stem}.md", "\n".join(lines))
    return Comparison(result, metric, text, report_path, figure)


def summary_text(result: Mapping[str, Any], metric: str, names: tuple[str, str], split: str) -> str:
    """The printed lines of a comparison."""
    return "\n".join(
        [
            f"{metric} on {split}, {result['n_patients']} patients (B - A; A = {names[0]}, "
            f"B = {names[1]}):",
            f"  mean A {result['mean_a']:.4f}, mean B {result['mean_b']:.4f}",
            f"  difference {result['difference']:+.4f}  95% interval [{result['low']:+.4f}, "
            f"{result['high']:+.4f}]  p = {result['p_value']:.4g} (paired permutation), "
            f"{result['wilcoxon_p']:.4g} (Wilcoxon)",
            "  " + verdict(result, metric, names),
        ]
    )
