"""Predicted masks as DICOM Segmentation objects that a PACS viewer or 3D Slicer lays over the images.

``predict RUN_DIR SERIES --format dicom-seg`` writes, beside each NIfTI mask, a DICOM
Segmentation (``<name>.seg.dcm``, built with highdicom, the optional extra
``pip install -e ".[export]"``) that references the source series: one frame per source slice
and segment, each frame pointing at its slice's SOPInstanceUID, in the source's frame of
reference, with the patient and study of the source. Every foreground label is a segment (number
= label value, label ``label <value>``), coded with the generic category and type "Tissue"
(SNOMED 85756007): the model's classes are numbers, not anatomy. Empty frames are left out, as
the standard allows.

The mask comes on the image's own grid ``(X, Y[, Z])`` as :func:`..data.io.read_image` returns
a series: X along a row (DICOM columns), Y down a column (DICOM rows), Z the slices sorted by
their position along the slice normal. So the frame of the slice at sorted position ``z`` is
``mask[:, :, z].T``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..data.io import ImageError
from ..utils.errors import ProjectError
from ..utils.io import atomic_write_bytes

EXTRA = 'pip install -e ".[export]"'
TYPE2_COPIED = (
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)


class DicomSegError(ProjectError):
    """The inputs cannot be written as DICOM SEG (not DICOM, not segmentation, no highdicom)."""


def _highdicom() -> Any:
    try:
        import highdicom
    except ImportError:
        raise DicomSegError(f"--format dicom-seg needs highdicom: {EXTRA}") from None
    return highdicom


def source_slices(series: str | Path, series_uid: str | None = None) -> list[Any]:
    """The datasets of a DICOM series, sorted by position along the slice normal.

    Args:
        series: a series folder or a single DICOM file.
        series_uid: the series to take when the folder holds several (``None``: the only one).

    Returns:
        The pydicom datasets, first slice first (the order of :func:`..data.io.read_image`'s Z).

    Raises:
        DicomSegError: no DICOM image, several series without ``series_uid``.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(series)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    datasets = []
    for file in files:
        if file.name.startswith("."):
            continue
        try:
            ds = pydicom.dcmread(file)
        except (InvalidDicomError, OSError):
            continue
        if "PixelData" in ds and (series_uid is None or ds.SeriesInstanceUID == series_uid):
            datasets.append(ds)
    if not datasets:
        raise DicomSegError(f"'{path}' holds no DICOM image: --format dicom-seg needs DICOM input")
    uids = {str(ds.SeriesInstanceUID) for ds in datasets}
    if len(uids) > 1:
        raise DicomSegError(f"'{path}' holds {len(uids)} series; give one series folder")
    iop = np.asarray([float(v) for v in datasets[0].ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    return sorted(
        datasets, key=lambda ds: float(np.asarray(ds.ImagePositionPatient, dtype=float) @ normal)
    )


def write_dicom_seg(
    labels: np.ndarray,
    series: str | Path,
    out: str | Path,
    label_names: Sequence[str],
    *,
    series_uid: str | None = None,
    description: str = "model prediction",
) -> Path:
    """Write ``labels`` as a DICOM Segmentation referencing the source series.

    Args:
        labels: integer labels on the source grid, ``(X, Y, Z)`` (Z = the sorted slices) or
            ``(X, Y)`` for a single slice; 0 is background.
        series: the source series folder (or file) the mask was predicted from.
        out: the ``.dcm`` file to write (atomically).
        label_names: a name per label value (index 0 the background).
        series_uid: the source series when the folder holds several.
        description: the SEG's SeriesDescription.

    Returns:
        ``out``.

    Raises:
        DicomSegError: highdicom missing, the source is not DICOM, or the mask does not fit it
            (the message gives both shapes).
    """
    hd = _highdicom()
    from pydicom.sr.codedict import codes

    sources = source_slices(series, series_uid)
    for ds in sources:  # type-2 patient and study attributes the SEG copies (empty when unknown)
        for keyword in TYPE2_COPIED:
            if keyword not in ds:
                setattr(ds, keyword, "")
    array = np.asarray(labels)
    volume = array[:, :, None] if array.ndim == 2 else array
    rows, columns = int(sources[0].Rows), int(sources[0].Columns)
    if volume.ndim != 3 or volume.shape != (columns, rows, len(sources)):
        raise DicomSegError(
            f"the mask has shape {array.shape}, the series '{series}' is {columns} x {rows} "
            f"pixels x {len(sources)} slices"
        )
    frames = np.ascontiguousarray(volume.transpose(2, 1, 0)).astype(np.uint16)  # (Z, rows, cols)
    algorithm = hd.AlgorithmIdentificationSequence(
        name="medical imaging model",
        version=__version__,
        family=codes.cid7162.ArtificialIntelligence,
    )
    count = max(len(label_names) - 1, int(frames.max()), 1)
    segments = [
        hd.seg.SegmentDescription(
            segment_number=value,
            segment_label=f"label {label_names[value] if value < len(label_names) else value}",
            segmented_property_category=codes.SCT.Tissue,
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            tracking_uid=hd.UID(),
            tracking_id=f"label {value}",
        )
        for value in range(1, count + 1)
    ]
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=frames if count > 1 else frames.astype(bool),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments,
        series_instance_uid=hd.UID(),
        series_number=int(getattr(sources[0], "SeriesNumber", 0) or 0) + 1000,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="research model (not a medical device)",
        manufacturer_model_name="medical imaging model",
        software_versions=str(__version__),
        device_serial_number="none",
        series_description=description,
    )
    buffer = io.BytesIO()
    seg.save_as(buffer)
    return atomic_write_bytes(Path(out), buffer.getvalue())


def check_dicom_inputs(images: Sequence[Path]) -> None:
    """Refuse non-DICOM inputs before anything is predicted.

    Raises:
        DicomSegError: some inputs are not DICOM (the message names them).
    """
    from ..data.io import file_format

    wrong = []
    for image in images:
        try:
            kind = "dicom" if Path(image).is_dir() else file_format(image)
        except ImageError:
            kind = "unknown"
        if kind != "dicom":
            wrong.append(str(image))
    if wrong:
        raise DicomSegError(
            f"--format dicom-seg needs DICOM inputs (series folders or files); not DICOM: "
            f"{', '.join(wrong[:5])}" + (f" and {len(wrong) - 5} more" if len(wrong) > 5 else "")
        )
