"""The ``explain`` command: load a run, pick cases of a split, explain them, write the results.

``RUN_DIR/explain/<method>/`` receives:

- ``<case_id>.png`` for saliency, Grad-CAM and occlusion: the image and the map over it (3D:
  three orthogonal planes through the strongest attribution), the labelled region outlined;
- ``region.json`` for ``occlusion --region mask``: the prediction before and after the labelled
  region (segmentation: the label mask; classification: a ``mask`` column of the manifest) is
  covered, beside a control region of the same shape elsewhere;
- ``scores.json`` and ``tcav.png`` for TCAV;
- ``summary.json`` for every method: the settings, per-case numbers, and a one-line ``finding``
  that the model card quotes.

Cases are taken in the split's order, classification cases alternating between classes and
segmentation cases with a labelled region first, so that a few cases show what matters.
Saliency, Grad-CAM and occlusion explain the predicted class (classification) or the foreground
class with the most predicted voxels (segmentation; see :mod:`.scores`). TCAV tests each class
on the chosen cases of that class (classification), or every foreground class on every chosen
case (segmentation), against :data:`~.tcav.RANDOM_SETS` random sets of crops of training images
(the concept's sizes and number), at one layer or several (``--layer a,b``); its p-values are
Bonferroni-corrected over the classes times the layers tested (see :mod:`.tcav`).

The network sees each whole image at once (every model of the project takes any size), not
sliding windows as in ``evaluate``: Grad-CAM and TCAV need one forward pass in which the layer
sees the whole image. For images much larger than the training patch, an instance-normalized
network may then predict slightly differently than in ``evaluate``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import data_root
from ..data.from_config import loader_settings
from ..data.io import read_image, read_label
from ..data.manifest import MANIFEST, Case
from ..data.preprocess import preprocess
from ..data.split import fold_cases
from ..evaluate.inference import (
    LoadedRun,
    eval_dataset,
    load_run,
    preprocess_image,
    split_cases,
)
from ..utils.errors import ConfigError, ProjectError
from ..utils.io import atomic_write_text
from ..viz.attribution_plots import plot_attribution, plot_tcav
from . import METHODS
from .concepts import concept_files, lesion_patches, random_crops
from .gradcam import gradcam
from .layers import find_layer
from .occlusion import occlusion_map, region_test
from .saliency import saliency
from .scores import Explained, prepare
from .tcav import ALPHA, RANDOM_SETS, assess_concept, pooled_activations, pooled_gradients

LABELS = {"saliency": "Saliency", "gradcam": "Grad-CAM", "occlusion": "Occlusion", "tcav": "TCAV"}
UNITS = {
    "saliency": "|gradient| (share of maximum)",
    "gradcam": "Grad-CAM (share of maximum)",
    "occlusion": "score drop (share of largest)",
}
MASK_COLUMN = "mask"  # optional manifest column: a region mask per case (classification)
CONCEPT_EXAMPLES = 24  # lesion patches cut for the default TCAV concept
POOL_CASES = 20  # training cases that concept and random crops are cut from, at most


class ExplainError(ProjectError):
    """An option that does not fit the method or the data (e.g. no region to occlude)."""


def explain(
    run_dir: str | Path,
    method: str = METHODS[0],
    *,
    cases: int = 4,
    split: str = "val",
    layer: str | None = None,
    concept: Sequence[str | Path] | None = None,
    region: str | None = None,
    checkpoint: str = "best",
) -> Path:
    """Explain ``cases`` cases of ``split`` with ``method`` and write ``RUN_DIR/explain/<method>/``.

    Args:
        run_dir: a folder that ``train`` wrote.
        method: one of :data:`~.METHODS`.
        cases: how many cases to explain (all of the split when it has fewer).
        split: ``"val"`` (the run's fold) or ``"test"``.
        layer: Grad-CAM's and TCAV's layer, a ``named_modules`` name (default: the last
            convolution, see :mod:`.layers`); TCAV takes several, separated by commas, and
            corrects its p-values for them.
        concept: TCAV's concept: a folder of images, a list file, or image files (default on
            segmentation data: lesion patches of the training cases).
        region: ``"mask"`` to also cover the labelled region at once (occlusion only).
        checkpoint: ``"best"`` or ``"last"``.

    Returns:
        The output folder.

    Raises:
        ValueError: an unknown method or split, ``cases < 1``.
        ExplainError: an option that does not apply to the method, or no region to occlude.
        RunError, LayerError, DataError, ConceptError: a bad run folder, layer name, dataset or
            concept; the message names it.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if isinstance(cases, bool) or not isinstance(cases, int) or cases < 1:
        raise ValueError(f"cases must be an integer >= 1, got {cases!r}")
    if region not in (None, "mask"):
        raise ValueError(f"region must be None or 'mask', got {region!r}")
    _check_options(method, layer, concept, region)
    run = load_run(run_dir, checkpoint)
    run.model.to(_device(run.cfg.device))
    layers = _find_layers(run.model, method, layer)
    chosen = choose_cases(run, split, cases)
    out = run.run_dir / "explain" / method
    summary: dict[str, Any] = {
        "method": method,
        "run": run.run_dir.name,
        "checkpoint": run.checkpoint.name,
        "epoch": run.epoch,
        "split": split,
        "date": datetime.now().isoformat(timespec="seconds"),
    }
    if layers:
        summary["layer"] = ", ".join(layers)
    if method == "tcav":
        summary |= _tcav(run, chosen, layers, concept, out)
    else:
        summary |= _maps(run, chosen, method, next(iter(layers.values()), None), region, out)
    summary["finding"] = _finding(method, summary)
    _write_json(out / "summary.json", summary)
    return out


