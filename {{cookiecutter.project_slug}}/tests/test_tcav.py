"""TCAV's significance test means what it claims: a concept drawn from the same distribution as
the random sets is called significant in at most about ``alpha`` of simulated repeats, a planted
concept is found nearly always, and the p-values, the Bonferroni correction and the reported
numbers match values worked out by hand or by SciPy.

The simulations use synthetic pooled activations ``(n, C)`` and gradients ``(inputs, C)``: no
network is needed for the statistics.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from {{ cookiecutter.package_name }}.explain.tcav import (
    ALPHA,
    RANDOM_SETS,
    assess_concept,
    score_matrix,
    set_test,
    train_cav,
    train_cavs,
)

DIMS = 16  # channels of the synthetic layer
SET_SIZE = 16  # examples per concept or random set
SETS = RANDOM_SETS  # random sets per repeat: the default
INPUTS = 12  # inputs of each class
REPEATS = 60  # simulated experiments per check (>= 50)
SHIFT = 3.0  # the planted concept's offset along channel 0


def _experiment(
    rng: np.random.Generator, planted: bool
) -> tuple[np.ndarray, list[np.ndarray], dict[int, np.ndarray]]:
    """One synthetic TCAV experiment: a concept, ``SETS`` random sets, gradients of 2 classes.

    Random sets and the null concept are standard normal activations; the planted concept is
    shifted along channel 0. Class 0's gradients point mostly along channel 0 (a concept along
    it raises the class score), class 1's along channel 1 (channel 0 does not matter to it).
    """
    randoms = [rng.normal(size=(SET_SIZE, DIMS)) for _ in range(SETS)]
    concept = rng.normal(size=(SET_SIZE, DIMS))
    if planted:
        concept[:, 0] += SHIFT
    gradients = {
        0: rng.normal(size=(INPUTS, DIMS)) + np.eye(DIMS)[0] * 2.0,
        1: rng.normal(size=(INPUTS, DIMS)) + np.eye(DIMS)[1] * 2.0,
    }
    return concept, randoms, gradients


def _significant_share(planted: bool, seed: int) -> tuple[float, float]:
    """The share of :data:`REPEATS` experiments in which class 0 / class 1 is significant."""
    rng = np.random.default_rng(seed)
    calls = np.zeros(2)
    for _ in range(REPEATS):
        results = assess_concept(*_experiment(rng, planted))
        calls += [results[0]["significant"], results[1]["significant"]]
    return calls[0] / REPEATS, calls[1] / REPEATS


def test_a_concept_like_the_random_sets_is_rarely_significant() -> None:
    """The null: the concept is one more random set. At alpha = 0.05 (Bonferroni over the 2
    classes) at most 10% of repeats may call either class significant."""
    share_0, share_1 = _significant_share(planted=False, seed=0)
    assert share_0 <= 0.10 and share_1 <= 0.10


def test_a_planted_concept_is_found() -> None:
    """The concept moves activations along the channel class 0's score rises with: found in at
    least 90% of repeats; class 1 does not depend on that channel and stays at chance."""
    share_0, share_1 = _significant_share(planted=True, seed=1)
    assert share_0 >= 0.90
    assert share_1 <= 0.10


def test_the_set_test_is_a_t_test_of_one_value_against_a_sample() -> None:
    """t = (x - mean) / (sd * sqrt(1 + 1/N)) with N - 1 degrees of freedom: SciPy's pooled t-test
    of a one-value group against the N values is the same statistic."""
    values = [0.45, 0.52, 0.48, 0.61, 0.39, 0.55]
    expected = stats.ttest_ind([0.8], values, equal_var=True).pvalue
    assert set_test(0.8, values) == pytest.approx(expected, rel=1e-12)
    t = (0.8 - np.mean(values)) / (np.std(values, ddof=1) * np.sqrt(1 + 1 / 6))
    assert set_test(0.8, values) == pytest.approx(2 * stats.t.sf(t, 5), rel=1e-12)
    assert set_test(0.5, [0.5, 0.5, 0.5]) == 1.0  # no spread and no difference
    assert set_test(1.0, [0.5, 0.5, 0.5]) == 0.0  # no spread, a difference
    with pytest.raises(ValueError, match="at least 2 random sets"):
        set_test(0.5, [0.5])


def test_score_matrix_scores_each_set_against_every_other() -> None:
    """Three sets along three axes, gradients along +x: set 0 vs any other scores 1 (its CAV
    points towards +x), any other vs set 0 scores 0; the matrix's diagonal is undefined."""
    rng = np.random.default_rng(0)
    sets = [rng.normal(0, 0.1, (10, 3)) + 3 * np.eye(3)[i] for i in range(3)]
    gradients = {0: np.array([[1.0, 0.1, 0.0], [2.0, 0.0, 0.1]])}
    scores, accuracy = score_matrix(sets, gradients)
    assert scores[0].shape == (3, 3) and np.isnan(np.diag(scores[0])).all()
    assert scores[0][0, 1] == scores[0][0, 2] == 1.0
    assert scores[0][1, 0] == scores[0][2, 0] == 0.0
    # set 1 vs set 2: the CAV is (0, 1, -1)/sqrt(2); the inputs' derivatives are 0.07, -0.07
    assert scores[0][1, 2] == scores[0][2, 1] == 0.5
    off = ~np.eye(3, dtype=bool)
    assert (accuracy[off] == 1.0).all() and np.allclose(accuracy, accuracy.T, equal_nan=True)


