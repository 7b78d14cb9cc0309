"""Looking at a dataset before training: statistics, duplicates, annotator agreement, the report.

:func:`inspect_dataset` (the ``inspect`` command) and :func:`view_case` are imported from here;
the modules hold one part each: ``cases`` (one pass over a case), ``statistics``, ``duplicates``,
``annotators``, ``splits``, ``identity``, ``findings`` (the warnings), ``plots`` and ``report``
(``report.md``); ``inspection`` puts them together.
"""

from __future__ import annotations

from typing import Any

__all__ = ["inspect_dataset", "view_case"]


def __getattr__(name: str) -> Any:
    # Imported on first use: ``data.split`` needs ``inspect.duplicates`` while the report's
    # modules need ``data.split`` (through the fingerprint's cache key).
    if name in __all__:
        from . import inspection

        return getattr(inspection, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
