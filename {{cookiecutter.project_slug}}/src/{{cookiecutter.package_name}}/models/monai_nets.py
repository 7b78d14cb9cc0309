"""State-of-the-art baselines from MONAI, with small defaults that a CPU can train.

- ``dynunet``: :class:`monai.networks.nets.DynUNet`, the nnU-Net architecture (two convolutions
  per level, instance norm, leaky ReLU, strided-convolution downsampling; the first level at full
  resolution as in nnU-Net, so it costs far more than the project's U-Net on a CPU).
- ``segresnet``: :class:`monai.networks.nets.SegResNet` (residual encoder, light decoder; the
  BraTS 2018 winner without its variational branch).
- ``densenet121``: :class:`monai.networks.nets.DenseNet121`, a classifier. Never with
  ``pretrained=True``: that would download weights; use :func:`~.pretrained.load_pretrained`
  with a local file instead.

The segmentation networks need every spatial size divisible by their total downsampling; the
classes below pad the input (repeating edge values) to a multiple of it, and to at least twice
it so that the coarsest level keeps 2 voxels per axis for its normalization, and crop the logits
back, so any size works.
They subclass MONAI's classes, so their parameter names (``state_dict`` keys) are MONAI's own
and weights saved from a plain MONAI network load into them.
"""

from __future__ import annotations

import torch

from ..utils.monai_import import import_monai
from .layers import check_choice, check_input, check_probability, crop_to, pad_to_multiple

_nets = import_monai("monai.networks.nets")  # without the optional libraries MONAI would import
DenseNet121, DynUNet, SegResNet = _nets.DenseNet121, _nets.DynUNet, _nets.SegResNet

DYNUNET_NORMS = ("instance", "batch")
SEGRESNET_NORMS = ("group", "instance", "batch")
DENSENET_NORMS = ("batch", "instance", "group")
MAX_FILTERS = 320  # nnU-Net caps 3D feature maps at 320 channels
# DenseNet121 halves the size five times (stem, max pooling, three average poolings); the last
# pooling needs 2 voxels, so every input size must be at least 29.
DENSENET_MIN_SIZE = 29


class _PadCrop:
    """Mixin: check the input shape, pad to a multiple of ``_multiple``, crop the output back."""

    _spatial_dims: int
    _in_channels: int
    _multiple: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self._spatial_dims, self._in_channels, type(self).__name__)
        x, sizes = pad_to_multiple(x, self._multiple, minimum=2 * self._multiple)
        return crop_to(super().forward(x), sizes)  # type: ignore[misc]


class PaddedDynUNet(_PadCrop, DynUNet):
    """DynUNet that accepts any input size. ``(B, C_in, *S) -> (B, C_out, *S)`` logits."""


class PaddedSegResNet(_PadCrop, SegResNet):
    """SegResNet that accepts any input size. ``(B, C_in, *S) -> (B, C_out, *S)`` logits."""


class CheckedDenseNet121(DenseNet121):
    """DenseNet121 that names the expected shape on a wrong input. ``(B, C_in, *S) -> (B, C_out)``.

    Its five halvings need every spatial size >= :data:`DENSENET_MIN_SIZE` (29).
    """

    _spatial_dims: int
    _in_channels: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self._spatial_dims, self._in_channels, "DenseNet121")
        if min(x.shape[2:]) < DENSENET_MIN_SIZE:
            raise ValueError(
                f"DenseNet121 needs spatial sizes >= {DENSENET_MIN_SIZE}; got {tuple(x.shape[2:])}"
            )
        return super().forward(x)


def _remember(net, spatial_dims: int, in_channels: int, multiple: int = 1):
    net._spatial_dims, net._in_channels, net._multiple = spatial_dims, in_channels, multiple
    return net


