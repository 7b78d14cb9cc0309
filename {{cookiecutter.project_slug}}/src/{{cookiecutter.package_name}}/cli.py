"""The command line: ``{{ cookiecutter.package_name }} COMMAND`` or ``python -m {{ cookiecutter.package_name }} COMMAND``.

Each command is a function ``run_<name>(args) -> int`` next to the argparse definition below; the
work itself lives in the package module named after its purpose (``config.py``, ``data/``, ...).
A :class:`ProjectError` (bad file, unknown key, ...) is printed as one line, ``error: ...``, and
exits with status 2; nothing already written is touched.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__, paths
from .config import load_config, to_yaml
from .utils.errors import ProjectError

PROG = "{{ cookiecutter.package_name }}"


def run_config(args: argparse.Namespace) -> int:
    """Print the resolved configuration: defaults, the YAML file, then the overrides."""
    cfg = load_config(args.overrides, args.config)
    sys.stdout.write(to_yaml(cfg))
    return 0


def run_dummy_data(args: argparse.Namespace) -> int:
    """Write the synthetic dataset for the configured task, dimensions and format."""
    from .data.dummy import generate_dataset

    cfg = load_config(args.overrides, args.config)
    out = paths.resolve(args.out if args.out is not None else cfg.data.root)
    manifest = generate_dataset(
        out,
        task=cfg.task,
        spatial_dims=cfg.spatial_dims,
        fmt=cfg.data.format,
        cases=args.cases,
        seed=cfg.seed if args.seed is None else args.seed,
        like=None if args.like is None else paths.resolve(args.like),
    )
    print(f"wrote {manifest}")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    """Read one image (DICOM file or series folder, NIfTI, PNG) and write it as NIfTI."""
    from .data.io import read_image, write_nifti

    image = read_image(args.src, series_uid=args.series, canonical=args.canonical)
    write_nifti(image.array, image.affine, args.dst)
    spacing = " x ".join(f"{s:.3g}" for s in image.spacing)
    print(f"wrote {args.dst}: shape {image.shape}, spacing {spacing} mm, {image.array.dtype}")
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    """Write the dataset report (JSON, Markdown, plots), or show one case."""
    from .data.inspection import inspect_dataset, view_case

    cfg = load_config(args.overrides, args.config)
    root = paths.resolve(args.data if args.data is not None else cfg.data.root)
    if args.view is not None:
        return view_case(root, args.view, task=cfg.task)
    report = inspect_dataset(root, task=cfg.task, out_dir=paths.reports_dir() / "inspect")
    print(f"wrote {report}")
    return 0


def run_split(args: argparse.Namespace) -> int:
    """Remove duplicates, then make a held-out test set and K folds grouped by patient."""
    from .data.split import make_splits

    cfg = load_config(args.overrides, args.config)
    root = paths.resolve(args.data if args.data is not None else cfg.data.root)
    splits = make_splits(
        root,
        task=cfg.task,
        folds=args.folds,
        test_fraction=args.test_fraction,
        seed=cfg.seed if args.seed is None else args.seed,
    )
    print(
        f"wrote {root / 'splits.json'}: {len(splits['test'])} test cases, "
        f"{len(splits['folds'])} folds, {len(splits['removed_duplicates'])} duplicates removed"
    )
    return 0


def run_train(args: argparse.Namespace) -> int:
    """Train one fold; ``--resume RUN_DIR`` continues a run from its last checkpoint."""
    from .train.loop import train

    if args.resume is not None:
        if args.overrides or args.config is not None:
            raise ProjectError(
                "--resume continues a run with its own config.yaml; start a new run to change "
                f"settings (got {' '.join(args.overrides) or '--config'})"
            )
        run_dir = paths.resolve(args.resume)
        if not run_dir.is_dir():
            raise ProjectError(f"run folder '{run_dir}' does not exist")
        train(load_config(), resume=run_dir, note=args.note)
        return 0
    train(load_config(args.overrides, args.config), note=args.note)
    return 0


def run_lr_find(args: argparse.Namespace) -> int:
    """Learning-rate range test: plot and suggestion in a new run folder."""
    from .train.lr_find import lr_range_test

    cfg = load_config(args.overrides, args.config)
    lr_range_test(cfg, start_lr=args.start_lr, end_lr=args.end_lr, steps=args.steps)
    return 0


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """The options every config-driven command shares: ``--config`` and ``key=value`` overrides."""
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides, e.g. train.lr=3e-4 run.name=small-lr",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="YAML file of defaults (default: configs/default.yaml)",
    )


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def seed_value(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected a seed in [0, 2**32), got {text}")
    return value


def fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per pipeline step."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="{{ cookiecutter.project_slug }}: medical-imaging deep learning, one command per step.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    config = commands.add_parser(
        "config",
        help="print the resolved configuration (defaults + configs/default.yaml + overrides)",
        description="Print the configuration a command would run with, as YAML.",
    )
    add_config_options(config)
    config.set_defaults(func=run_config)

    dummy = commands.add_parser(
        "dummy-data",
        help="write a synthetic dataset with the pitfalls of real data",
        description="Write a synthetic dataset for the configured task, dimensions and format: "
        "several studies per patient, exact and near duplicates, a second annotator, "
        "anisotropic spacing, class imbalance.",
    )
    dummy.add_argument("--out", type=Path, default=None, help="folder (default: data.root)")
    dummy.add_argument("--cases", type=positive_int, default=None, help="number of cases")
    dummy.add_argument("--seed", type=seed_value, default=None, help="random seed (default: seed)")
    dummy.add_argument(
        "--like",
        type=Path,
        default=None,
        metavar="DIR",
        help="make a smaller synthetic twin of the dataset in DIR (its manifest.csv)",
    )
    add_config_options(dummy)
    dummy.set_defaults(func=run_dummy_data)

    convert = commands.add_parser(
        "convert",
        help="convert one image (DICOM file/series, NIfTI, PNG) to NIfTI with its geometry",
        description="Read one image and write it to DST (.nii.gz or .nii) with its geometry: "
        "slices ordered by position, intensities rescaled, affine in RAS.",
    )
    convert.add_argument("src", type=Path, help="DICOM file or series folder, NIfTI or PNG")
    convert.add_argument("dst", type=Path, help="output .nii.gz or .nii file")
    convert.add_argument(
        "--series",
        default=None,
        metavar="UID",
        help="SeriesInstanceUID to read when SRC holds several series",
    )
    convert.add_argument(
        "--canonical", action="store_true", help="reorient to the closest RAS+ orientation"
    )
    convert.set_defaults(func=run_convert)

    inspect = commands.add_parser(
        "inspect",
        help="dataset report: counts, classes, mask sizes, geometry, intensities, duplicates, "
        "annotators, splits, montages",
        description="Write reports/inspect/<date>/report.json, report.md and plots.",
    )
    inspect.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="DIR",
        help="dataset folder with manifest.csv (default: data.root)",
    )
    inspect.add_argument(
        "--view",
        default=None,
        metavar="CASE_ID",
        help="open one case in ITK-SNAP if installed, else show its montage",
    )
    add_config_options(inspect)
    inspect.set_defaults(func=run_inspect)

    split = commands.add_parser(
        "split",
        help="remove duplicates, then a test set and K folds grouped by patient",
        description="Write splits.json next to the manifest: duplicates removed first, then a "
        "held-out test set and K cross-validation folds, grouped by patient and stratified.",
    )
    split.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="DIR",
        help="dataset folder with manifest.csv (default: data.root)",
    )
    split.add_argument("--folds", type=positive_int, default=5, help="number of folds (5)")
    split.add_argument(
        "--test-fraction",
        type=fraction,
        default=0.2,
        help="share of the data held out for testing, whole patients only (0.2)",
    )
    split.add_argument("--seed", type=seed_value, default=None, help="random seed (default: seed)")
    add_config_options(split)
    split.set_defaults(func=run_split)

    lr_find = commands.add_parser(
        "lr-find",
        help="learning-rate range test: loss against log lr, suggested lr",
        description="Increase the learning rate exponentially per batch until the loss passes "
        "4x its best; plot loss against log lr and suggest the lr of steepest descent.",
    )
    lr_find.add_argument("--start-lr", type=float, default=1e-6, help="first lr (1e-6)")
    lr_find.add_argument("--end-lr", type=float, default=1.0, help="last lr (1.0)")
    lr_find.add_argument("--steps", type=positive_int, default=100, help="batches (100)")
    add_config_options(lr_find)
    lr_find.set_defaults(func=run_lr_find)

    train = commands.add_parser(
        "train",
        help="train one fold into a dated run folder (under torchrun: with DDP)",
        description="Train one fold of splits.json into runs/<date>_<time>_<run.name>/: config, "
        "environment, metrics.csv, checkpoints (last.pt, best.pt), plots, notes.",
    )
    add_config_options(train)
    train.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="continue RUN_DIR from checkpoints/last.pt, with its own config",
    )
    train.add_argument(
        "--note",
        default=None,
        metavar="TEXT",
        help="what this run tries (notes.md and EXPERIMENTS.md)",
    )
    train.set_defaults(func=run_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ProjectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
