"""Time the template's main job: render, install, the project's tests, and its demo.

Renders the template (default answers, or ``--answers KEY=VALUE ...``) into a temporary folder,
installs the project with its README's command into a virtual environment, runs its test suite
(``pytest -q``) and its demo, and prints a table of the seconds each step took, the test counts
and the demo's final validation metric (best ``val_dice`` for segmentation, ``val_auroc`` for
classification):

    python scripts/benchmark.py
    python scripts/benchmark.py --answers task=classification spatial_dims=2 image_format=png
    python scripts/benchmark.py --json bench.json --keep /tmp/bench   # keep the render and venv
    python scripts/benchmark.py --full       # a fresh venv that downloads every dependency
    python scripts/benchmark.py --dry-run    # render, then print the commands it would run

By default the virtual environment sees this environment's packages and the project is installed
without dependencies (as ``tests/test_rendered_projects.py`` does), so the install time is the
project's own; ``--full`` measures what a new user waits for. The demo is the project's ``demo``
command when its CLI has one, else the README's "Run" commands (as ``scripts/demo.py`` runs them).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import platform
import re
import shlex
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo import readme_commands, to_argv  # noqa: E402  (scripts/ is not a package)

TEMPLATE = Path(__file__).resolve().parents[1]
METRICS = ("val_dice", "val_auroc")  # the final metric: the first of these columns found
TEST_COUNTS = ("passed", "failed", "errors", "error", "skipped", "deselected", "xfailed", "xpassed")


class BenchmarkError(Exception):
    """A step that cannot go on; the message names the file, answer or command."""


@dataclass
class Step:
    """One timed step: its name, wall-clock seconds and a short result."""

    name: str
    seconds: float
    result: str

    def __post_init__(self) -> None:
        self.seconds = round(self.seconds, 3)


@dataclass
class Report:
    """Everything the benchmark measured, as saved by ``--json``."""

    answers: dict[str, str]
    install: str
    steps: list[Step] = field(default_factory=list)
    tests: dict[str, int] = field(default_factory=dict)
    tests_exit: int | None = None
    metric: dict[str, Any] | None = None
    environment: dict[str, Any] = field(default_factory=dict)


# --- Parsing (pure functions; tests/test_benchmark.py tests them) --------------------------------


def parse_answers(items: list[str], questions: dict[str, Any]) -> dict[str, str]:
    """Turn ``KEY=VALUE`` strings into template answers.

    Args:
        items: strings such as ``"task=classification"``.
        questions: the template's ``cookiecutter.json``.

    Returns:
        The answers, in the order given.

    Raises:
        BenchmarkError: an item without ``=`` or naming a key that is not a question.
    """
    answers: dict[str, str] = {}
    known = [k for k in questions if not k.startswith("_")]
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BenchmarkError(f"answer {item!r} is not KEY=VALUE")
        if key not in known:
            raise BenchmarkError(
                f"answer {item!r}: no question {key!r} (one of {', '.join(known)})"
            )
        answers[key] = value
    return answers


def best_metric(metrics_csv: Path) -> tuple[str, float]:
    """The best (largest) value of the first of ``val_dice``/``val_auroc`` in a metrics file.

    Args:
        metrics_csv: a run folder's ``metrics.csv`` (one row per epoch).

    Returns:
        ``(column, value)``; empty and NaN cells are skipped.

    Raises:
        BenchmarkError: the file is missing, has neither column, or no number in it.
    """
    if not metrics_csv.is_file():
        raise BenchmarkError(f"no metrics file: {metrics_csv}")
    with metrics_csv.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        column = next((c for c in METRICS if c in columns), None)
        if column is None:
            raise BenchmarkError(
                f"{metrics_csv} has none of the columns {', '.join(METRICS)} "
                f"(columns: {', '.join(columns) or 'none'})"
            )
        values = []
        for row in reader:
            try:
                value = float(row[column] or "nan")
            except ValueError as err:
                raise BenchmarkError(
                    f"{metrics_csv}: {column} = {row[column]!r} is not a number"
                ) from err
            if not math.isnan(value):
                values.append(value)
    if not values:
        raise BenchmarkError(f"{metrics_csv} has no value in its {column} column")
    return column, max(values)


def latest_metrics(project: Path) -> Path:
    """The ``metrics.csv`` of the newest run folder under ``project/runs``."""
    found = sorted((project / "runs").glob("*/metrics.csv"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise BenchmarkError(f"no run folder with a metrics.csv under {project / 'runs'}")
    return found[-1]


def stdout_metric(text: str) -> tuple[str, float] | None:
    """The last ``val_dice 0.87``-like line of a demo's output (``:`` or ``=`` allowed)."""
    pattern = re.compile(
        r"^\s*(" + "|".join(METRICS) + r")\b\s*[:=]?\s*(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\b",
        re.M,
    )
    matches = pattern.findall(text)
    return (matches[-1][0], float(matches[-1][1])) if matches else None


