"""The training loop, top to bottom: data, model, optimiser, epochs, validation, checkpoints.

Read it in order; every step says why it is there. ``train(cfg)`` is what ``train`` on the
command line runs; under ``torchrun`` the same function trains with DistributedDataParallel.

Exact resume: at the end of every epoch ``last.pt`` stores the model, optimiser, schedule, AMP
scaler, every random generator and the epoch. Shuffling is seeded from (seed, epoch) and
augmentation from (seed, epoch, index), so a run resumed from ``last.pt`` redoes the interrupted
epoch with the same draws and ends with bit-identical weights on the CPU.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from .. import paths
from ..config import Config, load_config, monitored_metric, save_config, to_dict
from ..data.dataset import class_names
from ..data.manifest import DataError
from ..data.split import fold_cases
from ..models import build_model
from ..models.layer_stats import ActivationStats, gradient_norms
from ..utils.environment import environment
from ..utils.errors import ConfigError, ProjectError
from ..utils.io import atomic_write_text
from ..utils.seed import make_generator, seed_everything, worker_init_fn
from . import builders
from .checkpoint import load_checkpoint, rng_states, save_checkpoint, set_rng_states
from .run_dir import MetricsLog, append_experiment, new_run_dir, write_notes
from .tracking import make_tracker
from .validate import validate

GRAD_NORM_EVERY = 5  # record per-layer gradient norms every this many steps
PLOT_EVERY = 5  # redraw the plots after the first epoch, every this many epochs, and the last


class TrainingError(ProjectError):
    """Training cannot go on (a NaN loss, a stale split); the last good checkpoint stays."""


@dataclass
class Dist:
    """Where this process stands in a ``torchrun`` job (world size 1 without one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def init_distributed(device_name: str) -> Dist:
    """Join the process group that ``torchrun`` describes in the environment (gloo on CPU,
    NCCL on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    info = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(info.local_rank)
    return info


def pick_device(name: str, ddp: Dist) -> torch.device:
    """``auto``: CUDA when available; ``cuda`` without a GPU is an error, not a silent CPU run."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config key 'device' = 'cuda' but no CUDA device is available")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", ddp.local_rank)


@dataclass
class EpochResult:
    """What one pass over the training data measured."""

    loss: float
    grad_norms: dict[str, float] = field(default_factory=dict)
    steps: int = 0


