"""``predict``: a trained run (or an ensemble) applied to images the project has never seen.

Each input is a NIfTI, PNG/JPEG or DICOM file, a DICOM series folder, or a folder of those
(searched recursively: a folder whose own files are DICOM is one series). A run trained on
several channels (``image_<channel>`` manifest columns) takes one input per case instead, its
channels' files joined by commas in the run's channel order: ``t1.nii.gz,t2.nii.gz`` (all on
one grid; outputs are named after the first). Every image goes
through the run's own preprocessing (window, normalization, resampling), the network (sliding
windows of the training patch for volumes larger than it), and back to its own grid:

- segmentation: ``<name>.nii.gz`` per image, the predicted labels with the image's affine, so
  it overlays the original in any viewer (ITK-SNAP, 3D Slicer); ``predictions.csv`` lists each
  input, its output file and the predicted volume per label in millilitres (area in mm² in 2D);
- classification: ``predictions.csv`` with the predicted class and a probability per class;
- ``fmt="dicom-seg"`` (segmentation, DICOM inputs): also ``<name>.seg.dcm``, a DICOM
  Segmentation that references the source series (:mod:`.dicom_seg`), to open over the images
  in a PACS viewer or 3D Slicer.

An input that cannot be read does not stop the others: the readable ones are written, then the
command fails with one message listing what could not be read.

Inputs that ``splits.json`` lists as test cases are a use of the test set: recorded (and warned
about when other runs used it before) as :mod:`.test_use` describes.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import paths
from ..config import data_root
from ..data.io import (
    DICOM_SUFFIXES,
    NIFTI_SUFFIXES,
    PART_SEP,
    PNG_SUFFIXES,
    Image,
    ImageError,
    read_image,
    source_path,
    write_nifti,
)
from ..utils.errors import ProjectError
from ..utils.io import atomic_write_csv
from .inference import (
    LoadedRun,
    class_labels,
    label_counts,
    load_runs,
    preprocess_image,
    probabilities,
    to_source_grid,
)
from .test_use import record_test_use

FORMATS = ("nifti", "dicom-seg")


class PredictError(ImageError):
    """Some inputs could not be read or predicted (the message lists them)."""


def _is_dicom_name(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(DICOM_SUFFIXES) or ("." not in name and not name.startswith("."))


def _output_name(path: Path) -> str:
    name = path.name.replace(PART_SEP, "_")  # FOLDER::UID -> FOLDER_UID
    for suffix in (*NIFTI_SUFFIXES, *PNG_SUFFIXES, *DICOM_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return name


def geometry_only(image: Image) -> Image:
    """``image`` without its voxels: the same shape, affine, path and metadata over a
    zero-stride array of one element, for writing outputs on its grid once the voxels have
    been preprocessed into a tensor (on a 512x512x600 CT that frees 0.6 GB before inference)."""
    no_voxels = np.broadcast_to(np.zeros((), image.array.dtype), image.shape)
    return dataclasses.replace(image, array=no_voxels)


def find_images(inputs: Sequence[str | Path]) -> list[Path]:
    """The images named by ``inputs``: files as they are, and inside folders (recursively) each
    folder holding DICOM files as one series plus its NIfTI and PNG/JPEG files, in a stable
    order.

    Raises:
        ImageError: an input does not exist, or no image was found at all.
    """
    found: list[Path] = []

    def walk(folder: Path) -> None:
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        if any(_is_dicom_name(p) for p in files):
            found.append(folder)  # a series; read_image names several series if there are
        found.extend(p for p in files if p.name.lower().endswith((*NIFTI_SUFFIXES, *PNG_SUFFIXES)))
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            walk(sub)

    for given in inputs:
        path = paths.resolve(given)  # may name one series: FOLDER::SeriesInstanceUID
        if not source_path(path).exists():
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


def channel_groups(inputs: Sequence[str | Path], channels: Sequence[str]) -> list[list[Path]]:
    """The cases of a multi-channel run's inputs: each input is one case, its channels' files
    joined by commas in the run's channel order (``t1.nii.gz,t2.nii.gz``).

    Args:
        inputs: one comma-joined group per case.
        channels: the run's channel names (:attr:`.inference.LoadedRun.channels`).

    Returns:
        Per case, one path per channel.

    Raises:
        ImageError: an input has another number of files than the run has channels, or a file
            does not exist.
    """
    groups = []
    for given in inputs:
        parts = [p.strip() for p in str(given).split(",")]
        if len(parts) != len(channels) or not all(parts):
            raise ImageError(
                f"input '{given}' names {len(parts)} file(s); the run takes {len(channels)} "
                f"channels: give each case as {','.join(f'{c.upper()}_FILE' for c in channels)}"
            )
        group = [paths.resolve(p) for p in parts]
        for path in group:
            if not source_path(path).exists():
                raise ImageError(f"input '{path}' does not exist")
        groups.append(group)
    return groups


def test_images(run: LoadedRun, images: Sequence[Path]) -> list[Path]:
    """The images among ``images`` that the run's ``splits.json`` holds out as test cases.

    Args:
        run: the run whose dataset (``data.root``) defines the test set.
        images: image files or DICOM series folders.

    Returns:
        Those that are the image of a test case (compared as resolved paths); none when the
        dataset has no readable splits or no test set.
    """
    from ..data.split import test_cases

    try:
        held_out = {Path(c.image).resolve() for c in test_cases(data_root(run.cfg), run.task)}
    except ProjectError:
        return []
    return [image for image in images if Path(image).resolve() in held_out]


def predict(
    run_dir: str | Path,
    inputs: Sequence[str | Path],
    out: str | Path | None = None,
    *,
    ensemble: Sequence[str | Path] = (),
    checkpoint: str = "best",
    quiet: bool = False,
    fmt: str = "nifti",
) -> Path:
    """Predict every image of ``inputs`` and write the results under ``out``.

    Args:
        run_dir: the trained run.
        inputs: files, DICOM series folders, or folders of them; for a multi-channel run,
            one input per case, its channels' files joined by commas in the run's channel
            order (:func:`channel_groups`).
        out: output folder (default ``RUN_DIR/predict``); created if needed. Existing files of
            the same names are replaced, others kept.
        ensemble: more runs whose probabilities are averaged with ``run_dir``'s.
        checkpoint: ``"best"`` or ``"last"``.
        quiet: no progress bar.
        fmt: ``"nifti"``, or ``"dicom-seg"`` for a DICOM SEG beside each NIfTI mask
            (segmentation runs, DICOM inputs, highdicom installed).

    Returns:
        The output folder.

    Raises:
        ValueError: an unknown ``fmt``.
        DicomSegError: ``dicom-seg`` for a classification run, non-DICOM inputs, or highdicom
            missing; checked before anything is predicted.
        PredictError: some inputs could not be read (the others were written).
        ProjectError: a bad run folder, checkpoint or ensemble; no input found.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}, got {fmt!r}")
    runs = load_runs(run_dir, ensemble, checkpoint)
    run = runs[0]
    if run.in_channels > 1:
        groups = channel_groups(inputs, run.channels)
    else:
        groups = [[path] for path in find_images(inputs)]
    images = [group[0] for group in groups]  # outputs are named after the first channel
    if fmt == "dicom-seg":
        _check_dicom_seg(run, images)
    folder = paths.resolve(out) if out is not None else run.run_dir / "predict"
    folder.mkdir(parents=True, exist_ok=True)
    rows, failed, used = [], [], set()
    for group in tqdm(groups, desc="predict", disable=quiet, leave=False):
        try:
            image = read_image(group[0])
            tensor, meta = preprocess_image(run, [image, *map(read_image, group[1:])])
        except ProjectError as exc:  # unreadable, or not an image this run can take
            failed.append(str(exc))
            continue
        image = geometry_only(image)  # the voxels live on in the tensor: one volume less
        probs = probabilities(runs, tensor)[0].cpu().numpy()
        del tensor  # the input is not needed any more: a whole volume's worth of memory
        if run.task == "classification":
            rows.append(_classification_row(group, probs, run.label_names()))
            continue
        labels = class_labels(to_source_grid(probs, meta))  # uint8: 1 byte a voxel
        del probs
        stem = _unique_stem(_output_name(group[0]), used)
        rows.append(_write_segmentation(run, group, image, labels, folder, stem, fmt))
    if rows:
        atomic_write_csv(folder / "predictions.csv", rows, list(rows[0]))
    _record_test_images(runs, images, checkpoint, folder)
    if failed:
        raise PredictError(
            f"{len(failed)} of {len(images)} inputs could not be predicted "
            f"({len(rows)} written to {folder}): " + "; ".join(failed)
        )
    return folder


