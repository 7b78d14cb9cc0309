"""Bootstrap confidence intervals for whole-set metrics, resampling patients rather than images.

Several images of one patient are not independent evidence: resampling them one by one pretends
the test set is larger than it is and gives intervals that are too narrow. With ``groups`` (the
patient id of each case) every bootstrap replicate draws whole patients with replacement and takes
all of their cases, so the interval reflects the number of patients.

The interval is the percentile interval: the ``(1 - level) / 2`` and ``(1 + level) / 2``
quantiles of the statistic over ``n`` replicates. It is deterministic for a given ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan


def _as_arrays(data: Any) -> tuple[tuple[np.ndarray, ...], bool]:
    """The data as a tuple of arrays sharing their first axis, and whether it came as a tuple."""
    if isinstance(data, tuple):
        arrays = tuple(np.asarray(part) for part in data)
        packed = True
    else:
        arrays = (np.asarray(data),)
        packed = False
    if not arrays or any(array.ndim == 0 for array in arrays):
        raise ValueError("data must be an array of cases (first axis) or a tuple of such arrays")
    lengths = {len(array) for array in arrays}
    if len(lengths) != 1:
        raise ValueError(
            f"the arrays in data must all have one entry per case, got lengths {sorted(lengths)}"
        )
    if lengths == {0}:
        raise ValueError("data holds no cases: cannot bootstrap an empty set")
    return arrays, packed


def bootstrap_ci(
    data: Any,
    statistic: Callable[..., float] = _nanmean,
    groups: Sequence[Hashable] | np.ndarray | None = None,
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of a whole-set statistic.

    Args:
        data: the cases, first axis = case: a 1-D array of per-case values (e.g. Dice), an
            ``(N, ...)`` array, or a tuple of such arrays with the same N (e.g.
            ``(labels, probabilities)``), resampled together.
        statistic: the whole-set statistic. Called with the resampled array, or with the
            resampled arrays as positional arguments when ``data`` is a tuple; returns a float.
            Defaults to the mean ignoring NaN.
        groups: optional, shape ``(N,)``: the patient (or other unit) of each case. Replicates then
            draw as many groups as there are, with replacement, and take every case of each drawn
            group; without it cases are drawn one by one.
        n: number of bootstrap replicates (at least 10; 1000 or more for a reported interval).
        seed: seed of the NumPy generator; the same seed gives the same interval.
        level: coverage of the interval, strictly between 0 and 1.

    Returns:
        ``(low, high)``. Replicates whose statistic is NaN (e.g. an AUROC of a resample that holds
        a single class) are left out; ``(nan, nan)`` if every replicate is NaN.

    Raises:
        ValueError: empty data, arrays of different lengths, ``groups`` of the wrong length, or
            ``n``/``level`` out of range.
    """
    intervals = bootstrap_cis(
        data,
        lambda *sample: {"value": float(statistic(*sample))},
        groups=groups,
        n=n,
        seed=seed,
        level=level,
    )
    return intervals["value"]


def bootstrap_cis(
    data: Any,
    statistics: Callable[..., Mapping[str, float]],
    groups: Sequence[Hashable] | np.ndarray | None = None,
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of several whole-set statistics from one set of replicates.

    As :func:`bootstrap_ci` (same arguments, same resamples for the same ``seed``), but
    ``statistics`` returns a mapping ``{name: value}`` per replicate, so that metrics computed
    together (e.g. everything from one confusion matrix) are computed once per replicate.

    Returns:
        ``{name: (low, high)}`` for every name the first replicate returned.
    """
    arrays, packed = _as_arrays(data)
    n_cases = len(arrays[0])
    if int(n) < 10:
        raise ValueError(f"n (bootstrap replicates) must be at least 10, got {n}")
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be strictly between 0 and 1, got {level}")
    rng = np.random.default_rng(int(seed))
    members: list[np.ndarray] | None = None
    if groups is not None:
        group_array = np.asarray(groups)
        if group_array.shape != (n_cases,):
            raise ValueError(
                f"groups must give one group per case ({n_cases}), got shape {group_array.shape}"
            )
        _, inverse = np.unique(group_array, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        counts = np.bincount(inverse)
        members = np.split(order, np.cumsum(counts)[:-1])

    values: dict[str, np.ndarray] = {}
    for replicate in range(int(n)):
        if members is None:
            index = rng.integers(0, n_cases, size=n_cases)
        else:
            drawn = rng.integers(0, len(members), size=len(members))
            index = np.concatenate([members[g] for g in drawn])
        sample = tuple(array[index] for array in arrays)
        result = statistics(*sample) if packed else statistics(sample[0])
        for name, value in result.items():
            values.setdefault(name, np.full(int(n), np.nan))[replicate] = float(value)
    alpha = (1.0 - float(level)) / 2.0
    intervals = {}
    for name, series in values.items():
        series = series[~np.isnan(series)]
        if series.size == 0:
            intervals[name] = (math.nan, math.nan)
            continue
        low, high = np.quantile(series, [alpha, 1.0 - alpha])
        intervals[name] = (float(low), float(high))
    return intervals
