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
"""

from __future__ import annotations

import gzip
import os
import uuid
import warnings
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


def file_format(path: str | Path) -> str:
    """``"nifti"``, ``"png"`` or ``"dicom"`` for a path (a folder is a DICOM series)."""
    path = Path(path)
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


def read_image(path: str | Path, series_uid: str | None = None, canonical: bool = False) -> Image:
    """Read a DICOM file or series folder, a NIfTI file, or a PNG/JPEG image.

    Args:
        path: the file, or a folder holding one DICOM series.
        series_uid: which series to read when a DICOM folder holds several.
        canonical: reorient to the closest canonical (RAS+) orientation, so that array axes
            run left->right, posterior->anterior, inferior->superior.

    Returns:
        The :class:`Image`.

    Raises:
        ImageError: the path is missing, unreadable, truncated, of an unsupported format, or a
            DICOM folder holds several series and ``series_uid`` does not pick one.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"'{path}' does not exist")
    fmt = file_format(path)
    reader = {"nifti": _read_nifti, "png": _read_png, "dicom": _read_dicom}[fmt]
    try:
        image = reader(path, series_uid) if fmt == "dicom" else reader(path)
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
    """The same 3D image with axes reordered/flipped to the closest RAS+ orientation."""
    canon = nib.as_closest_canonical(nib.Nifti1Image(image.array, image.affine))
    return Image(np.asarray(canon.dataobj), canon.affine, image.path, dict(image.meta))


# --- NIfTI ---------------------------------------------------------------------------------


def _read_nifti(path: Path) -> Image:
    img = None
    if path.name.lower().endswith(".gz"):
        # One gzip call on the whole file is about twice as fast as nibabel's streamed reads.
        try:
            img = nib.Nifti1Image.from_bytes(gzip.decompress(path.read_bytes()))
        except Exception:
            img = None  # NIfTI-2 or a damaged file: let nibabel's loader decide and report
    if img is None:
        img = nib.load(str(path))
    array = np.asanyarray(img.dataobj)  # applies scl_slope/scl_inter, keeps ints when none
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3):
        raise ImageError(f"'{path}' has shape {array.shape}: expected a 2D or 3D image")
    return Image(np.ascontiguousarray(array), img.affine.astype(np.float64), path, {})


def write_nifti(array: np.ndarray, affine: np.ndarray, path: str | Path) -> Path:
    """Write ``array`` (``(X, Y)`` or ``(X, Y, Z)``) with ``affine`` to ``.nii``/``.nii.gz``.

    The file appears atomically (written under a temporary name, then renamed).
    """
    path = Path(path)
    if not path.name.lower().endswith(NIFTI_SUFFIXES):
        raise ImageError(f"'{path}': expected a .nii or .nii.gz file name")
    array = np.asarray(array)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    img = nib.Nifti1Image(array, np.asarray(affine, dtype=np.float64))
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    img.header.set_xyzt_units("mm")
    suffix = ".nii.gz" if path.name.lower().endswith(".gz") else ".nii"
    return _atomic(path, suffix, lambda tmp: nib.save(img, str(tmp)))


def write_like(array: np.ndarray, like: Image, path: str | Path) -> Path:
    """Write a prediction in the geometry of the image it was made from (NIfTI)."""
    if tuple(array.shape) != like.shape:
        raise ImageError(
            f"prediction for '{like.path}' has shape {tuple(array.shape)}, expected {like.shape}"
        )
    return write_nifti(array, like.affine, path)


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