def build_dynunet(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    *,
    depth: int = 4,
    base_channels: int = 16,
    norm: str = "instance",
    dropout: float = 0.0,
    residual: bool = False,
) -> PaddedDynUNet:
    """nnU-Net: ``depth`` halvings after a full-resolution level; filters double up to 320.

    Args:
        spatial_dims, in_channels, out_channels: as for every model.
        depth: number of downsampling steps, >= 2 (DynUNet needs three levels or more).
        base_channels: filters of the full-resolution level (nnU-Net uses 32).
        norm: ``"instance"`` (nnU-Net) or ``"batch"``.
        dropout: dropout rate in every block.
        residual: residual blocks instead of plain ones.
    """
    check_choice("norm", norm, DYNUNET_NORMS)
    check_probability("dropout", dropout)
    if depth < 2 or base_channels < 1:
        raise ValueError(
            f"dynunet needs depth >= 2 and base_channels >= 1; got {depth}, {base_channels}"
        )
    strides = [1] + [2] * depth
    net = PaddedDynUNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=[3] * (depth + 1),
        strides=strides,
        upsample_kernel_size=strides[1:],
        filters=[min(base_channels * 2**level, MAX_FILTERS) for level in range(depth + 1)],
        dropout=dropout or None,
        norm_name=(norm, {"affine": True}) if norm == "instance" else norm,
        res_block=residual,
    )
    return _remember(net, spatial_dims, in_channels, 2**depth)


def build_segresnet(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    *,
    depth: int = 4,
    base_channels: int = 8,
    norm: str = "group",
    dropout: float = 0.0,
) -> PaddedSegResNet:
    """SegResNet with ``depth`` encoder levels (MONAI's default blocks ``(1, 2, 2, 4)`` for 4).

    Args:
        spatial_dims, in_channels, out_channels: as for every model.
        depth: encoder levels, >= 1; the input is downsampled ``depth - 1`` times.
        base_channels: filters of the first level (``init_filters``); a multiple of 8 with
            ``norm="group"`` (8 groups).
        norm: ``"group"`` (MONAI's default), ``"instance"`` or ``"batch"``.
        dropout: dropout rate after the first convolution.
    """
    check_choice("norm", norm, SEGRESNET_NORMS)
    check_probability("dropout", dropout)
    if depth < 1 or base_channels < 1:
        raise ValueError(
            f"segresnet needs depth >= 1 and base_channels >= 1; got {depth}, {base_channels}"
        )
    if norm == "group" and base_channels % 8:
        raise ValueError(
            f"segresnet with norm 'group' needs base_channels divisible by 8; got {base_channels}"
        )
    blocks_down = (1,) if depth == 1 else (1, *([2] * (depth - 2)), 4)
    net = PaddedSegResNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        init_filters=base_channels,
        dropout_prob=dropout or None,
        norm=("group", {"num_groups": 8}) if norm == "group" else norm,
        blocks_down=blocks_down,
        blocks_up=(1,) * (depth - 1),
    )
    return _remember(net, spatial_dims, in_channels, 2 ** (depth - 1))


def build_densenet121(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    *,
    base_channels: int = 64,
    growth_rate: int = 32,
    norm: str = "batch",
    dropout: float = 0.0,
) -> CheckedDenseNet121:
    """DenseNet121 (dense blocks of 6, 12, 24, 16 layers), randomly initialized.

    Args:
        spatial_dims, in_channels, out_channels: as for every model.
        base_channels: channels of the stem (``init_features``, 64 in the paper).
        growth_rate: channels each dense layer adds (32 in the paper).
        norm: ``"batch"``, ``"instance"`` or ``"group"`` (8 groups: batch-size independent).
        dropout: dropout rate inside the dense layers.
    """
    check_choice("norm", norm, DENSENET_NORMS)
    check_probability("dropout", dropout)
    if base_channels < 1 or growth_rate < 1:
        raise ValueError(
            f"densenet121 needs base_channels and growth_rate >= 1; got {base_channels}, {growth_rate}"
        )
    if norm == "group" and (base_channels % 8 or growth_rate % 8):
        raise ValueError(
            "densenet121 with norm 'group' needs base_channels and growth_rate divisible by 8; "
            f"got {base_channels}, {growth_rate}"
        )
    net = CheckedDenseNet121(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        init_features=base_channels,
        growth_rate=growth_rate,
        pretrained=False,  # True would download ImageNet weights: never
        norm=("group", {"num_groups": 8}) if norm == "group" else norm,
        dropout_prob=dropout,
    )
    return _remember(net, spatial_dims, in_channels)
