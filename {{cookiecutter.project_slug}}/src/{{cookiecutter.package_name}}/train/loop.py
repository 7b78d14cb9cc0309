"""The training loop, top to bottom: data, model, optimiser, epochs, validation, checkpoints.

Read it in order; every step says why it is there. ``train(cfg)`` is what ``train`` on the
command line runs; under ``torchrun`` the same function trains with DistributedDataParallel.

Exact resume: at the end of every epoch ``last.pt`` stores the model, optimiser, schedule, AMP
scaler, every random generator and the epoch. Shuffling is seeded from (seed, epoch) and
augmentation from (seed, epoch, index), so a run resumed from ``last.pt`` redoes the interrupted
epoch with the same draws and ends with bit-identical weights on the CPU.

Under ``torchrun`` every process runs this function; ``distributed.py`` says how they meet
without crashing or hanging: the ranks share every step's loss (the reported training loss is
their mean, and a NaN on one rank stops all), rank 0 validates and writes while the others
wait at most ``train.ddp_timeout`` seconds, and an error on one rank stops all with its message.
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
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from .. import paths
from ..config import Config, load_config, monitored_metric, save_config, to_dict
from ..data.dataset import class_names
from ..data.manifest import DataError
from ..data.split import fold_cases
from ..evaluate.classification_metrics import positive_class
from ..models import build_model
from ..models.layer_stats import ActivationStats, gradient_norms
from ..utils.environment import environment
from ..utils.io import atomic_write_text
from ..utils.seed import make_generator, seed_everything, worker_init_fn
from . import builders
from .checkpoint import load_checkpoint, rng_states, save_checkpoint, set_rng_states
from .distributed import Dist, TrainingError, init_distributed, pick_device
from .run_dir import MetricsLog, append_experiment, new_run_dir, write_notes
from .tracking import make_tracker
from .validate import validate

GRAD_NORM_EVERY = 5  # record per-layer gradient norms every this many steps
PLOT_EVERY = 5  # redraw the plots after the first epoch, every this many epochs, and the last

# Dist, pick_device and TrainingError live in distributed.py and are importable from here too.
__all__ = ["Dist", "EpochResult", "TrainingError", "is_better", "pick_device", "run_epoch", "train"]


@dataclass
class EpochResult:
    """What one pass over the training data measured.

    Attributes:
        loss: the mean over steps of the batch loss (under ``torchrun``, of its mean over ranks).
        grad_norms: per layer, the mean gradient norm over the sampled steps (this rank's).
        steps: the steps taken (per rank).
    """

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
        ProjectError: bad data or config, a missing or foreign checkpoint, a NaN loss; under
            ``torchrun``, an error on one rank is raised on every rank with the same message.
    """
    # --- 1. Settings, processes and device -------------------------------------------------
    state: dict[str, Any] | None = None
    if resume is not None:
        # A resumed run continues with its own settings, so its result is one experiment. They
        # are read before the processes meet: its device and train.ddp_timeout apply.
        resume = Path(resume)
        state = load_checkpoint(resume / "checkpoints" / "last.pt")
        cfg = load_config(path=resume / "config.yaml")
    if cfg.overfit:
        cfg = builders.regularisation_off(cfg)
    ddp = init_distributed(cfg.device, cfg.train.ddp_timeout)
    device = ddp.device
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
    if classes is not None:
        # A typo in data.positive_class is found now, not after training, at evaluate.
        positive_class(cfg.data.positive_class, classes)
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
        in_channels=train_set.in_channels,  # one per image_<channel> column of the manifest
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
    failure: Exception | None = None  # what rank 0 raised, for every rank to raise (settle)
    if ddp.main:
        try:
            if state is None:
                save_config(cfg, run_dir / "config.yaml")
                env = environment(device, project, seeding)
                env["data"] = {
                    "root": str(root),
                    "fold": cfg.data.fold,
                    "train_cases": len(train_cases),
                    "val_cases": len(val_cases),
                    "classes": classes or num_classes,
                    "channels": train_set.channel_names,
                }
                atomic_write_text(run_dir / "environment.json", json.dumps(env, indent=2) + "\n")
            else:
                metrics.truncate(start_epoch)  # rows are numbered from 1: keep those saved
                if not metrics.rows or int(metrics.rows[-1]["epoch"]) < start_epoch:
                    metrics.append(state["metrics"])  # killed after the checkpoint, before the log
            write_notes(run_dir, note, resumed=state is not None)
            tracker = make_tracker(cfg.tracking, run_dir, project, to_dict(cfg))
        except Exception as exc:  # e.g. a tracker that is not installed: every rank stops
            failure = exc
    ddp.settle(failure)
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
            net=net,
            loader=loader,
            loss_fn=loss_fn,
            optimizer=optimizer,
            scaler=scaler,
            cfg=cfg,
            device=device,
            epoch=epoch,
            amp_dtype=amp_dtype if use_amp else None,
            quiet=quiet or not ddp.main,
            ddp=ddp,
        )
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()

        # Rank 0 validates and writes; the other ranks wait for it in `settle` below (at most
        # train.ddp_timeout seconds), which also tells them about an early stop or an error.
        stop, failure = False, None
        if ddp.main:
            try:
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
                improved = is_better(value, best, mode, cfg.train.min_delta)
                if math.isnan(value):
                    kept = "the best earlier epoch" if best is not None else "this epoch for now"
                    print(
                        f"warning: {monitor} is nan at epoch {epoch + 1}: not counted as an "
                        f"improvement (best.pt holds {kept})",
                        flush=True,
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
                    "in_channels": train_set.in_channels,
                    "channels": train_set.channel_names,
                    "metrics": row,
                }
                # Checkpoint first, then the logs: a run killed in between resumes from this
                # epoch and restores its metrics row from the checkpoint. Until the monitored
                # metric has been a number once, best.pt holds the latest epoch.
                if improved or best is None:
                    save_checkpoint(run_dir / "checkpoints" / "best.pt", checkpoint)
                save_checkpoint(run_dir / "checkpoints" / "last.pt", checkpoint)
                metrics.append(row)
                layers = activations.summary()
                builders.record_layers(run_dir, epoch + 1, layers, result.grad_norms)
                stop = bool(cfg.train.patience and bad_epochs >= cfg.train.patience)
                last_epoch = epoch + 1 == cfg.train.epochs or stop
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
                if stop:
                    status = (
                        f"early stop at epoch {epoch + 1} ({monitor} flat for {bad_epochs} epochs)"
                    )
            except Exception as exc:  # every rank stops with it (settle), none waits forever
                failure = exc
        if ddp.settle(failure, stop):  # every rank stops together
            break

    # --- 7. Record the run ---------------------------------------------------------------------
    failure = None
    if ddp.main:
        try:
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
                    "best": f"{monitor} {best:.4f}" if best is not None else f"{monitor} nan",
                },
            )
            if not quiet:
                shown = f"{best:.4f}" if best is not None else "nan (never a number)"
                print(f"{status}; best {monitor} {shown}; run folder {run_dir}")
        except Exception as exc:
            failure = exc
    ddp.settle(failure)  # the other ranks return once rank 0 has written everything
    return run_dir


