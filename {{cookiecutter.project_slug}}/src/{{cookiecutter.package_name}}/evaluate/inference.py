"""A trained run, loaded and applied: what ``evaluate``, ``predict`` and ``explain`` share.

:func:`load_run` rebuilds the network of a run folder from its ``config.yaml`` and a checkpoint
(read with ``weights_only=True``); :func:`load_runs` does it for an ensemble and checks that its
members agree on task, classes and preprocessing. :func:`probabilities` applies one or several
networks to a whole image (sliding windows of the training patch for segmentation) and averages
their softmax outputs; :func:`to_source_grid` puts a segmentation back on the image's own grid
and :func:`class_labels` takes the most probable class of each voxel.

Memory: a whole volume of ``V`` voxels and ``K`` classes needs about ``4 V`` bytes for the
input, ``4 K V`` for the stitched logits and ``4 V`` for MONAI's window-count map while the
windows run (16 bytes a voxel for ``K = 2``: 2.5 GB for a 512x512x600 CT); the softmax and the
labels are then computed in place and slab by slab, adding about one byte a voxel (uint8 labels)
instead of the three or four more float copies a plain ``softmax(logits / T).argmax()`` makes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from .. import paths
from ..config import Config, data_root, load_config
from ..data.dataset import MedicalDataset, check_channel
from ..data.from_config import dataset, loader_settings
from ..data.io import Image
from ..data.manifest import Case, DataError, label_names
from ..data.preprocess import preprocess, to_source
from ..data.split import fold_cases, test_cases
from ..models.from_config import build
from ..models.sliding_window import predict_logits
from ..runs.checkpoint import load_checkpoint
from ..runs.folder import CHECKPOINT_NAMES, checkpoint_path, config_path
from ..utils.errors import ProjectError

SPLITS = ("val", "test")
CHECKPOINTS = CHECKPOINT_NAMES
SLAB_VOXELS = 1 << 22  # voxels per class handled at once by the in-place softmax and argmax


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
        temperature: the softmax temperature (classification with ``eval.calibrate=temperature``:
            fitted on the validation cases and stored in ``calibration.json``; 1 otherwise).
        channels: the input channels' names in order (the manifest's ``image_<channel>``
            columns), ``["image"]`` for one channel (and for checkpoints older than channels).
    """

    run_dir: Path
    cfg: Config
    model: nn.Module
    classes: list[str] | None
    num_classes: int
    epoch: int
    checkpoint: Path
    temperature: float = 1.0
    channels: list[str] = field(default_factory=lambda: ["image"])

    @property
    def in_channels(self) -> int:
        """Channels of the network's input."""
        return len(self.channels)

    @property
    def task(self) -> str:
        return self.cfg.task

    @property
    def patch(self) -> tuple[int, ...] | None:
        """The sliding-window size (the training patch) for segmentation, else ``None``."""
        return tuple(self.cfg.data.patch_size) if self.task == "segmentation" else None

    def label_names(self) -> list[str]:
        """A name per output channel: the classes; for segmentation the names of
        ``data.labels`` or ``manifest.json`` (:func:`~..data.manifest.label_names`), else
        ``background``, ``1``, ``2``... .

        Raises:
            DataError: ``data.labels`` names fewer labels than the run predicts.
        """
        if self.classes is not None:
            return list(self.classes)
        named = label_names(data_root(self.cfg), self.num_classes, self.cfg.data.labels)
        return named or ["background"] + [str(k) for k in range(1, self.num_classes)]


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
    config = config_path(run_dir)
    if not config.is_file():
        raise RunError(f"'{run_dir}' is not a run folder: it has no config.yaml")
    path = checkpoint_path(run_dir, checkpoint)
    if not path.is_file():
        raise RunError(
            f"'{path}' does not exist: the run has not finished an epoch (train --resume it)"
        )
    cfg = load_config(path=config)
    if "orientation" not in (yaml.safe_load(config.read_text(encoding="utf-8")).get("data") or {}):
        # a run from before data.orientation was trained on each file's own axes
        cfg = replace(cfg, data=replace(cfg.data, orientation="none"))
    state = load_checkpoint(path)
    num_classes = int(state["num_classes"])
    channels = [str(c) for c in state.get("channels") or ["image"]]  # older checkpoints: one
    model = build(cfg, num_classes, len(channels))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise RunError(
            f"'{path}' does not fit the network of '{config}' (was the config edited?): "
            f"{str(exc).splitlines()[0]}"
        ) from None
    model.to(device).eval()
    classes = [str(c) for c in state.get("classes") or []] or None
    run = LoadedRun(run_dir, cfg, model, classes, num_classes, int(state["epoch"]) + 1, path)
    run.channels = channels
    if cfg.task == "classification" and cfg.eval.calibrate == "temperature":
        fitted = stored_temperature(run)
        run.temperature = fitted if fitted is not None else 1.0
    return run


