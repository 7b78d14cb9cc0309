"""The synthetic dataset behind ``dummy-data``: small, fast to train on, with real data's pitfalls.

A student can train on it in minutes on a CPU and should meet the same traps as in real data:

- several studies per patient (follow-ups share the patient's anatomy), so splits must group
  by ``patient_id``;
- a few exact duplicates (the same voxels re-exported under another case id, one of them under a
  new patient id) and near duplicates (the same image with a little noise added);
- a second annotator, ``label_rater2``, who disagrees on some cases (tighter or shifted masks,
  flipped classes);
- class imbalance (70% ``normal``, 30% ``nodule``), anisotropic voxels (0.8 x 0.8 x 2.5 mm) and
  affines that are not the identity (axes flipped as in a DICOM frame, origin shifted);
- DICOM series whose ``InstanceNumber`` runs backwards or shuffled (readers must sort by
  position), and some headers that still carry a (fake) patient name and birth date.

What is drawn (``data/synthetic/phantoms.py``): segmentation gets CT-like volumes in Hounsfield units, or
coronal slices of them for 2D, with a lesion as the target mask; classification gets CT volumes
(3D) or chest radiographs (2D) with or without a nodule. The answer key (which cases are
duplicates, where the raters disagree, ...) is written to ``.dummy-data.json``, which also marks
the folder as made by this command: a rerun replaces such a folder, and any other non-empty
folder is refused.

``channels=N`` (``dummy-data --channels N``) gives each case N co-registered images, the same
anatomy in N contrasts like the sequences of an MR study (:func:`extra_channel`), as
``image_ch1 ... image_chN`` manifest columns.

``like=DIR`` makes a smaller synthetic twin of a real dataset: same dimensionality, similar
spacing and field of view (downscaled when large), the same class balance or foreground fraction.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from ...utils.io import atomic_write_text
from ..inspect.duplicates import thumbnail
from ..io import read_image, read_label, write_dicom, write_nifti, write_png
from ..manifest import (
    MANIFEST,
    SPLITS,
    SYNTHETIC_MARKER,
    Case,
    DataError,
    manifest_path,
    read_manifest,
    write_manifest,
)
from . import phantoms

TASKS = ("segmentation", "classification")
FORMATS = ("nifti", "dicom", "png")
DEFAULT_CASES = 40
MARKER = SYNTHETIC_MARKER
# Everything dummy-data writes into its folder; a rerun replaces these (splits.json described
# the old data, so it goes too) and leaves anything else alone.
OWNED = ("images", "labels", "labels_rater2", MANIFEST, SPLITS, MARKER)

DEFAULT_CLASSES = ("normal", "nodule")
DEFAULT_CLASS_FRACTIONS = (0.7, 0.3)
NORMAL_NAMES = ("normal", "negative", "healthy", "no_finding", "no finding", "none", "0", "benign")
STUDIES_PER_PATIENT = (0.55, 0.3, 0.15)  # probability of 1, 2, 3 studies
LESIONS_PER_CASE = (0.8, 0.2)  # probability of 1, 2 lesions (segmentation)
RATER2_DISAGREES = 0.4  # share of segmentation cases the second rater outlines differently
RATER2_FLIPS = 0.12  # share of classification cases the second rater labels differently
DUPLICATE_SHARE = 0.05  # exact duplicates, and as many near duplicates, per case
MIN_CASES_FOR_DUPLICATES = 6
DISTINCT_BELOW = 0.96  # thumbnail correlation allowed between studies that are not duplicates
MAX_REDRAWS = 10
PNG_WINDOW_HU = (-160.0, 240.0)  # CT slices become 8-bit PNGs through this window
LIKE_SAMPLE = 6  # images read from a --like dataset
LIKE_MAX_SHAPE = {3: (96, 96, 48), 2: (128, 128)}
# Classification findings per dimensionality: HU above the organ (3D CT), detector units above
# the lung (2D radiographs).
CLASSIFICATION_CONTRAST = {3: (150.0, 250.0), 2: (1000.0, 1600.0)}
# --channels N: channel 1 is the CT image; channel k > 1 maps its HU through a piecewise-linear
# contrast (another sequence's look of the same anatomy) and gets its own noise. Points: air,
# lung, fat, soft tissue, organ, lesion (organ + 60..100 HU), bone, dense bone.
CHANNEL_HU = (-1000.0, -850.0, -100.0, 25.0, 60.0, 140.0, 400.0, 1000.0)
CHANNEL_CONTRASTS = (
    (-150.0, -140.0, 200.0, 40.0, 80.0, 20.0, 120.0, 150.0),  # fat bright, lesion dark
    (-150.0, -120.0, 100.0, 60.0, 20.0, 180.0, -50.0, -50.0),  # lesion bright, organ dark
    (-150.0, -150.0, 60.0, 80.0, 50.0, 220.0, 0.0, 0.0),  # lesion brightest, fat dim
)
CHANNEL_GAMMAS = (0.6, 1.6, 2.4)  # radiographs: detector values through another curve
CHANNEL_NOISE = 10.0  # HU-like units (radiographs: detector units x 4)
SLICE_STEP = 1 / 64  # slice spacing is rounded to this (mm), so DICOM positions print exactly


@dataclass(frozen=True)
class DatasetSpec:
    """What to generate.

    Attributes:
        task, spatial_dims, fmt, cases, seed: as for :func:`generate_dataset`.
        shape: array shape, ``(X, Y, Z)`` or ``(X, Y)``.
        spacing: mm per voxel along the same axes.
        classes: class names, the one without a finding first (classification).
        class_fractions: the share of each class.
        finding_radius: typical lesion/nodule semi-axis, as a fraction of the field of view.
        finding_contrast: range of a finding's contrast, HU above the organ (CT) or detector
            units above the lung (radiographs); ``None``: the phantom's default.
        studies_per_patient: probabilities of 1, 2 and 3 studies per patient.
        source: what was measured on a ``like`` dataset (``None`` otherwise).
        channels: co-registered images per case (``image_ch1 ... image_chN`` columns when
            more than 1; see :func:`extra_channel`).
    """

    task: str
    spatial_dims: int
    fmt: str
    cases: int
    seed: int
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    classes: tuple[str, ...] = DEFAULT_CLASSES
    class_fractions: tuple[float, ...] = DEFAULT_CLASS_FRACTIONS
    finding_radius: float = 0.3
    finding_contrast: tuple[float, float] | None = None
    studies_per_patient: tuple[float, float, float] = STUDIES_PER_PATIENT
    source: dict[str, Any] | None = None
    channels: int = 1

    @property
    def modality(self) -> str:
        """``CT`` (volumes, slices) or ``DX`` (2D classification: radiographs)."""
        return "DX" if self.task == "classification" and self.spatial_dims == 2 else "CT"


@dataclass
class Study:
    """One generated image with its labels and where it came from."""

    patient: int  # patient number before ids are given
    visit: int  # 0 for the first study of a patient
    image: np.ndarray
    affine: np.ndarray
    mask: np.ndarray | None = None  # segmentation
    label: str | None = None  # classification
    rater2: np.ndarray | str | None = None
    rater2_mode: str = "agree"  # agree, eroded, shifted, flipped
    kind: str = "original"  # original, exact_duplicate, near_duplicate
    source: int | None = None  # index (before shuffling) of the study a duplicate copies
    source_id: str = ""  # case id of that study
    case_id: str = ""
    patient_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# --- the entry point -------------------------------------------------------------------------


def generate_dataset(
    out: str | Path,
    *,
    task: str,
    spatial_dims: int,
    fmt: str,
    cases: int | None = None,
    seed: int = 0,
    like: str | Path | None = None,
    shape: Sequence[int] | None = None,
    channels: int = 1,
) -> Path:
    """Write a synthetic dataset (images, labels, ``manifest.csv``) into ``out``.

    Args:
        out: the dataset folder. It must be missing, empty, or made by an earlier dummy-data run
            (then it is replaced); the new data is assembled next to it and moved in at the end.
        task: ``segmentation`` or ``classification``.
        spatial_dims: 3 (volumes) or 2 (images).
        fmt: ``nifti``, ``dicom`` or ``png`` (2D only).
        cases: number of cases; ``None`` means 40, or the ``like`` dataset's size if smaller.
        seed: the same seed and arguments give the same voxels, labels and manifest.
        like: a dataset folder (with ``manifest.csv``) to make a smaller synthetic twin of.
        shape: array shape instead of the default (64 x 64 x 32, or 128 x 128 for 2D).
        channels: co-registered images per case, each the same anatomy in another contrast
            (multi-sequence MR-like); more than 1 writes ``image_ch1 ... image_chN`` manifest
            columns (NIfTI and PNG only). 1 writes exactly what it always has.

    Returns:
        The path of the manifest written.

    Raises:
        ValueError: an unknown task, dimensionality or format, png with 3D, ``cases < 1``,
            a negative seed, a shape of the wrong length, ``channels < 1``, or several
            channels as DICOM.
        DataError: ``out`` is a file or a non-empty folder dummy-data did not make; ``like``
            has no manifest or images of another dimensionality.
    """
    check_arguments(task, spatial_dims, fmt, cases, seed, shape)
    if not isinstance(channels, int | np.integer) or channels < 1:
        raise ValueError(f"channels must be a whole number >= 1, got {channels!r}")
    if channels > 1 and fmt == "dicom":
        raise ValueError("several channels are written as nifti or png, not dicom")
    out = Path(out)
    check_target(out)
    if like is None:
        spec = default_spec(task, spatial_dims, fmt, cases or DEFAULT_CASES, seed, shape)
    else:
        spec = spec_like(Path(like), task, spatial_dims, fmt, cases, seed, shape)
    spec = replace(spec, channels=int(channels))
    studies = simulate(spec)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.dummy-data-{uuid.uuid4().hex[:8]}"
    try:
        write_dataset(staging, spec, studies, like)
        install(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return manifest_path(out)


def check_arguments(
    task: str,
    spatial_dims: int,
    fmt: str,
    cases: int | None,
    seed: int,
    shape: Sequence[int] | None,
) -> None:
    """Raise ``ValueError`` saying what is expected for any argument out of range."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "png" and spatial_dims != 2:
        raise ValueError("png holds 2D images only: use nifti or dicom for spatial_dims=3")
    if cases is not None and (not isinstance(cases, int | np.integer) or cases < 1):
        raise ValueError(f"cases must be a whole number >= 1, got {cases!r}")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a whole number >= 0, got {seed!r}")
    if shape is not None and (len(shape) != spatial_dims or min(shape) < 4):
        raise ValueError(f"shape must be {spatial_dims} sizes of at least 4, got {tuple(shape)}")