def _check_options(
    method: str, layer: str | None, concept: Sequence[str | Path] | None, region: str | None
) -> None:
    if layer is not None and method not in ("gradcam", "tcav"):
        raise ExplainError(f"--layer applies to gradcam and tcav, not to {method}")
    if concept is not None and method != "tcav":
        raise ExplainError(f"--concept applies to tcav, not to {method}")
    if region is not None and method != "occlusion":
        raise ExplainError(f"--region applies to occlusion, not to {method}")


def _find_layers(
    model: torch.nn.Module, method: str, layer: str | None
) -> dict[str, torch.nn.Module]:
    """The layers Grad-CAM (one) or TCAV (one or several, comma-separated) looks at, by name.

    Raises:
        ExplainError: several layers for Grad-CAM, or a layer named twice.
        LayerError: a name the network does not have.
    """
    if method not in ("gradcam", "tcav"):
        return {}
    names = [None] if layer is None else [n.strip() for n in layer.split(",")]
    if len(names) > 1 and method != "tcav":
        raise ExplainError(f"{method} takes one --layer, got {layer!r}")
    found = dict(find_layer(model, n) for n in names)
    if len(found) < len(names):
        raise ExplainError(f"--layer names a layer twice: {layer!r}")
    return found


def _device(name: str) -> torch.device:
    """The config's ``device``: ``auto`` is CUDA when available; ``cuda`` without one is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config key 'device' = 'cuda' but no CUDA device is available")
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")


# --- cases ----------------------------------------------------------------------------------


def choose_cases(run: LoadedRun, split: str, count: int) -> list[Case]:
    """``count`` cases of ``split``: classes alternating (classification), or cases with a
    labelled region first (segmentation); otherwise in the split's order."""
    cases = split_cases(run, split)
    if run.task == "classification":
        by_class: dict[str, list[Case]] = {}
        for case in cases:
            by_class.setdefault(str(case.label), []).append(case)
        ordered = [
            group[i]
            for i in range(max(len(g) for g in by_class.values()))
            for group in by_class.values()
            if i < len(group)
        ]
    else:
        dataset = eval_dataset(run, cases)
        labelled = [bool(dataset.geometry(i).get("foreground_classes")) for i in range(len(cases))]
        ordered = [c for c, f in zip(cases, labelled, strict=True) if f]
        ordered += [c for c, f in zip(cases, labelled, strict=True) if not f]
    return ordered[:count]


