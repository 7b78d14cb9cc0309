"""``data.normalization: auto``: the dataset fingerprint and the preprocessing it resolves to.

Planted truths: a CT-like dataset (int16 with air at -1000) must resolve to ``ct`` windowed at
the 0.5 and 99.5 percentiles of its labelled voxels, worked out here from the planted values; an
MR-like dataset (non-negative, no air) to ``mr`` with nothing clipped; uint16 radiographs to
``zscore``. Explicit settings win, and a CT window on data that is not in HU is a warning.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

from {{ cookiecutter.package_name }}.config import Config, ConfigError, load_config
from {{ cookiecutter.package_name }}.data import fingerprint as fingerprint_module
from {{ cookiecutter.package_name }}.data.fingerprint import (
    FOREGROUND_SAMPLES,
    case_fingerprint,
    dataset_fingerprint,
    propose_spacing,
    resolve_config,
)
from {{ cookiecutter.package_name }}.data.from_config import loader_settings
from {{ cookiecutter.package_name }}.data.io import Image, read_image, write_nifti, write_png
from {{ cookiecutter.package_name }}.data.manifest import Case
from {{ cookiecutter.package_name }}.data.preprocess import preprocess

AFFINE = np.diag([0.8, 0.8, 2.5, 1.0])
SHAPE = (12, 10, 6)


def ct_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Air at -1000 around a body at about 40 HU holding a lesion at about 120 HU."""
    image = np.full(SHAPE, -1000, np.int16)
    image[2:10, 2:8, 1:5] = rng.normal(40, 10, (8, 6, 4)).astype(np.int16)
    mask = np.zeros(SHAPE, np.uint8)
    mask[4:8, 3:7, 2:4] = 1
    image[mask == 1] = rng.normal(120, 15, int(mask.sum())).astype(np.int16)
    return image, mask


