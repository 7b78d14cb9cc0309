"""TCAV: testing with concept activation vectors (Kim et al., ICML 2018).

Definitions, for a layer ``l`` with activations ``f_l(x)`` and a class ``k`` with score
``h_k``:

- the *concept activation vector* ``v_C`` is the unit normal of a linear classifier that
  separates ``f_l`` of the concept's examples from ``f_l`` of random counterexamples, pointing
  towards the concept (here: L2-regularized logistic regression, fitted by Newton's method);
- the *conceptual sensitivity* of an input is the directional derivative
  ``S_{C,k,l}(x) = grad h_k(f_l(x)) . v_C``: positive when moving the activations towards the
  concept raises the class score;
- the *TCAV score* is the fraction of the class's inputs with ``S > 0``.

A CAV learnt from one random set can point anywhere, so the test is repeated against ``N``
distinct random sets (:data:`RANDOM_SETS` by default, as in Kim et al.): the concept against
random set ``i`` gives the score ``s_i``, random set ``j`` against random set ``i`` gives the
score of a concept that means nothing. The significance test must respect how these scores
depend on each other: all ``s_i`` share the one concept set, so their spread says nothing about
how far the mean of another concept set's scores would fall. A t-test that treats the ``s_i``
(and null scores that share one random set) as independent samples calls a concept drawn like
the random sets "significant" in 38-55% of simulated repeats at the 0.05 level.

The test here treats the *set* as the unit. Each of the ``N + 1`` sets (the concept and the
random ones) is scored against every other set (a CAV per pair; the CAV of ``b`` vs ``a`` is
minus that of ``a`` vs ``b``), and ``T_a`` is set ``a``'s mean score against the ``N`` others.
If the concept means nothing to the class, it is one more random set: the ``N + 1`` values
``T_a`` are exchangeable, and the concept's ``T_0`` is a new draw from the distribution that
``T_1..T_N`` sample. The two-sided test of ``T_0`` against ``T_1..T_N`` is the t-test of one
value against a sample, ``t = (T_0 - mean) / (sd * sqrt(1 + 1/N))`` with ``N - 1`` degrees of
freedom (:func:`set_test`); it is exact for exchangeable Gaussian ``T_a`` however correlated
they are (the correlation adds a common term that the differences cancel), and a simulation
(``tests/test_tcav.py``) checks that it holds its level with scores that are fractions of a
few inputs. The p-values are Bonferroni-corrected over the tests made together (classes x
layers), and ``significant`` means corrected p < :data:`ALPHA`. The concept and the random sets
need the same number of examples, or they would not be exchangeable.

The test is conservative (it calls fewer concepts significant than its level allows, in
simulations) when the inputs of a class are few or have nearly the same gradient: each score is then 0 or 1, each ``T_a`` is about the set's rank along the
gradient, and a concept that ranks first of ``N + 1`` sets gets p near 0.1 however many sets
there are (chance puts a set first one time in ``N + 1``). Explaining more cases of the class
gives the test something to measure.

Activations are averaged over space, one value per channel, so that examples of any size (a
lesion crop, a whole image) live in the same space; the matching derivative averages the
gradient over space too (the gradient along the CAV applied equally at every position).
The implementation is the project's own rather than ``captum.concept``: that one flattens
activations, so it needs every example at one size, and writes CAVs to disk.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import stats
from torch import nn

from .layers import LayerError

ALPHA = 0.05  # significance level, after the Bonferroni correction
RANDOM_SETS = 20  # N: distinct random sets the concept is compared with
L2 = 1e-2  # ridge penalty of the CAV classifier (on standardized activations)
NEWTON_STEPS = 50
BATCH = 32  # examples of one size per forward pass


def _spatial_mean(tensor: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    if tensor.ndim < 3:
        raise LayerError(
            f"layer {type(layer).__name__} outputs {tuple(tensor.shape)}, not a feature map "
            "(B, C, *L): choose a convolution layer"
        )
    return tensor.float().flatten(2).mean(dim=2)


@torch.no_grad()
def pooled_activations(
    model: nn.Module, layer: nn.Module, arrays: Sequence[np.ndarray], device: torch.device | str
) -> np.ndarray:
    """``f_l`` of each example, averaged over space: ``(n, C)``.

    Args:
        model: the network (in eval mode) that ``layer`` belongs to.
        layer: the module whose output is the feature map ``(B, C, *L)``.
        arrays: preprocessed images ``(*S_i)``, of any sizes.
        device: where ``model`` lives.
    """
    if len(arrays) == 0:
        raise ValueError("pooled_activations needs at least one example")
    captured: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
    rows: list[np.ndarray | None] = [None] * len(arrays)
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for index, array in enumerate(arrays):
        by_shape.setdefault(tuple(np.shape(array)), []).append(index)
    try:
        for indices in by_shape.values():  # one forward pass per batch of equal sizes
            for start in range(0, len(indices), BATCH):
                chunk = indices[start : start + BATCH]
                batch = np.stack([np.asarray(arrays[i], dtype=np.float32) for i in chunk])
                captured.clear()
                model(torch.as_tensor(batch, device=device)[:, None])
                pooled = _spatial_mean(captured[0], layer).cpu().numpy()
                for i, row in zip(chunk, pooled, strict=True):
                    rows[i] = row
    finally:
        hook.remove()
    return np.stack(rows).astype(np.float64)


def pooled_gradients(
    scorer: nn.Module, layer: nn.Module, image: torch.Tensor, targets: Sequence[int]
) -> np.ndarray:
    """``d h_k / d f_l`` of one input for each class ``k`` of ``targets``, averaged over space.

    Args:
        scorer: ``(B, 1, *S) -> (B, K)`` (see :mod:`.scores`) containing ``layer``.
        layer: the module whose output is the feature map.
        image: ``(1, 1, *S)``.
        targets: class indices.

    Returns:
        ``(len(targets), C)``.
    """
    captured: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        with torch.enable_grad():
            scores = scorer(image.detach())
            activation = captured[0]
            rows = []
            for k in targets:
                (grad,) = torch.autograd.grad(scores[0, int(k)], activation, retain_graph=True)
                rows.append(_spatial_mean(grad, layer)[0].cpu().numpy())
    finally:
        hook.remove()
    return np.stack(rows).astype(np.float64)


def train_cavs(positives: np.ndarray, negatives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concept activation vectors of ``P`` pairs of example sets at once.

    Args:
        positives: ``(P, n, C)`` activations of each pair's concept examples.
        negatives: ``(P, m, C)`` activations of each pair's counterexamples.

    Returns:
        The unit vectors ``(P, C)`` normal to the decision boundaries, pointing to the concept
        (all zeros where the sets cannot be told apart at all), and each classifier's accuracy
        on its examples ``(P,)`` (0.5 = no better than a coin). Swapping ``positives`` and
        ``negatives`` flips the vectors exactly.

    Raises:
        ValueError: arrays that are not ``(P, n, C)`` and ``(P, m, C)``, or an empty side.
    """
    positives = np.asarray(positives, np.float64)
    negatives = np.asarray(negatives, np.float64)
    if (
        positives.ndim != 3
        or negatives.ndim != 3
        or positives.shape[0] != negatives.shape[0]
        or positives.shape[2] != negatives.shape[2]
    ):
        raise ValueError(
            f"expected (P, n, C) and (P, m, C), got {positives.shape}, {negatives.shape}"
        )
    if positives.shape[1] == 0 or negatives.shape[1] == 0:
        raise ValueError("a CAV needs at least one example on each side")
    x = np.concatenate([positives, negatives], axis=1)  # (P, L, C)
    y = np.concatenate([np.ones(positives.shape[1]), np.zeros(negatives.shape[1])])
    # A scalar scale keeps the direction of w the same in raw and standardized units.
    scale = x.std(axis=(1, 2), keepdims=True)
    scale[scale == 0] = 1.0
    centered = (x - x.mean(axis=1, keepdims=True)) / scale
    design = np.concatenate([centered, np.ones((*x.shape[:2], 1))], axis=2)  # (P, L, D)
    count = design.shape[1]
    penalty = np.full(design.shape[2], 2 * L2)
    penalty[-1] = 1e-9  # the intercept is not penalised (a trace keeps H invertible)
    beta = np.zeros((design.shape[0], design.shape[2]))
    for _ in range(NEWTON_STEPS):  # Newton's method (IRLS) on the penalised mean log-loss
        p = 1.0 / (1.0 + np.exp(-np.clip(np.einsum("pld,pd->pl", design, beta), -30, 30)))
        gradient = np.einsum("pld,pl->pd", design, p - y) / count + penalty * beta
        weighted = design * (p * (1 - p))[:, :, None]
        hessian = weighted.transpose(0, 2, 1) @ design / count + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient[:, :, None])[:, :, 0]
        beta -= step
        if np.abs(step).max() < 1e-10:
            break
    w = beta[:, :-1]
    margin = np.einsum("pld,pd->pl", design, beta)
    accuracy = np.mean((margin > 0) == (y == 1), axis=1)
    norm = np.linalg.norm(w, axis=1, keepdims=True)
    cavs = np.divide(w, norm, out=np.zeros_like(w), where=norm > 0)
    return cavs, accuracy


