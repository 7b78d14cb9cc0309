"""Which layer of a network to explain: Grad-CAM's and TCAV's choice of feature maps.

The default is *the last convolutional layer*, found generically as the last ``nn.Conv2d`` /
``nn.Conv3d`` in the network's module order whose kernel is larger than one voxel along some
axis. One-voxel (1×1) convolutions are skipped on purpose: in these networks they are output
heads (the segmentation logits, the project's U-Net sub-pixel head, MONAI's ``output_block`` and
``conv_final``) whose "feature maps" are the prediction itself, or residual shortcuts that bypass
the block's computation. So the default is the U-Net's ``fuse.0``, the CNN's last
``stages.*.conv2``, DynUNet's last decoder convolution, DenseNet121's last dense layer
``...denselayer16.layers.conv2``. Any other module can be chosen by its name in
``model.named_modules()`` (``--layer``).
"""

from __future__ import annotations

from torch import nn

from ..utils.errors import ProjectError

CONVOLUTIONS = (nn.Conv2d, nn.Conv3d)
LISTED = 40  # an error message names at most this many layers (the last ones)


class LayerError(ProjectError):
    """A layer name the network does not have, or a network without convolutions."""


def conv_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every 2D/3D convolution of ``model`` by its ``named_modules`` name, in module order."""
    return {
        name: module for name, module in model.named_modules() if isinstance(module, CONVOLUTIONS)
    }


def default_layer(model: nn.Module) -> str:
    """The name of the last convolution with a kernel larger than 1 voxel (see module doc).

    Raises:
        LayerError: ``model`` has no such convolution.
    """
    spatial = [
        name
        for name, module in conv_layers(model).items()
        if any(int(k) > 1 for k in module.kernel_size)
    ]
    if not spatial:
        raise LayerError(
            f"{type(model).__name__} has no convolution with a kernel larger than 1 voxel; "
            "name a layer with --layer"
        )
    return spatial[-1]


def find_layer(model: nn.Module, name: str | None = None) -> tuple[str, nn.Module]:
    """The module called ``name`` (the default layer when ``None``), with its name.

    Args:
        model: the network.
        name: a name from ``model.named_modules()``, e.g. ``"fuse.0"``; ``None`` for
            :func:`default_layer`.

    Raises:
        LayerError: no module of that name; the message lists the convolution layers.
    """
    if name is None:
        name = default_layer(model)
    modules = dict(model.named_modules())
    if not name or name not in modules:
        names = list(conv_layers(model))
        shown = names[-LISTED:]
        more = f" (and {len(names) - len(shown)} earlier ones)" if len(names) > len(shown) else ""
        raise LayerError(
            f"the network ({type(model).__name__}) has no layer '{name}'; its convolution "
            f"layers are: {', '.join(shown)}{more}"
        )
    return name, modules[name]
