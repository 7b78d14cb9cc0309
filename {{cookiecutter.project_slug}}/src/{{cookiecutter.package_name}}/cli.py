"""The command line: ``{{ cookiecutter.package_name }} COMMAND`` or ``python -m {{ cookiecutter.package_name }} COMMAND``.

Each command is two functions: ``run_<name>(args) -> int``, which imports its work from the package
module named after its purpose (``config.py``, ``data/``, ...) only when it runs, so that
``--help`` stays fast; and ``add_<name>_command(commands)``, which declares its options with the
helpers the commands share (``add_config_options``, ``add_data_option``, ``add_run_dir``, ...).
:data:`COMMANDS` lists them in the order of ``--help``.
A :class:`ProjectError` (bad file, unknown key, ...) is printed as one line, ``error: ...``, and
exits with status 2; nothing already written is touched.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from . import __version__, paths
from .config import data_root, list_presets, load_config, preset_overrides, to_yaml
from .explain import METHODS
from .utils.errors import ConfigError, ProjectError

PROG = "{{ cookiecutter.package_name }}"


def run_config(args: argparse.Namespace) -> int:
    """Print the resolved configuration: defaults, the YAML file, then the overrides."""
    cfg = load_config(args.overrides, args.config)
    sys.stdout.write(to_yaml(cfg))
    return 0


def run_dummy_data(args: argparse.Namespace) -> int:
    """Write the synthetic dataset for the configured task, dimensions and format."""
    from .data.synthetic.dummy import generate_dataset

    cfg = load_config(args.overrides, args.config)
    out = paths.resolve(args.out) if args.out is not None else data_root(cfg)
    try:
        manifest = generate_dataset(
            out,
            task=cfg.task,
            spatial_dims=cfg.spatial_dims,
            fmt=cfg.data.format,
            cases=args.cases,
            seed=cfg.seed if args.seed is None else args.seed,
            like=None if args.like is None else paths.resolve(args.like),
            channels=args.channels,
        )
    except ValueError as exc:  # a combination of options it cannot write, e.g. DICOM channels
        raise ConfigError(f"dummy-data: {exc}") from None
    print(f"wrote {manifest}")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    """Read one image (DICOM file or series folder, NIfTI, PNG) and write it as NIfTI."""
    from .data.io import read_image, write_nifti

    image = read_image(
        args.src,
        series_uid=args.series,
        canonical=args.canonical,
        resample_irregular=args.resample_slices,
    )
    write_nifti(image.array, image.affine, args.dst, header=image.meta)
    spacing = " x ".join(f"{s:.3g}" for s in image.spacing)
    resampled = " (resampled onto a regular grid)" if image.meta.get("resampled") else ""
    print(
        f"wrote {args.dst}: shape {image.shape}, spacing {spacing} mm, {image.array.dtype}"
        f"{resampled}"
    )
    return 0


def run_manifest(args: argparse.Namespace) -> int:
    """Write manifest.csv from a dataset folder (Decathlon/nnU-Net, DICOM, BIDS, CSV, folders)."""
    from .data.layouts import build_manifest

    src = paths.resolve(args.src)
    out = paths.resolve(args.out) if args.out is not None else (src if src.is_dir() else src.parent)
    manifest, found = build_manifest(
        src,
        out,
        layout=args.layout,
        patient_regex=args.patient_regex,
        series_rule=args.series_rule,
    )
    for note in found.notes:
        print(note)
    if found.skipped:
        print(f"skipped {len(found.skipped)}:")
        for line in found.skipped:
            print(f"  {line}")
    patients = len({c.patient_id for c in found.cases})
    print(f"wrote {manifest}: {len(found.cases)} cases, {patients} patients ({found.task})")
    print(f"next: inspect --data {out}")
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    """Write the dataset report (JSON, Markdown, plots), or show one case."""
    from .data.inspect import inspect_dataset, view_case

    cfg = load_config(args.overrides, args.config)
    root = paths.resolve(args.data) if args.data is not None else data_root(cfg)
    if args.view is not None:
        return view_case(root, args.view, task=cfg.task)
    report = inspect_dataset(
        root,
        task=cfg.task,
        out_dir=paths.reports_dir() / "inspect",
        normalization=cfg.data.normalization,
        window=cfg.data.window,
        orientation=cfg.data.orientation,
    )
    print(f"wrote {report}")
    return 0


def run_split(args: argparse.Namespace) -> int:
    """Remove duplicates, then make a held-out test set and K folds grouped by patient."""
    from .data.split import make_splits, verify_splits

    cfg = load_config(args.overrides, args.config)
    root = paths.resolve(args.data) if args.data is not None else data_root(cfg)
    if args.verify:
        checked = verify_splits(root, cfg.task)
        print(
            f"{root / 'splits.json'} matches the data: {checked['cases']} cases, "
            f"{checked['files']} files ({checked['bytes'] / 1e9:.2f} GB) re-hashed"
        )
        return 0
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


def run_evaluate(args: argparse.Namespace) -> int:
    """Whole-set metrics with confidence intervals, per-case metrics, predictions, figures."""
    from .evaluate.evaluation import evaluate_run

    out = evaluate_run(
        args.run_dir,
        args.split,
        ensemble=args.ensemble,
        reference=args.reference,
        checkpoint=args.checkpoint,
    )
    print(_evaluation_summary(out))
    return 0


def _evaluation_summary(folder: Path) -> str:
    import json

    report = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    lines = [
        f"{report['split']}: {report['n_cases']} cases, {report['n_patients']} patients "
        f"(bootstrap 95% intervals over patients)"
    ]
    if report.get("positive_class"):
        lines.append(f"  positive class: '{report['positive_class']}' (sensitivity, PPV, ...)")
    if "nsd_tolerance_mm" in report:
        lines.append(f"  nsd at a tolerance of {report['nsd_tolerance_mm']:g} mm")
    for name, entry in report["summary"].items():
        lines.append(
            f"  {name:<18} {entry['value']:.4f}  [{entry['low']:.4f}, {entry['high']:.4f}]"
        )
    lines.append(f"wrote {folder} and {folder.parents[1] / 'MODEL_CARD.md'}")
    return "\n".join(lines)


def run_compare(args: argparse.Namespace) -> int:
    """Paired comparison of two evaluated runs on the same cases: difference, interval, p."""
    from .evaluate.compare import compare_runs

    result = compare_runs(args.run_a, args.run_b, split=args.split, metric=args.metric)
    print(result.text)
    print(f"wrote {result.report} and {result.figure}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    """A run (or an ensemble) as TorchScript or ONNX, checked against PyTorch."""
    from .evaluate.export import export_run

    result = export_run(
        args.run_dir, args.format, ensemble=args.ensemble, checkpoint=args.checkpoint
    )
    print(
        f"largest difference from PyTorch on {result.cases} validation cases: "
        f"{result.max_difference:.3g}"
    )
    print(f"wrote {result.path} and {result.metadata}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    """Apply a trained run to new images, writing predictions in their own geometry."""
    from .evaluate.predict import predict

    out = predict(
        args.run_dir,
        args.inputs,
        args.out,
        ensemble=args.ensemble,
        checkpoint=args.checkpoint,
        fmt=args.format,
    )
    print(f"wrote {out}")
    return 0


def run_explain(args: argparse.Namespace) -> int:
    """Interpretability maps (saliency, Grad-CAM, occlusion) or a TCAV concept test of a run."""
    import json

    from .evaluate.model_card import write_model_card
    from .explain.runner import explain

    out = explain(
        args.run_dir,
        args.method,
        cases=args.cases,
        split=args.split,
        layer=args.layer,
        concept=args.concept,
        region=args.region,
    )
    print(json.loads((out / "summary.json").read_text(encoding="utf-8"))["finding"])
    card = write_model_card(out.parents[1])  # the card quotes the finding
    print(f"wrote {out} and updated {card}")
    return 0


def run_runs(args: argparse.Namespace) -> int:
    """Print the table of all runs: settings, epochs done, best validation and test metric."""
    from .runs.table import filter_runs, list_runs, runs_table

    if args.since and args.until and args.since > args.until:
        raise ProjectError(f"--since {args.since} is after --until {args.until}")
    runs_dir = paths.runs_dir() if args.runs_dir is None else paths.resolve(args.runs_dir)
    if args.runs_dir is not None and not runs_dir.is_dir():
        raise ProjectError(f"runs folder '{runs_dir}' does not exist")
    runs = list_runs(runs_dir)
    if not runs:
        print(f"no runs in {runs_dir} yet (train one with: {PROG} train)")
        return 0
    shown = filter_runs(runs, args.name, args.since, args.until)
    sys.stdout.write(runs_table(shown, args.sort))
    print(f"{len(shown)} of {len(runs)} runs in {runs_dir}")
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    """Hyper-parameter search with Optuna: one training run per trial, resumable."""
    from .workflow.sweep import sweep

    result = sweep(
        space_file=None if args.space is None else paths.resolve(args.space),
        overrides=args.overrides,
        config=args.config,
        method=args.method,
        trials=args.trials,
        storage=args.storage,
        study_name=args.study,
    )
    sys.stdout.write(result.table)
    best = result.best
    if best is not None:
        print(
            f"best: trial {best.number}, {result.monitor} {best.value:.4f}, "
            f"run {best.user_attrs.get('run_dir', '?')}"
        )
    print(f"wrote {result.csv} and {result.plot}; study '{result.study}' in {result.storage}")
    return 0 if best is not None else 1


def run_ablate(args: argparse.Namespace) -> int:
    """The baseline and each --try change alone, one run each, in one table."""
    from .workflow.ablate import ablate

    result = ablate(args.overrides, args.tries, config=args.config)
    sys.stdout.write(result.table)
    print(f"wrote {result.folder / 'ablation.csv'} and {result.folder / 'ablation.md'}")
    return 1 if result.failed else 0


def run_demo(args: argparse.Namespace) -> int:
    """dummy-data, inspect, split, train, evaluate and explain in one go, sized for a CPU."""
    from .workflow.demo import demo

    result = demo(args.overrides, args.config)
    print(result.summary())
    return 0


# --- Option types and the options several commands share --------------------------------------


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


def iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text}") from None


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """The options every config-driven command shares: ``key=value`` overrides and ``--config``.

    Both can choose a preset of ``configs/experiments/``; the help names this project's presets.
    """
    presets = ", ".join(list_presets()) or "none"
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides, e.g. train.lr=3e-4 run.name=small-lr; experiment=NAME applies "
        f"the preset configs/experiments/NAME.yaml before them (presets: {presets})",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="a preset, or any YAML file of config keys, merged over configs/default.yaml "
        "(e.g. configs/experiments/cpu_quick.yaml)",
    )


def add_data_option(parser: argparse.ArgumentParser) -> None:
    """``--data DIR``: the dataset folder instead of ``data.root``."""
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="DIR",
        help="dataset folder with manifest.csv (default: data.root)",
    )


def add_seed_option(parser: argparse.ArgumentParser) -> None:
    """``--seed N`` instead of the config's ``seed``."""
    parser.add_argument("--seed", type=seed_value, default=None, help="random seed (default: seed)")


