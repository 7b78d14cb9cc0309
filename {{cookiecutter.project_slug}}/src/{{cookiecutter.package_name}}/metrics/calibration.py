"""Calibrated probabilities and an honestly chosen decision threshold (classification).

- **Reliability and ECE.** Predicted probabilities are put in ``n_bins`` equal-width bins of
  ``[0, 1]`` (as :func:`sklearn.calibration.calibration_curve` with ``strategy="uniform"``: a value
  on an inner edge goes to the lower bin, 1.0 to the last); per bin the mean predicted probability
  and the observed frequency. The expected calibration error is the case-weighted mean of their
  absolute difference, ``sum_b n_b / N * |observed_b - predicted_b|`` (Guo et al. 2017). For a
  binary task the probability is that of the *positive class* and the frequency is how often the
  case is positive; for more classes it is the top-label confidence (the largest probability) and
  how often that top class is right. A perfectly calibrated model has an ECE near 0 (not exactly:
  finite bins and cases leave a small positive bias).
- **Threshold.** A binary decision threshold on the positive class's probability is chosen on
  the validation cases, by Youden's J (the threshold maximizing sensitivity + specificity - 1), or
  as the highest threshold that reaches a target sensitivity (``eval.target_sensitivity``), and
  then applied unchanged to the test set: choosing it on the test set would make its
  sensitivity and specificity optimistic.
- **Temperature scaling** (``eval.calibrate=temperature``): one scalar T > 0 fitted on the
  validation cases by minimizing the negative log-likelihood of ``softmax(log p / T)``; it changes
  the confidence, never the ranking or the arg-max class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize_scalar

from .classification import paired_scores

N_BINS = 10
TEMPERATURE_RANGE = (0.05, 20.0)  # bounds of the fitted temperature


def _binary(outcome, probability) -> tuple[np.ndarray, np.ndarray]:
    truth, prob = paired_scores(outcome, probability, ("outcome", "probability"))
    if prob.min() < 0 or prob.max() > 1:
        raise ValueError("probabilities must be finite and within [0, 1]")
    if not np.all(np.isin(truth, (0, 1, False, True))):
        raise ValueError("outcome must be 0/1 (or False/True) per case")
    return truth.astype(np.float64), prob


def reliability_bins(
    outcome: Sequence[int] | np.ndarray,
    probability: Sequence[float] | np.ndarray,
    n_bins: int = N_BINS,
) -> dict[str, np.ndarray]:
    """Equal-width reliability bins of a probability against a 0/1 outcome.

    Args:
        outcome: shape ``(N,)``, 1 where the event happened (the case is positive, or the top
            class was right).
        probability: shape ``(N,)``, the predicted probability of the event, in ``[0, 1]``.
        n_bins: number of equal-width bins of ``[0, 1]`` (at least 1).

    Returns:
        ``edges`` ``(n_bins + 1,)``; per bin ``count`` ``(n_bins,)`` (ints), ``predicted`` (mean
        probability) and ``observed`` (event frequency), NaN for an empty bin.

    Raises:
        ValueError: shapes differ, empty input, probabilities outside ``[0, 1]``, outcomes not
            0/1, ``n_bins < 1``.
    """
    truth, prob = _binary(outcome, probability)
    if int(n_bins) < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    index = np.searchsorted(edges[1:-1], prob)  # the lower bin on an inner edge, as sklearn
    count = np.bincount(index, minlength=int(n_bins))
    total = np.bincount(index, weights=prob, minlength=int(n_bins))
    events = np.bincount(index, weights=truth, minlength=int(n_bins))
    with np.errstate(invalid="ignore", divide="ignore"):
        predicted = np.where(count > 0, total / np.maximum(count, 1), math.nan)
        observed = np.where(count > 0, events / np.maximum(count, 1), math.nan)
    return {"edges": edges, "count": count, "predicted": predicted, "observed": observed}


def expected_calibration_error(
    outcome: Sequence[int] | np.ndarray,
    probability: Sequence[float] | np.ndarray,
    n_bins: int = N_BINS,
) -> float:
    """``sum_b n_b / N * |observed_b - predicted_b|`` over :func:`reliability_bins`.

    Args:
        outcome: shape ``(N,)``, 0/1.
        probability: shape ``(N,)``, in ``[0, 1]``.
        n_bins: equal-width bins.

    Returns:
        The ECE in ``[0, 1]``.
    """
    bins = reliability_bins(outcome, probability, n_bins)
    filled = bins["count"] > 0
    gap = np.abs(bins["observed"][filled] - bins["predicted"][filled])
    return float(np.sum(bins["count"][filled] * gap) / np.sum(bins["count"]))


def calibration_target(
    labels: Sequence[int] | np.ndarray, probabilities: np.ndarray, positive: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """The (outcome, probability) pair whose calibration is reported.

    Args:
        labels: true classes ``(N,)``.
        probabilities: ``(N, K)``.
        positive: the positive class's index for a binary task; ``None`` for top-label
            confidence (more classes).

    Returns:
        Binary: ``(labels == positive, probabilities[:, positive])``; otherwise ``(top class is
        right, top probability)``.
    """
    truth = np.asarray(labels).astype(np.int64)
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != truth.size:
        raise ValueError(
            f"probabilities must have shape (N, K) with N = {truth.size}, got {probs.shape}"
        )
    if positive is not None:
        return (truth == positive).astype(np.float64), np.clip(probs[:, positive], 0.0, 1.0)
    top = probs.argmax(axis=1)
    return (top == truth).astype(np.float64), np.clip(probs.max(axis=1), 0.0, 1.0)


def choose_threshold(
    positive: Sequence[int] | np.ndarray,
    probability: Sequence[float] | np.ndarray,
    target_sensitivity: float = 0.0,
) -> dict[str, float | str]:
    """The decision threshold on the positive class's probability (predict positive if >= it).

    Args:
        positive: shape ``(N,)``, 1 for the positive cases (at least one of each kind).
        probability: shape ``(N,)``, the positive class's probability.
        target_sensitivity: 0: Youden's J (largest sensitivity + specificity - 1; the highest
            such threshold on a tie); in ``(0, 1]``: the highest threshold whose sensitivity
            reaches it (and, among those, the best specificity).

    Returns:
        ``threshold`` (one of the observed probabilities), ``rule`` (in words), ``sensitivity``
        and ``specificity`` at it on these cases.

    Raises:
        ValueError: bad arrays, no positive or no negative case, a target outside ``[0, 1]``.
    """
    truth, prob = _binary(positive, probability)
    if not 0.0 <= float(target_sensitivity) <= 1.0:
        raise ValueError(f"target_sensitivity must be in [0, 1], got {target_sensitivity}")
    n_pos, n_neg = truth.sum(), truth.size - truth.sum()
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            "a threshold needs positive and negative cases: got "
            f"{int(n_pos)} positive and {int(n_neg)} negative"
        )
    candidates = np.unique(prob)[::-1]  # highest first
    predicted = prob[None, :] >= candidates[:, None]
    sens = (predicted & (truth[None, :] == 1)).sum(1) / n_pos
    spec = (~predicted & (truth[None, :] == 0)).sum(1) / n_neg
    if float(target_sensitivity) > 0:
        ok = np.flatnonzero(sens >= float(target_sensitivity) - 1e-12)
        pick = int(ok[np.argmax(spec[ok])])  # first (highest threshold) of the best
        rule = f"highest threshold reaching sensitivity {float(target_sensitivity):g}"
    else:
        pick = int(np.argmax(sens + spec - 1.0))
        rule = "Youden's J (maximum sensitivity + specificity - 1)"
    return {
        "threshold": float(candidates[pick]),
        "rule": rule,
        "sensitivity": float(sens[pick]),
        "specificity": float(spec[pick]),
    }


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)`` row-wise: probabilities ``(N, K)`` rescaled by a temperature.

    Raises:
        ValueError: a temperature that is not a positive finite number.
    """
    if not (math.isfinite(float(temperature)) and float(temperature) > 0):
        raise ValueError(f"temperature must be a positive number, got {temperature}")
    logits = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, None))
    logits = logits / float(temperature)
    logits -= logits.max(axis=-1, keepdims=True)
    exp = np.exp(logits)
    return exp / exp.sum(axis=-1, keepdims=True)


