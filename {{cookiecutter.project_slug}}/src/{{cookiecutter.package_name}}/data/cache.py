"""An on-disk cache of decoded, preprocessed arrays, so that only the first epoch decodes.

Decoding a ``.nii.gz`` volume or a DICOM series and resampling it costs tens of milliseconds;
reading the same voxels back from an uncompressed ``.npy`` file costs well under one. Each entry
is a folder ``<cache_dir>/<key>/`` holding one ``.npy`` file per array and a ``meta.json``.

**The key** is a SHA-256 of the cache format version, the preprocessing settings and the *content*
of the source files (every byte of the image file, mask file or DICOM series folder). So:

* changing a source file or a setting gives a new key (the old entry is simply no longer used);
* touching, copying or moving the dataset keeps the key (same bytes), and so do identical files;
* hashing costs one read of the sources (~1 GB/s), so the content digest of each source is
  remembered in ``<cache_dir>/stamps/`` against its path, size and modification time and is only
  computed again when one of those changes. A file modified in the last
  :data:`RACY_SECONDS` is always hashed again (a second change within one timestamp tick could
  otherwise keep size and time, as ``git`` also guards against). Keying on size + time + path
  alone would be faster still but rebuild every entry after a copy, and it would miss an edit
  that keeps the size within one timestamp tick.

**Writes are atomic**: each file is written under a temporary name and renamed into place, and
``meta.json`` (listing every array's shape and dtype) is written last, so a reader sees a whole
entry or none. Files are not ``fsync``-ed: after a crash an entry may be truncated, which is why a
**corrupt entry** (unreadable ``meta.json``, a missing, truncated or mismatched ``.npy``) is
rebuilt with a warning rather than stopping training; a failed write (disk full, read-only
folder) also only warns, and the freshly built arrays are used directly.

**Reading** never copies more than it must (``mmap`` of :meth:`ArrayCache.load`):

* ``"r"`` (or ``True``), read-only memory maps (``np.memmap``), for patches: a random patch
  reads only the pages it needs, and the operating system's page cache shares them between
  DataLoader workers;
* ``"c"``, copy-on-write maps, for whole images: a writable array, private to the caller, with
  no up-front copy (its pages are those of the page cache until written; a write copies the
  page and never reaches the file). On POSIX systems the map holds no file descriptor; on
  Windows, where a mapped file cannot be replaced, the array is read whole instead;
* ``False``, the array read whole in one call.

Shape, dtype and data offset come from ``meta.json`` and each file's size is checked against
them; the files stay ordinary ``.npy`` files that ``np.load`` opens. Writers never modify a
file in place (they rename a new one over it), so an array mapped earlier keeps its content.

Concurrent writers (DataLoader workers, two runs) are safe: they write identical content under
unique temporary names and the last rename wins.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
import time
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .io import source_path, split_part

CACHE_VERSION = 1  # bump when the preprocessing code changes what an entry holds
RACY_SECONDS = 2.0  # a source modified more recently than this is hashed on every access
_CHUNK = 1 << 20


class CorruptEntryError(Exception):
    """A cache entry that cannot be read back; :meth:`ArrayCache.get` rebuilds it."""


@dataclass
class CacheEntry:
    """One cached case.

    Attributes:
        key: the entry's key (hex).
        arrays: name -> array; when loaded from disk, memory-mapped read-only, mapped
            copy-on-write or read whole (``mmap`` of :meth:`ArrayCache.load`); plain arrays
            when just built.
        meta: what the builder stored beside the arrays (geometry, statistics, ...).
        built: whether this call built the entry (a miss or a corrupt entry).
    """

    key: str
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)
    built: bool = False


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def stat_signature(path: str | Path) -> list:
    """``[size, mtime_ns]`` of a file, or ``[[relative path, size, mtime_ns], ...]`` for every
    file under a folder (a DICOM series).

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    path = source_path(path)  # a ``folder::SeriesInstanceUID`` image: the whole folder
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        return [st.st_size, st.st_mtime_ns]
    folder = Path(path)
    out = []
    for file in _files(folder):
        info = file.stat()
        out.append([file.relative_to(folder).as_posix(), info.st_size, info.st_mtime_ns])
    return out


