"""The scripts: the SLURM batch script launches ``train`` with torchrun on N GPUs; the scale
benchmark measures time and memory per process."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import {{ cookiecutter.package_name }}

PROJECT = Path(__file__).resolve().parents[1]
SCRIPT = PROJECT / "scripts" / "slurm_train.sbatch"
PACKAGE = {{ cookiecutter.package_name }}.__name__
BASH = shutil.which("bash")
needs_posix_bash = pytest.mark.skipif(
    BASH is None or sys.platform == "win32", reason="runs the script with bash and fake tools"
)


def torchrun_command(text: str) -> list[str]:
    """The words of the script's ``torchrun`` command, continuation lines joined."""
    joined = text.replace("\\\n", " ")
    lines = [line for line in joined.splitlines() if re.match(r"\s*(exec\s+)?torchrun\s", line)]
    assert len(lines) == 1, f"expected one torchrun command, found {lines}"
    return shlex.split(lines[0])


def test_script_runs_the_package_train_command_with_torchrun() -> None:
    text = SCRIPT.read_text(encoding="utf-8")
    words = torchrun_command(text)
    assert words[-4:] == ["-m", PACKAGE, "train", "$@"]  # every argument goes to train
    assert "--nproc_per_node=$GPUS" in words
    assert re.search(r"^#SBATCH --gres=gpu:\d+$", text, re.MULTILINE)
    assert re.search(r"^#SBATCH --output=logs/%x-%j\.out$", text, re.MULTILINE)
    assert "{" + "{" not in text and "{" + "%" not in text  # rendered, no Jinja left


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_bash_accepts_the_script() -> None:
    result = subprocess.run([BASH, "-n", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def fake_project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A submit folder with a stub venv and a fake ``torchrun`` that records its arguments.

    Returns:
        The file the fake torchrun writes its arguments to (one a line), and the environment
        to run the script in (as SLURM would set it: 2 GPUs, 8 CPUs).
    """
    submit = tmp_path / "project"
    (submit / "configs").mkdir(parents=True)
    (submit / "configs" / "default.yaml").write_text("seed: 1\n", encoding="utf-8")
    bin_dir = submit / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    record = tmp_path / "torchrun_args.txt"
    # Like a real venv's activate: its bin/ goes first on PATH, so the fake torchrun is found
    # only when the script activated the venv.
    (bin_dir / "activate").write_text(f'PATH="{bin_dir}:$PATH"\nexport PATH\n', encoding="utf-8")
    torchrun = bin_dir / "torchrun"
    torchrun.write_text(
        "#!/bin/sh\n"
        f'for a in "$@"; do printf "%s\\n" "$a"; done > "{record}"\n'
        f'printf "%s\\n" "$OMP_NUM_THREADS" > "{record}.threads"\n',
        encoding="utf-8",
    )
    torchrun.chmod(0o755)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "SLURM_SUBMIT_DIR": str(submit),
        "SLURM_GPUS_ON_NODE": "2",
        "SLURM_CPUS_PER_TASK": "8",
    }
    return record, env


@needs_posix_bash
def test_script_passes_arguments_through_to_torchrun(tmp_path: Path) -> None:
    record, env = fake_project(tmp_path)
    args = ["train.epochs=3", "run.name=two gpus", "--note", "it's a 'test'"]
    result = subprocess.run(
        [BASH, str(SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    recorded = record.read_text(encoding="utf-8").splitlines()
    assert recorded == [
        "--standalone",
        "--nnodes=1",
        "--nproc_per_node=2",
        "-m",
        PACKAGE,
        "train",
        *args,
    ]
    assert Path(f"{record}.threads").read_text(encoding="utf-8").strip() == "4"  # 8 CPUs / 2


@needs_posix_bash
def test_script_refuses_a_missing_venv_or_no_gpu(tmp_path: Path) -> None:
    record, env = fake_project(tmp_path)
    missing = subprocess.run(
        [BASH, str(SCRIPT)],
        env={**env, "VENV": str(tmp_path / "nowhere")},
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2
    assert "no virtual environment at" in missing.stderr
    no_gpu = subprocess.run(
        [BASH, str(SCRIPT)], env={**env, "SLURM_GPUS_ON_NODE": "0"}, capture_output=True, text=True
    )
    assert no_gpu.returncode == 2
    assert "no GPU found" in no_gpu.stderr
    assert not record.exists()  # torchrun never started


def load_benchmark(name: str):
    """A module of ``benchmarks/`` (not a package), imported from its file."""
    spec = importlib.util.spec_from_file_location(name, PROJECT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not hasattr(os, "wait4"), reason="peak memory per process needs os.wait4")
def test_scale_benchmark_measures_each_process_peak_memory(tmp_path: Path) -> None:
    scale = load_benchmark("scale")
    ballast = np.ones(300_000_000, np.uint8)  # this process is large: its children are not
    allocate = "import numpy as np; a = np.ones(400_000_000, np.uint8); print(a.sum())"
    big = scale.measure(scale.python(allocate), dict(os.environ), tmp_path / "log")
    small = scale.measure(scale.python("pass"), dict(os.environ), tmp_path / "log")
    assert big["peak_gb"] >= 0.4 > 0.1 > small["peak_gb"], (big, small)  # 400 MB touched
    assert big["seconds"] > 0 and ballast[0] == 1
    with pytest.raises(RuntimeError, match="failed"):
        scale.measure(scale.python("raise SystemExit(3)"), dict(os.environ), tmp_path / "x")


def test_scale_benchmark_cases_are_distinct_and_duplicates_are_found() -> None:
    from {{ cookiecutter.package_name }}.data.inspect.duplicates import thumbnail

    scale = load_benchmark("scale")
    rng = np.random.default_rng(0)
    cases = [scale.ct_case(rng, (64, 64, 24)) for _ in range(4)]
    for image, mask in cases:
        assert image.dtype == np.int16 and image.shape == (64, 64, 24)
        assert set(np.unique(mask)) == {0, 1, 2}  # an organ with a lesion in it
    prints = np.stack([thumbnail(image) for image, _ in cases])
    assert np.triu(prints @ prints.T, k=1).max() < 0.98  # no accidental near duplicates
    found = scale.duplicate_search(200)
    assert found["pairs"] == found["full_pairs"] == 20  # the planted pairs, as the full search


def test_brats_like_cases_have_four_sequences_and_a_nested_tumor(tmp_path: Path) -> None:
    from {{ cookiecutter.package_name }}.data.inspect.duplicates import thumbnail
    from {{ cookiecutter.package_name }}.data.manifest import read_manifest

    scale = load_benchmark("scale")
    images, mask = scale.brats_case(np.random.default_rng(0), (40, 40, 32))
    assert images.shape == (4, 40, 40, 32) and images.dtype == np.int16
    assert set(np.unique(mask)) == {0, 1, 2, 3}  # edema, core, enhancing
    t1, t1c, t2, flair = (images[c].astype(float) for c in range(4))
    assert t1c[mask == 3].mean() > t1c[mask == 2].mean() + 300  # the enhancing rim enhances
    assert flair[mask == 1].mean() > flair[(mask == 0) & (flair > 0)].mean() + 300  # edema
    assert (images[:, mask > 0] > 0).all()  # the tumor is inside the brain
    rng = np.random.default_rng(1)
    prints = np.stack([thumbnail(scale.brats_case(rng, (48, 48, 32))[0][0]) for _ in range(4)])
    assert np.triu(prints @ prints.T, k=1).max() < 0.98  # no accidental near duplicates
    scale.write_dataset(tmp_path, 2, (24, 24, 16), kind="brats")
    cases = read_manifest(tmp_path, task="segmentation")
    assert [list(c.channels) for c in cases] == [["t1", "t1c", "t2", "flair"]] * 2


@pytest.mark.slow
def test_scale_benchmark_runs_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    scale = load_benchmark("scale")
    out = tmp_path / "scale.json"
    report = scale.main(
        ["--cases", "4", "--shape", "48", "48", "32", "--predict-shape", "48", "48", "40"]
        + ["--duplicates", "50", "--steps", "1", "--json", str(out)]
    )
    assert json.loads(out.read_text(encoding="utf-8")) == report
    (size,) = report["sizes"]
    for step in ("inspect", "split", "verify", "train_cold", "evaluate"):
        assert size[step]["seconds"] > 0 and size[step]["peak_gb"] > 0, step
    assert size["train_warm"]["seconds"] > 0 and size["steps"]["count"] == 1
    assert size["manifest"] is None or size["manifest"]["seconds"] > 0
    assert size["cache_gb"] > 0
    assert report["predict"]["voxels"] == 48 * 48 * 40
    brats = scale.main(
        ["--kind", "brats", "--cases", "3", "--shape", "32", "32", "24", "--steps", "1"]
        + ["--predict-shape", "32", "32", "24", "--duplicates", "50"]
    )
    assert brats["sizes"][0]["kind"] == "brats" and brats["predict"]["shape"] == [32, 32, 24]
