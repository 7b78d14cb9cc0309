"""Step time of the project's training loop against a bare PyTorch loop on the same work.

Both loops train the project's configured model (``model.name`` and ``model.*`` of
``configs/default.yaml``, built by ``models.build_model``) with the configured loss and
optimizer, on the same in-memory batches shaped like training patches
(``train.batch_size`` x 1 x ``data.patch_size``) served by the same ``DataLoader``:

* project: ``train.loop.run_epoch`` exactly as ``train`` calls it (quiet, a disabled
  ``GradScaler``, so it also pays for its NaN guard, gradient-norm sampling and bookkeeping);
* bare: ``zero_grad``, forward, loss, ``backward``, ``step`` and nothing else.

Both models start from the same seed, so they hold the same weights; after the same steps on
the same batches the two loops should still agree, and the benchmark prints how far apart
they ended. Warm-up steps are not timed; the timed repeats alternate between the loops (which
goes first alternates too), so load from other processes slows both alike. It prints the mean,
median and best step time of each loop, samples per second, and the ratio project / bare
(target <= 1.05) twice: of the mean step times, and the median over repeats of the ratio of the
two back-to-back blocks, which is the steadier figure on a shared machine.

On a CUDA GPU (``device`` auto or cuda) it also times the project loop with AMP (bf16
autocast; fp16 with a gradient scaler where bf16 is missing) and channels-last weights, as
``train`` runs it with ``train.amp=true train.channels_last=true``, against the same loop in
fp32, and a bare AMP loop (the autocast step of MONAI's fast-training tutorial) for reference.
On a CPU it says that those comparisons need a GPU.

Run from the project root::

    python benchmarks/train_step.py [--steps 10] [--repeats 3] [--warmup 2] [--threads 2] \\
        [key=value ...]

``key=value`` arguments override the config as on the command line, e.g. ``model.width=8``.

Give it idle cores: torch's CPU threads wait for each other at every operation, so when another
process holds one of the ``--threads`` cores a step can take ten times as long, at random. The
benchmark prints the load average first; on a busy machine use ``--threads 1``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from {{ cookiecutter.package_name }}.config import Config, load_config
from {{ cookiecutter.package_name }}.models import build_model
from {{ cookiecutter.package_name }}.models.from_config import model_options
from {{ cookiecutter.package_name }}.train.loop import Dist, pick_device, run_epoch
from {{ cookiecutter.package_name }}.train.losses import build_loss
from {{ cookiecutter.package_name }}.train.optim import build_optimizer
from {{ cookiecutter.package_name }}.utils.errors import ProjectError
from {{ cookiecutter.package_name }}.utils.seed import seed_everything

NUM_CLASSES = 2  # background and foreground (segmentation), two classes (classification)
TARGET_RATIO = 1.05


class InMemoryBatches(Dataset):
    """Samples ``{"image": (1, *patch), "label": ...}`` held in memory, as the loop expects.

    Segmentation labels are masks ``(*patch)`` of class indices; classification labels are
    scalar class indices.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index], "label": self.labels[index]}


def make_data(cfg: Config, batches: int) -> InMemoryBatches:
    """``batches`` batches of random images shaped like training patches, with labels.

    Args:
        cfg: gives the task, ``data.patch_size`` and ``train.batch_size``.
        batches: how many batches the dataset holds.
    """
    if batches < 1:
        raise ValueError(f"batches must be at least 1, got {batches}")
    generator = torch.Generator().manual_seed(cfg.seed)
    count = batches * cfg.train.batch_size
    images = torch.randn((count, 1, *cfg.data.patch_size), generator=generator)
    if cfg.task == "segmentation":
        labels = (images[:, 0] > 0.5).long()  # a two-class mask, (N, *patch)
    else:
        labels = torch.randint(0, NUM_CLASSES, (count,), generator=generator)
    return InMemoryBatches(images, labels)


def make_model(cfg: Config, device: torch.device, channels_last: bool = False) -> nn.Module:
    """The configured model, seeded with ``cfg.seed`` so every copy starts the same."""
    torch.manual_seed(cfg.seed)
    model = build_model(
        cfg.model.name,
        spatial_dims=cfg.spatial_dims,
        in_channels=1,
        out_channels=NUM_CLASSES,
        **model_options(cfg),
    ).to(device)
    if channels_last:
        fmt = torch.channels_last if cfg.spatial_dims == 2 else torch.channels_last_3d
        model.to(memory_format=fmt)
    return model


