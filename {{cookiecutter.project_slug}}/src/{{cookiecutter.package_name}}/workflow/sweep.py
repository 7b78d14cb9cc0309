"""``sweep``: hyper-parameter search with Optuna, one training run per trial.

Each trial trains one run (``runs/<date>_<study>-t<number>/``) with the trial's values on top of
the config and the command's overrides; its value is the run's best monitored validation metric
(``config.monitored_metric``: maximized, or minimized for ``val_loss``). A trial that fails (a NaN
loss, an invalid combination of values, CUDA out of memory) is recorded as failed, with its error,
and the search goes on.

The study lives in a database, so running the same command again resumes it:

- ``grid`` runs the grid points that have no completed trial yet (failed or interrupted ones are
  tried again); a finished grid runs nothing. ``--trials N`` runs at most N of them.
- ``random`` and ``tpe`` run N more trials (``--trials``, 10 by default); TPE learns from every
  trial already in the study. The samplers are seeded with ``seed`` plus the number of trials
  already in the study, so a sweep is repeatable and a resumed one does not redraw old values.

The default storage is ``reports/sweeps/<study>.db`` (SQLite, one machine). Any Optuna RDB URL
works too, e.g. ``postgresql://user@host/db``: start the same command on several machines and
they share the study (a grid point may then now and then run twice).

After the trials, ``reports/sweeps/<study>/trials.csv`` lists every trial of the study (number,
state, value, the values tried, run folder, error) and ``trials.png`` plots the value per trial
and the best so far.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from .. import paths
from ..config import load_config, monitored_metric
from ..runs.folder import best_metric, new_run_folder, relative_path, run_folders
from ..train.loop import train
from ..utils.errors import ProjectError
from ..utils.io import atomic_write_csv
from ..utils.table import text_table
from ..viz.sweep_plots import plot_sweep
from .space import Param, as_override, grid_points, load_space

METHODS = ("grid", "random", "tpe")
DEFAULT_TRIALS = 10  # random and tpe: trials per invocation
STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
HEARTBEAT_S = 60  # a trial whose process died is marked failed after 2 heartbeats missed
# Failures of one trial that should not stop the search; anything else is a bug and stops it.
TRIAL_ERRORS = (ProjectError, torch.cuda.OutOfMemoryError)


class SweepError(ProjectError):
    """The sweep cannot start: a bad storage URL, or a study created with other settings."""


@dataclass
class SweepResult:
    """What a sweep left behind."""

    study: str
    storage: str  # the URL, password hidden
    trials: list[FrozenTrial]
    ran: int  # trials run by this invocation
    csv: Path
    plot: Path
    table: str  # the printed table of trials
    monitor: str  # the objective: a metrics.csv column
    maximize: bool  # its direction

    @property
    def best(self) -> FrozenTrial | None:
        """The best completed trial of the study (``None`` if none completed)."""
        done = [t for t in self.trials if t.state == TrialState.COMPLETE]
        sign = 1 if self.maximize else -1
        return max(done, key=lambda t: sign * t.value, default=None)


def default_storage(study: str) -> str:
    """``sqlite:///<project>/reports/sweeps/<study>.db`` (forward slashes, also on Windows)."""
    db = paths.reports_dir() / "sweeps" / f"{study}.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    return "sqlite:///" + db.resolve().as_posix()


def hide_password(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs)."""
    return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", url)


def open_study(url: str, name: str, direction: str) -> optuna.Study:
    """Create the study ``name`` in the storage at ``url``, or load it if it exists.

    Raises:
        SweepError: the storage cannot be opened (bad URL, missing database driver, no server).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = optuna.storages.RDBStorage(url, heartbeat_interval=HEARTBEAT_S)
        return optuna.create_study(
            storage=storage, study_name=name, direction=direction, load_if_exists=True
        )
    except Exception as exc:  # SQLAlchemy, driver and connection errors have no common base
        detail = hide_password(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise SweepError(
            f"cannot open the study storage '{hide_password(url)}': {detail}"
        ) from None


def _check_study(study: optuna.Study, method: str, monitor: str, space: Sequence[Param]) -> None:
    """Record the study's settings on creation; refuse to resume it with other ones."""
    wanted = {"method": method, "monitor": monitor, "space": [p.to_dict() for p in space]}
    stored = study.user_attrs
    if not stored:
        for key, value in wanted.items():
            study.set_user_attr(key, value)
        return
    for key, value in wanted.items():
        if stored.get(key) != value:
            what = (
                "another search space"
                if key == "space"
                else f"{key} {stored.get(key)!r}, not {value!r}"
            )
            raise SweepError(
                f"study '{study.study_name}' was started with {what}; resume it with the same "
                "settings, or start a new study with --study NAME"
            )


class _PointSampler(optuna.samplers.BaseSampler):
    """Gives each parameter its value in :attr:`point`: grid search, one point per trial."""

    def __init__(self) -> None:
        self.point: dict[str, Any] = {}

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict:
        return {}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict) -> dict:
        return {}

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: Any
    ) -> Any:
        return self.point[param_name]