def add_run_dir(parser: argparse.ArgumentParser) -> None:
    """The positional ``RUN_DIR``: a trained run."""
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder")


def add_split_option(parser: argparse.ArgumentParser, help_text: str = "(val)") -> None:
    """``--split val|test``: the fold's validation cases (the default) or the held-out test set."""
    parser.add_argument("--split", choices=["val", "test"], default="val", help=help_text)


def add_ensemble_option(parser: argparse.ArgumentParser, help_text: str = "more runs") -> None:
    """``--ensemble RUN_DIR ...``: more runs whose probabilities are averaged with RUN_DIR's."""
    parser.add_argument(
        "--ensemble", nargs="+", type=Path, default=[], metavar="RUN_DIR", help=help_text
    )


def add_checkpoint_option(parser: argparse.ArgumentParser) -> None:
    """``--checkpoint best|last``: which checkpoint of each run."""
    parser.add_argument("--checkpoint", choices=["best", "last"], default="best", help="(best)")


def _demo_settings_text() -> str:
    """Where the demo's settings come from and what they are, for ``demo --help``."""
    try:
        settings = " ".join(preset_overrides("demo"))
    except ConfigError:  # no project here, or its preset was deleted
        return "experiment=demo, configs/experiments/demo.yaml"
    return f"experiment=demo, configs/experiments/demo.yaml: {settings}"


