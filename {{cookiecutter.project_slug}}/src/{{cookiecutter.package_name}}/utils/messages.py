"""Warnings on the command line: one line each, in the project's voice.

Python prints a warning as ``path/to/module.py:123: UserWarning: text`` followed by the source
line, and nibabel logs header repairs (``sizeof_hdr should be 348; set sizeof_hdr to 348``) on its
own handler, without saying which file. :func:`install` makes both print ``warning: <text>`` on
one line, each distinct message once per command.
"""

from __future__ import annotations

import logging
import sys
import warnings
from typing import TextIO

NIBABEL_LOGGER = "nibabel.global"
_shown: set[str] = set()


def one_line(message: Warning | str) -> str:
    """``warning: <first line of the message>``."""
    lines = str(message).strip().splitlines()
    return f"warning: {lines[0] if lines else ''}"


def _print_once(line: str, stream: TextIO | None = None) -> None:
    if line in _shown:
        return
    _shown.add(line)
    print(line, file=stream if stream is not None else sys.stderr)


def _showwarning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    _print_once(one_line(message), file)


def _nibabel_filter(record: logging.LogRecord) -> bool:
    """Print nibabel's message our way; ``False`` keeps its own handler silent."""
    _print_once(f"warning: NIfTI header repaired on reading: {record.getMessage().strip()}")
    return False


def install() -> None:
    """Print warnings and nibabel's header messages as one line each, each distinct message
    once from now on (idempotent; called when a command starts).

    nibabel's logger gets a filter rather than losing its handler, so this works whether or
    not nibabel is imported yet (the command line imports it lazily).
    """
    _shown.clear()
    warnings.showwarning = _showwarning
    logger = logging.getLogger(NIBABEL_LOGGER)
    if _nibabel_filter not in logger.filters:
        logger.addFilter(_nibabel_filter)
