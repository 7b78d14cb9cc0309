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

from . import __version__
from .config import load_config, to_yaml
from .utils.errors import ProjectError

PROG = "{{ cookiecutter.package_name }}"


def run_config(args: argparse.Namespace) -> int:
    """Print the resolved configuration: defaults, the YAML file, then the overrides."""
    cfg = load_config(args.overrides, args.config)
    sys.stdout.write(to_yaml(cfg))
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
