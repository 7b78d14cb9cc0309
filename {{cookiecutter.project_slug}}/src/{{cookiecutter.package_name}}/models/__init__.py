"""Models: networks chosen by ``model.name``, their initialization, pretrained weights and
per-layer statistics for the training plots.

Example:
    >>> model = build_model("unet", spatial_dims=3, in_channels=1, out_channels=2, depth=3)
"""

from .init import init_weights
from .layer_stats import ActivationStats, gradient_norms
from .pretrained import LoadReport, PretrainedWeightsError, freeze_layers, load_pretrained
from .registry import MODEL_NAMES, TASK_MODELS, build_model, model_options, model_task

__all__ = [
    "MODEL_NAMES",
    "TASK_MODELS",
    "ActivationStats",
    "LoadReport",
    "PretrainedWeightsError",
    "build_model",
    "freeze_layers",
    "gradient_norms",
    "init_weights",
    "load_pretrained",
    "model_options",
    "model_task",
]
