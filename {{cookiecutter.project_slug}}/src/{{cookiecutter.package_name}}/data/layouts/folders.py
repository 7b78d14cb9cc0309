"""One sub-folder per class (``normal/``, ``nodule/``): classification.

Each image file (NIfTI, PNG/JPEG, DICOM) in a class folder is a case, and so is each sub-folder
(a DICOM series). The class is the folder's name; the case id is the file name without its
ending, prefixed with the class when two classes hold the same name.
"""

from __future__ import annotations

from pathlib import Path

from ..io import DICOM_SUFFIXES, NIFTI_SUFFIXES, PNG_SUFFIXES
from ..manifest import Case
from . import Found
from .table import _case_id

ENDINGS = (*NIFTI_SUFFIXES, *PNG_SUFFIXES, *DICOM_SUFFIXES)


def scan(src: Path) -> Found:
    """Scan a folder of class folders.

    Returns:
        One classification case per image file or series folder.
    """
    found = Found("folders", "classification", [])
    classes = sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    counts = {}
    for folder in classes:
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        images = [p for p in entries if p.is_dir() or p.name.lower().endswith(ENDINGS)]
        for path in entries:
            if path not in images:
                found.skipped.append(f"{path.relative_to(src)}: not an image")
        counts[folder.name] = len(images)
        for path in images:
            found.cases.append(Case(_case_id(path), "", path, folder.name))
    names = [c.case_id for c in found.cases]
    for case in found.cases:
        if names.count(case.case_id) > 1:
            case.case_id = f"{case.label}_{case.case_id}"
    found.notes.append(
        "classes (one per folder): " + ", ".join(f"{k} ({v})" for k, v in counts.items())
    )
    found.info["classes"] = list(counts)
    return found
