"""Checkpoints that resume a run exactly, written atomically, read without running code.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so
``torch.load(path, weights_only=True)`` reads it: a file that is not one (or a pickle that would run
code) is refused, never executed. Random number generator states are stored as tensors and ints
(NumPy's legacy state as a tuple of them), which ``weights_only`` accepts.
"""

from __future__ import annotations

import os
import pickle
import random
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..utils.errors import ProjectError

FORMAT = "medical-imaging-template-checkpoint"
VERSION = 1


class CheckpointError(ProjectError):
    """A file that is missing or is not a checkpoint of this project."""


def rng_states() -> dict[str, Any]:
    """Every generator the training loop draws from: Python, NumPy (legacy), torch CPU and CUDA."""
    version, state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "python": {
            "version": version,
            "state": torch.tensor(state, dtype=torch.int64),
            "gauss": gauss,
        },
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`rng_states` captured."""
    py = states["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npy = states["numpy"]
    np.random.set_state(
        (
            npy["kind"],
            npy["keys"].numpy().astype(np.uint32),
            npy["pos"],
            npy["has_gauss"],
            npy["cached"],
        )
    )
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (plus format, version and date) to ``path`` atomically.

    The file is written under a temporary name in the same folder and renamed, so a run killed
    while saving leaves the previous checkpoint intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        **state,
    }
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, safely.

    Raises:
        CheckpointError: the file is missing, is not a torch file, holds code or objects that
            ``weights_only=True`` refuses, or is a torch file of another kind.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, KeyError) as exc:
        if isinstance(exc, KeyError | EOFError):  # torch's reader on bytes it does not know
            reason = "unrecognized or truncated content"
        else:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"'{path}' is not a checkpoint of this project (refused to load: {reason[:200]})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"'{path}' is a torch file but not a checkpoint of this project")
    if state.get("version") != VERSION:
        raise CheckpointError(
            f"'{path}' is checkpoint version {state.get('version')}, this code reads {VERSION}"
        )
    return state
