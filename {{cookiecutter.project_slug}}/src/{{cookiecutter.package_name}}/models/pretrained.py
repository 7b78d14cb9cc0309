"""Pretrained initialization from a local file, and freezing of the first layers.

Nothing is ever downloaded: the weights come from a file the user names (a ``state_dict`` saved
with ``torch.save(model.state_dict(), path)``, or a training checkpoint of this project or of
another tool that keeps the weights under ``"model"``, ``"state_dict"``, ``"model_state_dict"``
or ``"model_state"``). Files are read with ``torch.load(weights_only=True)``, which unpickles
tensors and plain containers only, so a file crafted to run code when unpickled is refused
without running it.

Tensors are matched by name and shape; everything else is reported, not silently dropped. Remember
to normalize inputs the way the pretrained model was trained.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..utils.errors import ProjectError

STATE_DICT_KEYS = ("model", "state_dict", "model_state_dict", "model_state")
"""Keys under which checkpoints commonly keep the model's weights."""

WRAPPER_PREFIXES = ("module.", "_orig_mod.")
"""Name prefixes added by DistributedDataParallel/DataParallel and torch.compile, removed on load."""


class PretrainedWeightsError(ProjectError):
    """A pretrained-weights file is missing, unreadable, unsafe, or fits nothing in the model."""


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did.

    Attributes:
        path: the weights file.
        loaded: names of the model tensors that received weights from the file.
        mismatched: ``(name, shape in file, shape in model)`` for names found in both with
            different shapes (left as initialized).
        missing: model tensors the file does not have (left as initialized).
        unexpected: file tensors the model does not have (ignored).
    """

    path: Path
    loaded: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One paragraph for the log and ``notes.md``."""
        total = len(self.loaded) + len(self.mismatched) + len(self.missing)
        lines = [f"loaded {len(self.loaded)} of {total} model tensors from '{self.path}'"]
        if self.mismatched:
            shapes = "; ".join(f"{n} {list(f)} vs {list(m)}" for n, f, m in self.mismatched)
            lines.append(
                f"skipped {len(self.mismatched)} with another shape (file vs model): {shapes}"
            )
        if self.missing:
            lines.append(
                f"{len(self.missing)} model tensors not in the file: {', '.join(self.missing)}"
            )
        if self.unexpected:
            lines.append(
                f"{len(self.unexpected)} file tensors not in the model: {', '.join(self.unexpected)}"
            )
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _strip_prefixes(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix) :], True
    return name


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the weights in ``path`` safely, as ``{parameter name: tensor}`` on the CPU.

    Raises:
        PretrainedWeightsError: the file is missing, is not a PyTorch file, holds anything but
            tensors and plain containers (it is never unpickled as code), or holds no weights.
    """
    path = Path(path)
    if not path.is_file():
        raise PretrainedWeightsError(f"pretrained weights file '{path}' does not exist")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types; all mean "not weights"
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise PretrainedWeightsError(
            f"'{path}' is not a weights file that can be loaded safely "
            f"(torch.load with weights_only=True failed: {reason})"
        ) from None
    if isinstance(content, Mapping):
        for key in STATE_DICT_KEYS:
            if isinstance(content.get(key), Mapping):
                content = content[key]
                break
    if not isinstance(content, Mapping):
        raise PretrainedWeightsError(
            f"'{path}' holds a {type(content).__name__}, not a state dict of named tensors"
        )
    tensors = {
        _strip_prefixes(str(k)): v for k, v in content.items() if isinstance(v, torch.Tensor)
    }
    if not tensors:
        raise PretrainedWeightsError(f"'{path}' holds no tensors (expected a model state dict)")
    return tensors


def load_pretrained(model: nn.Module, path: str | Path) -> LoadReport:
    """Copy the weights in ``path`` into ``model`` where name and shape match.

    Args:
        model: the network (as built by :func:`~.registry.build_model`, also when wrapped in
            DistributedDataParallel or compiled); changed in place.
        path: a local file saved with ``torch.save`` (see the module doc for what it may hold).

    Returns:
        A :class:`LoadReport` of loaded, mismatched, missing and unexpected tensors.

    Raises:
        PretrainedWeightsError: the file cannot be read safely, or not one tensor in it fits the
            model (by name and shape); the message names the file.
    """
    path = Path(path)
    weights = read_state_dict(path)
    # Names are compared without DDP/compile prefixes on either side; the report uses the
    # model's own names.
    own = model.state_dict()
    report = LoadReport(path=path)
    usable: dict[str, torch.Tensor] = {}
    for name, target in own.items():
        key = _strip_prefixes(name)
        if key not in weights:
            report.missing.append(name)
        elif weights[key].shape != target.shape:
            report.mismatched.append((name, tuple(weights[key].shape), tuple(target.shape)))
        else:
            usable[name] = weights[key]
            report.loaded.append(name)
    known = {_strip_prefixes(name) for name in own}
    report.unexpected = [key for key in weights if key not in known]
    if not usable:
        raise PretrainedWeightsError(
            f"no tensor in '{path}' matches the model by name and shape "
            f"({len(weights)} tensors in the file, {len(own)} in the model); "
            "was it saved from another architecture?"
        )
    model.load_state_dict(usable, strict=False)
    return report


def parameterised_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules that own parameters directly (convolutions, norms, dense layers), in order.

    The order is the order the model registers them, which for the project's and MONAI's
    networks is input to output.
    """
    return [
        (name, module)
        for name, module in model.named_modules()
        if any(True for _ in module.parameters(recurse=False))
    ]


def freeze_layers(model: nn.Module, count: int) -> list[str]:
    """Freeze the first ``count`` parameterised layers: no gradients, no updates.

    Their parameters get ``requires_grad=False``; frozen batch-norm layers also stop updating
    their running statistics (momentum 0), so the pretrained statistics are kept. Freezing does
    not change the train/eval mode. Build the optimizer after freezing, or it skips frozen
    parameters anyway since they never get a gradient.

    Args:
        model: the network, changed in place.
        count: number of layers from the input side, ``0 <= count <=`` the number of layers
            (see :func:`parameterised_layers`).

    Returns:
        The names of the frozen layers.

    Raises:
        ValueError: ``count`` out of range.
    """
    layers = parameterised_layers(model)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= len(layers):
        raise ValueError(f"freeze count must be an integer in [0, {len(layers)}]; got {count!r}")
    for _, module in layers[:count]:
        for parameter in module.parameters(recurse=False):
            parameter.requires_grad_(False)
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.0
    return [name for name, _ in layers[:count]]