def pytest_counts(pytest_output: str) -> dict[str, int]:
    """Counts from pytest's closing line, e.g. ``{"passed": 57, "failed": 1}``."""
    lines = [line for line in pytest_output.splitlines() if line.strip()]
    closing = lines[-1] if lines else ""
    found = re.findall(r"(\d+) (" + "|".join(TEST_COUNTS) + r")\b", closing)
    counts: dict[str, int] = {}
    for number, word in found:
        word = "errors" if word == "error" else word
        counts[word] = counts.get(word, 0) + int(number)
    return counts


def has_demo_command(cli_source: str) -> bool:
    """Whether a rendered ``cli.py`` defines a ``demo`` sub-command."""
    return re.search(r"add_parser\(\s*[\"']demo[\"']", cli_source) is not None


def venv_argv(command: str, package: str, python: Path) -> list[str]:
    """A README command line as it runs in the benchmark's environment.

    ``scripts/demo.py``'s ``to_argv`` maps ``pip``/``python`` to this interpreter and the console
    script to this environment's; here both go to ``python`` (the venv's), the console script
    as ``python -m <package>``.
    """
    argv = to_argv(command, package)
    if argv[0] == sys.executable:
        return [str(python), *argv[1:]]
    if Path(argv[0]).stem == package:
        return [str(python), "-m", package, *argv[1:]]
    return argv


def table(steps: list[Step]) -> str:
    """The steps as an aligned text table."""
    rows = [("step", "seconds", "result")] + [(s.name, f"{s.seconds:.1f}", s.result) for s in steps]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(
        f"{name:<{widths[0]}}  {seconds:>{widths[1]}}  {result}" for name, seconds, result in rows
    )


# --- Steps --------------------------------------------------------------------------------------


def timed(argv: list[str], cwd: Path, log: Path) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``argv`` in ``cwd`` with pytest's variables removed; output goes to ``log`` too."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as f:
        f.write(f"$ {' '.join(argv)}\n{result.stdout}{result.stderr}\n")
    return seconds, result


def check(result: subprocess.CompletedProcess, what: str, log: Path) -> None:
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
        raise BenchmarkError(
            f"{what} failed with exit status {result.returncode} (log: {log})\n{tail}"
        )


def render(answers: dict[str, str], out: Path) -> tuple[Path, float]:
    """Render the template into ``out``; return the project and the seconds it took."""
    from cookiecutter.exceptions import CookiecutterException, FailedHookException
    from cookiecutter.main import cookiecutter

    # The hook prints its one-line reason; cookiecutter would add a traceback to it.
    logging.getLogger("cookiecutter").setLevel(logging.CRITICAL)
    start = time.perf_counter()
    try:
        project = cookiecutter(
            str(TEMPLATE), no_input=True, extra_context=answers, output_dir=str(out)
        )
    except FailedHookException as err:  # the pre-generation hook printed its reason
        raise BenchmarkError(f"the template refused the answers {answers}") from err
    except CookiecutterException as err:
        raise BenchmarkError(f"cannot render the template: {err}") from err
    return Path(project), time.perf_counter() - start


def layered_venv(venv: Path) -> Path:
    """A venv without pip that sees this environment's packages; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    code = "import sysconfig; print(sysconfig.get_path('purelib'))"
    purelib = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    parents = {
        sysconfig.get_path("purelib"),
        sysconfig.get_path("platlib"),
        *site.getsitepackages(),
    }
    Path(purelib, "_benchmark_parent.pth").write_text("\n".join(sorted(parents)) + "\n", "utf-8")
    return python


def install_commands(project: Path, package: str, python: Path, full: bool) -> list[list[str]]:
    """The README's install commands; without ``full``, with pip kept from resolving."""
    commands = [
        venv_argv(c, package, python) for c in readme_commands(project / "README.md", "## Install")
    ]
    if not full:
        offline = ["--no-deps", "--no-build-isolation", "--no-index"]
        commands = [argv + offline if argv[1:3] == ["-m", "pip"] else argv for argv in commands]
    return commands