def make_objective(
    space: Sequence[Param],
    overrides: Sequence[str],
    config: Path | None,
    study_name: str,
    monitor: str,
    mode: str,
    plots: bool,
) -> Callable[[optuna.Trial], float]:
    """The function Optuna calls per trial: train one run, return its best monitored value."""

    def objective(trial: optuna.Trial) -> float:
        values = {p.key: p.suggest(trial) for p in space}
        name = f"{study_name}-t{trial.number}"
        before = run_folders()
        try:
            cfg = load_config(
                [*overrides, *(as_override(k, v) for k, v in values.items()), f"run.name={name}"],
                config,
            )
            run_dir = train(cfg, quiet=True, plots=plots)
        except BaseException as exc:
            run_dir = new_run_folder(before, name)
            if run_dir is not None:
                trial.set_user_attr("run_dir", relative_path(run_dir))
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            trial.set_user_attr("error", message)
            raise
        trial.set_user_attr("run_dir", relative_path(run_dir))
        value = best_metric(run_dir, monitor, mode)
        if value is None or not math.isfinite(value):
            message = f"no finite {monitor} in {relative_path(run_dir)}/metrics.csv"
            trial.set_user_attr("error", message)
            raise ProjectError(message)
        return value

    return objective


def _grid_todo(study: optuna.Study, points: Sequence[dict[str, Any]], tried: set[int]) -> list[int]:
    """Indices of the grid points with no completed or running trial, not tried in this session."""
    taken = [
        t.params
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
    ]
    return [i for i, p in enumerate(points) if i not in tried and p not in taken]


