"""Finish the generated project from the answers.

Writes ``.gitignore``, ``requirements.txt``, ``setup.py`` and ``.cookiecutter.json`` (the recorded
answers), and removes the files the answers leave out. Standard library only, offline, and
idempotent: ``cruft update`` runs it again and gets the same files.
"""

import json
import shutil
import sys
from pathlib import Path

ANSWERS = json.loads(r"""{{ cookiecutter | tojson }}""")
PROJECT = Path.cwd()

# One table of dependencies. Each row: (requirement, condition); a condition is a
# (question, answer) pair, or None for "always". Lower bounds are releases that today's versions
# meet; torch keeps a range so an already installed CPU or CUDA build is kept.
REQUIREMENTS = [
    ("torch>=2.2", None),
    ("numpy>=1.26", None),
    ("scipy>=1.11", None),
    ("nibabel>=5.2", None),
    ("pydicom>=3.0", None),
    ("pillow>=10.0", None),
    ("matplotlib>=3.8", None),
    ("tqdm>=4.66", None),
    ("omegaconf>=2.3", None),
    ("pyyaml>=6.0", None),
    ("monai>=1.3", None),
    ("captum>=0.7", None),
    ("optuna>=3.6", None),
    ("tensorboard>=2.15", ("tracking", "tensorboard")),
    ("mlflow>=2.10", ("tracking", "mlflow")),
]
DEV_REQUIREMENTS = [
    ("pytest>=8.0", None),
    ("ruff>=0.6", None),
    ("import-linter>=2.1", None),  # lint-imports: the layer contracts in pyproject.toml
    ("pre-commit>=3.5", None),
    ("scikit-learn>=1.3", None),  # second implementation the metric tests compare against
    ("nbformat>=5.9", ("include_notebook", "true")),
    ("nbclient>=0.10", ("include_notebook", "true")),
    ("ipykernel>=6.29", ("include_notebook", "true")),
]
# The optional extra ``pip install -e ".[export]"``: ONNX export and its check (onnx,
# onnxruntime), and DICOM Segmentation output of ``predict --format dicom-seg`` (highdicom).
EXPORT_REQUIREMENTS = [
    ("onnx>=1.16", None),
    ("onnxruntime>=1.18", None),
    ("highdicom>=0.22", None),
]

# Files that only some answers keep: (path, question, answer that keeps it).
OPTIONAL_FILES = [
    ("notebooks", "include_notebook", "true"),
    ("tests/test_notebook.py", "include_notebook", "true"),
    (".github", "ci", "github"),
    (".gitlab-ci.yml", "ci", "gitlab"),
]

GITIGNORE = """\
# Written by the project template from your answers.

# --- Patient data never goes into git ---------------------------------------------------------
# The data folder at the project root (raw, generated, cached) and medical image files anywhere
# in the tree. (Anchored with "/": the package's own src/<package>/data/ code must stay tracked.)
/data/
*.dcm
*.DCM
*.dicom
*.nii
*.nii.gz
*.mha
*.mhd
*.raw
*.nrrd
*.npy
*.npz
*.h5
*.hdf5

# --- Experiment outputs ---------------------------------------------------------------------
# Run folders hold configs, metrics and plots; keep them out of git and back them up elsewhere.
{runs}reports/inspect/
reports/ablate/
reports/**/cache/
mlruns/
mlflow.db
*.db
lightning_logs/
logs/
{checkpoints}
# --- Python -----------------------------------------------------------------------------------
__pycache__/
*.py[cod]
*.egg-info/
.eggs/
build/
dist/
.venv/
venv/
env/
.pytest_cache/
.ruff_cache/
.mypy_cache/
.coverage
htmlcov/

# --- Notebooks, editors and operating systems -----------------------------------------------
.ipynb_checkpoints/
.vscode/
.idea/
*.swp
*~
.DS_Store
Thumbs.db
"""

CHECKPOINT_RULES = """\
# Checkpoints: kept out of git (copy them to backed-up storage instead).
*.pt
*.pth
*.ckpt
checkpoints/
"""