CALIBRATION = "calibration.json"  # the fitted temperature, per checkpoint


def stored_temperature(run: LoadedRun) -> float | None:
    """The temperature stored in ``RUN_DIR/calibration.json`` for this run's checkpoint and
    epoch; ``None`` when there is none (not fitted yet, or fitted for another checkpoint)."""
    import json

    try:
        data = json.loads((run.run_dir / CALIBRATION).read_text(encoding="utf-8"))
        entry = data[run.checkpoint.stem]
        if int(entry["epoch"]) != run.epoch:
            return None
        value = float(entry["temperature"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return value if value > 0 else None


def load_runs(
    run_dir: str | Path,
    ensemble: Sequence[str | Path] = (),
    checkpoint: str = "best",
    device: str | torch.device = "cpu",
) -> list[LoadedRun]:
    """``run_dir`` and the runs of ``ensemble``, checked to be combinable.

    Members must share the task, dimensions, classes and preprocessing (intensity window,
    normalization, target spacing), since one preprocessed image goes through all of them.

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
            ("channels", lambda r: r.channels),
            ("preprocessing", lambda r: loader_settings(r.cfg).preprocessing()),
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
    root = data_root(run.cfg)
    if split == "test":
        return test_cases(root, run.task)
    return fold_cases(root, run.task, run.cfg.data.fold)[1]


def eval_dataset(run: LoadedRun, cases: Sequence[Case]) -> MedicalDataset:
    """``cases`` with the run's preprocessing, as whole images, without augmentation."""
    if not cases:
        raise DataError("no cases to evaluate")
    return dataset(run.cfg, list(cases), run.classes, train=False)


@torch.no_grad()
def probabilities(runs: Sequence[LoadedRun], image: torch.Tensor) -> torch.Tensor:
    """The mean softmax output of ``runs`` on one whole image.

    Args:
        runs: one run, or the members of an ensemble.
        image: ``(1, C, *S)`` preprocessed image (``C`` the runs' channels), on the runs'
            device.

    Returns:
        ``(1, K, *S)`` class probabilities (segmentation), or ``(1, K)`` (classification); each
        run's logits are divided by its ``temperature`` (1 unless calibrated) before the softmax.
    """
    if image.ndim not in (4, 5) or image.shape[0] != 1:  # the networks check C themselves
        raise ValueError(f"image must have shape (1, C, *S), got {tuple(image.shape)}")
    total = None
    for run in runs:
        p = softmax_(predict_logits(run.model, image, run.patch).float(), run.temperature)
        if total is None:
            total = p
        else:
            total.add_(p)
            del p
    if len(runs) > 1:
        total.div_(len(runs))
    return total


def _slabs(size: int, per_index: int) -> list[slice]:
    """Slices of ``range(size)`` that each cover about :data:`SLAB_VOXELS` voxels."""
    step = max(1, SLAB_VOXELS // max(1, per_index))
    return [slice(start, start + step) for start in range(0, size, step)]


def softmax_(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``softmax(logits / temperature)`` over dim 1, written into ``logits`` slab by slab.

    The same values as :func:`torch.softmax` (up to rounding), without its full-size copies:
    the extra memory is that of one slab along the last axis (:data:`SLAB_VOXELS` voxels).

    Args:
        logits: ``(B, K, *S)`` or ``(B, K)`` floating-point logits; overwritten.
        temperature: positive divisor of the logits.

    Returns:
        ``logits``, now holding the probabilities.

    Raises:
        ValueError: ``temperature`` is not positive, or ``logits`` has fewer than 2 dims.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if logits.ndim < 2:
        raise ValueError(f"logits must have shape (B, K, ...), got {tuple(logits.shape)}")
    whole = logits.ndim == 2  # (B, K): nothing to slice
    for slab in [slice(None)] if whole else _slabs(logits.shape[-1], logits[..., :1].numel()):
        part = logits[..., slab]
        if temperature != 1:
            part.div_(temperature)
        part.sub_(part.amax(dim=1, keepdim=True)).exp_()
        part.div_(part.sum(dim=1, keepdim=True))
    return logits


def class_labels(probs: np.ndarray) -> np.ndarray:
    """The most probable class of each voxel (``probs.argmax(0)``), as compact integers.

    Computed slab by slab along the last axis, so the only full-size result is the labels
    themselves (1 byte a voxel) rather than ``argmax``'s 8-byte integers. Ties go to the lower
    class, as with ``argmax``.

    Args:
        probs: ``(K, *S)`` class probabilities (or scores).

    Returns:
        ``(*S)`` labels, ``uint8`` for up to 256 classes, else ``int32``.

    Raises:
        ValueError: ``probs`` has fewer than 2 dimensions.
    """
    if probs.ndim < 2:
        raise ValueError(f"probs must have shape (K, *S), got {probs.shape}")
    out = np.empty(probs.shape[1:], np.uint8 if probs.shape[0] <= 256 else np.int32)
    for slab in _slabs(probs.shape[-1], probs[..., :1].size):
        out[..., slab] = probs[..., slab].argmax(0)
    return out


def label_counts(labels: np.ndarray, classes: int) -> np.ndarray:
    """Voxels per label value (``np.bincount(labels.ravel(), minlength=classes)``).

    Counted slab by slab along the last axis: ``bincount`` converts its input to 8-byte
    integers, which for a whole 512x512x600 volume would be a 1.3 GB temporary.

    Args:
        labels: ``(*S)`` non-negative integer labels, each below ``classes``.
        classes: the number of label values (the length of the result).

    Returns:
        ``(classes,)`` int64 counts.

    Raises:
        ValueError: a label is ``classes`` or more.
    """
    counts = np.zeros(classes, np.int64)
    for slab in _slabs(labels.shape[-1], labels[..., :1].size):
        part = np.bincount(labels[..., slab].ravel(), minlength=classes)
        if part.size > classes:
            raise ValueError(f"labels must be below {classes}, found {part.size - 1}")
        counts += part
    return counts


def preprocess_image(
    run: LoadedRun, image: Image | Sequence[Image]
) -> tuple[torch.Tensor, dict[str, Any]]:
    """An image read from disk, preprocessed as the run was trained.

    Args:
        run: the run whose preprocessing to apply.
        image: the image, or for a multi-channel run one image per channel in the run's
            channel order (:attr:`LoadedRun.channels`), all on one grid; each channel is
            normalized on its own, as in training.

    Returns:
        ``(1, C, *S)`` tensor and its geometry (``shape``, ``affine``, ``spacing``, and the
        source's ``source_shape`` and ``source_affine``, those of the first channel), as the
        dataset's cache records it.

    Raises:
        RunError: the image has the wrong number of dimensions, or not one image per channel
            of the run.
        ImageError: the channels do not share one grid.
    """
    images = [image] if isinstance(image, Image) else list(image)
    if len(images) != run.in_channels:
        raise RunError(
            f"the run was trained on {run.in_channels} channels ({', '.join(run.channels)}), "
            f"got {len(images)} image(s)"
        )
    image = images[0]
    for name, other in zip(run.channels[1:], images[1:], strict=True):
        check_channel(other, image, f"channel '{name}'", run.channels[0])
    if image.ndim != run.cfg.spatial_dims:
        raise RunError(
            f"image '{image.path}' is {image.ndim}D, the run was trained on "
            f"{run.cfg.spatial_dims}D images"
        )
    settings = loader_settings(run.cfg)
    pre = preprocess(
        image,
        None,
        normalization=settings.normalization,
        window=settings.window,
        target_spacing=settings.target_spacing,
        orientation=settings.orientation,
    )
    meta = pre.geometry(image)
    stacked = [pre.image] + [
        preprocess(
            other,
            None,
            normalization=settings.normalization,
            window=settings.window,
            target_spacing=settings.target_spacing,
            orientation=settings.orientation,
        ).image
        for other in images[1:]
    ]
    tensor = torch.from_numpy(np.ascontiguousarray(np.stack(stacked), dtype=np.float32))[None]
    return tensor, meta


def to_source_grid(probs: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """Class probabilities ``(K, *S)`` on the preprocessed grid, resampled (linearly) onto the
    source image's grid and axes ``(K, *source_shape)`` (:func:`..data.preprocess.to_source`);
    unchanged when the grid is the source's."""
    return to_source(probs, meta)
