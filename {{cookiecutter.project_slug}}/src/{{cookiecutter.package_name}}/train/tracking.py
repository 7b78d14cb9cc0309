"""Experiment trackers besides the run folder, chosen by ``tracking``.

``csv``: the run folder's ``metrics.csv`` only. ``tensorboard``: event files in the run folder
(``tensorboard --logdir runs``). ``mlflow``: a local store ``mlruns/`` at the project root
(``mlflow ui`` in the project folder); nothing is sent anywhere unless you set
``MLFLOW_TRACKING_URI`` yourself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..utils.errors import ConfigError


class Tracker:
    """The run folder alone: nothing more to do."""

    def log(self, epoch: int, row: dict[str, Any]) -> None:
        """Record one epoch's metrics."""

    def close(self) -> None:
        """Flush and finish."""


class TensorBoardTracker(Tracker):
    def __init__(self, run_dir: Path, params: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self.writer.add_text("config", f"```\n{params}\n```")

    def log(self, epoch: int, row: dict[str, Any]) -> None:
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MLflowTracker(Tracker):
    def __init__(self, run_dir: Path, project: Path, params: dict[str, Any]) -> None:
        import mlflow

        if not os.environ.get("MLFLOW_TRACKING_URI"):
            mlflow.set_tracking_uri((project / "mlruns").resolve().as_uri())
        mlflow.set_experiment(project.name)
        self.mlflow = mlflow
        self.run = mlflow.start_run(run_name=run_dir.name)
        flat = {}

        def walk(prefix: str, node: Any) -> None:
            if isinstance(node, dict):
                for k, v in node.items():
                    walk(f"{prefix}{k}.", v)
            else:
                flat[prefix[:-1]] = node

        walk("", params)
        mlflow.log_params(flat)
        mlflow.set_tag("run_dir", str(run_dir))

    def log(self, epoch: int, row: dict[str, Any]) -> None:
        values = {
            k: float(v) for k, v in row.items() if k != "epoch" and isinstance(v, (int, float))
        }
        self.mlflow.log_metrics(values, step=epoch)

    def close(self) -> None:
        self.mlflow.end_run()


def make_tracker(name: str, run_dir: Path, project: Path, params: dict[str, Any]) -> Tracker:
    """The tracker of ``tracking``; a missing package is a ConfigError saying what to install."""
    try:
        if name == "tensorboard":
            return TensorBoardTracker(run_dir, params)
        if name == "mlflow":
            return MLflowTracker(run_dir, project, params)
    except ImportError as exc:
        raise ConfigError(
            f"config key 'tracking' = '{name}' needs a package that is not installed "
            f"({exc.name}): pip install {name}"
        ) from None
    return Tracker()
