"""Trackers besides the run folder: what they are asked to record (with stand-in packages)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.train.tracking import Tracker, make_tracker
from {{ cookiecutter.package_name }}.utils.errors import ConfigError

PARAMS = {"seed": 1, "train": {"lr": 0.01, "epochs": 2}}
ROW = {"epoch": 1, "train_loss": 0.5, "val_dice": 0.8, "note": "text is not a metric"}


def test_csv_tracking_is_the_run_folder_only(tmp_path: Path) -> None:
    tracker = make_tracker("csv", tmp_path / "run", tmp_path, PARAMS)
    assert type(tracker) is Tracker
    tracker.log(1, ROW)
    tracker.close()
    assert not (tmp_path / "run").exists()  # metrics.csv is written by the loop itself


def test_mlflow_gets_flat_params_metrics_per_epoch_and_a_local_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple] = []
    fake = types.ModuleType("mlflow")
    fake.set_tracking_uri = lambda uri: calls.append(("uri", uri))
    fake.set_experiment = lambda name: calls.append(("experiment", name))
    fake.start_run = lambda run_name: calls.append(("start", run_name))
    fake.log_params = lambda params: calls.append(("params", params))
    fake.set_tag = lambda key, value: calls.append(("tag", key))
    fake.log_metrics = lambda values, step: calls.append(("metrics", values, step))
    fake.end_run = lambda: calls.append(("end",))
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracker = make_tracker("mlflow", tmp_path / "runs" / "r1", tmp_path, PARAMS)
    tracker.log(1, ROW)
    tracker.close()
    assert calls[0] == ("uri", (tmp_path / "mlruns").resolve().as_uri())
    assert ("start", "r1") in calls
    assert ("params", {"seed": 1, "train.lr": 0.01, "train.epochs": 2}) in calls
    assert ("metrics", {"train_loss": 0.5, "val_dice": 0.8}, 1) in calls
    assert calls[-1] == ("end",)


def test_tensorboard_writes_scalars_per_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scalars: list[tuple] = []

    class Writer:
        def __init__(self, log_dir: str) -> None:
            scalars.append(("dir", log_dir))

        def add_text(self, tag: str, text: str) -> None:
            scalars.append(("text", tag))

        def add_scalar(self, tag: str, value: float, step: int) -> None:
            scalars.append((tag, value, step))

        def flush(self) -> None:
            return None

        def close(self) -> None:
            scalars.append(("closed",))

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = Writer
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    tracker = make_tracker("tensorboard", tmp_path / "run", tmp_path, PARAMS)
    tracker.log(3, ROW)
    tracker.close()
    assert scalars[0] == ("dir", str(tmp_path / "run" / "tensorboard"))
    assert ("train_loss", 0.5, 3) in scalars and ("val_dice", 0.8, 3) in scalars
    assert not any(s[0] == "note" for s in scalars) and scalars[-1] == ("closed",)


def test_missing_tracker_package_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow -> ImportError
    with pytest.raises(ConfigError, match="tracking.*pip install mlflow"):
        make_tracker("mlflow", tmp_path / "run", tmp_path, PARAMS)