def manifest_masks(run: LoadedRun) -> dict[str, Path]:
    """Case id -> region mask path, from the manifest's optional ``mask`` column."""
    root = data_root(run.cfg)
    text = (root / MANIFEST).read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    return {
        row["case_id"].strip(): root / row[MASK_COLUMN].strip()
        for row in rows
        if (row.get(MASK_COLUMN) or "").strip()
    }


def labelled_region(
    run: LoadedRun, case: Case, item: dict[str, Any], masks: dict[str, Path]
) -> np.ndarray | None:
    """The case's labelled region on the preprocessed grid: the label mask (segmentation), or
    the manifest's ``mask`` for the case (classification), else ``None``."""
    if run.task == "segmentation":
        return item["label"].numpy() > 0
    path = masks.get(case.case_id)
    if path is None:
        return None
    image = read_image(case.image)
    settings = loader_settings(run.cfg)
    pre = preprocess(
        image,
        read_label(path, image),
        normalization=settings.normalization,
        window=settings.window,
        target_spacing=settings.target_spacing,
        orientation=settings.orientation,  # the grid of the run's items
    )
    return np.asarray(pre.mask) > 0


def positive_share_inside(attribution: np.ndarray, region: np.ndarray) -> float | None:
    """The share of the positive attribution that lies inside ``region`` (``None`` when there
    is no positive attribution)."""
    positive = np.clip(np.nan_to_num(np.asarray(attribution, dtype=np.float64)), 0, None)
    total = float(positive.sum())
    if total <= 0:
        return None
    return float(positive[np.asarray(region, dtype=bool)].sum()) / total


# --- saliency, Grad-CAM, occlusion --------------------------------------------------------


def _maps(
    run: LoadedRun,
    chosen: list[Case],
    method: str,
    layer: torch.nn.Module | None,
    region_mode: str | None,
    out: Path,
) -> dict[str, Any]:
    dataset = eval_dataset(run, chosen)
    masks = manifest_masks(run) if run.task == "classification" else {}
    if region_mode and run.task == "classification" and not masks:
        raise ExplainError(
            f"occlusion --region mask needs a region per case, and the manifest of "
            f"'{data_root(run.cfg)}' has no '{MASK_COLUMN}' column (a mask file "
            "per case, on the image's grid)"
        )
    device = next(run.model.parameters()).device
    names = run.label_names()
    rows, tests = [], []
    for index, case in enumerate(chosen):
        item = dataset[index]
        image = item["image"][None].to(device)
        explained = prepare(run.model, run.task, image)
        if method == "saliency":
            attribution = saliency(explained.scorer, image, explained.target)
        elif method == "gradcam":
            assert layer is not None
            attribution = gradcam(explained.scorer, image, explained.target, layer)
        else:
            attribution = occlusion_map(explained.scorer, image, explained.target)
        region = labelled_region(run, case, item, masks)
        if region is not None and region.shape != attribution.shape:
            raise ExplainError(
                f"the mask of case '{case.case_id}' has shape {region.shape}, its image "
                f"{attribution.shape}"
            )
        has_region = region is not None and bool(region.any())
        share = positive_share_inside(attribution, region) if has_region else None
        row: dict[str, Any] = {
            "case_id": case.case_id,
            "target": explained.target,
            "target_name": names[explained.target],
            "probability": explained.probability,
            "inside_fraction": share,
            "region_fraction": float(region.mean()) if has_region else None,
            "png": f"{case.case_id}.png",
        }
        if run.task == "classification":
            row["label"] = names[int(item["label"])]
        else:
            row["score_region"] = explained.region
        plot_attribution(
            item["image"][0].numpy(),
            attribution,
            out / row["png"],
            title=_title(method, case.case_id, explained, names, row, run.task)
            + _channels_note(run, method),
            region=region if has_region else None,
            spacing=dataset.geometry(index).get("spacing"),
            signed=method == "occlusion",
            units=UNITS[method],
        )
        if region_mode and has_region:
            assert region is not None
            tests.append(_region_row(run, case, explained, image, region, names))
        rows.append(row)
    result: dict[str, Any] = {"cases": rows}
    shares = [r["inside_fraction"] for r in rows if r["inside_fraction"] is not None]
    fractions = [r["region_fraction"] for r in rows if r["inside_fraction"] is not None]
    result["inside_fraction_mean"] = float(np.mean(shares)) if shares else None
    result["region_fraction_mean"] = float(np.mean(fractions)) if fractions else None
    if region_mode:
        if not tests:
            raise ExplainError(
                f"none of the {len(chosen)} cases has a non-empty labelled region to cover"
            )
        region_result = {
            "mode": "mask",
            "baseline": "image minimum",
            "control": "the same region moved by half the image along every axis",
            "measures": {
                "score": "the explained class's score (segmentation: its logit summed over "
                "the region predicted on the original image)",
                "probability": "the explained class's probability (segmentation: its mean "
                "over the labelled region)",
            },
            "cases": tests,
            "mean_probability_change": float(np.mean([t["probability_change"] for t in tests])),
            "mean_control_probability_change": float(
                np.mean([t["control_probability_change"] for t in tests])
            ),
        }
        _write_json(out / "region.json", region_result)
        result["region"] = {k: v for k, v in region_result.items() if k != "cases"}
        result["region"]["cases"] = len(tests)
    return result


