"""The dataset's table of contents: ``manifest.csv``.

Columns: ``case_id``, ``patient_id``, ``image``, ``label`` (a mask path for segmentation, a class
name for classification) and optional ``label_<rater>`` columns for more annotators. Paths are
relative to the manifest's folder (``data.root``), so a dataset folder can be moved as a whole.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from ..utils.errors import ProjectError
from ..utils.io import atomic_write_text

MANIFEST = "manifest.csv"
SPLITS = "splits.json"
REQUIRED = ("case_id", "patient_id", "image", "label")


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
    """

    case_id: str
    patient_id: str
    image: Path
    label: str | Path
    raters: dict[str, str | Path] = field(default_factory=dict)


def manifest_path(root: str | Path) -> Path:
    return Path(root) / MANIFEST


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
    missing = [c for c in REQUIRED if c not in header]
    if rows and missing:
        raise DataError(f"'{path}' lacks the column(s) {', '.join(missing)}")
    if not rows:
        raise DataError(f"'{path}' lists no cases (an empty dataset)")
    is_mask = task == "segmentation"
    cases: list[Case] = []
    seen: set[str] = set()
    for line, row in enumerate(rows, start=2):
        for column in REQUIRED:
            if not (row.get(column) or "").strip():
                raise DataError(f"'{path}' line {line}: empty '{column}'")
        case_id = row["case_id"].strip()
        if case_id in seen:
            raise DataError(f"'{path}' line {line}: case_id '{case_id}' appears twice")
        seen.add(case_id)
        image = root / row["image"].strip()
        label: str | Path = root / row["label"].strip() if is_mask else row["label"].strip()
        raters: dict[str, str | Path] = {}
        for column, value in row.items():
            if column and column.startswith("label_") and value and value.strip():
                rater = column[len("label_") :]
                raters[rater] = root / value.strip() if is_mask else value.strip()
        if check_files:
            for what, file in [("image", image), *(("label", p) for p in [label] if is_mask)]:
                if not Path(file).exists():
                    raise DataError(f"'{path}' line {line}: {what} '{file}' does not exist")
        cases.append(Case(case_id, row["patient_id"].strip(), image, label, raters))
    return cases


def write_manifest(root: str | Path, cases: list[Case]) -> Path:
    """Write ``<root>/manifest.csv`` (atomically), paths relative to ``root``."""
    root = Path(root)
    raters = sorted({r for case in cases for r in case.raters})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*REQUIRED, *(f"label_{r}" for r in raters)])

    def rel(value: str | Path) -> str:
        if isinstance(value, Path):
            return (
                Path(value).relative_to(root).as_posix()
                if value.is_absolute()
                else value.as_posix()
            )
        return value

    for case in cases:
        writer.writerow(
            [case.case_id, case.patient_id, rel(case.image), rel(case.label)]
            + [rel(case.raters[r]) if r in case.raters else "" for r in raters]
        )
    return atomic_write_text(manifest_path(root), out.getvalue())