# --- One function per command: it adds the sub-command, its options and its run_<name> ---------


def add_config_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "config",
        help="print the resolved configuration (defaults + configs/default.yaml + overrides)",
        description="Print the configuration a command would run with, as YAML.",
    )
    add_config_options(parser)
    parser.set_defaults(func=run_config)


def add_demo_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "demo",
        help="the whole pipeline on synthetic data in minutes: dummy-data, inspect, split, "
        "train, evaluate, explain",
        description="Run dummy-data, inspect, split, train (with settings small enough for a "
        "CPU), evaluate (validation and test) and explain (Grad-CAM) in one go, then print the "
        "timings, the metrics and where the figures are. key=value overrides go on top of the "
        f"demo's settings ({_demo_settings_text()}).",
    )
    add_config_options(parser)
    parser.set_defaults(func=run_demo)


def add_dummy_data_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "dummy-data",
        help="write a synthetic dataset with the pitfalls of real data",
        description="Write a synthetic dataset for the configured task, dimensions and format: "
        "several studies per patient, exact and near duplicates, a second annotator, "
        "anisotropic spacing, class imbalance.",
    )
    parser.add_argument("--out", type=Path, default=None, help="folder (default: data.root)")
    parser.add_argument("--cases", type=positive_int, default=None, help="number of cases")
    add_seed_option(parser)
    parser.add_argument(
        "--like",
        type=Path,
        default=None,
        metavar="DIR",
        help="make a smaller synthetic twin of the dataset in DIR (its manifest.csv)",
    )
    parser.add_argument(
        "--channels",
        type=positive_int,
        default=1,
        metavar="N",
        help="co-registered images per case, the same anatomy in N contrasts (like MR "
        "sequences): image_ch1..image_chN manifest columns (default 1: one image column)",
    )
    add_config_options(parser)
    parser.set_defaults(func=run_dummy_data)


