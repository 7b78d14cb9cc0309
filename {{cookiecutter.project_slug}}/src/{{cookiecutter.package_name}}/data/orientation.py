"""One orientation for every case: reorienting 3D images and putting results back.

Scanners and tools store volumes in different orientations: a DICOM series read here comes
with its rows along the patient's left (LPS-like), a NIfTI file is often RAS, and some tools
flip an axis. The voxel data are the same anatomy either way, but the *array axes* differ, so
``data.target_spacing`` (one value per array axis), patches, augmentation and duplicate
detection would see differently oriented anatomy. Training therefore reorients every 3D case to
``data.orientation`` (three axis codes, ``"RAS"`` by default: as an index grows, the array
axes run towards the patient's Right, Anterior and Superior ends, nibabel's convention), and
predictions are put back into each input's own orientation with :func:`from_orientation`, so
a written mask overlays its input exactly.

Reorienting only permutes and flips axes (nibabel's ``io_orientation``: the closest
orientation of an oblique scan); no voxel is interpolated, and the affine is updated so that
every voxel keeps its position in the world. 2D images (PNG, single slices) have no patient
orientation here and are never reoriented.
"""

from __future__ import annotations

from collections.abc import Sequence

import nibabel as nib
import numpy as np

from .io import Image, apply_orientation

DEFAULT = "RAS"
_PAIRS = ("LR", "PA", "IS")  # each code names the end of one of these anatomical directions


def check_orientation(code: str) -> str:
    """Validate three axis codes (``"RAS"``, ``"LPS"``, ``"PLI"``, ...), upper-cased.

    Raises:
        ValueError: not one letter of each pair L/R, P/A, I/S.
    """
    text = str(code).strip().upper()
    used = sorted(next((i for i, pair in enumerate(_PAIRS) if ch in pair), -1) for ch in text)
    if len(text) != 3 or used != [0, 1, 2]:
        raise ValueError(
            f"orientation must be three axis codes, one of each pair L/R, P/A, I/S (e.g. "
            f"'RAS', 'LPS'), got {code!r}"
        )
    return text


def from_setting(code: str | None) -> str | None:
    """``data.orientation`` as :func:`reorient` takes it: checked axis codes, or ``None`` for
    ``"none"`` (each file's own axes).

    Raises:
        ValueError: neither ``none`` nor valid axis codes.
    """
    if code is None or str(code).strip().lower() == "none":
        return None
    return check_orientation(code)


def axis_codes(affine: np.ndarray) -> str:
    """The (closest) orientation of a 3D voxel grid with this ``(4, 4)`` affine, e.g. ``"LPS"``."""
    return "".join(nib.orientations.aff2axcodes(np.asarray(affine, dtype=np.float64)))


def transform(affine: np.ndarray, code: str) -> np.ndarray:
    """The nibabel orientation transform from the grid of ``affine`` to orientation ``code``.

    Returns:
        ``(3, 2)`` array: for each input axis, the output axis it becomes and ``1``/``-1``
        (kept or flipped), as ``nibabel.orientations.ornt_transform`` gives it.
    """
    start = nib.orientations.io_orientation(np.asarray(affine, dtype=np.float64))
    return nib.orientations.ornt_transform(start, nib.orientations.axcodes2ornt(tuple(code)))


def is_identity(ornt: np.ndarray) -> bool:
    """Whether an orientation transform keeps every axis as it is."""
    ornt = np.asarray(ornt)
    return bool(np.array_equal(ornt[:, 0], np.arange(len(ornt))) and np.all(ornt[:, 1] == 1))


def reorient(image: Image, code: str = DEFAULT) -> tuple[Image, np.ndarray]:
    """``image`` with its axes permuted and flipped to orientation ``code``.

    Args:
        image: a 2D or 3D image (2D images are returned unchanged).
        code: the target orientation, e.g. ``"RAS"``.

    Returns:
        ``(image, ornt)``: the reoriented image (a NIfTI header's qform and sform in ``meta`` are
        reoriented the same way; the array is C-ordered) and the ``(3, 2)`` transform applied
        (the identity for a 2D image or one already in ``code``); :func:`from_orientation`
        undoes it.
    """
    code = check_orientation(code)
    if image.ndim != 3:
        return image, np.array([[i, 1] for i in range(image.ndim)], dtype=float)
    ornt = transform(image.affine, code)
    if is_identity(ornt):
        return image, ornt
    return apply_orientation(image, ornt), ornt


def reorient_array(array: np.ndarray, ornt: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Apply an orientation transform to the last ``len(ornt)`` axes of ``array``.

    Args:
        array: ``(*S)`` or ``(K, *S)`` (e.g. class probabilities), ``S`` with ``len(ornt)`` axes.
        ornt: the ``(n, 2)`` transform of :func:`reorient`.

    Returns:
        The reoriented array (C-ordered; ``array`` itself for the identity).
    """
    ornt = np.asarray(ornt, dtype=float)
    if is_identity(ornt):
        return array
    lead = array.ndim - len(ornt)
    if lead < 0:
        raise ValueError(f"array of shape {array.shape} has fewer than {len(ornt)} axes")
    full = np.concatenate([np.stack([np.arange(lead), np.ones(lead)], 1), ornt + [lead, 0]])
    return np.ascontiguousarray(nib.orientations.apply_orientation(array, full))


def from_orientation(array: np.ndarray, ornt: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Undo :func:`reorient`: an array on the reoriented grid back on the source's array axes.

    Args:
        array: ``(*S)`` or ``(K, *S)`` on the reoriented grid.
        ornt: the transform :func:`reorient` returned for the source.

    Returns:
        The array on the source's axes (shape ``(*S_source)`` or ``(K, *S_source)``).
    """
    ornt = np.asarray(ornt, dtype=float)
    if is_identity(ornt):
        return array
    back = np.empty_like(ornt)
    for axis, (target, flip) in enumerate(ornt):  # source axis -> (reoriented axis, flip)
        back[int(target)] = (axis, flip)
    return reorient_array(array, back)