def train(
    cfg: Config,
    *,
    resume: Path | None = None,
    note: str | None = None,
    quiet: bool = False,
    plots: bool = True,
) -> Path:
    """Train one fold as ``cfg`` says and return the run folder.

    Args:
        cfg: the resolved configuration (ignored with ``resume``: the run's own is used).
        resume: a run folder to continue from its ``checkpoints/last.pt``.
        note: a sentence on what this run tries, for ``notes.md`` and ``EXPERIMENTS.md``.
        quiet: no progress bars (tests, sweeps).
        plots: draw the plots (tests of other behaviour turn them off to save time).

    Raises:
        ProjectError: bad data or config, a missing or foreign checkpoint, a NaN loss.
    """
    # --- 1. Processes and device -----------------------------------------------------------
    ddp = init_distributed(cfg.device)
    state: dict[str, Any] | None = None
    if resume is not None:
        # A resumed run continues with its own settings, so its result is one experiment.
        resume = Path(resume)
        state = load_checkpoint(resume / "checkpoints" / "last.pt")
        cfg = load_config(path=resume / "config.yaml")
    if cfg.overfit:
        cfg = builders.regularisation_off(cfg)
    device = pick_device(cfg.device, ddp)
    project = paths.project_root()
    root = paths.resolve(cfg.data.root)

    # --- 2. Seeds: one seed for Python, NumPy and torch; deterministic kernels ---------------
    seeding = seed_everything(cfg.seed, cfg.deterministic)

    # --- 3. Data: one fold of splits.json (refused when the data changed since `split`) ------
    try:
        train_cases, val_cases = fold_cases(root, cfg.task, cfg.data.fold)
    except DataError as exc:
        raise TrainingError(str(exc)) from None
    classes = class_names(train_cases + val_cases) if cfg.task == "classification" else None
    if cfg.overfit:
        # Overfit mode: can the model fit a handful of cases at all? Same cases for validation.
        train_cases = train_cases[: builders.OVERFIT_CASES]
        val_cases = train_cases
    train_set = builders.dataset(cfg, train_cases, classes, train=True)
    val_set = builders.dataset(cfg, val_cases, classes, train=False)
    # Decode and cache everything once, up front: epoch 1 then runs at cached speed, and an
    # unreadable file stops the run now rather than an hour in.
    train_set.prepare(threads=max(1, min(4, os.cpu_count() or 1)))
    val_set.prepare(threads=max(1, min(4, os.cpu_count() or 1)))
    num_classes = builders.count_classes(cfg, train_set, classes)

    sampler = DistributedSampler(train_set, shuffle=True, seed=cfg.seed) if ddp.active else None
    generator = make_generator(cfg.seed)
    loader = DataLoader(
        train_set,
        batch_size=cfg.train.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=cfg.data.num_workers,
        generator=generator,
        worker_init_fn=worker_init_fn,
        drop_last=len(train_set) > cfg.train.batch_size,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )

    # --- 4. Model, loss, optimiser, schedule, mixed precision --------------------------------
    model = build_model(
        cfg.model.name,
        spatial_dims=cfg.spatial_dims,
        in_channels=1,
        out_channels=num_classes,
        **builders.model_options(cfg),
    )
    builders.apply_pretrained(model, cfg, quiet=quiet or not ddp.main)
    model.to(device)
    cuda = device.type == "cuda"
    if cuda and cfg.train.channels_last:
        model.to(
            memory_format=torch.channels_last if cfg.spatial_dims == 2 else torch.channels_last_3d
        )
    net: nn.Module = model
    if ddp.active:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if cuda else None
        )
    if cfg.train.compile:
        net = torch.compile(net)
    loss_fn = builders.loss(cfg, train_set, num_classes).to(device)
    optimizer = builders.optimizer(model, cfg)
    scheduler = builders.scheduler(optimizer, cfg)
    amp_dtype = (
        (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else None
    )
    use_amp = cuda and cfg.train.amp
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    # --- 5. The run folder (rank 0 writes; a new folder, or the resumed one) -----------------
    start_epoch, best, bad_epochs = 0, None, 0
    if state is not None:
        run_dir = resume
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, best, bad_epochs = state["epoch"] + 1, state["best"], state["bad_epochs"]
        set_rng_states(state["rng"])
        if state.get("threads") != torch.get_num_threads() and ddp.main:
            print(
                f"warning: {torch.get_num_threads()} torch threads now, {state.get('threads')} "
                "before: the resumed run may differ in the last bits"
            )
    else:
        run_dir = builders.shared_run_dir(ddp, lambda: new_run_dir(paths.runs_dir(), cfg.run.name))
    metrics = MetricsLog(run_dir / "metrics.csv")
    tracker = None
    if ddp.main:
        if state is None:
            save_config(cfg, run_dir / "config.yaml")
            env = environment(device, project, seeding)
            env["data"] = {
                "root": str(root),
                "fold": cfg.data.fold,
                "train_cases": len(train_cases),
                "val_cases": len(val_cases),
                "classes": classes or num_classes,
            }
            atomic_write_text(run_dir / "environment.json", json.dumps(env, indent=2) + "\n")
        else:
            metrics.truncate(start_epoch)  # rows are numbered from 1: keep those saved
            if not metrics.rows or int(metrics.rows[-1]["epoch"]) < start_epoch:
                metrics.append(state["metrics"])  # killed after the checkpoint, before the log
        write_notes(run_dir, note, resumed=state is not None)
        tracker = make_tracker(cfg.tracking, run_dir, project, to_dict(cfg))
    monitor, mode = monitored_metric(cfg)

    # --- 6. Epochs ---------------------------------------------------------------------------
    status = "completed"
    epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg.train.epochs):
        started = time.perf_counter()
        # Shuffling and augmentation depend only on (seed, epoch): resumable, worker-independent.
        train_set.set_epoch(epoch)
        generator.manual_seed(cfg.seed * 100_003 + epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        result = run_epoch(
            net,
            loader,
            loss_fn,
            optimizer,
            scaler,
            cfg,
            device,
            epoch,
            amp_dtype if use_amp else None,
            quiet or not ddp.main,
        )
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()

        stop = torch.zeros(1)
        if ddp.main:
            # Whole-set validation metrics on rank 0, never averaged over batches.
            with ActivationStats(model) as activations:
                val = validate(model, val_set, loss_fn, cfg, device, classes, num_classes)
            row = {
                "epoch": epoch + 1,
                "train_loss": result.loss,
                **val,
                "lr": lr,
                "seconds": time.perf_counter() - started,
            }
            value = float(val[monitor])
            improved = best is None or (
                value > best + cfg.train.min_delta
                if mode == "max"
                else value < best - cfg.train.min_delta
            )
            if improved:
                best, bad_epochs = value, 0
            else:
                bad_epochs += 1
            checkpoint = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "epoch": epoch,
                "best": best,
                "bad_epochs": bad_epochs,
                "rng": rng_states(),
                "threads": torch.get_num_threads(),
                "config": to_dict(cfg),
                "classes": classes or [],
                "num_classes": num_classes,
                "metrics": row,
            }
            # Checkpoint first, then the logs: a run killed in between resumes from this epoch
            # and restores its metrics row from the checkpoint.
            if improved:
                save_checkpoint(run_dir / "checkpoints" / "best.pt", checkpoint)
            save_checkpoint(run_dir / "checkpoints" / "last.pt", checkpoint)
            metrics.append(row)
            builders.record_layers(run_dir, epoch + 1, activations.summary(), result.grad_norms)
            last_epoch = (
                epoch + 1 == cfg.train.epochs
                or stop.item()
                or (cfg.train.patience and bad_epochs >= cfg.train.patience)
            )
            if plots and (epoch == start_epoch or (epoch + 1) % PLOT_EVERY == 0 or last_epoch):
                builders.plot_run(run_dir)
            tracker.log(epoch + 1, row)
            if not quiet:
                shown = ", ".join(
                    f"{k} {v:.4g}"
                    for k, v in row.items()
                    if k not in ("epoch", "seconds") and isinstance(v, float)
                )
                print(f"epoch {epoch + 1}/{cfg.train.epochs}: {shown}", flush=True)
            if cfg.train.patience and bad_epochs >= cfg.train.patience:
                status = f"early stop at epoch {epoch + 1} ({monitor} flat for {bad_epochs} epochs)"
                stop.fill_(1)
        if ddp.active:
            dist.broadcast(stop, src=0)  # every rank stops together
        if stop.item():
            break

    # --- 7. Record the run ---------------------------------------------------------------------
    if ddp.main:
        tracker.close()
        if cfg.overfit:
            status += "; " + builders.overfit_verdict(cfg, metrics)
        append_experiment(
            paths.experiments_log(),
            run_dir,
            {
                "note": note or "",
                "task": cfg.task,
                "model": cfg.model.name,
                "settings": builders.settings_summary(cfg),
                "status": status,
                "best": f"{monitor} {best:.4f}" if best is not None else "",
            },
        )
        if not quiet:
            print(f"{status}; best {monitor} {best:.4f}; run folder {run_dir}")
    if ddp.active:
        dist.barrier()
    return run_dir