def add_convert_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "convert",
        help="convert one image (DICOM file/series, NIfTI, PNG) to NIfTI with its geometry",
        description="Read one image and write it to DST (.nii.gz or .nii) with its geometry: "
        "slices ordered by position, intensities rescaled, affine in RAS.",
    )
    parser.add_argument("src", type=Path, help="DICOM file or series folder, NIfTI or PNG")
    parser.add_argument("dst", type=Path, help="output .nii.gz or .nii file")
    parser.add_argument(
        "--series",
        default=None,
        metavar="UID",
        help="SeriesInstanceUID to read when SRC holds several series",
    )
    parser.add_argument(
        "--canonical", action="store_true", help="reorient to the closest RAS+ orientation"
    )
    parser.add_argument(
        "--resample-slices",
        action="store_true",
        help="interpolate a DICOM series with irregular slice gaps onto a regular grid (the "
        "smallest gap), at the slices' true positions, instead of refusing it",
    )
    parser.set_defaults(func=run_convert)


def add_manifest_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "manifest",
        help="write manifest.csv from a dataset folder: Decathlon/nnU-Net, DICOM, BIDS, a CSV "
        "table, or class folders",
        description="Scan SRC and write OUT/manifest.csv (and manifest.json: the layout, "
        "channels and guesses), printing what was found and guessed. A multi-channel case gets "
        "one image_<channel> column per channel; a DICOM series sharing its folder is named "
        "folder::SeriesInstanceUID.",
    )
    parser.add_argument("src", type=Path, help="the dataset folder (or a .csv table)")
    parser.add_argument(
        "--layout",
        choices=["auto", "decathlon", "nnunet", "dicom", "bids", "csv", "folders"],
        default="auto",
        help="(auto: guessed and printed)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder of manifest.csv, then the data.root to train on (default: SRC's folder)",
    )
    parser.add_argument(
        "--patient-regex",
        default=None,
        metavar="RE",
        help="derive patient_id from each image path (relative to SRC): the first group, or "
        "the whole match; e.g. '(pat[0-9]+)_'",
    )
    parser.add_argument(
        "--series-rule",
        default="all",
        metavar="RULE",
        help="DICOM: which series of a study to keep: all (default), most-slices, or a regex "
        "searched in 'Modality SeriesDescription' (e.g. 'CT .*abdomen')",
    )
    parser.set_defaults(func=run_manifest)