@dataclass
class Contender:
    """One training loop with its own model and optimizer; ``run(n)`` takes ``n`` steps."""

    name: str
    model: nn.Module
    run: Callable[[int], None]


def project_loop(
    name: str,
    cfg: Config,
    loader: DataLoader,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> Contender:
    """The project's ``run_epoch``, set up as ``train`` sets it up (quiet; the gradient scaler
    is on only for fp16 autocast, so off in fp32 and bf16)."""
    model = make_model(cfg, device, channels_last)
    loss_fn = build_loss(cfg.train.loss, cfg.task).to(device)
    optimizer = build_optimizer(model.parameters(), cfg.train)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    def run(steps: int) -> None:
        limited = replace(cfg, train=replace(cfg.train, steps_per_epoch=steps))
        run_epoch(
            net=model,
            loader=loader,
            loss_fn=loss_fn,
            optimizer=optimizer,
            scaler=scaler,
            cfg=limited,
            device=device,
            epoch=0,
            amp_dtype=amp_dtype,
            quiet=True,
        )

    return Contender(name, model, run)


def bare_loop(
    name: str,
    cfg: Config,
    loader: DataLoader,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
) -> Contender:
    """zero_grad / forward / loss / backward / step; with ``amp_dtype``, the same under
    autocast (and a gradient scaler for fp16), as in MONAI's fast-training tutorial."""
    model = make_model(cfg, device, channels_last)
    loss_fn = build_loss(cfg.train.loss, cfg.task).to(device)
    optimizer = build_optimizer(model.parameters(), cfg.train)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    def run(steps: int) -> None:
        model.train()
        for batch in itertools.islice(loader, steps):
            x = batch["image"].to(device, non_blocking=True)
            y = batch["label"].to(device, non_blocking=True).long()  # as the training loop
            optimizer.zero_grad(set_to_none=True)
            if amp_dtype is None:
                loss = loss_fn(model(x), y)
                loss.backward()
                optimizer.step()
            else:
                with torch.autocast(device.type, dtype=amp_dtype):
                    loss = loss_fn(model(x).float(), y)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()

    return Contender(name, model, run)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_contenders(
    contenders: list[Contender], device: torch.device, steps: int, repeats: int, warmup: int
) -> dict[str, list[float]]:
    """Seconds per step of each contender, one value per repeat (warm-up steps not timed)."""
    if warmup > 0:  # (run_epoch reads steps_per_epoch=0 as a whole epoch)
        for contender in contenders:
            contender.run(warmup)
    synchronize(device)
    per_step: dict[str, list[float]] = {c.name: [] for c in contenders}
    for repeat in range(repeats):
        order = contenders if repeat % 2 == 0 else contenders[::-1]
        for contender in order:
            start = time.perf_counter()
            contender.run(steps)
            synchronize(device)
            per_step[contender.name].append((time.perf_counter() - start) / steps)
    return per_step


def max_difference(a: nn.Module, b: nn.Module) -> float:
    """Largest absolute difference between two models' parameters."""
    with torch.no_grad():
        pairs = zip(a.parameters(), b.parameters(), strict=True)
        return max(float((p - q).abs().max()) for p, q in pairs)


def report(per_step: dict[str, list[float]], batch_size: int) -> dict[str, float]:
    """Print mean, median and best step time and samples/s; return the mean step times."""
    means = {}
    for name, times in per_step.items():
        means[name] = statistics.mean(times)
        print(
            f"  {name:34s} mean {means[name] * 1e3:8.1f} ms/step  "
            f"median {statistics.median(times) * 1e3:8.1f}  best {min(times) * 1e3:8.1f}  "
            f"{batch_size / means[name]:8.1f} samples/s"
        )
    return means


def paired_ratio(times: list[float], reference: list[float]) -> float:
    """Median over repeats of ``times[i] / reference[i]``: the two blocks of a repeat ran back to
    back, so a burst of load from another process tends to hit both and cancel out."""
    if len(times) != len(reference) or not times:
        raise ValueError(
            f"need as many times as reference times, got {len(times)} and {len(reference)}"
        )
    return statistics.median(t / r for t, r in zip(times, reference, strict=True))


def ratio_line(label: str, value: float, target: float | None = None) -> str:
    """``label: value`` with the verdict against ``target`` when one is given."""
    if target is None:
        return f"  {label}: {value:.3f}"
    verdict = "meets" if value <= target else "ABOVE"
    return f"  {label}: {value:.3f} ({verdict} the target <= {target})"


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per repeat (10)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per loop (3)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per loop first (2)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (2)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        parser.error("--steps, --repeats and --threads must be >= 1 and --warmup >= 0")

    cfg = load_config(args.overrides)
    torch.set_num_threads(args.threads)
    seed_everything(cfg.seed, cfg.deterministic)
    device = pick_device(cfg.device, Dist())  # as train picks it: cuda when there is one
    cuda = device.type == "cuda"
    loader = DataLoader(
        make_data(cfg, args.steps),
        batch_size=cfg.train.batch_size,
        shuffle=False,
        pin_memory=cuda,
    )
    shape = (cfg.train.batch_size, 1, *cfg.data.patch_size)
    print(
        f"{cfg.task} {cfg.spatial_dims}D, model {cfg.model.name}, loss {cfg.train.loss}, "
        f"optimizer {cfg.train.optimizer}, batch {shape}, device {device}, "
        f"{args.threads} threads, torch {torch.__version__}"
    )
    if hasattr(os, "getloadavg"):
        load, cores = os.getloadavg()[0], os.cpu_count() or 1
        print(f"load average {load:.1f} on {cores} cores before the run", end="")
        if load + args.threads > cores + 0.5:
            print(": other processes compete for the cores, so timings will vary", end="")
            print("; try --threads 1" if args.threads > 1 else "")
        else:
            print()
    print(
        f"{args.warmup} warm-up steps, then {args.repeats} repeats of {args.steps} timed steps "
        "per loop, alternating"
    )

    project = project_loop("project loop (run_epoch), fp32", cfg, loader, device)
    bare = bare_loop("bare PyTorch loop, fp32", cfg, loader, device)
    contenders = [project, bare]
    amp_dtype = None
    if cuda:
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        kind = "bf16" if amp_dtype == torch.bfloat16 else "fp16"
        contenders += [
            project_loop(
                f"project loop, AMP {kind} + ch-last",
                cfg,
                loader,
                device,
                amp_dtype,
                channels_last=True,
            ),
            bare_loop(
                f"bare AMP loop {kind} + ch-last",
                cfg,
                loader,
                device,
                amp_dtype,
                channels_last=True,
            ),
        ]
    per_step = time_contenders(contenders, device, args.steps, args.repeats, args.warmup)
    means = report(per_step, cfg.train.batch_size)

    ratio = means[project.name] / means[bare.name]
    print(ratio_line("ratio project / bare (mean step time)", ratio, TARGET_RATIO))
    paired = paired_ratio(per_step[project.name], per_step[bare.name])
    print(ratio_line("ratio project / bare (median of the paired repeats)", paired, TARGET_RATIO))
    print(
        "  weights after the same steps, max |project - bare|: "
        f"{max_difference(project.model, bare.model):.3g}"
    )
    results = {
        "project_ms": means[project.name] * 1e3,
        "bare_ms": means[bare.name] * 1e3,
        "ratio": ratio,
        "paired_ratio": paired,
    }
    if cuda:
        project_amp, bare_amp = contenders[2].name, contenders[3].name
        speedup = means[project.name] / means[project_amp]
        print(ratio_line("AMP + channels-last speed-up of the project loop (fp32 / AMP)", speedup))
        amp_ratio = means[project_amp] / means[bare_amp]
        print(ratio_line("ratio project / bare with AMP + channels-last", amp_ratio, TARGET_RATIO))
        results.update(amp_speedup=speedup, amp_ratio=amp_ratio)
    else:
        print("  AMP (bf16) and channels-last comparisons need a CUDA GPU: not run on this CPU")
    return results


if __name__ == "__main__":
    try:
        main()
    except ProjectError as exc:  # a bad override or device: one line, as the CLI says it
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