def mr_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Background 0, brain at about 900 (float, non-negative), a lesion at about 1400."""
    image = np.zeros(SHAPE, np.float32)
    image[2:10, 2:8, 1:5] = rng.normal(900, 100, (8, 6, 4))
    mask = np.zeros(SHAPE, np.uint8)
    mask[4:8, 3:7, 2:4] = 1
    image[mask == 1] = rng.normal(1400, 80, int(mask.sum()))
    return np.clip(image, 0, None), mask


def dataset(root: Path, make, n: int = 4, affines: list[np.ndarray] | None = None) -> list[Case]:
    rng = np.random.default_rng(7)
    cases = []
    for i in range(n):
        image, mask = make(rng)
        affine = affines[i] if affines else AFFINE
        cases.append(
            Case(
                f"c{i}",
                f"p{i}",
                write_nifti(image, affine, root / "images" / f"c{i}.nii.gz"),
                write_nifti(mask, affine, root / "labels" / f"c{i}.nii.gz"),
            )
        )
    return cases


def segmentation(*overrides: str) -> Config:
    """The project's config for these tests' segmentation datasets (whatever the render)."""
    return dataclasses.replace(load_config(list(overrides)), task="segmentation")


def labelled_values(cases: list[Case]) -> np.ndarray:
    return np.concatenate(
        [read_image(c.image).array[read_image(c.label).array > 0].astype(float) for c in cases]
    )


def test_ct_like_data_resolves_to_ct_at_its_foreground_percentiles(tmp_path: Path) -> None:
    cases = dataset(tmp_path, ct_case)
    values = labelled_values(cases)
    expected = [
        round(float(np.percentile(values, 0.5)), 1),
        round(float(np.percentile(values, 99.5)), 1),
    ]
    lines: list[str] = []
    cfg = resolve_config(segmentation(), tmp_path, cases, echo=lines.append)
    assert cfg.data.normalization == "ct"
    assert cfg.data.window == pytest.approx(expected)
    assert len(lines) == 1 and lines[0].startswith("normalization auto -> ct, window [")
    assert "0.5-99.5 percentiles over 4 training cases" in lines[0]
    settings = loader_settings(cfg)
    assert settings.normalization == "ct" and settings.window == tuple(cfg.data.window)


def test_ct_without_masks_keeps_the_configured_window(tmp_path: Path) -> None:
    # Classification: no labelled structure for the percentiles; the body's would be too wide.
    cases = dataset(tmp_path, ct_case)
    cfg = dataclasses.replace(load_config(["data.window=[-200, 300]"]), task="classification")
    lines: list[str] = []
    resolved = resolve_config(cfg, tmp_path, cases, echo=lines.append)
    assert (resolved.data.normalization, resolved.data.window) == ("ct", [-200.0, 300.0])
    assert lines[0].startswith(
        "normalization auto -> ct, window [-200, 300] HU (data.window: no masks"
    )


def test_mr_like_data_resolves_to_mr_and_nothing_is_clipped(tmp_path: Path) -> None:
    cases = dataset(tmp_path, mr_case)
    lines: list[str] = []
    cfg = resolve_config(segmentation(), tmp_path, cases, echo=lines.append)
    assert (cfg.data.normalization, cfg.data.window) == ("mr", None)
    assert lines and lines[0].startswith("normalization auto -> mr") and "not in HU" in lines[0]
    settings = loader_settings(cfg)
    assert settings.window is None
    image = read_image(cases[0].image)
    out = preprocess(image, normalization=settings.normalization, window=settings.window).image
    # No clipping: every distinct brain value keeps a distinct normalized value, in order.
    brain = image.array > 0
    order = np.argsort(image.array[brain])
    assert np.all(np.diff(out[brain][order]) >= 0)
    assert len(np.unique(out[brain])) == len(np.unique(image.array[brain]))


def test_uint16_radiographs_resolve_to_zscore(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    cases = []
    for i in range(3):
        path = write_png(rng.integers(0, 4096, (20, 16)).astype(np.uint16), tmp_path / f"{i}.png")
        cases.append(Case(f"c{i}", f"p{i}", path, "normal"))
    cfg = dataclasses.replace(load_config(), task="classification")  # only task and data count
    lines: list[str] = []
    resolved = resolve_config(cfg, tmp_path, cases, echo=lines.append)
    assert (resolved.data.normalization, resolved.data.window) == ("zscore", None)
    assert "PNG" in lines[0]


@pytest.mark.parametrize("explicit", ["mr", "zscore", "none", "ct"])
def test_explicit_settings_win(tmp_path: Path, explicit: str) -> None:
    cases = dataset(tmp_path, ct_case)
    cfg = segmentation(f"data.normalization={explicit}", "data.window=[-200, 300]")
    lines: list[str] = []
    assert resolve_config(cfg, tmp_path, cases, echo=lines.append) == cfg
    assert lines == []  # CT data, explicit settings: nothing to say


def test_a_ct_window_on_data_not_in_hu_is_one_warning(tmp_path: Path) -> None:
    cases = dataset(tmp_path, mr_case)
    cfg = segmentation("data.normalization=ct", "data.window=[-200, 300]")
    lines: list[str] = []
    assert resolve_config(cfg, tmp_path, cases, echo=lines.append) == cfg
    assert len(lines) == 1
    assert lines[0].startswith("warning: data.normalization is ct (window [-200, 300] HU)")
    assert "do not look like CT" in lines[0]


def test_mixed_spacings_warn_at_training_and_propose_one(tmp_path: Path) -> None:
    affines = [AFFINE, AFFINE, np.diag([0.7, 0.7, 3.0, 1.0]), np.diag([0.7, 0.7, 3.0, 1.0])]
    cases = dataset(tmp_path, mr_case, affines=affines)
    lines: list[str] = []
    resolve_config(segmentation("data.normalization=mr"), tmp_path, cases, echo=lines.append)
    median = [0.75, 0.75, 2.75]
    assert lines == [
        f"warning: the 4 training cases have 2 distinct spacings and data.target_spacing is "
        f"null: each case keeps its own grid; set data.target_spacing={median} to resample"
    ]


def test_propose_spacing_follows_nnunet_for_an_anisotropic_axis() -> None:
    # z is 5 mm (> 3 x 0.8) and has 30 voxels (x 3 < 512): the 10th percentile of z instead.
    spacings = [[0.8, 0.8, z] for z in (3.0, 5.0, 5.0, 5.0, 5.0)]
    shapes = [[512, 512, 30]] * 5
    assert propose_spacing(spacings, shapes) == [
        0.8,
        0.8,
        round(np.percentile([3, 5, 5, 5, 5], 10), 4),
    ]
    # Isotropic enough: the median.
    assert propose_spacing([[1, 1, 1.5], [1, 1, 2.5]], [[64, 64, 64]] * 2) == [1.0, 1.0, 2.0]


def test_foreground_is_sampled_with_a_bound(tmp_path: Path) -> None:
    big = np.arange(30 * 30 * 20, dtype=np.float32).reshape(30, 30, 20)
    mask = np.ones(big.shape, np.uint8)
    fp = case_fingerprint("big", Image(big, AFFINE), mask)
    assert fp.foreground.size == FOREGROUND_SAMPLES and fp.foreground_voxels == big.size
    assert len(np.unique(fp.foreground)) == FOREGROUND_SAMPLES  # without replacement
    small = case_fingerprint("small", Image(big, AFFINE), (big < 50).astype(np.uint8))
    np.testing.assert_array_equal(np.sort(small.foreground), np.arange(50))  # all of them


def test_without_masks_a_cts_foreground_is_its_body_not_the_air() -> None:
    rng = np.random.default_rng(1)
    image, _ = ct_case(rng)
    air = image == -1000
    image[air] += rng.integers(-20, 21, int(air.sum())).astype(np.int16)  # noisy air
    fp = case_fingerprint("c", Image(image, AFFINE))  # classification: no mask
    body = image[image > -500]
    np.testing.assert_array_equal(np.sort(fp.foreground), np.sort(body).astype(np.float32))
    mr, _ = mr_case(np.random.default_rng(1))
    fp = case_fingerprint("m", Image(mr, AFFINE))
    assert fp.foreground_voxels == np.count_nonzero(mr > 0)  # above the background (0)


def test_the_fingerprint_is_cached_until_a_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = dataset(tmp_path, ct_case)
    first = dataset_fingerprint(tmp_path, cases, "segmentation")
    assert (tmp_path / "fingerprints.json").is_file()

    def no_reading(*args, **kwargs):
        raise AssertionError("the cached fingerprint should have been used")

    with monkeypatch.context() as patch:
        patch.setattr(fingerprint_module, "read_image", no_reading)
        assert dataset_fingerprint(tmp_path, cases, "segmentation") == first
    image = read_image(cases[0].image).array.copy()
    image[image > -1000] += 500  # a changed file: a new fingerprint
    write_nifti(image, AFFINE, cases[0].image)
    changed = dataset_fingerprint(tmp_path, cases, "segmentation")
    assert changed["intensity"]["p99_5"] > first["intensity"]["p99_5"]


def test_unresolved_auto_cannot_build_a_loader() -> None:
    with pytest.raises(ConfigError, match="resolved from the training cases"):
        loader_settings(load_config())


def test_a_runs_saved_config_never_says_auto(trained: Path) -> None:
    saved = yaml.safe_load((trained / "config.yaml").read_text(encoding="utf-8"))
    assert load_config().data.normalization == "auto"
    # The tiny dataset: N(0, 20) intensities, no air: per-image z-score.
    assert saved["data"]["normalization"] == "mr" and saved["data"]["window"] is None
    assert saved["data"]["orientation"] == "RAS"
