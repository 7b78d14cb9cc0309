"""Small file helpers shared by every module."""

from __future__ import annotations

import csv
import io
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path


def current_umask() -> int:
    """The process umask (read without changing it where the OS allows, e.g. Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (a brief, process-wide change)
    os.umask(mask)
    return mask


def new_file_mode(path: Path) -> int:
    """The permission bits ``path`` gets when written: those of the file it replaces, else
    ``0o666 & ~umask`` like any file an ordinary ``open`` creates."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~current_umask()


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    The bytes go to a temporary file in the same folder, are flushed to disk, and the file is
    renamed over ``path`` (an atomic step on POSIX and Windows). The file's permissions follow
    the umask like any other new file (``mkstemp``'s private 0600 would hide reports and
    configs from the rest of a group), or stay those of the file it replaces.

    Args:
        path: destination file; its folder is created when missing.
        data: the whole new content.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, new_file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text with ``\\n`` line endings."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_csv(
    path: Path, rows: Sequence[Mapping[str, object]], columns: Sequence[str]
) -> Path:
    """Write ``rows`` to ``path`` as CSV with the header ``columns``, atomically (floats as
    written by ``str``; format them first for fewer digits). Keys not in ``columns`` are left
    out."""
    out = io.StringIO()
    writer = csv.DictWriter(
        out, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore"
    )
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(Path(path), out.getvalue())


def replace_folder(built: Path, final: Path) -> Path:
    """Put the finished folder ``built`` in place of ``final``: an old ``final`` is removed only
    once the new one is in place, and put back if the swap fails. Returns ``final``."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(final, old)
    try:
        os.replace(built, final)
    except BaseException:
        if old is not None:
            os.replace(old, final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final
