"""Patient identity left in DICOM headers: counted per tag, never shown."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..io import file_format, source_path
from ..manifest import Case

IDENTITY_TAGS = (
    "PatientName",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientBirthDate",
    "PatientBirthTime",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "OtherPatientIDs",
    "MedicalRecordLocator",
)


def _first_dicom_header(path: Path, tags: Sequence[str]) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = source_path(path)  # a folder::SeriesInstanceUID image: its folder
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        try:
            return pydicom.dcmread(file, stop_before_pixels=True, specific_tags=list(tags))
        except (InvalidDicomError, OSError):
            continue
    return None


def identity_summary(cases: Sequence[Case]) -> dict[str, Any]:
    """Which DICOM cases carry patient identity in their headers (counted, never shown).

    Reads the header of one file per case (a series shares its patient module), without pixel
    data, and counts the non-empty :data:`IDENTITY_TAGS`.
    """
    tag_counts: Counter[str] = Counter()
    flagged = []
    dicom = 0
    for case in cases:
        if file_format(case.image) != "dicom":
            continue
        dicom += 1
        ds = _first_dicom_header(case.image, IDENTITY_TAGS)
        if ds is None:
            continue
        present = [t for t in IDENTITY_TAGS if str(ds.get(t, "") or "").strip()]
        tag_counts.update(present)
        if present:
            flagged.append(case.case_id)
    return {
        "dicom_cases": dicom,
        "cases_with_identity": len(flagged),
        "tags": {t: tag_counts[t] for t in IDENTITY_TAGS if tag_counts[t]},
        "case_ids": flagged,
    }