def _channels_note(run: LoadedRun, method: str) -> str:
    """For a multi-channel run: how the map combines the channels and which one is shown."""
    if run.in_channels == 1:
        return ""
    how = {
        "saliency": "|gradient| summed over the channels",
        "gradcam": "one map for all channels (from the layer's features)",
        "occlusion": "each patch hidden in all channels at once",
    }[method]
    return f"\n{run.in_channels} channels ({', '.join(run.channels)}): {how}; shown on '{run.channels[0]}'"


def _title(
    method: str,
    case_id: str,
    explained: Explained,
    names: list[str],
    row: dict[str, Any],
    task: str,
) -> str:
    target = names[explained.target]
    if task == "classification":
        what = f"predicted '{target}' (p = {explained.probability:.2f}), label '{row['label']}'"
    else:
        what = (
            f"class '{target}' logit summed over the {explained.region} region "
            f"({100 * explained.probability:.1f}% of voxels predicted)"
        )
    inside = row["inside_fraction"]
    where = "" if inside is None else f"; {100 * inside:.0f}% of positive attribution in the region"
    return f"{LABELS[method]}, case {case_id}: {what}{where}"


def _region_row(
    run: LoadedRun,
    case: Case,
    explained: Explained,
    image: torch.Tensor,
    region: np.ndarray,
    names: list[str],
) -> dict[str, Any]:
    """Cover the case's region and a control; the class score and probability each time."""
    k = explained.target
    inside = torch.as_tensor(region, device=image.device)

    def measure(x: torch.Tensor) -> dict[str, float]:
        probs = torch.softmax(run.model(x).float(), dim=1)[0]
        score = float(explained.scorer(x)[0, k])
        if run.task == "classification":
            return {
                "score": score,
                "probability": float(probs[k]),
                "predicted": int(probs.argmax()),
            }
        predicted = probs.argmax(dim=0) == k
        return {
            "score": score,
            "probability": float(probs[k][inside].mean()),
            "predicted_voxels": int(predicted.sum()),
            "predicted_in_region": int((predicted & inside).sum()),
        }

    test = region_test(measure, image, region)
    original, occluded, control = test["original"], test["occluded"], test["control"]
    return {
        "case_id": case.case_id,
        "target": k,
        "target_name": names[k],
        **{key: test[key] for key in ("region_voxels", "region_fraction", "baseline")},
        "original": original,
        "occluded": occluded,
        "control": control,
        "probability_change": occluded["probability"] - original["probability"],
        "control_probability_change": control["probability"] - original["probability"],
        "score_change": occluded["score"] - original["score"],
        "control_score_change": control["score"] - original["score"],
    }


