"""Patient-level splits: duplicates out first, then a held-out test set and K folds.

:func:`make_splits` writes ``<root>/splits.json``::

    {"version": 1, "task": ..., "seed": ..., "test_fraction": ..., "stratify": {...},
     "dataset_hash": ..., "files": {path: hash}, "removed_duplicates": [{"case_id", "patient_id",
     "duplicate_of"}],
     "near_duplicates": [[case ids]], "linked_patients": [[patient ids]], "strata": {...},
     "test": [case ids], "folds": [{"train": [case ids], "val": [case ids]}, ...]}

How it divides the data:

1. Every image (and, for segmentation, its mask) is read once. Exact duplicates (identical voxel
   data, :mod:`.duplicates`) are removed: the first of each group in manifest order is kept, the
   others are listed in ``removed_duplicates`` with the case they duplicate. Near duplicates
   (the same scan with noise added) are kept but listed in ``near_duplicates``.
2. Cases are grouped by patient. Patients linked through a duplicate (exact or near) form one
   group, since a scan under two patient ids usually means one person under two ids; such
   links are listed in ``linked_patients``. A group is never divided between parts.
3. Each case gets a stratum: its class name (classification) or its lesion size
   (segmentation: ``empty`` for a mask with no foreground, ``small`` below the median
   foreground voxel count of the non-empty masks, ``large`` from it up).
4. The groups are shuffled with ``seed``, sorted largest first, and each is given to the part
   whose stratum counts and patient count are furthest below their targets (a greedy,
   grouped, stratified assignment); every part gets at least one group. First about
   ``test_fraction`` of the data goes to the test set, then the rest is divided into ``folds``
   parts of equal size; fold ``k`` validates on part ``k`` and trains on the others. The test
   set therefore does not depend on ``folds``. With ``folds=1`` there is one train/val split
   that validates on about a fifth (:data:`SINGLE_SPLIT_VAL_FRACTION`) of the non-test data.

A test set or a fold whose validation part has fewer than :data:`MIN_PATIENTS` patients gets a
:class:`SmallSplitWarning`: a bootstrap interval over so few patients understates the
uncertainty (over one patient it has zero width).

The same manifest, files and arguments give the same file, byte for byte. ``dataset_hash``
(:func:`dataset_hash`) covers the manifest rows and the bytes of every image and label file, and
``files`` gives the first 16 hex digits of each image, label or DICOM folder's own hash (by path
relative to the dataset folder), so that a refusal can name what changed. :func:`load_splits`
refuses a splits file whose hash no longer matches the data. It reads a file's bytes only when
the file's size or times differ from those recorded beside its hash in ``file_hashes.json``
(:mod:`.file_hashes`): a start costs a ``stat`` per file, not a read of the whole dataset.
:func:`verify_splits` (``split --verify``) re-hashes every byte.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..utils.io import atomic_write_text
from .file_hashes import FileHashes
from .inspect.duplicates import exact_duplicates, fingerprint, near_duplicates
from .io import ImageError, read_image, read_label, source_path
from .manifest import SPLITS, Case, DataError, manifest_path, read_manifest

VERSION = 1
TASKS = ("segmentation", "classification")
SINGLE_SPLIT_VAL_FRACTION = 0.2  # share of the non-test data validated on when folds == 1
NEAR_DUPLICATE_THRESHOLD = 0.98  # thumbnail correlation, see duplicates.near_duplicates
SIZE_STRATA = ("empty", "small", "large")
FILE_HASH_DIGITS = 16  # hex digits of each file's hash kept in splits.json (to name changes)
LISTED = 5  # changed files named in a stale-splits error (then "and N more")
IMPROVE_STEPS = 10_000  # most moves/swaps tried after the greedy placement (each lowers the cost)
EPSILON = 1e-12  # smallest cost decrease that counts as an improvement
MIN_PATIENTS = 5  # fewer patients in the test set or a validation fold: SmallSplitWarning


class SmallSplitWarning(UserWarning):
    """The test set or a validation fold has fewer than :data:`MIN_PATIENTS` patients."""


class SplitArgumentError(DataError, ValueError):
    """A bad argument to :func:`make_splits` (folds, test fraction, seed, task).

    A ``ValueError`` for callers, and a project error that the command line prints as one line.
    """


# --- public API -----------------------------------------------------------------------------


def make_splits(
    root: str | Path,
    *,
    task: str,
    folds: int,
    test_fraction: float,
    seed: int,
    near_threshold: float = NEAR_DUPLICATE_THRESHOLD,
) -> dict[str, Any]:
    """Remove duplicates, then divide the dataset into a test set and ``folds`` folds.

    Args:
        root: the dataset folder holding ``manifest.csv``; ``splits.json`` is written there
            (atomically).
        task: ``segmentation`` or ``classification``.
        folds: number of cross-validation folds, at least 1 (1: a single train/val split).
        test_fraction: share of the data (whole patients) held out for testing, in ``[0, 1)``;
            0 makes no test set.
        seed: non-negative integer that decides the assignment.
        near_threshold: thumbnail correlation above which two images are near duplicates.

    Returns:
        The content of ``splits.json`` (see the module docstring).

    Raises:
        SplitArgumentError: an argument outside its range.
        DataError: no or empty manifest, an unreadable image or mask (naming the case), or
            fewer independent patient groups than the test set and folds need.

    Warns:
        SmallSplitWarning: the test set or a fold's validation part has fewer than
            :data:`MIN_PATIENTS` patients (the message names each and its count).
    """
    _check_arguments(task, folds, test_fraction, seed)
    root = Path(root)
    cases = read_manifest(root, task)
    strata, prints = _read_cases(cases, task)
    hashes = FileHashes(root, trust_stat=False)  # the moment of truth: read every byte
    content_hash, file_hashes = _hash_dataset(root, cases, hashes)
    removed, near = _duplicates(cases, prints, near_threshold)
    dropped = {entry["case_id"] for entry in removed}
    kept = [case for case in cases if case.case_id not in dropped]
    links = [[entry["duplicate_of"], entry["case_id"]] for entry in removed] + near
    groups, linked_patients = _patient_groups(cases, kept, links)
    _check_group_count(root, groups, cases, folds, test_fraction)

    labels, stratify = _strata_names(task, {c.case_id: strata[c.case_id] for c in kept})
    names = sorted(set(labels.values()), key=_stratum_order(task))
    by_id = {case.case_id: case for case in cases}
    units = [_Unit(ids, _count(ids, labels, names), _patients(ids, by_id)) for ids in groups]
    test, vals = _divide(units, folds, test_fraction, np.random.default_rng(seed))

    order = [case.case_id for case in kept]
    test_list = [c for c in order if c in test]
    fold_list = [
        {
            "train": [c for c in order if c not in test and c not in val],
            "val": [c for c in order if c in val],
        }
        for val in vals
    ]

    def tally(ids: Sequence[str]) -> dict[str, int]:
        return {name: sum(labels[c] == name for c in ids) for name in names}

    splits: dict[str, Any] = {
        "version": VERSION,
        "task": task,
        "seed": int(seed),
        "test_fraction": float(test_fraction),
        "stratify": stratify,
        "dataset_hash": content_hash,
        "files": file_hashes,
        "removed_duplicates": removed,
        "near_duplicates": near,
        "linked_patients": linked_patients,
        "strata": {
            "all": tally(order),
            "test": tally(test_list),
            "val": [tally(f["val"]) for f in fold_list],
        },
        "test": test_list,
        "folds": fold_list,
    }
    atomic_write_text(root / SPLITS, json.dumps(splits, indent=2) + "\n")
    hashes.save()
    parts = [("test set", test_list)] if test_list else []
    parts += [(f"fold {k} validation", f["val"]) for k, f in enumerate(fold_list)]
    small = [(name, _patients(ids, by_id)) for name, ids in parts]
    small = [(name, count) for name, count in small if count < MIN_PATIENTS]
    if small:
        listed = ", ".join(f"{name} {count}" for name, count in small)
        warnings.warn(
            f"few patients to evaluate on ({listed}): a bootstrap 95% interval over fewer than "
            f"{MIN_PATIENTS} patients understates the uncertainty, and over one it has zero "
            "width; use more data, fewer folds or a larger test fraction",
            SmallSplitWarning,
            stacklevel=2,
        )
    return splits


def dataset_hash(root: str | Path, cases: Sequence[Case], hashes: FileHashes | None = None) -> str:
    """SHA-256 of the manifest rows and the bytes of every image and label file.

    Paths enter relative to ``root``, so moving the dataset folder keeps the hash; a DICOM
    series folder counts as all its (non-hidden) files, by relative name. Rows count in the
    given order (which case of an exact duplicate is kept depends on it).

    Args:
        root: the dataset folder.
        cases: the manifest's cases (:func:`read_manifest`).
        hashes: where each file's SHA-256 comes from; ``None`` reads every file (and records
            nothing).

    Returns:
        64 hexadecimal digits.

    Raises:
        DataError: an image or label file is missing or unreadable (naming the case).
    """
    root = Path(root)
    return _hash_dataset(root, cases, hashes or FileHashes(root, trust_stat=False))[0]


def _hash_dataset(
    root: Path, cases: Sequence[Case], hashes: FileHashes
) -> tuple[str, dict[str, str]]:
    """:func:`dataset_hash`, and the first :data:`FILE_HASH_DIGITS` hex digits of the SHA-256
    of each image or label file (of its files' names and hashes for a DICOM folder), by its
    path relative to ``root``."""
    digest = hashlib.sha256()
    files: dict[str, str] = {}

    def field(text: str, into: Any = digest) -> None:
        data = text.encode("utf-8")
        into.update(len(data).to_bytes(8, "little") + data)

    for case in cases:
        values = [("label", case.label), *sorted(case.raters.items())]
        # a multi-channel case's other channels (image_<name> columns) count like its image
        values += [(f"image_{k}", v) for k, v in case.channels.items() if v != case.image]
        field(case.case_id)
        field(case.patient_id)
        field(_relative(case.image, root))
        for name, value in values:
            field(name)
            field(_relative(value, root) if isinstance(value, Path) else str(value))
        for value in [case.image, *(v for _, v in values if isinstance(v, Path))]:
            own = hashlib.sha256()  # a folder's: of its files' names and hashes
            digests = _file_digests(value, case, hashes)
            for name, file_digest in digests:
                for text in (name, file_digest):
                    field(text)
                    field(text, own)
            single = len(digests) == 1 and not digests[0][0]  # a file: its own SHA-256
            whole = digests[0][1] if single else own.hexdigest()
            files[_relative(value, root)] = whole[:FILE_HASH_DIGITS]
    return digest.hexdigest(), files


def load_splits(root: str | Path, task: str) -> dict[str, Any]:
    """Read ``<root>/splits.json`` and check it against the data it was made from.

    A file is read again only when its size, modification or status-change time differs from
    the record beside its hash in ``file_hashes.json`` (:mod:`.file_hashes`), so the check costs
    a ``stat`` per file; :func:`verify_splits` reads every byte.

    Args:
        root: the dataset folder.
        task: ``segmentation`` or ``classification`` (how the manifest's labels are read).

    Returns:
        The splits, as :func:`make_splits` wrote them.

    Raises:
        DataError: the file is missing or malformed, was made for another task, names cases
            the manifest lacks, or its ``dataset_hash`` no longer matches the data (stale:
            re-run split).
    """
    splits, _ = _load(Path(root), task)
    return splits


def fold_cases(root: str | Path, task: str, fold: int) -> tuple[list[Case], list[Case]]:
    """The training and validation cases of one fold, in manifest order.

    Args:
        root: the dataset folder.
        task: ``segmentation`` or ``classification``.
        fold: index into the splits' ``folds``, from 0 (``data.fold`` in the config).

    Returns:
        ``(train, val)``.

    Raises:
        ValueError: ``fold`` is not an integer.
        DataError: as :func:`load_splits`, or ``fold`` is out of range.
    """
    if isinstance(fold, bool) or not isinstance(fold, int | np.integer):
        raise ValueError(f"fold must be an integer, got {fold!r}")
    splits, cases = _load(Path(root), task)
    count = len(splits["folds"])
    if not 0 <= fold < count:
        raise DataError(
            f"fold {fold} is out of range: '{Path(root) / SPLITS}' has {count} fold(s), "
            f"numbered 0 to {count - 1} (set data.fold, or re-run split with more folds)"
        )
    part = splits["folds"][fold]
    return _pick(cases, part["train"]), _pick(cases, part["val"])


def test_cases(root: str | Path, task: str) -> list[Case]:
    """The held-out test cases, in manifest order.

    Raises:
        DataError: as :func:`load_splits`, or the splits have no test set (made with
            ``--test-fraction 0``).
    """
    splits, cases = _load(Path(root), task)
    if not splits["test"]:
        raise DataError(
            f"'{Path(root) / SPLITS}' has no test set (split was run with --test-fraction 0)"
        )
    return _pick(cases, splits["test"])


def verify_splits(root: str | Path, task: str) -> dict[str, Any]:
    """Check ``splits.json`` against every byte of the data (``split --verify``).

    :func:`load_splits` trusts a recorded hash while a file's size and times are unchanged;
    this reads every image and label file again, and refreshes the records.

    Args:
        root: the dataset folder.
        task: ``segmentation`` or ``classification``.

    Returns:
        ``{"cases": ..., "files": ..., "bytes": ...}``: how much was checked.

    Raises:
        DataError: as :func:`load_splits` (stale: naming the files that changed).
    """
    _, cases, hashes = _check(Path(root), task, verify=True)
    return {"cases": len(cases), "files": hashes.hashed, "bytes": hashes.bytes_hashed}


# pytest would collect the public name ``test_cases`` from a test module that imports it.
test_cases.__test__ = False  # type: ignore[attr-defined]


# --- reading the cases ----------------------------------------------------------------------


def _check_arguments(task: str, folds: int, test_fraction: float, seed: int) -> None:
    if task not in TASKS:
        raise SplitArgumentError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if isinstance(folds, bool) or not isinstance(folds, int | np.integer) or folds < 1:
        raise SplitArgumentError(f"folds must be a whole number >= 1, got {folds!r}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, int | float):
        raise SplitArgumentError(f"test fraction must be a number in [0, 1), got {test_fraction!r}")
    if not 0 <= test_fraction < 1:
        raise SplitArgumentError(f"test fraction must be in [0, 1), got {test_fraction}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**32:
        raise SplitArgumentError(f"seed must be a whole number in [0, 2**32), got {seed!r}")


def _read_cases(cases: Sequence[Case], task: str) -> tuple[dict[str, str | int], list]:
    """Read each image (and mask) once: its fingerprint and its class or foreground count."""
    strata: dict[str, str | int] = {}
    prints = []
    for case in cases:
        try:
            image = read_image(case.image)
            if task == "segmentation":
                mask = read_label(case.label, image)
                strata[case.case_id] = int(np.count_nonzero(mask.array))
            else:
                strata[case.case_id] = str(case.label)
        except ImageError as exc:
            raise DataError(f"case '{case.case_id}': {exc}") from None
        prints.append(fingerprint(case.case_id, image))
    return strata, prints


def _duplicates(
    cases: Sequence[Case], prints: Sequence[Any], threshold: float
) -> tuple[list[dict[str, str]], list[list[str]]]:
    """Exact duplicates to remove (all but the first of each group) and near-duplicate groups.

    Returns:
        ``removed_duplicates`` entries ``{"case_id", "patient_id", "duplicate_of"}`` and the
        near-duplicate groups among the cases kept.
    """
    patient_of = {case.case_id: case.patient_id for case in cases}
    removed = [
        {"case_id": other, "patient_id": patient_of[other], "duplicate_of": keep}
        for keep, *others in exact_duplicates(prints)
        for other in others
    ]
    dropped = {entry["case_id"] for entry in removed}
    near = near_duplicates([p for p in prints if p.case_id not in dropped], threshold)
    return removed, near


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _file_digests(path: Path, case: Case, hashes: FileHashes) -> list[tuple[str, str]]:
    """(relative name, SHA-256) of a file, or of every non-hidden file in a folder (the whole
    folder for a ``folder::SeriesInstanceUID`` image, see :mod:`.io`)."""
    path = source_path(path)
    if path.is_dir():
        files = sorted(
            (p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")),
            key=lambda p: p.relative_to(path).as_posix(),
        )
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"case '{case.case_id}': '{path}' does not exist")
    digests = []
    for file in files:
        try:
            name = file.relative_to(path).as_posix() if path.is_dir() else ""
            digests.append((name, hashes.digest(file)))
        except OSError as exc:
            raise DataError(f"case '{case.case_id}': cannot read '{file}': {exc}") from None
    return digests


# --- groups and strata ----------------------------------------------------------------------


def _patient_groups(
    cases: Sequence[Case], kept: Sequence[Case], links: Sequence[Sequence[str]]
) -> tuple[list[list[str]], list[list[str]]]:
    """Kept case ids grouped by patient, patients joined through ``links`` (case id groups).

    Returns:
        The groups (case ids in manifest order, groups in order of their first case) and the
        patient ids joined by a link (groups of 2 or more patients).
    """
    patient_of = {case.case_id: case.patient_id for case in cases}
    parent: dict[str, str] = {case.patient_id: case.patient_id for case in cases}

    def find(p: str) -> str:
        while parent[p] != p:
            parent[p] = parent[parent[p]]
            p = parent[p]
        return p

    for link in links:
        first = find(patient_of[link[0]])
        for other in link[1:]:
            root = find(patient_of[other])
            if root != first:
                parent[root] = first
    members: dict[str, list[str]] = defaultdict(list)
    for case in kept:
        members[find(case.patient_id)].append(case.case_id)
    patients: dict[str, list[str]] = defaultdict(list)
    for patient in dict.fromkeys(case.patient_id for case in cases):
        patients[find(patient)].append(patient)
    linked = [ids for ids in patients.values() if len(ids) > 1]
    return list(members.values()), linked


def _strata_names(task: str, raw: dict[str, str | int]) -> tuple[dict[str, str], dict[str, Any]]:
    """Stratum name per case id, and how they were made (for ``splits.json``)."""
    if task == "classification":
        return {cid: str(value) for cid, value in raw.items()}, {"by": "class"}
    sizes = [int(v) for v in raw.values() if int(v) > 0]
    threshold = float(np.median(sizes)) if sizes else 0.0
    names = {
        cid: "empty" if int(v) == 0 else ("small" if int(v) < threshold else "large")
        for cid, v in raw.items()
    }
    rule = {
        "by": "foreground voxels of the mask",
        "empty": "0",
        "small": f"1 to below {threshold:g} (the median of the non-empty masks)",
        "large": f"{threshold:g} or more",
    }
    return names, rule


def _stratum_order(task: str) -> Any:
    if task == "segmentation":
        return lambda name: (SIZE_STRATA.index(name), name)
    return lambda name: name


def _count(ids: Sequence[str], labels: dict[str, str], names: Sequence[str]) -> list[int]:
    return [sum(labels[c] == name for c in ids) for name in names]


def _patients(ids: Sequence[str], by_id: dict[str, Case]) -> int:
    return len({by_id[c].patient_id for c in ids})


def _check_group_count(
    root: Path, groups: Sequence[Sequence[str]], cases: Sequence[Case], folds: int, fraction: float
) -> None:
    """Raise a DataError when there are fewer independent groups than the parts need."""
    need = max(folds, 2) + (1 if fraction > 0 else 0)
    if len(groups) >= need:
        return
    patients = len({case.patient_id for case in cases})
    what = f"{folds} folds" if folds > 1 else "a train/val split"
    what += " and a test set" if fraction > 0 else ""
    found = f"'{manifest_path(root)}' has {patients} patient(s)"
    if len(groups) < patients:
        found += (
            f", only {len(groups)} independent group(s) once duplicates are removed and the "
            "patients they link are joined"
        )
    hint = "use fewer folds" + (" or --test-fraction 0" if fraction > 0 else "")
    raise DataError(f"{found}, but {what} need at least {need}: {hint}, or add data")


# --- the assignment -------------------------------------------------------------------------


@dataclass
class _Unit:
    """A group of cases that stays together: its case ids, stratum counts and patients."""

    case_ids: list[str]
    counts: list[int]
    patients: int

    @property
    def size(self) -> int:
        return len(self.case_ids)


def _divide(
    units: Sequence[_Unit], folds: int, test_fraction: float, rng: Any
) -> tuple[set[str], list[set[str]]]:
    """The test case ids and each fold's validation case ids.

    The test set is drawn first (so it does not depend on ``folds``); the rest is divided into
    ``folds`` equal parts, or into train and val by :data:`SINGLE_SPLIT_VAL_FRACTION` when
    ``folds`` is 1.
    """

    def members(chosen: Sequence[_Unit], part: Sequence[int], p: int) -> set[str]:
        return {c for u, q in zip(chosen, part, strict=True) if q == p for c in u.case_ids}

    dev, test = list(units), set()
    if test_fraction > 0:
        part = _assign(units, [1 - test_fraction, test_fraction], [max(folds, 2), 1], rng)
        dev = [u for u, p in zip(units, part, strict=True) if p == 0]
        test = members(units, part, 1)
    if folds == 1:
        weights = [1 - SINGLE_SPLIT_VAL_FRACTION, SINGLE_SPLIT_VAL_FRACTION]
        return test, [members(dev, _assign(dev, weights, [1, 1], rng), 1)]
    part = _assign(dev, [1 / folds] * folds, [1] * folds, rng)
    return test, [members(dev, part, k) for k in range(folds)]


def _assign(
    units: Sequence[_Unit], weights: Sequence[float], minimum: Sequence[int], rng: Any
) -> list[int]:
    """Give each unit a part so that every part holds about ``weights[p]`` of each stratum.

    The cost of an assignment is the sum over parts and strata of the squared shortfall or
    excess from the part's target, relative to the stratum's total (the patient count counts
    as one more stratum). Units are placed in a seeded random order, largest first, each where
    it lowers the cost most; parts below ``minimum[p]`` units then take the smallest unit of a
    part that can spare one; finally single moves and pairwise swaps are made while they lower
    the cost. Units with equal counts are interchangeable, so moves and swaps are tried per
    kind of unit (cheap however many patients there are).

    Args:
        units: the groups to place.
        weights: target share of each part (summing to 1).
        minimum: fewest units per part (their sum must not exceed ``len(units)``).
        rng: ``numpy.random.Generator``, the only source of randomness.

    Returns:
        The part index of each unit.
    """
    parts = len(weights)
    vectors = [(*u.counts, u.patients) for u in units]
    dims = len(vectors[0]) if vectors else 0
    totals = [sum(v[d] for v in vectors) for d in range(dims)]
    targets = [[w * t for t in totals] for w in weights]
    held = [[0] * dims for _ in range(parts)]
    count = [0] * parts

    def change(p: int, delta: Sequence[int]) -> float:
        """How much the cost changes when part ``p``'s holdings change by ``delta``."""
        total_change = 0.0
        for d, total in enumerate(totals):
            if total and delta[d]:
                before = (held[p][d] - targets[p][d]) / total
                after = (held[p][d] + delta[d] - targets[p][d]) / total
                total_change += after * after - before * before
        return total_change

    def put(i: int, p: int, sign: int = 1) -> None:
        held[p] = [h + sign * v for h, v in zip(held[p], vectors[i], strict=True)]
        count[p] += sign

    shuffled = [int(i) for i in rng.permutation(len(units))]
    order = sorted(shuffled, key=lambda i: -units[i].size)
    part = [0] * len(units)
    for i in order:
        part[i] = min(range(parts), key=lambda p: (change(p, vectors[i]), p))
        put(i, part[i])

    rank = {i: r for r, i in enumerate(order)}
    for p in range(parts):
        while count[p] < minimum[p]:
            spare = [i for i in order if part[i] != p and count[part[i]] > minimum[part[i]]]
            smallest = min(spare, key=lambda i: (units[i].size, -rank[i]))
            put(smallest, part[smallest], -1)
            part[smallest] = p
            put(smallest, p)

    for _ in range(IMPROVE_STEPS):
        step = _improving_step(order, part, vectors, count, minimum, change)
        if step is None:
            break
        for i, p in step:
            put(i, part[i], -1)
            part[i] = p
            put(i, p)
    return part


def _improving_step(
    order: Sequence[int],
    part: Sequence[int],
    vectors: Sequence[tuple[int, ...]],
    count: Sequence[int],
    minimum: Sequence[int],
    change: Any,
) -> list[tuple[int, int]] | None:
    """The first move or swap that lowers the cost, as ``[(unit, new part), ...]``, or None."""
    kinds: dict[tuple[int, tuple[int, ...]], int] = {}  # (part, counts) -> first unit in order
    for i in order:
        kinds.setdefault((part[i], vectors[i]), i)
    parts = len(count)
    for (a, vec), i in kinds.items():
        if count[a] > minimum[a]:
            minus = tuple(-v for v in vec)
            for b in range(parts):
                if b != a and change(a, minus) + change(b, vec) < -EPSILON:
                    return [(i, b)]
    items = list(kinds.items())
    for x, ((a, va), i) in enumerate(items):
        for (b, vb), j in items[x + 1 :]:
            if a != b and va != vb:
                delta = tuple(q - p for p, q in zip(va, vb, strict=True))
                if change(a, delta) + change(b, tuple(-d for d in delta)) < -EPSILON:
                    return [(i, b), (j, a)]
    return None


# --- reading splits.json ------------------------------------------------------------------


def _load(root: Path, task: str, verify: bool = False) -> tuple[dict[str, Any], list[Case]]:
    """The checked splits and the manifest's cases (``verify``: re-hash every file's bytes)."""
    splits, cases, _ = _check(root, task, verify)
    return splits, cases


def _check(root: Path, task: str, verify: bool) -> tuple[dict[str, Any], list[Case], FileHashes]:
    """:func:`_load`, and the hashes used (which say how many files were read)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    path = root / SPLITS
    if not path.is_file():
        raise DataError(f"no splits file at '{path}': run split first")
    try:
        splits = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"'{path}' is not valid JSON ({exc}): re-run split") from None
    problem = _schema_problem(splits)
    if problem:
        raise DataError(f"'{path}' is not a valid splits file: {problem}; re-run split")
    if splits.get("task", task) != task:
        raise DataError(
            f"'{path}' was made for task '{splits['task']}', not '{task}': re-run split"
        )
    cases = read_manifest(root, task)
    hashes = FileHashes(root, trust_stat=not verify)
    current, files = _hash_dataset(root, cases, hashes)
    hashes.save()
    if current != splits["dataset_hash"]:
        raise DataError(
            f"'{path}' is stale: the data changed since it was written ({_changes(splits, files)}"
            f"; dataset_hash {splits['dataset_hash'][:12]}... is now {current[:12]}...); "
            "re-run split"
        )
    known = {case.case_id for case in cases}
    parts = [("test", splits["test"])]
    for k, fold in enumerate(splits["folds"]):
        parts += [(f"fold {k} train", fold["train"]), (f"fold {k} val", fold["val"])]
    for name, ids in parts:
        unknown = [c for c in ids if c not in known]
        if unknown:
            raise DataError(
                f"'{path}': {name} lists case '{unknown[0]}', which the manifest lacks; "
                "re-run split"
            )
    return splits, cases, hashes


def _changes(splits: dict[str, Any], files: dict[str, str]) -> str:
    """Which files changed, appeared or went since ``splits`` was written, in words."""
    recorded = splits.get("files")
    if not isinstance(recorded, dict):
        return "this splits file predates per-file hashes, so the files are not named"
    kinds = [
        ("changed", [f for f in files if f in recorded and recorded[f] != files[f]]),
        ("new", [f for f in files if f not in recorded]),
        ("gone", [f for f in recorded if f not in files]),
    ]
    named = []
    for kind, names in kinds:
        if names:
            more = f" and {len(names) - LISTED} more" if len(names) > LISTED else ""
            named.append(f"{kind}: " + ", ".join(f"'{n}'" for n in names[:LISTED]) + more)
    return "; ".join(named) or "the manifest's rows changed (case or patient ids, labels, order)"


def _schema_problem(splits: Any) -> str | None:
    """What is wrong with the structure of a splits file, or ``None``."""
    if not isinstance(splits, dict):
        return "expected a JSON object"
    for key, kind in [
        ("seed", int),
        ("dataset_hash", str),
        ("removed_duplicates", list),
        ("test", list),
        ("folds", list),
    ]:
        if not isinstance(splits.get(key), kind):
            return f"'{key}' is missing or not a {kind.__name__}"
    if not splits["folds"]:
        return "'folds' is empty"
    if not all(isinstance(c, str) for c in splits["test"]):
        return "'test' must list case ids"
    test = set(splits["test"])
    for k, fold in enumerate(splits["folds"]):
        if not isinstance(fold, dict) or not all(
            isinstance(fold.get(key), list) and all(isinstance(c, str) for c in fold[key])
            for key in ("train", "val")
        ):
            return f"fold {k} needs 'train' and 'val' lists of case ids"
        shared = (set(fold["train"]) & set(fold["val"])) or (
            (set(fold["train"]) | set(fold["val"])) & test
        )
        if shared:
            return f"case '{sorted(shared)[0]}' is in two parts of fold {k}"
    return None


def _pick(cases: Sequence[Case], ids: Sequence[str]) -> list[Case]:
    wanted = set(ids)
    return [case for case in cases if case.case_id in wanted]
