"""Classification metrics: accuracy, balanced accuracy, AUROC, sensitivity, specificity, PPV, NPV.

Conventions (the tests check them against MONAI and, where installed, scikit-learn):

- ``labels`` are integer classes ``0 .. K-1``, one per case; ``probabilities`` has shape ``(N, K)``
  (a score per class; rows need not sum to 1, only the ranking matters for AUROC). The predicted
  class is the arg-max of a row (the lowest class index wins a tie).
- The confusion matrix has the truth on the rows and the prediction on the columns.
- Binary tasks (K = 2): sensitivity, specificity, PPV (precision) and NPV are those of the
  *positive class*, which the caller names (``positive_class``, the config's
  ``data.positive_class``: the abnormal class, e.g. ``nodule``); without it, index 1, the second
  name in sorted order, which is not necessarily the abnormal one (for ``normal``/``nodule`` it
  is ``normal``). AUROC is that of the positive class's score. :func:`classification_metrics`
  records the class it used as ``positive_class``.
- Several classes: sensitivity, specificity, PPV, NPV and AUROC are one-vs-rest per class and
  their macro mean (unweighted) over the classes where they are defined.
- Undefined values are NaN, never 0: a class absent from the truth has no positives, so its
  sensitivity and its AUROC (which ranks positives against negatives) are undefined; a class that
  every case belongs to has no negatives, so its specificity and AUROC are undefined; a class
  never predicted has no PPV, one always predicted no NPV. Balanced accuracy is the mean recall
  over the classes present in the truth.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

from ..utils.errors import ConfigError


def _labels(labels: Sequence[int] | np.ndarray, num_classes: int) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(
            f"labels must be a non-empty 1-D array of classes, got shape {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise ValueError(f"labels must be integers 0..{num_classes - 1}, got {array[:5]}...")
        array = array.astype(np.int64)
    if array.min() < 0 or array.max() >= num_classes:
        raise ValueError(
            f"labels must be in 0..{num_classes - 1} for {num_classes} classes, "
            f"got values from {array.min()} to {array.max()}"
        )
    return array.astype(np.int64, copy=False)


def _pair(labels, predictions, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    truth = _labels(labels, num_classes)
    predicted = _labels(predictions, num_classes)
    if truth.shape != predicted.shape:
        raise ValueError(
            f"labels and predictions must have the same length, got {truth.shape} and "
            f"{predicted.shape}"
        )
    return truth, predicted


def confusion_matrix(
    labels: Sequence[int] | np.ndarray, predictions: Sequence[int] | np.ndarray, num_classes: int
) -> np.ndarray:
    """Counts of (true class, predicted class) pairs.

    Args:
        labels: true classes, shape ``(N,)``, integers in ``0 .. num_classes - 1``.
        predictions: predicted classes, shape ``(N,)``.
        num_classes: K, the number of classes (at least 2).

    Returns:
        Integer array ``(K, K)``: entry ``[i, j]`` counts cases of class ``i`` predicted as ``j``.

    Raises:
        ValueError: lengths differ, a class is out of range, or ``num_classes < 2``.
    """
    truth, predicted = _pair(labels, predictions, num_classes)
    k = int(num_classes)
    return np.bincount(truth * k + predicted, minlength=k * k).reshape(k, k)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.full(numerator.shape, math.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def per_class_sensitivity(matrix: np.ndarray) -> np.ndarray:
    """One-vs-rest sensitivity (recall) ``TP / (TP + FN)`` of each class from a confusion matrix.

    Args:
        matrix: ``(K, K)`` confusion matrix, truth on rows.

    Returns:
        Float array ``(K,)``; NaN for a class absent from the truth.
    """
    matrix = np.asarray(matrix)
    return _ratio(np.diag(matrix), matrix.sum(axis=1))


def per_class_specificity(matrix: np.ndarray) -> np.ndarray:
    """One-vs-rest specificity ``TN / (TN + FP)`` of each class from a confusion matrix.

    Args:
        matrix: ``(K, K)`` confusion matrix, truth on rows.

    Returns:
        Float array ``(K,)``; NaN for a class that every case belongs to (no negatives).
    """
    matrix = np.asarray(matrix)
    negatives = matrix.sum() - matrix.sum(axis=1)
    false_positives = matrix.sum(axis=0) - np.diag(matrix)
    return _ratio(negatives - false_positives, negatives)


def per_class_ppv(matrix: np.ndarray) -> np.ndarray:
    """One-vs-rest positive predictive value (precision) ``TP / (TP + FP)`` of each class.

    Args:
        matrix: ``(K, K)`` confusion matrix, truth on rows.

    Returns:
        Float array ``(K,)``; NaN for a class never predicted.
    """
    matrix = np.asarray(matrix)
    return _ratio(np.diag(matrix), matrix.sum(axis=0))


def per_class_npv(matrix: np.ndarray) -> np.ndarray:
    """One-vs-rest negative predictive value ``TN / (TN + FN)`` of each class.

    Args:
        matrix: ``(K, K)`` confusion matrix, truth on rows.

    Returns:
        Float array ``(K,)``; NaN for a class that every case is predicted as (no negative calls).
    """
    matrix = np.asarray(matrix)
    called_negative = matrix.sum() - matrix.sum(axis=0)
    false_negatives = matrix.sum(axis=1) - np.diag(matrix)
    return _ratio(called_negative - false_negatives, called_negative)


def positive_index(class_names: Sequence[str], positive_class: str | None = None) -> int:
    """The index of a binary task's positive class.

    Args:
        class_names: the two class names, in class-index order.
        positive_class: the positive class's name; ``None`` or ``""``: index 1 (the second name).

    Returns:
        0 or 1.

    Raises:
        ValueError: there are not exactly two names, or ``positive_class`` is not one of them (the
            message lists the names).
    """
    names = [str(name) for name in class_names]
    if len(names) != 2:
        raise ValueError(
            f"a positive class applies to binary tasks, got {len(names)} classes: {names}"
        )
    if not positive_class:
        return 1
    if positive_class not in names:
        raise ValueError(f"positive class '{positive_class}' is not one of the classes {names}")
    return names.index(positive_class)


def _summary(per_class: np.ndarray, positive: int = 1) -> float:
    """Binary: the positive class's value; several classes: the mean of the defined values."""
    if per_class.size == 2:
        return float(per_class[positive])
    defined = per_class[~np.isnan(per_class)]
    return float(defined.mean()) if defined.size else math.nan


