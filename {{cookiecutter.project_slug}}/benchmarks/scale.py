"""How the pipeline scales with the dataset: time and peak memory of each step at real size.

For each size N it writes a synthetic dataset of N cases, with its own ``manifest.csv``, in a
temporary project: ``--kind ct`` (the default), CT-like cases (``--shape``, default 512x512x100
int16 in HU, 0.8 x 0.8 x 2.5 mm, as ``.nii.gz`` with a uint8 organ + lesion mask), or ``--kind
brats``, BraTS-like cases of 4 MR sequences (``image_t1``, ``image_t1c``, ``image_t2``,
``image_flair`` columns; default 240x240x155 int16 at 1 mm, a mask of edema, tumor core and
enhancing tumor, labels 1-3); smooth noise plus a few shapes, quick to write. Then it runs each
command as the student would, in its own process, recording the wall
time and the process's peak resident memory (``VmHWM`` of ``/proc/self/status``, read as the
process ends: its own peak since it started, unlike ``ru_maxrss``, which also counts the memory
of the parent it was forked from):

* ``manifest`` (when the command line has one; else ``n/a``: the benchmark writes the manifest);
* ``inspect``; ``split`` (test fraction 0.2, ``N // 4`` folds, at least 2, so that the
  validation fold holds about 3 cases at every size: validation and ``evaluate`` cost a fixed
  time per case, and an untrained network's scattered predictions make the lesion counts and
  surface distances slow); ``split --verify`` (re-hashes every byte);
* ``train``, cold: from the command to the first training step, with an empty cache, so it
  includes decoding and caching every case of the fold (``prepare``);
* ``train``, warm: the same again with the cache filled: the start-up that must stay flat;
  then ``--steps`` training steps (a cached epoch's worth of batches costs
  ``steps_per_epoch x`` that) and the whole-set validation of the fold (the peak memory given
  there is that of the whole run);
* ``evaluate`` of that run on the validation fold (sliding windows over every whole volume);
* the cache on disk: bytes per case.

Then, once, ``predict`` on one large volume (``--predict-shape``, default 512x512x600 for CT and
240x240x155 for BraTS, its 4 sequences given as one comma-joined input) with the
run of the last size, to show the memory of whole-volume sliding-window inference, and the
near-duplicate search on ``--duplicates`` synthetic thumbnails against the full N x N
comparison it replaces.

The network is deliberately tiny (``--model-overrides``): the point is how the data handling
grows with the dataset, not the network's speed (``benchmarks/train_step.py`` measures that).
Memory is that of the command's process (Linux; elsewhere ``ru_maxrss`` of the child where
``os.wait4`` exists, which may include the benchmark's own memory, else ``n/a``).

Run from the project root (at 512x512x100, each case takes 24 MB of data and 130 MB of cache:
about 19 GB of temporary disk for 120 cases, ~1 hour on 2 cores; the README gives the results)::

    python benchmarks/scale.py --cases 10 40 120 [--shape 512 512 100] [--json scale.json]
    python benchmarks/scale.py --kind brats --cases 10 40 [--json brats.json]

Targets: ``train`` start-up with a warm cache at the largest size within 2x of the smallest;
``predict`` on the large volume under ``--memory-budget`` GB (default 4).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import {{ cookiecutter.package_name }}
from {{ cookiecutter.package_name }} import paths
from {{ cookiecutter.package_name }}.data.io import write_nifti
from {{ cookiecutter.package_name }}.data.manifest import Case, write_manifest

PACKAGE = {{ cookiecutter.package_name }}.__name__
PROJECT = Path(__file__).resolve().parents[1]
SPACING = (0.8, 0.8, 2.5)  # mm: anisotropic, as most CT
CASES_PER_FOLD = 4  # folds = N // 4 (at least 2): a validation fold of ~3 cases at every size
TEST_FRACTION = 0.2
MODEL = [
    "model.width=4",
    "model.depth=3",
    "data.patch_size=[128,128,64]",
    "data.augment=false",
    "train.batch_size=2",
]
STEP_NAMES = [
    ("manifest", "manifest"),
    ("inspect", "inspect"),
    ("split", "split"),
    ("verify", "split --verify"),
    ("train_cold", "train start, cold cache (fills it)"),
    ("train_warm", "train start, warm cache"),
    ("steps", "train steps"),
    ("validation", "validation (peak: whole warm run)"),
    ("evaluate", "evaluate (val)"),
]

# Prepended to every measured command: at exit, writes the process's peak resident memory in
# kB (VmHWM: this process's own, since its exec) to the file named by SCALE_PEAK.
PEAK_HOOK = """
import atexit as _atexit, os as _os

