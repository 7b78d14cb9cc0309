"""Reading and writing medical images with their geometry.

One entry point, :func:`read_image`, reads DICOM (a file or a series folder), NIfTI and PNG/JPEG
and returns an :class:`Image`: the voxel array plus a 4x4 affine that maps voxel indices to
millimetres in RAS+ world coordinates (the NIfTI convention, also MONAI's and nibabel's).

Array axes follow the NIfTI/ITK order, as MONAI's readers do: ``(X, Y)`` for 2D and
``(X, Y, Z)`` for 3D, where X runs along an image row (DICOM columns), Y down the rows and Z
across slices. ``array.T`` of a 2D image is what ``matplotlib.pyplot.imshow`` expects.

DICOM series are grouped by ``SeriesInstanceUID``, ordered by ``ImagePositionPatient`` projected on
the slice normal (never by ``InstanceNumber``, which scanners and tools get wrong), rescaled with
``RescaleSlope``/``RescaleIntercept`` (CT in Hounsfield units) and given the spacing of
``PixelSpacing`` and the slice positions. Any unreadable or inconsistent input raises
:class:`ImageError` naming the file.

What cannot be one volume is refused, never stacked wrongly: a series whose slices have different
orientations (a 3-plane localizer, a radial MR) and a series with irregular gaps between slices
(unless ``resample_irregular=True``, which interpolates linearly, slice by slice at their true
positions along the normal, onto a regular grid with the smallest gap as its step). Multi-frame
DICOM reads when its frames have positions (enhanced DICOM's per-frame functional groups, or
``GridFrameOffsetVector``); other multi-frame or color files are refused.

A path may name one part of a container with ``PATH::PART`` (:data:`PART_SEP`), which is how
``manifest.csv`` names a series without copying it into its own folder:

- ``dicom/study1::1.2.840.113619...``: the series of that ``SeriesInstanceUID`` in a folder that
  holds several;
- ``imagesTr/BRATS_001.nii.gz::2``: volume 2 (0-based) of a 4D NIfTI, e.g. one MR sequence of a
  Decathlon brain-tumour case.

:func:`source_path` gives the file or folder itself (what is hashed and checked for existence).

NIfTI images keep their header's qform and sform with their codes in ``Image.meta``;
:func:`write_like` writes them back unchanged, so ITK-based viewers (ITK-SNAP, SimpleITK), which
prefer the qform, place a mask exactly on its image even when the input's qform and sform differ.
"""

from __future__ import annotations

import gzip
import os
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..utils.errors import ProjectError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
PNG_SUFFIXES = (".png", ".jpg", ".jpeg")
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
PART_SEP = "::"
ORIENTATION_TOL = 1e-3  # largest difference of direction cosines within one volume


class ImageError(ProjectError):
    """A missing, unreadable, unsupported or inconsistent image; the message names the file."""