def accuracy(labels: Sequence[int] | np.ndarray, predictions: Sequence[int] | np.ndarray) -> float:
    """Fraction of cases whose predicted class equals the true class.

    Args:
        labels: true classes, shape ``(N,)``, non-negative integers.
        predictions: predicted classes, shape ``(N,)``.

    Raises:
        ValueError: lengths differ or the arrays are empty or not integer classes.
    """
    truth = _labels(labels, np.iinfo(np.int64).max)
    predicted = _labels(predictions, np.iinfo(np.int64).max)
    if truth.shape != predicted.shape:
        raise ValueError(
            f"labels and predictions must have the same length, got {truth.shape} and "
            f"{predicted.shape}"
        )
    return float(np.mean(truth == predicted))


def balanced_accuracy(
    labels: Sequence[int] | np.ndarray, predictions: Sequence[int] | np.ndarray, num_classes: int
) -> float:
    """Mean recall over the classes present in ``labels`` (chance level is ``1 / present classes``).

    Args:
        labels: true classes, shape ``(N,)``, integers in ``0 .. num_classes - 1``.
        predictions: predicted classes, shape ``(N,)``.
        num_classes: K, the number of classes (at least 2).
    """
    recall = per_class_sensitivity(confusion_matrix(labels, predictions, num_classes))
    return float(np.mean(recall[~np.isnan(recall)]))


def sensitivity(
    labels: Sequence[int] | np.ndarray,
    predictions: Sequence[int] | np.ndarray,
    num_classes: int,
    positive: int = 1,
) -> float:
    """Sensitivity: of class ``positive`` for two classes, else the macro one-vs-rest mean.

    Args:
        labels: true classes, shape ``(N,)``, integers in ``0 .. num_classes - 1``.
        predictions: predicted classes, shape ``(N,)``.
        num_classes: K, the number of classes (at least 2).
        positive: the positive class's index when ``num_classes == 2`` (see
            :func:`positive_index`); ignored otherwise.

    Returns:
        The value, NaN where undefined (see the module docstring).
    """
    matrix = confusion_matrix(labels, predictions, num_classes)
    return _summary(per_class_sensitivity(matrix), _positive(positive))


