"""``sweep`` and ``ablate`` can vary the augmentation strengths (``data.augmentation.*``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.utils.errors import ConfigError
from {{ cookiecutter.package_name }}.workflow.ablate import plan
from {{ cookiecutter.package_name }}.workflow.space import grid_points, load_space


def write_space(root: Path, text: str) -> Path:
    path = root / "space.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_sweep_space_can_name_augmentation_keys(project: Path) -> None:
    space = load_space(
        write_space(
            project,
            "data.augmentation.rotate_degrees: {type: float, low: 0.0, high: 20.0, step: 10.0}\n"
            "data.augmentation.flip: [true, false]\n",
        )
    )
    assert [p.key for p in space] == ["data.augmentation.rotate_degrees", "data.augmentation.flip"]
    assert grid_points(space, "'space.yaml'") == [
        {"data.augmentation.rotate_degrees": d, "data.augmentation.flip": f}
        for d in (0.0, 10.0, 20.0)
        for f in (True, False)
    ]


def test_sweep_space_beyond_a_valid_probability_is_named(project: Path) -> None:
    path = write_space(
        project, "data.augmentation.noise_probability: {type: float, low: 0.0, high: 1.5}\n"
    )
    expected = "'data.augmentation.noise_probability' = 1.5 is not valid"
    with pytest.raises(ConfigError, match=expected):
        load_space(path)


def test_ablate_can_try_an_augmentation_strength(project: Path) -> None:
    changes = plan([], ["data.augmentation.intensity_shift=0.0"])
    assert [c.run_name for c in changes] == [
        "ablate-baseline",
        "ablate-data.augmentation.intensity_shift-0.0",
    ]
    assert changes[1].overrides[0] == "data.augmentation.intensity_shift=0.0"
