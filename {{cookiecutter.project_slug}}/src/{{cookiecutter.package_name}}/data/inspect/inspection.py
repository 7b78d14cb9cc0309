"""Look at a dataset before modelling it: the ``inspect`` command.

:func:`inspect_dataset` reads every case of ``manifest.csv`` once (its image, mask and other
annotators' masks) and writes a dated report folder ``<out_dir>/<YYYY-MM-DD>/``:

- ``report.json``: counts (cases, patients, studies per patient), the class distribution
  (classification) or the mask size per class in voxels and mL with the empty masks
  (segmentation), shapes, spacings, intensity statistics as stored (e.g. Hounsfield units), exact
  and near duplicates by group, agreement between annotators with the largest disagreements,
  patients per split when ``splits.json`` exists, a count of DICOM headers that carry patient
  identity (never the values), warnings, and a ``cases`` list of
  ``{case_id, shape, spacing, intensity: {min, max, mean, std}, ...}``;
- ``report.md``: the same for a person, with the plots inline;
- PNG plots (:mod:`..viz.data_plots`) and ``montages/<case_id>.png``, a few slices of each case
  with its label outlined, to look through the data by eye.

A second run on the same day replaces that day's folder as a whole (built beside it, then
swapped in); other days' reports are never touched. :func:`view_case` opens one case in ITK-SNAP
when it is installed, and otherwise points at its montage.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import shutil
import subprocess
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ... import paths
from ...utils.io import atomic_write_text, replace_folder
from ..io import source_path
from ..manifest import SPLITS, DataError, read_manifest
from ..orientation import from_setting
from .annotators import annotator_summary
from .cases import inspect_case, montage_name
from .duplicates import duplicate_summary
from .findings import collect_warnings
from .identity import identity_summary
from .plots import write_plots
from .report import render_markdown
from .splits import read_splits, split_summary
from .statistics import (
    class_summary,
    count_summary,
    fingerprint_report,
    geometry_summary,
    mask_summary,
    pooled_intensity,
)

log = logging.getLogger(__name__)
TASKS = ("segmentation", "classification")
NEAR_THRESHOLD = 0.98  # thumbnail correlation above which two cases are near duplicates
DAY = re.compile(r"^\d{4}-\d{2}-\d{2}_")  # report folders: <YYYY-MM-DD>_<dataset>


def report_folder(out_dir: Path, root: Path, day: dt.date) -> Path:
    """``<out_dir>/<YYYY-MM-DD>_<dataset>``: one report folder per dataset and date.

    ``<dataset>`` is the dataset folder's name; a second dataset of the same name inspected on
    the same day gets ``<name>-2`` (and so on), so one never replaces the other's report.
    """
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(root).resolve().name).strip("-") or "dataset"
    base, k = f"{day.isoformat()}_{name}", 1
    while True:
        folder = Path(out_dir) / (base if k == 1 else f"{base}-{k}")
        try:
            recorded = json.loads((folder / "report.json").read_text(encoding="utf-8"))["root"]
        except (OSError, ValueError, KeyError, TypeError):
            recorded = None
        if not folder.exists() or recorded is None or recorded == str(Path(root).resolve()):
            return folder
        k += 1


def inspect_dataset(
    root: Path,
    *,
    task: str,
    out_dir: Path,
    near_threshold: float = NEAR_THRESHOLD,
    day: dt.date | None = None,
    figures: bool = True,
    normalization: str = "auto",
    window: Sequence[float] | None = None,
    orientation: str | None = "RAS",
) -> Path:
    """Inspect the dataset of ``<root>/manifest.csv`` and write the report folder.

    Args:
        root: the dataset folder (``manifest.csv``, optionally ``splits.json``).
        task: ``segmentation`` or ``classification``.
        out_dir: where dated report folders go (``reports/inspect``).
        near_threshold: thumbnail correlation in ``(0, 1]`` above which two cases are near
            duplicates.
        day: the date naming the folder (today when ``None``).
        figures: draw the plots and a montage per case (the slowest part); without them only
            ``report.json`` and ``report.md`` are written.
        normalization: ``data.normalization``: ``auto`` reports what training would choose,
            an explicit one is checked against the intensities (e.g. a CT window on MR).
        window: ``data.window`` (for an explicit ``ct``).
        orientation: ``data.orientation`` (spacings are compared in it; ``None`` or ``"none"``:
            as stored).

    Returns:
        The path of ``<out_dir>/<YYYY-MM-DD>_<dataset>/report.json`` (:func:`report_folder`).

    Raises:
        ValueError: unknown ``task`` or a threshold outside ``(0, 1]``.
        DataError: no manifest, an empty or malformed one, a missing file, a bad ``splits.json``.
        ImageError: an image or mask cannot be read, or a mask does not fit its image.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if not 0 < near_threshold <= 1:
        raise ValueError(f"near_threshold must be in (0, 1], got {near_threshold}")
    root, out_dir = Path(root), Path(out_dir)
    orientation = from_setting(orientation)
    cases = read_manifest(root, task)
    splits_path = root / SPLITS
    splits = read_splits(splits_path) if splits_path.is_file() else None
    final = report_folder(out_dir, root, day or dt.date.today())
    out_dir.mkdir(parents=True, exist_ok=True)
    build = out_dir / f".{final.name}.tmp-{uuid.uuid4().hex[:8]}"
    (build / "montages" if figures else build).mkdir(parents=True)
    try:
        results = [
            inspect_case(
                c,
                task,
                build / "montages" / montage_name(c.case_id) if figures else None,
                orientation,
            )
            for c in cases
        ]
        records = [r.record for r in results]
        report: dict[str, Any] = {
            "created": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "root": str(root.resolve()),
            "task": task,
            "counts": count_summary(cases),
        }
        if task == "classification":
            report["classes"] = class_summary(cases)
        else:
            report["masks"] = mask_summary(records)
        report["geometry"] = geometry_summary(records)
        report["intensity"] = pooled_intensity(results)
        report["fingerprint"] = fingerprint_report(results, normalization, window, orientation)
        report["duplicates"] = duplicate_summary(
            [r.fingerprint for r in results], cases, near_threshold
        )
        report["annotators"] = annotator_summary(results, task)
        report["splits"] = None if splits is None else split_summary(splits, cases)
        report["identity"] = identity_summary(cases)
        report["warnings"] = collect_warnings(report, records)
        report["plots"] = write_plots(report, results, build) if figures else {}
        report["cases"] = records
        atomic_write_text(
            build / "report.json", json.dumps(report, indent=2, allow_nan=False) + "\n"
        )
        atomic_write_text(build / "report.md", render_markdown(report) + "\n")
        replace_folder(build, final)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    for warning in report["warnings"]:  # stderr, unless the application configures logging
        log.warning("warning: %s", warning)
    return final / "report.json"