def is_better(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    """Whether a monitored metric improves on the best so far by more than ``min_delta``.

    A NaN (e.g. AUROC on a validation set holding one class) is never better, and the first
    number after NaNs is: comparisons with NaN are false, so a NaN kept as the best would
    freeze best.pt for the rest of the run.

    Args:
        value: this epoch's metric.
        best: the best number so far; None when there has been none.
        mode: ``"max"`` or ``"min"``: which direction is better.
        min_delta: the margin an improvement must exceed (0 or more).

    Returns:
        True when ``value`` should become the new best.

    Raises:
        ValueError: ``mode`` is neither ``"max"`` nor ``"min"``.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value > best + min_delta if mode == "max" else value < best - min_delta


def run_epoch(
    *,
    net: nn.Module,
    loader: DataLoader,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    cfg: Config,
    device: torch.device,
    epoch: int,
    amp_dtype: torch.dtype | None = None,
    quiet: bool = True,
    ddp: Dist | None = None,
) -> EpochResult:
    """One pass over the training data; returns the mean loss and per-layer gradient norms.

    Args:
        net: the model as trained (DDP- or compile-wrapped), on ``device``.
        loader: batches ``{"image": (B, 1, *S), "label": (B, *S) or (B,)}``.
        loss_fn: the training loss of ``(logits, labels)``.
        optimizer: the optimiser of the model's parameters.
        scaler: the AMP gradient scaler (disabled without fp16 autocast).
        cfg: the run's configuration (``train.*`` steps, noise, clipping).
        device: where the batches go.
        epoch: the epoch index, from 0 (messages count from 1).
        amp_dtype: the autocast dtype; None for full precision.
        quiet: no progress bar.
        ddp: this process's place in a ``torchrun`` job; None for one process.

    Returns:
        The mean over steps of the loss (under ``torchrun``, of its mean over ranks), the
        per-layer gradient norms averaged over the sampled steps, and the number of steps.

    Raises:
        TrainingError: a NaN or infinite loss on any rank (the message says at which step and,
            under ``torchrun``, on which rank; every rank raises it at the same step), or no
            batch at all.
    """
    ddp = ddp or Dist(device=device)
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
        # Every rank's loss of this step, read once (a GPU sync). Checked before the backward
        # pass, whose gradient exchange a rank that stopped alone would leave the others in.
        losses = ddp.all_values(loss)
        failed = [rank for rank, value in enumerate(losses) if not math.isfinite(value)]
        if failed:
            where = f" on rank {', '.join(map(str, failed))} of {ddp.world}" if ddp.active else ""
            raise TrainingError(
                f"the loss is {losses[failed[0]]} at epoch {epoch + 1}, step {step + 1}{where}: "
                "training stopped; the last good checkpoint is checkpoints/last.pt (try a lower "
                "train.lr or train.grad_clip)"
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        if step % GRAD_NORM_EVERY == 0:  # a sample of steps: cheap, and enough for the plot
            for name, norm in gradient_norms(net).items():
                norm_sums[name] = norm_sums.get(name, 0.0) + norm
            sampled += 1
        if cfg.train.grad_clip > 0:
            if cfg.train.grad_clip_mode == "norm":
                nn.utils.clip_grad_norm_(net.parameters(), cfg.train.grad_clip)
            else:
                nn.utils.clip_grad_value_(net.parameters(), cfg.train.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        total += sum(losses) / len(losses)  # ranks take the same number of equal batches
        steps += 1
        if not quiet:
            bar.set_postfix(loss=f"{total / steps:.4f}")
    if steps == 0:
        raise TrainingError("the training set gave no batch: fewer cases than train.batch_size?")
    norms = {k.removeprefix("module."): v / sampled for k, v in norm_sums.items()}
    return EpochResult(total / steps, norms, steps)