def add_inspect_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "inspect",
        help="dataset report: counts, classes, mask sizes, geometry, intensities, duplicates, "
        "annotators, splits, montages",
        description="Write reports/inspect/<date>_<dataset>/report.json, report.md and plots.",
    )
    add_data_option(parser)
    parser.add_argument(
        "--view",
        default=None,
        metavar="CASE_ID",
        help="open one case in ITK-SNAP if installed, else show its montage",
    )
    add_config_options(parser)
    parser.set_defaults(func=run_inspect)


def add_split_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "split",
        help="remove duplicates, then a test set and K folds grouped by patient",
        description="Write splits.json next to the manifest: duplicates removed first, then a "
        "held-out test set and K cross-validation folds, grouped by patient and stratified.",
    )
    add_data_option(parser)
    parser.add_argument("--folds", type=positive_int, default=5, help="number of folds (5)")
    parser.add_argument(
        "--test-fraction",
        type=fraction,
        default=0.2,
        help="share of the data held out for testing, whole patients only (0.2)",
    )
    add_seed_option(parser)
    parser.add_argument(
        "--verify",
        action="store_true",
        help="check the existing splits.json against every byte of the data (train and "
        "evaluate check sizes and modification times only) instead of making a new one",
    )
    add_config_options(parser)
    parser.set_defaults(func=run_split)


def add_evaluate_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "evaluate",
        help="whole-set metrics with 95%% intervals, per-case metrics, predictions, figures",
        description="Evaluate a run (or an ensemble) on its fold's validation cases or the "
        "held-out test set: RUN_DIR/evaluation/<split>/ (metrics.json, per_case.csv, "
        "predictions/, figures) and RUN_DIR/MODEL_CARD.md.",
    )
    add_run_dir(parser)
    add_split_option(parser)
    add_ensemble_option(parser, "more runs (e.g. the other folds) whose probabilities are averaged")
    parser.add_argument(
        "--reference",
        default="label",
        metavar="label|label_<rater>|majority",
        help="the annotation to compare against (label)",
    )
    add_checkpoint_option(parser)
    parser.set_defaults(func=run_evaluate)


def add_compare_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "compare",
        help="is my change real? paired difference of two runs on the same cases, with a 95%% "
        "interval over patients and a p-value",
        description="Compare two runs evaluated on the same cases (evaluate both first): the "
        "per-patient difference B - A of a per-case metric, its mean with a 95%% bootstrap "
        "interval resampling patients, and a paired permutation p-value (Wilcoxon beside it). "
        "Refuses runs evaluated on different cases or splits files. Writes "
        "reports/compare/<date>_<a>_vs_<b>.md and a plot with one line per patient.",
    )
    parser.add_argument("run_a", type=Path, metavar="RUN_A", help="the reference run")
    parser.add_argument("run_b", type=Path, metavar="RUN_B", help="the changed run (B - A)")
    add_split_option(parser)
    parser.add_argument(
        "--metric",
        default=None,
        metavar="NAME",
        help="a per-case metric: a per_case.csv column such as dice, hd95, nsd (segmentation, "
        "default dice); brier, log_loss or accuracy (classification, default brier)",
    )
    parser.set_defaults(func=run_compare)


def add_export_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "export",
        help="the model as TorchScript or ONNX with its preprocessing and class names, "
        "checked against PyTorch",
        description="Write RUN_DIR/export/model.ts (TorchScript) or model.onnx (ONNX; needs "
        'pip install -e ".[export]") with a metadata file: preprocessing constants, class '
        "names, temperatures, sliding-window settings. The export is run on validation cases "
        "and compared with PyTorch; the largest difference is printed, and a mismatch is an "
        "error.",
    )
    add_run_dir(parser)
    parser.add_argument("--format", choices=["torchscript", "onnx"], required=True)
    add_ensemble_option(parser)
    add_checkpoint_option(parser)
    parser.set_defaults(func=run_export)