CHECKPOINT_COMMITTED = """\
# Checkpoints are committed on purpose (commit_checkpoints = true); consider git LFS for them.
"""

RUNS_IGNORED = "runs/\n"
# Everything in a run folder but its checkpoints/ (git re-includes files only when their folders
# are not excluded, hence the second line).
RUNS_BUT_CHECKPOINTS = """\
runs/**
!runs/**/
!runs/**/checkpoints/**
"""

# Jinja renders this hook: the braces of the setup.py template must stay as they are.
# {% raw %}
SETUP_PY = '''\
"""Packaging: ``pip install -e ".[dev]"`` installs the project and the tools that test it."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent


def read_requirements(name: str) -> list[str]:
    """Return the requirement lines of ``name``, without comments and blank lines."""
    lines = (HERE / name).read_text(encoding="utf-8").splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


setup(
    name={name},
    version="0.1.0",
    description={description},
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    author={author},
    author_email={email},
    license={license},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Medical Science Apps.",
    ],
    python_requires={python_requires},
    package_dir={{"": "src"}},
    packages=find_packages("src"),
    include_package_data=True,
    install_requires=read_requirements("requirements.txt"),
    extras_require={{
        "dev": [
{dev}
        ],
        "export": [
{export}
        ],
    }},
    entry_points={{
        "console_scripts": [
            {script},
        ],
    }},
)
'''
# {% endraw %}


def selected(rows: list[tuple[str, tuple[str, str] | None]]) -> list[str]:
    """Requirements whose condition the answers meet, in table order."""
    return [req for req, cond in rows if cond is None or str(ANSWERS.get(cond[0])) == cond[1]]


def literal(value: str) -> str:
    """A double-quoted Python string literal for ``value`` (quotes, backslashes, non-ASCII kept).

    JSON string escapes are a subset of Python's, so ``json.dumps`` gives a literal that
    evaluates back to exactly ``value``.
    """
    return json.dumps(value, ensure_ascii=False)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")


def write_gitignore() -> None:
    keep_out = str(ANSWERS["commit_checkpoints"]) != "true"
    text = GITIGNORE.format(
        runs=RUNS_IGNORED if keep_out else RUNS_BUT_CHECKPOINTS,
        checkpoints=CHECKPOINT_RULES if keep_out else CHECKPOINT_COMMITTED,
    )
    write(PROJECT / ".gitignore", text)


def write_requirements() -> None:
    header = "# Runtime dependencies, written by the project template from your answers.\n"
    write(PROJECT / "requirements.txt", header + "\n".join(selected(REQUIREMENTS)) + "\n")


def write_setup_py() -> None:
    package = ANSWERS["package_name"]
    dev = selected(DEV_REQUIREMENTS)
    text = SETUP_PY.format(
        name=literal(ANSWERS["project_slug"]),
        description=literal(ANSWERS["description"]),
        author=literal(ANSWERS["author_name"]),
        email=literal(ANSWERS["author_email"]),
        license=literal(ANSWERS["license"]),
        python_requires=literal(">=" + ANSWERS["python_version"]),
        dev="\n".join(f"            {literal(r)}," for r in dev),
        export="\n".join(f"            {literal(r)}," for r in selected(EXPORT_REQUIREMENTS)),
        script=literal(f"{package} = {package}.cli:main"),
    )
    write(PROJECT / "setup.py", text)


def record_answers() -> None:
    """Keep the public answers so the project can be re-rendered (``cruft link``/``update``)."""
    public = {k: v for k, v in ANSWERS.items() if not k.startswith("_")}
    write(PROJECT / ".cookiecutter.json", json.dumps(public, indent=2, ensure_ascii=False) + "\n")


def remove_unused() -> None:
    for rel, question, keep_when in OPTIONAL_FILES:
        if str(ANSWERS.get(question)) == keep_when:
            continue
        path = PROJECT / rel
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def main() -> int:
    write_gitignore()
    write_requirements()
    write_setup_py()
    record_answers()
    remove_unused()
    return 0


if __name__ == "__main__":
    sys.exit(main())
