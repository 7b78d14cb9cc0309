"""Weight initialization chosen by the activation that follows the layers.

The aim is a variance that neither shrinks nor explodes from layer to layer at the start of
training (see the activation plots of a run):

- He / Kaiming (``std = gain / sqrt(fan_in)``, gain ``sqrt(2)`` for ReLU, ``sqrt(2 / (1 + a²))``
  for leaky ReLU with slope ``a``; ELU uses the ReLU gain) for the ReLU family, which zeroes or
  squashes half of its input;
- Xavier / Glorot (``std = sqrt(2 / (fan_in + fan_out))``) for tanh and sigmoid, which are
  close to linear around zero.

Layers whose output feeds no activation (the logits layer, the upsampling convolutions before a
concatenation or sum; the models mark them with :func:`~.layers.mark_linear`) get Xavier
whatever the activation: that is Glorot's linear case (gain 1).

With normalization after a convolution, the scale of its weights no longer matters for the
forward signal, only for how fast Adam's fixed-size steps change them: on a toy overfitting task
(the project's U-Net, base_channels 10, Adam 1e-3, 200 steps, 6 seeds) PyTorch's smaller default
initialization (``init="torch"``) fitted somewhat faster (mean Dice 0.97 against 0.93). Where it
matters most, without normalization (``norm="none"``), He/Xavier keep the activations' variance
steady from layer to layer; compare both with the model option ``init``.

``fan_in`` of a convolution is ``in_channels × kernel volume`` and ``fan_out`` is
``out_channels × kernel volume`` (PyTorch's convention, also for transposed convolutions).
Biases start at zero, normalization layers at scale 1 and shift 0.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import ACTIVATIONS, LEAKY_SLOPE, check_choice

RELU_FAMILY = ("relu", "leaky_relu", "elu")
SATURATING = ("tanh", "sigmoid")
INIT_SCHEMES = ("auto", "he", "xavier", "torch")

_WEIGHT_LAYERS = (nn.modules.conv._ConvNd, nn.Linear)
_NORM_LAYERS = (
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    nn.LayerNorm,
)


def resolve_scheme(activation: str, scheme: str = "auto") -> str:
    """The scheme that ``"auto"`` means for ``activation``: ``"he"`` or ``"xavier"``.

    Raises:
        ValueError: unknown activation or scheme.
    """
    check_choice("activation", activation, ACTIVATIONS)
    check_choice("init", scheme, INIT_SCHEMES)
    if scheme != "auto":
        return scheme
    return "he" if activation in RELU_FAMILY else "xavier"


def fans(weight: torch.Tensor) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a linear or convolution weight (PyTorch's convention)."""
    if weight.ndim < 2:
        raise ValueError(
            f"fans need a weight with >= 2 dimensions; got shape {tuple(weight.shape)}"
        )
    receptive = math.prod(weight.shape[2:])
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def expected_std(
    weight: torch.Tensor, activation: str, scheme: str = "auto", linear: bool = False
) -> float:
    """The standard deviation :func:`init_weights` gives ``weight``.

    Args:
        weight: a convolution or linear weight.
        activation: the network's hidden activation.
        scheme: as for :func:`init_weights` (``"torch"`` has no single std: an error).
        linear: the layer's output feeds no activation (Xavier whatever the scheme).

    Raises:
        ValueError: unknown activation or scheme, or ``scheme="torch"``.
    """
    scheme = resolve_scheme(activation, scheme)
    if linear and scheme != "torch":
        scheme = "xavier"
    fan_in, fan_out = fans(weight)
    if scheme == "he":
        slope = LEAKY_SLOPE if activation == "leaky_relu" else 0.0
        return math.sqrt(2.0 / (1.0 + slope**2)) / math.sqrt(fan_in)
    if scheme == "xavier":
        return math.sqrt(2.0 / (fan_in + fan_out))
    raise ValueError("init 'torch' keeps PyTorch's default initialization: no single std")


@torch.no_grad()
def init_weights(model: nn.Module, activation: str, scheme: str = "auto") -> nn.Module:
    """Initialize every convolution and linear layer of ``model`` in place.

    Args:
        model: any network; convolutions (also transposed) and linear layers get normal weights
            with the scheme's std and zero biases (layers marked with
            :func:`~.layers.mark_linear` get Xavier); normalization layers get scale 1, shift 0.
        activation: the network's hidden activation, one of :data:`~.layers.ACTIVATIONS`.
        scheme: ``"auto"`` (He for the ReLU family, Xavier for tanh/sigmoid), ``"he"``,
            ``"xavier"``, or ``"torch"`` to keep PyTorch's defaults (for comparison).

    Returns:
        ``model``.

    Raises:
        ValueError: unknown activation or scheme.
    """
    scheme = resolve_scheme(activation, scheme)
    if scheme == "torch":
        return model
    for module in model.modules():
        if isinstance(module, _WEIGHT_LAYERS):
            linear = getattr(module, "linear_output", False)
            module.weight.normal_(0.0, expected_std(module.weight, activation, scheme, linear))
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, _NORM_LAYERS):
            if getattr(module, "weight", None) is not None:
                module.weight.fill_(1.0)
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()
    return model