def train_cav(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, float]:
    """The concept activation vector separating ``positive`` from ``negative`` activations.

    Args:
        positive: ``(n, C)`` activations of the concept's examples.
        negative: ``(m, C)`` activations of the counterexamples.

    Returns:
        The unit vector ``(C,)`` normal to the decision boundary, pointing to the concept (all
        zeros if the classes cannot be told apart at all), and the classifier's accuracy on
        the examples (0.5 = no better than a coin).

    Raises:
        ValueError: arrays that are not ``(n, C)`` and ``(m, C)``, or an empty side.
    """
    positive, negative = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    if positive.ndim != 2 or negative.ndim != 2 or positive.shape[1] != negative.shape[1]:
        raise ValueError(f"expected (n, C) and (m, C), got {positive.shape}, {negative.shape}")
    cavs, accuracies = train_cavs(positive[None], negative[None])
    return cavs[0], float(accuracies[0])


def tcav_score(gradients: np.ndarray, cav: np.ndarray) -> float:
    """The fraction of inputs whose directional derivative ``gradient . cav`` is positive.

    Args:
        gradients: ``(inputs, C)`` pooled gradients of a class's score.
        cav: ``(C,)``.

    Raises:
        ValueError: no input.
    """
    gradients = np.atleast_2d(np.asarray(gradients, np.float64))
    if len(gradients) == 0:
        raise ValueError("tcav_score needs at least one input")
    return float(np.mean(gradients @ np.asarray(cav, np.float64) > 0))