def _write_peak():
    try:
        with open("/proc/self/status", encoding="ascii") as _status:
            _kb = next(l.split()[1] for l in _status if l.startswith("VmHWM:"))
        with open(_os.environ["SCALE_PEAK"], "w", encoding="ascii") as _out:
            _out.write(_kb)
    except (OSError, KeyError, StopIteration):
        pass

_atexit.register(_write_peak)
"""
RUN_PACKAGE = "import runpy; runpy.run_module({package!r}, run_name='__main__', alter_sys=True)"

# Runs the package's command line, noting when the first training step starts and when the
# epoch's steps end (the training loop's run_epoch), in a JSON file named by SCALE_MARKS.
# SCALE_STOP=1 stops the process right at the first step (start-up only).
TRAIN_WRAPPER = """
import json, os, sys, time
from {package}.train import loop
from {package}.cli import main

marks = dict()

def write():
    with open(os.environ["SCALE_MARKS"], "w") as handle:
        json.dump(marks, handle)

real = loop.run_epoch

def timed(*args, **kwargs):
    marks.setdefault("first_step", time.time())
    write()
    if os.environ.get("SCALE_STOP") == "1":
        _write_peak()
        os._exit(0)
    out = real(*args, **kwargs)
    marks.setdefault("steps_end", time.time())
    write()
    return out

