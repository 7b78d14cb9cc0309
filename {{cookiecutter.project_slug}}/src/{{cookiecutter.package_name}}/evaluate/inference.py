"""A trained run, loaded and applied: what ``evaluate``, ``predict`` and ``explain`` share.

:func:`load_run` rebuilds the network of a run folder from its ``config.yaml`` and a checkpoint
(read with ``weights_only=True``); :func:`load_runs` does it for an ensemble and checks that its
members agree on task, classes and preprocessing. :func:`probabilities` applies one or several
networks to a whole image (sliding windows of the training patch for segmentation) and averages
their softmax outputs; :func:`to_source_grid` puts a segmentation back on the image's own grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import paths
from ..config import Config, load_config
from ..data.dataset import MedicalDataset
from ..data.io import Image
from ..data.manifest import Case, DataError
from ..data.preprocess import preprocess, resample
from ..data.split import fold_cases, test_cases
from ..train import builders
from ..train.checkpoint import load_checkpoint
from ..train.validate import predict_logits
from ..utils.errors import ProjectError

SPLITS = ("val", "test")
CHECKPOINTS = ("best", "last")


class RunError(ProjectError):
    """A folder that is not a finished run, or runs that cannot be combined."""


@dataclass
class LoadedRun:
    """A run folder's network, ready for inference.

    Attributes:
        run_dir: the run folder.
        cfg: its resolved configuration (``config.yaml``).
        model: the network in eval mode, with the checkpoint's weights.
        classes: class names by output index (classification), or ``None`` (segmentation).
        num_classes: output channels (segmentation: background + labels).
        epoch: the epoch the checkpoint was saved after, from 1.
        checkpoint: the checkpoint file read.
    """

    run_dir: Path
    cfg: Config
    model: nn.Module
    classes: list[str] | None
    num_classes: int
    epoch: int
    checkpoint: Path

    @property
    def task(self) -> str:
        return self.cfg.task

    @property
    def patch(self) -> tuple[int, ...] | None:
        """The sliding-window size (the training patch) for segmentation, else ``None``."""
        return tuple(self.cfg.data.patch_size) if self.task == "segmentation" else None

    def label_names(self) -> list[str]:
        """A name per output channel: the classes, or ``background``, ``1``, ``2``... ."""
        if self.classes is not None:
            return list(self.classes)
        return ["background"] + [str(k) for k in range(1, self.num_classes)]


def load_run(
    run_dir: str | Path, checkpoint: str = "best", device: str | torch.device = "cpu"
) -> LoadedRun:
    """Rebuild the network of ``run_dir`` and load ``checkpoints/<checkpoint>.pt``.

    Args:
        run_dir: a folder that ``train`` wrote.
        checkpoint: ``"best"`` (the best validation epoch) or ``"last"``.
        device: where to put the network.

    Raises:
        RunError: the folder, its ``config.yaml`` or the checkpoint is missing.
        CheckpointError: the checkpoint is not one of this project's.
        ConfigError: the saved config is not valid any more (e.g. edited by hand).
    """
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint must be one of {', '.join(CHECKPOINTS)}, got {checkpoint!r}")
    run_dir = paths.resolve(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"run folder '{run_dir}' does not exist")
    config = run_dir / "config.yaml"
    if not config.is_file():
        raise RunError(f"'{run_dir}' is not a run folder: it has no config.yaml")
    path = run_dir / "checkpoints" / f"{checkpoint}.pt"
    if not path.is_file():
        raise RunError(
            f"'{path}' does not exist: the run has not finished an epoch (train --resume it)"
        )
    cfg = load_config(path=config)
    state = load_checkpoint(path)
    num_classes = int(state["num_classes"])
    model = builders.build(cfg, num_classes)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise RunError(
            f"'{path}' does not fit the network of '{config}' (was the config edited?): "
            f"{str(exc).splitlines()[0]}"
        ) from None
    model.to(device).eval()
    classes = [str(c) for c in state.get("classes") or []] or None
    return LoadedRun(run_dir, cfg, model, classes, num_classes, int(state["epoch"]) + 1, path)


def load_runs(
    run_dir: str | Path,
    ensemble: Sequence[str | Path] = (),
    checkpoint: str = "best",
    device: str | torch.device = "cpu",
) -> list[LoadedRun]:
    """``run_dir`` and the runs of ``ensemble``, checked to be combinable.

    Members must share the task, dimensions, classes and preprocessing (intensity window,
    normalisation, target spacing), since one preprocessed image goes through all of them.

    Raises:
        RunError: a member differs in one of those; the message names it and the setting.
    """
    runs = [load_run(run_dir, checkpoint, device)]
    seen = {runs[0].run_dir}
    for other in ensemble:
        run = load_run(other, checkpoint, device)
        if run.run_dir in seen:
            continue
        seen.add(run.run_dir)
        for what, get in (
            ("task", lambda r: r.task),
            ("spatial_dims", lambda r: r.cfg.spatial_dims),
            ("classes", lambda r: (r.classes, r.num_classes)),
            ("preprocessing", lambda r: builders.loader_settings(r.cfg).preprocessing()),
        ):
            if get(run) != get(runs[0]):
                raise RunError(
                    f"run '{run.run_dir.name}' differs from '{runs[0].run_dir.name}' in its "
                    f"{what} ({get(run)} vs {get(runs[0])}): an ensemble needs the same"
                )
        runs.append(run)
    return runs


def split_cases(run: LoadedRun, split: str) -> list[Case]:
    """The cases of ``split`` for this run: its fold's validation cases, or the test set.

    Raises:
        ValueError: ``split`` is not ``val`` or ``test``.
        DataError: the splits file is missing or stale, or has no test set.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    root = paths.resolve(run.cfg.data.root)
    if split == "test":
        return test_cases(root, run.task)
    return fold_cases(root, run.task, run.cfg.data.fold)[1]


