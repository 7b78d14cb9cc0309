"""The template's main job: render the default project and do what its README says.

Renders the template with its default answers into ``build/`` (replacing an earlier demo there),
runs the rendered README's install command with this Python's pip, then its "Run" commands, as a
new user would after ``cookiecutter``. Extra ``key=value`` arguments change the answers:

    python scripts/demo.py
    python scripts/demo.py task=classification spatial_dims=2 image_format=png
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parents[1]
MARKER = ".made-by-template-demo"


def readme_commands(readme: Path, heading: str) -> list[str]:
    """Command lines of the first fenced code block under ``heading``."""
    text = readme.read_text(encoding="utf-8")
    if heading not in text:
        raise SystemExit(f"error: {readme} has no '{heading}' section")
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", text.split(heading, 1)[1], re.S)
    if not block:
        raise SystemExit(f"error: no code block under '{heading}' in {readme}")
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def to_argv(command: str, package: str) -> list[str]:
    """Run README commands with this interpreter: ``pip`` -> ``python -m pip``, the console
    script from this environment's scripts folder."""
    argv = shlex.split(command)
    if argv[0] == "pip":
        return [sys.executable, "-m", "pip", *argv[1:]]
    if argv[0] in ("python", "python3"):
        return [sys.executable, *argv[1:]]
    if argv[0] == package:
        suffix = ".exe" if sys.platform == "win32" else ""
        return [str(Path(sysconfig.get_path("scripts")) / f"{package}{suffix}"), *argv[1:]]
    return argv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("answers", nargs="*", metavar="KEY=VALUE", help="template answers")
    parser.add_argument("--out", type=Path, default=TEMPLATE / "build", help="output folder")
    args = parser.parse_args(argv)
    answers = dict(a.split("=", 1) for a in args.answers)

    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.iterdir():  # replace only what an earlier demo made
        if (old / MARKER).exists():
            shutil.rmtree(old)
    project = Path(cookiecutter(str(TEMPLATE), no_input=True, extra_context=answers,
                                output_dir=str(args.out)))
    (project / MARKER).write_text("rendered by scripts/demo.py\n", encoding="utf-8")
    print(f"rendered {project}", flush=True)

    package = (project / ".cookiecutter.json").read_text(encoding="utf-8")
    package = re.search(r'"package_name": "([^"]+)"', package).group(1)
    readme = project / "README.md"
    for heading in ("## Install", "## Run"):
        for command in readme_commands(readme, heading):
            print(f"\n$ {command}", flush=True)
            result = subprocess.run(to_argv(command, package), cwd=project)
            if result.returncode != 0:
                print(f"error: '{command}' failed with exit status {result.returncode}",
                      file=sys.stderr)
                return result.returncode
    print(f"\ndone: the project is in {project}; its tests run with `pytest` there.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