def score_matrix(
    sets: Sequence[np.ndarray], gradients: dict[int, np.ndarray]
) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """TCAV scores of every set against every other set, per class.

    Args:
        sets: ``S >= 2`` arrays ``(n, C)`` of pooled activations (the concept, random sets),
            all of one shape.
        gradients: class index -> ``(inputs, C)`` pooled gradients of that class's inputs.

    Returns:
        Per class, ``(S, S)``: entry ``[a, b]`` is the TCAV score of the CAV of set ``a`` vs set
        ``b`` (NaN on the diagonal); and ``(S, S)`` accuracies of those CAVs (symmetric).

    Raises:
        ValueError: fewer than 2 sets, sets of different shapes, or a class without inputs.
    """
    if len(sets) < 2:
        raise ValueError(f"score_matrix needs at least 2 sets, got {len(sets)}")
    arrays = [np.asarray(s, np.float64) for s in sets]
    if any(a.ndim != 2 or a.shape != arrays[0].shape for a in arrays):
        shapes = ", ".join(str(a.shape) for a in arrays)
        raise ValueError(
            f"every set needs the same number of examples and channels (n, C), got {shapes}"
        )
    count = len(arrays)
    first, second = np.triu_indices(count, k=1)
    stacked = np.stack(arrays)  # (S, n, C)
    cavs, accuracies = train_cavs(stacked[first], stacked[second])
    accuracy = np.full((count, count), np.nan)
    accuracy[first, second] = accuracy[second, first] = accuracies
    scores: dict[int, np.ndarray] = {}
    for k, grads in gradients.items():
        grads = np.atleast_2d(np.asarray(grads, np.float64))
        if len(grads) == 0:
            raise ValueError(f"class {k} has no inputs to score")
        derivatives = grads @ cavs.T  # (inputs, pairs)
        matrix = np.full((count, count), np.nan)
        matrix[first, second] = np.mean(derivatives > 0, axis=0)
        matrix[second, first] = np.mean(derivatives < 0, axis=0)  # the CAV of b vs a is -v
        scores[k] = matrix
    return scores, accuracy


