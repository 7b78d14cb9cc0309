"""Per-layer statistics for the training plots: activation mean/std and gradient norms.

- :class:`ActivationStats` records the mean and standard deviation of the output of every
  convolution and dense layer with forward hooks. With a good initialization the standard
  deviation stays of the same order from the first layer to the last; a steady shrink or growth
  means vanishing or exploding signals.
- :func:`gradient_norms` reads the L2 norm of each layer's gradient after ``backward()`` (after
  DDP has averaged them); their size over training helps to choose a clipping threshold.

Both return plain ``dict``s of floats keyed by layer name (``model.named_modules()`` names).

Example:
    >>> with ActivationStats(model) as stats:
    ...     loss = loss_fn(model(x), y)
    >>> loss.backward()
    >>> stats.summary()["stem.0"]
    {'mean': 0.01, 'std': 0.98}
    >>> gradient_norms(model)["stem.0"]
    0.42
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

WEIGHT_LAYERS: tuple[type[nn.Module], ...] = (nn.modules.conv._ConvNd, nn.Linear)
"""Layers whose outputs :class:`ActivationStats` records by default."""


class ActivationStats:
    """Forward hooks that record the mean and std of chosen layers' outputs.

    Each forward pass through a hooked layer adds its output's mean and std to running sums;
    :meth:`summary` averages them over the passes since the last :meth:`reset`. The statistics
    stay on the model's device until :meth:`summary`, so recording costs no synchronisation.

    Args:
        model: the network to watch.
        layer_types: record the outputs of modules of these types (default: convolutions,
            transposed convolutions and dense layers).

    Use it as a context manager, or call :meth:`remove` when done: the hooks are removed and
    the model is as before. Set :attr:`enabled` to False to pause recording cheaply.
    """

    def __init__(
        self, model: nn.Module, layer_types: Sequence[type[nn.Module]] = WEIGHT_LAYERS
    ) -> None:
        self.enabled = True
        self._sums: dict[str, list[torch.Tensor]] = {}
        self._counts: dict[str, int] = {}
        self._handles = []
        types = tuple(layer_types)
        for name, module in model.named_modules():
            if isinstance(module, types):
                self._handles.append(module.register_forward_hook(self._hook(name)))
        if not self._handles:
            raise ValueError(
                f"no layer of type {', '.join(t.__name__ for t in types)} in {type(model).__name__}"
            )

    def _hook(self, name: str):
        def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if not self.enabled or not isinstance(output, torch.Tensor):
                return
            with torch.no_grad():
                std, mean = torch.std_mean(output.detach().float())
            if name in self._sums:
                self._sums[name][0] += mean
                self._sums[name][1] += std
                self._counts[name] += 1
            else:
                self._sums[name] = [mean, std]
                self._counts[name] = 1

        return record

    def summary(self) -> dict[str, dict[str, float]]:
        """``{layer name: {"mean": m, "std": s}}`` averaged over the recorded passes.

        Layers appear in the order they first ran (input to output), which for a U-Net's
        decoder differs from the order the layers were defined in.
        """
        return {
            name: {
                "mean": float(mean) / self._counts[name],
                "std": float(std) / self._counts[name],
            }
            for name, (mean, std) in self._sums.items()
        }

    def reset(self) -> None:
        """Forget the recorded passes (e.g. at the start of an epoch)."""
        self._sums.clear()
        self._counts.clear()

    def remove(self) -> None:
        """Remove the hooks; :meth:`summary` still returns what was recorded."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> ActivationStats:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()


def gradient_norms(model: nn.Module) -> dict[str, float]:
    """L2 norm of the gradient of each layer's own parameters, after ``loss.backward()``.

    Args:
        model: the network; a layer is a module owning parameters directly (a convolution with
            its bias, a norm layer's scale and shift, a dense layer). Parameters without a
            gradient (frozen, or unused in this step) are left out, and so are layers without any.

    Returns:
        ``{layer name: norm}`` in layer order. The norm of all of them together is
        ``sqrt(sum(n**2))``, the value ``torch.nn.utils.clip_grad_norm_`` compares with its limit.
    """
    norms: dict[str, torch.Tensor] = {}
    for name, module in model.named_modules():
        grads = [p.grad for p in module.parameters(recurse=False) if p.grad is not None]
        if grads:
            norms[name] = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(g.detach().float()) for g in grads])
            )
    return {name: float(norm) for name, norm in norms.items()}
