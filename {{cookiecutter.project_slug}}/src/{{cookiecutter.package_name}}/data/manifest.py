"""The dataset's table of contents: ``manifest.csv``.

Columns: ``case_id``, ``patient_id``, ``image``, ``label`` (a mask path for segmentation, a class
name for classification) and optional ``label_<rater>`` columns for more annotators. Paths are
relative to the manifest's folder (``data.root``), so a dataset folder can be moved as a whole
(absolute paths work too).

A multi-channel case (several MR sequences, say) has one image column per channel, named
``image_<channel>`` (``image_FLAIR,image_T1w,...``) instead of ``image``; :attr:`Case.image` is then
the first channel and :attr:`Case.channels` holds them all, in column order.

An image path may name one part of a container as ``PATH::PART``: ``dicom/study1::1.2.840...`` is
the series of that ``SeriesInstanceUID`` in a folder holding several, ``imagesTr/x.nii.gz::0`` the
first volume of a 4D NIfTI (see :mod:`.io`). The ``manifest`` command writes such manifests from
common layouts (:mod:`.layouts`).
"""

from __future__ import annotations

import csv
import difflib
import io
from dataclasses import dataclass, field
from pathlib import Path

from ..utils.errors import ProjectError
from ..utils.io import atomic_write_text
from .io import ImageError, source_path

MANIFEST = "manifest.csv"
SPLITS = "splits.json"
# Written by dummy-data beside its manifest: the data are synthetic (the model card says so).
SYNTHETIC_MARKER = ".dummy-data.json"
REQUIRED = ("case_id", "patient_id", "image", "label")
CHANNEL_PREFIX = "image_"


class DataError(ProjectError):
    """A dataset that cannot be used as it is: the message names the file and the case."""


@dataclass
class Case:
    """One row of the manifest.

    Attributes:
        case_id: unique id of the image (a study or series).
        patient_id: who it belongs to; splits never put one patient in two parts.
        image: absolute path of the image file or DICOM series folder.
        label: absolute mask path (segmentation) or class name (classification).
        raters: more annotators' labels, ``{"rater2": ...}`` from ``label_rater2`` columns.
        channels: a multi-channel case's images, ``{"FLAIR": path, ...}`` from
            ``image_<channel>`` columns in column order (``image`` is the first); empty for a
            single-channel case.
    """

    case_id: str
    patient_id: str
    image: Path
    label: str | Path
    raters: dict[str, str | Path] = field(default_factory=dict)
    channels: dict[str, Path] = field(default_factory=dict)


def manifest_path(root: str | Path) -> Path:
    return Path(root) / MANIFEST


def _missing_columns(path: Path, header: list[str]) -> str | None:
    """What required columns ``header`` lacks, naming unknown look-alikes (``patiend_id``)."""
    channels = [c for c in header if c.startswith(CHANNEL_PREFIX)]
    if "image" in header and channels:
        return (
            f"'{path}' has both 'image' and {', '.join(channels)}: use 'image' for one channel "
            f"or '{CHANNEL_PREFIX}<channel>' columns for several, not both"
        )
    required = [c for c in REQUIRED if not (c == "image" and channels)]
    missing = [c for c in required if c not in header]
    if not missing:
        return None
    known = set(REQUIRED)
    unknown = [c for c in header if c not in known and not c.startswith(("label_", CHANNEL_PREFIX))]
    hints = []
    for column in missing:
        close = difflib.get_close_matches(column, unknown, n=1, cutoff=0.6)
        if close:
            hints.append(f"'{close[0]}' (did you mean '{column}'?)")
    found = f"; it has the unknown column(s) {', '.join(hints)}" if hints else ""
    return f"'{path}' lacks the column(s) {', '.join(missing)}{found}"