# --- what to generate ------------------------------------------------------------------------


def default_spec(
    task: str,
    spatial_dims: int,
    fmt: str,
    cases: int,
    seed: int,
    shape: Sequence[int] | None = None,
) -> DatasetSpec:
    """The built-in dataset: 64 x 64 x 32 volumes of 0.8 x 0.8 x 2.5 mm, or 128 x 128 images.

    2D segmentation images are coronal slices (0.8 mm across, 2.5 mm from head to feet, as a
    coronal reformat of a thick-slice CT); radiographs have 2.7 x 3.4 mm pixels (a 35 x 43 cm
    detector squeezed into a square image).
    """
    if spatial_dims == 3:
        default_shape, spacing = (64, 64, 32), (0.8, 0.8, 2.5)
    elif task == "segmentation":
        default_shape, spacing = (128, 128), (0.8, 2.5)
    else:
        default_shape, spacing = (128, 128), (2.7, 3.4)
    radius = 0.3 if task == "segmentation" else (0.2 if spatial_dims == 3 else 0.14)
    # Classification findings are made denser than a segmentation target: a CPU-sized network
    # trained on a few hundred images must tell a whole image apart by them (issue: the demo
    # classifier stayed at chance with the segmentation lesion's 60..100 HU).
    contrast = None if task == "segmentation" else CLASSIFICATION_CONTRAST[spatial_dims]
    return DatasetSpec(
        task=task,
        spatial_dims=spatial_dims,
        fmt=fmt,
        cases=cases,
        seed=seed,
        shape=tuple(int(s) for s in (shape or default_shape)),
        spacing=spacing,
        finding_radius=radius,
        finding_contrast=contrast,
    )


