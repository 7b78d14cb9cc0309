"""A CSV table of image paths and class labels (classification).

Columns are guessed by name (case-insensitive): the image from ``image``, ``path``, ``file``...,
the label from ``label``, ``class``, ``diagnosis``..., the patient from ``patient_id``,
``patient``, ``subject``..., the case id from ``case_id``, ``id``...; the guesses are printed.
Image paths are relative to the table's folder (or absolute).
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..manifest import Case, DataError
from . import Found

GUESSES = {
    "image": ("image", "image_path", "path", "file", "filename", "file_name", "img"),
    "label": ("label", "class", "diagnosis", "target", "finding", "category", "y"),
    "patient_id": ("patient_id", "patientid", "patient", "subject_id", "subject", "participant"),
    "case_id": ("case_id", "case", "image_id", "study_id", "id"),
}


def _guess(header: list[str], role: str) -> str | None:
    lower = {h.lower().strip(): h for h in header}
    for name in GUESSES[role]:
        if name in lower:
            return lower[name]
    return None


def scan(src: Path) -> Found:
    """Scan a CSV (or TSV) table.

    Returns:
        One classification case per row.

    Raises:
        DataError: the table cannot be read, has no image or label column, an empty cell, or
            a missing image.
    """
    try:
        text = src.read_text(encoding="utf-8-sig")
        rows = list(
            csv.DictReader(text.splitlines(), delimiter="\t" if src.suffix == ".tsv" else ",")
        )
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"'{src}' is not a readable table: {exc}") from None
    header = list(rows[0].keys()) if rows else []
    roles = {role: _guess(header, role) for role in GUESSES}
    for role in ("image", "label"):
        if roles[role] is None:
            raise DataError(
                f"'{src}': no {role} column found among {', '.join(header) or 'no columns'} "
                f"(expected one of {', '.join(GUESSES[role])})"
            )
    found = Found("csv", "classification", [])
    found.notes.append(
        "columns: "
        + ", ".join(f"{role} <- '{column}'" for role, column in roles.items() if column)
        + "".join(f"; no {role} column" for role in ("patient_id", "case_id") if not roles[role])
    )
    for line, row in enumerate(rows, start=2):
        image_text = (row.get(roles["image"]) or "").strip()
        label = (row.get(roles["label"]) or "").strip()
        if not image_text or not label:
            raise DataError(f"'{src}' line {line}: empty image or label")
        image = Path(image_text) if Path(image_text).is_absolute() else src.parent / image_text
        if not image.exists():
            raise DataError(f"'{src}' line {line}: image '{image}' does not exist")
        case_id = (row.get(roles["case_id"]) or "").strip() if roles["case_id"] else ""
        patient = (row.get(roles["patient_id"]) or "").strip() if roles["patient_id"] else ""
        found.cases.append(Case(case_id or _case_id(image), patient, image, label))
    classes = sorted({str(c.label) for c in found.cases})
    found.notes.append(f"{len(found.cases)} cases, classes: {', '.join(classes)}")
    found.info["classes"] = classes
    return found


def _case_id(image: Path) -> str:
    name = image.name
    for ending in (".nii.gz", ".nii", ".png", ".jpg", ".jpeg", ".dcm"):
        if name.lower().endswith(ending):
            return name[: -len(ending)]
    return name