def run_epoch(
    net: nn.Module,
    loader: DataLoader,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    cfg: Config,
    device: torch.device,
    epoch: int,
    amp_dtype: torch.dtype | None,
    quiet: bool,
) -> EpochResult:
    """One pass over the training data; returns the mean loss and per-layer gradient norms.

    Raises:
        TrainingError: a NaN or infinite loss (the message says at which step).
    """
    net.train()
    total, steps, sampled = 0.0, 0, 0
    norm_sums: dict[str, float] = {}
    limit = cfg.train.steps_per_epoch or len(loader)
    bar = tqdm(
        loader, total=min(limit, len(loader)), desc=f"epoch {epoch + 1}", disable=quiet, leave=False
    )
    for step, batch in enumerate(bar):
        if step >= limit:
            break
        x = batch["image"].to(device, non_blocking=True)
        y = batch["label"].to(device, non_blocking=True).long()  # masks come as uint8
        if cfg.train.input_noise > 0:
            x = x + torch.randn_like(x) * cfg.train.input_noise
        with torch.autocast(
            device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
        ):
            logits = net(x)
            loss = loss_fn(logits.float(), y)
            loss = loss + builders.activity_penalty(logits, cfg)
        value = float(loss.detach())  # one read of the loss per step (a GPU sync)
        if not math.isfinite(value):
            raise TrainingError(
                f"the loss is {value} at epoch {epoch + 1}, step {step + 1}: training "
                "stopped; the last good checkpoint is checkpoints/last.pt (try a lower train.lr "
                "or train.grad_clip)"
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        if step % GRAD_NORM_EVERY == 0:  # a sample of steps: cheap, and enough for the plot
            for name, value in gradient_norms(net).items():
                norm_sums[name] = norm_sums.get(name, 0.0) + value
            sampled += 1
        if cfg.train.grad_clip > 0:
            if cfg.train.grad_clip_mode == "norm":
                nn.utils.clip_grad_norm_(net.parameters(), cfg.train.grad_clip)
            else:
                nn.utils.clip_grad_value_(net.parameters(), cfg.train.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        total += value
        steps += 1
        if not quiet:
            bar.set_postfix(loss=f"{total / steps:.4f}")
    if steps == 0:
        raise TrainingError("the training set gave no batch: fewer cases than train.batch_size?")
    norms = {k.removeprefix("module."): v / sampled for k, v in norm_sums.items()}
    return EpochResult(total / steps, norms, steps)
