"""``predict``: a trained run (or an ensemble) applied to images the project has never seen.

Each input is a NIfTI, PNG/JPEG or DICOM file, a DICOM series folder, or a folder of those
(searched recursively: a folder whose own files are DICOM is one series). Every image goes
through the run's own preprocessing (window, normalisation, resampling), the network (sliding
windows of the training patch for volumes larger than it), and back to its own grid:

- segmentation: ``<name>.nii.gz`` per image, the predicted labels with the image's affine, so
  it overlays the original in any viewer (ITK-SNAP, 3D Slicer); ``predictions.csv`` lists each
  input, its output file and the predicted volume per label in millilitres (area in mm² in 2D);
- classification: ``predictions.csv`` with the predicted class and a probability per class.

An input that cannot be read does not stop the others: the readable ones are written, then the
command fails with one message listing what could not be read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import paths
from ..data.io import (
    DICOM_SUFFIXES,
    NIFTI_SUFFIXES,
    PNG_SUFFIXES,
    ImageError,
    read_image,
    write_nifti,
)
from ..utils.errors import ProjectError
from ..utils.io import atomic_write_csv
from .inference import load_runs, preprocess_image, probabilities, to_source_grid


class PredictError(ImageError):
    """Some inputs could not be read or predicted (the message lists them)."""


def _is_dicom_name(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(DICOM_SUFFIXES) or ("." not in name and not name.startswith("."))


def _output_name(path: Path) -> str:
    name = path.name
    for suffix in (*NIFTI_SUFFIXES, *PNG_SUFFIXES, *DICOM_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return name


def find_images(inputs: Sequence[str | Path]) -> list[Path]:
    """The images named by ``inputs``: files as they are, DICOM series folders, and the images
    inside other folders (recursively), in a stable order.

    Raises:
        ImageError: an input does not exist, or no image was found at all.
    """
    found: list[Path] = []

    def walk(folder: Path) -> None:
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        if any(_is_dicom_name(p) for p in files):
            found.append(folder)  # a series; read_image names several series if there are
            return
        found.extend(p for p in files if p.name.lower().endswith((*NIFTI_SUFFIXES, *PNG_SUFFIXES)))
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            walk(sub)

    for given in inputs:
        path = paths.resolve(given)
        if not path.exists():
            raise ImageError(f"input '{path}' does not exist")
        if path.is_dir():
            walk(path)
        else:
            found.append(path)
    if not found:
        raise ImageError(
            f"no image found in {', '.join(str(i) for i in inputs)} (expected NIfTI, PNG/JPEG, "
            "DICOM files or series folders)"
        )
    return list(dict.fromkeys(found))


def predict(
    run_dir: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path | None = None,
    *,
    ensemble: Sequence[str | Path] = (),
    checkpoint: str = "best",
    quiet: bool = False,
) -> Path:
    """Predict every image of ``inputs`` and write the results under ``out``.

    Args:
        run_dir: the trained run.
        inputs: files, DICOM series folders, or folders of them.
        out: output folder (default ``RUN_DIR/predict``); created if needed. Existing files of
            the same names are replaced, others kept.
        ensemble: more runs whose probabilities are averaged with ``run_dir``'s.
        checkpoint: ``"best"`` or ``"last"``.
        quiet: no progress bar.

    Returns:
        The output folder.

    Raises:
        PredictError: some inputs could not be read (the others were written).
        ProjectError: a bad run folder, checkpoint or ensemble; no input found.
    """
    runs = load_runs(run_dir, ensemble, checkpoint)
    run = runs[0]
    images = find_images(inputs)
    folder = paths.resolve(out) if out is not None else run.run_dir / "predict"
    folder.mkdir(parents=True, exist_ok=True)
    names = run.label_names()
    rows, failed, used = [], [], set()
    for path in tqdm(images, desc="predict", disable=quiet, leave=False):
        try:
            image = read_image(path)
            tensor, meta = preprocess_image(run, image)
        except ProjectError as exc:  # unreadable, or not an image this run can take
            failed.append(str(exc))
            continue
        probs = probabilities(runs, tensor)[0].cpu().numpy()
        if run.task == "classification":
            rows.append(
                {
                    "input": str(path),
                    "prediction": names[int(probs.argmax())],
                    **{f"prob_{n}": f"{float(p):.6g}" for n, p in zip(names, probs, strict=True)},
                }
            )
            continue
        labels = (
            to_source_grid(probs, meta)
            .argmax(0)
            .astype(np.uint8 if len(names) <= 256 else np.int32)
        )
        name = _output_name(path)
        stem, count = name, 1
        while stem in used:  # two inputs of the same name from different folders
            count += 1
            stem = f"{name}-{count}"
        used.add(stem)
        target = write_nifti(labels, image.affine, folder / f"{stem}.nii.gz")
        voxel = float(np.prod(image.spacing))
        unit = 1000.0 if image.ndim == 3 else 1.0  # mm3 -> ml; mm2 stays mm2
        counts = np.bincount(labels.ravel(), minlength=len(names))
        rows.append(
            {
                "input": str(path),
                "output": target.name,
                **{
                    f"{'ml' if image.ndim == 3 else 'mm2'}_{names[k]}": f"{counts[k] * voxel / unit:.6g}"
                    for k in range(1, len(names))
                },
            }
        )
    if rows:
        atomic_write_csv(folder / "predictions.csv", rows, list(rows[0]))
    if failed:
        raise PredictError(
            f"{len(failed)} of {len(images)} inputs could not be predicted "
            f"({len(rows)} written to {folder}): " + "; ".join(failed)
        )
    return folder
