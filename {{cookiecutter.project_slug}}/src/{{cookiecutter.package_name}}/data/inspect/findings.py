"""The report's warnings: one sentence per finding that needs action before training."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .statistics import ANISOTROPY

CLIPPED_WARNING = 0.05  # warn when more of the foreground than this falls outside the window


def collect_warnings(report: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> list[str]:
    """One sentence per finding in ``report`` (and the per-case ``records``) that needs action
    before training."""
    warnings = []
    identity = report["identity"]
    if identity["cases_with_identity"]:
        tags = ", ".join(identity["tags"])
        warnings.append(
            f"{identity['cases_with_identity']} of {identity['dicom_cases']} DICOM cases carry "
            f"patient identity in their headers ({tags}); de-identify them before sharing"
        )
    dup = report["duplicates"]
    if dup["exact"] or dup["near"]:
        warnings.append(
            f"{len(dup['exact'])} exact and {len(dup['near'])} near duplicate groups "
            f"({dup['cases_to_remove']} cases to remove before splitting)"
        )
    if dup["groups_across_patients"]:
        warnings.append(
            f"{len(dup['groups_across_patients'])} duplicate groups span different patient ids"
        )
    non_finite = [c["case_id"] for c in records if c["intensity"].get("non_finite")]
    if non_finite:
        warnings.append(
            f"{len(non_finite)} cases hold NaN or infinite voxels (left out of the statistics), "
            f"e.g. {non_finite[0]}"
        )
    if len(report["geometry"]["dimensions"]) > 1:
        warnings.append(f"mixed dimensions: {report['geometry']['dimensions']} cases per ndim")
    warnings += preprocessing_warnings(report)
    splits = report.get("splits")
    if splits:
        if splits["patients_in_test_and_development"]:
            warnings.append(
                f"{splits['patients_in_test_and_development']} patients are in the test set "
                "and in training/validation"
            )
        if any(f["shared_patients"] for f in splits["folds"]):
            warnings.append("a fold shares patients between train and val")
        if splits["unknown_case_ids"]:
            warnings.append(
                f"splits.json names {len(splits['unknown_case_ids'])} case ids not in the "
                "manifest (stale splits: run split again)"
            )
    return warnings


def preprocessing_warnings(report: Mapping[str, Any]) -> list[str]:
    """Spacings, orientations and intensities that the preprocessing must handle: mixed or
    anisotropic spacings (with the proposed ``data.target_spacing``), mixed orientations, and
    intensities that do not fit the chosen normalization."""
    fp, geo = report["fingerprint"], report["geometry"]
    warnings = []
    proposed = fp["proposed_spacing"]
    hint = f"; proposed data.target_spacing={proposed} (median, nnU-Net's rule)" if proposed else ""
    if fp["distinct_spacings"] > 1:
        warnings.append(
            f"{fp['distinct_spacings']} distinct voxel spacings over {fp['cases']} cases: "
            f"without data.target_spacing each case keeps its own grid{hint}"
        )
    if geo["anisotropic_cases"]:
        # The proposal only changes something when the cases do not share one spacing.
        other = proposed is not None and proposed != fp["median_spacing"]
        warnings.append(
            f"{geo['anisotropic_cases']} anisotropic cases (largest spacing > "
            f"{ANISOTROPY:g} x smallest; median spacing {fp['median_spacing']} mm): patches and "
            f"augmentation see coarse slices{hint if other else ''}"
        )
    if len(fp["orientations"]) > 1:
        counts = ", ".join(f"{code}: {n}" for code, n in sorted(fp["orientations"].items()))
        warnings.append(
            f"mixed orientations ({counts} cases); training reorients every case to "
            f"{fp['orientation']} (data.orientation), predictions go back to each input's own"
        )
    norm = fp["normalization"]
    warnings += norm["warnings"]
    if norm["clipped"] > CLIPPED_WARNING:
        low, high = norm["window"]
        warnings.append(
            f"{100 * norm['clipped']:.0f}% of the sampled foreground intensities lie outside the "
            f"window [{low:g}, {high:g}] of normalization {norm['resolved']} and would be clipped"
        )
    return warnings
