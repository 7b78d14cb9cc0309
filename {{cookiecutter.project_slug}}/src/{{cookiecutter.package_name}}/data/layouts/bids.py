"""BIDS: ``sub-<label>/[ses-<label>/]anat/sub-<label>[_ses-<label>]..._<suffix>.nii[.gz]``.

The patient is the subject. Images of one suffix are taken (``T1w`` when there are any, else the
most common); masks come from ``derivatives/<pipeline>/`` and are the files named like the image
(same entities) ending ``_mask`` or ``_dseg``. Images without a mask are skipped and listed.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..io import NIFTI_SUFFIXES
from ..manifest import Case
from . import Found

MASK_SUFFIXES = ("_mask", "_dseg")


def _split(path: Path) -> tuple[str, str] | None:
    """``("sub-01_ses-1_acq-x", "T1w")`` for ``sub-01_ses-1_acq-x_T1w.nii.gz``."""
    for ending in NIFTI_SUFFIXES:
        if path.name.lower().endswith(ending):
            stem = path.name[: -len(ending)]
            if "_" in stem:
                entities, suffix = stem.rsplit("_", 1)
                return entities, suffix
    return None


def scan(src: Path, suffix: str | None = None) -> Found:
    """Scan a BIDS folder.

    Args:
        src: the dataset folder (with ``sub-*`` folders and ``derivatives/``).
        suffix: the image suffix to take (``T1w``, ``T2w``, ``FLAIR``, ...); guessed when
            ``None``.

    Returns:
        One segmentation case per image with a mask; the patient is the subject.
    """
    found = Found("bids", "segmentation", [])
    images: dict[str, list[tuple[str, Path]]] = {}
    for path in sorted(src.glob("sub-*/**/anat/*")):
        parts = _split(path) if not path.name.startswith(".") else None
        if parts is not None:
            images.setdefault(parts[1], []).append((parts[0], path))
    if not images:
        return found
    counts = Counter({s: len(v) for s, v in images.items()})
    chosen = suffix or ("T1w" if "T1w" in images else counts.most_common(1)[0][0])
    others = ", ".join(f"{s} ({n})" for s, n in counts.most_common() if s != chosen)
    found.notes.append(
        f"images: *_{chosen}.nii.gz ({counts.get(chosen, 0)})"
        + (f"; also found {others}, not used" if others else "")
    )
    masks: dict[str, list[Path]] = {}
    for path in sorted((src / "derivatives").glob("**/sub-*/**/anat/*")):
        parts = _split(path)
        if parts is None:
            continue
        entities, kind = parts
        if not any(f"_{kind}".endswith(m) for m in MASK_SUFFIXES):
            continue
        masks.setdefault(entities, []).append(path)
    for entities, path in images.get(chosen, []):
        subject = entities.split("_")[0]
        candidates = [
            p
            for key, ps in masks.items()
            for p in ps
            if key == entities or key.startswith(f"{entities}_")
        ]
        if not candidates:
            found.skipped.append(f"{path.relative_to(src)}: no *_mask/*_dseg in derivatives/")
            continue
        if len(candidates) > 1:
            found.notes.append(
                f"{entities}: {len(candidates)} masks, took {candidates[0].relative_to(src)}"
            )
        found.cases.append(Case(entities, subject, path, candidates[0]))
    found.notes.append(
        f"{len(found.cases)} cases of {len({c.patient_id for c in found.cases})} subjects "
        "(patient = subject)"
    )
    found.info["channels"] = [chosen]
    found.info["modalities"] = {"0": chosen}
    return found