@dataclass
class Image:
    """An image and where its voxels are.

    Attributes:
        array: voxel values, shape ``(X, Y)`` or ``(X, Y, Z)``; CT in Hounsfield units.
        affine: ``(4, 4)`` matrix from voxel indices ``(i, j, k, 1)`` to RAS+ millimetres
            (2D images use ``k = 0``).
        path: the file or series folder it was read from (``None`` when made in memory).
        meta: format details (``format``, ``series_uid``, ``modality``, ``patient_id``, ...).
    """

    array: np.ndarray
    affine: np.ndarray
    path: Path | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def ndim(self) -> int:
        return self.array.ndim

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size in mm along each array axis (the norms of the affine's columns)."""
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return tuple(float(s) for s in norms[: self.ndim])


def split_part(path: str | Path) -> tuple[Path, str | None]:
    """``("dicom/study1", "1.2.3")`` for ``"dicom/study1::1.2.3"``; ``(path, None)`` without a part.

    Raises:
        ImageError: the part after ``::`` is empty.
    """
    text = str(path)
    if PART_SEP not in text:
        return Path(path), None
    base, part = text.rsplit(PART_SEP, 1)
    if not part.strip() or not base:
        raise ImageError(f"'{text}': expected PATH{PART_SEP}PART with a series UID or volume index")
    return Path(base), part.strip()


def source_path(path: str | Path) -> Path:
    """The file or folder that ``path`` (maybe ``PATH::PART``) reads from."""
    return split_part(path)[0]


def with_part(path: str | Path, part: str | int | None) -> str:
    """``"PATH::PART"`` (or ``PATH`` when ``part`` is ``None``), as a POSIX string."""
    text = Path(path).as_posix()
    return text if part is None else f"{text}{PART_SEP}{part}"


def file_format(path: str | Path) -> str:
    """``"nifti"``, ``"png"`` or ``"dicom"`` for a path (a folder is a DICOM series)."""
    path = source_path(path)
    name = path.name.lower()
    if path.is_dir():
        return "dicom"
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(PNG_SUFFIXES):
        return "png"
    if name.endswith(DICOM_SUFFIXES) or "." not in name:
        return "dicom"
    raise ImageError(
        f"'{path}' has an unsupported format: expected .nii/.nii.gz, .dcm (or a DICOM series "
        f"folder), .png or .jpg"
    )


def read_image(
    path: str | Path,
    series_uid: str | None = None,
    canonical: bool = False,
    resample_irregular: bool = False,
) -> Image:
    """Read a DICOM file or series folder, a NIfTI file, or a PNG/JPEG image.

    Args:
        path: the file, or a folder holding one DICOM series; ``PATH::PART`` names a series
            (by ``SeriesInstanceUID``) in a DICOM folder or a volume (0-based) of a 4D NIfTI.
        series_uid: which series to read when a DICOM folder holds several.
        canonical: reorient to the closest canonical (RAS+) orientation, so that array axes
            run left->right, posterior->anterior, inferior->superior.
        resample_irregular: interpolate a DICOM series with irregular slice gaps onto a regular
            grid (the smallest gap) instead of refusing it.

    Returns:
        The :class:`Image`.

    Raises:
        ImageError: the path is missing, unreadable, truncated, of an unsupported format, a
            DICOM folder holds several series and ``series_uid`` does not pick one, or a series
            cannot be one volume (mixed orientations; irregular gaps without
            ``resample_irregular``).
    """
    path, part = split_part(path)
    if not path.exists():
        raise ImageError(f"'{path}' does not exist")
    fmt = file_format(path)
    if part is not None and fmt == "png":
        raise ImageError(f"'{path}{PART_SEP}{part}': a PNG image has no parts")
    if part is not None and fmt == "dicom":
        if series_uid is not None and series_uid != part:
            raise ImageError(f"'{path}': series {part} in the path but {series_uid} asked for")
        series_uid = part
    try:
        if fmt == "dicom":
            image = _read_dicom(path, series_uid, resample_irregular)
        elif fmt == "nifti":
            image = _read_nifti(path, part)
        else:
            image = _read_png(path)
    except ImageError:
        raise
    except Exception as exc:  # a library's own error: say which file, in one line
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageError(f"cannot read '{path}' as {fmt}: {reason}") from None
    image.meta.setdefault("format", fmt)
    if canonical and image.ndim == 3:
        image = to_canonical(image)
    return image


def read_label(path: str | Path, image: Image, atol_mm: float = 1e-3) -> Image:
    """Read a mask and check that it lies on ``image``'s voxel grid.

    Raises:
        ImageError: the mask cannot be read, or its shape or geometry differs from the image's.
    """
    label = read_image(path)
    if label.shape != image.shape:
        raise ImageError(
            f"mask '{path}' has shape {label.shape} but its image '{image.path}' has {image.shape}"
        )
    if not np.allclose(label.affine, image.affine, atol=atol_mm):
        raise ImageError(
            f"mask '{path}' has a different geometry (affine) from its image '{image.path}'"
        )
    return label


def to_canonical(image: Image) -> Image:
    """The same 3D image with axes reordered/flipped to the closest RAS+ orientation (a NIfTI
    header's qform and sform, kept in ``meta``, are reoriented the same way)."""
    return apply_orientation(image, nib.orientations.io_orientation(image.affine))


def apply_orientation(image: Image, ornt: np.ndarray) -> Image:
    """``image`` (3D) with the nibabel orientation transform ``ornt`` applied to its axes.

    Args:
        image: a 3D image.
        ornt: ``(3, 2)``: for each axis, the axis it becomes and ``1``/``-1`` (kept/flipped).

    Returns:
        The image on the reordered/flipped grid (C-ordered array), the same voxels in the same
        places in the world: its affine, and a NIfTI header's qform and sform in ``meta``,
        follow the axes.
    """
    array = nib.orientations.apply_orientation(image.array, ornt)
    to_old = nib.orientations.inv_ornt_aff(ornt, image.array.shape)  # new index -> old index
    meta = dict(image.meta)
    for key in ("qform", "sform"):
        if meta.get(key) is not None:
            meta[key] = np.asarray(meta[key]) @ to_old
    return Image(np.ascontiguousarray(array), image.affine @ to_old, image.path, meta)


# --- NIfTI ---------------------------------------------------------------------------------


def _read_nifti(path: Path, part: str | None = None) -> Image:
    img = None
    if path.name.lower().endswith(".gz"):
        # One gzip call on the whole file is about twice as fast as nibabel's streamed reads.
        try:
            img = nib.Nifti1Image.from_bytes(gzip.decompress(path.read_bytes()))
        except Exception:
            img = None  # NIfTI-2 or a damaged file: let nibabel's loader decide and report
    if img is None:
        img = nib.load(str(path))
    shape = tuple(img.shape)
    while len(shape) > 4 and shape[-1] == 1:
        shape = shape[:-1]
    if part is not None:
        if len(shape) != 4 or not part.isdigit() or int(part) >= shape[3]:
            raise ImageError(
                f"'{path}{PART_SEP}{part}': expected a volume index 0..{shape[3] - 1} of a 4D image"
                if len(shape) == 4
                else f"'{path}' has shape {shape}: no volume {part}"
            )
        array = np.asanyarray(img.dataobj[..., int(part)])
    else:
        array = np.asanyarray(img.dataobj)  # applies scl_slope/scl_inter, keeps ints when none
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 4:
        raise ImageError(
            f"'{path}' has shape {array.shape}: expected a 2D or 3D image; a 4D image "
            f"(channels or time) is read one volume at a time, as '{path.name}{PART_SEP}0' (the "
            "manifest command names each channel so)"
        )
    if array.ndim not in (2, 3):
        raise ImageError(f"'{path}' has shape {array.shape}: expected a 2D or 3D image")
    return Image(np.ascontiguousarray(array), img.affine.astype(np.float64), path, _forms(img))


def write_nifti(
    array: np.ndarray,
    affine: np.ndarray,
    path: str | Path,
    header: dict[str, Any] | None = None,
) -> Path:
    """Write ``array`` (``(X, Y)`` or ``(X, Y, Z)``) with ``affine`` to ``.nii``/``.nii.gz``.

    The file appears atomically (written under a temporary name, then renamed).

    Args:
        array: the voxels.
        affine: ``(4, 4)`` voxel-to-RAS matrix; written as qform and sform (codes 1/1) unless
            ``header`` gives them.
        path: a ``.nii`` or ``.nii.gz`` file name.
        header: ``qform``, ``qform_code``, ``sform``, ``sform_code`` of the image the array
            was made from (``Image.meta`` of a NIfTI input): written back unchanged.

    Returns:
        ``path``.
    """
    path = Path(path)
    if not path.name.lower().endswith(NIFTI_SUFFIXES):
        raise ImageError(f"'{path}': expected a .nii or .nii.gz file name")
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    img = nib.Nifti1Image(array, np.asarray(affine, dtype=np.float64))
    header = header or {}
    if header.get("qform_code") is not None and header.get("sform_code") is not None:
        q, s = header.get("qform"), header.get("sform")
        img.set_qform(q if q is not None else img.affine, code=int(header["qform_code"]))
        img.set_sform(s if s is not None else img.affine, code=int(header["sform_code"]))
    else:
        img.set_qform(img.affine, code=1)
        img.set_sform(img.affine, code=1)
    img.header.set_xyzt_units("mm")
    suffix = ".nii.gz" if path.name.lower().endswith(".gz") else ".nii"
    return _atomic(path, suffix, lambda tmp: nib.save(img, str(tmp)))


def nifti_header(path: str | Path) -> dict[str, Any]:
    """The qform and sform (with their codes) of a NIfTI file, read from its header only, as
    :func:`write_nifti` takes them; ``{}`` for another format or a ``PATH::PART`` volume's file
    as a whole (DICOM and PNG have no such header).

    Raises:
        ImageError: the NIfTI header cannot be read (names the file).
    """
    path = source_path(path)
    if file_format(path) != "nifti":
        return {}
    try:
        img = nib.load(str(path))  # the voxels stay on disk
    except Exception as exc:
        raise ImageError(
            f"cannot read the NIfTI header of '{path}': {exc}".splitlines()[0]
        ) from None
    return _forms(img)


def _forms(img: Any) -> dict[str, Any]:
    """``qform``, ``qform_code``, ``sform``, ``sform_code`` of a nibabel NIfTI image."""
    qform, qcode = img.get_qform(coded=True)
    sform, scode = img.get_sform(coded=True)
    return {
        "qform": None if qform is None else qform.astype(np.float64),
        "qform_code": int(qcode),
        "sform": None if sform is None else sform.astype(np.float64),
        "sform_code": int(scode),
    }


def write_like(array: np.ndarray, like: Image, path: str | Path) -> Path:
    """Write a prediction in the geometry of the image it was made from (NIfTI)."""
    if tuple(array.shape) != like.shape:
        raise ImageError(
            f"prediction for '{like.path}' has shape {tuple(array.shape)}, expected {like.shape}"
        )
    return write_nifti(array, like.affine, path, header=like.meta)


# --- PNG / JPEG ----------------------------------------------------------------------------


def _read_png(path: Path) -> Image:
    from PIL import Image as PILImage

    with PILImage.open(path) as pil:
        pil.load()
        if pil.mode in ("RGB", "RGBA", "P", "LA", "CMYK"):
            pil = pil.convert("L")
        array = np.array(pil)
    if array.ndim != 2:
        raise ImageError(f"'{path}' has shape {array.shape}: expected a grey-level image")
    if array.dtype == np.int32 and array.min() >= 0 and array.max() < 2**16:
        array = array.astype(np.uint16)  # PIL reads 16-bit PNGs as int32
    return Image(np.ascontiguousarray(array.T), np.eye(4), path, {})


def write_png(array: np.ndarray, path: str | Path) -> Path:
    """Write a 2D ``(X, Y)`` array of uint8 or uint16 (or bool) as a PNG, atomically."""
    from PIL import Image as PILImage

    path = Path(path)
    array = np.asarray(array)
    if array.ndim != 2:
        raise ImageError(f"'{path}': PNG holds 2D images, got shape {array.shape}")
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"'{path}': PNG holds uint8 or uint16 values, got {array.dtype}")
    pil = PILImage.fromarray(np.ascontiguousarray(array.T))
    return _atomic(path, ".png", lambda tmp: pil.save(tmp, format="PNG"))


