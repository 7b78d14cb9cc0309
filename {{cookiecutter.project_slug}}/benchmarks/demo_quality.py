"""Does the demo learn? Time and test metric of ``demo`` against the targets for this project.

Usage (from the project root)::

    python benchmarks/demo_quality.py [--json PATH] [key=value ...]

It runs the project's ``demo`` exactly as ``{{ cookiecutter.package_name }} demo`` does (it writes
``data/dummy``, a report, a split and a run folder, like the command), then prints the wall time,
the best validation metric and the test metric with its 95% bootstrap interval over patients, next
to the targets of :data:`TARGETS` for this task and dimensionality, and whether each was met.
``--json`` also writes the figures to a file. ``key=value`` overrides go to the demo, so a
change (``train.lr=3e-3``) can be measured the same way.

The targets (measured on 2 CPU cores; see the README's performance section):

=====================  ==========  ===========================================================
render                 demo time   test metric
=====================  ==========  ===========================================================
3D segmentation        <= 60 s     Dice >= 0.90
2D segmentation        <= 60 s     Dice >= 0.90
2D classification      <= 180 s    AUROC >= 0.90, the interval's lower end > 0.75
3D classification      <= 180 s    AUROC >= 0.85, the interval's lower end > 0.70
=====================  ==========  ===========================================================

Timing depends on the machine and its load; the metrics depend only on the seed (the same
figures on any machine with the same library versions, up to floating-point differences between
CPU kernels).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from {{ cookiecutter.package_name }}.config import Config
from {{ cookiecutter.package_name }}.workflow.demo import demo

# (task, spatial_dims) -> (seconds, metric, lowest value, lowest lower end of the interval)
TARGETS: dict[tuple[str, int], tuple[float, str, float, float | None]] = {
    ("segmentation", 3): (60.0, "dice", 0.90, None),
    ("segmentation", 2): (60.0, "dice", 0.90, None),
    ("classification", 2): (180.0, "auroc", 0.90, 0.75),
    ("classification", 3): (180.0, "auroc", 0.85, 0.70),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="demo overrides")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)

    cfg = Config()
    seconds_target, metric, lowest, lowest_low = TARGETS[(cfg.task, cfg.spatial_dims)]
    started = time.perf_counter()
    result = demo(args.overrides, quiet=True, echo=lambda _: None)
    seconds = time.perf_counter() - started
    test = result.metrics["test"][1]
    val = result.metrics["val"][1]
    checks = {
        f"demo time <= {seconds_target:g} s": seconds <= seconds_target,
        f"test {metric} >= {lowest:g}": test["value"] >= lowest,
    }
    if lowest_low is not None:
        checks[f"test {metric} interval's lower end > {lowest_low:g}"] = test["low"] > lowest_low
    print(f"{cfg.spatial_dims}D {cfg.task}, {cfg.data.format}: demo {seconds:.1f} s")
    for step, step_seconds in result.seconds.items():
        print(f"  {step:<11} {step_seconds:6.1f} s")
    for split, entry in (("val", val), ("test", test)):
        print(
            f"  {split:<5} {metric} {entry['value']:.3f} "
            f"(95% interval {entry['low']:.3f} to {entry['high']:.3f}, over patients)"
        )
    for name, ok in checks.items():
        print(f"  {'met' if ok else 'NOT met':<8} {name}")
    if args.json:
        figures = {
            "task": cfg.task,
            "spatial_dims": cfg.spatial_dims,
            "format": cfg.data.format,
            "seconds": round(seconds, 2),
            "steps": {k: round(v, 2) for k, v in result.seconds.items()},
            "metric": metric,
            "val": val,
            "test": test,
            "targets": checks,
            "run_dir": str(result.run_dir),
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