def specificity(
    labels: Sequence[int] | np.ndarray,
    predictions: Sequence[int] | np.ndarray,
    num_classes: int,
    positive: int = 1,
) -> float:
    """Specificity: of class ``positive`` for two classes, else the macro one-vs-rest mean.

    Args:
        labels: true classes, shape ``(N,)``, integers in ``0 .. num_classes - 1``.
        predictions: predicted classes, shape ``(N,)``.
        num_classes: K, the number of classes (at least 2).
        positive: the positive class's index when ``num_classes == 2`` (see
            :func:`positive_index`); ignored otherwise.

    Returns:
        The value, NaN where undefined (see the module docstring).
    """
    matrix = confusion_matrix(labels, predictions, num_classes)
    return _summary(per_class_specificity(matrix), _positive(positive))


def _positive(positive: int) -> int:
    if positive not in (0, 1):
        raise ValueError(
            f"positive must be the index of a binary task's class, 0 or 1, got {positive}"
        )
    return int(positive)


def positive_class(configured: str, class_names: Sequence[str]) -> str | None:
    """The positive class of a classification run: ``data.positive_class``, checked.

    Args:
        configured: the config's ``data.positive_class``; ``""`` picks the second of the sorted
            class names for a binary task.
        class_names: the run's classes, in class-index order (sorted).

    Returns:
        The positive class's name for two classes; ``None`` for more (metrics are then macro
        means over the classes).

    Raises:
        ConfigError: ``configured`` is not one of the classes, or is set for more than two
            classes; the message names the key and the classes found.
    """
    names = [str(name) for name in class_names]
    if len(names) != 2:
        if configured:
            raise ConfigError(
                f"config key 'data.positive_class' = '{configured}' applies to binary tasks, "
                f"but the run has {len(names)} classes {names}; set data.positive_class=''"
            )
        return None
    try:
        return names[positive_index(names, configured or None)]
    except ValueError:
        raise ConfigError(
            f"config key 'data.positive_class' = '{configured}' is not one of the classes "
            f"found: {names}"
        ) from None


def paired_scores(
    outcome: Sequence | np.ndarray, scores: Sequence | np.ndarray, names: tuple[str, str]
) -> tuple[np.ndarray, np.ndarray]:
    """``(outcome, float64 scores)`` as arrays, checked to be non-empty, 1-D, of one length, and
    the scores finite.

    Raises:
        ValueError: naming the arguments as ``names`` says.
    """
    outcome = np.asarray(outcome)
    scores = np.asarray(scores, dtype=np.float64)
    if outcome.ndim != 1 or outcome.shape != scores.shape or outcome.size == 0:
        raise ValueError(
            f"{names[0]} and {names[1]} must be non-empty 1-D arrays of the same length, got "
            f"{outcome.shape} and {scores.shape}"
        )
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{names[1]} must be finite (no NaN or infinity)")
    return outcome, scores