def _read_dicom(path: Path, series_uid: str | None) -> Image:
    import pydicom
    from pydicom.errors import InvalidDicomError

    files = [path] if path.is_file() else _dicom_files(path)
    headers = []
    for file in files:
        try:
            ds = pydicom.dcmread(file)  # pixels are decoded later, only for the chosen series
        except InvalidDicomError:
            if path.is_file():
                raise ImageError(f"'{file}' is not a DICOM file") from None
            continue  # a folder may hold other files (DICOMDIR, notes): skip them
        except Exception as exc:
            raise ImageError(f"cannot read '{file}' as DICOM: {exc}".splitlines()[0]) from None
        if "PixelData" in ds or getattr(ds, "Rows", None):
            headers.append((file, ds))
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
            f"'{path}' holds {len(series)} series: {listing}; choose one with --series UID"
        )
    else:
        chosen = next(iter(series.values()))
    return _dicom_series(path, chosen)


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


def _dicom_series(path: Path, items: list) -> Image:
    from pydicom.pixels import apply_modality_lut

    first = items[0][1]
    row_cos, col_cos = _orientation(first)
    normal = np.cross(row_cos, col_cos)

    def position(ds: Any) -> np.ndarray:
        ipp = getattr(ds, "ImagePositionPatient", None)
        return np.asarray([float(v) for v in ipp]) if ipp is not None else np.zeros(3)

    if len(items) > 1:
        if any(getattr(ds, "ImagePositionPatient", None) is None for _, ds in items):
            raise ImageError(f"'{path}': a slice has no ImagePositionPatient; cannot order slices")
        items = sorted(items, key=lambda item: float(position(item[1]) @ normal))
        along = np.array([position(ds) @ normal for _, ds in items])
        steps = np.diff(along)
        if np.any(np.isclose(steps, 0.0, atol=1e-4)):
            dupes = [str(items[i][0].name) for i in np.flatnonzero(np.isclose(steps, 0, atol=1e-4))]
            raise ImageError(
                f"'{path}': several slices at the same position (e.g. {dupes[0]}); "
                "is it more than one series or a time series?"
            )
        slice_step = float(np.median(steps))
        if np.max(np.abs(steps - slice_step)) > 0.01 * abs(slice_step) + 1e-3:
            warnings.warn(
                f"'{path}': slice spacing varies ({steps.min():.3f} to {steps.max():.3f} mm); "
                f"using the median {slice_step:.3f} mm",
                stacklevel=3,
            )
        shapes = {(int(ds.Rows), int(ds.Columns)) for _, ds in items}
        if len(shapes) > 1:
            raise ImageError(f"'{path}': slices of different sizes {sorted(shapes)}")
    else:
        slice_step = (
            float(getattr(first, "SpacingBetweenSlices", 0) or 0)
            or float(getattr(first, "SliceThickness", 0) or 0)
            or 1.0
        )

    slices = []
    for file, ds in items:
        try:
            pixels = ds.pixel_array
        except Exception as exc:
            raise ImageError(f"cannot decode pixels of '{file}': {exc}".splitlines()[0]) from None
        if pixels.ndim != 2:
            raise ImageError(f"'{file}': multi-frame or colour DICOM is not supported")
        slices.append(apply_modality_lut(pixels, ds))  # RescaleSlope/Intercept -> HU
    volume = np.stack(slices, axis=-1)  # (rows, cols, slices) = (Y, X, Z)
    volume = np.ascontiguousarray(volume.transpose(1, 0, 2))  # -> (X, Y, Z)
    volume = _compact(volume)

    dr, dc = _pixel_spacing(first)
    lps = np.eye(4)
    lps[:3, 0] = row_cos * dc  # X: along a row, spacing between columns
    lps[:3, 1] = col_cos * dr  # Y: down a column, spacing between rows
    lps[:3, 2] = normal * slice_step
    lps[:3, 3] = position(items[0][1])
    affine = LPS_TO_RAS @ lps
    if volume.shape[2] == 1:
        volume = volume[:, :, 0]
    meta = {
        "series_uid": str(getattr(first, "SeriesInstanceUID", "")),
        "study_uid": str(getattr(first, "StudyInstanceUID", "")),
        "modality": str(getattr(first, "Modality", "")),
        "patient_id": str(getattr(first, "PatientID", "")),
        "files": len(items),
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