def add_predict_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "predict",
        help="apply a trained run to new images (files, DICOM series folders, folders of them)",
        description="Predict new images with the run's preprocessing and sliding-window "
        "inference: NIfTI masks in each image's own geometry (segmentation) or a CSV of "
        "class probabilities (classification).",
    )
    add_run_dir(parser)
    parser.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="INPUT",
        help="image file, series or folder; for a run trained on several channels, one case "
        "per INPUT, its channels' files joined by commas in the run's order (T1.nii.gz,T2.nii.gz)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="output folder (RUN_DIR/predict)"
    )
    add_ensemble_option(parser)
    add_checkpoint_option(parser)
    parser.add_argument(
        "--format",
        choices=["nifti", "dicom-seg"],
        default="nifti",
        help="nifti (default), or dicom-seg: also a DICOM Segmentation referencing each DICOM "
        'input series, to open over it in a PACS viewer or 3D Slicer (pip install -e ".[export]")',
    )
    parser.set_defaults(func=run_predict)


def add_lr_find_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "lr-find",
        help="learning-rate range test: loss against log lr, suggested lr",
        description="Increase the learning rate exponentially per batch until the loss passes "
        "4x its best; plot loss against log lr and suggest the lr of steepest descent.",
    )
    parser.add_argument("--start-lr", type=float, default=1e-6, help="first lr (1e-6)")
    parser.add_argument("--end-lr", type=float, default=1.0, help="last lr (1.0)")
    parser.add_argument("--steps", type=positive_int, default=100, help="batches (100)")
    add_config_options(parser)
    parser.set_defaults(func=run_lr_find)


def add_train_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "train",
        help="train one fold into a dated run folder (under torchrun: with DDP)",
        description="Train one fold of splits.json into runs/<date>_<time>_<run.name>/: config, "
        "environment, metrics.csv, checkpoints (last.pt, best.pt), plots, notes.",
    )
    add_config_options(parser)
    parser.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="continue RUN_DIR from checkpoints/last.pt, with its own config",
    )
    parser.add_argument(
        "--note",
        default=None,
        metavar="TEXT",
        help="what this run tries (notes.md and EXPERIMENTS.md)",
    )
    parser.set_defaults(func=run_train)


def add_explain_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "explain",
        help="interpretability maps (saliency, Grad-CAM, occlusion) or a TCAV concept test",
        description="Explain a run's predictions on a few cases of a split: one PNG per case "
        "(saliency, Grad-CAM, occlusion), the prediction change when the labelled region is "
        "covered (occlusion --region mask), or TCAV scores of a concept against random ones; "
        "written to RUN_DIR/explain/<method>/ with a summary.json.",
    )
    add_run_dir(parser)
    parser.add_argument(
        "--method",
        choices=METHODS,
        default=METHODS[0],
        help=f"interpretability method (default: {METHODS[0]})",
    )
    parser.add_argument("--cases", type=positive_int, default=4, help="cases to explain (4)")
    add_split_option(parser, "which cases (default: val)")
    parser.add_argument(
        "--layer",
        default=None,
        metavar="NAME",
        help="gradcam/tcav: the layer (a module name; default: the last convolution); tcav "
        "takes several separated by commas and corrects its p-values for them",
    )
    parser.add_argument(
        "--concept",
        nargs="+",
        default=None,
        metavar="PATH",
        help="tcav: a folder of example images, a .txt list of them, or image files "
        "(default on segmentation data: lesion patches of the training cases)",
    )
    parser.add_argument(
        "--region",
        choices=("mask",),
        default=None,
        help="occlusion: also cover the labelled region (segmentation: the label; "
        "classification: the manifest's 'mask' column) and report the change",
    )
    parser.set_defaults(func=run_explain)


