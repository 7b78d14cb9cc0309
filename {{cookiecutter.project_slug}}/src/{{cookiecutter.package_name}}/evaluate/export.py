"""``export``: a run (or an ensemble) as a file that other tools run without this project.

``export RUN_DIR --format torchscript|onnx [--ensemble RUN_DIR ...]`` writes
``RUN_DIR/export/model.ts`` (TorchScript, by tracing) or ``RUN_DIR/export/model.onnx`` (ONNX, by
``torch.onnx``), each with its metadata beside it (``model.ts.json``, ``model.onnx.json``). The exported graph takes the
*preprocessed* image ``(batch, 1, X, Y[, Z])`` (float32) and returns the class probabilities:
the softmax of each member's logits divided by its temperature, averaged over the members, as
``evaluate`` and ``predict`` compute them. What it needs around it travels with it, in the
metadata (also stored inside the file: TorchScript's ``metadata.json`` extra file, ONNX's
``metadata_props``): the preprocessing constants (normalization, CT window, target spacing), the
class names and the positive class, the temperatures, and for segmentation the sliding-window
patch, overlap and blending with which volumes larger than the patch are predicted.

The export is checked before it is kept: it is run on validation cases (segmentation: the
central patch of each), and its outputs are compared with PyTorch's; the largest absolute
difference is printed and recorded, and above ``tolerance`` the export is an error. ONNX needs
the optional extra: ``pip install -e ".[export]"`` (onnx, onnxruntime).
"""

from __future__ import annotations

import json
import shutil
import uuid
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.from_config import loader_settings
from ..utils.errors import ProjectError
from ..utils.io import atomic_write_text, replace_folder
from .inference import LoadedRun, eval_dataset, load_runs, split_cases

FORMATS = ("torchscript", "onnx")
FILES = {"torchscript": "model.ts", "onnx": "model.onnx"}
TOLERANCE = 1e-4  # largest accepted |exported - PyTorch| of a probability
CHECK_CASES = 4  # validation cases the export is checked on
OPSET = 17
EXTRA = 'pip install -e ".[export]"'


class ExportError(ProjectError):
    """The model cannot be exported, or the export does not reproduce PyTorch's outputs."""


class Probabilities(nn.Module):
    """The mean of the members' ``softmax(logits / temperature)``: what gets exported.

    Args:
        models: the networks, in eval mode.
        temperatures: one per network (1 when not calibrated).
    """

    def __init__(self, models: Sequence[nn.Module], temperatures: Sequence[float]) -> None:
        super().__init__()
        if len(models) != len(temperatures) or not models:
            raise ValueError("need one temperature per model, and at least one model")
        self.members = nn.ModuleList(models)
        self.temperatures = [float(t) for t in temperatures]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        total = torch.softmax(self.members[0](image).float() / self.temperatures[0], dim=1)
        for member, temperature in zip(self.members[1:], self.temperatures[1:], strict=True):
            total = total + torch.softmax(member(image).float() / temperature, dim=1)
        return total / len(self.members)


@dataclass
class ExportResult:
    """Where the export went and how closely it reproduces PyTorch."""

    path: Path
    metadata: Path
    max_difference: float
    cases: int


def central_patch(image: torch.Tensor, patch: Sequence[int]) -> torch.Tensor:
    """The central ``patch`` of ``image`` ``(1, C, *S)``, zero-padded where the image is smaller."""
    out = image
    for axis, size in enumerate(patch, start=2):
        length = out.shape[axis]
        if length > size:
            start = (length - size) // 2
            out = out.narrow(axis, start, size)
        elif length < size:
            pad = [0, 0] * (out.ndim - 2)
            index = 2 * (out.ndim - 1 - axis)
            pad[index], pad[index + 1] = (size - length) // 2, size - length - (size - length) // 2
            out = torch.nn.functional.pad(out, pad)
    return out.contiguous()


def check_inputs(runs: Sequence[LoadedRun], n_cases: int = CHECK_CASES) -> list[torch.Tensor]:
    """Preprocessed validation images (segmentation: their central training patch).

    Raises:
        DataError: the run's splits cannot be read.
    """
    run = runs[0]
    cases = split_cases(run, "val")[: max(1, int(n_cases))]
    dataset = eval_dataset(run, cases)
    inputs = []
    for index in range(len(dataset)):
        image = dataset[index]["image"][None].float()
        if run.patch is not None:
            image = central_patch(image, run.patch)
        inputs.append(image)
    return inputs


