"""The configured network: the ``model.*`` config keys mapped onto a model of the registry.

Training, evaluation, export and explanation all build the network of a run from its
``config.yaml`` through :func:`build`, so a checkpoint always meets the architecture it was
trained with.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..config import Config
from ..utils.errors import ConfigError
from .registry import TASK_MODELS, build_model
from .registry import model_options as known_options

# config key -> model option, for the options the project's own models share.
MODEL_KEYS = {
    "model.width": ("base_channels", lambda c: c.model.width),
    "model.depth": ("depth", lambda c: c.model.depth),
    "model.norm": ("norm", lambda c: c.model.norm),
    "model.activation": ("activation", lambda c: c.model.activation),
    "model.residual": ("residual", lambda c: c.model.residual),
    "model.dropout": ("dropout", lambda c: c.model.dropout),
    "model.spatial_dropout": ("spatial_dropout", lambda c: c.model.spatial_dropout),
    "train.feature_noise": ("feature_noise", lambda c: c.train.feature_noise),
}


def model_options(cfg: Config) -> dict[str, Any]:
    """Model options from ``model.*``; a setting the chosen model has no use for is an error.

    Args:
        cfg: the run's configuration.

    Returns:
        The options of :data:`MODEL_KEYS` that ``model.name`` takes, by option name.

    Raises:
        ConfigError: ``model.name`` is not a model of the task, or a key other than its default
            is set for a model that ignores it (naming the key and the model).
    """
    name = cfg.model.name
    if name not in TASK_MODELS.get(cfg.task, ()):
        raise ConfigError(
            f"config key 'model.name' = '{name}' is not valid: expected one of "
            f"{', '.join(TASK_MODELS[cfg.task])} for {cfg.task}"
        )
    known = known_options(name)
    defaults = Config()
    options = {}
    for key, (option, get) in MODEL_KEYS.items():
        value = get(cfg)
        if option in known:
            options[option] = value
        elif value != get(defaults) and key != "model.norm":
            raise ConfigError(f"config key '{key}' = {value!r} has no effect on model '{name}'")
    return options


def build(cfg: Config, num_classes: int, in_channels: int = 1) -> nn.Module:
    """The configured network, freshly initialized (a checkpoint's weights are loaded after).

    Args:
        cfg: the run's configuration.
        num_classes: output channels.
        in_channels: input channels (the manifest's ``image_<channel>`` columns; 1 for one
            ``image`` column).

    Returns:
        The model of ``model.name`` for ``spatial_dims`` with the options of :func:`model_options`.

    Raises:
        ConfigError: see :func:`model_options`.
    """
    return build_model(
        cfg.model.name,
        spatial_dims=cfg.spatial_dims,
        in_channels=in_channels,
        out_channels=num_classes,
        **model_options(cfg),
    )