def _format_value(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def trial_rows(trials: Sequence[FrozenTrial], keys: Sequence[str]) -> list[dict[str, Any]]:
    """One row per trial: number, state, value, the value of each key, run folder, error."""
    rows = []
    for t in trials:
        row: dict[str, Any] = {
            "number": t.number,
            "state": t.state.name,
            "value": "" if t.value is None else f"{t.value:.6g}",
        }
        row.update({k: _format_value(t.params[k]) if k in t.params else "" for k in keys})
        row["run_dir"] = t.user_attrs.get("run_dir", "")
        row["error"] = t.user_attrs.get("error", "")
        rows.append(row)
    return rows


def sweep(
    *,
    space_file: Path | None = None,
    overrides: Sequence[str] = (),
    config: Path | None = None,
    method: str = "tpe",
    trials: int | None = None,
    storage: str | None = None,
    study_name: str = "sweep",
    plots: bool = True,
    echo: Callable[[str], None] = print,
) -> SweepResult:
    """Run (or resume) a hyper-parameter search and write its summary.

    Args:
        space_file: the search-space YAML (``configs/sweep.yaml`` when ``None``).
        overrides: ``key=value`` overrides for every trial (the trial's values come after).
        config: the YAML file of defaults (``configs/default.yaml`` when ``None``).
        method: ``grid``, ``random`` or ``tpe``.
        trials: random/tpe: trials to add (10 when ``None``); grid: at most this many of the
            remaining points (all when ``None``).
        storage: an Optuna RDB URL; ``sqlite:///<project>/reports/sweeps/<study>.db`` if ``None``.
        study_name: the study, also the prefix of the trials' run names.
        plots: draw each run's training plots.
        echo: where progress lines go.

    Returns:
        The :class:`SweepResult`, with every trial of the study.

    Raises:
        ValueError: an unknown ``method`` or ``trials`` < 1.
        ProjectError: a bad study name, config, search space or storage (before any trial).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if trials is not None and trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    if not STUDY_NAME.match(study_name):
        raise SweepError(
            f"study name '{study_name}' must start with a letter or digit and hold only letters, "
            "digits, '.', '_' and '-'"
        )
    cfg = load_config(overrides, config)
    monitor, mode = monitored_metric(cfg)
    space_file = Path(space_file) if space_file is not None else paths.configs_dir() / "sweep.yaml"
    space = load_space(space_file, overrides, config)
    points = grid_points(space, f"'{space_file}'") if method == "grid" else []
    url = storage or default_storage(study_name)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # one line of ours per trial instead
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat
            study = open_study(url, study_name, "maximize" if mode == "max" else "minimize")
            _check_study(study, method, monitor, space)
            before = len(study.trials)
            objective = make_objective(space, overrides, config, study_name, monitor, mode, plots)
            report = _reporter(monitor, echo)
            try:
                if method == "grid":
                    _run_grid(study, objective, report, points, trials, echo)
                else:
                    seed = cfg.seed + before  # repeatable, and a resumed study draws new values
                    study.sampler = (
                        optuna.samplers.RandomSampler(seed=seed)
                        if method == "random"
                        else optuna.samplers.TPESampler(seed=seed)
                    )
                    n = trials or DEFAULT_TRIALS
                    echo(f"study '{study_name}': {before} trials so far, {n} more ({method})")
                    study.optimize(objective, n_trials=n, catch=TRIAL_ERRORS, callbacks=[report])
            finally:  # also after Ctrl-C: the summary of the trials so far
                result = summarize(study, space, monitor, url, len(study.trials) - before)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return result


def _reporter(
    monitor: str, echo: Callable[[str], None]
) -> Callable[[optuna.Study, FrozenTrial], None]:
    """The callback that prints one line per finished trial."""

    def report(study: optuna.Study, trial: FrozenTrial) -> None:
        values = " ".join(as_override(k, v) for k, v in trial.params.items())
        if trial.state == TrialState.COMPLETE:
            outcome = f"{monitor} {trial.value:.4f}"
        else:
            outcome = f"{trial.state.name.lower()}: {trial.user_attrs.get('error', '')}"
        run = trial.user_attrs.get("run_dir", "no run folder")
        echo(f"trial {trial.number}: {values} -> {outcome} ({run})")

    return report


def _run_grid(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], float],
    report: Callable[[optuna.Study, FrozenTrial], None],
    points: Sequence[dict[str, Any]],
    trials: int | None,
    echo: Callable[[str], None],
) -> None:
    """Run each grid point that has no completed (or running) trial, at most ``trials``."""
    sampler = _PointSampler()
    study.sampler = sampler
    tried: set[int] = set()
    todo = _grid_todo(study, points, tried)
    limit = "" if trials is None or trials >= len(todo) else f", {trials} of them now"
    echo(f"study '{study.study_name}': grid of {len(points)} points, {len(todo)} to run{limit}")
    while todo and (trials is None or len(tried) < trials):
        tried.add(todo[0])
        sampler.point = points[todo[0]]
        study.optimize(objective, n_trials=1, catch=TRIAL_ERRORS, callbacks=[report])
        todo = _grid_todo(study, points, tried)


def summarize(
    study: optuna.Study, space: Sequence[Param], monitor: str, url: str, ran: int
) -> SweepResult:
    """Write ``reports/sweeps/<study>/trials.csv`` and ``trials.png``; return the result."""
    trials = study.get_trials(deepcopy=False)
    keys = list(dict.fromkeys([p.key for p in space] + [k for t in trials for k in t.params]))
    rows = trial_rows(trials, keys)
    out = paths.reports_dir() / "sweeps" / study.study_name
    csv_path = atomic_write_csv(
        out / "trials.csv", rows, ["number", "state", "value", *keys, "run_dir", "error"]
    )
    plot = plot_sweep(
        [(t.number, t.value if t.state == TrialState.COMPLETE else None) for t in trials],
        out / "trials.png",
        metric=monitor,
        maximize=study.direction == optuna.study.StudyDirection.MAXIMIZE,
        title=f"Sweep '{study.study_name}'",
    )
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    shown = [{**r, monitor: r["value"]} for r in rows]
    table = text_table(shown, ["number", "state", monitor, *keys, "run_dir"])
    return SweepResult(
        study.study_name,
        hide_password(url),
        list(trials),
        ran,
        csv_path,
        plot,
        table,
        monitor,
        maximize,
    )