# --- TCAV -----------------------------------------------------------------------------------


def _tcav(
    run: LoadedRun,
    chosen: list[Case],
    layers: dict[str, torch.nn.Module],
    concept: Sequence[str | Path] | None,
    out: Path,
) -> dict[str, Any]:
    """TCAV of a concept at each of ``layers``: writes ``scores.json`` and ``tcav.png``.

    Returns:
        The summary's TCAV part: the concept, the cases, the test's settings (random sets,
        alpha, the number of tests corrected for) and per class and layer the scores and
        p-values.
    """
    if run.in_channels > 1:
        raise ExplainError(
            f"TCAV takes single-channel runs; '{run.run_dir.name}' was trained on "
            f"{run.in_channels} channels ({', '.join(run.channels)}): use saliency, gradcam or "
            "occlusion"
        )
    device = next(run.model.parameters()).device
    rng = np.random.default_rng(run.cfg.seed)
    train_cases = fold_cases(data_root(run.cfg), run.task, run.cfg.data.fold)[0]
    pool_cases = [train_cases[int(i)] for i in _spread(len(train_cases), POOL_CASES)]
    pool = eval_dataset(run, pool_cases)
    items = [pool[i] for i in range(len(pool))]
    images = [item["image"][0].numpy() for item in items]
    masks = [item["label"].numpy() for item in items] if run.task == "segmentation" else None
    if concept is not None:
        files = concept_files(concept)
        examples = [preprocess_image(run, read_image(f))[0][0, 0].numpy() for f in files]
        name = _concept_name(concept)
        source = [str(f) for f in files]
        avoid = None
    elif masks is not None:
        examples = lesion_patches(images, masks, rng, CONCEPT_EXAMPLES)
        if not examples:
            raise ExplainError(
                "the training cases have no labelled region to cut lesion patches from: "
                "give the concept's example images with --concept"
            )
        name, source, avoid = "lesion patches", "crops around the labels of training cases", masks
    else:
        raise ExplainError(
            "TCAV on classification needs example images of a concept: --concept FOLDER, "
            "a list file of images, or image files"
        )
    sizes = [e.shape for e in examples]
    randoms = [random_crops(images, sizes, rng, avoid) for _ in range(RANDOM_SETS)]
    activations: dict[str, tuple[np.ndarray, list[np.ndarray]]] = {}
    try:
        for layer_name, layer in layers.items():
            activations[layer_name] = (
                pooled_activations(run.model, layer, examples, device),
                [pooled_activations(run.model, layer, r, device) for r in randoms],
            )
    except ValueError as exc:  # e.g. examples smaller than the network accepts
        raise ExplainError(f"the network cannot take the concept's examples: {exc}") from None

    dataset = eval_dataset(run, chosen)
    names = run.label_names()
    gradients: dict[str, dict[int, list[np.ndarray]]] = {n: {} for n in layers}
    for index in range(len(dataset)):
        item = dataset[index]
        image = item["image"][None].to(device)
        explained = prepare(run.model, run.task, image)
        classes = (
            list(range(1, run.num_classes)) if run.task == "segmentation" else [int(item["label"])]
        )
        for layer_name, layer in layers.items():
            grads = pooled_gradients(explained.scorer, layer, image, classes)
            for k, row in zip(classes, grads, strict=True):
                gradients[layer_name].setdefault(k, []).append(row)
    tested = len(next(iter(gradients.values())))
    tests = tested * len(layers)  # the Bonferroni correction: classes x layers
    classes_out = []
    for layer_name, (concept_acts, random_acts) in activations.items():
        per_class = {k: np.stack(v) for k, v in sorted(gradients[layer_name].items())}
        results = assess_concept(concept_acts, random_acts, per_class, tests=tests)
        classes_out += [
            {"class": k, "name": names[k], "layer": layer_name, **r} for k, r in results.items()
        ]
    test = {
        "random_sets": RANDOM_SETS,
        "alpha": ALPHA,
        "correction": "bonferroni",
        "tests": tests,
        "corrected_over": f"{_count(tested, 'class', 'classes')} x "
        f"{_count(len(layers), 'layer', 'layers')}",
    }
    shown = ", ".join(layers)
    scores = {
        "concept": name,
        "source": source,
        "examples": len(examples),
        "layer": shown,
        "layers": list(layers),
        **test,
        "inputs": [c.case_id for c in chosen],
        "classes": classes_out,
    }
    _write_json(out / "scores.json", scores)
    where = f"layer{'s' * (len(layers) > 1)} {shown}"
    plot_tcav(classes_out, out / "tcav.png", title=f"TCAV: concept '{name}' at {where}")
    return {
        "concept": name,
        "cases": [c.case_id for c in chosen],
        "layers": list(layers),
        **test,
        "classes": [
            {
                key: c[key]
                for key in (
                    "class",
                    "name",
                    "layer",
                    "inputs",
                    "tcav",
                    "tcav_std",
                    "random_tcav",
                    "random_tcav_std",
                    "p_value",
                    "p_value_corrected",
                    "tests",
                    "alpha",
                    "random_sets",
                    "significant",
                )
            }
            for c in classes_out
        ],
    }