def eval_dataset(run: LoadedRun, cases: Sequence[Case]) -> MedicalDataset:
    """``cases`` with the run's preprocessing, as whole images, without augmentation."""
    if not cases:
        raise DataError("no cases to evaluate")
    return builders.dataset(run.cfg, list(cases), run.classes, train=False)


@torch.no_grad()
def probabilities(runs: Sequence[LoadedRun], image: torch.Tensor) -> torch.Tensor:
    """The mean softmax output of ``runs`` on one whole image.

    Args:
        runs: one run, or the members of an ensemble.
        image: ``(1, 1, *S)`` preprocessed image, on the runs' device.

    Returns:
        ``(1, K, *S)`` class probabilities (segmentation), or ``(1, K)`` (classification).
    """
    if image.ndim not in (4, 5) or image.shape[:2] != (1, 1):
        raise ValueError(f"image must have shape (1, 1, *S), got {tuple(image.shape)}")
    total = None
    for run in runs:
        logits = predict_logits(run.model, image, run.patch).float()
        p = torch.softmax(logits, dim=1)
        total = p if total is None else total + p
    return total / len(runs)


def preprocess_image(run: LoadedRun, image: Image) -> tuple[torch.Tensor, dict[str, Any]]:
    """An image read from disk, preprocessed as the run was trained.

    Returns:
        ``(1, 1, *S)`` tensor and its geometry (``shape``, ``affine``, ``spacing``, and the
        source's ``source_shape`` and ``source_affine``), as the dataset's cache records it.

    Raises:
        RunError: the image has the wrong number of dimensions for the run.
    """
    if image.ndim != run.cfg.spatial_dims:
        raise RunError(
            f"image '{image.path}' is {image.ndim}D, the run was trained on "
            f"{run.cfg.spatial_dims}D images"
        )
    settings = builders.loader_settings(run.cfg)
    pre = preprocess(
        image,
        None,
        normalisation=settings.normalisation,
        window=settings.window,
        target_spacing=settings.target_spacing,
    )
    meta = {
        "source_shape": list(image.shape),
        "source_affine": np.asarray(image.affine).tolist(),
        "shape": list(pre.image.shape),
        "affine": pre.affine.tolist(),
        "spacing": list(pre.spacing),
    }
    tensor = torch.from_numpy(np.ascontiguousarray(pre.image, dtype=np.float32))[None, None]
    return tensor, meta


def to_source_grid(probs: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """Class probabilities ``(K, *S)`` on the preprocessed grid, resampled (linearly) onto the
    source image's grid ``(K, *source_shape)``; unchanged when no resampling was done."""
    shape = tuple(int(n) for n in meta["source_shape"])
    if tuple(probs.shape[1:]) == shape:
        return probs
    return np.stack([resample(channel, shape, order=1) for channel in probs])
