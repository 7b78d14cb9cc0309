"""Medical Segmentation Decathlon and nnU-Net raw datasets.

``dataset.json`` with ``imagesTr/``, ``labelsTr/`` (and ``imagesTs/``: no labels, so no manifest
rows; those images go to the ``predict`` command). nnU-Net names each channel of a case
``<case>_<channel, 4 digits><ending>`` (``case_0000.nii.gz``, ``case_0001.nii.gz``) and lists
their names under ``channel_names`` (v2) or ``modality`` (v1); a Decathlon image is one file,
4D when it holds several channels (the brain-tumour task's FLAIR, T1w, t1gd, T2w), named under
``modality``. Both become one case with an ``image_<channel>`` column per channel; the channels of
a 4D file are written ``imagesTr/<file>::<k>`` (see :mod:`..io`). Neither format knows patients.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import nibabel as nib

from ..manifest import Case, DataError
from . import Found, channel_name

CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def _stem(path: Path, ending: str) -> str:
    return path.name[: -len(ending)]


def _ending(path: Path) -> str:
    name = path.name.lower()
    for ending in (".nii.gz", ".nii", ".nrrd", ".mha", ".png", ".tif"):
        if name.endswith(ending):
            return path.name[-len(ending) :]
    return path.suffix


def _images(folder: Path) -> list[Path]:
    """Image files of a folder; hidden files (macOS ``._BRATS_001.nii.gz`` junk) left out."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def is_nnunet(src: Path) -> bool:
    """nnU-Net raw data: ``channel_names`` in ``dataset.json`` or ``_0000`` channel files."""
    meta = _dataset_json(src)
    if "channel_names" in meta:
        return True
    return any(CHANNEL_FILE.match(_stem(p, _ending(p))) for p in _images(src / "imagesTr"))


def _dataset_json(src: Path) -> dict[str, Any]:
    path = src / "dataset.json"
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"'{path}' is not readable JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise DataError(f"'{path}': expected a JSON object")
    return meta


def scan(src: Path, layout: str = "decathlon") -> Found:
    """Scan a Decathlon or nnU-Net raw folder.

    Args:
        src: the folder holding ``dataset.json``, ``imagesTr/`` and ``labelsTr/``.
        layout: ``decathlon`` or ``nnunet`` (only the name reported).

    Returns:
        One segmentation case per labelled training image (multi-channel where it has
        several channels), patients unknown.

    Raises:
        DataError: no ``imagesTr/``, or an unreadable ``dataset.json``.
    """
    meta = _dataset_json(src)
    images_dir = src / "imagesTr"
    if not images_dir.is_dir():
        raise DataError(f"'{src}': no imagesTr/ folder (a {layout} dataset needs one)")
    names_by_index = meta.get("channel_names") or meta.get("modality") or {}
    names_by_index = {int(k): str(v) for k, v in names_by_index.items()}
    found = Found(layout, "segmentation", [])
    labels = meta.get("labels") or {}
    found.info["labels"] = labels
    found.info["name"] = meta.get("name", src.name)

    groups: dict[str, dict[int, Path]] = {}
    for path in _images(images_dir):
        ending = _ending(path)
        match = CHANNEL_FILE.match(_stem(path, ending))
        case = match["case"] if match else _stem(path, ending)
        groups.setdefault(case, {})[int(match["channel"]) if match else -1] = path
    channel_sets = {tuple(sorted(g)) for g in groups.values()}
    if len(channel_sets) > 1:
        found.notes.append(f"WARNING: cases have different channel sets {sorted(channel_sets)}")

    columns: list[str] = []
    for case_id, files in sorted(groups.items()):
        if -1 in files:  # a Decathlon file: one channel, or 4D with several
            path = files[-1]
            shape = nib.load(str(path)).shape if _ending(path).lower().startswith(".nii") else ()
            count = shape[3] if len(shape) == 4 else 1
            sources = {k: (path, k if count > 1 else None) for k in range(count)}
        else:
            sources = {k: (p, None) for k, p in sorted(files.items())}
        ending = _ending(next(iter(files.values())))
        label = src / "labelsTr" / f"{case_id}{ending}"
        if not label.is_file():
            found.skipped.append(f"{case_id}: no mask labelsTr/{label.name}")
            continue
        channels: dict[str, Path] = {}
        if len(sources) > 1:
            names: list[str] = []
            for k in sorted(sources):
                names.append(channel_name(names_by_index.get(k, f"ch{k}"), names))
            for name, k in zip(names, sorted(sources), strict=True):
                path, part = sources[k]
                channels[name] = Path(f"{path}::{part}") if part is not None else path
            columns = columns or names
        first = next(iter(channels.values())) if channels else sources[min(sources)][0]
        found.cases.append(Case(case_id, "", first, label, {}, channels))

    if found.cases and found.cases[0].channels:
        found.notes.append(
            f"{len(columns)} channels per case: "
            + ", ".join(f"image_{n} ({names_by_index.get(i, '?')})" for i, n in enumerate(columns))
            + " (multi-channel training comes in a later version; inspect reads the first)"
        )
    else:
        modality = names_by_index.get(0)
        found.notes.append(f"one channel per case{f' ({modality})' if modality else ''}")
    found.info["channels"] = columns or [names_by_index.get(0, "image")]
    found.info["modalities"] = {str(k): v for k, v in names_by_index.items()}
    found.notes.append(f"{len(found.cases)} labelled cases in imagesTr/ + labelsTr/")
    tests = {CHANNEL_FILE.sub(r"\g<case>", _stem(p, _ending(p))) for p in _images(src / "imagesTs")}
    if tests:
        found.notes.append(
            f"{len(tests)} unlabelled cases in imagesTs/ left out (predict them with "
            "`predict RUN_DIR imagesTs/`)"
        )
    return found
