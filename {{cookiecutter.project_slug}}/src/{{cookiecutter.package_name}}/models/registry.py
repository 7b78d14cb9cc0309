"""Models chosen by name: ``build_model("unet", spatial_dims=3, in_channels=1, out_channels=2)``.

===============  ==============  ==================================================================
name             task            network
===============  ==============  ==================================================================
``unet``         segmentation    the project's U-Net (:class:`~.unet.UNet`)
``dynunet``      segmentation    MONAI DynUNet, the nnU-Net architecture
``segresnet``    segmentation    MONAI SegResNet
``cnn``          classification  the project's residual CNN (:class:`~.classifier.CNNClassifier`)
``densenet121``  classification  MONAI DenseNet121
===============  ==============  ==================================================================

Shapes: every model takes ``(B, in_channels, X, Y)`` (2D) or ``(B, in_channels, X, Y, Z)`` (3D).
Segmentation models return logits ``(B, out_channels, X, Y[, Z])`` for any spatial size (they pad
internally and crop back); classifiers return logits ``(B, out_channels)``. No model applies a
softmax or sigmoid: the losses and the prediction code do.

Each model has keyword options with defaults (:func:`model_options`); an option the chosen model
does not have is an error, so a typo never passes silently. The project's own models also take
``init`` (``"auto"``: He for the ReLU family, Xavier for tanh/sigmoid; see :mod:`.init`); MONAI
models keep their authors' initialization.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from .classifier import CNNClassifier
from .init import init_weights
from .layers import check_choice
from .monai_nets import build_densenet121, build_dynunet, build_segresnet
from .unet import UNet


def _own(cls: type[nn.Module]) -> Callable[..., nn.Module]:
    """A builder for one of the project's models: construct, then initialize by activation."""
    signature = inspect.signature(cls.__init__)
    options = [p for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY]
    init_option = inspect.Parameter("init", inspect.Parameter.KEYWORD_ONLY, default="auto")

    def build(spatial_dims: int, in_channels: int, out_channels: int, **kwargs: Any) -> nn.Module:
        scheme = kwargs.pop("init", "auto")
        model = cls(spatial_dims, in_channels, out_channels, **kwargs)
        return init_weights(model, model.activation, scheme)

    positional = [p for p in signature.parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
    build.__signature__ = signature.replace(parameters=[*positional[1:], *options, init_option])
    build.__doc__ = f"Build {cls.__name__} and initialize its weights (option ``init``)."
    return build


_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "unet": _own(UNet),
    "dynunet": build_dynunet,
    "segresnet": build_segresnet,
    "cnn": _own(CNNClassifier),
    "densenet121": build_densenet121,
}

MODEL_NAMES: tuple[str, ...] = tuple(_BUILDERS)
"""Every name :func:`build_model` accepts."""

TASK_MODELS: dict[str, tuple[str, ...]] = {
    "segmentation": ("unet", "dynunet", "segresnet"),
    "classification": ("cnn", "densenet121"),
}
"""The model names that fit each task (the first is the task's default)."""


def model_options(name: str) -> dict[str, Any]:
    """The options of model ``name`` and their defaults, e.g. ``{"depth": 4, ...}``.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    _check_name(name)
    signature = inspect.signature(_BUILDERS[name])
    return {p.name: p.default for p in signature.parameters.values() if p.kind is p.KEYWORD_ONLY}


def model_task(name: str) -> str:
    """``"segmentation"`` or ``"classification"``: what model ``name`` outputs."""
    _check_name(name)
    return next(task for task, names in TASK_MODELS.items() if name in names)


def _check_name(name: str) -> None:
    if name not in _BUILDERS:
        raise ValueError(f"unknown model '{name}'; choose one of: {', '.join(MODEL_NAMES)}")


def build_model(
    name: str, *, spatial_dims: int, in_channels: int, out_channels: int, **options: Any
) -> nn.Module:
    """Build a freshly initialized network by name.

    Args:
        name: one of :data:`MODEL_NAMES`.
        spatial_dims: 2 (images ``(B, C, X, Y)``) or 3 (volumes ``(B, C, X, Y, Z)``).
        in_channels: input channels (1 for a CT or MR image).
        out_channels: classes; for segmentation including the background.
        **options: the model's own settings (see :func:`model_options`), e.g. ``depth=3``.

    Returns:
        The model in training mode, on the CPU. Segmentation: logits ``(B, out_channels, *S)``
        for an input ``(B, in_channels, *S)``; classification: logits ``(B, out_channels)``.

    Raises:
        ValueError: unknown name, an option the model does not have, or an invalid value; the
            message names the name or option.
    """
    _check_name(name)
    check_choice("spatial_dims", spatial_dims, (2, 3))
    for what, value in [("in_channels", in_channels), ("out_channels", out_channels)]:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{what} must be a positive integer; got {value!r}")
    known = model_options(name)
    for option in options:
        if option not in known:
            raise ValueError(
                f"model '{name}' has no option '{option}'; its options are: {', '.join(known)}"
            )
    return _BUILDERS[name](spatial_dims, in_channels, out_channels, **options)
