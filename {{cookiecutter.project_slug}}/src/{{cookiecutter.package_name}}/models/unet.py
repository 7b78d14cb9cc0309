"""The project's own U-Net for 2D and 3D segmentation, small and readable.

Architecture (``depth=4``, ``base_channels=16``; sizes for a 64³ input)::

    input (B, 1, 64³)
      stem     conv stride 2, norm, act ->  16 ch, 32³ ───────────────────────────┐ skip
      down 1   ConvBlock stride 2       ->  32 ch, 16³ ──────────────────┐ skip   │
      down 2   ConvBlock stride 2       ->  64 ch,  8³ ─────────┐ skip   │        │
      down 3   ConvBlock stride 2       -> 128 ch,  4³ (bottom) │        │        │
      up 2     upsample, concat skip ───────────────────────────┘        │        │
               ConvBlock                ->  64 ch,  8³                   │        │
      up 1     upsample, concat skip ────────────────────────────────────┘        │
               ConvBlock                ->  32 ch, 16³                            │
      up 0     upsample, add skip ────────────────────────────────────────────────┘
               conv, act                ->  16 ch, 32³
      head     upsample                 -> (B, out_channels, 64³) logits

A ConvBlock is two 3×3(×3) convolutions with normalization and activation, the first one
strided when the block goes down a level (:class:`~.layers.ConvBlock`); "upsample" doubles the
resolution with a learned sub-pixel convolution (:class:`~.layers.SubPixelUpsample`).

Why it is fast: the very first convolution already halves the resolution, nothing but the
cheap sub-pixel head runs at full resolution, and at half resolution there are only two 3×3
convolutions (the stem and the fusion of the finest skip, which is added rather than
concatenated to halve its cost). At a similar parameter count it takes about the time of
MONAI's ``UNet`` with channels (16, 32, 64, 128) per training step on a CPU
(``benchmarks/model_step.py``), whereas a U-Net with 3×3 convolutions at full resolution is
an order of magnitude slower.

Input sizes need not be multiples of ``2**depth``: the input is padded at the far end of each
axis (repeating edge values) to a multiple of ``2**depth``, and to at least ``2**(depth + 1)`` so
that the coarsest level keeps 2 voxels per axis for its normalization; the logits are cropped
back to the input size.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import (
    ConvBlock,
    GaussianNoise,
    SubPixelUpsample,
    check_input,
    check_network_options,
    conv_nd,
    crop_to,
    make_activation,
    make_norm,
    pad_to_multiple,
)


class UNet(nn.Module):
    """A 2D/3D U-Net with an early strided stem.

    Shapes: input ``(B, in_channels, X, Y[, Z])`` -> logits ``(B, out_channels, X, Y[, Z])``
    (no softmax/sigmoid: the loss applies it). Any spatial size >= 1 works (see module doc).

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the input image (1 for CT/MR).
        out_channels: classes including background (one logit per class and voxel).
        depth: number of times the resolution halves (the stem counts as the first), >= 1;
            the deepest features are ``2**depth`` times coarser than the input.
        base_channels: channels at the first level; each level doubles them.
        norm: ``"batch"``, ``"instance"``, ``"group"`` or ``"none"``.
        activation: one of :data:`~.layers.ACTIVATIONS`.
        dropout: element-wise dropout rate inside every block (0 = off).
        spatial_dropout: whole-channel dropout rate inside every block (0 = off).
        residual: add a shortcut around every block (ResNet-style).
        feature_noise: standard deviation of Gaussian noise added to the features after every
            encoder block during training (0 = off).

    Raises:
        ValueError: an argument outside the ranges above.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        depth: int = 4,
        base_channels: int = 16,
        norm: str = "instance",
        activation: str = "relu",
        dropout: float = 0.0,
        spatial_dropout: float = 0.0,
        residual: bool = False,
        feature_noise: float = 0.0,
    ) -> None:
        super().__init__()
        check_network_options(
            spatial_dims=spatial_dims,
            norm=norm,
            activation=activation,
            dropout=dropout,
            spatial_dropout=spatial_dropout,
            feature_noise=feature_noise,
            in_channels=in_channels,
            out_channels=out_channels,
            depth=depth,
            base_channels=base_channels,
        )

        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.depth = depth
        self.activation = activation
        widths = [base_channels * 2**level for level in range(depth)]
        block = {
            "norm": norm,
            "activation": activation,
            "dropout": dropout,
            "spatial_dropout": spatial_dropout,
            "residual": residual,
        }
        conv = conv_nd(spatial_dims)
        bias = norm == "none"
        # Level 0 (half resolution): one strided convolution, nothing else runs this fine.
        self.stem = nn.Sequential(
            conv(in_channels, widths[0], 3, stride=2, padding=1, bias=bias),
            make_norm(norm, spatial_dims, widths[0]),
            make_activation(activation),
        )
        # Levels 1 .. depth-1: a block whose first convolution halves the resolution.
        self.encoder = nn.ModuleList(
            ConvBlock(spatial_dims, widths[i - 1], widths[i], stride=2, **block)
            for i in range(1, depth)
        )
        self.noise = GaussianNoise(feature_noise)
        # upsample[i] brings level i+1 to level i; decoder[i - 1] fuses it with the skip of level i.
        self.upsample = nn.ModuleList(
            SubPixelUpsample(spatial_dims, widths[i + 1], widths[i]) for i in range(depth - 1)
        )
        self.decoder = nn.ModuleList(
            ConvBlock(spatial_dims, 2 * widths[i], widths[i], **block) for i in range(1, depth - 1)
        )
        # Level 0: the skip is added rather than concatenated and fused by one 3×3 convolution,
        # the only one at half resolution besides the stem. It has no normalization: on a toy
        # overfitting task a normalized fusion layer fitted markedly slower.
        self.fuse = nn.Sequential(
            conv(widths[0], widths[0], 3, padding=1), make_activation(activation)
        )
        self.head = SubPixelUpsample(spatial_dims, widths[0], out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, out_channels, *S)`` for an input ``(B, in_channels, *S)``."""
        check_input(x, self.spatial_dims, self.in_channels, "UNet")
        x, sizes = pad_to_multiple(x, 2**self.depth, minimum=2 ** (self.depth + 1))
        out = self.noise(self.stem(x))
        skips = [out]
        for block in self.encoder:
            out = self.noise(block(out))
            skips.append(out)
        skips.pop()  # the deepest level has no skip: it is ``out`` itself
        for level in reversed(range(self.depth - 1)):
            up = self.upsample[level](out)
            if level > 0:
                out = self.decoder[level - 1](torch.cat([up, skips[level]], dim=1))
            else:
                out = up + skips[0]
        return crop_to(self.head(self.fuse(out)), sizes)
