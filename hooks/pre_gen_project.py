"""Validate the answers before anything is generated.

Runs under whatever Python runs cookiecutter (or cruft), so it uses the standard library only.
A bad answer stops generation with one line that names the key, the value given and what is
expected, and exit status 1; cookiecutter then removes the half-made project folder.
"""

import json
import keyword
import os
import re
import subprocess
import sys
from pathlib import Path

# The answers, as JSON. Jinja's ``tojson`` escapes quotes, so any answer fits in a raw string.
ANSWERS = json.loads(r"""{{ cookiecutter | tojson }}""")

# Importable names the rendered project depends on (or commonly sits beside); a package with one
# of these names would shadow the real one.
DEPENDENCY_MODULES = {
    "torch", "torchvision", "numpy", "scipy", "monai", "nibabel", "pydicom", "PIL", "pillow",
    "matplotlib", "tqdm", "omegaconf", "yaml", "captum", "optuna", "tensorboard", "mlflow",
    "pytest", "ruff", "setuptools", "pip", "sklearn", "pandas", "skimage", "SimpleITK", "itk",
    "torchio", "jupyter", "ipykernel", "nbformat", "nbclient", "cookiecutter", "cruft", "src",
    "tests", "test",
}
CHOICES = {
    "task": ("segmentation", "classification"),
    "spatial_dims": ("3", "2"),
    "image_format": ("nifti", "dicom", "png"),
    "tracking": ("csv", "tensorboard", "mlflow"),
    "include_notebook": ("true", "false"),
    "ci": ("github", "gitlab", "none"),
    "commit_checkpoints": ("false", "true"),
    "license": ("MIT", "BSD-3-Clause", "Apache-2.0", "GPL-3.0-only", "Proprietary"),
}
MIN_PYTHON = (3, 10)


def check_slug(slug: str) -> str | None:
    if not slug.strip():
        return "expected a non-empty folder name"
    if "/" in slug or "\\" in slug or ".." in slug:
        return "expected a plain folder name without '/', '\\' or '..'"
    if not slug[0].isalnum():
        return "expected a name that starts with a letter or digit"
    if slug != slug.strip():
        return "expected a name without leading or trailing spaces"
    return None


def check_package(name: str) -> str | None:
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        return "expected a lowercase Python identifier (letters, digits, underscores)"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return "expected a name that is not a Python keyword"
    if name in sys.stdlib_module_names:
        return "expected a name that does not shadow the standard library module of that name"
    if name in {m.lower() for m in DEPENDENCY_MODULES}:
        return "expected a name that does not shadow the dependency of that name"
    return None


def check_email(email: str) -> str | None:
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
        return "expected an address like name@example.org"
    return None


def check_python(version: str) -> str | None:
    match = re.fullmatch(r"(\d+)\.(\d+)", version.strip())
    if not match:
        return "expected a version like 3.11"
    if (int(match.group(1)), int(match.group(2))) < MIN_PYTHON:
        return "expected %d.%d or newer" % MIN_PYTHON
    return None


def problems(answers: dict) -> list[tuple[str, str]]:
    """Return ``(key, reason)`` for every answer that cannot make a working project."""
    found = []
    for key, check in (
        ("project_slug", check_slug),
        ("package_name", check_package),
        ("author_email", check_email),
        ("python_version", check_python),
    ):
        reason = check(str(answers.get(key, "")))
        if reason:
            found.append((key, reason))
    for key, allowed in CHOICES.items():
        if str(answers.get(key)) not in allowed:
            found.append((key, "expected one of " + ", ".join(allowed)))
    if answers.get("image_format") == "png" and str(answers.get("spatial_dims")) == "3":
        found.append(
            ("image_format", "expected nifti or dicom for 3D volumes (PNG holds 2D images only)")
        )
    if not str(answers.get("project_name", "")).strip():
        found.append(("project_name", "expected a non-empty title"))
    return found


def remove_created_parents(project_dir: Path, slug: str) -> None:
    """Remove the empty folders cookiecutter made for a slug with '/' in it.

    Cookiecutter creates ``output/a/b`` for the slug ``a/b`` before this hook runs and removes
    only ``b`` when the hook fails. A detached process waits for that and then removes the
    parents that are still empty (``rmdir`` never removes a folder with anything in it).
    """
    depth = len(Path(slug).parts) - 1  # folder levels this platform made of the slug
    if depth <= 0 or ".." in slug:
        return
    output_dir = Path(ANSWERS.get("_output_dir") or project_dir.parents[depth]).resolve()
    parents = [
        str(p) for p in list(project_dir.parents)[:depth]
        if output_dir in p.resolve().parents  # strictly inside the output folder
    ]
    script = (
        "import os, sys, time\n"
        "target, parents = sys.argv[1], sys.argv[2:]\n"
        "for _ in range(200):\n"
        "    if not os.path.exists(target): break\n"
        "    time.sleep(0.05)\n"
        "for p in parents:\n"
        "    try: os.rmdir(p)\n"
        "    except OSError: break\n"
    )
    subprocess.Popen(
        [sys.executable, "-c", script, str(project_dir), *parents],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> int:
    found = problems(ANSWERS)
    if not found:
        return 0
    key, reason = found[0]
    print(f"error: {key} = {ANSWERS.get(key)!r} is not valid: {reason}.", file=sys.stderr)
    if key == "project_slug":
        remove_created_parents(Path(os.getcwd()), str(ANSWERS.get(key, "")))
    return 1


if __name__ == "__main__":
    sys.exit(main())
