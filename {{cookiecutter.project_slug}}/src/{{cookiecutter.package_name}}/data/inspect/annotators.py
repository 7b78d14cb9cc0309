"""Agreement between annotators: per case, per pair of annotators, and the worst cases."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .statistics import mean_label_dice

if TYPE_CHECKING:
    from .cases import CaseResult

PRIMARY = "label"  # the name of the manifest's own label column among the annotators
LARGEST_DISAGREEMENTS = 10


def pair_agreement(ratings: Mapping[str, Any]) -> dict[tuple[str, str], float]:
    """Agreement of every pair of annotators on one case.

    Args:
        ratings: annotator -> class name, or annotator -> mask array (all of one shape); the
            manifest's own ``label`` comes first in each pair, the others in name order.

    Returns:
        ``{(a, b): score}``: :func:`mean_label_dice` of masks, or 1.0/0.0 for equal/different
        class names.
    """
    names = [n for n in ratings if n == PRIMARY] + sorted(n for n in ratings if n != PRIMARY)
    scores = {}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            x, y = ratings[a], ratings[b]
            scores[(a, b)] = float(x == y) if isinstance(x, str) else mean_label_dice(x, y)
    return scores


def annotator_summary(results: Sequence[CaseResult], task: str) -> dict[str, Any] | None:
    """Agreement between annotators, per pair and per case, or ``None`` with one annotator.

    Segmentation compares masks with :func:`mean_label_dice`; classification counts equal labels
    (and Cohen's kappa per pair). A case's agreement is its lowest pair; the cases with the
    lowest agreement are listed first under ``largest_disagreements``.
    """
    rated = [r for r in results if r.agreement]
    if not rated:
        return None
    pair_scores: dict[tuple[str, str], list[float]] = defaultdict(list)
    pair_labels: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for r in rated:
        for (a, b), score in r.agreement.items():
            pair_scores[(a, b)].append(score)
            if task == "classification":
                pair_labels[(a, b)].append((r.labels[a], r.labels[b]))
    pairs = []
    for (a, b), scores in pair_scores.items():
        entry: dict[str, Any] = {"a": a, "b": b, "cases": len(scores)}
        entry.update(mean=float(np.mean(scores)), min=float(np.min(scores)))
        if task == "classification":
            entry["kappa"] = cohen_kappa(pair_labels[(a, b)])
        pairs.append(entry)
    per_case = {r.record["case_id"]: min(r.agreement.values()) for r in rated}
    worst = sorted((r for r in rated if min(r.agreement.values()) < 1), key=_disagreement)
    largest = []
    for r in worst[:LARGEST_DISAGREEMENTS]:
        item: dict[str, Any] = {
            "case_id": r.record["case_id"],
            "agreement": min(r.agreement.values()),
        }
        item["pairs"] = {f"{a} vs {b}": score for (a, b), score in r.agreement.items()}
        if task == "classification":
            item["labels"] = dict(r.labels)
        largest.append(item)
    return {
        "metric": "agreement" if task == "classification" else "dice",
        "raters": sorted({name for r in rated for pair in r.agreement for name in pair}),
        "cases_rated": len(rated),
        "cases_disagreeing": len(worst),
        "pairs": pairs,
        "per_case": per_case,
        "largest_disagreements": largest,
    }


def _disagreement(result: CaseResult) -> tuple[float, str]:
    return min(result.agreement.values()), result.record["case_id"]


def cohen_kappa(labels: Sequence[tuple[str, str]]) -> float | None:
    """Cohen's kappa of two annotators' class labels (``None`` when chance agreement is 1)."""
    if not labels:
        raise ValueError("kappa needs at least one pair of labels")
    observed = float(np.mean([a == b for a, b in labels]))
    first = Counter(a for a, _ in labels)
    second = Counter(b for _, b in labels)
    n = len(labels)
    expected = sum(first[k] * second[k] for k in first) / (n * n)
    return None if expected >= 1 else (observed - expected) / (1 - expected)
