"""The project's own 2D/3D CNN classifier: a small ResNet.

Architecture (``depth=4``, ``base_channels=16``, ``blocks_per_stage=1``; a 64³ input)::

    input (B, 1, 64³)
      stem      conv stride 2, norm, act ->  16 ch, 32³
      stage 1   residual block stride 2  ->  32 ch, 16³
      stage 2   residual block stride 2  ->  64 ch,  8³
      stage 3   residual block stride 2  -> 128 ch,  4³
      stage 4   residual block stride 2  -> 256 ch,  2³
      global average pooling            -> (B, 256)
      dropout, dense layer              -> (B, out_channels) logits

Global pooling makes any input size >= 1 work: no padding or cropping is needed.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import (
    ConvBlock,
    GaussianNoise,
    check_input,
    check_network_options,
    conv_nd,
    make_activation,
    make_norm,
    mark_linear,
)


class CNNClassifier(nn.Module):
    """A 2D/3D residual CNN with global average pooling and a dense output layer.

    Shapes: input ``(B, in_channels, X, Y[, Z])`` -> logits ``(B, out_channels)`` (no softmax:
    the loss applies it).

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the input image.
        out_channels: number of classes.
        depth: number of stages after the stem, >= 1; each halves the resolution and doubles
            the channels.
        base_channels: channels after the stem.
        blocks_per_stage: residual blocks per stage (the first one downsamples).
        norm: ``"batch"``, ``"instance"``, ``"group"`` or ``"none"``.
        activation: one of :data:`~.layers.ACTIVATIONS`.
        dropout: dropout rate on the pooled features, before the dense layer (0 = off).
        spatial_dropout: whole-channel dropout rate inside every block (0 = off).
        residual: shortcut connections around the blocks (a plain CNN when False).
        feature_noise: standard deviation of Gaussian noise added to the features after every
            stage during training (0 = off).

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
        blocks_per_stage: int = 1,
        norm: str = "batch",
        activation: str = "relu",
        dropout: float = 0.0,
        spatial_dropout: float = 0.0,
        residual: bool = True,
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
            blocks_per_stage=blocks_per_stage,
        )

        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.activation = activation
        widths = [base_channels * 2**stage for stage in range(depth + 1)]
        self.stem = nn.Sequential(
            conv_nd(spatial_dims)(
                in_channels, widths[0], 3, stride=2, padding=1, bias=norm == "none"
            ),
            make_norm(norm, spatial_dims, widths[0]),
            make_activation(activation),
        )
        block = {
            "norm": norm,
            "activation": activation,
            "spatial_dropout": spatial_dropout,
            "residual": residual,
        }
        self.stages = nn.ModuleList()
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            blocks = [ConvBlock(spatial_dims, c_in, c_out, stride=2, **block)]
            blocks += [
                ConvBlock(spatial_dims, c_out, c_out, **block) for _ in range(blocks_per_stage - 1)
            ]
            self.stages.append(nn.Sequential(*blocks))
        self.noise = GaussianNoise(feature_noise)
        self.pool = (nn.AdaptiveAvgPool2d if spatial_dims == 2 else nn.AdaptiveAvgPool3d)(1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = mark_linear(nn.Linear(widths[-1], out_channels))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last convolutional feature maps ``(B, C, *S / 2**(depth + 1))`` (for Grad-CAM)."""
        check_input(x, self.spatial_dims, self.in_channels, "CNNClassifier")
        out = self.stem(x)
        for stage in self.stages:
            out = self.noise(stage(out))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, out_channels)`` for an input ``(B, in_channels, *S)``."""
        pooled = self.pool(self.features(x)).flatten(1)
        return self.fc(self.dropout(pooled))
