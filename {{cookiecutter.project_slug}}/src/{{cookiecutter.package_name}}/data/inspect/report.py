"""``report.md``: the report for a person, one function per section."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..fingerprint import FOREGROUND_SAMPLES
from .statistics import ANISOTROPY


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return [*lines, ""]


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _groups(groups: Sequence[Sequence[str]], patient: Mapping[str, str]) -> list[str]:
    lines = []
    for group in groups:
        owners = sorted({patient[c] for c in group})
        note = " (different patients!)" if len(owners) > 1 else ""
        lines.append(f"- {', '.join(group)}: patients {', '.join(owners)}{note}")
    return lines or ["- none"]


def _figure(report: Mapping[str, Any], name: str, text: str) -> list[str]:
    """The Markdown image line of plot ``name`` when it was drawn."""
    file = report["plots"].get(name)
    return [f"![{text}]({file})", ""] if file else []


def render_markdown(report: Mapping[str, Any]) -> str:
    """``report.md``: the report for a person, plots inline (paths relative to the report)."""
    out = _header(report) + _counts(report)
    out += _classes(report) if report["task"] == "classification" else _masks(report)
    for section in (
        _geometry,
        _preprocessing,
        _intensities,
        _duplicates,
        _annotators,
        _splits,
        _identity,
        _cases,
    ):
        out += section(report)
    return "\n".join(out)


def _header(report: Mapping[str, Any]) -> list[str]:
    return [
        f"# Dataset report: {report['root']}",
        "",
        f"Written {report['created']} for the {report['task']} task by `inspect`."
        + (" Montages of every case are under `montages/`." if report["plots"] else ""),
        "",
        "## Warnings",
        "",
        *([f"- **{w}**" for w in report["warnings"]] or ["- none"]),
        "",
    ]


def _counts(report: Mapping[str, Any]) -> list[str]:
    c = report["counts"]
    return [
        "## Counts",
        "",
        *_table(
            ["cases", "patients", "patients with several studies", "most studies of a patient"],
            [
                [
                    c["cases"],
                    c["patients"],
                    c["patients_with_several_studies"],
                    c["max_studies_per_patient"],
                ]
            ],
        ),
        "Studies per patient: "
        + ", ".join(f"{k}: {n} patients" for k, n in c["studies_per_patient"].items()),
        "",
    ]


def _classes(report: Mapping[str, Any]) -> list[str]:
    cls = report["classes"]
    total = sum(cls["counts"].values())
    out = ["## Classes", ""]
    out += _table(
        ["class", "cases", "share", "patients"],
        [[n, k, f"{100 * k / total:.1f}%", cls["patients"][n]] for n, k in cls["counts"].items()],
    )
    out += [f"Largest class / smallest class: {cls['imbalance']:.2f}", ""]
    return out + _figure(report, "class_distribution", "class distribution")


def _masks(report: Mapping[str, Any]) -> list[str]:
    masks = report["masks"]
    out = ["## Mask sizes per class", ""]
    rows = []
    for value, s in masks["classes"].items():
        unit = "ml" if "ml" in s else "mm2"
        size = s.get(unit)
        voxels = s["voxels"]
        rows.append(
            [
                value,
                s["cases"],
                f"{voxels['median']:.0f} ({voxels['min']:.0f}-{voxels['max']:.0f})",
                f"{_num(size['median'])} ({_num(size['min'])}-{_num(size['max'])}) {unit}"
                if size
                else "-",
            ]
        )
    out += _table(["class", "cases", "voxels: median (min-max)", "size: median (min-max)"], rows)
    empty = masks["empty_case_ids"]
    shown = ", ".join(empty[:20]) + (" ..." if len(empty) > 20 else "")
    out += [
        f"Cases with an empty mask: {masks['empty_cases']} of {report['counts']['cases']}"
        + (f" ({shown})" if empty else ""),
        "",
    ]
    return out + _figure(report, "mask_sizes", "mask sizes")


def _geometry(report: Mapping[str, Any]) -> list[str]:
    geo = report["geometry"]
    dims = ", ".join(f"{k}D: {n} cases" for k, n in geo["dimensions"].items())
    out = [
        "## Shapes and spacings",
        "",
        f"Dimensions: {dims}; {geo['distinct_shapes']} distinct shapes, "
        f"{geo['distinct_spacings']} distinct spacings, {geo['anisotropic_cases']} anisotropic "
        f"cases (largest spacing > {ANISOTROPY:g} x smallest).",
        "",
    ]
    out += _table(
        ["", *"XYZ"[: len(geo["spacing"]["min"])]],
        [
            ["size min (voxels)", *geo["size"]["min"]],
            ["size max (voxels)", *geo["size"]["max"]],
            *(
                [f"spacing {k} (mm)", *(f"{v:.4g}" for v in geo["spacing"][k])]
                for k in ("min", "median", "max")
            ),
        ],
    )
    return out + _figure(report, "geometry", "shapes and spacings")


def _preprocessing(report: Mapping[str, Any]) -> list[str]:
    """The fingerprint and the preprocessing it implies (normalization, spacing, orientation)."""
    fp = report["fingerprint"]
    norm, it = fp["normalization"], fp["intensity"]
    window = norm["window"]
    orientations = ", ".join(f"{c}: {n}" for c, n in sorted(fp["orientations"].items()))
    return [
        "## Preprocessing (dataset fingerprint)",
        "",
        f"- Modality: {fp['modality']} ({fp['reason']}).",
        f"- Normalization {norm['requested']} -> {norm['resolved']}"
        + (f", window [{window[0]:g}, {window[1]:g}]" if window else ", no window")
        + f": {norm['why']}. Share of the foreground outside the window: "
        f"{100 * norm['clipped']:.1f}%.",
        f"- Foreground intensities ({it['samples']} sampled voxels, at most "
        f"{FOREGROUND_SAMPLES} per case; labelled voxels, or voxels above the image minimum "
        f"without masks): 0.5-99.5 percentiles {_num(it['p00_5'])} to {_num(it['p99_5'])}, "
        f"median {_num(it['median'])}.",
        f"- Spacing in {fp['orientation']} axes: median {fp['median_spacing']} mm, proposed "
        f"data.target_spacing {fp['proposed_spacing']} (nnU-Net's rule); "
        f"{fp['distinct_spacings']} distinct spacings.",
        f"- Orientations as stored: {orientations or 'none (2D)'}.",
        "",
    ]


def _intensities(report: Mapping[str, Any]) -> list[str]:
    it = report["intensity"]
    out = ["## Intensities (as stored, e.g. HU)", ""]
    out += _table(
        ["min", "max", "mean", "std", "voxels"],
        [[_num(it["min"]), _num(it["max"]), _num(it["mean"]), _num(it["std"]), it["voxels"]]],
    )
    return out + _figure(report, "intensities", "intensities")


def _duplicates(report: Mapping[str, Any]) -> list[str]:
    dup = report["duplicates"]
    patient = {r["case_id"]: r["patient_id"] for r in report["cases"]}
    return [
        "## Duplicates",
        "",
        "Exact duplicates (identical voxel data):",
        *_groups(dup["exact"], patient),
        "",
        f"Near duplicates (thumbnail correlation >= {dup['near_threshold']}):",
        *_groups(dup["near"], patient),
        "",
        "`split` keeps one case of each group and removes the rest before dividing the data.",
        "",
    ]


def _annotators(report: Mapping[str, Any]) -> list[str]:
    ann = report["annotators"]
    out = ["## Annotators", ""]
    if ann is None:
        return [*out, "One annotator (no `label_<rater>` columns).", ""]
    metric = "Dice" if ann["metric"] == "dice" else "agreement rate"
    rows = [
        [f"{p['a']} vs {p['b']}", p["cases"], _num(p["mean"]), _num(p["min"]), _num(p.get("kappa"))]
        for p in ann["pairs"]
    ]
    out += _table(["pair", "cases", f"mean {metric}", "lowest", "Cohen's kappa"], rows)
    out += [
        f"{ann['cases_disagreeing']} of {ann['cases_rated']} rated cases disagree. "
        "Largest disagreements:",
        "",
    ]
    rows = [
        [
            d["case_id"],
            _num(d["agreement"]),
            "; ".join(f"{k}: {_num(v)}" for k, v in d["pairs"].items()),
        ]
        + ([", ".join(f"{k}: {v}" for k, v in d["labels"].items())] if "labels" in d else [])
        for d in ann["largest_disagreements"]
    ]
    header = ["case", metric, "pairs"] + (["labels"] if ann["metric"] == "agreement" else [])
    out += _table(header, rows) if rows else ["none", ""]
    return out + _figure(report, "agreement", "annotator agreement")


def _splits(report: Mapping[str, Any]) -> list[str]:
    sp = report["splits"]
    out = ["## Splits", ""]
    if sp is None:
        return [*out, "No `splits.json` yet (run `split`).", ""]
    rows = [["test", sp["test"]["cases"], sp["test"]["patients"], "-"]]
    for i, f in enumerate(sp["folds"]):
        shared = f["shared_patients"]
        rows.append([f"fold {i} train", f["train"]["cases"], f["train"]["patients"], shared])
        rows.append([f"fold {i} val", f["val"]["cases"], f["val"]["patients"], shared])
    out += _table(["part", "cases", "patients", "patients shared train/val"], rows)
    out += [
        f"Patients in both test and training/validation: "
        f"{sp['patients_in_test_and_development']}; cases in no part: {sp['cases_in_no_part']}; "
        f"case ids unknown to the manifest: {len(sp['unknown_case_ids'])}.",
        "",
    ]
    return out


def _identity(report: Mapping[str, Any]) -> list[str]:
    ident = report["identity"]
    out = ["## Patient identity in DICOM headers", ""]
    if ident["dicom_cases"] == 0:
        return [*out, "No DICOM images.", ""]
    tags = ", ".join(f"{t} ({n})" for t, n in ident["tags"].items()) or "none"
    return [
        *out,
        f"{ident['cases_with_identity']} of {ident['dicom_cases']} DICOM cases carry identity "
        f"tags: {tags}. The values are not shown here.",
        "",
    ]


def _cases(report: Mapping[str, Any]) -> list[str]:
    label = "label" if report["task"] == "classification" else "mask (voxels per class)"
    rows = []
    for r in report["cases"]:
        what = (
            r.get("label")
            if "label" in r
            else (", ".join(f"{k}: {v['voxels']}" for k, v in r["mask"].items()) or "empty")
        )
        it = r["intensity"]
        montage = f"[montage]({r['montage']})" if "montage" in r else "-"
        rows.append(
            [
                r["case_id"],
                r["patient_id"],
                what,
                " x ".join(map(str, r["shape"])),
                " x ".join(f"{s:.3g}" for s in r["spacing"]),
                _num(it["min"]),
                _num(it["max"]),
                _num(it["mean"]),
                _num(it["std"]),
                montage,
            ]
        )
    header = ["case", "patient", label, "shape", "spacing (mm)", "min", "max", "mean", "std"]
    return ["## Cases", "", *_table([*header, "montage"], rows)]