def read_manifest(root: str | Path, task: str, check_files: bool = True) -> list[Case]:
    """Read ``<root>/manifest.csv``.

    Args:
        root: the dataset folder.
        task: ``segmentation`` (labels are mask paths) or ``classification`` (class names).
        check_files: raise when an image or mask file is missing.

    Returns:
        The cases in file order.

    Raises:
        DataError: no manifest, missing columns, empty, duplicate ``case_id``, empty cells, or
            (with ``check_files``) a missing image or mask; the message names the row.
    """
    root = Path(root)
    path = manifest_path(root)
    if not path.is_file():
        raise DataError(f"no manifest at '{path}' (make one, or run dummy-data)")
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
        header = rows[0].keys() if rows else []
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"'{path}' is not a readable CSV file: {exc}") from None
    problem = _missing_columns(path, [c for c in header if c is not None]) if rows else None
    if problem:
        raise DataError(problem)
    if not rows:
        raise DataError(f"'{path}' lists no cases (an empty dataset)")
    is_mask = task == "segmentation"
    cases: list[Case] = []
    seen: set[str] = set()
    channel_columns = [c for c in header if c and c.startswith(CHANNEL_PREFIX)]
    image_columns = channel_columns or ["image"]
    for line, row in enumerate(rows, start=2):
        for column in [c for c in REQUIRED if c != "image"] + image_columns:
            if not (row.get(column) or "").strip():
                raise DataError(f"'{path}' line {line}: empty '{column}'")
        case_id = row["case_id"].strip()
        if case_id in seen:
            raise DataError(f"'{path}' line {line}: case_id '{case_id}' appears twice")
        seen.add(case_id)
        channels = {c[len(CHANNEL_PREFIX) :]: root / row[c].strip() for c in channel_columns}
        image = root / row[image_columns[0]].strip()
        label: str | Path = root / row["label"].strip() if is_mask else row["label"].strip()
        raters: dict[str, str | Path] = {}
        for column, value in row.items():
            if column and column.startswith("label_") and value and value.strip():
                rater = column[len("label_") :]
                raters[rater] = root / value.strip() if is_mask else value.strip()
        if check_files:
            images = [("image", file) for file in (channels.values() if channels else [image])]
            for what, file in [*images, *(("label", p) for p in [label] if is_mask)]:
                try:
                    exists = source_path(file).exists()
                except ImageError as exc:
                    raise DataError(f"'{path}' line {line}: {exc}") from None
                if not exists:
                    raise DataError(f"'{path}' line {line}: {what} '{file}' does not exist")
        cases.append(Case(case_id, row["patient_id"].strip(), image, label, raters, channels))
    return cases


def write_manifest(root: str | Path, cases: list[Case]) -> Path:
    """Write ``<root>/manifest.csv`` (atomically), paths relative to ``root`` (absolute for
    files outside it); multi-channel cases get one ``image_<channel>`` column per channel.

    Raises:
        ValueError: the cases do not all have the same channels.
    """
    root = Path(root)
    raters = sorted({r for case in cases for r in case.raters})
    channels = list(dict.fromkeys(c for case in cases for c in case.channels))
    if channels and any(list(case.channels) != channels for case in cases):
        raise ValueError(f"every case must have the same channels {channels}")
    image_columns = [f"{CHANNEL_PREFIX}{c}" for c in channels] or ["image"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["case_id", "patient_id", *image_columns, "label", *(f"label_{r}" for r in raters)]
    )

    def rel(value: str | Path) -> str:
        if isinstance(value, Path):
            if value.is_absolute() and value.is_relative_to(root):
                return value.relative_to(root).as_posix()
            return value.as_posix()  # relative already, or outside root: kept absolute
        return value

    for case in cases:
        images = [rel(case.channels[c]) for c in channels] if channels else [rel(case.image)]
        writer.writerow(
            [case.case_id, case.patient_id, *images, rel(case.label)]
            + [rel(case.raters[r]) if r in case.raters else "" for r in raters]
        )
    return atomic_write_text(manifest_path(root), out.getvalue())


def label_names(
    root: str | Path, num_classes: int, configured: list[str] | tuple[str, ...] = ()
) -> list[str] | None:
    """The names of segmentation labels ``0 .. num_classes - 1``, if any are known.

    From ``configured`` (the config's ``data.labels``, a name per label value, background
    first) when given, else from the ``labels`` that ``manifest.json`` beside the manifest
    records (a Decathlon ``dataset.json``'s ``{"0": "background", "1": "tumour"}``, or nnU-Net
    v2's ``{"background": 0, "tumour": 1}``); a label it does not name becomes ``class_<k>``.

    Args:
        root: the dataset folder (``data.root``).
        num_classes: label values, the background included.
        configured: names indexed by label value; empty to use ``manifest.json``.

    Returns:
        ``num_classes`` names, or ``None`` when neither source names any label.

    Raises:
        DataError: ``configured`` names fewer labels than the masks hold, or ``manifest.json``
            cannot be read.
    """
    import json

    if configured:
        if len(configured) < num_classes:
            raise DataError(
                f"data.labels names {len(configured)} labels ({', '.join(configured)}) but the "
                f"masks hold labels 0..{num_classes - 1}: give one name per label value"
            )
        return [str(name) for name in configured[:num_classes]]
    sidecar = Path(root) / "manifest.json"
    if not sidecar.is_file():
        return None
    try:
        labels = json.loads(sidecar.read_text(encoding="utf-8")).get("labels") or {}
    except (OSError, ValueError, AttributeError) as exc:
        raise DataError(f"'{sidecar}' cannot be read: {exc}") from None
    by_value: dict[int, str] = {}
    for key, value in labels.items():
        if str(key).strip().isdigit():  # Decathlon: {"1": "tumour"}
            by_value[int(key)] = str(value)
        elif isinstance(value, int):  # nnU-Net v2: {"tumour": 1}
            by_value[value] = str(key)
    if not by_value:
        return None
    return [by_value.get(k, "background" if k == 0 else f"class_{k}") for k in range(num_classes)]