# --- DICOM ---------------------------------------------------------------------------------


def _dicom_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def read_dicom_headers(path: Path, pixels: bool = True) -> list[tuple[Path, Any]]:
    """``(file, dataset)`` of every DICOM image file in ``path`` (a file, or a folder at any
    depth); other files in a folder (DICOMDIR, notes) are skipped.

    Args:
        path: a DICOM file or a folder.
        pixels: read the pixel bytes too (``False``: headers only, for a fast scan).

    Raises:
        ImageError: ``path`` is a file that is not DICOM, or a DICOM file cannot be read.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    files = [path] if path.is_file() else _dicom_files(path)
    headers = []
    for file in files:
        try:
            ds = pydicom.dcmread(file, stop_before_pixels=not pixels)
        except InvalidDicomError:
            if path.is_file():
                raise ImageError(f"'{file}' is not a DICOM file") from None
            continue
        except Exception as exc:
            raise ImageError(f"cannot read '{file}' as DICOM: {exc}".splitlines()[0]) from None
        if "PixelData" in ds or getattr(ds, "Rows", None):
            headers.append((file, ds))
    return headers


def _read_dicom(path: Path, series_uid: str | None, resample_irregular: bool = False) -> Image:
    headers = read_dicom_headers(path)
    if not headers:
        raise ImageError(f"'{path}' holds no DICOM image")

    series: dict[str, list] = defaultdict(list)
    for file, ds in headers:
        series[str(getattr(ds, "SeriesInstanceUID", "unknown"))].append((file, ds))
    if series_uid is not None:
        if series_uid not in series:
            raise ImageError(
                f"'{path}' has no series {series_uid}; it holds: {', '.join(sorted(series))}"
            )
        chosen = series[series_uid]
    elif len(series) > 1:
        listing = ", ".join(f"{uid} ({len(v)} files)" for uid, v in sorted(series.items()))
        raise ImageError(
            f"'{path}' holds {len(series)} series: {listing}; name one as "
            f"'{path}{PART_SEP}UID' (predict, manifest.csv) or with convert --series UID"
        )
    else:
        chosen = next(iter(series.values()))
    return _dicom_series(path, chosen, resample_irregular)


def _orientation(ds: Any) -> tuple[np.ndarray, np.ndarray]:
    iop = getattr(ds, "ImageOrientationPatient", None)
    if iop is None:
        return np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    iop = np.asarray([float(v) for v in iop])
    return iop[:3], iop[3:]


def _pixel_spacing(ds: Any) -> tuple[float, float]:
    """(spacing between rows, spacing between columns) in mm."""
    for tag in ("PixelSpacing", "ImagerPixelSpacing"):
        value = getattr(ds, tag, None)
        if value is not None:
            return float(value[0]), float(value[1])
    return 1.0, 1.0


@dataclass
class _Plane:
    """One 2D plane of a series: a single-frame file, or one frame of a multi-frame file."""

    name: str  # the file (and frame) for messages
    position: np.ndarray | None  # ImagePositionPatient (LPS mm) of its first voxel
    row_cos: np.ndarray
    col_cos: np.ndarray
    spacing: tuple[float, float]  # (between rows, between columns)
    size: tuple[int, int]  # (Rows, Columns)
    pixels: Any  # () -> 2D array of rescaled values (Y, X)


def _frames(ds: Any) -> int:
    try:
        return int(getattr(ds, "NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return 1


def _first_item(ds: Any, sequence: str, inner: str) -> Any:
    """``ds.<sequence>[0].<inner>[0]`` or ``None`` (functional groups of enhanced DICOM)."""
    outer = getattr(ds, sequence, None)
    if not outer:
        return None
    items = getattr(outer[0], inner, None)
    return items[0] if items else None


def _planes(file: Path, ds: Any) -> list[_Plane]:
    """The planes of one file, each with its geometry and a way to get rescaled pixels."""
    from pydicom.pixels import apply_modality_lut

    size = (int(ds.Rows), int(ds.Columns))
    if int(getattr(ds, "SamplesPerPixel", 1) or 1) != 1:
        raise ImageError(f"'{file}': color DICOM is not supported (expected grey levels)")
    frames = _frames(ds)
    if frames == 1:
        ipp = getattr(ds, "ImagePositionPatient", None)

        def single() -> np.ndarray:
            try:
                pixels = ds.pixel_array
            except Exception as exc:
                raise ImageError(
                    f"cannot decode pixels of '{file}': {exc}".splitlines()[0]
                ) from None
            if pixels.ndim != 2:
                raise ImageError(f"'{file}': pixels of shape {pixels.shape}, expected 2D")
            return apply_modality_lut(pixels, ds)  # RescaleSlope/Intercept -> HU

        row_cos, col_cos = _orientation(ds)
        position = None if ipp is None else np.asarray([float(v) for v in ipp])
        return [_Plane(file.name, position, row_cos, col_cos, _pixel_spacing(ds), size, single)]

    # multi-frame: enhanced (per-frame functional groups) or classic with GridFrameOffsetVector
    cache: dict[str, np.ndarray] = {}

    def all_frames() -> np.ndarray:
        if "pixels" not in cache:
            try:
                cache["pixels"] = ds.pixel_array
            except Exception as exc:
                raise ImageError(
                    f"cannot decode pixels of '{file}': {exc}".splitlines()[0]
                ) from None
        return cache["pixels"]

    per_frame = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
    planes = []
    if per_frame is not None and len(per_frame) == frames:
        shared = "SharedFunctionalGroupsSequence"
        for i, group in enumerate(per_frame):

            def inner(name: str, group: Any = group) -> Any:
                items = getattr(group, name, None)
                if items:
                    return items[0]
                return _first_item(ds, shared, name)

            position = inner("PlanePositionSequence")
            orientation = inner("PlaneOrientationSequence")
            measures = inner("PixelMeasuresSequence")
            transform = inner("PixelValueTransformationSequence")
            if position is None or orientation is None:
                raise ImageError(
                    f"'{file}': multi-frame DICOM whose frame {i + 1} has no position or "
                    "orientation; cannot make a volume (convert it to NIfTI with another tool)"
                )
            iop = [float(v) for v in orientation.ImageOrientationPatient]
            slope = float(getattr(transform, "RescaleSlope", 1) or 1) if transform else 1.0
            intercept = float(getattr(transform, "RescaleIntercept", 0) or 0) if transform else 0.0

            def frame(i: int = i, slope: float = slope, intercept: float = intercept) -> Any:
                values = all_frames()[i]
                return values * slope + intercept if (slope, intercept) != (1.0, 0.0) else values

            spacing = _pixel_spacing(measures) if measures is not None else _pixel_spacing(ds)
            planes.append(
                _Plane(
                    f"{file.name} frame {i + 1}",
                    np.asarray([float(v) for v in position.ImagePositionPatient]),
                    np.asarray(iop[:3]),
                    np.asarray(iop[3:]),
                    spacing,
                    size,
                    frame,
                )
            )
        return planes
    offsets = getattr(ds, "GridFrameOffsetVector", None)
    ipp = getattr(ds, "ImagePositionPatient", None)
    if offsets is None or ipp is None or len(offsets) != frames:
        raise ImageError(
            f"'{file}': multi-frame DICOM ({frames} frames) without per-frame positions "
            "(no PerFrameFunctionalGroupsSequence or GridFrameOffsetVector); cannot make a volume"
        )
    row_cos, col_cos = _orientation(ds)
    normal = np.cross(row_cos, col_cos)
    origin = np.asarray([float(v) for v in ipp])
    scale = float(getattr(ds, "DoseGridScaling", 1) or 1)  # RT dose: stored values -> Gy

    for i, offset in enumerate(offsets):

        def grid_frame(i: int = i) -> np.ndarray:
            values = apply_modality_lut(all_frames()[i], ds)
            return values * scale if scale != 1 else values

        planes.append(
            _Plane(
                f"{file.name} frame {i + 1}",
                origin + normal * float(offset),
                row_cos,
                col_cos,
                _pixel_spacing(ds),
                size,
                grid_frame,
            )
        )
    return planes


def check_series(path: Path, items: list[tuple[Path, Any]]) -> str | None:
    """Why a series (its ``(file, dataset)`` headers) cannot be one volume, or ``None``.

    Reads headers only, so :mod:`..data.layouts` can skip such series before any pixel is
    decoded. The reasons are those :func:`read_image` refuses with.
    """
    try:
        planes = [plane for file, ds in items for plane in _planes(file, ds)]
        _stack(path, planes, resample_irregular=False)
    except ImageError as exc:
        return str(exc)
    return None


def _stack(
    path: Path, planes: list[_Plane], resample_irregular: bool
) -> tuple[list[_Plane], np.ndarray, float, bool]:
    """Order the planes along their normal and check they make one regular volume.

    Returns:
        The planes in order, their positions along the normal (mm), the slice step (mm) and
        whether they must be resampled onto a regular grid.

    Raises:
        ImageError: mixed orientations, sizes or pixel spacings, a plane without a position,
            two planes at one position, or irregular gaps (unless ``resample_irregular``).
    """
    first = planes[0]
    if len(planes) == 1:
        return planes, np.zeros(1), 0.0, False
    orientations = []
    for plane in planes:
        vector = np.concatenate([plane.row_cos, plane.col_cos])
        if not any(np.allclose(vector, o, atol=ORIENTATION_TOL) for o in orientations):
            orientations.append(vector)
    if len(orientations) > 1:
        shown = "; ".join(
            "[" + ", ".join(f"{v:.3g}" for v in o) + "]" for o in orientations[:3]
        ) + ("; ..." if len(orientations) > 3 else "")
        raise ImageError(
            f"'{path}': mixed orientation: its {len(planes)} slices have {len(orientations)} "
            f"different ImageOrientationPatient ({shown}); a localizer or multi-plane series "
            "cannot be one volume"
        )
    if any(plane.position is None for plane in planes):
        raise ImageError(f"'{path}': a slice has no ImagePositionPatient; cannot order slices")
    sizes = {plane.size for plane in planes}
    if len(sizes) > 1:
        raise ImageError(f"'{path}': slices of different sizes {sorted(sizes)}")
    spacings = {plane.spacing for plane in planes}
    if len(spacings) > 1:
        raise ImageError(f"'{path}': slices with different PixelSpacing {sorted(spacings)}")
    normal = np.cross(first.row_cos, first.col_cos)
    planes = sorted(planes, key=lambda plane: float(plane.position @ normal))
    along = np.array([float(plane.position @ normal) for plane in planes])
    steps = np.diff(along)
    same = np.flatnonzero(np.isclose(steps, 0.0, atol=1e-4))
    if same.size:
        raise ImageError(
            f"'{path}': several slices at the same position (e.g. {planes[same[0]].name}); "
            "is it more than one series or a time series?"
        )
    step = float(np.min(steps))
    irregular = np.flatnonzero(np.abs(steps - step) > 0.01 * step + 1e-3)
    if irregular.size and not resample_irregular:
        gaps = ", ".join(
            f"{steps[i]:.4g} mm between {along[i]:.4g} and {along[i + 1]:.4g}"
            for i in irregular[:4]
        ) + (f" and {irregular.size - 4} more" if irregular.size > 4 else "")
        raise ImageError(
            f"'{path}': irregular slice gaps ({step:.4g} to {steps.max():.4g} mm: {gaps}, "
            "positions along the slice normal); stacking them would misplace slices. Resample "
            f"them onto a regular {step:.4g} mm grid with `convert --resample-slices`"
        )
    return planes, along, step, bool(irregular.size)


def _dicom_series(path: Path, items: list, resample_irregular: bool = False) -> Image:
    planes = [plane for file, ds in items for plane in _planes(file, ds)]
    first_ds = items[0][1]
    if len(planes) == 1:
        step = (
            float(getattr(first_ds, "SpacingBetweenSlices", 0) or 0)
            or float(getattr(first_ds, "SliceThickness", 0) or 0)
            or 1.0
        )
        along, resample = np.zeros(1), False
    else:
        planes, along, step, resample = _stack(path, planes, resample_irregular)
    first = planes[0]
    normal = np.cross(first.row_cos, first.col_cos)
    slices = [np.asarray(plane.pixels()) for plane in planes]
    volume = np.stack(slices, axis=-1)  # (rows, cols, slices) = (Y, X, Z)
    if resample:  # irregular gaps, resampling asked for: linear, at the true positions
        grid = along[0] + step * np.arange(int(np.floor((along[-1] - along[0]) / step + 1e-6)) + 1)
        upper = np.clip(np.searchsorted(along, grid, side="right"), 1, len(along) - 1)
        lower = upper - 1
        weight = (grid - along[lower]) / (along[upper] - along[lower])
        volume = volume[:, :, lower] * (1 - weight) + volume[:, :, upper] * weight
    volume = np.ascontiguousarray(volume.transpose(1, 0, 2))  # -> (X, Y, Z)
    volume = _compact(volume)

    dr, dc = first.spacing
    lps = np.eye(4)
    lps[:3, 0] = first.row_cos * dc  # X: along a row, spacing between columns
    lps[:3, 1] = first.col_cos * dr  # Y: down a column, spacing between rows
    lps[:3, 2] = normal * step
    lps[:3, 3] = first.position if first.position is not None else np.zeros(3)
    affine = LPS_TO_RAS @ lps
    if volume.shape[2] == 1:
        volume = volume[:, :, 0]
    meta = {
        "series_uid": str(getattr(first_ds, "SeriesInstanceUID", "")),
        "study_uid": str(getattr(first_ds, "StudyInstanceUID", "")),
        "modality": str(getattr(first_ds, "Modality", "")),
        "patient_id": str(getattr(first_ds, "PatientID", "")),
        "files": len(items),
        "resampled": bool(resample),
    }
    return Image(volume, affine, path, meta)


def _compact(array: np.ndarray) -> np.ndarray:
    """int16 when the (rescaled) values are whole numbers that fit, else float32."""
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(np.int16)
        if array.size == 0 or (array.min() >= info.min and array.max() <= info.max):
            return array.astype(np.int16)
        return array.astype(np.int32)
    if np.all(np.mod(array, 1) == 0) and array.min() >= -32768 and array.max() <= 32767:
        return array.astype(np.int16)
    return array.astype(np.float32)


def write_dicom(
    array: np.ndarray,
    affine: np.ndarray,
    out: str | Path,
    *,
    patient_id: str,
    study_uid: str | None = None,
    series_uid: str | None = None,
    modality: str = "CT",
    rescale_intercept: float = -1024.0,
    instance_numbers: list[int] | None = None,
    extra: dict[str, Any] | None = None,
) -> list[Path]:
    """Write an image as DICOM: a 3D ``(X, Y, Z)`` array as a series folder (one file per
    slice), a 2D ``(X, Y)`` array as one file.

    Values are stored as ``value - rescale_intercept`` in unsigned 16 bits with
    ``RescaleIntercept`` set, as CT scanners do; :func:`read_image` gives the values back.

    Args:
        array: integer values (e.g. HU), shape ``(X, Y)`` or ``(X, Y, Z)``.
        affine: ``(4, 4)`` voxel-to-RAS matrix; written as ImagePositionPatient,
            ImageOrientationPatient, PixelSpacing and SliceThickness (in LPS, as DICOM wants).
        out: the folder for a series, or the ``.dcm`` file for a 2D image.
        patient_id, study_uid, series_uid: identifiers; UIDs are generated when ``None``.
        modality: ``CT``, ``MR``, ``DX``, ...
        rescale_intercept: stored = value - intercept (must make all values >= 0).
        instance_numbers: InstanceNumber per slice (default 1..Z); lets tests write them out
            of order to prove that readers sort by position.
        extra: more tags to set on every file, e.g. ``{"PatientName": "Doe^Jane"}``.

    Returns:
        The files written.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    array = np.asarray(array)
    is_2d = array.ndim == 2
    volume = array[:, :, None] if is_2d else array
    stored = np.round(volume - rescale_intercept)
    if stored.min() < 0 or stored.max() > 65535:
        raise ValueError("values minus rescale_intercept must lie in [0, 65535]")
    stored = stored.astype(np.uint16)
    lps = np.linalg.inv(LPS_TO_RAS) @ np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    row_cos, col_cos = lps[:3, 0] / spacing[0], lps[:3, 1] / spacing[1]
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_uid = generate_uid()
    sop_class = {
        "CT": "1.2.840.10008.5.1.4.1.1.2",
        "MR": "1.2.840.10008.5.1.4.1.1.4",
    }.get(modality, "1.2.840.10008.5.1.4.1.1.1.1")  # Digital X-Ray
    numbers = instance_numbers or list(range(1, volume.shape[2] + 1))
    out = Path(out)
    folder = out.parent if is_2d else out
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for k in range(volume.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = modality
        ds.PatientID = patient_id
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.InstanceNumber = int(numbers[k])
        ds.ImagePositionPatient = [float(v) for v in (lps @ [0, 0, k, 1])[:3]]
        ds.ImageOrientationPatient = [float(v) for v in (*row_cos, *col_cos)]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]  # rows, then columns
        ds.SliceThickness = float(spacing[2])
        ds.Rows, ds.Columns = int(volume.shape[1]), int(volume.shape[0])
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleSlope = 1
        ds.RescaleIntercept = float(rescale_intercept)
        ds.RescaleType = "HU" if modality == "CT" else "US"
        for key, value in (extra or {}).items():
            setattr(ds, key, value)
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()
        target = out if is_2d else folder / f"slice_{k:04d}.dcm"
        written.append(
            _atomic(target, ".dcm", lambda tmp, ds=ds: ds.save_as(tmp, enforce_file_format=True))
        )
    return written


# --- helpers --------------------------------------------------------------------------------


def _atomic(path: Path, suffix: str, save: Any) -> Path:
    """Call ``save(tmp)`` with a temporary name in ``path``'s folder, then rename to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}{suffix}")
    try:
        save(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
