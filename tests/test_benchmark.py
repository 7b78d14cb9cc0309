"""scripts/benchmark.py: its parsing, its argument errors and a dry run (render, run nothing).

The full benchmark installs a project and trains it, far too slow for the template's tests.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest
from conftest import DEFAULTS, TEMPLATE, run

SCRIPT = TEMPLATE / "scripts" / "benchmark.py"
_spec = importlib.util.spec_from_file_location("template_benchmark", SCRIPT)
bench = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = bench  # dataclasses look their module up there
_spec.loader.exec_module(bench)

PACKAGE = "medical_imaging_project"
HEADER = "epoch,train_loss,val_loss,{metric},lr,seconds\n"


def write_metrics(path: Path, metric: str, values: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [f"{i + 1},0.5,0.6,{v},0.001,1.0\n" for i, v in enumerate(values)]
    path.write_text(HEADER.format(metric=metric) + "".join(rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("metric", ["val_dice", "val_auroc"])
def test_best_metric_is_the_largest_value_skipping_gaps(tmp_path: Path, metric: str) -> None:
    csv = write_metrics(tmp_path / "metrics.csv", metric, ["0.41", "", "0.87", "nan", "0.85"])
    assert bench.best_metric(csv) == (metric, 0.87)


def test_best_metric_prefers_dice_when_both_columns_exist(tmp_path: Path) -> None:
    csv = tmp_path / "metrics.csv"
    csv.write_text("epoch,val_auroc,val_dice\n1,0.9,0.3\n2,0.95,0.5\n", encoding="utf-8")
    assert bench.best_metric(csv) == ("val_dice", 0.5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("epoch,val_loss,val_accuracy\n1,0.5,0.9\n", "none of the columns val_dice, val_auroc"),
        ("epoch,val_dice\n1,\n2,nan\n", "no value in its val_dice column"),
        ("epoch,val_dice\n1,0.5\n2,high\n", "val_dice = 'high' is not a number"),
        ("", "columns: none"),
    ],
)
def test_best_metric_refuses_files_without_a_metric(
    tmp_path: Path, text: str, message: str
) -> None:
    csv = tmp_path / "metrics.csv"
    csv.write_text(text, encoding="utf-8")
    with pytest.raises(bench.BenchmarkError, match="metrics.csv") as err:
        bench.best_metric(csv)
    assert message in str(err.value)


def test_best_metric_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(bench.BenchmarkError, match="no metrics file: .*nothing.csv"):
        bench.best_metric(tmp_path / "nothing.csv")


def test_latest_metrics_is_the_newest_run(tmp_path: Path) -> None:
    with pytest.raises(bench.BenchmarkError, match="no run folder"):
        bench.latest_metrics(tmp_path)
    old = write_metrics(
        tmp_path / "runs" / "2031-01-02_120000_b" / "metrics.csv", "val_dice", ["1"]
    )
    new = write_metrics(
        tmp_path / "runs" / "2030-01-01_120000_a" / "metrics.csv", "val_dice", ["1"]
    )
    os.utime(old, (1_000_000, 1_000_000))
    os.utime(new, (2_000_000, 2_000_000))
    assert bench.latest_metrics(tmp_path) == new


def test_stdout_metric_takes_the_last_summary_line() -> None:
    text = "epoch 1 val_dice 0.1\nval_dice 0.5\nsummary:\n  val_dice: 0.871\nval_dice_std 0.02\n"
    assert bench.stdout_metric(text) == ("val_dice", 0.871)
    assert bench.stdout_metric("val_auroc = 0.93\n") == ("val_auroc", 0.93)
    assert bench.stdout_metric("val_dice_std 0.02\nval_loss 0.3\ntrained\n") is None


@pytest.mark.parametrize(
    ("output", "counts"),
    [
        ("....\n57 passed, 3 deselected in 12.30s\n", {"passed": 57, "deselected": 3}),
        (
            "F.\n=== 1 failed, 56 passed, 2 errors in 3.1s ===\n",
            {"failed": 1, "passed": 56, "errors": 2},
        ),
        ("1 error in 0.5s\n\n", {"errors": 1}),
        ("", {}),
    ],
)
def test_pytest_counts_read_the_closing_line(output: str, counts: dict[str, int]) -> None:
    assert bench.pytest_counts(output) == counts


def test_demo_command_is_found_in_the_cli_source() -> None:
    assert bench.has_demo_command(
        '    demo = commands.add_parser(\n        "demo",\n        help="x")'
    )
    assert bench.has_demo_command("commands.add_parser('demo')")
    assert not bench.has_demo_command('commands.add_parser("dummy-data")  # then a demo')


def test_readme_commands_run_with_the_venv_python() -> None:
    python = Path("/venv/bin/python")
    assert bench.venv_argv('pip install -e ".[dev]"', PACKAGE, python) == [
        str(python),
        "-m",
        "pip",
        "install",
        "-e",
        ".[dev]",
    ]
    assert bench.venv_argv(f'{PACKAGE} train train.epochs=5 --note "a b"', PACKAGE, python) == [
        str(python),
        "-m",
        PACKAGE,
        "train",
        "train.epochs=5",
        "--note",
        "a b",
    ]
    assert bench.venv_argv(f"python -m {PACKAGE} demo", PACKAGE, python) == [
        str(python),
        "-m",
        PACKAGE,
        "demo",
    ]
    assert bench.venv_argv("mkdir -p logs", PACKAGE, python) == ["mkdir", "-p", "logs"]


def test_parse_answers() -> None:
    assert bench.parse_answers(["task=classification", "project_name=A=B"], DEFAULTS) == {
        "task": "classification",
        "project_name": "A=B",
    }
    with pytest.raises(bench.BenchmarkError, match="'task' is not KEY=VALUE"):
        bench.parse_answers(["task"], DEFAULTS)
    with pytest.raises(bench.BenchmarkError, match="no question 'color'"):
        bench.parse_answers(["color=red"], DEFAULTS)
    with pytest.raises(bench.BenchmarkError, match="no question '_copy_without_render'"):
        bench.parse_answers(["_copy_without_render=x"], DEFAULTS)


def test_table_is_aligned() -> None:
    steps = [bench.Step("render", 0.84, "proj"), bench.Step("install", 123.456, "layered venv")]
    assert bench.table(steps).splitlines() == [
        "step     seconds  result",
        "render       0.8  proj",
        "install    123.5  layered venv",
    ]


def test_bad_arguments_stop_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert bench.main(["--dry-run", "--answers", "color=red"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: answer 'color=red': no question 'color' (one of "
        + ", ".join(k for k in DEFAULTS if not k.startswith("_"))
        + ")"
    ]
    assert bench.main(["--dry-run", "--answers", "spatial_dims=3", "image_format=png"]) == 2
    err = capsys.readouterr().err
    assert "error: the template refused the answers" in err and "Traceback" not in err
    (tmp_path / "used" / "x").mkdir(parents=True)
    with pytest.raises(SystemExit) as stop:
        bench.main(["--keep", str(tmp_path / "used")])
    assert stop.value.code == 2
    assert "--keep DIR must be a new or empty folder" in capsys.readouterr().err


def test_dry_run_renders_and_lists_the_commands(tmp_path: Path) -> None:
    keep, figures = tmp_path / "keep", tmp_path / "out" / "bench.json"
    answers = ["task=classification", "spatial_dims=2", "image_format=png"]
    result = run(
        [
            sys.executable,
            str(SCRIPT),
            "--dry-run",
            "--keep",
            str(keep),
            "--json",
            str(figures),
            "--answers",
            *answers,
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    project = keep / "medical-imaging-project"
    assert (
        json.loads((project / ".cookiecutter.json").read_text("utf-8"))["task"] == "classification"
    )
    assert not (keep / "venv").exists()  # nothing was installed
    plan = [line.strip() for line in result.stdout.splitlines() if line.startswith("  ")]
    bin_python = "Scripts/python.exe" if os.name == "nt" else "bin/python"
    python = str((keep / "venv" / bin_python).resolve())
    assert plan[0].startswith(f"{python} -m pip install -e '.[dev]' --no-deps")
    assert plan[1] == f"{python} -m pytest -q -p no:cacheprovider"
    assert plan[2:] and all(line.startswith(f"{python} -m {PACKAGE} ") for line in plan[2:])
    saved = json.loads(figures.read_text(encoding="utf-8"))
    assert saved["answers"] == dict(a.split("=") for a in answers)
    assert [step["name"] for step in saved["steps"]] == ["render"]
    assert saved["steps"][0]["seconds"] > 0 and saved["metric"] is None