def spec_like(
    like: Path,
    task: str,
    spatial_dims: int,
    fmt: str,
    cases: int | None,
    seed: int,
    shape: Sequence[int] | None = None,
) -> DatasetSpec:
    """Measure a dataset and describe a smaller synthetic twin of it.

    Reads the manifest and up to ``LIKE_SAMPLE`` images (and masks) spread over it: their
    dimensionality, median shape and spacing, the foreground fraction of the masks
    (segmentation), the class counts (classification) and the studies per patient.

    Raises:
        DataError: no manifest in ``like``, unreadable files, or images whose dimensionality
            differs from ``spatial_dims``.
    """
    if not manifest_path(like).is_file():
        raise DataError(
            f"--like '{like}' has no {MANIFEST}: point it at a dataset folder that lists its "
            "cases in one"
        )
    rows = read_manifest(like, task)
    step = max(1, len(rows) // LIKE_SAMPLE)
    sample = rows[::step][:LIKE_SAMPLE]
    images = [read_image(case.image) for case in sample]
    dims = sorted({image.ndim for image in images})
    if dims != [spatial_dims]:
        found = " and ".join(f"{d}D" for d in dims)
        raise DataError(
            f"--like '{like}' holds {found} images but this project has spatial_dims="
            f"{spatial_dims}: set spatial_dims to match the data"
        )
    src_shape = tuple(int(v) for v in np.median([im.shape for im in images], axis=0))
    src_spacing = tuple(float(v) for v in np.median([im.spacing for im in images], axis=0))
    new_shape, new_spacing = downscale(src_shape, src_spacing, LIKE_MAX_SHAPE[spatial_dims])
    if shape is not None:
        new_spacing = snap(
            [sp * s / n for sp, s, n in zip(src_spacing, src_shape, shape, strict=True)]
        )
        new_shape = tuple(int(n) for n in shape)
    source: dict[str, Any] = {
        "folder": str(like),
        "cases": len(rows),
        "patients": len({case.patient_id for case in rows}),
        "shape": list(src_shape),
        "spacing": [round(s, 4) for s in src_spacing],
    }
    spec = default_spec(task, spatial_dims, fmt, 1, seed)
    spec = replace(
        spec,
        cases=cases or min(len(rows), DEFAULT_CASES),
        shape=new_shape,
        spacing=new_spacing,
        studies_per_patient=studies_per_patient([case.patient_id for case in rows]),
    )
    if task == "segmentation":
        fractions = [
            float(np.mean(read_label(case.label, image).array > 0))
            for case, image in zip(sample, images, strict=True)
        ]
        fraction = float(np.mean(fractions))
        source["foreground_fraction"] = round(fraction, 6)
        spec = replace(spec, finding_radius=radius_for_fraction(fraction, spatial_dims))
    else:
        counts = Counter(str(case.label) for case in rows)
        classes = order_classes(counts)
        source["class_counts"] = {name: counts[name] for name in classes}
        spec = replace(
            spec,
            classes=classes,
            class_fractions=tuple(counts[name] / len(rows) for name in classes),
        )
    return replace(spec, source=source)


def contrast_of(spec: DatasetSpec) -> tuple[tuple[float, float], ...]:
    """``(contrast,)`` to pass on to the phantom's finding sampler, or ``()`` for its default."""
    return () if spec.finding_contrast is None else (spec.finding_contrast,)


def snap(spacing: Sequence[float]) -> tuple[float, ...]:
    """Spacings rounded to 0.1 um, the slice spacing (third axis) to ``SLICE_STEP``.

    Slice positions are the origin plus multiples of the slice spacing; with a spacing of whole
    64ths of a mm they are exact binary numbers and print in DICOM's 16 characters.
    """
    rounded = [max(1e-4, round(float(s), 4)) for s in spacing]
    if len(rounded) == 3:
        rounded[2] = max(SLICE_STEP, round(rounded[2] / SLICE_STEP) * SLICE_STEP)
    return tuple(rounded)


def downscale(
    shape: Sequence[int], spacing: Sequence[float], max_shape: Sequence[int]
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Shrink ``shape`` by one factor so that it fits ``max_shape``, keeping the field of view.

    Returns:
        The new shape (at least 4 per axis) and the spacing that covers the same millimetres.
    """
    factor = max(1.0, *(s / m for s, m in zip(shape, max_shape, strict=True)))
    new_shape = tuple(max(4, round(s / factor)) for s in shape)
    new_spacing = snap([sp * s / n for sp, s, n in zip(spacing, shape, new_shape, strict=True)])
    return new_shape, new_spacing


def studies_per_patient(patient_ids: Sequence[str]) -> tuple[float, float, float]:
    """Shares of patients with 1, 2 and 3+ studies; at least 20% have several (a pitfall)."""
    counts = Counter(Counter(patient_ids).values())
    sizes = np.array([counts[1], counts[2], sum(n for k, n in counts.items() if k >= 3)], float)
    shares = sizes / sizes.sum() if sizes.sum() else np.array(STUDIES_PER_PATIENT)
    if shares[1] + shares[2] < 0.2:
        shares = np.array([0.8, 0.15, 0.05])
    return (float(shares[0]), float(shares[1]), float(shares[2]))


def order_classes(counts: Counter[str]) -> tuple[str, ...]:
    """Class names with the one meaning "no finding" first (else the most frequent), then sorted."""
    names = sorted(counts)
    normal = [n for n in names if n.lower() in NORMAL_NAMES]
    first = normal[0] if normal else max(names, key=lambda n: (counts[n], n))
    return (first, *(n for n in names if n != first))


def expected_lesions() -> float:
    return sum((k + 1) * p for k, p in enumerate(LESIONS_PER_CASE))


def radius_for_fraction(fraction: float, spatial_dims: int) -> float:
    """The lesion semi-axis (normalized) that makes masks cover ``fraction`` of the voxels.

    3D: ``E[lesions] * 4/3 pi r^3 / 8`` of the ``[-1, 1]^3`` cube; 2D (slices through a
    lesion's center): ``pi r^2 / 4`` of the square. Clipped to 0.03..0.45.
    """
    fraction = max(float(fraction), 1e-6)
    size = 1.025  # mean of the 0.75..1.3 scale of each semi-axis
    if spatial_dims == 3:
        volume = expected_lesions() * 4 / 3 * math.pi * size**3 * phantoms.LESION_Z_SCALE
        radius = (8 * fraction / volume) ** (1 / 3)
    else:
        radius = math.sqrt(4 * fraction / (math.pi * size**2))
    return float(np.clip(radius, 0.03, 0.45))


# --- generating the studies ------------------------------------------------------------------


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """An independent generator per (seed, stage, item): changing one stage leaves the others."""
    return np.random.default_rng([seed, *keys])


def simulate(spec: DatasetSpec) -> list[Study]:
    """Draw every study, the second rater, the duplicates, and give case and patient ids.

    Returns:
        The studies in case-id order.
    """
    n_dup = pitfall_count(spec.cases)
    n_unique = spec.cases - 2 * n_dup
    patients = assign_patients(rng_for(spec.seed, 1), n_unique, spec.studies_per_patient)
    classes = assign_classes(rng_for(spec.seed, 2), n_unique, spec.class_fractions)
    studies = draw_distinct_studies(spec, patients, classes)
    add_second_rater(spec, rng_for(spec.seed, 3), studies)
    add_duplicates(spec, rng_for(spec.seed, 4), studies, n_dup, n_patients=patients[-1][0] + 1)
    return name_studies(rng_for(spec.seed, 5), studies)


def pitfall_count(cases: int) -> int:
    """Exact duplicates to inject (as many near duplicates): 5% of the cases, at least 1 from 6."""
    return max(1, round(cases * DUPLICATE_SHARE)) if cases >= MIN_CASES_FOR_DUPLICATES else 0


def assign_patients(
    rng: np.random.Generator, n: int, probabilities: Sequence[float]
) -> list[tuple[int, int]]:
    """``(patient, visit)`` for ``n`` studies: patients get 1-3 studies, at least one gets 2+."""
    pairs: list[tuple[int, int]] = []
    patient = 0
    while len(pairs) < n:
        size = min(int(rng.choice([1, 2, 3], p=np.asarray(probabilities))), n - len(pairs))
        pairs += [(patient, visit) for visit in range(size)]
        patient += 1
    if n >= 3 and all(visit == 0 for _, visit in pairs):
        pairs[-1] = (pairs[-2][0], 1)  # make the last patient a follow-up of the one before
    return pairs


def assign_classes(rng: np.random.Generator, n: int, fractions: Sequence[float]) -> list[int]:
    """Class index per study with exactly the given shares (largest remainders), shuffled."""
    quotas = np.asarray(fractions, float) * n
    counts = np.floor(quotas).astype(int)
    for i in np.argsort(-(quotas - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    if n >= len(fractions):  # every class appears at least once
        for i in np.flatnonzero(counts == 0):
            counts[i] += 1
            counts[int(np.argmax(counts))] -= 1
    labels = np.repeat(np.arange(len(fractions)), counts)
    return [int(v) for v in rng.permutation(labels)]


def findings_for_class(index: int) -> tuple[int, float]:
    """(number of findings, size factor) that tells class ``index`` apart (0: no finding)."""
    if index == 0:
        return 0, 1.0
    return 1 + (index - 1) % 3, 1.0 + 0.5 * ((index - 1) // 3)


def draw_distinct_studies(
    spec: DatasetSpec, patients: list[tuple[int, int]], classes: list[int]
) -> list[Study]:
    """Draw every study, redrawing any that looks like a near duplicate of an earlier one.

    Follow-ups of a patient share the anatomy, and chance can make two scans alike; the only
    near duplicates in the dataset must be the injected ones (the answer key), so a study whose
    thumbnail (as ``data/inspect/duplicates.py`` compares them) correlates above ``DISTINCT_BELOW`` with
    an earlier one is drawn again, up to ``MAX_REDRAWS`` times; so is a segmentation study
    whose lesion hides behind bone (an empty mask).
    """
    studies: list[Study] = []
    prints: list[np.ndarray] = []
    for index, (patient, visit) in enumerate(patients):
        best: tuple[float, Study, np.ndarray] | None = None
        for attempt in range(MAX_REDRAWS + 1):
            study = draw_study(spec, index, patient, visit, classes[index], attempt)
            thumb = thumbnail(stored_array(spec, study.image))
            closest = max((float(thumb @ other) for other in prints), default=-1.0)
            if study.mask is not None and not study.mask.any():
                closest = 2.0  # worse than any correlation
            if best is None or closest < best[0]:
                best = (closest, study, thumb)
            if closest < DISTINCT_BELOW:
                break
        assert best is not None
        studies.append(best[1])
        prints.append(best[2])
    return studies


def draw_study(
    spec: DatasetSpec, index: int, patient: int, visit_no: int, class_index: int, attempt: int = 0
) -> Study:
    """One study of ``patient``: the patient's anatomy, this visit's pose, findings and noise."""
    anatomy_rng = rng_for(spec.seed, 10, patient)
    rng = rng_for(spec.seed, 11, index, attempt)
    affine = make_affine(spec, rng)
    if spec.modality == "DX":
        anatomy = phantoms.sample_xray_anatomy(anatomy_rng)
        count, size = findings_for_class(class_index)
        findings = phantoms.sample_xray_findings(
            rng, anatomy, count, spec.finding_radius * size, *contrast_of(spec)
        )
        visit = phantoms.sample_xray_visit(rng)
        image = phantoms.render_xray(spec.shape, anatomy, visit, findings, rng)
        return Study(patient, visit_no, image, affine, label=spec.classes[class_index])

    anatomy = phantoms.sample_ct_anatomy(anatomy_rng)
    if spec.task == "segmentation":
        count = 1 + int(rng.choice(len(LESIONS_PER_CASE), p=LESIONS_PER_CASE))
        size = 1.0
    else:
        count, size = findings_for_class(class_index)
    findings = phantoms.sample_ct_findings(
        rng, anatomy, count, spec.finding_radius * size, *contrast_of(spec)
    )
    ct_visit = phantoms.sample_ct_visit(rng, anatomy)
    plane_y = findings[0].center[1] if findings else anatomy.organ_center[1]
    image, mask = phantoms.render_ct(spec.shape, anatomy, ct_visit, findings, rng, plane_y=plane_y)
    if spec.task == "segmentation":
        return Study(patient, visit_no, image, affine, mask=mask)
    return Study(patient, visit_no, image, affine, label=spec.classes[class_index])


def make_affine(spec: DatasetSpec, rng: np.random.Generator) -> np.ndarray:
    """Voxel-to-RAS affine as a scanner writes it: x and y flipped (DICOM's LPS frame), the image
    centered left-right, table height and position varying per study.

    Volumes are axial (X: right to left, Y: front to back, Z: feet to head); 2D images are
    coronal (X: right to left, Y: head to feet) with the slice normal pointing backwards.
    """
    sp = spec.spacing
    affine = np.eye(4)
    center = [(n - 1) * s / 2 for n, s in zip(spec.shape, sp, strict=True)]
    quarter = 0.25  # origins are whole quarters of a mm so that DICOM positions print exactly
    if spec.spatial_dims == 3:
        affine[:3, :3] = np.diag([-sp[0], -sp[1], sp[2]])
        origin = [
            center[0],
            center[1] + float(rng.uniform(-30, 30)),
            float(rng.uniform(-450, -150)),
        ]
    else:
        thickness = 2.0
        affine[:3, :3] = [[-sp[0], 0, 0], [0, 0, -thickness], [0, -sp[1], 0]]
        origin = [center[0], float(rng.uniform(-20, 20)), center[1] + float(rng.uniform(0, 200))]
    affine[:3, 3] = [round(v / quarter) * quarter for v in origin]
    return affine


def add_second_rater(spec: DatasetSpec, rng: np.random.Generator, studies: list[Study]) -> None:
    """Give every study a second annotation that differs on some (never all) of them.

    Segmentation: a tighter outline (eroded in-plane by one voxel) or one shifted by 1-2 voxels;
    classification: another class.
    """
    n = len(studies)
    share = RATER2_DISAGREES if spec.task == "segmentation" else RATER2_FLIPS
    n_differ = min(max(1, round(share * n)), n - 1) if n >= 2 else 0
    if spec.task == "classification" and len(spec.classes) < 2:
        n_differ = 0
    differ = set(rng.permutation(n)[:n_differ].tolist())
    for i, study in enumerate(studies):
        if spec.task == "classification":
            study.rater2 = study.label
            if i in differ:
                others = [c for c in spec.classes if c != study.label]
                study.rater2 = others[int(rng.integers(len(others)))]
                study.rater2_mode = "flipped"
            continue
        assert study.mask is not None
        study.rater2 = study.mask.copy()
        if i not in differ:
            continue
        eroded = erode_in_plane(study.mask)
        if rng.random() < 2 / 3 and eroded.any() and not np.array_equal(eroded, study.mask):
            study.rater2, study.rater2_mode = eroded, "eroded"
        else:
            study.rater2, study.rater2_mode = shift_in_plane(study.mask, rng), "shifted"


def erode_in_plane(mask: np.ndarray) -> np.ndarray:
    """``mask`` eroded by one voxel within each slice (the first two axes)."""
    structure = ndimage.generate_binary_structure(2, 1)
    if mask.ndim == 3:
        structure = structure[:, :, None]
    return ndimage.binary_erosion(mask > 0, structure=structure).astype(mask.dtype)


def shift_in_plane(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``mask`` moved by 1-2 voxels along each of the first two axes (zeros shifted in)."""
    moves = [int(rng.choice([-2, -1, 1, 2])) for _ in range(2)] + [0] * (mask.ndim - 2)
    shifted = np.zeros_like(mask)
    src = tuple(slice(max(0, -m), n - max(0, m)) for m, n in zip(moves, mask.shape, strict=True))
    dst = tuple(slice(max(0, m), n - max(0, -m)) for m, n in zip(moves, mask.shape, strict=True))
    shifted[dst] = mask[src]
    return shifted


def add_duplicates(
    spec: DatasetSpec, rng: np.random.Generator, studies: list[Study], n_dup: int, n_patients: int
) -> None:
    """Append ``n_dup`` exact duplicates and ``n_dup`` near duplicates of distinct studies.

    The first exact duplicate is filed under a new patient (a re-export with a new pseudonym, the
    kind that patient grouping cannot catch); the others keep their patient. Near duplicates are
    the same image with a little noise (a second reconstruction), on alternating patients.
    """
    if n_dup == 0:
        return
    sources = rng.choice(len(studies), size=2 * n_dup, replace=False).tolist()
    new_patient = n_patients
    for k, src in enumerate(sources):
        original = studies[src]
        near = k >= n_dup
        image = original.image
        if near:
            sigma = 20.0 if spec.modality == "DX" else 6.0
            noisy = image.astype(np.float32) + rng.normal(0, sigma, image.shape)
            low, high = phantoms.XRAY_RANGE if spec.modality == "DX" else phantoms.HU_RANGE
            image = np.clip(np.round(noisy), low, high).astype(image.dtype)
        own_patient = (k % 2 == 1) if near else (k > 0)
        patient = original.patient if own_patient else new_patient
        new_patient += 0 if own_patient else 1
        studies.append(
            replace(
                original,
                patient=patient,
                image=image,
                affine=original.affine.copy(),
                kind="near_duplicate" if near else "exact_duplicate",
                source=src,
                extra={},
            )
        )


def name_studies(rng: np.random.Generator, studies: list[Study]) -> list[Study]:
    """Shuffle the studies, then number cases in that order and patients by first appearance."""
    order = rng.permutation(len(studies)).tolist()
    width = max(3, len(str(len(studies) - 1)))
    patients: dict[int, str] = {}
    for position, index in enumerate(order):
        study = studies[index]
        study.case_id = f"case_{position:0{width}d}"
        if study.patient not in patients:
            patients[study.patient] = f"patient_{len(patients):0{width}d}"
        study.patient_id = patients[study.patient]
    for study in studies:
        if study.source is not None:
            study.source_id = studies[study.source].case_id
    return [studies[i] for i in order]


# --- writing ---------------------------------------------------------------------------------


def write_dataset(folder: Path, spec: DatasetSpec, studies: list[Study], like: Path | None) -> Path:
    """Write every image and label, the manifest and the marker into ``folder``."""
    folder.mkdir(parents=True)
    cases = [write_study(folder, spec, study, i) for i, study in enumerate(studies)]
    manifest = write_manifest(folder, cases)
    atomic_write_text(folder / MARKER, json.dumps(describe(spec, studies, like), indent=2) + "\n")
    return manifest


def stored_array(spec: DatasetSpec, image: np.ndarray) -> np.ndarray:
    """The voxel values as a reader will get them back from ``spec.fmt``."""
    return to_png(spec, image) if spec.fmt == "png" else image


def to_png(spec: DatasetSpec, image: np.ndarray) -> np.ndarray:
    """CT slices through ``PNG_WINDOW_HU`` to uint8; radiographs keep their 12-bit values (uint16)."""
    if spec.modality == "DX":
        return image.astype(np.uint16)
    low, high = PNG_WINDOW_HU
    scaled = (image.astype(np.float32) - low) / (high - low) * 255
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def extra_channel(spec: DatasetSpec, image: np.ndarray, k: int) -> np.ndarray:
    """Channel ``k`` (from 2) of a study whose first channel is ``image``: the same anatomy in
    another contrast, with its own noise.

    CT-like images go through ``CHANNEL_CONTRASTS`` (a lesion darker than the organ in one
    channel, brighter in the others); radiographs through a gamma curve. The noise is seeded
    by the image's own bytes, so exact duplicates stay exact in every channel.

    Args:
        spec: the dataset (its modality).
        image: the first channel, int16 HU (CT) or detector values (radiographs).
        k: the channel number, 2 or more.

    Returns:
        An array of ``image``'s shape and dtype.
    """
    if k < 2:
        raise ValueError(f"k must be 2 or more (channel 1 is the image itself), got {k}")
    seed = int.from_bytes(hashlib.sha256(image.tobytes()).digest()[:8], "little")
    noise = np.random.default_rng([seed, k]).standard_normal(image.shape)
    values = image.astype(np.float64)
    if spec.modality == "DX":
        gamma = CHANNEL_GAMMAS[(k - 2) % len(CHANNEL_GAMMAS)]
        out = 4095.0 * np.clip(values / 4095.0, 0, 1) ** gamma + 4 * CHANNEL_NOISE * noise
        return np.clip(np.round(out), 0, 4095).astype(image.dtype)
    levels = CHANNEL_CONTRASTS[(k - 2) % len(CHANNEL_CONTRASTS)]
    out = np.interp(values, CHANNEL_HU, levels) + CHANNEL_NOISE * noise
    return np.round(out).astype(image.dtype)


def write_study(folder: Path, spec: DatasetSpec, study: Study, position: int) -> Case:
    """Write one study's image and labels in ``spec.fmt``; return its manifest row."""
    cid = study.case_id
    channels: dict[str, Path] = {}
    if spec.channels > 1:  # image_ch1 ... image_chN, all on the study's grid
        extra = [extra_channel(spec, study.image, k) for k in range(2, spec.channels + 1)]
        for k, array in enumerate([study.image, *extra], start=1):
            name = f"ch{k}"
            if spec.fmt == "png":
                channels[name] = write_png(
                    to_png(spec, array), folder / "images" / f"{cid}_{name}.png"
                )
            else:
                path = folder / "images" / f"{cid}_{name}.nii.gz"
                channels[name] = write_nifti(array, study.affine, path)
        image_path = channels["ch1"]
    elif spec.fmt == "png":
        image_path = write_png(to_png(spec, study.image), folder / "images" / f"{cid}.png")
    elif spec.fmt == "nifti":
        image_path = write_nifti(study.image, study.affine, folder / "images" / f"{cid}.nii.gz")
    else:
        image_path = write_study_dicom(folder, spec, study, position)

    if spec.task == "classification":
        assert study.label is not None and isinstance(study.rater2, str)
        return Case(
            cid, study.patient_id, image_path, study.label, {"rater2": study.rater2}, channels
        )

    def write_mask(mask: np.ndarray, sub: str) -> Path:
        if spec.fmt == "png":
            return write_png(mask.astype(np.uint8), folder / sub / f"{cid}.png")
        return write_nifti(mask.astype(np.uint8), study.affine, folder / sub / f"{cid}.nii.gz")

    assert study.mask is not None and isinstance(study.rater2, np.ndarray)
    label = write_mask(study.mask, "labels")
    rater2 = write_mask(study.rater2, "labels_rater2")
    return Case(cid, study.patient_id, image_path, label, {"rater2": rater2}, channels)


def dicom_uid(spec: DatasetSpec, *parts: object) -> str:
    """A DICOM UID derived from the seed and ``parts``: the same on every rerun."""
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["dummy-data", str(spec.seed), *(str(p) for p in parts)])


def write_study_dicom(folder: Path, spec: DatasetSpec, study: Study, position: int) -> Path:
    """A 3D study as a series folder, a 2D one as a single file, with UIDs per study and series.

    Every third series numbers its slices backwards and every third one (offset by one) in a
    shuffled order; every fourth patient's headers still carry a (fake) name and birth date.
    Re-exported duplicates get new UIDs, as an anonymizer would give them.
    """
    rng = rng_for(spec.seed, 6, position)
    if study.kind == "original":
        key: tuple[object, ...] = ("patient", study.patient, study.visit)
    else:
        key = ("case", study.case_id)
    extra: dict[str, Any] = {
        "StudyDate": f"{2015 + study.patient % 8}{1 + study.visit * 3:02d}{1 + study.patient % 27:02d}",
        "StudyDescription": "dummy-data",
        "SeriesDescription": "synthetic radiograph" if spec.modality == "DX" else "synthetic CT",
        "SeriesNumber": 1,
        "Manufacturer": "dummy-data",
        "FrameOfReferenceUID": dicom_uid(spec, *key, "frame"),
    }
    if int(study.patient_id.rsplit("_", 1)[-1]) % 4 == 1:
        extra["PatientName"] = f"Dummy^{study.patient_id}"
        extra["PatientBirthDate"] = f"19{50 + study.patient % 40}0{1 + study.patient % 9}15"
    slices = 1 if study.image.ndim == 2 else study.image.shape[2]
    numbers = list(range(1, slices + 1))
    if slices > 1 and position % 3 == 1:
        numbers = numbers[::-1]
        study.extra["instance_numbers"] = "reversed"
    elif slices > 1 and position % 3 == 2:
        numbers = [int(v) for v in rng.permutation(numbers)]
        study.extra["instance_numbers"] = "shuffled"
    if "PatientName" in extra:
        study.extra["identity_in_header"] = True
    target = folder / "images" / (study.case_id + (".dcm" if study.image.ndim == 2 else ""))
    write_dicom(
        study.image,
        study.affine,
        target,
        patient_id=study.patient_id,
        study_uid=dicom_uid(spec, *key, "study"),
        series_uid=dicom_uid(spec, *key, "series"),
        modality=spec.modality,
        rescale_intercept=0.0 if spec.modality == "DX" else -1024.0,
        instance_numbers=numbers,
        extra=extra,
    )
    return target


def describe(spec: DatasetSpec, studies: list[Study], like: Path | None) -> dict[str, Any]:
    """The marker's content: the parameters, the conventions used and the answer key."""
    groups: dict[str, list[str]] = {}
    for study in studies:
        groups.setdefault(study.patient_id, []).append(study.case_id)
    if spec.modality == "DX":
        intensity = "12-bit detector values 0..4095 (higher = more attenuation)"
    elif spec.fmt == "png":
        window = PNG_WINDOW_HU
        intensity = f"uint8: CT window {window[0]:g}..{window[1]:g} HU mapped to 0..255"
    else:
        intensity = "Hounsfield units (int16)"
    labels: dict[str, Any]
    if spec.task == "segmentation":
        labels = {"mask_values": {"0": "background", "1": "lesion"}}
    else:
        labels = {"classes": list(spec.classes)}
    return {
        "made_by": "dummy-data",
        "version": 1,
        "parameters": {
            "task": spec.task,
            "spatial_dims": spec.spatial_dims,
            "format": spec.fmt,
            "cases": spec.cases,
            "seed": spec.seed,
            "like": None if like is None else str(like),
        },
        "modality": spec.modality,
        "intensity": intensity,
        "shape": list(spec.shape),
        "spacing_mm": [float(s) for s in spec.spacing] if spec.fmt != "png" else None,
        **labels,
        "pitfalls": {
            "exact_duplicates": [
                [s.source_id, s.case_id] for s in studies if s.kind == "exact_duplicate"
            ],
            "near_duplicates": [
                [s.source_id, s.case_id] for s in studies if s.kind == "near_duplicate"
            ],
            "patients_with_several_studies": {p: c for p, c in groups.items() if len(c) > 1},
            "rater2_disagrees": {
                s.case_id: s.rater2_mode for s in studies if s.rater2_mode != "agree"
            },
            "dicom_instance_numbers_out_of_order": [
                s.case_id for s in studies if "instance_numbers" in s.extra
            ],
            "dicom_identity_in_header": [
                s.case_id for s in studies if s.extra.get("identity_in_header")
            ],
        },
        "source": spec.source,
        **(
            {
                "channels": {
                    "count": spec.channels,
                    "columns": [f"image_ch{k}" for k in range(1, spec.channels + 1)],
                    "contrast": "ch1 is the image; ch2.. the same anatomy through other "
                    "intensity curves (a lesion dark in ch2, bright in ch3 and ch4), own noise",
                }
            }
            if spec.channels > 1
            else {}
        ),
    }


# --- the folder ------------------------------------------------------------------------------


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The marker of a folder dummy-data made, or ``None`` (none, unreadable, or someone else's)."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("made_by") == "dummy-data" else None


def check_target(out: Path) -> None:
    """Refuse a file, or a non-empty folder that dummy-data did not make.

    Raises:
        DataError: naming the folder and what to do instead.
    """
    if out.exists() and not out.is_dir():
        raise DataError(f"'{out}' is a file, not a folder: choose another --out")
    if out.is_dir() and any(out.iterdir()) and read_marker(out) is None:
        raise DataError(
            f"'{out}' is not empty and was not made by dummy-data (no {MARKER}); "
            "refusing to write into it: choose another --out or empty it"
        )


def install(staging: Path, out: Path) -> None:
    """Move the new dataset from ``staging`` into ``out``, replacing only what dummy-data owns.

    The old owned entries are moved aside first and deleted only once the new ones are in (if
    a move fails, they are put back where their names are still free); the marker moves last.
    """
    out.mkdir(parents=True, exist_ok=True)
    trash = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    try:
        for name in OWNED:
            if name != MARKER and (out / name).exists():
                trash.mkdir(exist_ok=True)
                os.replace(out / name, trash / name)
        for entry in sorted(staging.iterdir(), key=lambda p: p.name == MARKER):
            os.replace(entry, out / entry.name)
    except BaseException:
        if trash.exists():
            for entry in trash.iterdir():
                if not (out / entry.name).exists():
                    os.replace(entry, out / entry.name)
        raise
    shutil.rmtree(trash, ignore_errors=True)
