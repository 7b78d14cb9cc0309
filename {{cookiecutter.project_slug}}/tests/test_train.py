"""Training: the run folder, exact resume, the NaN guard, early stopping, safe checkpoints."""

from __future__ import annotations

import csv
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tiny_data import SHAPE, SMALL, TASK, tiny_dataset, train_small

from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.config import load_config, monitored_metric
from {{ cookiecutter.package_name }}.data.io import write_nifti
from {{ cookiecutter.package_name }}.runs.checkpoint import (
    CheckpointError,
    load_checkpoint,
    rng_states,
    save_checkpoint,
    set_rng_states,
)
from {{ cookiecutter.package_name }}.runs.folder import new_run_dir
from {{ cookiecutter.package_name }}.train import builders, loop
from {{ cookiecutter.package_name }}.train.lr_find import suggest_lr
from {{ cookiecutter.package_name }}.utils.errors import ConfigError

PKG = "{{ cookiecutter.package_name }}"


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


def assert_same_state(a: Path, b: Path) -> None:
    sa = load_checkpoint(a / "checkpoints" / "last.pt")
    sb = load_checkpoint(b / "checkpoints" / "last.pt")
    assert sa["epoch"] == sb["epoch"]
    for key, value in sa["model"].items():
        assert torch.equal(value, sb["model"][key]), key
    for pa, pb in zip(
        sa["optimizer"]["state"].values(), sb["optimizer"]["state"].values(), strict=True
    ):
        for key in pa:
            assert torch.equal(torch.as_tensor(pa[key]), torch.as_tensor(pb[key])), key


# --- the run folder ------------------------------------------------------------------------


def test_run_folder_has_everything(tiny: Path) -> None:
    run = train_small("run.name=first", note="a first try", plots=True)
    assert run.parent == tiny / "runs" and run.name.endswith("_first")
    saved = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    assert saved["train"]["epochs"] == 2 and saved["model"]["width"] == 4
    # normalization auto, resolved from the tiny data (no air, not HU): mr without a window
    resolved = ["run.name=first", "data.normalization=mr", "data.window=null"]
    assert load_config(path=run / "config.yaml") == load_config(SMALL + resolved)
    env = json.loads((run / "environment.json").read_text(encoding="utf-8"))
    assert {"python", "packages", "torch", "device", "git", "seeding", "start_time"} <= set(env)
    assert env["seeding"]["seed"] == 42 and "dirty" in env["git"]
    rows = (run / "metrics.csv").read_text(encoding="utf-8").splitlines()
    header = rows[0].split(",")
    assert header[:3] == ["epoch", "train_loss", "val_loss"] and len(rows) == 3
    assert ("val_dice" if TASK == "segmentation" else "val_auroc") in header
    for name in ("last.pt", "best.pt"):
        state = torch.load(run / "checkpoints" / name, weights_only=True)
        assert {
            "model",
            "optimizer",
            "scheduler",
            "scaler",
            "epoch",
            "rng",
            "config",
            "date",
        } <= set(state)
    for plot in ("loss", "metrics", "lr", "activations", "gradient_norms"):
        assert (run / "plots" / f"{plot}.png").stat().st_size > 1000
    assert "a first try" in (run / "notes.md").read_text(encoding="utf-8")
    log = (tiny / "EXPERIMENTS.md").read_text(encoding="utf-8")
    assert run.name in log and "a first try" in log


def test_same_seed_same_weights(tiny: Path) -> None:
    a = train_small("train.epochs=1", "train.steps_per_epoch=1")
    b = train_small("train.epochs=1", "train.steps_per_epoch=1")
    assert a != b  # a new folder each time, never overwritten
    for key, value in weights(a).items():
        assert torch.equal(value, weights(b)[key]), key
    c = train_small("train.epochs=1", "train.steps_per_epoch=1", "seed=7")
    assert any(not torch.equal(v, weights(c)[k]) for k, v in weights(a).items())


