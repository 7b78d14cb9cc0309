"""Content hashes of the dataset's files, computed once and remembered against size and times.

``splits.json`` records a hash of every image and label file (:func:`.split.dataset_hash`), and
``train``, ``evaluate`` and ``predict`` refuse a splits file whose data changed. Reading every
byte at each start costs minutes on a 50 GB dataset, on every run and every trial of a sweep,
so the SHA-256 of each file is kept in ``<dataset>/file_hashes.json``::

    {"version": 1, "files": {"images/c00.nii.gz": [size, mtime_ns, ctime_ns, "<sha256>"], ...}}

keyed by the path relative to the dataset folder (absolute for a file outside it). A file whose
size, modification time and status-change time (``ctime``: set by the system on every write,
``chmod`` or rename, and which no tool can set back) all match its record is not read again;
any other file is hashed and its record replaced. So a changed image is still caught: writing
it changes its ``mtime`` and its ``ctime``, even when a tool restores the ``mtime`` and keeps
the size. What would slip through is an edit that keeps all three, which needs a changed
system clock or a raw disk write; ``split --verify`` re-hashes every byte for that.

A file modified less than :data:`RACY_SECONDS` before it was hashed is not recorded (a second
write within one timestamp tick could keep all three values, the "racy" case ``git`` also
guards against); it is hashed again next time. Copying the dataset elsewhere changes every
``ctime``, so the first check there hashes everything once. The file is a cache: deleting it
is always safe, and it is written atomically (a failed write, e.g. a read-only dataset folder,
only means hashing every time).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from ..utils.io import atomic_write_text

HASHES = "file_hashes.json"
VERSION = 1
RACY_SECONDS = 2.0  # a file changed more recently than this before hashing is not recorded


class FileHashes:
    """SHA-256 of files under one dataset folder, read from and saved to ``file_hashes.json``.

    Args:
        root: the dataset folder (where ``file_hashes.json`` lives).
        trust_stat: use a recorded hash when the file's size and times match it (``False``:
            hash every file again, as ``split --verify`` does; the records are still updated).

    Attributes:
        hashed: how many files were read to hash them (the others came from the records).
        bytes_hashed: how many bytes those files held.
    """

    def __init__(self, root: str | Path, *, trust_stat: bool = True) -> None:
        self.root = Path(root)
        self.path = self.root / HASHES
        self.trust_stat = trust_stat
        self._known = self._read()
        self._seen: dict[str, list] = {}
        self.hashed = 0
        self.bytes_hashed = 0

    def _read(self) -> dict[str, list]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            files = data["files"] if data.get("version") == VERSION else {}
            return {
                str(k): v
                for k, v in files.items()
                if isinstance(v, list) and len(v) == 4 and isinstance(v[3], str)
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return {}  # none yet, or unreadable: it is only a cache

    def key(self, file: Path) -> str:
        """The record's name for ``file``: relative to the dataset folder where it can be."""
        file = Path(file)
        try:
            return file.relative_to(self.root).as_posix()
        except ValueError:
            return Path(os.path.abspath(file)).as_posix()

    def digest(self, file: str | Path) -> str:
        """The SHA-256 (64 hex digits) of ``file``'s bytes, from its record when still valid.

        Raises:
            OSError: the file cannot be read (missing, no permission).
        """
        file = Path(file)
        key = self.key(file)
        info = os.stat(file)
        signature = [info.st_size, info.st_mtime_ns, info.st_ctime_ns]
        known = self._known.get(key)
        if self.trust_stat and known is not None and known[:3] == signature:
            self._seen[key] = known
            return str(known[3])
        with open(file, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        self.hashed += 1
        self.bytes_hashed += info.st_size
        newest = max(info.st_mtime_ns, info.st_ctime_ns)
        if time.time_ns() - newest >= RACY_SECONDS * 1e9:
            self._seen[key] = [*signature, digest]
        else:
            self._seen.pop(key, None)
        return digest

    def save(self) -> None:
        """Write the records of the files hashed or checked since this object was made.

        Records of files not looked at (no longer in the manifest) are dropped. Nothing is
        written when nothing changed; a failed write is ignored (the hashes are still right,
        only the next check will read the files again).
        """
        if self._seen == self._known:
            return
        text = json.dumps({"version": VERSION, "files": dict(sorted(self._seen.items()))})
        try:
            atomic_write_text(self.path, text + "\n")
        except OSError:
            return
        self._known = dict(self._seen)
