"""A folder of DICOM files at any nesting: one case per series.

Files are grouped by ``PatientID`` / ``StudyInstanceUID`` / ``SeriesInstanceUID`` from their
headers (no pixels are read). ``patient_id`` is the ``PatientID``, so the studies of one patient
stay together in ``split``. A case's image is the folder holding its series when that folder holds
no other series, else ``folder::SeriesInstanceUID``. Series that cannot be one volume (mixed
orientations, irregular slice gaps: the reasons :func:`..io.read_image` refuses with) are skipped
and listed. Masks are NIfTI files anywhere under the folder named ``<case_id>.nii.gz`` or
``<SeriesInstanceUID>.nii.gz`` (segmentation); without them the ``label`` column is left empty
to be filled in. Case ids are ``<PatientID>_st<k>_se<SeriesNumber>``, studies numbered by date.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..io import NIFTI_SUFFIXES, check_series, read_dicom_headers
from ..manifest import Case
from . import Found

RULES = "all, most-slices, or a regex matched against 'Modality SeriesDescription'"


def _text(ds: Any, tag: str) -> str:
    return str(getattr(ds, tag, "") or "").strip()


def _study_date(series: dict[str, list]) -> str:
    """``StudyDate`` + ``StudyTime`` of a study's first file ('' when absent): studies are
    numbered in time order (``st1`` the earliest), by UID where no date is given."""
    ds = next(iter(series.values()))[0][1]
    return _text(ds, "StudyDate") + _text(ds, "StudyTime")


def _pick(series: dict[str, list], rule: str) -> tuple[list[str], str]:
    """The series UIDs of one study to keep under ``rule``, and why."""
    uids = sorted(series, key=lambda u: (_text(series[u][0][1], "SeriesNumber").zfill(6), u))
    if rule == "all" or len(uids) == 1:
        return uids, "all series kept"
    if rule == "most-slices":
        best = max(uids, key=lambda u: len(series[u]))
        return [best], f"kept the series with most slices ({len(series[best])})"
    pattern = re.compile(rule, re.IGNORECASE)
    kept = [
        u
        for u in uids
        if pattern.search(
            f"{_text(series[u][0][1], 'Modality')} {_text(series[u][0][1], 'SeriesDescription')}"
        )
    ]
    return kept, f"kept the series matching {rule!r}"


def _describe(uid: str, items: list) -> str:
    ds = items[0][1]
    desc = _text(ds, "SeriesDescription") or "no description"
    return f"{_text(ds, 'Modality') or '?'} '{desc}' ({len(items)} files, {uid})"


def scan(src: Path, series_rule: str = "all") -> Found:
    """Scan a DICOM folder.

    Args:
        src: the folder (any nesting).
        series_rule: which series of a study to keep: ``all`` (default), ``most-slices``, or a
            regex searched (case-insensitive) in ``"<Modality> <SeriesDescription>"``.

    Returns:
        One case per kept series that makes one volume.

    Raises:
        DataError: an invalid ``series_rule`` regex.
        ImageError: a DICOM file cannot be read.
    """
    from ..manifest import DataError

    if series_rule not in ("all", "most-slices"):
        try:
            re.compile(series_rule)
        except re.error as exc:
            raise DataError(f"--series-rule {series_rule!r}: expected {RULES} ({exc})") from None
    found = Found("dicom", "segmentation", [])
    headers = read_dicom_headers(src, pixels=False)
    tree: dict[str, dict[str, dict[str, list]]] = defaultdict(lambda: defaultdict(dict))
    for file, ds in headers:
        patient = _text(ds, "PatientID")
        study = _text(ds, "StudyInstanceUID") or "unknown-study"
        series = _text(ds, "SeriesInstanceUID") or "unknown-series"
        tree[patient][study].setdefault(series, []).append((file, ds))
    folder_series: dict[Path, set[str]] = defaultdict(set)
    for file, ds in headers:
        for parent in file.parents:
            folder_series[parent].add(_text(ds, "SeriesInstanceUID") or "unknown-series")
            if parent == src:
                break
    masks = {
        p.name[: -len(e)]: p
        for p in src.rglob("*")
        for e in NIFTI_SUFFIXES
        if p.is_file() and p.name.lower().endswith(e) and not p.name.startswith(".")
    }
    modalities: set[str] = set()
    used: set[str] = set()
    studies = series_total = 0
    for patient in sorted(tree):
        dated = sorted(tree[patient], key=lambda u: (_study_date(tree[patient][u]), u))
        for s_index, study in enumerate(dated, start=1):
            studies += 1
            series = tree[patient][study]
            series_total += len(series)
            kept, why = _pick(series, series_rule)
            if len(series) > 1:
                listing = "; ".join(
                    ("kept " if u in kept else "left out ") + _describe(u, series[u])
                    for u in sorted(series)
                )
                found.notes.append(
                    f"patient {patient or '?'} study {s_index}: {len(series)} series, {why}: "
                    f"{listing}"
                )
            for uid in kept:
                items = series[uid]
                files = [f for f, _ in items]
                folder = Path(os.path.commonpath([str(f.parent) for f in files]))
                reason = check_series(folder, items)
                if reason is not None:
                    found.skipped.append(f"series {uid} ({len(items)} files): {reason}")
                    continue
                number = _text(items[0][1], "SeriesNumber") or str(sorted(series).index(uid) + 1)
                base = re.sub(
                    r"[^A-Za-z0-9._-]+", "-", f"{patient or 'anon'}_st{s_index}_se{number}"
                )
                case_id, k = base, 2
                while case_id in used:  # two series with one SeriesNumber
                    case_id, k = f"{base}-{k}", k + 1
                used.add(case_id)
                only = folder_series[folder] == {uid}
                image = folder if only else Path(f"{folder}::{uid}")
                mask = masks.get(case_id) or masks.get(uid)
                modalities.add(_text(items[0][1], "Modality"))
                found.cases.append(Case(case_id, patient, image, mask if mask else ""))
    found.notes.insert(
        0,
        f"{len(headers)} DICOM files: {len(tree)} patients (PatientID), {studies} studies, "
        f"{series_total} series; {len(found.cases)} cases, {len(found.skipped)} series skipped",
    )
    unlabelled = sum(1 for c in found.cases if c.label == "")
    if unlabelled:
        found.notes.append(
            f"{unlabelled} cases have no label: fill the 'label' column (a class name, or a mask "
            "path; masks named <case_id>.nii.gz or <SeriesInstanceUID>.nii.gz under the folder "
            "are found)"
        )
    if "" in tree:
        found.notes.append("WARNING: some files have no PatientID")
    found.info["modalities"] = sorted(m for m in modalities if m)
    found.info["series_rule"] = series_rule
    return found