def content_digest(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes, or of every file's relative name and bytes in a folder
    (and of the part, for a ``PATH::PART`` image: two series of one folder differ)."""
    path, part = split_part(path)
    digest = hashlib.sha256()
    if part is not None:
        digest.update(f"part:{part}\0".encode())
    files = _files(path) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def _newest_mtime_ns(signature: list) -> int:
    if signature and isinstance(signature[0], list):
        return max((entry[2] for entry in signature), default=0)
    return int(signature[1]) if signature else 0


def _write_atomic(path: Path, write: Callable[[Any], None]) -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it to ``path``."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _check_mmap(mmap: bool | str) -> None:
    if not (isinstance(mmap, bool) or mmap in ("r", "c")):
        raise ValueError(f"mmap must be False, True, 'r' or 'c', got {mmap!r}")


def _map_private(
    path: Path, dtype: np.dtype, shape: tuple[int, ...], offset: int, size: int
) -> np.ndarray | None:
    """A writable copy-on-write map of ``path`` (``MAP_PRIVATE``) as an array, or ``None`` where
    this way is not available (not POSIX, a dtype torch lacks, an unaligned offset, a file that
    cannot be mapped).

    torch maps the file and closes it at once, so the array holds no file descriptor, unlike
    ``np.memmap`` (a DataLoader item may live long: a list of evaluated items must not run out
    of descriptors).
    """
    if os.name != "posix" or offset % dtype.itemsize or not dtype.isnative:
        return None
    try:
        tensor = torch.from_numpy(np.empty(0, dtype))  # torch's dtype for it, or TypeError
    except TypeError:
        return None
    try:
        storage = torch.UntypedStorage.from_file(str(path), False, size)
    except RuntimeError:  # a file system without mmap, or a file gone since its size was checked:
        return None  # read it whole, which reports a missing or short file as such
    tensor.set_(storage, offset // dtype.itemsize, shape)
    return tensor.numpy()  # shares the map; the tensor (and the map) live as long as it does


def _read_array(path: Path, spec: Mapping[str, Any], mmap: bool | str) -> np.ndarray:
    """Read an array written by :meth:`ArrayCache.store`, checking its size first.

    The shape, dtype and data offset come from ``meta.json``, so the ``.npy`` header is not
    parsed again (``np.load`` reads the same files).

    Args:
        path, spec: the ``.npy`` file and its ``meta.json`` record.
        mmap: ``True`` or ``"r"``: a read-only memory map; ``"c"``: a writable copy-on-write
            map (read whole where that is not available); ``False``: read whole.

    Raises:
        ValueError: the file is not exactly header + data long (truncated or replaced).
        OSError: the file cannot be read.
    """
    dtype = np.dtype(spec["dtype"])
    shape = tuple(int(n) for n in spec["shape"])
    offset = int(spec["offset"])
    count = math.prod(shape)
    size = os.stat(path).st_size
    if offset < 0 or size != offset + count * dtype.itemsize:
        raise ValueError(
            f"{path.name} has {size} bytes, expected {offset + count * dtype.itemsize}"
        )
    if count == 0:
        return np.zeros(shape, dtype)
    if mmap == "c":
        mapped = _map_private(path, dtype, shape, offset, size)
        if mapped is not None:
            return mapped
    elif mmap:
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    return np.fromfile(path, dtype=dtype, count=count, offset=offset).reshape(shape)


class SourceDigests:
    """Content digests of source files, recomputed only when a file's size or time changes.

    Args:
        folder: where the stamps (path, signature, digest) are kept between processes; ``None``
            keeps them in memory only.
    """

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self._memo: dict[str, tuple[list, str]] = {}
        self.computed = 0  # how many digests were computed from file content (for tests)

    def _stamp_path(self, name: str) -> Path | None:
        if self.folder is None:
            return None
        return self.folder / f"{hashlib.sha256(name.encode()).hexdigest()[:32]}.json"

    def __call__(self, path: str | Path) -> str:
        """The content digest of ``path`` (a file or a folder).

        Raises:
            FileNotFoundError: ``path`` does not exist.
        """
        name = os.path.abspath(path)
        signature = stat_signature(name)
        memo = self._memo.get(name)
        if memo is not None and memo[0] == signature:
            return memo[1]
        stamp = self._stamp_path(name)
        if stamp is not None:
            try:
                saved = json.loads(stamp.read_text(encoding="utf-8"))
                if saved["path"] == name and saved["signature"] == signature:
                    self._memo[name] = (signature, saved["digest"])
                    return saved["digest"]
            except (OSError, ValueError, KeyError, TypeError):
                pass  # no stamp yet, or an unreadable one: hash the content
        digest = content_digest(name)
        self.computed += 1
        racy = time.time_ns() - _newest_mtime_ns(signature) < RACY_SECONDS * 1e9
        if not racy:
            self._memo[name] = (signature, digest)
            if stamp is not None:
                record = {"path": name, "signature": signature, "digest": digest}
                try:
                    stamp.parent.mkdir(parents=True, exist_ok=True)
                    _write_atomic(stamp, lambda h: h.write(json.dumps(record).encode()))
                except OSError:
                    pass  # a stamp is only a shortcut; the digest is still right
        return digest


class ArrayCache:
    """Preprocessed arrays on disk, keyed by source content and settings.

    Args:
        folder: the cache folder (created when first written). Keep it out of git; deleting it
            is always safe.

    Example:
        >>> cache = ArrayCache(tmp_path / "cache")
        >>> entry = cache.get([image_path], {"window": [-1000, 1000]}, build)
        >>> entry.arrays["image"].shape
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.digests = SourceDigests(self.folder / "stamps")
        self.hits = 0
        self.builds = 0
        self.rebuilt = 0  # corrupt entries found and rebuilt

    def key(self, sources: Sequence[str | Path], settings: Mapping[str, Any]) -> str:
        """The entry key for ``sources`` (in order) preprocessed with ``settings``.

        ``settings`` must be JSON-serializable; only what changes the arrays belongs in it.
        """
        digest = hashlib.sha256()
        header = {"version": CACHE_VERSION, "settings": settings}
        digest.update(json.dumps(header, sort_keys=True, default=str).encode())
        for source in sources:
            digest.update(b"\0" + self.digests(source).encode())
        return digest.hexdigest()[:40]

    def entry_folder(self, key: str) -> Path:
        return self.folder / key

    def has(self, key: str) -> bool:
        """Whether the entry ``key`` was written (its ``meta.json``, written last, exists)."""
        return (self.entry_folder(key) / "meta.json").is_file()

    def entry_bytes(self, key: str) -> int:
        """Bytes on disk of the entry ``key`` (0 when there is none)."""
        folder = self.entry_folder(key)
        return sum(p.stat().st_size for p in folder.iterdir()) if folder.is_dir() else 0

    def load(
        self, key: str, names: Sequence[str] | None = None, mmap: bool | str = True
    ) -> CacheEntry | None:
        """Read an entry back.

        Args:
            key: from :meth:`key`.
            names: which arrays to read (all when ``None``).
            mmap: ``True`` or ``"r"``: memory-map the arrays read-only (pages read on access);
                ``"c"``: map them copy-on-write (writable, private to the caller, no up-front
                copy; writes never reach the file); ``False``: read them whole into memory.

        Returns:
            The entry, or ``None`` when there is none.

        Raises:
            CorruptEntryError: the entry exists but cannot be read back as it was written.
            ValueError: a bad ``mmap``.
        """
        _check_mmap(mmap)
        folder = self.entry_folder(key)
        try:
            record = json.loads((folder / "meta.json").read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise CorruptEntryError(f"cache entry '{folder}' is unreadable: {exc}") from None
        try:
            specs = record["arrays"]
            arrays = {}
            for name in names if names is not None else list(specs):
                arrays[name] = _read_array(folder / f"{name}.npy", specs[name], mmap)
            return CacheEntry(key, arrays, record.get("meta", {}))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CorruptEntryError(f"cache entry '{folder}' is unreadable: {reason}") from None

    def store(self, key: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        """Write an entry: the arrays first, ``meta.json`` last, each file atomically.

        Raises:
            OSError: the folder cannot be written (:meth:`get` turns this into a warning).
        """
        folder = self.entry_folder(key)
        folder.mkdir(parents=True, exist_ok=True)
        specs = {}
        for name, array in arrays.items():
            array = np.ascontiguousarray(array)
            path = folder / f"{name}.npy"
            _write_atomic(path, lambda h, a=array: np.save(h, a, allow_pickle=False))
            specs[name] = {
                "shape": list(array.shape),
                "dtype": array.dtype.str,  # with byte order, e.g. "<f4"
                "offset": path.stat().st_size - array.nbytes,  # where the data starts
            }
        record = {"version": CACHE_VERSION, "arrays": specs, "meta": dict(meta)}
        text = json.dumps(record, indent=1, default=str).encode()
        _write_atomic(folder / "meta.json", lambda h: h.write(text))

    def get(
        self,
        sources: Sequence[str | Path],
        settings: Mapping[str, Any],
        build: Callable[[], tuple[dict[str, np.ndarray], dict[str, Any]]],
        names: Sequence[str] | None = None,
        mmap: bool | str = True,
    ) -> CacheEntry:
        """The cached entry for ``sources`` and ``settings``, built and stored when missing.

        Args:
            sources: the files (or DICOM folders) the arrays come from.
            settings: the preprocessing settings (JSON-serializable).
            build: makes ``(arrays, meta)`` from the sources; called only on a miss or a
                corrupt entry. Its errors (e.g. an unreadable image) propagate.
            names, mmap: as for :meth:`load`.

        Returns:
            The entry: loaded from disk on a hit, the freshly built arrays on a miss.
        """
        key = self.key(sources, settings)
        try:
            entry = self.load(key, names, mmap)
        except CorruptEntryError as exc:
            warnings.warn(f"{exc}; rebuilding it", stacklevel=2)
            self.rebuilt += 1
            entry = None
        if entry is not None:
            self.hits += 1
            return entry
        arrays, meta = build()
        self.builds += 1
        try:
            self.store(key, arrays, meta)
        except OSError as exc:
            warnings.warn(
                f"could not write cache entry '{self.entry_folder(key)}' ({exc}); "
                "continuing without caching it",
                stacklevel=2,
            )
        meta = json.loads(json.dumps(dict(meta), default=str))  # as a later load returns it
        return CacheEntry(key, dict(arrays), meta, built=True)
