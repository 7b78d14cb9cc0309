"""The workflow commands: the ``runs`` table, ``sweep`` (Optuna) and ``ablate``."""

from __future__ import annotations

import csv
import json
import math
from datetime import date
from pathlib import Path

import optuna
import pytest
from tiny_data import SMALL, TASK

from {{ cookiecutter.package_name }} import paths
from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.config import load_config, save_config
from {{ cookiecutter.package_name }}.evaluate.compare import DEFAULT_METRIC, holm, paired_runs
from {{ cookiecutter.package_name }}.runs.folder import (
    best_metric,
    checkpoint_path,
    config_path,
    metrics_path,
    new_run_dir,
)
from {{ cookiecutter.package_name }}.runs.table import filter_runs, list_runs, summarize_run
from {{ cookiecutter.package_name }}.train.loop import TrainingError
from {{ cookiecutter.package_name }}.utils.errors import ConfigError, ProjectError
from {{ cookiecutter.package_name }}.viz.sweep_plots import best_so_far
from {{ cookiecutter.package_name }}.workflow import sweep as sweep_module
from {{ cookiecutter.package_name }}.workflow.ablate import PAIRED, plan, run_name
from {{ cookiecutter.package_name }}.workflow.space import grid_points, load_space
from {{ cookiecutter.package_name }}.workflow.sweep import sweep

MONITOR = "val_dice" if TASK == "segmentation" else "val_auroc"
TEST_METRIC = "dice" if TASK == "segmentation" else "auroc"
FAST = [*SMALL, "train.epochs=1"]


