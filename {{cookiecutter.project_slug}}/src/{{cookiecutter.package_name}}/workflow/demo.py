"""``demo``: the whole recipe on the synthetic dataset, in one go, small enough for a laptop CPU.

It runs what a student would run by hand, in order, with the same functions as the commands:

1. ``dummy-data``: the synthetic dataset (with duplicates, several studies per patient and a
   second annotator) into ``data.root``;
2. ``inspect``: the dataset report;
3. ``split``: duplicates out, then a test set and five folds grouped by patient;
4. ``train``: one fold with the preset ``configs/experiments/demo.yaml`` (a smaller, faster
   network and more steps at a higher learning rate than ``configs/default.yaml``; see them with
   ``demo --help``), recorded as ``experiment: demo`` in the run's ``config.yaml``;
5. ``evaluate``: the validation and test sets, with bootstrap intervals, and the model card;
6. ``explain``: Grad-CAM on two validation cases, then the model card again with its finding.

Then it prints how long each step took, the metrics, and where the figures are. ``key=value``
overrides go on top of the demo settings, e.g. ``demo train.epochs=5`` for a quicker look.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import paths
from ..config import data_root, load_config, monitored_metric, preset_overrides
from ..runs.folder import best_epoch

# The demo's settings are the preset configs/experiments/demo.yaml (why each, in the file).
DEMO_PRESET = "demo"
# More synthetic cases than the default 40 for classification, so that validation and test hold
# 40+ cases each and an AUROC moves in small steps (best.pt is not picked on noise).
# Synthetic cases per (task, spatial_dims); None: dummy-data's default.
DEMO_CASES = {
    ("segmentation", 3): None,
    ("segmentation", 2): None,
    ("classification", 3): 400,
    ("classification", 2): 600,
}
EXPLAIN_CASES = 2


@dataclass
class DemoResult:
    """What the demo made: the run folder, the figures, the timings and the headline metrics."""

    run_dir: Path
    report: Path
    seconds: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, tuple[str, dict[str, float]]] = field(default_factory=dict)
    best: tuple[str, float, int] | None = None  # (metrics.csv column, value, epoch)
    figures: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        """A few lines for the terminal: steps and times, metrics, where to look."""
        lines = ["", "demo finished:"]
        lines += [f"  {step:<11} {seconds:6.1f} s" for step, seconds in self.seconds.items()]
        lines.append(f"  {'total':<11} {sum(self.seconds.values()):6.1f} s")
        if self.best is not None:
            column, value, epoch = self.best
            lines.append(
                f"  {column} {value:.4f} (best validation epoch {epoch}: checkpoints/best.pt)"
            )
        for split, (name, entry) in self.metrics.items():
            lines.append(
                f"  {split:<5} {name} {entry['value']:.3f} "
                f"(95% interval {entry['low']:.3f} to {entry['high']:.3f}, over patients)"
            )
        lines.append("look at:")
        lines += [f"  {path}" for path in self.figures if path.exists()]
        return "\n".join(lines)


def demo_settings() -> list[str]:
    """The demo's settings, ``configs/experiments/demo.yaml``, as ``key=value`` overrides.

    The preset is made for this project's task and dimensions when the template renders it.

    Returns:
        The overrides in file order, e.g. ``["train.lr=0.003", "train.schedule=cosine", ...]``.

    Raises:
        ConfigError: the project has no such preset.
    """
    return preset_overrides(DEMO_PRESET)


def demo(
    overrides: Sequence[str] = (),
    config: str | Path | None = None,
    *,
    quiet: bool = False,
    echo: Callable[[str], None] = print,
) -> DemoResult:
    """Run the whole pipeline on the synthetic dataset (module docstring).

    Args:
        overrides: ``key=value`` settings applied after the preset ``demo``.
        config: a YAML file of defaults instead of ``configs/default.yaml``.
        quiet: no progress bars.
        echo: where the step headers go.

    Raises:
        ProjectError: ``data.root`` holds data that ``dummy-data`` did not make, or any step's
            own errors.
    """
    from ..data.inspect import inspect_dataset
    from ..data.split import make_splits
    from ..data.synthetic.dummy import generate_dataset
    from ..evaluate.evaluation import evaluate_run
    from ..evaluate.model_card import write_model_card
    from ..explain.runner import explain
    from ..train.loop import train

    # The preset, then the user's overrides; their keys are checked before anything runs.
    cfg = load_config([f"experiment={DEMO_PRESET}", *overrides], config)
    root = data_root(cfg)
    seconds: dict[str, float] = {}

    def step(name: str, text: str, work: Callable[[], Any]) -> Any:
        echo(f"[{len(seconds) + 1}/6] {name}: {text}")
        started = time.perf_counter()
        result = work()
        seconds[name] = time.perf_counter() - started
        return result

    step(
        "dummy-data",
        f"synthetic {cfg.spatial_dims}D {cfg.task} data in {root}",
        lambda: generate_dataset(
            root,
            task=cfg.task,
            spatial_dims=cfg.spatial_dims,
            fmt=cfg.data.format,
            cases=DEMO_CASES[(cfg.task, cfg.spatial_dims)],
            seed=cfg.seed,
        ),
    )
    report = step(
        "inspect",
        "dataset report",
        lambda: inspect_dataset(root, task=cfg.task, out_dir=paths.reports_dir() / "inspect"),
    )
    step(
        "split",
        "duplicates out, test set and 5 folds by patient",
        lambda: make_splits(root, task=cfg.task, folds=5, test_fraction=0.2, seed=cfg.seed),
    )
    run_dir = step(
        "train",
        f"fold {cfg.data.fold}, {cfg.train.epochs} epochs ({' '.join(demo_settings())})",
        lambda: train(cfg, note="demo", quiet=quiet),
    )
    evaluations = step(
        "evaluate",
        "validation and test sets",
        lambda: [evaluate_run(run_dir, split, quiet=quiet) for split in ("val", "test")],
    )
    step(
        "explain",
        f"Grad-CAM on {EXPLAIN_CASES} validation cases",
        lambda: (explain(run_dir, "gradcam", cases=EXPLAIN_CASES), write_model_card(run_dir)),
    )
    metric = "dice" if cfg.task == "segmentation" else "auroc"
    metrics = {}
    for folder in evaluations:
        data = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        metrics[folder.name] = (metric, data["summary"][metric])
    figures = [
        report,
        run_dir / "plots",
        *evaluations,
        run_dir / "explain" / "gradcam",
        run_dir / "MODEL_CARD.md",
    ]
    column, mode = monitored_metric(cfg)
    found = best_epoch(run_dir, column, mode)
    best = (column, *found) if found is not None else None
    return DemoResult(run_dir, report, seconds, metrics, figures=figures, best=best)