def add_runs_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "runs",
        help="table of all runs: date, name, note, settings, epochs, best validation, test metric",
        description="Print a table of every run folder under runs/: date, name, status, the "
        "first line of notes.md, model, lr, batch size, epochs, fold, epochs done, the best "
        "value of the monitored validation metric and the test metric (dice or AUROC from "
        "evaluation/test/metrics.json). Runs that crashed or are incomplete are listed with a "
        "status.",
    )
    parser.add_argument(
        "--sort",
        default="date",
        metavar="METRIC",
        help="order by date (default, oldest first), name, best (monitored validation metric), "
        "or any metrics.csv column such as val_loss (best first); never by a test metric",
    )
    parser.add_argument(
        "--name", default=None, metavar="TEXT", help="only runs whose name has TEXT"
    )
    parser.add_argument(
        "--since",
        type=iso_date,
        default=None,
        metavar="YYYY-MM-DD",
        help="only runs from this day on",
    )
    parser.add_argument(
        "--until",
        type=iso_date,
        default=None,
        metavar="YYYY-MM-DD",
        help="only runs up to this day",
    )
    parser.add_argument(
        "--runs-dir", type=Path, default=None, metavar="DIR", help="folder of runs (default: runs/)"
    )
    parser.set_defaults(func=run_runs)


def add_sweep_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "sweep",
        help="hyper-parameter search with Optuna, one training run per trial (resumable)",
        description="Search the space of a YAML file (default configs/sweep.yaml) with Optuna: "
        "each trial trains one run named <study>-t<number> and scores its best monitored "
        "validation metric. The study is stored in reports/sweeps/<study>.db (or --storage), "
        "so running the command again resumes it: grid runs the points not yet completed, "
        "random and tpe run --trials more. Failed trials are recorded and the search goes on. "
        "Writes reports/sweeps/<study>/trials.csv and trials.png.",
    )
    parser.add_argument(
        "--method",
        choices=("grid", "random", "tpe"),
        default="tpe",
        help="grid (every combination; needs categorical, int or stepped values), random, or "
        "tpe (Bayesian, the default)",
    )
    parser.add_argument(
        "--trials",
        type=positive_int,
        default=None,
        metavar="N",
        help="random/tpe: trials to add (10); grid: at most N of the remaining points (all)",
    )
    parser.add_argument(
        "--space",
        type=Path,
        default=None,
        metavar="YAML",
        help="search-space file (default: configs/sweep.yaml)",
    )
    parser.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="Optuna RDB URL shared by several machines, e.g. postgresql://user@host/db "
        "(default: SQLite file reports/sweeps/<study>.db)",
    )
    parser.add_argument(
        "--study",
        default="sweep",
        metavar="NAME",
        help="study name: the same name resumes it, a new one starts afresh (default: sweep)",
    )
    add_config_options(parser)
    parser.set_defaults(func=run_sweep)


def add_ablate_command(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "ablate",
        help="train the baseline and each --try change alone; table of the validation metric",
        description="Train the baseline (the config and the overrides, run ablate-baseline) "
        "and, for each --try KEY=VALUE, the baseline with that change alone (run "
        "ablate-<key>-<value>); then print the best monitored validation metric of each run "
        "and its difference from the baseline, saved as reports/ablate/<date>_<time>/"
        "ablation.csv and ablation.md. Every --try is checked before anything trains. Exits "
        "with 1 when a run failed.",
    )
    parser.add_argument(
        "--try",
        dest="tries",
        action="append",
        required=True,
        metavar="KEY=VALUE",
        help="one change to try alone on top of the baseline (repeat for more)",
    )
    add_config_options(parser)
    parser.set_defaults(func=run_ablate)
    return parser


# The sub-commands in the order ``--help`` lists them.
COMMANDS = (
    add_config_command,
    add_demo_command,
    add_dummy_data_command,
    add_convert_command,
    add_manifest_command,
    add_inspect_command,
    add_split_command,
    add_evaluate_command,
    add_compare_command,
    add_export_command,
    add_predict_command,
    add_lr_find_command,
    add_train_command,
    add_explain_command,
    add_runs_command,
    add_sweep_command,
    add_ablate_command,
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per pipeline step."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="{{ cookiecutter.project_slug }}: medical-imaging deep learning, one command per step.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    for add_command in COMMANDS:
        add_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit status."""
    from .utils import messages

    parser = build_parser()
    args = parser.parse_args(argv)
    messages.install()  # one line per warning, nibabel's header chatter included
    try:
        return args.func(args)
    except ProjectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