def auroc(positive: Sequence[bool] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve of one score for one binary outcome.

    Computed as the Mann-Whitney statistic: the probability that a random positive scores higher
    than a random negative, ties counting one half (exactly the trapezoidal ROC area).

    Args:
        positive: shape ``(N,)``, True (or 1) for the positive cases.
        scores: shape ``(N,)``, higher meaning more likely positive; finite.

    Returns:
        AUROC in [0, 1]; NaN when there are no positives or no negatives (undefined).

    Raises:
        ValueError: shapes differ, arrays are empty or not 1-D, or a score is not finite.
    """
    positive, scores = paired_scores(positive, scores, ("positive", "scores"))
    positive = positive.astype(bool)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(scores)  # average ranks for ties
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _probabilities(probabilities, n_cases: int | None = None) -> np.ndarray:
    array = np.asarray(probabilities, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] < 2:
        raise ValueError(
            f"probabilities must have shape (N, K) with K >= 2 classes, got {array.shape}"
        )
    if n_cases is not None and array.shape[0] != n_cases:
        raise ValueError(
            f"probabilities must have one row per case: {n_cases} labels but shape {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError("probabilities must be finite (no NaN or infinity)")
    return array


def per_class_auroc(
    labels: Sequence[int] | np.ndarray, probabilities: Sequence[Sequence[float]] | np.ndarray
) -> np.ndarray:
    """One-vs-rest AUROC of each class: its probability column against "this class or not".

    Args:
        labels: true classes, shape ``(N,)``, integers in ``0 .. K - 1``.
        probabilities: scores, shape ``(N, K)``.

    Returns:
        Float array ``(K,)``; NaN for a class absent from ``labels`` (no positives to rank) or
        held by every case (no negatives).

    Raises:
        ValueError: shapes do not match, a label is out of range or a score is not finite.
    """
    scores = _probabilities(probabilities)
    truth = _labels(labels, scores.shape[1])
    scores = _probabilities(scores, truth.size)
    return np.array([auroc(truth == k, scores[:, k]) for k in range(scores.shape[1])])


def macro_auroc(
    labels: Sequence[int] | np.ndarray,
    probabilities: Sequence[Sequence[float]] | np.ndarray,
    positive: int = 1,
) -> float:
    """AUROC: of class ``positive`` for two classes, else the mean one-vs-rest AUROC.

    Args:
        labels: true classes, shape ``(N,)``, integers in ``0 .. K - 1``.
        probabilities: scores, shape ``(N, K)``.
        positive: the positive class's index for two classes; ignored otherwise.

    Returns:
        The AUROC; NaN when it is undefined (see :func:`per_class_auroc`).
    """
    return _summary(per_class_auroc(labels, probabilities), _positive(positive))


def classification_metrics(
    labels: Sequence[int] | np.ndarray,
    probabilities: Sequence[Sequence[float]] | np.ndarray,
    class_names: Sequence[str],
    positive_class: str | None = None,
) -> dict[str, object]:
    """Every classification metric of a set of cases.

    Args:
        labels: true classes, shape ``(N,)``, integers in ``0 .. K - 1``.
        probabilities: scores per class, shape ``(N, K)``; the prediction is the arg-max.
        class_names: K distinct names, in class-index order.
        positive_class: binary tasks: the class that ``sensitivity``, ``specificity``, ``ppv``,
            ``npv`` and ``auroc`` are about; ``None`` or ``""``: ``class_names[1]``. Must be
            ``None`` or ``""`` for more than two classes.

    Returns:
        ``n_cases``, ``accuracy``, ``balanced_accuracy``, ``auroc``, ``sensitivity``,
        ``specificity``, ``ppv``, ``npv`` (floats; of the positive class for two classes, macro
        means otherwise, NaN where undefined); ``positive_class`` (the name, or ``None`` for more
        than two classes); ``auroc_<name>``, ``sensitivity_<name>``, ``specificity_<name>``,
        ``ppv_<name>``, ``npv_<name>`` for every class; ``class_names`` (list) and
        ``confusion_matrix`` (list of K lists of ints, truth on rows, prediction on columns).

    Raises:
        ValueError: the names do not match K, are repeated, the arrays do not match, or
            ``positive_class`` is not one of two names (or given for more than two classes).
    """
    names = [str(name) for name in class_names]
    scores = _probabilities(probabilities)
    if len(names) != scores.shape[1] or len(set(names)) != len(names):
        raise ValueError(
            f"class_names must be {scores.shape[1]} distinct names (one per probability column), "
            f"got {names}"
        )
    positive = positive_index(names, positive_class) if len(names) == 2 else -1
    if positive < 0 and positive_class:
        raise ValueError(
            f"a positive class applies to binary tasks; got '{positive_class}' for "
            f"{len(names)} classes {names}"
        )
    truth = _labels(labels, len(names))
    scores = _probabilities(scores, truth.size)
    predicted = np.argmax(scores, axis=1)
    matrix = confusion_matrix(truth, predicted, len(names))
    per_class = {
        "auroc": per_class_auroc(truth, scores),
        "sensitivity": per_class_sensitivity(matrix),
        "specificity": per_class_specificity(matrix),
        "ppv": per_class_ppv(matrix),
        "npv": per_class_npv(matrix),
    }
    recall = per_class["sensitivity"]
    result: dict[str, object] = {
        "n_cases": int(truth.size),
        "accuracy": float(np.mean(truth == predicted)),
        "balanced_accuracy": float(np.mean(recall[~np.isnan(recall)])),
    }
    for metric, values in per_class.items():
        result[metric] = _summary(values, max(positive, 0))
    result["positive_class"] = names[positive] if positive >= 0 else None
    for index, name in enumerate(names):
        for metric, values in per_class.items():
            result[f"{metric}_{name}"] = float(values[index])
    result["class_names"] = names
    result["confusion_matrix"] = matrix.tolist()
    return result