def test_resume_after_a_crash_is_bit_identical(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    full = train_small("run.name=full")
    real = loop.run_epoch

    def crash_in_epoch_2(**kwargs):
        if kwargs["epoch"] == 1:  # stop in the middle of the second epoch
            raise KeyboardInterrupt
        return real(**kwargs)

    monkeypatch.setattr(loop, "run_epoch", crash_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train_small("run.name=crashed")
    crashed = next(p for p in (tiny / "runs").iterdir() if p.name.endswith("_crashed"))
    assert load_checkpoint(crashed / "checkpoints" / "last.pt")["epoch"] == 0
    monkeypatch.setattr(loop, "run_epoch", real)
    loop.train(load_config(), resume=crashed, quiet=True)
    assert_same_state(full, crashed)
    assert len((crashed / "metrics.csv").read_text(encoding="utf-8").splitlines()) == 3


@pytest.mark.slow
def test_resume_after_sigkill_is_bit_identical(tiny: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, "-m", PKG, "train", *SMALL, "train.epochs=4", "train.steps_per_epoch=0"]
    full = subprocess.run(
        [*args, "run.name=full"], cwd=tiny, env=env, capture_output=True, text=True
    )
    assert full.returncode == 0, full.stderr
    proc = subprocess.Popen(
        [*args, "run.name=killed"],
        cwd=tiny,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    metrics = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = [p for p in (tiny / "runs").iterdir() if p.name.endswith("_killed")]
        metrics = found[0] / "metrics.csv" if found else None
        last = found[0] / "checkpoints" / "last.pt" if found else None
        if (
            last
            and last.exists()
            and metrics.exists()
            and len(metrics.read_text().splitlines()) >= 2
        ):
            break  # epoch 1 is saved: now kill it in the middle of epoch 2
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = metrics.parent
    resumed = subprocess.run(
        [sys.executable, "-m", PKG, "train", "--resume", str(killed)],
        cwd=tiny,
        env=env,
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    full_dir = next(p for p in (tiny / "runs").iterdir() if p.name.endswith("_full"))
    assert_same_state(full_dir, killed)


# --- what the log reports -----------------------------------------------------------------


def test_train_loss_is_the_mean_of_the_step_losses(
    tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``train_loss`` in metrics.csv is the mean of every step's loss, the steps that sample
    gradient norms included (once a layer's gradient norm was added in their place)."""
    tiny_dataset(tiny / "data" / "more", cases=16)
    steps: list[float] = []
    real = builders.loss

    class Recording(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            value = self.inner(logits, target)
            if torch.is_grad_enabled():  # a training step (validation runs without gradients)
                steps.append(float(value.detach()))
            return value

    monkeypatch.setattr(builders, "loss", lambda *a, **k: Recording(real(*a, **k)))
    run = train_small("data.root=data/more", "train.batch_size=1", "train.epochs=1")
    assert len(steps) > loop.GRAD_NORM_EVERY  # sampled and unsampled steps both counted
    with open(run / "metrics.csv", newline="", encoding="utf-8") as handle:
        (row,) = list(csv.DictReader(handle))
    assert float(row["train_loss"]) == pytest.approx(np.mean(steps), rel=1e-5)


def test_nan_validation_metric_is_not_an_improvement(
    tiny: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A NaN monitored metric at epoch 1 (e.g. AUROC on one class) must not freeze best.pt."""
    monitor, mode = monitored_metric(load_config(SMALL))
    good, worse = (0.6, 0.5) if mode == "max" else (0.5, 0.6)
    values = iter([float("nan"), good, worse])
    monkeypatch.setattr(loop, "validate", lambda *a, **k: {"val_loss": 1.0, monitor: next(values)})
    run = train_small("train.epochs=3", "run.name=nanval")
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert best["epoch"] == 1 and best["best"] == good  # epoch 2 (0-based 1), not epoch 1
    assert f"{monitor} is nan at epoch 1: not counted as an improvement" in capsys.readouterr().out


def test_is_better_never_takes_nan() -> None:
    nan = float("nan")
    assert loop.is_better(0.5, None, "max", 0.0) and loop.is_better(0.5, None, "min", 0.0)
    assert not loop.is_better(nan, None, "max", 0.0) and not loop.is_better(nan, 0.5, "min", 0.0)
    assert loop.is_better(0.7, 0.5, "max", 0.1) and not loop.is_better(0.6, 0.5, "max", 0.1)
    assert loop.is_better(0.3, 0.5, "min", 0.1) and not loop.is_better(0.45, 0.5, "min", 0.1)
    with pytest.raises(ValueError, match="'max' or 'min'"):
        loop.is_better(0.5, 0.4, "up", 0.0)


# --- stopping: NaN, early stopping ---------------------------------------------------------


def test_nan_loss_stops_with_the_step_and_keeps_last_checkpoint(
    tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}

    def penalty(logits, cfg):
        calls["n"] += 1
        return logits.new_tensor(float("nan")) if calls["n"] > 2 else logits.new_zeros(())

    monkeypatch.setattr(builders, "activity_penalty", penalty)
    with pytest.raises(loop.TrainingError, match=r"loss is nan at epoch \d+, step \d+"):
        train_small("run.name=nan")
    run = next(p for p in (tiny / "runs").iterdir() if p.name.endswith("_nan"))
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] >= 0


def test_early_stopping(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    metric = "val_dice" if TASK == "segmentation" else "val_auroc"
    monkeypatch.setattr(loop, "validate", lambda *a, **k: {"val_loss": 1.0, metric: 0.5})
    run = train_small("train.epochs=6", "train.patience=2", "run.name=flat")
    assert len((run / "metrics.csv").read_text(encoding="utf-8").splitlines()) == 1 + 3
    assert "early stop at epoch 3" in (tiny / "EXPERIMENTS.md").read_text(encoding="utf-8")


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_hostile_checkpoint_is_refused_and_runs_no_code(tiny: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    run = tiny / "runs" / "evil"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("{}\n", encoding="utf-8")
    with open(run / "checkpoints" / "last.pt", "wb") as handle:
        pickle.dump({"model": Evil()}, handle)
    assert main(["train", "--resume", str(run)]) == 2
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="not a checkpoint of this project"):
        load_checkpoint(run / "checkpoints" / "last.pt")
    (run / "checkpoints" / "other.pt").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="other.pt"):
        load_checkpoint(run / "checkpoints" / "other.pt")
    torch.save({"weights": torch.zeros(2)}, run / "checkpoints" / "plain.pt")
    with pytest.raises(CheckpointError, match="torch file but not a checkpoint"):
        load_checkpoint(run / "checkpoints" / "plain.pt")


def test_train_refuses_stale_splits(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = tiny / "data" / "tiny" / "images" / "c0.nii.gz"
    write_nifti(np.ones(SHAPE, np.int16), np.eye(4), image)
    assert main(["train", *SMALL]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "re-run split" in err


def test_unknown_key_and_bad_model(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", *SMALL, "train.epoch=3"]) == 2
    assert "unknown config key 'train.epoch'" in capsys.readouterr().err
    assert main(["train", *SMALL, "model.name=resnet999"]) == 2
    assert "model.name" in capsys.readouterr().err
    assert main(["train", "--resume", "runs/nothing-here"]) == 2
    assert "does not exist" in capsys.readouterr().err


# --- pieces ---------------------------------------------------------------------------------


def test_checkpoint_round_trip_restores_every_generator(tmp_path: Path) -> None:
    import random

    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    path = save_checkpoint(tmp_path / "ck.pt", {"rng": rng_states()})
    expected = (random.random(), float(np.random.rand()), torch.rand(2).tolist())
    random.seed(2)
    np.random.seed(2)
    torch.manual_seed(2)
    set_rng_states(load_checkpoint(path)["rng"])
    assert (random.random(), float(np.random.rand()), torch.rand(2).tolist()) == expected
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


def test_run_folders_are_never_reused(tmp_path: Path) -> None:
    from datetime import datetime

    now = datetime(2026, 1, 2, 3, 4, 5)
    first = new_run_dir(tmp_path, "x", now)
    second = new_run_dir(tmp_path, "x", now)
    assert first.name == "2026-01-02_030405_x" and second.name == "2026-01-02_030405_x-2"


def test_overfit_mode_turns_regularization_off() -> None:
    cfg = builders.regularization_off(
        load_config(["model.dropout=0.3", "train.weight_decay=0.1", "data.augment=true"])
    )
    assert cfg.model.dropout == 0 and cfg.train.weight_decay == 0 and not cfg.data.augment
    assert cfg.train.patience == 0


@pytest.mark.slow
def test_overfit_reaches_near_perfect_training_metric(tiny: Path) -> None:
    tiny_dataset(tiny / "data" / "big", box=6)
    train_small(
        "overfit=true",
        "data.root=data/big",
        "model.width=16",
        "train.epochs=30",
        "train.lr=0.01",
        "run.name=overfit",
    )
    log = (tiny / "EXPERIMENTS.md").read_text(encoding="utf-8")
    assert "overfit reached" in log, log


def test_suggest_lr_finds_the_steepest_descent() -> None:
    lrs = np.logspace(-6, 0, 61)
    losses = 2 - np.tanh(3 * (np.log10(lrs) + 3))  # falls fastest at 1e-3
    assert suggest_lr(lrs, losses) == pytest.approx(1e-3, rel=0.05)
    with pytest.raises(ValueError):
        suggest_lr(lrs[:2], losses[:2])


@pytest.mark.slow
def test_lr_find_writes_plot_and_suggestion(tiny: Path) -> None:
    assert main(["lr-find", *SMALL, "--steps", "8"]) == 0
    run = next(p for p in (tiny / "runs").iterdir() if "lr-find" in p.name)
    result = json.loads((run / "lr_find.json").read_text(encoding="utf-8"))
    assert 1e-6 <= result["suggested_lr"] <= 1.0 and len(result["lr"]) == result["steps"]
    assert (run / "lr_find.png").stat().st_size > 1000


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="gloo DDP test on Linux/macOS")
def test_ddp_two_cpu_processes(tiny: Path) -> None:
    args = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29531",
        "-m",
        PKG,
        "train",
        *SMALL,
        "train.epochs=1",
        "run.name=ddp",
    ]
    result = subprocess.run(args, cwd=tiny, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    runs = [p for p in (tiny / "runs").iterdir() if p.name.endswith("_ddp")]
    assert len(runs) == 1  # rank 0 wrote, rank 1 did not make a folder of its own
    assert len((runs[0] / "metrics.csv").read_text(encoding="utf-8").splitlines()) == 2
    shutil.rmtree(runs[0])


@pytest.mark.applies(task="classification")
def test_a_positive_class_that_is_not_a_class_stops_training_before_it_starts(tiny: Path) -> None:
    with pytest.raises(ConfigError, match="'data.positive_class' = 'findng' is not one of"):
        train_small("data.positive_class=findng")
    assert not (tiny / "runs").exists()  # nothing was trained or written
