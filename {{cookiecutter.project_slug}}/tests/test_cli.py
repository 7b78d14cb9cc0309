"""The command line as a user runs it: exit codes, output, one-line errors."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from {{ cookiecutter.package_name }} import __version__
from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.config import list_presets

PKG = "{{ cookiecutter.package_name }}"


def run_module(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", PKG, *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_version(project: Path) -> None:
    result = run_module("--version", cwd=project)
    assert result.returncode == 0
    assert result.stdout.strip() == f"{PKG} {__version__}"


def test_config_prints_resolved_yaml(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "train.lr=0.01", "run.name=cli"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["lr"] == 0.01
    assert printed["run"]["name"] == "cli"
    assert printed["task"] == "{{ cookiecutter.task }}"


def test_config_typo_is_one_line_without_traceback(project: Path) -> None:
    result = run_module("config", "train.lrr=0.1", cwd=project)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: unknown config key 'train.lrr'")
    assert "Traceback" not in result.stderr


def test_missing_config_file_is_named(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--config", "missing.yaml"]) == 2
    assert "missing.yaml" in capsys.readouterr().err


def test_unknown_command_is_rejected(project: Path) -> None:
    result = run_module("no-such-command", cwd=project)
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_console_script_is_installed(project: Path) -> None:
    suffix = ".exe" if sys.platform == "win32" else ""
    script = Path(sysconfig.get_path("scripts")) / f"{PKG}{suffix}"
    if not script.exists():
        pytest.skip(f"{script} not installed (run: pip install -e .[dev])")
    result = subprocess.run([str(script), "config"], cwd=project, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["seed"] == 42


def test_config_applies_a_preset_by_name_or_by_file(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "experiment=cpu_quick", "train.epochs=5"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["experiment"] == "cpu_quick"  # recorded
    assert printed["device"] == "cpu"  # from the preset
    assert printed["train"]["epochs"] == 5  # the override goes last
    assert main(["config", "--config", "configs/experiments/overfit.yaml"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert (printed["overfit"], printed["experiment"]) == (True, "overfit")


def test_preset_typo_is_one_line_naming_file_and_key(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "configs" / "experiments" / "mine.yaml").write_text("model:\n  widht: 8\n")
    assert main(["config", "experiment=mine"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        "error: unknown config key 'model.widht' in 'configs/experiments/mine.yaml'; "
        "did you mean 'model.width'?"
    ]


def test_help_names_the_presets(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    assert "experiment=NAME" in text
    presets = text.split("(presets: ", 1)[1].split(")", 1)[0]
    assert presets.split(", ") == list_presets()
    assert {"cpu_quick", "demo", "overfit"} <= set(list_presets())