def _count(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _spread(total: int, count: int) -> list[int]:
    """``count`` indices spread evenly over ``range(total)`` (all when fewer)."""
    if total <= count:
        return list(range(total))
    return sorted({int(round(i)) for i in np.linspace(0, total - 1, count)})


def _concept_name(concept: Sequence[str | Path]) -> str:
    if len(concept) == 1:
        source = Path(concept[0])
        return source.name if source.is_dir() else source.stem.split(".")[0]
    return f"{len(concept)} images"


# --- results --------------------------------------------------------------------------------


def _finding(method: str, summary: dict[str, Any]) -> str:
    """One line a model card can quote."""
    label = LABELS[method]
    if method == "tcav":
        parts = []
        several = len(summary["layers"]) > 1
        for c in summary["classes"]:
            verdict = "significant" if c["significant"] else "not significant"
            where = f" at {c['layer']}" if several else ""
            parts.append(
                f"{c['tcav']:.2f} for class '{c['name']}'{where} vs {c['random_tcav']:.2f} for "
                f"random sets (p = {c['p_value']:.2g}, corrected {c['p_value_corrected']:.2g}: "
                f"{verdict}; {_count(c['inputs'], 'case', 'cases')})"
            )
        tests = _count(summary["tests"], "test", "tests")
        layers = "layers" if several else "layer"
        return (
            f"TCAV at {layers} {summary['layer']} against {summary['random_sets']} random sets: "
            f"concept '{summary['concept']}' scores " + "; ".join(parts) + f". Significant "
            f"means p < {summary['alpha']:g} after Bonferroni correction for {tests} "
            f"({summary['corrected_over']})"
        )
    count = len(summary["cases"])
    if "layer" in summary:
        label = f"{label} at layer {summary['layer']}"
    share = summary.get("inside_fraction_mean")
    if share is None:
        text = f"{label}: maps of {count} cases; no labelled region to compare them with"
    else:
        measured = sum(1 for c in summary["cases"] if c["inside_fraction"] is not None)
        text = (
            f"{label}: {100 * share:.0f}% of positive attribution inside the labelled region (which "
            f"covers {100 * summary['region_fraction_mean']:.1f}% of the image) over {measured} cases"
        )
    region = summary.get("region")
    if region:
        text += (
            f"; covering the region changed the probability of the explained class by "
            f"{region['mean_probability_change']:+.2f} on average (the same shape elsewhere: "
            f"{region['mean_control_probability_change']:+.2f})"
        )
    return text


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become ``None``, NumPy scalars Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_json(path: Path, data: dict[str, Any]) -> Path:
    return atomic_write_text(path, json.dumps(_clean(data), indent=2, allow_nan=False) + "\n")
