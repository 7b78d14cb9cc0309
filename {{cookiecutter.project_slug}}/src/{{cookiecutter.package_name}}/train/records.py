"""What a training run writes into its folder, apart from the training itself.

At the start, ``config.yaml`` (the resolved settings), ``environment.json`` (versions, device,
git state, seeding, the data) and ``notes.md``; every epoch, the checkpoint's contents; at the
end, one line in the project's ``EXPERIMENTS.md``. Under ``torchrun`` only rank 0 writes:
:func:`shared_run_dir` gives every rank the folder that rank 0 created.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import paths
from ..config import Config, save_config, to_dict
from ..runs.checkpoint import rng_states
from ..runs.folder import MetricsLog, append_experiment, write_notes
from ..utils.environment import environment
from ..utils.io import atomic_write_text
from . import builders
from .diagnostics import overfit_verdict
from .distributed import Dist
from .tracking import Tracker, make_tracker


def shared_run_dir(ddp: Dist, make: Callable[[], Path]) -> Path:
    """Rank 0 creates the run folder; the other ranks learn its path.

    Args:
        ddp: this process's place in the ``torchrun`` job.
        make: creates the folder and returns its path (called on rank 0 only).

    Returns:
        The run folder, the same on every rank.

    Raises:
        TrainingError: ``make`` failed on rank 0: every rank stops with its message rather than
            waiting for a path that never comes (one process: ``make``'s own error).
    """
    if not ddp.active:
        return make()
    folder, failure = None, None
    if ddp.main:
        try:
            folder = str(make())
        except Exception as exc:  # raised on every rank by settle
            failure = exc
    ddp.settle(failure)
    return Path(ddp.share(folder))


def write_run_start(
    run_dir: Path,
    cfg: Config,
    *,
    device: torch.device,
    seeding: dict[str, Any],
    data: dict[str, Any],
) -> None:
    """``config.yaml`` and ``environment.json`` of a new run.

    Args:
        run_dir: the new run folder.
        cfg: the resolved configuration (saved as it will be reloaded on resume).
        device: the device training runs on.
        seeding: what :func:`.utils.seed.seed_everything` set.
        data: the ``"data"`` entry of ``environment.json`` (root, fold, case counts, classes,
            channels).
    """
    save_config(cfg, run_dir / "config.yaml")
    env = environment(device, paths.project_root(), seeding)
    env["data"] = data
    atomic_write_text(run_dir / "environment.json", json.dumps(env, indent=2) + "\n")


def restore_metrics(metrics: MetricsLog, state: dict[str, Any], start_epoch: int) -> None:
    """Make ``metrics.csv`` end at the checkpoint a run resumes from.

    Rows after the checkpoint's epoch are dropped (those epochs are trained again); a run
    killed after writing the checkpoint but before its row gets the row from the checkpoint.

    Args:
        metrics: the run's ``metrics.csv``.
        state: the checkpoint (``state["metrics"]`` is its epoch's row).
        start_epoch: the first epoch to train (0-based), i.e. the checkpoint's row number.
    """
    metrics.truncate(start_epoch)  # rows are numbered from 1: keep those saved
    if not metrics.rows or int(metrics.rows[-1]["epoch"]) < start_epoch:
        metrics.append(state["metrics"])


def open_run(
    run_dir: Path,
    cfg: Config,
    *,
    note: str | None,
    state: dict[str, Any] | None,
    start_epoch: int,
    device: torch.device,
    seeding: dict[str, Any],
    data: dict[str, Any],
) -> tuple[MetricsLog, Tracker]:
    """Everything rank 0 writes before the first epoch; the metrics log and the tracker.

    A new run gets ``config.yaml`` and ``environment.json`` (:func:`write_run_start`); a resumed
    one its ``metrics.csv`` cut back to the checkpoint (:func:`restore_metrics`). Both get the
    note in ``notes.md`` and the tracker of ``tracking``.

    Args:
        run_dir: the run folder.
        cfg: the resolved configuration.
        note: the run's ``--note`` (appended on resume).
        state: the checkpoint resumed from, or None for a new run.
        start_epoch: the first epoch to train (0-based).
        device, seeding, data: for a new run's ``environment.json`` (see
            :func:`write_run_start`).

    Returns:
        ``metrics.csv`` and the tracker (:mod:`.tracking`).

    Raises:
        ConfigError: the tracker's package is not installed.
    """
    metrics = MetricsLog(run_dir / "metrics.csv")
    if state is None:
        write_run_start(run_dir, cfg, device=device, seeding=seeding, data=data)
    else:
        restore_metrics(metrics, state, start_epoch)
    write_notes(run_dir, note, resumed=state is not None)
    tracker = make_tracker(cfg.tracking, run_dir, paths.project_root(), to_dict(cfg))
    return metrics, tracker


def checkpoint_state(
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    epoch: int,
    best: float | None,
    bad_epochs: int,
    cfg: Config,
    classes: list[str] | None,
    num_classes: int,
    in_channels: int,
    channels: list[str],
    row: dict[str, Any],
) -> dict[str, Any]:
    """The contents of ``last.pt`` / ``best.pt``: all a bit-exact resume and evaluation need.

    Args:
        model, optimizer, scheduler, scaler: the training objects whose state is saved.
        epoch: the epoch just finished (0-based).
        best: the best monitored value so far (None while it has never been a number).
        bad_epochs: epochs without improvement (early stopping).
        cfg: the run's configuration.
        classes: the class names (classification), else None.
        num_classes: the model's output channels.
        in_channels: the model's input channels.
        channels: the input channels' names (one per ``image_<channel>`` column).
        row: this epoch's ``metrics.csv`` row.

    Returns:
        The checkpoint dictionary (format unchanged: see :mod:`..runs.checkpoint`).
    """
    return {
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
        "in_channels": in_channels,
        "channels": channels,
        "metrics": row,
    }


def record_experiment(
    run_dir: Path,
    cfg: Config,
    *,
    note: str | None,
    status: str,
    monitor: str,
    best: float | None,
    metrics: MetricsLog,
) -> str:
    """Append the run's line to ``EXPERIMENTS.md``; return its final status.

    Args:
        run_dir: the run folder.
        cfg: the run's configuration.
        note: the run's ``--note``.
        status: ``"completed"`` or the early-stop sentence.
        monitor: the metric that picked ``best.pt``.
        best: its best value (None when it was never a number).
        metrics: the run's ``metrics.csv`` (overfit mode's verdict reads it).

    Returns:
        ``status``, with overfit mode's verdict added.
    """
    if cfg.overfit:
        status += "; " + overfit_verdict(cfg, metrics)
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
    return status
