"""Training-step time of the project's U-Net against MONAI's UNet on a CPU-sized 3D batch.

Usage (from the project root)::

    python benchmarks/model_step.py [--threads 2] [--steps 10] [--size 64] [--batch 2]

Both models see the same batch, ``(batch, 1, size, size, size)`` with a two-class mask, and take
the same step: forward, cross-entropy, backward, Adam. The steps of the two models alternate
(one of each per round), so load from other processes on the machine slows both alike and the
ratio stays meaningful. It prints each model's parameter count and mean and median step time,
and the ratio project / MONAI for the project's U-Net at MONAI's parameter count and at its
defaults (issue 4 targets <= 1.5 at a similar parameter count).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from monai.networks.nets import UNet as MonaiUNet
from torch import nn

from {{ cookiecutter.package_name }}.models import build_model


def parameter_count(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def make_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], float]:
    """One training step (forward, loss, backward, Adam) as a function returning its seconds."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.train()

    def step() -> float:
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model first")
    parser.add_argument("--size", type=int, default=64, help="edge of the cubic input")
    parser.add_argument("--batch", type=int, default=2, help="batch size")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    shape = (args.batch, 1, args.size, args.size, args.size)
    x = torch.randn(shape)
    y = (x[:, 0] > 0.5).long()  # a two-class mask: (B, X, Y, Z)

    models = {
        "MONAI UNet (16, 32, 64, 128), strides (2, 2, 2)": MonaiUNet(
            spatial_dims=3,
            in_channels=1,
            out_channels=2,
            channels=(16, 32, 64, 128),
            strides=(2, 2, 2),
        ),
        # base_channels 10: about MONAI's parameter count (the comparison issue 4 asks for)
        "project unet, base_channels 10": build_model(
            "unet", spatial_dims=3, in_channels=1, out_channels=2, base_channels=10
        ),
        "project unet, defaults (base_channels 16)": build_model(
            "unet", spatial_dims=3, in_channels=1, out_channels=2
        ),
    }
    steps = {name: make_step(model, x, y) for name, model in models.items()}
    for _ in range(args.warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.steps):  # alternate, so background load hits every model alike
        for name, step in steps.items():
            times[name].append(step())

    print(
        f"batch {shape}, {args.threads} threads, {args.steps} steps each, torch {torch.__version__}"
    )
    means = {}
    for name, model in models.items():
        means[name] = statistics.mean(times[name]) * 1000
        median = statistics.median(times[name]) * 1000
        print(
            f"{name:50s} {parameter_count(model):>9,d} params  "
            f"mean {means[name]:7.1f} ms/step  median {median:7.1f} ms/step"
        )
    monai = next(iter(means.values()))
    for name in list(models)[1:]:
        print(f"ratio {name} / MONAI (mean step time): {means[name] / monai:.2f}")


if __name__ == "__main__":
    main()