def find_montage(case_id: str, out_dir: Path, root: Path | None = None) -> Path | None:
    """The newest ``<out_dir>/<date>_<dataset>/montages/<case>.png`` (of the dataset in
    ``root`` when given), or ``None``."""
    name = montage_name(case_id)
    days = sorted(
        (d for d in Path(out_dir).glob("*") if d.is_dir() and DAY.match(d.name)), reverse=True
    )
    if root is not None:
        today = report_folder(out_dir, root, dt.date.today()).name.split("_", 1)[1]
        days = [d for d in days if d.name.split("_", 1)[1] == today]
    for day in days:
        if (day / "montages" / name).is_file():
            return day / "montages" / name
    return None


def _viewer_file(path: Path) -> Path:
    """ITK-SNAP opens a DICOM series from one of its files."""
    path = source_path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        return files[0] if files else path
    return path


def view_case(root: Path, case_id: str, *, task: str, out_dir: Path | None = None) -> int:
    """Show one case: in ITK-SNAP when ``itksnap`` is on the PATH, else point at its montage.

    Args:
        root: the dataset folder.
        case_id: a ``case_id`` of the manifest.
        task: ``segmentation`` (the mask is loaded as ITK-SNAP's segmentation) or
            ``classification``.
        out_dir: the dated report folders (default ``reports/inspect`` of the project); a
            montage missing there is drawn into today's folder.

    Returns:
        0 (the exit status).

    Raises:
        DataError: ``case_id`` is not in the manifest (or no manifest).
        ImageError: the case's image or mask cannot be read (when its montage is drawn).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    cases = {c.case_id: c for c in read_manifest(root, task)}
    if case_id not in cases:
        raise DataError(f"case '{case_id}' is not in '{Path(root) / 'manifest.csv'}'")
    case = cases[case_id]
    viewer = shutil.which("itksnap")
    if viewer is not None:
        command = [viewer, "-g", str(_viewer_file(case.image))]
        if task == "segmentation":
            command += ["-s", str(case.label)]
        try:
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError as exc:
            print(f"could not start ITK-SNAP ({exc}); showing the montage instead")
        else:
            print(f"opened {case_id} in ITK-SNAP")
            return 0
    out_dir = Path(out_dir) if out_dir is not None else paths.reports_dir() / "inspect"
    montage = find_montage(case_id, out_dir, root)
    if montage is None:
        folder = report_folder(out_dir, root, dt.date.today())
        montage = folder / "montages" / montage_name(case_id)
        inspect_case(case, task, montage)
    print(f"montage of {case_id}: {montage}")
    print("(install ITK-SNAP, http://www.itksnap.org, to browse the case in 3D)")
    return 0