def test_run_folder_paths_follow_the_spec() -> None:
    run = Path("runs") / "2024-05-01_120000_x"
    assert config_path(run) == run / "config.yaml"
    assert metrics_path(run) == run / "metrics.csv"
    assert checkpoint_path(run, "best") == run / "checkpoints" / "best.pt"
    assert checkpoint_path(run, "last") == run / "checkpoints" / "last.pt"
    with pytest.raises(ValueError, match="best, last"):
        checkpoint_path(run, "epoch3")


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def fake_run(
    runs: Path,
    folder: str,
    *overrides: str,
    values: list[float] | None = None,
    note: str | None = None,
    config: bool = True,
) -> Path:
    """A run folder made by hand: config.yaml, metrics.csv with ``values`` of the monitor."""
    run = runs / folder
    run.mkdir(parents=True)
    if config:
        save_config(load_config([*SMALL, *overrides]), run / "config.yaml")
    if values is not None:
        lines = [f"epoch,train_loss,val_loss,{MONITOR},lr,seconds"]
        lines += [f"{i},1.0,{1 - v:.4f},{v},0.001,1.0" for i, v in enumerate(values, 1)]
        (run / "metrics.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if note is not None:
        (run / "notes.md").write_text(f"# {folder}\n\n{note}\n", encoding="utf-8")
    return run


def table_lines(out: str) -> tuple[str, list[str]]:
    """The header and the data lines of a printed table (before the closing count line)."""
    lines = out.splitlines()
    return lines[0], [line for line in lines[2:] if " runs in " not in line]


# --- runs -----------------------------------------------------------------------------------


@pytest.fixture
def many_runs(trained: Path) -> Path:
    """Four hand-made runs next to the real ``trained`` one."""
    runs = trained.parent
    fake_run(
        runs,
        "2024-01-05_101500_alpha",
        "train.lr=0.01",
        "train.epochs=3",
        values=[0.5, 0.7, 0.65],
        note="first idea, with a note long enough that the table has to shorten it",
    )
    beta = fake_run(
        runs,
        "2024-02-10_090000_beta",
        "train.epochs=5",
        "train.patience=0",
        "data.root=data/other",  # another dataset, another normalization: the table says so
        "data.normalization=mr",
        values=[0.4, 0.6],
    )
    (beta / "evaluation" / "test").mkdir(parents=True)
    summary = {TEST_METRIC: {"value": 0.81, "low": 0.7, "high": 0.9}, "other": {"value": 1.0}}
    (beta / "evaluation" / "test" / "metrics.json").write_text(
        json.dumps({"summary": summary}), encoding="utf-8"
    )
    fake_run(runs, "2024-03-01_120000_gamma", config=False)  # crashed before its config
    fake_run(runs, "2024-03-02_120000_delta", "train.epochs=4")  # no epoch finished
    fake_run(  # flat for train.patience=2 epochs: stopped early, not crashed
        runs,
        "2024-03-03_120000_early",
        "train.epochs=9",
        "train.patience=2",
        values=[0.3, 0.2, 0.25],
    )
    return runs


def test_runs_reads_every_kind_of_folder(many_runs: Path, trained: Path) -> None:
    runs = {r.name: r for r in list_runs(many_runs)}
    assert list(runs) == ["alpha", "beta", "gamma", "delta", "early", "trained"]  # by date
    alpha, beta = runs["alpha"], runs["beta"]
    assert (alpha.status, alpha.epochs_done, alpha.best, alpha.monitor) == ("done", 3, 0.7, MONITOR)
    assert alpha.settings == {
        "data": "data/tiny",
        "norm": load_config().data.normalization,
        "model": alpha.settings["model"],
        "lr": 0.01,
        "bs": 2,
        "epochs": 3,
        "fold": 0,
    }
    assert alpha.note.startswith("first idea") and alpha.note.endswith("...")
    assert len(alpha.note) == 40
    assert (beta.status, beta.best, beta.test["value"], beta.test["metric"]) == (
        "incomplete",
        0.6,
        0.81,
        TEST_METRIC,
    )
    assert runs["gamma"].status == "no config" and runs["gamma"].best is None
    assert runs["delta"].status == "no epochs" and runs["delta"].epochs_done == 0
    assert runs["early"].status == "early stop"
    real = runs["trained"]
    assert real.status == "done" and real.epochs_done == 3 and real.test is None
    assert real.best == best_metric(trained, MONITOR, "max")
    assert real.best is not None and not math.isnan(real.best)


def test_runs_table_columns_order_and_filters(
    many_runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    header, rows = table_lines(out)
    for column in ("date", "name", "status", "note", "model", "lr", "bs", "epochs", "fold"):
        assert column in header.split()
    assert header.split()[-3:] == ["monitor", "best", "test"]
    assert [row.split()[2] for row in rows] == [
        "alpha",
        "beta",
        "gamma",
        "delta",
        "early",
        "trained",
    ]
    status_at = header.index("status")  # aligned: every status starts under its header
    assert [row[status_at:].split("  ")[0] for row in rows] == [
        "done",
        "incomplete",
        "no config",
        "no epochs",
        "early stop",
        "done",
    ]
    beta = next(row for row in rows if " beta " in row)
    assert f"{TEST_METRIC} 0.8100 [0.700, 0.900]" in beta and "0.6000" in beta
    data_at, norm_at = header.index("data"), header.index("norm")
    alpha = next(row for row in rows if " alpha " in row)
    assert alpha[data_at:].split()[:2] == ["data/tiny", load_config().data.normalization]
    assert beta[data_at:].split()[0] == "data/other" and beta[norm_at:].split()[0] == "mr"
    assert "6 of 6 runs" in out

    assert main(["runs", "--sort", "best"]) == 0
    _, rows = table_lines(capsys.readouterr().out)
    names = [row.split()[2] for row in rows]
    assert names.index("alpha") < names.index("beta") < names.index("early")
    assert names[-2:] == ["gamma", "delta"]  # no value: last, by date

    assert (
        main(["runs", "--sort", "val_loss"]) == 0
    )  # any metrics.csv column, losses smallest first
    header, rows = table_lines(capsys.readouterr().out)
    assert header.split()[-1] == "val_loss"
    fake = [row.split()[2] for row in rows if row.split()[2] in ("alpha", "beta", "early")]
    assert fake == ["alpha", "beta", "early"]  # smallest val_loss (1 - best) first

    assert main(["runs", "--name", "ALP"]) == 0
    _, rows = table_lines(capsys.readouterr().out)
    assert [row.split()[2] for row in rows] == ["alpha"]
    assert main(["runs", "--since", "2024-02-01", "--until", "2024-03-01"]) == 0
    _, rows = table_lines(capsys.readouterr().out)
    assert [row.split()[2] for row in rows] == ["beta", "gamma"]


def test_runs_bad_arguments(many_runs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "--sort", "val_dcie"]) == 2
    err = capsys.readouterr().err
    assert "cannot sort by 'val_dcie'" in err and "val_loss" in err
    assert main(["runs", "--runs-dir", "elsewhere"]) == 2
    assert "elsewhere" in capsys.readouterr().err
    assert main(["runs", "--since", "2024-05-01", "--until", "2024-01-01"]) == 2
    with pytest.raises(SystemExit):
        main(["runs", "--since", "yesterday"])


def test_runs_without_any_run(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs"]) == 0
    assert "no runs" in capsys.readouterr().out


def test_filter_runs_by_date(many_runs: Path) -> None:
    runs = list_runs(many_runs)
    kept = filter_runs(runs, since=date(2024, 3, 2), until=date(2024, 3, 3))
    assert [r.name for r in kept] == ["delta", "early"]
    assert summarize_run(many_runs / "2024-03-01_120000_gamma").settings == {}


# --- the search space -----------------------------------------------------------------------


def write_space(root: Path, text: str) -> Path:
    path = root / "space.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_search_space_parsing(project: Path) -> None:
    space = load_space(paths.configs_dir() / "sweep.yaml")  # the shipped default
    assert [p.key for p in space] == ["train.lr", "model.dropout", "train.weight_decay"]
    space = load_space(
        write_space(
            project,
            "train.weight_decay: {type: categorical, choices: [0.0, 1e-4]}\n"
            "model.width: {type: int, low: 4, high: 8, step: 2}\n"
            "model.dropout: {type: float, low: 0.0, high: 0.2, step: 0.1}\n"
            "train.optimizer: [adam, sgd]\n",
        )
    )
    assert space[0].choices == (0.0, 1e-4)  # YAML reads 1e-4 as text: converted for a float key
    points = grid_points(space, "space.yaml")
    assert len(points) == 2 * 3 * 3 * 2
    assert points[0] == {
        "train.weight_decay": 0.0,
        "model.width": 4,
        "model.dropout": 0.0,
        "train.optimizer": "adam",
    }
    assert {p["model.dropout"] for p in points} == {0.0, 0.1, 0.2}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train.lrr: {type: float, low: 0.1, high: 1}\n", "unknown config key 'train.lrr'"),
        ("model.dropout: {type: float, low: 0.0, high: 1.5}\n", "model.dropout"),
        ("train.batch_size: {type: float, low: 1, high: 4}\n", "use int or categorical"),
        ("train.lr: {type: float, low: 0.1, hihg: 1}\n", "unknown field 'hihg'"),
        ("train.lr: {type: float, low: 0.0, high: 1, log: true}\n", "log range needs low > 0"),
        ("run.name: [a, b]\n", "cannot be searched"),
        ("train.lr: [0.1, 0.1]\n", "repeat"),
        ("train.lr: {type: float, low: [0.1, high: 1}\n", "not valid YAML"),
        ("- train.lr\n", "must map config keys"),
    ],
)
def test_bad_search_space_is_named(project: Path, text: str, message: str) -> None:
    path = write_space(project, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_space(path)
    assert "space.yaml" in str(info.value)


def test_grid_needs_finite_values(project: Path) -> None:
    space = load_space(write_space(project, "train.lr: {type: float, low: 0.001, high: 0.1}\n"))
    with pytest.raises(ConfigError, match="grid search needs a finite set of values.*train.lr"):
        grid_points(space, "'space.yaml'")


# --- sweep ----------------------------------------------------------------------------------


@pytest.mark.slow  # trains real runs
def test_grid_sweep_trains_each_point_and_resumes_nothing(
    tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    space = write_space(tiny, "model.dropout: {type: categorical, choices: [0.0, 0.2]}\n")
    command = ["sweep", "--method", "grid", "--space", str(space), "--study", "g", *FAST]
    assert main(command) == 0
    out = capsys.readouterr().out
    assert "grid of 2 points, 2 to run" in out and "best: trial" in out

    runs = sorted((tiny / "runs").iterdir())
    assert [r.name.split("_")[-1] for r in runs] == ["g-t0", "g-t1"]
    rows = read_csv(tiny / "reports" / "sweeps" / "g" / "trials.csv")
    assert [(r["number"], r["state"]) for r in rows] == [("0", "COMPLETE"), ("1", "COMPLETE")]
    assert sorted(float(r["model.dropout"]) for r in rows) == [0.0, 0.2]
    for row in rows:
        run = tiny / row["run_dir"]
        assert run in runs
        assert load_config(path=run / "config.yaml").model.dropout == float(row["model.dropout"])
        assert float(row["value"]) == pytest.approx(best_metric(run, MONITOR, "max"), abs=1e-5)
    assert (tiny / "reports" / "sweeps" / "g" / "trials.png").stat().st_size > 0
    assert (tiny / "reports" / "sweeps" / "g.db").is_file()

    assert main(command) == 0  # resume: the grid is finished, nothing runs
    assert "2 points, 0 to run" in capsys.readouterr().out
    assert len(list((tiny / "runs").iterdir())) == 2
    assert len(read_csv(tiny / "reports" / "sweeps" / "g" / "trials.csv")) == 2


def fast_train(fail_above: float = 1.0):
    """A stand-in for ``train``: a run folder whose metric is a function of the trial's values
    (``lr * 10 + dropout``), and a NaN-loss TrainingError when dropout > ``fail_above``."""

    def train(cfg, quiet: bool = False, plots: bool = True) -> Path:
        run = new_run_dir(paths.runs_dir(), cfg.run.name)
        save_config(cfg, run / "config.yaml")
        if cfg.model.dropout > fail_above:
            raise TrainingError("the loss is nan at epoch 1, step 2: training stopped")
        value = cfg.train.lr * 10 + cfg.model.dropout
        text = f"epoch,val_loss,{MONITOR}\n1,1.0,{value / 2}\n2,0.9,{value}\n3,0.8,{value / 3}\n"
        (run / "metrics.csv").write_text(text, encoding="utf-8")
        return run

    return train


def test_best_so_far_skips_failed_trials() -> None:
    assert best_so_far([None, 0.3, 0.2, None, 0.5], maximize=True) == [None, 0.3, 0.3, 0.3, 0.5]
    assert best_so_far([0.9, None, 0.4, 0.6], maximize=False) == [0.9, 0.9, 0.4, 0.4]


@pytest.mark.slow
def test_random_sweep_resumes_with_more_trials(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweep_module, "train", fast_train())
    first = sweep(method="random", trials=2, study_name="r", echo=lambda _: None)
    second = sweep(method="random", trials=2, study_name="r", echo=lambda _: None)
    assert (first.ran, second.ran) == (2, 2)
    url = "sqlite:///" + (project / "reports" / "sweeps" / "r.db").resolve().as_posix()
    study = optuna.load_study(study_name="r", storage=url)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 4
    lrs = [t.params["train.lr"] for t in study.trials]
    assert len(set(lrs)) == 4 and all(1e-4 <= lr <= 1e-2 for lr in lrs)  # resumed: new draws
    for t in study.trials:
        run = project / t.user_attrs["run_dir"]
        assert run.name.endswith(f"_r-t{t.number}")
        assert t.value == pytest.approx(t.params["train.lr"] * 10 + t.params["model.dropout"])
    assert second.best.value == max(t.value for t in study.trials)
    assert len(read_csv(second.csv)) == 4

    other = write_space(project, "train.lr: {type: float, low: 1.0e-3, high: 1.0e-2}\n")
    with pytest.raises(ProjectError, match="study 'r' was started with another search space"):
        sweep(method="random", trials=1, study_name="r", space_file=other)
    with pytest.raises(ProjectError, match="method 'random'"):
        sweep(method="tpe", trials=1, study_name="r")


@pytest.mark.slow
def test_failed_trial_is_recorded_and_retried_on_resume(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sweep_module, "train", fast_train(fail_above=0.25))
    space = write_space(project, "model.dropout: [0.0, 0.3]\n")
    command = ["sweep", "--method", "grid", "--space", str(space), "--study", "f"]
    assert main(command) == 0  # one trial completed
    rows = read_csv(project / "reports" / "sweeps" / "f" / "trials.csv")
    by_state = {r["state"]: r for r in rows}
    assert set(by_state) == {"COMPLETE", "FAIL"}
    failed = by_state["FAIL"]
    assert failed["model.dropout"] == "0.3" and "loss is nan" in failed["error"]
    assert (project / failed["run_dir"] / "config.yaml").is_file()  # its folder is recorded
    assert "-> fail: the loss is nan" in capsys.readouterr().out

    assert main(command) == 0  # resume: the failed point is tried again, the done one is not
    assert "1 to run" in capsys.readouterr().out
    rows = read_csv(project / "reports" / "sweeps" / "f" / "trials.csv")
    assert [r["state"] for r in rows] == ["COMPLETE", "FAIL", "FAIL"] or [
        r["state"] for r in rows
    ] == ["FAIL", "COMPLETE", "FAIL"]

    space = write_space(project, "model.dropout: [0.3]\n")
    assert main([*command[:-1], "all-fail"]) == 1  # no trial completed
    capsys.readouterr()


def test_sweep_errors_before_any_trial(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = write_space(tiny, "train.lrr: {type: float, low: 1.0e-4, high: 1.0e-2}\n")
    assert main(["sweep", "--space", str(space), *FAST]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "unknown config key 'train.lrr'" in err and "did you mean 'train.lr'" in err
    assert "space.yaml" in err

    space.write_text("train.lr: {type: float, low: [1\n", encoding="utf-8")
    assert main(["sweep", "--space", str(space), *FAST]) == 2
    err = capsys.readouterr().err
    assert "space.yaml" in err and "not valid YAML" in err

    assert main(["sweep", "--method", "grid", *FAST]) == 2  # default space: continuous lr
    assert "grid search needs a finite set of values" in capsys.readouterr().err
    assert main(["sweep", "--space", "missing.yaml", *FAST]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    assert main(["sweep", "--study", "a/b", *FAST]) == 2
    assert "study name 'a/b'" in capsys.readouterr().err
    assert main(["sweep", "--storage", "nosuchdb://x", *FAST]) == 2
    assert "cannot open the study storage 'nosuchdb://x'" in capsys.readouterr().err
    assert not (tiny / "runs").exists()


# --- ablate ---------------------------------------------------------------------------------


@pytest.mark.slow  # trains real runs
def test_ablate_trains_baseline_and_each_change(
    tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tries = ["--try", "model.dropout=0.2", "--try", "train.lr=0.01"]
    assert main(["ablate", *FAST, *tries]) == 0
    out = capsys.readouterr().out

    runs = {r.name.split("_", 2)[2]: r for r in (tiny / "runs").iterdir()}
    assert set(runs) == {"ablate-baseline", "ablate-model.dropout-0.2", "ablate-train.lr-0.01"}
    assert load_config(path=runs["ablate-model.dropout-0.2"] / "config.yaml").model.dropout == 0.2
    assert load_config(path=runs["ablate-train.lr-0.01"] / "config.yaml").model.dropout == 0.0

    (report,) = (tiny / "reports" / "ablate").iterdir()
    rows = read_csv(report / "ablation.csv")
    assert [r["change"] for r in rows] == ["baseline", "model.dropout=0.2", "train.lr=0.01"]
    values = [best_metric(tiny / r["run_dir"], MONITOR, "max") for r in rows]
    for row, value in zip(rows, values, strict=True):
        assert float(row[MONITOR]) == pytest.approx(value, abs=1e-4)
        assert row["status"] == "done" and row["epochs"] == "1"
    assert rows[0]["delta"] == ""
    for row, value in zip(rows[1:], values[1:], strict=True):
        assert float(row["delta"]) == pytest.approx(value - values[0], abs=2e-4)
        assert row["vs baseline"] in ("better", "worse", "same")
    markdown = (report / "ablation.md").read_text(encoding="utf-8")
    assert f"| change | {MONITOR} | delta |" in markdown and "model.dropout=0.2" in markdown
    assert any(line.startswith("change") and "delta" in line for line in out.splitlines())
    # Each change against the baseline, case by case on the validation set, Holm-adjusted.
    metric = DEFAULT_METRIC[TASK]
    paired = [paired_runs(tiny / rows[0]["run_dir"], tiny / r["run_dir"])[0] for r in rows[1:]]
    adjusted = holm([r["p_value"] for r in paired])
    assert rows[0][PAIRED] == rows[0]["p"] == ""
    for row, result, p in zip(rows[1:], paired, adjusted, strict=True):
        assert row[PAIRED] == (
            f"{result['difference']:+.4f} [{result['low']:+.4f}, {result['high']:+.4f}]"
        )
        assert (row["p"], row["p (Holm)"]) == (f"{result['p_value']:.3g}", f"{p:.3g}")
    sentence = "no change is distinguishable" if min(adjusted) >= 0.05 else "Distinguishable from"
    assert sentence in markdown and f"per-patient {metric}" in markdown and sentence in out


def test_ablate_typo_fails_before_any_run(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tries = ["--try", "model.dropout=0.2", "--try", "model.dropuot=0.2"]
    assert main(["ablate", *FAST, *tries]) == 2
    err = capsys.readouterr().err
    assert "model.dropuot" in err and "did you mean 'model.dropout'" in err
    assert not (tiny / "runs").exists() and not (tiny / "reports").exists()

    for bad, message in [
        ("model.dropout=2", "model.dropout"),
        ("model.dropout=0.0", "does not change the baseline"),
        ("run.name=x", "cannot be ablated"),
        ("model.dropout", "key=value"),
    ]:
        assert main(["ablate", *FAST, "--try", bad]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(ConfigError, match="given twice"):
        plan(FAST, ["train.lr=0.01", "train.lr=0.01"])
    assert not (tiny / "runs").exists()


def test_ablate_run_names_are_folder_safe() -> None:
    assert run_name("train.lr", "3e-4") == "ablate-train.lr-3e-4"
    assert run_name("data.window", "[-100, 200]") == "ablate-data.window-_-100_200"
    assert "/" not in run_name("model.pretrained", "weights/a b.pt")


def test_experiments_log_names_the_dataset_and_normalization(project: Path) -> None:
    from {{ cookiecutter.package_name }}.runs.folder import EXPERIMENTS_HEADER, append_experiment

    log = project / "EXPERIMENTS.md"
    old_header = "# Experiments\n\n| date | run | note | task | model | settings | status | best validation |\n|---|---|---|---|---|---|---|---|\n"
    log.write_text(old_header + "| 2024-01-01 10:00 | `old` | | | | | | |\n", encoding="utf-8")
    runs = project / "runs"
    a = fake_run(runs, "2024-05-01_100000_a", "data.root=data/lungs", "data.normalization=ct")
    b = fake_run(runs, "2024-05-01_110000_b", "data.root=data/brains", "data.normalization=mr")
    for run in (a, b):
        append_experiment(log, run, {"task": "segmentation", "model": "unet", "status": "done"})
    lines = log.read_text(encoding="utf-8").splitlines()
    assert lines[:4] == old_header.splitlines()[:4]  # the earlier table is kept as it was
    new_header = EXPERIMENTS_HEADER.splitlines()[-2]
    assert lines.count(new_header) == 1 and "| dataset | normalization |" in new_header
    assert lines[-2].split(" | ")[2:7] == ["", "segmentation", "data/lungs", "ct", "unet"]
    assert lines[-1].split(" | ")[2:7] == ["", "segmentation", "data/brains", "mr", "unet"]