def _nll(labels: np.ndarray, probabilities: np.ndarray) -> float:
    picked = probabilities[np.arange(labels.size), labels]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, None))))


def fit_temperature(
    labels: Sequence[int] | np.ndarray, probabilities: np.ndarray
) -> dict[str, float]:
    """The temperature that minimizes the negative log-likelihood on these cases.

    Args:
        labels: true classes ``(N,)``.
        probabilities: ``(N, K)`` (uncalibrated, e.g. softmax outputs).

    Returns:
        ``temperature`` (within :data:`TEMPERATURE_RANGE`), ``nll_before`` and ``nll_after``.

    Raises:
        ValueError: shapes that do not match or a label out of range.
    """
    truth = np.asarray(labels).astype(np.int64)
    probs = np.asarray(probabilities, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != truth.size or truth.size == 0:
        raise ValueError(
            f"probabilities must have shape (N, K) with N = {truth.size} > 0, got {probs.shape}"
        )
    if truth.min() < 0 or truth.max() >= probs.shape[1]:
        raise ValueError(f"labels must be in 0..{probs.shape[1] - 1}")
    low, high = np.log(TEMPERATURE_RANGE)
    found = minimize_scalar(
        lambda log_t: _nll(truth, apply_temperature(probs, math.exp(log_t))),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-6},
    )
    temperature = float(math.exp(found.x))
    return {
        "temperature": temperature,
        "nll_before": _nll(truth, probs),
        "nll_after": _nll(truth, apply_temperature(probs, temperature)),
    }
