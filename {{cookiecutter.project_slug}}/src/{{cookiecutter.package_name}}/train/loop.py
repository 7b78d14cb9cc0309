"""The training loop, top to bottom: data, model, optimizer, epochs, validation, checkpoints.

Read it in order; every step says why it is there. ``train(cfg)`` is what ``train`` on the
command line runs; under ``torchrun`` the same function trains with DistributedDataParallel.

Exact resume: at the end of every epoch ``last.pt`` stores the model, optimizer, schedule, AMP
scaler, every random generator and the epoch. Shuffling is seeded from (seed, epoch) and
augmentation from (seed, epoch, index), so a run resumed from ``last.pt`` redoes the interrupted
epoch with the same draws and ends with bit-identical weights on the CPU.

Under ``torchrun`` every process runs this function; ``distributed.py`` says how they meet
without crashing or hanging: the ranks share every step's loss (the reported training loss is
their mean, and a NaN on one rank stops all), rank 0 validates and writes while the others
wait at most ``train.ddp_timeout`` seconds, and an error on one rank stops all with its message.
"""

from __future__ import annotations

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
from ..config import Config, data_root, load_config, monitored_metric
from ..data.dataset import MedicalDataset, class_names
from ..data.fingerprint import resolve_config
from ..data.manifest import Case, DataError
from ..data.split import fold_cases
from ..metrics.classification import positive_class
from ..models import build_model
from ..models.layer_stats import ActivationStats, gradient_norms
from ..runs.checkpoint import load_checkpoint, save_checkpoint, set_rng_states
from ..runs.folder import MetricsLog, new_run_dir
from ..utils.seed import make_generator, seed_everything, worker_init_fn
from . import builders, records
from .diagnostics import OVERFIT_CASES, plot_run, record_layers
from .distributed import Dist, TrainingError, init_distributed, pick_device
from .tracking import Tracker
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


@dataclass
class TrainingData:
    """Step 1's result: one fold's cases, their datasets and the training loader.

    Attributes:
        train_cases, val_cases: the fold's cases (overfit mode: the same few in both).
        classes: the class names (classification), else None.
        train_set, val_set: the datasets (random patches and augmentation for training only).
        num_classes: the model's output channels.
        loader: batches of ``train_set``.
        sampler: the ``DistributedSampler`` under ``torchrun``, else None.
        generator: the loader's shuffling generator, reseeded every epoch.
    """

    train_cases: list[Case]
    val_cases: list[Case]
    classes: list[str] | None
    train_set: MedicalDataset
    val_set: MedicalDataset
    num_classes: int
    loader: DataLoader
    sampler: DistributedSampler | None
    generator: torch.Generator


@dataclass
class Optimization:
    """Step 3's result: what turns a batch's loss into a weight update.

    Attributes:
        loss_fn: the training loss of ``(logits, labels)``.
        optimizer: the optimizer of ``train.optimizer``.
        scheduler: the learning-rate schedule of ``train.schedule`` (stepped per epoch).
        scaler: the AMP gradient scaler (enabled only for float16 autocast).
        amp_dtype: the autocast dtype; None for full precision (CPU, or ``train.amp=false``).
    """

    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None