def test_batched_cavs_match_one_at_a_time_and_flip_with_the_labels() -> None:
    rng = np.random.default_rng(3)
    positives = rng.normal(size=(4, 12, 5)) + [1.0, 0, 0, 0, 0]
    negatives = rng.normal(size=(4, 12, 5))
    cavs, accuracies = train_cavs(positives, negatives)
    for i in range(4):
        cav, accuracy = train_cav(positives[i], negatives[i])
        assert np.allclose(cavs[i], cav) and accuracies[i] == accuracy
    flipped, _ = train_cavs(negatives, positives)
    assert np.allclose(flipped, -cavs, atol=1e-9)
    with pytest.raises(ValueError, match="expected"):
        train_cavs(positives, negatives[:3])


def test_the_report_is_bonferroni_corrected_over_classes_and_layers() -> None:
    rng = np.random.default_rng(5)
    concept, randoms, gradients = _experiment(rng, planted=True)
    one = assess_concept(concept, randoms, gradients)
    six = assess_concept(concept, randoms, gradients, tests=6)  # e.g. 2 classes x 3 layers
    for k in (0, 1):
        raw = one[k]["p_value"]
        assert six[k]["p_value"] == raw
        assert one[k]["tests"] == 2 and six[k]["tests"] == 6
        assert one[k]["p_value_corrected"] == pytest.approx(min(1.0, 2 * raw))
        assert six[k]["p_value_corrected"] == pytest.approx(min(1.0, 6 * raw))
        assert six[k]["significant"] == (six[k]["p_value_corrected"] < ALPHA)
        assert one[k]["alpha"] == ALPHA and one[k]["random_sets"] == SETS
        assert len(one[k]["scores"]) == len(one[k]["random_scores"]) == SETS
        assert one[k]["tcav"] == pytest.approx(np.mean(one[k]["scores"]))
        assert one[k]["tcav_std"] == pytest.approx(np.std(one[k]["scores"]))
        expected = set_test(one[k]["tcav"], one[k]["random_scores"])
        assert raw == pytest.approx(expected)
    assert one[0]["tcav"] > 0.9 and one[0]["significant"]
    with pytest.raises(ValueError, match="tests"):
        assess_concept(concept, randoms, gradients, tests=1)  # fewer than the 2 classes


def test_sets_of_different_sizes_are_refused() -> None:
    """The test needs the concept to be exchangeable with the random sets: same sizes."""
    rng = np.random.default_rng(0)
    concept, randoms, gradients = _experiment(rng, planted=False)
    with pytest.raises(ValueError, match="same number of examples"):
        assess_concept(concept[:8], randoms, gradients)
    with pytest.raises(ValueError, match="at least 3 random sets"):
        assess_concept(concept, randoms[:2], gradients)
