"""``splits.json`` as the report sees it: cases and patients per part, patients shared."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..manifest import Case, DataError


def read_splits(path: Path) -> dict[str, Any]:
    """Read ``splits.json`` and check its shape: ``test`` and ``folds[{train, val}]`` lists.

    Raises:
        DataError: not JSON, or the keys are missing or of the wrong type (names the file).
    """
    try:
        splits = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"'{path}' is not a readable JSON file: {exc}".splitlines()[0]) from None

    def ids(value: Any) -> bool:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)

    folds = splits.get("folds") if isinstance(splits, dict) else None
    if (
        not isinstance(splits, dict)
        or not ids(splits.get("test"))
        or not isinstance(folds, list)
        or not all(isinstance(f, dict) and ids(f.get("train")) and ids(f.get("val")) for f in folds)
    ):
        raise DataError(
            f"'{path}' must hold 'test' (a list of case ids) and 'folds' (a list of "
            "{'train': [...], 'val': [...]})"
        )
    return splits


def split_summary(splits: Mapping[str, Any], cases: Sequence[Case]) -> dict[str, Any]:
    """Cases and patients in the test set and each fold; patients shared between parts."""
    patient = {c.case_id: c.patient_id for c in cases}
    known = [cid for part in _split_parts(splits) for cid in part[1] if cid in patient]
    unknown = sorted({cid for _, ids in _split_parts(splits) for cid in ids if cid not in patient})

    def part(ids: Sequence[str]) -> dict[str, int]:
        return {"cases": len(ids), "patients": len({patient[c] for c in ids if c in patient})}

    test_patients = {patient[c] for c in splits["test"] if c in patient}
    development = {
        patient[c] for f in splits["folds"] for c in f["train"] + f["val"] if c in patient
    }
    folds = []
    for fold in splits["folds"]:
        train = {patient[c] for c in fold["train"] if c in patient}
        val = {patient[c] for c in fold["val"] if c in patient}
        folds.append(
            {
                "train": part(fold["train"]),
                "val": part(fold["val"]),
                "shared_patients": len(train & val),
            }
        )
    removed = splits.get("removed_duplicates")
    return {
        "test": part(splits["test"]),
        "folds": folds,
        "patients_in_test_and_development": len(test_patients & development),
        "cases_in_no_part": len(set(patient) - set(known)),
        "removed_duplicates": len(removed) if isinstance(removed, list) else None,
        "unknown_case_ids": unknown,
    }


def _split_parts(splits: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    parts = [("test", list(splits["test"]))]
    for i, fold in enumerate(splits["folds"]):
        parts += [(f"fold {i} train", list(fold["train"])), (f"fold {i} val", list(fold["val"]))]
    return parts
