"""TCAV: testing with concept activation vectors (Kim et al., ICML 2018).

Definitions, for a layer ``l`` with activations ``f_l(x)`` and a class ``k`` with score
``h_k``:

- the *concept activation vector* ``v_C`` is the unit normal of a linear classifier that
  separates ``f_l`` of the concept's examples from ``f_l`` of random counterexamples, pointing
  towards the concept (here: L2-regularised logistic regression, fitted by Newton's method);
- the *conceptual sensitivity* of an input is the directional derivative
  ``S_{C,k,l}(x) = grad h_k(f_l(x)) . v_C``: positive when moving the activations towards the
  concept raises the class score;
- the *TCAV score* is the fraction of the class's inputs with ``S > 0``.

A CAV learnt from one random set can point anywhere, so the test is repeated: the concept
against each of ``R`` random sets gives ``R`` TCAV scores, and random set 0 against random sets
``1..R`` gives ``R`` scores of concepts that mean nothing. A two-sided t-test
(:func:`scipy.stats.ttest_ind`) of the first against the second says whether the concept
matters more than chance (p < 0.05).

Activations are averaged over space, one value per channel, so that examples of any size (a
lesion crop, a whole image) live in the same space; the matching derivative averages the
gradient over space too (the gradient along the CAV applied equally at every position).
The implementation is the project's own rather than ``captum.concept``: that one flattens
activations, so it needs every example at one size, and writes CAVs to disk.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from scipy import stats
from torch import nn

from .layers import LayerError

ALPHA = 0.05  # significance level of the t-test
RANDOM_SETS = 10  # R: random sets the concept is tested against (R + 1 are drawn)
L2 = 1e-2  # ridge penalty of the CAV classifier (on standardised activations)
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


def train_cav(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, float]:
    """The concept activation vector separating ``positive`` from ``negative`` activations.

    Args:
        positive: ``(n, C)`` activations of the concept's examples.
        negative: ``(m, C)`` activations of the counterexamples.

    Returns:
        The unit vector ``(C,)`` normal to the decision boundary, pointing to the concept (all
        zeros if the classes cannot be told apart at all), and the classifier's accuracy on
        the examples (0.5 = no better than a coin).
    """
    positive, negative = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    if positive.ndim != 2 or negative.ndim != 2 or positive.shape[1] != negative.shape[1]:
        raise ValueError(f"expected (n, C) and (m, C), got {positive.shape}, {negative.shape}")
    if len(positive) == 0 or len(negative) == 0:
        raise ValueError("a CAV needs at least one example on each side")
    x = np.concatenate([positive, negative])
    y = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))])
    # A scalar scale keeps the direction of w the same in raw and standardised units.
    scale = float(x.std()) or 1.0
    design = np.hstack([(x - x.mean(axis=0)) / scale, np.ones((len(x), 1))])
    penalty = np.full(design.shape[1], 2 * L2)
    penalty[-1] = 1e-9  # the intercept is not penalised (a trace keeps H invertible)
    beta = np.zeros(design.shape[1])
    for _ in range(NEWTON_STEPS):  # Newton's method (IRLS) on the penalised mean log-loss
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ beta, -30, 30)))
        gradient = design.T @ (p - y) / len(y) + penalty * beta
        hessian = (design * (p * (1 - p))[:, None]).T @ design / len(y) + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.abs(step).max() < 1e-10:
            break
    w = beta[:-1]
    accuracy = float(np.mean((design @ beta > 0) == (y == 1)))
    norm = float(np.linalg.norm(w))
    cav = w / norm if norm > 0 else np.zeros_like(w)
    return cav, accuracy


def tcav_score(gradients: np.ndarray, cav: np.ndarray) -> float:
    """The fraction of inputs whose directional derivative ``gradient . cav`` is positive."""
    gradients = np.atleast_2d(np.asarray(gradients, np.float64))
    if len(gradients) == 0:
        raise ValueError("tcav_score needs at least one input")
    return float(np.mean(gradients @ np.asarray(cav, np.float64) > 0))


def significance(scores: Sequence[float], random_scores: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test between the concept's and the random TCAV scores.

    When neither list varies, the test is undefined: p is 1 for equal values, else 0.
    """
    a, b = np.asarray(scores, np.float64), np.asarray(random_scores, np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError("the t-test needs at least two scores on each side")
    if a.std() == 0 and b.std() == 0:
        return 1.0 if a.mean() == b.mean() else 0.0
    with warnings.catch_warnings():  # one constant side: valid, but scipy warns
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def assess_concept(
    concept: np.ndarray,
    randoms: Sequence[np.ndarray],
    gradients: dict[int, np.ndarray],
) -> dict[int, dict[str, object]]:
    """TCAV scores of a concept and their significance, per class.

    Args:
        concept: ``(n, C)`` pooled activations of the concept's examples.
        randoms: ``R + 1`` arrays ``(m, C)``, pooled activations of random sets.
        gradients: class index -> ``(inputs, C)`` pooled gradients of that class's inputs.

    Returns:
        Per class: ``scores`` (concept vs random set i, i = 1..R), ``random_scores`` (random set
        0 vs random set i), their means ``tcav`` and ``random_tcav``, ``p_value``,
        ``significant`` (p < :data:`ALPHA`), ``inputs``, and the mean CAV accuracies.
    """
    if len(randoms) < 3:
        raise ValueError("assess_concept needs at least 3 random sets (R >= 2)")
    cavs = [train_cav(concept, r) for r in randoms[1:]]
    nulls = [train_cav(randoms[0], r) for r in randoms[1:]]
    results: dict[int, dict[str, object]] = {}
    for k, grads in gradients.items():
        scores = [tcav_score(grads, cav) for cav, _ in cavs]
        random_scores = [tcav_score(grads, cav) for cav, _ in nulls]
        p = significance(scores, random_scores)
        results[k] = {
            "inputs": int(len(grads)),
            "tcav": float(np.mean(scores)),
            "tcav_std": float(np.std(scores)),
            "random_tcav": float(np.mean(random_scores)),
            "random_tcav_std": float(np.std(random_scores)),
            "p_value": p,
            "significant": bool(p < ALPHA),
            "scores": scores,
            "random_scores": random_scores,
            "cav_accuracy": float(np.mean([a for _, a in cavs])),
            "random_cav_accuracy": float(np.mean([a for _, a in nulls])),
        }
    return results
