"""The PyTorch dataset: cases from the manifest, preprocessed once, cached, cut into patches.

Each item is a dict:

* ``"image"``: float32 tensor ``(C, X, Y)`` or ``(C, X, Y, Z)``: ``C = 1``, or one channel per
  ``image_<channel>`` column of a multi-channel case (several MR sequences, say), in column
  order. The channels must share one grid (shape and affine, checked); each is normalized on
  its own (its own z-score, or window) and all get the same spatial augmentation;
* ``"label"``: segmentation: ``uint8`` tensor ``(X, Y)`` / ``(X, Y, Z)``, the mask on the
  image's grid (no channel axis), in the dtype the cache stores it (:func:`.preprocess.as_mask`):
  8x less to read, copy and collate than int64. Masks with labels above 255 (rare) come as
  int64. Convert it where it becomes a loss target, after moving it to the device (a smaller
  transfer): ``label.long()`` for ``torch.nn.CrossEntropyLoss``, ``label.long()[:, None]`` for
  MONAI's losses. :meth:`MedicalDataset.prepare` fixes one dtype for every item
  (:attr:`MedicalDataset.mask_dtype`; training calls it), so that a DataLoader worker never
  batches masks of two dtypes (its collate would cast them to the first one's).
  Classification: int64 scalar, the index of the case's class in ``classes``;
* ``"case_id"``: the manifest's case id.

Training mode (``train=True``) cuts a random patch of ``patch_size`` (a fraction
``foreground_fraction`` of them centered on a labelled voxel; the class is drawn first, uniformly
among the classes present, then a voxel of it) and augments it. Validation mode
(``train=False``) is deterministic: no augmentation, the whole image, or its center patch with
``val_center_crop``. Images smaller than the patch are padded (image with its minimum, i.e. air
or background; mask with 0).

Items are the caller's own, writable arrays, made with as few copies as possible: whole images
come from the cache as copy-on-write memory maps (:mod:`.cache`; changing an item in place
never changes the cache), so the DataLoader's collate is their only copy; patches are cut from
read-only maps.

Randomness comes only from ``utils.seed.sample_rng`` ``(seed, epoch, index)``: call
:meth:`MedicalDataset.set_epoch` before each epoch; results do not depend on the number of
DataLoader workers (persistent or not) or on the order samples are visited.

Typical use::

    settings = LoaderSettings(patch_size=(96, 96, 64), cache_dir=Path("data/cache"))
    train = MedicalDataset(train_cases, "segmentation", settings, seed=cfg.seed)
    train.prepare()  # decode and cache every case now; a bad file stops here, named
    loader = DataLoader(train, batch_size=2, shuffle=True, num_workers=2,
                        generator=make_generator(cfg.seed), worker_init_fn=worker_init_fn)
    for epoch in range(epochs):
        train.set_epoch(epoch)
        for batch in loader: ...
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import DataConfig
from ..utils.seed import sample_rng
from .augment import AugmentSettings, augment
from .cache import ArrayCache, CacheEntry
from .io import Image, ImageError, read_image, read_label
from .manifest import Case, DataError
from .orientation import DEFAULT as DEFAULT_ORIENTATION
from .orientation import check_orientation
from .preprocess import NORMALIZATIONS, check_window, preprocess

TASKS = ("segmentation", "classification")
FOREGROUND_POINTS = 4096  # labelled voxels kept per class for foreground-centered patches
# Defaults shared with the config (``data.*``), read from one place: ``config.DataConfig``.
_DATA_DEFAULTS = DataConfig()
_DATA_DEFAULTS_WINDOW = tuple(_DATA_DEFAULTS.window) if _DATA_DEFAULTS.window else None


@dataclass
class LoaderSettings:
    """How cases are preprocessed, cached, cut and augmented.

    ``foreground_fraction``, ``window``, ``augment`` and the augmentation strengths default to
    the config's ``data.*`` defaults (:class:`.config.DataConfig`);
    :func:`.from_config.loader_settings` makes a run's settings from its config.

    Attributes:
        patch_size: voxels per axis of a training patch, e.g. ``(96, 96, 64)``; ``None`` gives
            whole images. Its length must match the images' dimensions.
        foreground_fraction: share of training patches centered on a labelled voxel
            (segmentation), in ``[0, 1]``.
        target_spacing: mm per axis to resample every case to; ``None`` keeps each grid.
        window: ``(low, high)`` intensity clipping window (HU for CT), or ``None``.
        normalization: ``"ct"`` (window, then z-score of the voxels inside it), ``"mr"``
            (z-score of the non-zero voxels) or ``"none"``; see :mod:`.preprocess`.
        augment: augment training items (never validation items).
        augmentation: which augmentations and how strong (:class:`.augment.AugmentSettings`).
        cache_dir: folder of the on-disk cache (:mod:`.cache`); ``None`` decodes every time.
        orientation: axis codes every 3D case is reoriented to before anything else
            (:mod:`.orientation`), e.g. ``"RAS"``; ``None`` keeps each file's own axes.
        val_center_crop: in validation mode, cut the center ``patch_size`` patch instead of
            returning the whole image (needed to batch images of different sizes).
    """

    patch_size: tuple[int, ...] | None = None
    foreground_fraction: float = _DATA_DEFAULTS.foreground_fraction
    target_spacing: tuple[float, ...] | None = None
    window: tuple[float, float] | None = _DATA_DEFAULTS_WINDOW
    normalization: str = "ct"
    augment: bool = True
    augmentation: AugmentSettings = field(default_factory=AugmentSettings)
    cache_dir: Path | None = None
    orientation: str | None = DEFAULT_ORIENTATION
    val_center_crop: bool = False

    def __post_init__(self) -> None:
        if self.patch_size is not None:
            size = tuple(int(n) for n in self.patch_size)
            if len(size) not in (2, 3) or min(size) < 1:
                raise ValueError(
                    f"patch_size must be 2 or 3 positive integers, got {tuple(self.patch_size)}"
                )
            self.patch_size = size
        if not 0.0 <= float(self.foreground_fraction) <= 1.0:
            raise ValueError(
                f"foreground_fraction must be in [0, 1], got {self.foreground_fraction}"
            )
        if self.target_spacing is not None:
            spacing = tuple(float(s) for s in self.target_spacing)
            if len(spacing) not in (2, 3) or min(spacing) <= 0:
                raise ValueError(
                    f"target_spacing must be 2 or 3 positive numbers (mm), "
                    f"got {tuple(self.target_spacing)}"
                )
            self.target_spacing = spacing
        self.window = check_window(self.window)
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(
                f"normalization must be one of {', '.join(NORMALIZATIONS)}, "
                f"got {self.normalization!r}"
            )
        if self.normalization == "ct" and self.window is None:
            raise ValueError("normalization 'ct' needs a window (low, high) in HU")
        if isinstance(self.augmentation, dict):
            self.augmentation = AugmentSettings(**self.augmentation)
        if self.cache_dir is not None:
            self.cache_dir = Path(self.cache_dir)
        if self.orientation is not None:
            self.orientation = check_orientation(self.orientation)

    def preprocessing(self) -> dict[str, Any]:
        """The settings that change the cached arrays (the rest act after the cache)."""
        return {
            "normalization": self.normalization,
            "window": list(self.window) if self.window is not None else None,
            "target_spacing": list(self.target_spacing) if self.target_spacing else None,
            "foreground_points": FOREGROUND_POINTS,
            "orientation": self.orientation,
        }


def check_channel(image: Image, first: Image, what: str, first_name: str) -> None:
    """Raise a one-line :class:`~.io.ImageError` unless ``image`` (a channel) has the grid of
    ``first`` (the case's first channel): the same shape and affine (to 1e-3 mm).

    Args:
        image: the channel to check.
        first: the case's first channel.
        what: names the channel in the message, e.g. ``"case 'c1' channel 'T2'"``.
        first_name: the first channel's name.

    Raises:
        ImageError: another shape or affine.
    """
    if image.shape != first.shape:
        raise ImageError(
            f"{what} ('{image.path}') has shape {tuple(image.shape)}, channel '{first_name}' "
            f"has {tuple(first.shape)}: all channels of a case must share one grid (co-register "
            "and resample them first)"
        )
    if not np.allclose(np.asarray(image.affine), np.asarray(first.affine), atol=1e-3):
        raise ImageError(
            f"{what} ('{image.path}') has another affine (position, orientation or spacing) "
            f"than channel '{first_name}': all channels of a case must share one grid "
            "(co-register and resample them first)"
        )


def _mask_dtype(max_label: int) -> np.dtype:
    """The item dtype of masks whose largest label is ``max_label``: ``uint8`` or int64."""
    return np.dtype(np.uint8 if max_label <= np.iinfo(np.uint8).max else np.int64)


def class_names(cases: Sequence[Case]) -> list[str]:
    """The sorted class names of classification cases: build it once from *all* cases, so
    that training and validation sets share the same indices."""
    return sorted({str(case.label) for case in cases})


def foreground_points(
    mask: np.ndarray, per_class: int = FOREGROUND_POINTS
) -> tuple[np.ndarray, dict[str, list[int]]]:
    """Up to ``per_class`` voxel coordinates of each label > 0, evenly spread over its voxels.

    Returns:
        ``(points, ranges)``: int32 ``(N, ndim)`` coordinates, and for each label (as text) the
        ``[start, stop)`` rows of ``points`` that belong to it.
    """
    flat = mask.ravel()
    # One pass over the mask (through a bool array: NumPy's fast path, ~10x quicker than on
    # uint8); the rest is over labelled voxels only.
    labelled = np.flatnonzero(flat != 0)
    values = flat[labelled]
    present = np.flatnonzero(np.bincount(values)) if values.size else []
    chunks, ranges, start = [], {}, 0
    for label in present:
        index = labelled if len(present) == 1 else labelled[values == label]
        if index.size > per_class:
            index = index[np.linspace(0, index.size - 1, per_class).round().astype(np.int64)]
        chunks.append(np.stack(np.unravel_index(index, mask.shape), axis=1))
        ranges[str(int(label))] = [start, start + index.size]
        start += index.size
    points = np.concatenate(chunks) if chunks else np.zeros((0, mask.ndim))
    return points.astype(np.int32), ranges


def crop_pad(
    array: np.ndarray, start: Sequence[int], size: Sequence[int], pad_value: float = 0
) -> np.ndarray:
    """The block ``array[start : start + size]``, padded with ``pad_value`` where it leaves the
    array (``start`` may be negative). Always a new C-contiguous array."""
    if len(start) != array.ndim or len(size) != array.ndim:
        raise ValueError(f"start {tuple(start)} and size {tuple(size)} need {array.ndim} values")
    out = np.full(tuple(size), pad_value, dtype=array.dtype)
    src, dst = [], []
    for begin, length, extent in zip(start, size, array.shape, strict=True):
        lo, hi = max(begin, 0), min(begin + length, extent)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - begin, hi - begin))
    out[tuple(dst)] = array[tuple(src)]
    return out


def _start_range(shape: Sequence[int], size: Sequence[int]) -> list[tuple[int, int]]:
    """Per axis, the lowest and highest start that keeps the patch inside the image (or the
    image inside the patch, when the image is smaller)."""
    return [(min(0, n - p), max(0, n - p)) for n, p in zip(shape, size, strict=True)]


def random_start(
    shape: Sequence[int],
    size: Sequence[int],
    rng: np.random.Generator,
    center: Sequence[int] | None = None,
) -> list[int]:
    """Start of a random patch, or of the patch centered on ``center`` (clamped so that it
    stays inside the image; ``center`` always stays inside the patch)."""
    ranges = _start_range(shape, size)
    if center is None:
        return [int(rng.integers(lo, hi + 1)) for lo, hi in ranges]
    return [
        int(min(max(c - p // 2, lo), hi))
        for c, p, (lo, hi) in zip(center, size, ranges, strict=True)
    ]


def center_start(shape: Sequence[int], size: Sequence[int]) -> list[int]:
    """Start of the center patch (negative where the image is smaller than the patch)."""
    return [(n - p) // 2 for n, p in zip(shape, size, strict=True)]


@dataclass(frozen=True)
class CachePlan:
    """What filling the cache will take, from one entry built and measured.

    Attributes:
        folder: the cache folder (``data.cache_dir``).
        missing: cases without a cache entry before the measured one was built.
        entry_bytes: bytes on disk of the measured entry (the first missing case).
        free_bytes: free space on the cache's disk after that entry.
    """

    folder: Path
    missing: int
    entry_bytes: int
    free_bytes: int

    @property
    def total_bytes(self) -> int:
        """The estimate for every missing case (all as large as the measured one)."""
        return self.missing * self.entry_bytes

    @property
    def fits(self) -> bool:
        """Whether the rest of the estimate fits in the free space."""
        return self.total_bytes - self.entry_bytes <= self.free_bytes

    def message(self) -> str:
        """One line for the user: how much, where, and what to do when it does not fit."""
        line = (
            f"cache: decoding {self.missing} cases into {self.folder}, about "
            f"{_size(self.total_bytes)} ({_size(self.entry_bytes)} a case, from the first; "
            f"{_size(self.free_bytes)} free there)"
        )
        if self.fits:
            return line
        return (
            f"{line}: it will not fit; set data.cache_dir to a larger disk (cases that do not "
            "fit are decoded again each epoch)"
        )


def _size(count: int) -> str:
    return f"{count / 1e9:.1f} GB" if count >= 1e8 else f"{count / 1e6:.1f} MB"


class MedicalDataset(Dataset):
    """Cases of the manifest as training or validation items (see the module docstring).

    Args:
        cases: the cases of this split (:func:`~.manifest.read_manifest`, one fold's ids).
        task: ``"segmentation"`` (``case.label`` is a mask path) or ``"classification"``
            (``case.label`` is a class name).
        settings: preprocessing, patch and augmentation options; defaults when ``None``.
        classes: class names, in index order (classification only); use :func:`class_names`
            on all cases.
        train: random patches and augmentation (``True``) or deterministic validation items.
        seed: the run's seed; with the epoch and the index it fixes every random draw.
        spatial_dims: when given, every image must have this many dimensions.

    Attributes:
        mask_dtype: the NumPy dtype of every item's mask once :meth:`prepare` has run
            (``uint8``, or int64 when a label exceeds 255); ``None`` before: each mask's own.

    Raises:
        DataError: no cases, cases with different channels (``image_<channel>`` columns), or a
            classification label not in ``classes``.
        ValueError: bad ``task``, ``spatial_dims``, or ``classes`` missing for classification.
    """

    def __init__(
        self,
        cases: Sequence[Case],
        task: str,
        settings: LoaderSettings | None = None,
        *,
        classes: Sequence[str] | None = None,
        train: bool = True,
        seed: int = 0,
        spatial_dims: int | None = None,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
        if spatial_dims not in (None, 2, 3):
            raise ValueError(f"spatial_dims must be 2, 3 or None, got {spatial_dims!r}")
        self.cases = list(cases)
        if not self.cases:
            raise DataError("the dataset has no cases (an empty split or manifest?)")
        names = list(self.cases[0].channels)
        for case in self.cases:
            if list(case.channels) != names:
                raise DataError(
                    f"case '{case.case_id}' has channels {list(case.channels) or ['image']}, "
                    f"case '{self.cases[0].case_id}' has {names or ['image']}: every case needs "
                    "the same image columns"
                )
        #: the channel names (``image_<name>`` columns), or ``["image"]`` for one channel.
        self.channel_names: list[str] = names or ["image"]
        self.task = task
        self.settings = settings or LoaderSettings()
        self.train = bool(train)
        self.seed = int(seed)
        self.spatial_dims = spatial_dims
        self.classes: list[str] | None = None
        self._class_index: dict[str, int] = {}
        if task == "classification":
            if not classes:
                raise ValueError("classification needs classes=[...] (see class_names(cases))")
            self.classes = [str(c) for c in classes]
            self._class_index = {name: i for i, name in enumerate(self.classes)}
            for case in self.cases:
                if str(case.label) not in self._class_index:
                    raise DataError(
                        f"case '{case.case_id}' has label '{case.label}', not one of the "
                        f"classes {', '.join(self.classes)}"
                    )
        cache_dir = self.settings.cache_dir
        self.cache = ArrayCache(cache_dir) if cache_dir is not None else None
        # The masks' item dtype for all cases, once prepare() has seen them (else per mask).
        self.mask_dtype: np.dtype | None = None
        # Shared memory, so that set_epoch reaches persistent DataLoader workers too.
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    def __len__(self) -> int:
        return len(self.cases)

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that, with the seed and the index, fixes each item's random draws."""
        if int(epoch) < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._epoch.fill_(int(epoch))

    # --- preprocessing and the cache ------------------------------------------------------

    @property
    def in_channels(self) -> int:
        """Channels of every item's image (the network's ``in_channels``)."""
        return len(self.channel_names)

    @staticmethod
    def _images(case: Case) -> list[Path]:
        """The case's image files, one per channel, in column order."""
        return [Path(p) for p in case.channels.values()] if case.channels else [Path(case.image)]

    def _sources(self, case: Case) -> list[Path]:
        if self.task == "segmentation":
            return [*self._images(case), Path(case.label)]
        return self._images(case)

    def _check_dims(self, ndim: int, path: str | Path) -> None:
        patch = self.settings.patch_size
        if self.spatial_dims is not None and ndim != self.spatial_dims:
            raise ImageError(f"image '{path}' is {ndim}D, expected {self.spatial_dims}D images")
        if patch is not None and len(patch) != ndim:
            raise ImageError(
                f"image '{path}' is {ndim}D but patch_size {patch} has {len(patch)} values"
            )

    def _build(self, case: Case) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Decode and preprocess one case (what the cache stores).

        A multi-channel case is stored as one ``(C, *S)`` image, each channel normalized on
        its own; a single-channel case as ``(*S)``, as before channels existed.
        """
        image: Image = read_image(case.image)
        self._check_dims(image.ndim, Path(case.image))
        mask = read_label(case.label, image) if self.task == "segmentation" else None
        pre = preprocess(
            image,
            mask,
            normalization=self.settings.normalization,
            window=self.settings.window,
            target_spacing=self.settings.target_spacing,
            orientation=self.settings.orientation,
        )
        stored = pre.image
        if case.channels:
            first = next(iter(case.channels))
            stacked = [pre.image]
            for name, path in list(case.channels.items())[1:]:
                other = read_image(path)
                check_channel(other, image, f"case '{case.case_id}' channel '{name}'", first)
                stacked.append(
                    preprocess(
                        other,
                        None,
                        normalization=self.settings.normalization,
                        window=self.settings.window,
                        target_spacing=self.settings.target_spacing,
                        orientation=self.settings.orientation,
                    ).image
                )
            stored = np.stack(stacked)
        arrays = {"image": stored}
        meta: dict[str, Any] = {
            **pre.geometry(image),
            "pad_value": float(pre.image.min()) if pre.image.size else 0.0,
        }
        if case.channels:  # each channel is padded with its own minimum
            meta["channels"] = list(case.channels)
            meta["pad_values"] = [float(c.min()) if c.size else 0.0 for c in stored]
        if pre.mask is not None:
            points, ranges = foreground_points(pre.mask)
            arrays["mask"] = pre.mask
            arrays["foreground"] = points
            meta["foreground_classes"] = ranges
        return arrays, meta

    def entry(
        self, index: int, names: Sequence[str] | None = None, mmap: bool | str = True
    ) -> CacheEntry:
        """The preprocessed arrays of case ``index`` (``image``, and for segmentation ``mask``
        and ``foreground``) with their geometry in ``meta``: from the cache, or decoded.

        ``mmap`` is as for :meth:`.cache.ArrayCache.load`: by default, read-only memory maps.

        Raises:
            ImageError: the image or mask cannot be read, they do not match, or the image has
                the wrong number of dimensions; the message names the file.
        """
        case = self.cases[index]
        if self.cache is None:
            arrays, meta = self._build(case)
            return CacheEntry("", arrays, meta)
        try:
            return self.cache.get(
                self._sources(case),
                self.settings.preprocessing(),
                lambda: self._build(case),
                names=names,
                mmap=mmap,
            )
        except OSError as exc:  # a source that cannot be hashed: missing or unreadable
            what = "does not exist" if isinstance(exc, FileNotFoundError) else "cannot be read"
            raise ImageError(
                f"'{exc.filename or case.image}' {what} (case '{case.case_id}')"
            ) from None

    def geometry(self, index: int) -> dict[str, Any]:
        """Shapes, affines and spacing of case ``index`` before and after preprocessing (to
        put predictions back on the source grid)."""
        return dict(self.entry(index, names=[]).meta)

    def cache_plan(self) -> CachePlan | None:
        """Build the first uncached case's entry and estimate from its size what caching the
        others will take (say it before :meth:`prepare` fills the cache: on a real dataset
        that can be tens of GB).

        Returns:
            The plan, or ``None`` without a cache or when every case is cached already.

        Raises:
            ImageError: the first uncached case cannot be read (the message names the file).
        """
        if self.cache is None:
            return None
        settings = self.settings.preprocessing()
        missing = []
        for index, case in enumerate(self.cases):
            try:
                key = self.cache.key(self._sources(case), settings)
            except OSError:
                key = ""  # a missing file: prepare() names it
            if not key or not self.cache.has(key):
                missing.append(index)
        if not missing:
            return None
        entry = self.entry(missing[0], names=[])
        free = shutil.disk_usage(self.cache.folder).free
        size = self.cache.entry_bytes(entry.key)
        return CachePlan(self.cache.folder, len(missing), size, free)

    def prepare(self, threads: int = 1) -> int:
        """Decode, preprocess and cache every case now (checking that all can be read).

        Call it before training: errors then name the file in one line in the main process,
        instead of surfacing wrapped from a DataLoader worker, and the first epoch is as fast
        as the others.

        It also fixes :attr:`mask_dtype` (segmentation), the dtype of every item's mask:
        ``uint8`` when all labels fit in it, else int64.

        Args:
            threads: cases decoded at the same time (decompression runs outside the GIL).

        Returns:
            How many entries were built (0 when all were cached already).
        """
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")

        def built(index: int) -> tuple[bool, int]:
            entry = self.entry(index, names=[])
            labels = entry.meta.get("foreground_classes") or {}
            return entry.built or self.cache is None, max(map(int, labels), default=0)

        if threads == 1:
            results = [built(index) for index in range(len(self))]
        else:
            with ThreadPoolExecutor(threads) as pool:
                results = list(pool.map(built, range(len(self))))
        if self.task == "segmentation":
            self.mask_dtype = _mask_dtype(max(label for _, label in results))
        return sum(done for done, _ in results)

    # --- items ----------------------------------------------------------------------------

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} cases")
        index %= len(self)
        case = self.cases[index]
        patch = self.settings.patch_size
        sampling = self.train and patch is not None
        cropping = sampling or (patch is not None and self.settings.val_center_crop)
        names = ["image"]
        if self.task == "segmentation":
            names += ["mask", "foreground"] if sampling else ["mask"]
        # Patches through a read-only map (only their pages are read, then cut: a copy); whole
        # images through a copy-on-write map: this item's own, writable, and not yet copied.
        entry = self.entry(index, names, mmap="r" if cropping else "c")
        image = entry.arrays["image"]
        mask = entry.arrays.get("mask")
        multi = "channels" in entry.meta  # stored (C, *S); else (*S)
        self._check_dims(image.ndim - multi, case.image)
        augmenting = self.train and self.settings.augment
        # Whole or center-cut validation items draw nothing: no generator to seed (~50 us).
        rng = sample_rng(self.seed, self.epoch, index) if sampling or augmenting else None
        if cropping:
            spatial = image.shape[multi:]
            if sampling:
                start = random_start(spatial, patch, rng, self._center(entry, rng))
            else:
                start = center_start(spatial, patch)
            if multi:
                pads = entry.meta["pad_values"]
                image = np.stack(
                    [crop_pad(c, start, patch, pad) for c, pad in zip(image, pads, strict=True)]
                )
            else:
                image = crop_pad(image, start, patch, entry.meta.get("pad_value", 0.0))
            mask = crop_pad(mask, start, patch, 0) if mask is not None else None
        if augmenting:
            image, mask = augment(image, mask, rng, self.settings.augmentation, channel_axis=multi)
        # Arrays here are already this item's own (mapped copy-on-write, just built, cut or
        # augmented): no copy, and the mask keeps its stored dtype (see the module docstring).
        image = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        item: dict[str, Any] = {"image": image if multi else image[None], "case_id": case.case_id}
        if self.task == "segmentation":
            dtype = self.mask_dtype
            if dtype is None:  # prepare() has not run: this mask's own
                dtype = _mask_dtype(0 if mask.dtype == np.uint8 else np.iinfo(np.uint8).max + 1)
            item["label"] = torch.from_numpy(np.ascontiguousarray(mask, dtype=dtype))
        else:
            item["label"] = torch.tensor(self._class_index[str(case.label)], dtype=torch.int64)
        return item

    def _center(self, entry: CacheEntry, rng: np.random.Generator) -> np.ndarray | None:
        """A labelled voxel to center the patch on, or ``None`` for a random patch."""
        wants_foreground = rng.random() < self.settings.foreground_fraction
        ranges = entry.meta.get("foreground_classes") or {}
        if not wants_foreground or not ranges:
            return None
        start, stop = list(ranges.values())[int(rng.integers(len(ranges)))]
        return np.asarray(entry.arrays["foreground"][int(rng.integers(start, stop))])
