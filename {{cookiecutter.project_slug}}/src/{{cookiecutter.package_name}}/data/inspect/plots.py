"""The dataset plots of the report (:mod:`...viz.data_plots`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...viz import data_plots
from .cases import CaseResult


def write_plots(
    report: Mapping[str, Any], results: Sequence[CaseResult], folder: Path
) -> dict[str, str]:
    """Draw the dataset plots into ``folder``; returns plot name -> file name."""
    plots = {}
    if report["task"] == "classification":
        plots["class_distribution"] = data_plots.plot_class_distribution(
            report["classes"]["counts"], folder / "class_distribution.png"
        ).name
    else:
        masks = report["masks"]
        three_d = any(len(r.record["shape"]) == 3 for r in results)
        unit, key = ("mL", "ml") if three_d else ("mm²", "mm2")
        sizes = {
            f"{value}": [
                r.record["mask"][value][key]
                for r in results
                if value in r.record["mask"] and key in r.record["mask"][value]
            ]
            for value in masks["classes"]
        }
        plots["mask_sizes"] = data_plots.plot_mask_sizes(
            sizes,
            folder / "mask_sizes.png",
            unit=unit,
            empty_cases=masks["empty_cases"],
            total_cases=len(results),
        ).name
    plots["geometry"] = data_plots.plot_geometry(
        [r.record["shape"] for r in results],
        [r.record["spacing"] for r in results],
        folder / "geometry.png",
    ).name
    plots["intensities"] = data_plots.plot_intensities(
        {r.record["case_id"]: r.sample for r in results}, folder / "intensities.png"
    ).name
    if report["annotators"]:
        metric = "Dice" if report["task"] == "segmentation" else "agreement"
        plots["agreement"] = data_plots.plot_agreement(
            report["annotators"]["per_case"], folder / "agreement.png", metric=metric
        ).name
    return plots