def metadata(runs: Sequence[LoadedRun], fmt: str) -> dict[str, Any]:
    """What a consumer of the exported file needs: preprocessing, classes, inference settings."""
    run = runs[0]
    cfg = run.cfg
    data: dict[str, Any] = {
        "format": fmt,
        "task": run.task,
        "spatial_dims": cfg.spatial_dims,
        "classes": run.label_names(),
        "positive_class": cfg.data.positive_class or None,
        "input": "preprocessed image, float32, shape (batch, 1, X, Y[, Z]) in the image's voxel "
        "order (X, Y, Z as stored in NIfTI), after resampling to the target spacing",
        "output": "class probabilities, shape (batch, K[, X, Y, Z]): the mean over the runs of "
        "softmax(logits / temperature)",
        "preprocessing": loader_settings(cfg).preprocessing(),
        "temperatures": [r.temperature for r in runs],
        "runs": [r.run_dir.name for r in runs],
        "checkpoint": run.checkpoint.name,
        "epochs": [r.epoch for r in runs],
    }
    data["preprocessing"].pop("foreground_points", None)  # a cache detail, not preprocessing
    if run.patch is not None:
        data["sliding_window"] = {
            "patch": list(run.patch),
            "overlap": 0.25,
            "blend": "gaussian",
            "note": "volumes larger than the patch are predicted window by window",
        }
    return data


@contextmanager
def _quiet() -> Iterator[None]:
    """Tracing warns about every shape-dependent branch and about deprecations; the export is
    checked against PyTorch instead, and its input shape is recorded in the metadata."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _torchscript(model: nn.Module, example: torch.Tensor, path: Path, meta: str):
    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={"metadata.json": meta})
        loaded = torch.jit.load(str(path))
    return lambda x: loaded(x).detach().numpy()


def _onnx(model: nn.Module, example: torch.Tensor, path: Path, meta: str):
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise ExportError(f"ONNX export needs onnx and onnxruntime: {EXTRA}") from None
    with _quiet(), torch.no_grad():
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=["image"],
            output_names=["probabilities"],
            dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "metadata.json", meta
    onnx.save(proto, str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"image": x.numpy()})[0]


def export_run(
    run_dir: str | Path,
    fmt: str,
    *,
    ensemble: Sequence[str | Path] = (),
    checkpoint: str = "best",
    tolerance: float = TOLERANCE,
    cases: int = CHECK_CASES,
) -> ExportResult:
    """Export a run (or an ensemble) and check it against PyTorch on validation cases.

    Args:
        run_dir: the run; the export goes to ``RUN_DIR/export/``.
        fmt: ``"torchscript"`` or ``"onnx"``.
        ensemble: more runs whose probabilities are averaged with ``run_dir``'s.
        checkpoint: ``"best"`` or ``"last"``.
        tolerance: the largest accepted absolute difference of a probability.
        cases: validation cases to check on.

    Returns:
        The :class:`ExportResult`.

    Raises:
        ValueError: an unknown format.
        ExportError: the optional extra is missing, tracing fails, or the outputs differ from
            PyTorch's by more than ``tolerance`` (nothing is kept then).
        ProjectError: a bad run folder, checkpoint or ensemble.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    runs = load_runs(run_dir, ensemble, checkpoint)
    model = Probabilities([r.model for r in runs], [r.temperature for r in runs]).eval()
    inputs = check_inputs(runs, cases)
    meta = metadata(runs, fmt)
    meta["input_shape"] = [None, *inputs[0].shape[1:]]
    meta["input_note"] = "traced at this shape (None: any batch size): feed images of it " + (
        "(the training patch: slide it over larger volumes)"
        if runs[0].patch
        else "(resample or pad other sizes)"
    )
    out = runs[0].run_dir / "export"
    staging = out.with_name(f".export.{uuid.uuid4().hex}.tmp")
    staging.mkdir(parents=True)
    try:
        path = staging / FILES[fmt]
        text = json.dumps(meta, indent=2)
        try:
            run = (_torchscript if fmt == "torchscript" else _onnx)(model, inputs[0], path, text)
        except ExportError:
            raise
        except Exception as exc:  # tracing/ONNX conversion of an unsupported operation
            raise ExportError(
                f"could not export '{runs[0].run_dir.name}' as {fmt}: "
                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from None
        difference = 0.0
        with torch.no_grad():
            for image in inputs:
                expected = model(image).numpy()
                got = np.asarray(run(image))
                if got.shape != expected.shape:
                    raise ExportError(
                        f"the {fmt} export gives shape {got.shape}, PyTorch {expected.shape}"
                    )
                difference = max(difference, float(np.max(np.abs(got - expected))))
        if not difference <= tolerance:
            raise ExportError(
                f"the {fmt} export differs from PyTorch by up to {difference:.3g} on "
                f"{len(inputs)} validation cases (tolerance {tolerance:g}); nothing was written"
            )
        meta["check"] = {
            "cases": len(inputs),
            "max_abs_difference": difference,
            "tolerance": tolerance,
            "on": "validation cases" + (" (central patch)" if runs[0].patch else ""),
        }
        atomic_write_text(staging / f"{FILES[fmt]}.json", json.dumps(meta, indent=2) + "\n")
        if out.exists():  # keep the other format's files
            for other in out.iterdir():
                if not other.name.startswith(FILES[fmt]) and other.is_file():
                    shutil.copy2(other, staging / other.name)
        replace_folder(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(out / FILES[fmt], out / f"{FILES[fmt]}.json", difference, len(inputs))
