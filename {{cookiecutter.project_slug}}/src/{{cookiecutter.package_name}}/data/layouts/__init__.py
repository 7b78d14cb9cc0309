"""Build ``manifest.csv`` from a dataset as it was downloaded or exported: the ``manifest`` command.

One module per layout, each with a ``scan(src, **options) -> Found``:

- :mod:`.decathlon`: Medical Segmentation Decathlon and nnU-Net raw data (``dataset.json``,
  ``imagesTr/``, ``labelsTr/``, ``imagesTs/``). Channel files ``case_0000.nii.gz``,
  ``case_0001.nii.gz``, ... and 4D Decathlon images become one multi-channel case with
  ``image_<channel>`` columns named from ``dataset.json`` (a 4D file's channel ``k`` is written
  ``file.nii.gz::k``).
- :mod:`.dicom`: a folder of DICOM files at any nesting; one case per series, grouped by
  ``PatientID`` / ``StudyInstanceUID`` / ``SeriesInstanceUID``; ``patient_id`` is the
  ``PatientID``. A series that shares its folder with others is named ``folder::SeriesUID``.
  Series that cannot be one volume (mixed orientations, irregular gaps) are skipped and listed.
- :mod:`.bids`: ``sub-*/[ses-*/]anat/*_T1w.nii.gz``, masks from ``derivatives/``; the patient is
  the subject.
- :mod:`.table`: a CSV of image paths and class labels (classification).
- :mod:`.folders`: one sub-folder per class (``normal/``, ``nodule/``), classification.

Where a layout knows no patient, every case becomes its own patient and the summary says so
loudly (two scans of one patient would then leak across a split); ``patient_regex`` derives it
from each image's path instead. Beside ``manifest.csv``, ``manifest.json`` records the layout,
the channel names and modalities, the label names and every guess made, for later steps.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...utils.io import atomic_write_text
from ..io import source_path
from ..manifest import Case, DataError, write_manifest

LAYOUTS = ("decathlon", "nnunet", "dicom", "bids", "csv", "folders")
SIDECAR = "manifest.json"


@dataclass
class Found:
    """What a layout's scan found.

    Attributes:
        layout: the layout's name (one of :data:`LAYOUTS`).
        task: ``segmentation`` or ``classification``.
        cases: the rows; ``patient_id`` is ``""`` where the layout knows none.
        notes: what was found and guessed, one line each, for the user.
        skipped: what was left out and why, one line each.
        info: facts for later steps (channel names, modalities, labels), kept in
            ``manifest.json``.
    """

    layout: str
    task: str
    cases: list[Case]
    notes: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def detect_layout(src: Path) -> tuple[str, str]:
    """Guess the layout of ``src``; returns ``(layout, why)``.

    Raises:
        DataError: ``src`` does not exist or matches no layout.
    """
    from ..io import DICOM_SUFFIXES, NIFTI_SUFFIXES, PNG_SUFFIXES

    if not src.exists():
        raise DataError(f"'{src}' does not exist")
    if src.is_file():
        if src.suffix.lower() in (".csv", ".tsv"):
            return "csv", f"{src.name} is a table"
        raise DataError(f"'{src}' is a file: expected a folder or a .csv table")
    if (src / "dataset.json").is_file() or (src / "imagesTr").is_dir():
        from .decathlon import is_nnunet

        layout = "nnunet" if is_nnunet(src) else "decathlon"
        return layout, "dataset.json / imagesTr/ found"
    if any(p.is_dir() for p in src.glob("sub-*")):
        return "bids", "sub-* folders found"
    subdirs = [p for p in src.iterdir() if p.is_dir() and not p.name.startswith(".")]
    images = (*NIFTI_SUFFIXES, *PNG_SUFFIXES)
    if len(subdirs) >= 2 and all(
        any(f.name.lower().endswith(images) for f in d.iterdir()) for d in subdirs
    ):
        return "folders", f"{len(subdirs)} sub-folders of images, taken as classes"
    for file in src.rglob("*"):
        if file.is_file() and (file.suffix.lower() in DICOM_SUFFIXES or _has_dicom_magic(file)):
            return "dicom", f"DICOM files found (e.g. {file.relative_to(src)})"
    raise DataError(
        f"'{src}': cannot tell its layout (no dataset.json, imagesTr/, sub-*/, class "
        f"folders or DICOM files); name it with --layout {'|'.join(LAYOUTS)}"
    )


def _has_dicom_magic(file: Path) -> bool:
    try:
        with open(file, "rb") as handle:
            return handle.read(132)[128:] == b"DICM"
    except OSError:
        return False


def derive_patients(found: Found, src: Path, patient_regex: str | None) -> None:
    """Fill each case's ``patient_id``: from ``patient_regex`` (its first group, else the whole
    match, searched in the image path relative to ``src``), else the case itself (said loudly).

    Raises:
        DataError: the regex is invalid or does not match an image path.
    """
    if patient_regex:
        try:
            pattern = re.compile(patient_regex)
        except re.error as exc:
            raise DataError(
                f"--patient-regex '{patient_regex}' is not a valid regex: {exc}"
            ) from None
        for case in found.cases:
            image = source_path(case.image)
            text = image.relative_to(src).as_posix() if image.is_relative_to(src) else str(image)
            match = pattern.search(text)
            if match is None:
                raise DataError(f"--patient-regex '{patient_regex}' does not match '{text}'")
            case.patient_id = match.group(1) if pattern.groups else match.group(0)
        patients = len({c.patient_id for c in found.cases})
        found.notes.append(
            f"patient_id from --patient-regex '{patient_regex}': {patients} patients for "
            f"{len(found.cases)} cases"
        )
        return
    unknown = [c for c in found.cases if not c.patient_id]
    for case in unknown:
        case.patient_id = case.case_id
    if unknown:
        found.notes.append(
            f"WARNING: no patient id found for {len(unknown)} of {len(found.cases)} cases: each "
            "is taken as its own patient. If a patient has several scans, they can land in both "
            "training and test (a leak): give --patient-regex RE to derive the patient from the "
            "file names, or fill the patient_id column by hand"
        )


def build_manifest(
    src: str | Path,
    out: str | Path,
    *,
    layout: str = "auto",
    patient_regex: str | None = None,
    series_rule: str = "all",
) -> tuple[Path, Found]:
    """Scan ``src`` in ``layout`` and write ``out/manifest.csv`` and ``out/manifest.json``.

    Args:
        src: the dataset folder (or CSV table).
        out: the folder of the manifest; image paths are relative to it when inside it,
            absolute otherwise.
        layout: ``auto`` or one of :data:`LAYOUTS`.
        patient_regex: derive ``patient_id`` from image paths (first group or whole match).
        series_rule: DICOM only: which series of a study to keep (see :func:`.dicom.scan`).

    Returns:
        The manifest's path and what was found.

    Raises:
        ValueError: an unknown layout.
        DataError: nothing usable found, or the layout does not fit ``src``.
    """
    src, out = Path(src).resolve(), Path(out).resolve()
    if layout == "auto":
        layout, why = detect_layout(src)
        guess = f"layout: {layout} (guessed: {why}; override with --layout)"
    elif layout in LAYOUTS:
        if not src.exists():
            raise DataError(f"'{src}' does not exist")
        guess = f"layout: {layout}"
    else:
        raise ValueError(f"layout must be auto or one of {', '.join(LAYOUTS)}, got {layout!r}")
    if layout in ("decathlon", "nnunet"):
        from .decathlon import scan

        found = scan(src, layout)
    elif layout == "dicom":
        from .dicom import scan

        found = scan(src, series_rule=series_rule)
    elif layout == "bids":
        from .bids import scan

        found = scan(src)
    elif layout == "csv":
        from .table import scan

        found = scan(src)
    else:
        from .folders import scan

        found = scan(src)
    found.notes.insert(0, guess)
    if not found.cases:
        raise DataError(
            f"'{src}': no usable case found as {layout}"
            + (f" ({len(found.skipped)} skipped: {found.skipped[0]})" if found.skipped else "")
        )
    derive_patients(found, src, patient_regex)
    ids = [c.case_id for c in found.cases]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise DataError(f"'{src}': several cases named {', '.join(dupes[:5])}")
    path = write_manifest(out, found.cases)
    sidecar = {
        "source": str(src),
        "layout": found.layout,
        "task": found.task,
        "cases": len(found.cases),
        "patients": len({c.patient_id for c in found.cases}),
        **found.info,
        "notes": found.notes,
        "skipped": found.skipped,
    }
    atomic_write_text(out / SIDECAR, json.dumps(sidecar, indent=2) + "\n")
    return path, found


def channel_name(name: str, taken: list[str]) -> str:
    """A column-safe channel name (``MRI (T2)`` -> ``MRI_T2``), unique among ``taken``."""
    clean = re.sub(r"[^A-Za-z0-9]+", "_", str(name)).strip("_") or "ch"
    base, k = clean, 2
    while clean in taken:
        clean, k = f"{base}_{k}", k + 1
    return clean