@dataclass
class Progress:
    """Where training stands: restored on resume, updated after every epoch (rank 0).

    Attributes:
        start_epoch: the first epoch this call trains (0-based).
        best: the best value of the monitored metric so far; None while never a number.
        bad_epochs: epochs since the last improvement (early stopping).
        status: ``"completed"``, or the early-stop sentence.
    """

    start_epoch: int = 0
    best: float | None = None
    bad_epochs: int = 0
    status: str = "completed"


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
        plots: draw the plots (tests of other behavior turn them off to save time).

    Returns:
        The run folder.

    Raises:
        ProjectError: bad data or config, a missing or foreign checkpoint, a NaN loss; under
            ``torchrun``, an error on one rank is raised on every rank with the same message.
    """
    # 0. Settings, processes and seeds.
    cfg, state = _settings(cfg, resume)
    ddp = init_distributed(cfg.device, cfg.train.ddp_timeout)
    seeding = seed_everything(cfg.seed, cfg.deterministic)

    # 1. Data: one fold of splits.json, decoded and cached up front.
    cfg, data = _data(cfg, ddp)

    # 2. Model: built, moved to the device, wrapped for DDP / torch.compile.
    model, net = _model(cfg, data, ddp, quiet=quiet or not ddp.main)

    # 3. Loss, optimizer, schedule and mixed precision.
    opt = _optimization(cfg, model, data, ddp.device)

    # 4. Resume from last.pt, or start a new run folder (rank 0 writes, the others wait).
    progress = _restore(state, model, opt, ddp) if state is not None else Progress()
    run_dir = Path(resume) if resume is not None else _new_run_dir(cfg, ddp)
    metrics, tracker = _open_run(run_dir, cfg, ddp, data, state, progress, seeding, note)
    monitor, mode = monitored_metric(cfg)

    # 5. Epochs: train, then on rank 0 validate, checkpoint, log and decide on early stopping;
    #    the other ranks wait for it (at most train.ddp_timeout seconds) in `settle`.
    for epoch in range(progress.start_epoch, cfg.train.epochs):
        started = time.perf_counter()
        _set_epoch(cfg, data, epoch)
        result = run_epoch(
            net=net,
            loader=data.loader,
            loss_fn=opt.loss_fn,
            optimizer=opt.optimizer,
            scaler=opt.scaler,
            cfg=cfg,
            device=ddp.device,
            epoch=epoch,
            amp_dtype=opt.amp_dtype,
            quiet=quiet or not ddp.main,
            ddp=ddp,
        )
        lr = opt.optimizer.param_groups[0]["lr"]
        opt.scheduler.step()
        stop, failure = False, None
        if ddp.main:
            try:
                row, layers = _validate_epoch(cfg, model, data, opt, ddp.device, epoch, result)
                row.update(lr=lr, seconds=time.perf_counter() - started)
                improved = _update_progress(
                    progress, float(row[monitor]), epoch, monitor, mode, cfg
                )
                _save_checkpoints(run_dir, cfg, model, data, opt, progress, epoch, row, improved)
                stop = _log_epoch(
                    run_dir, cfg, metrics, tracker, progress, epoch, row, layers, result, plots
                )
                if not quiet:
                    print(_epoch_line(cfg, epoch, row), flush=True)
                if stop:
                    progress.status = (
                        f"early stop at epoch {epoch + 1} "
                        f"({monitor} flat for {progress.bad_epochs} epochs)"
                    )
            except Exception as exc:  # every rank stops with it (settle), none waits forever
                failure = exc
        if ddp.settle(failure, stop):  # every rank stops together
            break

    # 6. Finish: close the tracker, add the run's line to EXPERIMENTS.md.
    _finish(run_dir, cfg, ddp, metrics, tracker, progress, monitor, note, quiet)
    return run_dir


def _settings(cfg: Config, resume: Path | None) -> tuple[Config, dict[str, Any] | None]:
    """Step 0: the run's settings and, on resume, the checkpoint to continue from.

    A resumed run continues with its own ``config.yaml``, so its result is one experiment; it
    is read before the processes meet, so its device and ``train.ddp_timeout`` apply. Overfit
    mode turns every regularizer off.
    """
    state = None
    if resume is not None:
        state = load_checkpoint(Path(resume) / "checkpoints" / "last.pt")
        cfg = load_config(path=Path(resume) / "config.yaml")
    if cfg.overfit:
        cfg = builders.regularization_off(cfg)
    return cfg, state


def _data(cfg: Config, ddp: Dist) -> tuple[Config, TrainingData]:
    """Step 1: the fold's cases (refused when the data changed since ``split``), datasets and
    loader; returns the config with ``data.normalization: auto`` resolved."""
    root = data_root(cfg)
    try:
        train_cases, val_cases = fold_cases(root, cfg.task, cfg.data.fold)
    except DataError as exc:
        raise TrainingError(str(exc)) from None
    # data.normalization: auto -> ct/mr/zscore from the training cases' fingerprint (printed,
    # and recorded in config.yaml); warnings for settings that do not fit the data.
    cfg = resolve_config(cfg, root, train_cases, echo=print if ddp.main else None)
    classes = class_names(train_cases + val_cases) if cfg.task == "classification" else None
    if classes is not None:
        # A typo in data.positive_class is found now, not after training, at evaluate.
        positive_class(cfg.data.positive_class, classes)
    if cfg.overfit:
        # Overfit mode: can the model fit a handful of cases at all? Same cases for validation.
        train_cases = train_cases[:OVERFIT_CASES]
        val_cases = train_cases
    train_set = builders.dataset(cfg, train_cases, classes, train=True)
    val_set = builders.dataset(cfg, val_cases, classes, train=False)
    # Decode and cache everything once, up front: epoch 1 then runs at cached speed, and an
    # unreadable file stops the run now rather than an hour in. First say what that will take
    # on disk (measured on one case), and whether it fits.
    for dataset in (train_set, val_set):
        plan = dataset.cache_plan() if ddp.main else None
        if plan is not None:
            print(plan.message() if plan.fits else f"warning: {plan.message()}", flush=True)
        dataset.prepare(threads=max(1, min(4, os.cpu_count() or 1)))
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
        pin_memory=ddp.device.type == "cuda",
        persistent_workers=False,
    )
    data = TrainingData(
        train_cases, val_cases, classes, train_set, val_set, num_classes, loader, sampler, generator
    )
    return cfg, data


def _model(cfg: Config, data: TrainingData, ddp: Dist, quiet: bool) -> tuple[nn.Module, nn.Module]:
    """Step 2: the model (for checkpoints and validation) and the network as trained (the
    model, DDP-wrapped under ``torchrun``, compiled with ``train.compile``)."""
    device = ddp.device
    model = build_model(
        cfg.model.name,
        spatial_dims=cfg.spatial_dims,
        in_channels=data.train_set.in_channels,  # one per image_<channel> column of the manifest
        out_channels=data.num_classes,
        **builders.model_options(cfg),
    )
    builders.apply_pretrained(model, cfg, quiet=quiet)
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
    return model, net


def _optimization(
    cfg: Config, model: nn.Module, data: TrainingData, device: torch.device
) -> Optimization:
    """Step 3: loss, optimizer, schedule and mixed precision (CUDA only: bfloat16 where the GPU
    has it, else float16 with a gradient scaler)."""
    loss_fn = builders.loss(cfg, data.train_set, data.num_classes).to(device)
    optimizer = builders.optimizer(model, cfg)
    scheduler = builders.scheduler(optimizer, cfg)
    cuda = device.type == "cuda"
    amp_dtype = (
        (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else None
    )
    use_amp = cuda and cfg.train.amp
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    return Optimization(loss_fn, optimizer, scheduler, scaler, amp_dtype if use_amp else None)


def _restore(state: dict[str, Any], model: nn.Module, opt: Optimization, ddp: Dist) -> Progress:
    """Step 4 on resume: the weights, optimizer, schedule, scaler and every random generator of
    ``last.pt``; training continues after its epoch."""
    model.load_state_dict(state["model"])
    opt.optimizer.load_state_dict(state["optimizer"])
    opt.scheduler.load_state_dict(state["scheduler"])
    opt.scaler.load_state_dict(state["scaler"])
    set_rng_states(state["rng"])
    if state.get("threads") != torch.get_num_threads() and ddp.main:
        print(
            f"warning: {torch.get_num_threads()} torch threads now, {state.get('threads')} "
            "before: the resumed run may differ in the last bits"
        )
    return Progress(state["epoch"] + 1, state["best"], state["bad_epochs"])


def _new_run_dir(cfg: Config, ddp: Dist) -> Path:
    """Step 4 for a new run: ``runs/<date>_<time>_<run.name>/``, made by rank 0."""
    return records.shared_run_dir(ddp, lambda: new_run_dir(paths.runs_dir(), cfg.run.name))


def _open_run(
    run_dir: Path,
    cfg: Config,
    ddp: Dist,
    data: TrainingData,
    state: dict[str, Any] | None,
    progress: Progress,
    seeding: dict[str, Any],
    note: str | None,
) -> tuple[MetricsLog | None, Tracker | None]:
    """Step 4's records (rank 0; :func:`.records.open_run`): the metrics log and the tracker,
    None on the other ranks. An error on rank 0 (say, a tracker not installed) stops all."""
    metrics, tracker, failure = None, None, None
    if ddp.main:
        try:
            metrics, tracker = records.open_run(
                run_dir,
                cfg,
                note=note,
                state=state,
                start_epoch=progress.start_epoch,
                device=ddp.device,
                seeding=seeding,
                data={
                    "root": str(data_root(cfg)),
                    "fold": cfg.data.fold,
                    "train_cases": len(data.train_cases),
                    "val_cases": len(data.val_cases),
                    "classes": data.classes or data.num_classes,
                    "channels": data.train_set.channel_names,
                },
            )
        except Exception as exc:  # raised on every rank by settle
            failure = exc
    ddp.settle(failure)
    return metrics, tracker


def _set_epoch(cfg: Config, data: TrainingData, epoch: int) -> None:
    """Shuffling and augmentation depend only on (seed, epoch): resumable, worker-independent."""
    data.train_set.set_epoch(epoch)
    data.generator.manual_seed(cfg.seed * 100_003 + epoch)
    if data.sampler is not None:
        data.sampler.set_epoch(epoch)


def _validate_epoch(
    cfg: Config,
    model: nn.Module,
    data: TrainingData,
    opt: Optimization,
    device: torch.device,
    epoch: int,
    result: EpochResult,
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """Whole-set validation metrics (rank 0, never averaged over batches), with per-layer
    activation statistics; returns this epoch's ``metrics.csv`` row (without ``lr`` and
    ``seconds``) and the layer statistics."""
    with ActivationStats(model) as activations:
        val = validate(
            model, data.val_set, opt.loss_fn, cfg, device, data.classes, data.num_classes
        )
    row = {"epoch": epoch + 1, "train_loss": result.loss, **val}
    return row, activations.summary()


def _update_progress(
    progress: Progress, value: float, epoch: int, monitor: str, mode: str, cfg: Config
) -> bool:
    """Count this epoch's monitored ``value`` for best.pt and early stopping; return whether
    it improves on the best (a NaN never does, and a warning says so)."""
    improved = is_better(value, progress.best, mode, cfg.train.min_delta)
    if math.isnan(value):
        kept = "the best earlier epoch" if progress.best is not None else "this epoch for now"
        print(
            f"warning: {monitor} is nan at epoch {epoch + 1}: not counted as an "
            f"improvement (best.pt holds {kept})",
            flush=True,
        )
    if improved:
        progress.best, progress.bad_epochs = value, 0
    else:
        progress.bad_epochs += 1
    return improved


def _save_checkpoints(
    run_dir: Path,
    cfg: Config,
    model: nn.Module,
    data: TrainingData,
    opt: Optimization,
    progress: Progress,
    epoch: int,
    row: dict[str, Any],
    improved: bool,
) -> None:
    """``last.pt`` every epoch, ``best.pt`` when the monitored metric improved (until it has
    been a number once, best.pt holds the latest epoch)."""
    checkpoint = records.checkpoint_state(
        model=model,
        optimizer=opt.optimizer,
        scheduler=opt.scheduler,
        scaler=opt.scaler,
        epoch=epoch,
        best=progress.best,
        bad_epochs=progress.bad_epochs,
        cfg=cfg,
        classes=data.classes,
        num_classes=data.num_classes,
        in_channels=data.train_set.in_channels,
        channels=data.train_set.channel_names,
        row=row,
    )
    # Checkpoint first, then the logs: a run killed in between resumes from this epoch and
    # restores its metrics row from the checkpoint.
    if improved or progress.best is None:
        save_checkpoint(run_dir / "checkpoints" / "best.pt", checkpoint)
    save_checkpoint(run_dir / "checkpoints" / "last.pt", checkpoint)


def _log_epoch(
    run_dir: Path,
    cfg: Config,
    metrics: MetricsLog,
    tracker: Tracker,
    progress: Progress,
    epoch: int,
    row: dict[str, Any],
    layers: dict[str, dict[str, float]],
    result: EpochResult,
    plots: bool,
) -> bool:
    """``metrics.csv``, ``layer_stats.csv``, the plots (after the first epoch, every
    :data:`PLOT_EVERY` epochs and the last) and the tracker; return whether to stop early."""
    metrics.append(row)
    record_layers(run_dir, epoch + 1, layers, result.grad_norms)
    stop = bool(cfg.train.patience and progress.bad_epochs >= cfg.train.patience)
    last_epoch = epoch + 1 == cfg.train.epochs or stop
    if plots and (epoch == progress.start_epoch or (epoch + 1) % PLOT_EVERY == 0 or last_epoch):
        plot_run(run_dir)
    tracker.log(epoch + 1, row)
    return stop


def _epoch_line(cfg: Config, epoch: int, row: dict[str, Any]) -> str:
    """``epoch 3/20: train_loss 0.41, val_loss 0.38, val_dice 0.71, lr 0.001``."""
    shown = ", ".join(
        f"{k} {v:.4g}"
        for k, v in row.items()
        if k not in ("epoch", "seconds") and isinstance(v, float)
    )
    return f"epoch {epoch + 1}/{cfg.train.epochs}: {shown}"


def _finish(
    run_dir: Path,
    cfg: Config,
    ddp: Dist,
    metrics: MetricsLog | None,
    tracker: Tracker | None,
    progress: Progress,
    monitor: str,
    note: str | None,
    quiet: bool,
) -> None:
    """Step 6 (rank 0): close the tracker, append the run to ``EXPERIMENTS.md`` and say how it
    ended; the other ranks return once rank 0 has written everything."""
    failure = None
    if ddp.main:
        try:
            tracker.close()
            status = records.record_experiment(
                run_dir,
                cfg,
                note=note,
                status=progress.status,
                monitor=monitor,
                best=progress.best,
                metrics=metrics,
            )
            if not quiet:
                best = progress.best
                shown = f"{best:.4f}" if best is not None else "nan (never a number)"
                print(f"{status}; best {monitor} {shown}; run folder {run_dir}")
        except Exception as exc:
            failure = exc
    ddp.settle(failure)


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
        optimizer: the optimizer of the model's parameters.
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