def set_test(concept_mean: float, random_means: Sequence[float]) -> float:
    """Two-sided p-value that ``concept_mean`` is a draw from the distribution of ``random_means``.

    The t-test of one value against a sample of ``N``: ``t = (x - mean) / (sd * sqrt(1 + 1/N))``
    with ``N - 1`` degrees of freedom (``sd`` with ``ddof=1``), the same as SciPy's pooled
    ``ttest_ind([x], sample)``. When the sample does not vary, p is 1 for a value equal to its
    mean and 0 otherwise.

    Args:
        concept_mean: the concept's mean TCAV score ``T_0``.
        random_means: the random sets' mean scores ``T_1..T_N``.

    Raises:
        ValueError: fewer than 2 random values.
    """
    values = np.asarray(random_means, np.float64)
    if values.ndim != 1 or len(values) < 2:
        raise ValueError(f"the test needs at least 2 random sets, got {values.size}")
    difference = float(concept_mean) - float(values.mean())
    spread = float(values.std(ddof=1)) * np.sqrt(1 + 1 / len(values))
    if spread <= 1e-12:
        return 1.0 if abs(difference) <= 1e-12 else 0.0
    return float(2 * stats.t.sf(abs(difference) / spread, len(values) - 1))


def assess_concept(
    concept: np.ndarray,
    randoms: Sequence[np.ndarray],
    gradients: dict[int, np.ndarray],
    *,
    tests: int | None = None,
    alpha: float = ALPHA,
) -> dict[int, dict[str, object]]:
    """TCAV scores of a concept and their significance, per class (see the module doc).

    Args:
        concept: ``(n, C)`` pooled activations of the concept's examples.
        randoms: ``N >= 3`` arrays ``(n, C)``, pooled activations of distinct random sets of
            the concept's size.
        gradients: class index -> ``(inputs, C)`` pooled gradients of that class's inputs.
        tests: how many tests the Bonferroni correction counts (classes x layers tested
            together); default: the classes here (one layer).
        alpha: the significance level the corrected p-value is compared with.

    Returns:
        Per class: ``inputs``; ``scores`` (the concept vs each random set, ``N`` values), their
        mean ``tcav`` and standard deviation ``tcav_std``; ``random_scores`` (each random set's
        mean score against the ``N`` other sets, the null the concept's mean is compared with),
        their mean ``random_tcav`` and standard deviation ``random_tcav_std`` (``ddof=1``);
        ``p_value`` (raw, :func:`set_test`), ``p_value_corrected`` (``min(1, p * tests)``),
        ``tests``, ``alpha``, ``significant`` (corrected p < ``alpha``), ``random_sets`` (``N``),
        and the mean accuracies of the concept's CAVs and of the random-vs-random ones.

    Raises:
        ValueError: fewer than 3 random sets, sets of different sizes, ``tests`` fewer than the
            classes, or ``alpha`` outside (0, 1).
    """
    if len(randoms) < 3:
        raise ValueError(f"assess_concept needs at least 3 random sets, got {len(randoms)}")
    if not gradients:
        raise ValueError("assess_concept needs the gradients of at least one class")
    tests = len(gradients) if tests is None else tests
    if isinstance(tests, bool) or not isinstance(tests, int) or tests < len(gradients):
        raise ValueError(
            f"tests must be an integer >= the {len(gradients)} classes tested, got {tests!r}"
        )
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    sizes = {len(concept), *(len(r) for r in randoms)}
    if len(sizes) > 1:
        raise ValueError(
            "the concept and every random set need the same number of examples (the test "
            f"compares them as exchangeable sets), got {len(concept)} and "
            f"{sorted(len(r) for r in randoms)}"
        )
    matrices, accuracy = score_matrix([concept, *randoms], gradients)
    count = len(randoms)
    random_pairs = ~np.eye(count, dtype=bool)
    results: dict[int, dict[str, object]] = {}
    for k, matrix in matrices.items():
        scores = matrix[0, 1:]
        set_means = np.nanmean(matrix, axis=1)  # T_a: each set's mean against the N others
        p = set_test(set_means[0], set_means[1:])
        corrected = min(1.0, p * tests)
        results[k] = {
            "inputs": int(len(np.atleast_2d(gradients[k]))),
            "tcav": float(scores.mean()),
            "tcav_std": float(scores.std()),
            "random_tcav": float(set_means[1:].mean()),
            "random_tcav_std": float(set_means[1:].std(ddof=1)),
            "p_value": p,
            "p_value_corrected": corrected,
            "tests": tests,
            "alpha": alpha,
            "significant": bool(corrected < alpha),
            "random_sets": count,
            "scores": [float(s) for s in scores],
            "random_scores": [float(s) for s in set_means[1:]],
            "cav_accuracy": float(accuracy[0, 1:].mean()),
            "random_cav_accuracy": float(accuracy[1:, 1:][random_pairs].mean()),
        }
    return results
