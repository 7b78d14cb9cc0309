"""Import MONAI without the optional libraries that its package ``__init__`` drags in.

``import monai`` (which every ``from monai.x import y`` runs first) imports all of MONAI's
submodules, and through their optional imports Optuna (auto3dseg's search), Matplotlib's pyplot,
pandas, MLflow and TensorBoard whenever they are installed: a training process would carry
Optuna and the rest without using them, and start seconds later. :func:`import_monai` imports
MONAI once with those libraries hidden, so MONAI takes them as missing (this project uses none of
the MONAI features that need them), then un-hides them: ``sweep`` still imports Optuna, a
``tracking: tensorboard`` run still gets TensorBoard, a plot still gets Matplotlib.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

# Libraries MONAI imports only optionally, kept out of the processes that do not use them.
HIDDEN = (
    "optuna",
    "captum",
    "mlflow",
    "tensorboard",
    "torch.utils.tensorboard",
    "matplotlib",
    "pandas",
)


def import_monai(module: str) -> ModuleType:
    """Import the MONAI module ``module`` (e.g. ``"monai.inferers"``) and return it.

    The first call imports MONAI's package with the :data:`HIDDEN` libraries that are not already
    imported made unimportable for the duration (MONAI's optional imports then fail quietly);
    they are importable again afterwards.

    Args:
        module: a dotted MONAI module name, ``"monai"`` or ``"monai.<...>"``.

    Returns:
        The module.

    Raises:
        ValueError: ``module`` is not a MONAI module.
    """
    if module != "monai" and not module.startswith("monai."):
        raise ValueError(f"expected a MONAI module such as 'monai.inferers', got {module!r}")
    if "monai" not in sys.modules:
        hidden = [name for name in HIDDEN if name not in sys.modules]
        for name in hidden:
            sys.modules[name] = None  # type: ignore[assignment]  # "import name" now fails
        try:
            importlib.import_module("monai")
        finally:
            for name in hidden:
                if name in sys.modules and sys.modules[name] is None:
                    del sys.modules[name]
    return importlib.import_module(module)
