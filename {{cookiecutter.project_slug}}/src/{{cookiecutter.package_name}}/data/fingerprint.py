"""The dataset's fingerprint, and the preprocessing it implies (``data.normalization: auto``).

Modelled on nnU-Net's dataset fingerprint (Isensee et al., 2021): one streamed pass over the
training cases keeps, per case, its format, DICOM ``Modality``, spacing and shape (after
reorienting to ``data.orientation``), orientation as stored, value range, and at most
:data:`FOREGROUND_SAMPLES` foreground intensities (all of them when there are fewer; else drawn
without replacement with a fixed seed). The *foreground* is the labelled voxels (mask > 0) of a
segmentation case; without masks, the voxels above -500 HU of a CT (the body, not the air
around it) and every voxel above the image's minimum otherwise (the background and padding of
MR and radiographs sit at the minimum). Memory stays bounded: one case at a time,
10,000 values kept per case.

Rules for ``auto`` (:func:`resolve_normalization`):

- every image a PNG: ``zscore`` (per-image z-score of the non-zero pixels; 8/16-bit
  radiographs have no physical unit);
- DICOM ``Modality`` CT, or values that look like Hounsfield units (a minimum between -3100
  and -500: air at about -1000, or the scanner's padding at -1024/-2048/-3024, which no MR or
  radiograph has): ``ct``, windowed at the 0.5 and 99.5 percentiles of the pooled labelled
  intensities (nnU-Net's CTNormalization), then z-scored inside the window. Without masks
  (classification) there is no labelled structure to take them from, and the whole body's
  percentiles make a window too wide for subtle findings: ``data.window`` is used (the default
  soft-tissue window [-200, 300]);
- DICOM ``Modality`` MR, or NIfTI values that are not in HU: ``mr`` (per-image z-score of the
  non-zero voxels, nnU-Net's ZScoreNormalization);
- other DICOM modalities (CR, DX, MG, US, ...): ``zscore``.

The fingerprint is cached in ``<dataset>/fingerprints.json`` under a key made of the content
hash of the cases' files (:class:`.file_hashes.FileHashes`, so unchanged files are not read
again), the orientation and :data:`VERSION`: it is computed once per training set.

:func:`propose_spacing` is nnU-Net's rule for the target spacing (the median spacing; for a
strongly anisotropic axis, its 10th percentile). ``train`` only resamples when
``data.target_spacing`` is set, and warns when the training cases have mixed spacings without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config, DataConfig
from ..utils.io import atomic_write_text
from .file_hashes import FileHashes
from .io import Image, read_image, read_label
from .manifest import Case
from .orientation import axis_codes, from_setting, reorient
from .split import dataset_hash

VERSION = 1
FINGERPRINTS = "fingerprints.json"
KEEP_ENTRIES = 8  # fingerprints kept in the file (one per training set / orientation)
FOREGROUND_SAMPLES = 10_000  # foreground intensities kept per case (nnU-Net's number)
SEED = 1234  # of the foreground draw
HU_MINIMUM = (-3100.0, -500.0)  # a minimum in this range means Hounsfield units
BODY_HU = -500.0  # without masks, a CT's foreground is the voxels above this (not air)
PERCENTILES = (0.5, 99.5)  # of the pooled foreground: the CT window of ``auto``
ANISOTROPY = 3.0  # nnU-Net: an axis this many times coarser than the others is anisotropic
SPACING_DECIMALS = 3  # spacings equal to this many decimals (mm) count as one


@dataclass
class CaseFingerprint:
    """What one case contributes to the dataset's fingerprint.

    Attributes:
        case_id: the manifest's case id.
        format: ``nifti``, ``dicom`` or ``png``.
        modality: the DICOM ``Modality`` (``"CT"``, ``"MR"``, ...), ``""`` for other formats.
        dtype: the stored voxel type, e.g. ``"int16"``.
        orientation: axis codes of the grid as stored (``"LPS"``, ``"RAS"``; ``""`` for 2D).
        shape: voxels per axis after reorienting.
        spacing: mm per axis after reorienting.
        minimum: smallest finite value.
        maximum: largest finite value.
        foreground: float32 sample of the foreground intensities (at most
            :data:`FOREGROUND_SAMPLES`).
        foreground_voxels: how many foreground voxels the case has.
        labelled: the foreground is the mask's labelled voxels (not the body / non-background).
    """

    case_id: str
    format: str
    modality: str
    dtype: str
    orientation: str
    shape: list[int]
    spacing: list[float]
    minimum: float
    maximum: float
    foreground: np.ndarray
    foreground_voxels: int
    labelled: bool = False

    @property
    def hu(self) -> bool:
        """Whether the values look like Hounsfield units (see the module docstring)."""
        return HU_MINIMUM[0] <= self.minimum <= HU_MINIMUM[1]


def sample_foreground(values: np.ndarray, size: int = FOREGROUND_SAMPLES) -> np.ndarray:
    """All of ``values`` when there are at most ``size``, else ``size`` of them drawn without
    replacement with the fixed :data:`SEED` (float32, 1D)."""
    values = np.asarray(values, dtype=np.float32).ravel()
    if values.size <= size:
        return values
    rng = np.random.default_rng(SEED)
    return values[np.sort(rng.choice(values.size, size, replace=False))]


def case_fingerprint(
    case_id: str, image: Image, mask: np.ndarray | None = None, orientation: str | None = "RAS"
) -> CaseFingerprint:
    """Fingerprint one case.

    Args:
        case_id: the manifest's case id.
        image: the image as read (its first channel for a multi-channel case).
        mask: its mask's labels (segmentation), on the image's grid, or ``None``.
        orientation: the orientation training reorients to (spacings and shapes are given in
            it, so that they compare across cases stored differently); ``None``: as stored.

    Returns:
        The :class:`CaseFingerprint`.
    """
    stored = axis_codes(image.affine) if image.ndim == 3 else ""
    oriented = reorient(image, orientation)[0] if orientation else image
    array = image.array
    finite = array[np.isfinite(array)] if np.issubdtype(array.dtype, np.floating) else array
    low = float(finite.min()) if finite.size else 0.0
    high = float(finite.max()) if finite.size else 0.0
    if mask is not None:
        foreground = array[np.asarray(mask) > 0]
    else:  # the body of a CT (not the air around it), else what is above the background
        hu = HU_MINIMUM[0] <= low <= HU_MINIMUM[1]
        foreground = finite[finite > (BODY_HU if hu else low)] if finite.size else finite
    if np.issubdtype(foreground.dtype, np.floating):
        foreground = foreground[np.isfinite(foreground)]
    return CaseFingerprint(
        case_id=case_id,
        format=str(image.meta.get("format") or "nifti"),  # made in memory: like a NIfTI
        modality=str(image.meta.get("modality") or "").upper(),
        dtype=str(array.dtype),
        orientation=stored,
        shape=list(oriented.shape),
        spacing=[round(s, 6) for s in oriented.spacing],
        minimum=low,
        maximum=high,
        foreground=sample_foreground(foreground),
        foreground_voxels=int(foreground.size),
        labelled=mask is not None,
    )


def propose_spacing(
    spacings: Sequence[Sequence[float]], shapes: Sequence[Sequence[int]]
) -> list[float]:
    """nnU-Net's full-resolution target spacing: the median spacing per axis; when one axis is
    over :data:`ANISOTROPY` times coarser than the others *and* has under a third of their
    voxels, its 10th percentile instead (no finer than the other axes' coarsest).

    Args:
        spacings: ``(N, ndim)`` spacing of each case (mm).
        shapes: ``(N, ndim)`` voxels per axis of each case.

    Returns:
        One spacing per axis (mm).

    Raises:
        ValueError: no cases, or cases with different numbers of axes.
    """
    if not spacings or len({len(s) for s in spacings} | {len(s) for s in shapes}) != 1:
        raise ValueError("propose_spacing needs at least one case, all with the same axes")
    spacing = np.asarray(spacings, dtype=np.float64)
    target = np.percentile(spacing, 50, axis=0)
    size = np.percentile(np.asarray(shapes, dtype=np.float64), 50, axis=0)
    worst = int(np.argmax(target))
    others = [a for a in range(len(target)) if a != worst]
    if others:
        coarse = target[worst] > ANISOTROPY * max(target[others])
        thin = size[worst] * ANISOTROPY < min(size[others])
        if coarse and thin:
            axis = float(np.percentile(spacing[:, worst], 10))
            if axis < max(target[others]):
                axis = max(max(target[others]), axis) + 1e-5
            target[worst] = axis
    return [round(float(t), 4) for t in target]


def summarize(cases: Sequence[CaseFingerprint]) -> dict[str, Any]:
    """The dataset fingerprint (JSON-ready) from the per-case ones.

    Returns:
        ``cases``, ``formats``, ``modalities`` (DICOM), ``hu_cases``, ``dtypes``,
        ``orientations`` (as stored, cases per code), ``spacings`` and ``shapes`` (per case,
        reoriented), ``distinct_spacings``, ``median_spacing``, ``proposed_spacing``,
        ``intensity`` (pooled foreground: ``p00_5``, ``p99_5``, ``median``, ``mean``, ``std``,
        ``min``, ``max``, ``samples``) and ``modality``/``reason`` (:func:`classify`).

    Raises:
        ValueError: no cases.
    """
    if not cases:
        raise ValueError("a fingerprint needs at least one case")
    pooled = np.concatenate([c.foreground for c in cases]).astype(np.float64)
    spacings = [c.spacing for c in cases]
    shapes = [c.shape for c in cases]
    same_dims = len({len(s) for s in spacings}) == 1
    summary: dict[str, Any] = {
        "cases": len(cases),
        "formats": dict(Counter(c.format for c in cases)),
        "modalities": dict(Counter(c.modality for c in cases if c.modality)),
        "hu_cases": sum(c.hu for c in cases),
        "labelled": all(c.labelled for c in cases),
        "dtypes": dict(Counter(c.dtype for c in cases)),
        "orientations": dict(Counter(c.orientation for c in cases if c.orientation)),
        "minimum": min(c.minimum for c in cases),
        "maximum": max(c.maximum for c in cases),
        "spacings": spacings,
        "shapes": shapes,
        "distinct_spacings": len({tuple(round(v, SPACING_DECIMALS) for v in s) for s in spacings}),
        "median_spacing": (
            [float(v) for v in np.median(np.asarray(spacings), axis=0)] if same_dims else None
        ),
        "proposed_spacing": propose_spacing(spacings, shapes) if same_dims else None,
        "intensity": _pooled(pooled),
    }
    summary["modality"], summary["reason"] = classify(summary)
    return summary


def _pooled(values: np.ndarray) -> dict[str, float | int | None]:
    """Percentiles and moments of the pooled foreground sample (``None`` when empty)."""
    if values.size == 0:
        return dict.fromkeys(("p00_5", "p99_5", "median", "mean", "std", "min", "max"), None) | {
            "samples": 0
        }
    low, median, high = np.percentile(values, [PERCENTILES[0], 50, PERCENTILES[1]])
    return {
        "p00_5": float(low),
        "p99_5": float(high),
        "median": float(median),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
        "samples": int(values.size),
    }


def classify(summary: dict[str, Any]) -> tuple[str, str]:
    """``(modality, reason)``: ``"ct"``, ``"mr"``, ``"png"`` or ``"other"`` and why, by the
    rules of the module docstring (the majority of cases decides)."""
    n = summary["cases"]
    if summary["formats"].get("png", 0) == n:
        return "png", f"all {n} images are PNG (8/16-bit, no physical unit)"
    modalities = Counter(summary["modalities"])
    if modalities:
        name, count = modalities.most_common(1)[0]
        kind = {"CT": "ct", "MR": "mr"}.get(name, "other")
        return kind, f"DICOM Modality {name} in {count} of {n} cases"
    hu = summary["hu_cases"]
    if hu * 2 > n:
        return "ct", (
            f"values look like HU in {hu} of {n} cases (minimum between {HU_MINIMUM[0]:g} and "
            f"{HU_MINIMUM[1]:g}: air or CT padding)"
        )
    return "mr", (
        f"values are not in HU in {n - hu} of {n} cases (minimum {summary['minimum']:g}, no air "
        "near -1000)"
    )


@dataclass
class Resolution:
    """The preprocessing a run will use, and why.

    Attributes:
        normalization: ``ct``, ``mr``, ``zscore`` or ``none`` (never ``auto``).
        window: the CT window ``[low, high]`` (``ct`` only), else ``None``.
        message: one line saying what was chosen and why (``None`` for explicit settings).
        warnings: lines for settings that do not fit the data.
    """

    normalization: str
    window: list[float] | None
    message: str | None
    warnings: list[str]


def percentile_window(summary: dict[str, Any]) -> list[float]:
    """``[low, high]``: the pooled foreground's 0.5 and 99.5 percentiles, to 0.1 (HU); a
    constant foreground gets a window 1 wide so that ``low < high``.

    Raises:
        ValueError: the fingerprint has no foreground intensities.
    """
    it = summary["intensity"]
    if not it["samples"]:
        raise ValueError("the training cases have no foreground voxels to set a CT window from")
    low, high = round(float(it["p00_5"]), 1), round(float(it["p99_5"]), 1)
    return [low, high if high > low else low + 1.0]


def resolve_normalization(
    summary: dict[str, Any], requested: str, window: Sequence[float] | None
) -> Resolution:
    """Resolve ``data.normalization`` against the fingerprint.

    Args:
        summary: :func:`summarize`'s result over the training cases.
        requested: ``auto``, ``ct``, ``mr``, ``zscore`` or ``none``.
        window: ``data.window`` (used as it is by an explicit ``ct``).

    Returns:
        The :class:`Resolution`: explicit settings are kept (a ``ct`` window on data that is
        not in HU is a warning); ``auto`` follows the module docstring's rules.

    Raises:
        ValueError: an unknown ``requested``.
    """
    if requested not in ("auto", "ct", "mr", "zscore", "none"):
        raise ValueError(f"normalization must be auto, ct, mr, zscore or none, got {requested!r}")
    kind, reason = summary["modality"], summary["reason"]
    n = summary["cases"]
    if requested != "auto":
        warnings = []
        if requested == "ct" and kind != "ct":
            shown = f"[{window[0]:g}, {window[1]:g}] " if window else ""
            warnings.append(
                f"data.normalization is ct (window {shown}HU) but the training images do not "
                f"look like CT: {reason}; consider data.normalization=auto or mr"
            )
        used = list(window) if requested == "ct" and window else None  # only ct clips
        return Resolution(requested, used, None, warnings)
    if kind == "ct" and not (summary["labelled"] and summary["intensity"]["samples"]):
        # nnU-Net's window comes from the labelled structures; the whole body's percentiles
        # (classification) give a window far too wide for subtle findings.
        fallback = [float(v) for v in (window or DataConfig().window or (-1000.0, 1000.0))]
        why = "no masks" if not summary["labelled"] else "no labelled voxels"
        message = (
            f"normalization auto -> ct, window [{fallback[0]:g}, {fallback[1]:g}] HU (data.window: "
            f"{why} for the foreground percentiles over {n} training cases; {reason})"
        )
        return Resolution("ct", fallback, message, [])
    if kind == "ct":
        low, high = percentile_window(summary)
        message = (
            f"normalization auto -> ct, window [{low:g}, {high:g}] HU (foreground 0.5-99.5 "
            f"percentiles over {n} training cases; {reason})"
        )
        return Resolution("ct", [low, high], message, [])
    chosen = "mr" if kind == "mr" else "zscore"
    message = f"normalization auto -> {chosen}, per-image z-score, no window ({reason})"
    return Resolution(chosen, None, message, [])


def clipped_share(values: np.ndarray, window: Sequence[float] | None) -> float:
    """The share of ``values`` (foreground intensities) outside ``window``: what clipping to it
    would flatten (0 without a window or without values)."""
    values = np.asarray(values)
    if window is None or values.size == 0:
        return 0.0
    return float(np.count_nonzero((values < window[0]) | (values > window[1])) / values.size)


def spacing_warning(summary: dict[str, Any], target_spacing: Sequence[float] | None) -> str | None:
    """A line when the cases have mixed spacings and no ``data.target_spacing`` is set."""
    if target_spacing or summary["distinct_spacings"] <= 1:
        return None
    proposed = summary["proposed_spacing"]
    hint = f"; set data.target_spacing={proposed} to resample" if proposed else ""
    return (
        f"the {summary['cases']} training cases have {summary['distinct_spacings']} distinct "
        f"spacings and data.target_spacing is null: each case keeps its own grid{hint}"
    )


# --- computing and caching --------------------------------------------------------------------


def fingerprint_cases(
    cases: Sequence[Case], task: str, orientation: str | None = "RAS"
) -> dict[str, Any]:
    """Read each case once (image, and mask for segmentation) and summarize: bounded memory.

    Raises:
        ImageError: an image or mask cannot be read (names the file).
    """
    prints = []
    for case in cases:
        image = read_image(case.image)
        mask = read_label(case.label, image).array if task == "segmentation" else None
        prints.append(case_fingerprint(case.case_id, image, mask, orientation))
    return summarize(prints)


def _key(root: Path, cases: Sequence[Case], task: str, orientation: str | None) -> str:
    """The cache key: the cases' manifest rows and file contents (hashes remembered against
    size and times, :class:`.file_hashes.FileHashes`), the task, orientation and version."""
    # Not saved: these are only the training cases, and saving would drop the other files'
    # records (the split check at `train` start keeps them all up to date).
    content = dataset_hash(root, cases, FileHashes(root))
    header = json.dumps([VERSION, task, orientation, FOREGROUND_SAMPLES, content])
    return hashlib.sha256(header.encode()).hexdigest()


def dataset_fingerprint(
    root: str | Path, cases: Sequence[Case], task: str, orientation: str | None = "RAS"
) -> dict[str, Any]:
    """The fingerprint of ``cases`` (of the dataset in ``root``), from the cache when their
    files are unchanged; computed and cached (in ``<root>/fingerprints.json``) otherwise.

    Args:
        root: the dataset folder.
        cases: the cases to fingerprint (the training cases of a fold).
        task: ``segmentation`` (masks give the foreground) or ``classification``.
        orientation: the orientation spacings and shapes are given in.

    Returns:
        :func:`summarize`'s dict.

    Raises:
        DataError: a file is missing; ImageError: one cannot be read.
    """
    root = Path(root)
    key = _key(root, cases, task, orientation)
    path = root / FINGERPRINTS
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        entries = dict(stored["entries"]) if stored.get("version") == VERSION else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        entries = {}
    if key in entries:
        return entries[key]
    summary = fingerprint_cases(cases, task, orientation)
    entries[key] = summary
    kept = dict(list(entries.items())[-KEEP_ENTRIES:])
    with contextlib.suppress(OSError):  # a read-only dataset: computed again next time
        atomic_write_text(path, json.dumps({"version": VERSION, "entries": kept}) + "\n")
    return summary


def resolve_config(
    cfg: Config, root: str | Path, cases: Sequence[Case], echo: Callable[[str], Any] | None = print
) -> Config:
    """``cfg`` with ``data.normalization`` (and its window) resolved for training on ``cases``.

    ``auto`` becomes ``ct`` (with the foreground percentile window), ``mr`` or ``zscore``;
    explicit settings are kept. The fingerprint (cached: :func:`dataset_fingerprint`) is
    computed for ``auto``, for ``ct`` (to warn when the data are not in HU) and, without
    ``data.target_spacing``, to warn when the cases have mixed spacings.

    Args:
        cfg: the run's configuration.
        root: the dataset folder.
        cases: the training cases.
        echo: where the one-line choice and warnings go (``None``: nowhere).

    Returns:
        A new :class:`~..config.Config` (``cfg`` when nothing changes).
    """
    data = cfg.data
    if data.normalization in ("mr", "zscore", "none") and data.target_spacing:
        return cfg
    orientation = from_setting(data.orientation)
    summary = dataset_fingerprint(root, cases, cfg.task, orientation)
    result = resolve_normalization(summary, data.normalization, data.window)
    lines = [result.message] if result.message else []
    lines += [f"warning: {w}" for w in result.warnings]
    spacing = spacing_warning(summary, data.target_spacing)
    if spacing:
        lines.append(f"warning: {spacing}")
    if echo is not None:
        for line in lines:
            echo(line)
    if data.normalization != "auto":
        return cfg
    return replace(
        cfg, data=replace(data, normalization=result.normalization, window=result.window)
    )