def demo_commands(project: Path, package: str, python: Path) -> list[list[str]]:
    """The project's ``demo`` command if its CLI has one, else its README's Run commands."""
    cli = project / "src" / package / "cli.py"
    if cli.is_file() and has_demo_command(cli.read_text(encoding="utf-8")):
        return [[str(python), "-m", package, "demo"]]
    return [venv_argv(c, package, python) for c in readme_commands(project / "README.md", "## Run")]


def environment() -> dict[str, Any]:
    """Where the figures come from: machine, Python, template commit."""
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=TEMPLATE, capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain"], cwd=TEMPLATE, capture_output=True, text=True
    )
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "template_commit": commit.stdout.strip() if commit.returncode == 0 else None,
        "template_dirty": bool(dirty.stdout.strip()) if dirty.returncode == 0 else None,
    }


def write_json(path: Path, report: Report) -> None:
    """Save the report atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def benchmark(args: argparse.Namespace, report: Report, work: Path) -> None:
    """Run the steps in ``work``, adding what they measure to ``report`` as they go."""
    logs = work / "logs"
    project, seconds = render(report.answers, work)
    report.steps.append(Step("render", seconds, project.name))
    recorded = json.loads((project / ".cookiecutter.json").read_text(encoding="utf-8"))
    package = recorded["package_name"]
    venv = work / "venv"
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    installs = install_commands(project, package, python, args.full)
    tests = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    demos = demo_commands(project, package, python)
    if args.dry_run:
        print(f"rendered {project}; would run there:")
        for argv in [*installs, tests, *demos]:
            print("  " + shlex.join(argv))
        return

    start = time.perf_counter()
    if args.full:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    else:
        layered_venv(venv)
    for argv in installs:
        _, result = timed(argv, project, logs / "install.log")
        check(result, "install", logs / "install.log")
    report.steps.append(Step("install", time.perf_counter() - start, report.install))

    seconds, result = timed(tests, project, logs / "tests.log")
    report.tests, report.tests_exit = pytest_counts(result.stdout), result.returncode
    summary = ", ".join(f"{n} {word}" for word, n in report.tests.items()) or "no count"
    report.steps.append(
        Step(
            "tests",
            seconds,
            summary + ("" if result.returncode == 0 else f" (exit {result.returncode})"),
        )
    )

    seconds, output = 0.0, ""
    for argv in demos:
        took, result = timed(argv, project, logs / "demo.log")
        check(result, "demo command " + " ".join(argv[2:]), logs / "demo.log")
        seconds, output = seconds + took, output + result.stdout
    found = stdout_metric(output)
    source = "demo output"
    if found is None:
        metrics = latest_metrics(project)
        found, source = best_metric(metrics), str(metrics.relative_to(project))
    report.metric = {"name": found[0], "value": found[1], "source": source}
    report.steps.append(Step("demo", seconds, f"{found[0]} {found[1]:.4f}"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    parser.add_argument(
        "--answers",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="template answers (default: the template's defaults)",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="install into a fresh venv with every dependency (slow, online)",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="work in DIR (new or empty) and keep the render, venv and logs",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also save the figures as JSON")
    parser.add_argument(
        "--dry-run", action="store_true", help="render, print the commands, run none of them"
    )
    args = parser.parse_args(argv)
    if (
        args.keep is not None
        and args.keep.exists()
        and (not args.keep.is_dir() or any(args.keep.iterdir()))
    ):
        parser.error(f"--keep DIR must be a new or empty folder: {args.keep}")

    questions = json.loads((TEMPLATE / "cookiecutter.json").read_text(encoding="utf-8"))
    work = args.keep if args.keep is not None else Path(tempfile.mkdtemp(prefix="benchmark-"))
    work.mkdir(parents=True, exist_ok=True)
    report = Report(answers={}, install="fresh venv" if args.full else "layered venv")
    try:
        report.answers = parse_answers(args.answers, questions)
        report.environment = environment()
        benchmark(args, report, work.resolve())
    except BenchmarkError as err:
        if report.steps:  # what was measured before the failure
            print(table(report.steps))
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(table(report.steps))
    if args.json is not None:
        write_json(args.json, report)
        print(f"saved {args.json}")
    return 1 if report.tests_exit else 0


if __name__ == "__main__":
    sys.exit(main())