loop.run_epoch = timed
code = main(sys.argv[1:])
marks["end"] = time.time()
write()
sys.exit(code)
"""


def ct_case(rng: np.random.Generator, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A CT-like int16 volume in HU and its uint8 mask (1 organ, 2 lesion).

    A body of random size and position, two lungs, a spine, an organ with a lesion, smooth
    noise (a coarse random field, upsampled: quick to make) and fine noise: different enough
    from case to case that no two are near duplicates.
    """
    coarse = rng.normal(0.0, 25.0, size=[max(2, s // 16) for s in shape]).astype(np.float32)
    smooth = coarse
    for axis, size in enumerate(shape):  # nearest-neighbour upsampling, one axis at a time
        smooth = np.repeat(smooth, -(-size // smooth.shape[axis]), axis=axis)
    smooth = smooth[: shape[0], : shape[1], : shape[2]]
    x, y, z = (
        np.linspace(-1, 1, n, dtype=np.float32).reshape([-1 if a == i else 1 for a in range(3)])
        for i, n in enumerate(shape)
    )

    def ellipsoid(center: Sequence[float], radii: Sequence[float]) -> np.ndarray:
        c = np.asarray(center, np.float32)
        r = np.asarray(radii, np.float32)
        return ((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2 <= 1

    shift = rng.uniform(-0.15, 0.15, size=2)
    body = ellipsoid([*shift, 0], [rng.uniform(0.6, 0.95), rng.uniform(0.45, 0.8), 9])
    hu = np.where(body, np.float32(40.0) + smooth, np.float32(-1000.0))
    for side in (-1, 1):  # lungs
        lung = [shift[0] + side * rng.uniform(0.2, 0.4), shift[1] + rng.uniform(-0.1, 0.1)]
        size = [rng.uniform(0.12, 0.25), rng.uniform(0.2, 0.35), rng.uniform(0.5, 1.5)]
        hu[ellipsoid([*lung, rng.uniform(-0.5, 0.5)], size) & body] = -800
    spine = ellipsoid([shift[0], shift[1] + rng.uniform(0.25, 0.4), 0], [0.06, 0.06, 9])
    hu[spine] = 400 + rng.uniform(0, 300)
    center = [*(shift + rng.uniform(-0.2, 0.2, size=2)), rng.uniform(-0.3, 0.3)]
    organ = ellipsoid(center, rng.uniform(0.1, 0.25, size=3)) & body & ~spine
    lesion = ellipsoid(center, [0.05, 0.05, 0.1]) & organ
    hu += rng.integers(-12, 13, size=shape, dtype=np.int16)
    hu += np.float32(30.0) * organ + np.float32(60.0) * lesion
    mask = organ.astype(np.uint8) + lesion
    return np.clip(hu, -1024, 3071).astype(np.int16), mask


def brats_case(
    rng: np.random.Generator, shape: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Four BraTS-like MR sequences ``(4, *shape)`` int16 (T1, T1c, T2, FLAIR) and their uint8
    mask (1 edema, 2 tumor core, 3 enhancing tumor).

    A head of random size and position (an ellipsoid of brain, 0 outside: skull-stripped) with
    two ventricles (dark on T1, bright on T2 and FLAIR-suppressed), a tumor of three nested
    shells at a random place, each sequence with its own contrasts and smooth noise: different
    enough from case to case that no two are near duplicates.
    """
    x, y, z = (
        np.linspace(-1, 1, n, dtype=np.float32).reshape([-1 if a == i else 1 for a in range(3)])
        for i, n in enumerate(shape)
    )
    shift = rng.uniform(-0.1, 0.1, size=3)
    radii = rng.uniform(0.65, 0.9, size=3)
    brain = ((x - shift[0]) / radii[0]) ** 2 + ((y - shift[1]) / radii[1]) ** 2 + (
        (z - shift[2]) / radii[2]
    ) ** 2 <= 1
    ventricles = np.zeros(shape, bool)
    for side in (-1, 1):
        vx = shift[0] + side * rng.uniform(0.08, 0.2)
        vr = rng.uniform(0.05, 0.12, size=3) * [1, 3, 2]
        ventricles |= ((x - vx) / vr[0]) ** 2 + ((y - shift[1]) / vr[1]) ** 2 + (
            (z - shift[2]) / vr[2]
        ) ** 2 <= 1
    center = shift + rng.uniform(-0.3, 0.3, size=3)
    r2 = (x - center[0]) ** 2 + (y - center[1]) ** 2 + (z - center[2]) ** 2
    radius = rng.uniform(0.12, 0.22)
    mask = np.zeros(shape, np.uint8)
    mask[(r2 <= (1.8 * radius) ** 2) & brain] = 1
    mask[r2 <= radius**2] = 2
    mask[(r2 <= radius**2) & (r2 >= (0.6 * radius) ** 2)] = 3
    contrasts = {  # brain, edema, core, enhancing, then ventricles (cerebrospinal fluid)
        "t1": (500, 450, 350, 400, 150),
        "t1c": (500, 480, 380, 900, 150),
        "t2": (400, 700, 600, 650, 1200),
        "flair": (300, 800, 500, 550, 80),
    }
    tissue = np.where(ventricles & (mask == 0), np.uint8(4), mask)
    channels = np.zeros((4, *shape), np.int16)
    coarse_shape = [max(2, s // 16) for s in shape]
    for c, levels in enumerate(contrasts.values()):
        smooth = rng.normal(0.0, 20.0, size=coarse_shape).astype(np.float32)
        for axis, size in enumerate(shape):  # nearest-neighbour upsampling, one axis at a time
            smooth = np.repeat(smooth, -(-size // smooth.shape[axis]), axis=axis)
        value = (
            np.take(np.asarray(levels, np.float32), tissue)
            + smooth[: shape[0], : shape[1], : shape[2]]
        )
        value += rng.normal(0.0, 10.0, size=shape).astype(np.float32)
        channels[c] = np.where(brain, np.clip(value, 0, 4000), 0).astype(np.int16)
    return channels, mask


SEQUENCES = ("t1", "t1c", "t2", "flair")


def write_dataset(
    root: Path, count: int, shape: tuple[int, int, int], seed: int = 0, kind: str = "ct"
) -> float:
    """Write ``count`` cases of ``kind`` (``ct`` or ``brats``) and their manifest under
    ``root``; return their bytes."""
    rng = np.random.default_rng(seed)
    affine = np.diag([*(SPACING if kind == "ct" else (1.0, 1.0, 1.0)), 1.0])
    cases = []
    for i in range(count):
        name = f"case{i:04d}"
        if kind == "ct":
            image, mask = ct_case(rng, shape)
            channels = {"": write_nifti(image, affine, root / "images" / f"{name}.nii.gz")}
        else:
            images, mask = brats_case(rng, shape)
            channels = {
                seq: write_nifti(images[c], affine, root / "images" / f"{name}_{seq}.nii.gz")
                for c, seq in enumerate(SEQUENCES)
            }
        mask_path = write_nifti(mask, affine, root / "masks" / f"{name}.nii.gz")
        first = next(iter(channels.values()))
        multi = {k: v for k, v in channels.items() if k}
        cases.append(Case(name, f"p{i:04d}", first, mask_path, channels=multi))
    write_manifest(root, cases)
    return float(sum(p.stat().st_size for p in root.rglob("*.nii.gz")))


def python(code: str, *args: str) -> list[str]:
    """A command running ``code`` (with :data:`PEAK_HOOK` first) in a new Python process."""
    return [sys.executable, "-c", PEAK_HOOK + code, *args]


def package(*args: str) -> list[str]:
    """``python -m <package> *args``, with :data:`PEAK_HOOK`."""
    return python(RUN_PACKAGE.format(package=PACKAGE), *args)


def measure(command: Sequence[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run ``command`` (made by :func:`python` or :func:`package`); its wall time (s) and peak
    resident memory (GB).

    Raises:
        RuntimeError: the command failed (the end of its output is in the message).
    """
    peak_file = log.with_name(f"{log.name}.peak")
    peak_file.unlink(missing_ok=True)
    env = {**env, "SCALE_PEAK": str(peak_file)}
    start = time.time()
    with open(log, "ab") as out:
        process = subprocess.Popen(list(command), env=env, stdout=out, stderr=subprocess.STDOUT)
        if hasattr(os, "wait4"):
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes / KiB
            peak: float | None = usage.ru_maxrss * scale / 1e9
        else:
            process.wait()
            peak = None
    seconds = time.time() - start
    if peak_file.is_file():  # the process's own peak (Linux)
        peak = int(peak_file.read_text(encoding="ascii")) * 1024 / 1e9
    if process.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{tail}")
    return {"start": start, "seconds": seconds, "peak_gb": peak}


def has_command(name: str) -> bool:
    from {{ cookiecutter.package_name }}.cli import build_parser

    parser = build_parser()
    choices = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return name in choices.choices


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def newest_run(project: Path) -> Path:
    runs = sorted((p for p in (project / "runs").iterdir() if p.is_dir()), key=lambda p: p.name)
    return runs[-1]


def one_size(
    project: Path,
    count: int,
    shape: tuple[int, int, int],
    steps: int,
    env: dict[str, str],
    kind: str = "ct",
) -> dict[str, Any]:
    """Write a dataset of ``count`` cases of ``kind`` and measure every step on it."""
    data = project / "data" / f"scale{count}"
    cache = project / "cache" / f"scale{count}"
    log = project / f"scale{count}.log"
    result: dict[str, Any] = {"cases": count, "shape": list(shape), "kind": kind}
    started = time.time()
    result["dataset_gb"] = write_dataset(data, count, shape, kind=kind) / 1e9
    result["write_seconds"] = time.time() - started
    overrides = [f"data.root={data}", f"data.cache_dir={cache}", "device=cpu", *MODEL]

    if has_command("manifest"):  # the benchmark's own manifest is kept either way
        out = project / "manifest-check"
        result["manifest"] = measure(package("manifest", str(data), "--out", str(out)), env, log)
    else:
        result["manifest"] = None
    result["inspect"] = measure(package("inspect", "--data", str(data)), env, log)
    result["folds"] = max(2, count // CASES_PER_FOLD)
    split = ["split", "--data", str(data), "--folds", str(result["folds"])]
    split += ["--test-fraction", str(TEST_FRACTION)]
    result["split"] = measure(package(*split), env, log)
    result["verify"] = measure(package("split", "--data", str(data), "--verify"), env, log)

    marks = project / "marks.json"
    train = python(TRAIN_WRAPPER.format(package=PACKAGE), "train", *overrides)
    train += [f"run.name=scale{count}", "train.epochs=1", f"train.steps_per_epoch={steps}"]
    for name, stop in (("train_cold", "1"), ("train_warm", "0")):
        marks.unlink(missing_ok=True)
        run = measure(train, {**env, "SCALE_MARKS": str(marks), "SCALE_STOP": stop}, log)
        times = json.loads(marks.read_text(encoding="utf-8"))
        result[name] = {"seconds": times["first_step"] - run["start"]}
        if stop == "1":  # the process ended at the first step: its peak is the start-up's
            result[name]["peak_gb"] = run["peak_gb"]
        else:
            result["steps"] = {"seconds": times["steps_end"] - times["first_step"], "count": steps}
            result["validation"] = {
                "seconds": times["end"] - times["steps_end"],
                "peak_gb": run["peak_gb"],
            }
            result["train_total"] = run
    result["cache_gb"] = folder_bytes(cache) / 1e9
    result["cache_mb_per_case"] = folder_bytes(cache) / 1e6 / max(1, len(list(cache.iterdir())))
    run_dir = newest_run(project)
    result["run_dir"] = str(run_dir)
    result["evaluate"] = measure(package("evaluate", str(run_dir), "--split", "val"), env, log)
    return result


def predict_large(
    project: Path, run_dir: Path, shape: tuple[int, int, int], env: dict[str, str], kind: str = "ct"
) -> dict[str, Any]:
    """``predict`` with ``run_dir`` on one volume of ``shape`` (for ``brats``, its 4 sequences as
    one comma-joined input): time and peak memory."""
    folder = project / "large"
    rng = np.random.default_rng(1)
    if kind == "ct":
        image, _ = ct_case(rng, shape)
        source = str(write_nifti(image, np.diag([*SPACING, 1.0]), folder / "large.nii.gz"))
    else:
        images, _ = brats_case(rng, shape)
        source = ",".join(
            str(write_nifti(images[c], np.eye(4), folder / f"large_{seq}.nii.gz"))
            for c, seq in enumerate(SEQUENCES)
        )
        image = images
    del image
    command = package("predict", str(run_dir), source, "--out", str(project / "predicted"))
    command += ["--checkpoint", "last"]
    result = measure(command, env, project / "predict.log")
    return {"shape": list(shape), "voxels": int(np.prod(shape)), **result}


def duplicate_search(count: int) -> dict[str, Any]:
    """The near-duplicate search on ``count`` synthetic thumbnails, beside the full N x N
    comparison (only up to 10,000: it needs 4 N^2 bytes)."""
    import tracemalloc

    from scipy import ndimage

    from {{ cookiecutter.package_name }}.data.inspect.duplicates import THUMBNAIL, similar_pairs

    rng = np.random.default_rng(0)
    size = (THUMBNAIL,) * 3
    shared = ndimage.gaussian_filter(rng.normal(size=size), 3) * 3  # the same anatomy
    rows = np.empty((count, THUMBNAIL**3), np.float32)
    for k in range(count):
        rows[k] = (shared + ndimage.gaussian_filter(rng.normal(size=size), 2)).ravel()
    planted = min(20, count // 2)
    rows[:planted] = rows[planted : 2 * planted] + 0.02 * rng.normal(size=(planted, rows.shape[1]))
    rows -= rows.mean(1, keepdims=True)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    tracemalloc.start()
    start = time.perf_counter()
    found = similar_pairs(rows, 0.98)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    result = {"cases": count, "pairs": len(found), "seconds": seconds, "peak_gb": peak / 1e9}
    if count <= 10_000:
        start = time.perf_counter()
        corr = rows @ rows.T
        full = int(np.count_nonzero(np.triu(corr >= 0.98, k=1)))
        result["full_seconds"] = time.perf_counter() - start
        result["full_gb"] = (corr.nbytes + 2 * corr.size) / 1e9  # matrix + two boolean masks
        result["full_pairs"] = full
    return result


def cell(step: dict[str, Any] | None) -> str:
    if step is None:
        return "n/a"
    peak = step.get("peak_gb")
    memory = f" / {peak:.2f}" if peak is not None else ""
    return f"{step['seconds']:.1f}{memory}"


def table(results: list[dict[str, Any]]) -> str:
    """The Markdown table of seconds / peak GB per step, one column per size."""
    head = "| step (seconds / peak GB) | " + " | ".join(f"{r['cases']} cases" for r in results)
    lines = [head + " |", "|---|" + "---:|" * len(results)]
    lines.append(
        "| dataset on disk (GB), written in (s) | "
        + " | ".join(f"{r['dataset_gb']:.1f}, {r['write_seconds']:.0f}" for r in results)
        + " |"
    )
    for key, name in STEP_NAMES:
        cells = []
        for r in results:
            text = cell(r.get(key))
            if key == "steps" and r.get(key):
                text = f"{r[key]['seconds']:.1f} ({r[key]['count']} steps)"
            cells.append(text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(
        "| cache on disk (GB; MB per case) | "
        + " | ".join(f"{r['cache_gb']:.1f}; {r['cache_mb_per_case']:.0f}" for r in results)
        + " |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("ct", "brats"), default="ct", help="dataset (ct)")
    parser.add_argument("--cases", type=int, nargs="+", default=[10, 40, 120], metavar="N")
    parser.add_argument("--shape", type=int, nargs=3, default=None, metavar="N")
    parser.add_argument("--predict-shape", type=int, nargs=3, default=None, metavar="N")
    parser.add_argument("--duplicates", type=int, default=10_000, help="thumbnails (10000)")
    parser.add_argument("--steps", type=int, default=4, help="training steps measured (4)")
    parser.add_argument("--memory-budget", type=float, default=4.0, help="GB for predict (4)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR", help="work folder")
    args = parser.parse_args(argv)
    brats = [240, 240, 155]
    args.shape = args.shape or ([512, 512, 100] if args.kind == "ct" else brats)
    args.predict_shape = args.predict_shape or ([512, 512, 600] if args.kind == "ct" else brats)
    if min(args.cases) < 3 or min(args.shape + args.predict_shape) < 8 or args.steps < 1:
        parser.error("--cases must be >= 3, shapes >= 8 voxels per axis, --steps >= 1")
    if args.duplicates < 2:
        parser.error("--duplicates must be >= 2")
    shape = tuple(args.shape)
    work = args.keep or Path(tempfile.mkdtemp(prefix="scale-"))
    project = work / "project"
    project.mkdir(parents=True, exist_ok=True)
    shutil.copytree(PROJECT / "configs", project / "configs", dirs_exist_ok=True)
    for name in ("pyproject.toml", "setup.py"):
        if (PROJECT / name).is_file():
            shutil.copy(PROJECT / name, project / name)
    env = {**os.environ, paths.ROOT_ENV: str(project), "PYTHONWARNINGS": "ignore"}
    threads = os.environ.get("OMP_NUM_THREADS") or str(os.cpu_count())
    print(
        f"{len(args.cases)} sizes of {'x'.join(map(str, shape))} int16 "
        f"{'CT-like' if args.kind == 'ct' else 'BraTS-like 4-sequence MR'} cases in "
        f"{work}; {os.cpu_count()} cores, OMP_NUM_THREADS={threads}",
        flush=True,
    )
    results: list[dict[str, Any]] = []
    report: dict[str, Any] = {"cores": os.cpu_count(), "omp_threads": threads, "sizes": results}
    try:
        for count in sorted(args.cases):
            results.append(one_size(project, count, shape, args.steps, env, args.kind))
            print(f"{count} cases done", flush=True)
            if count != max(args.cases) and args.keep is None:
                shutil.rmtree(project / "data" / f"scale{count}", ignore_errors=True)
                shutil.rmtree(project / "cache" / f"scale{count}", ignore_errors=True)
        large = tuple(args.predict_shape)
        run_dir = Path(results[-1]["run_dir"])
        report["predict"] = predict_large(project, run_dir, large, env, args.kind)
        report["duplicates"] = duplicate_search(args.duplicates)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print(table(results))
    first, last = results[0]["train_warm"]["seconds"], results[-1]["train_warm"]["seconds"]
    ratio = last / first
    report["startup_ratio"] = ratio
    pred = report["predict"]
    dup = report["duplicates"]
    print()
    print(
        f"train start-up, warm cache: {results[-1]['cases']} cases / {results[0]['cases']} "
        f"cases = {ratio:.2f}x (target <= 2x: {'met' if ratio <= 2 else 'NOT met'})"
    )
    within = pred["peak_gb"] is None or pred["peak_gb"] < args.memory_budget
    print(
        f"predict {'x'.join(map(str, pred['shape']))}: {pred['seconds']:.1f} s, peak "
        + (f"{pred['peak_gb']:.2f} GB" if pred["peak_gb"] is not None else "n/a")
        + f" (target < {args.memory_budget:g} GB: {'met' if within else 'NOT met'})"
    )
    line = (
        f"near-duplicate search, {dup['cases']} cases: {dup['seconds']:.2f} s, "
        f"{dup['peak_gb']:.3f} GB, {dup['pairs']} pairs"
    )
    if "full_seconds" in dup:
        line += (
            f" (full N x N comparison: {dup['full_seconds']:.2f} s, {dup['full_gb']:.2f} GB, "
            f"{dup['full_pairs']} pairs)"
        )
    print(line)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    main()
