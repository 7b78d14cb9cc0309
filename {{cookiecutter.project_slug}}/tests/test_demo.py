"""demo: every step runs in order and the summary says where the results are."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_data import TASK

from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.config import Config, load_config
from {{ cookiecutter.package_name }}.workflow.demo import DEMO_SETTINGS, demo_settings

FAST = ["train.epochs=1", "model.width=4"]


def test_demo_settings_are_valid_for_every_task_and_dimension(project: Path) -> None:
    for task, by_dims in DEMO_SETTINGS.items():
        for dims, settings in by_dims.items():
            base = [f"task={task}", f"spatial_dims={dims}", "data.format=nifti"]
            if task == "classification":
                base += [
                    "model.name=cnn",
                    "train.loss=ce",
                    "data.patch_size=[64, 64]" if dims == 2 else "data.patch_size=[32, 32, 32]",
                ]
            elif dims == 2:
                base += ["model.name=unet", "train.loss=dice_ce", "data.patch_size=[96, 96]"]
            else:
                base += ["model.name=unet", "train.loss=dice_ce"]
            cfg = load_config([*base, *settings])  # a typo in a key would raise here
            assert cfg.train.epochs > 1
    assert demo_settings(Config(task=TASK)) == DEMO_SETTINGS[TASK][Config().spatial_dims]


def test_demo_refuses_a_bad_override_before_writing_anything(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "train.epoch=3"]) == 2
    assert "train.epoch" in capsys.readouterr().err
    assert not (project / "data").exists() and not (project / "runs").exists()


@pytest.mark.slow
def test_demo_runs_every_step(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", *FAST]) == 0
    out = capsys.readouterr().out
    for step in (
        "[1/6] dummy-data",
        "[3/6] split",
        "[4/6] train",
        "[6/6] explain",
        "demo finished",
    ):
        assert step in out
    (run,) = sorted((project / "runs").iterdir())
    assert load_config(path=run / "config.yaml").train.epochs == 1  # the override won
    metric = "dice" if TASK == "segmentation" else "auroc"
    for split in ("val", "test"):
        report = json.loads((run / "evaluation" / split / "metrics.json").read_text())
        assert f"{split:<5} {metric} {report['summary'][metric]['value']:.3f}" in out
    assert (project / "data" / "dummy" / "splits.json").exists()
    assert list((project / "reports" / "inspect").glob("*/report.md"))
    assert any((run / "explain" / "gradcam").glob("*.png"))
    card = (run / "MODEL_CARD.md").read_text()
    assert "Grad-CAM" in card.split("## Interpretability")[1]
    assert str(run / "MODEL_CARD.md") in out


# Looser than the targets of benchmarks/demo_quality.py (which prints the real figures): this
# fails when the demo stops learning, not when a library update moves a metric by a little.
LEARNS = {"segmentation": ("dice", 0.80, None), "classification": ("auroc", 0.75, 0.55)}


@pytest.mark.slow
def test_demo_learns_the_synthetic_task(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    metric, lowest, lowest_low = LEARNS[TASK]
    assert main(["demo"]) == 0
    (run,) = sorted((project / "runs").iterdir())
    test = json.loads((run / "evaluation" / "test" / "metrics.json").read_text())
    value = test["summary"][metric]
    assert value["value"] >= lowest, (metric, value)
    if lowest_low is not None:
        assert value["low"] > lowest_low, (metric, value)
    if TASK == "classification":
        # Enough cases that an AUROC moves in small steps (the issue: 7 cases moved it by 0.1).
        val = json.loads((run / "evaluation" / "val" / "metrics.json").read_text())
        assert test["n_cases"] >= 40 and val["n_cases"] >= 35, (test["n_cases"], val["n_cases"])
        assert test["positive_class"] == "nodule"