def _check_dicom_seg(run: LoadedRun, images: Sequence[Path]) -> None:
    """Refuse ``--format dicom-seg`` before predicting anything, unless it can be written."""
    from .dicom_seg import DicomSegError, check_dicom_inputs

    if run.task != "segmentation":
        raise DicomSegError(
            f"--format dicom-seg writes segmentation masks; '{run.run_dir.name}' is a "
            f"{run.task} run"
        )
    check_dicom_inputs(images)


def _classification_row(group: Sequence[Path], probs: np.ndarray, names: list[str]) -> dict:
    """The ``predictions.csv`` row of one case: the class and a probability per class."""
    return {
        "input": ",".join(map(str, group)),
        "prediction": names[int(probs.argmax())],
        **{f"prob_{n}": f"{float(p):.6g}" for n, p in zip(names, probs, strict=True)},
    }


def _unique_stem(name: str, used: set[str]) -> str:
    """``name``, or ``name-2``, ``name-3``, ... when inputs of the same name came from different
    folders; recorded in ``used``."""
    stem, count = name, 1
    while stem in used:
        count += 1
        stem = f"{name}-{count}"
    used.add(stem)
    return stem


def _write_segmentation(
    run: LoadedRun,
    group: Sequence[Path],
    image: Image,
    labels: np.ndarray,
    folder: Path,
    stem: str,
    fmt: str,
) -> dict[str, str]:
    """Write one case's mask (and DICOM SEG); return its ``predictions.csv`` row with the
    predicted volume per label (ml in 3D, mm² in 2D)."""
    names = run.label_names()
    # the input's own qform/sform and codes (NIfTI), so ITK-based viewers overlay it exactly
    target = write_nifti(labels, image.affine, folder / f"{stem}.nii.gz", header=image.meta)
    extra = {}
    if fmt == "dicom-seg":
        from .dicom_seg import write_dicom_seg

        seg = write_dicom_seg(
            labels,
            group[0],
            folder / f"{stem}.seg.dcm",
            names,
            series_uid=image.meta.get("series_uid") or None,
        )
        extra = {"dicom_seg": seg.name}
    voxel = float(np.prod(image.spacing))
    unit, column = (1000.0, "ml") if image.ndim == 3 else (1.0, "mm2")  # mm3 -> ml
    counts = label_counts(labels, len(names))
    return {
        "input": ",".join(map(str, group)),
        "output": target.name,
        **extra,
        **{f"{column}_{names[k]}": f"{counts[k] * voxel / unit:.6g}" for k in range(1, len(names))},
    }


def _record_test_images(
    runs: Sequence[LoadedRun], images: Sequence[Path], checkpoint: str, folder: Path
) -> None:
    """Inputs that ``splits.json`` lists as test cases are a use of the test set: record it."""
    run = runs[0]
    tested = test_images(run, images)
    if not tested:
        return
    print(
        f"note: {len(tested)} of the {len(images)} inputs are test cases of splits.json: "
        "recorded as a use of the test set",
        file=sys.stderr,
    )
    record_test_use(
        "predict",
        [r.run_dir for r in runs],
        str(run.cfg.data.root),
        {"checkpoint": checkpoint, "test_images": len(tested), "out": str(folder)},
        echo=lambda line: print(line, file=sys.stderr),
    )
