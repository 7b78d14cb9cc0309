"""The typed config: defaults, file, overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.config import (
    Config,
    known_keys,
    load_config,
    parse_override,
    save_config,
)
from {{ cookiecutter.package_name }}.utils.errors import ConfigError

SPEC_KEYS = {
    "seed",
    "data.root",
    "data.fold",
    "train.epochs",
    "train.batch_size",
    "train.lr",
    "model.name",
    "run.name",
    "device",
}


def test_spec_keys_exist() -> None:
    assert set(known_keys()) >= SPEC_KEYS


def test_yaml_file_matches_code_defaults(project: Path) -> None:
    # configs/default.yaml and the dataclasses must not drift apart.
    assert load_config() == Config()


def test_overrides_merge_and_convert_types(project: Path) -> None:
    cfg = load_config(["train.lr=3e-4", "train.epochs=7", "run.name=small-lr", "device=cpu"])
    assert cfg.train.lr == pytest.approx(3e-4)
    assert isinstance(cfg.train.lr, float)
    assert cfg.train.epochs == 7
    assert cfg.run.name == "small-lr"
    assert cfg.device == "cpu"
    # Untouched keys keep their defaults.
    assert cfg.train.batch_size == Config().train.batch_size


def test_later_override_wins(project: Path) -> None:
    assert load_config(["seed=1", "seed=2"]).seed == 2


def test_int_is_accepted_for_float(project: Path) -> None:
    assert load_config(["train.lr=1"]).train.lr == 1.0


@pytest.mark.parametrize(
    ("override", "key"),
    [("train.lrr=0.1", "train.lrr"), ("trian.lr=0.1", "trian"), ("sed=3", "sed")],
)
def test_unknown_key_is_named(project: Path, override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"unknown config key '{key}'"):
        load_config([override])


def test_unknown_key_suggests_the_close_one(project: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'train.lr'"):
        load_config(["train.lrr=0.1"])


@pytest.mark.parametrize(
    ("override", "key"),
    [("train.epochs=ten", "train.epochs"), ("seed=abc", "seed"), ("train.lr=fast", "train.lr")],
)
def test_wrong_type_is_named(project: Path, override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"config key '{key}' .* expects"):
        load_config([override])


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("device=tpu", "device"),
        ("train.epochs=0", "train.epochs"),
        ("train.lr=-1", "train.lr"),
        ("run.name=a/b", "run.name"),
        ("spatial_dims=4", "spatial_dims"),
        ("data.format=png spatial_dims=3", "data.format"),
    ],
)
def test_invalid_values_are_named(project: Path, override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        load_config(override.split())


def test_override_without_equals_sign(project: Path) -> None:
    with pytest.raises(ConfigError, match="must look like key=value"):
        load_config(["train.lr"])


def test_section_cannot_be_set_to_a_value(project: Path) -> None:
    with pytest.raises(ConfigError, match="'train' .* is a section"):
        load_config(["train=3"])


def test_unknown_key_in_yaml_file_names_file(project: Path) -> None:
    bad = project / "bad.yaml"
    bad.write_text("train:\n  epoch: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown config key 'train.epoch' in 'bad.yaml'"):
        load_config(path=bad)


def test_missing_and_broken_files(project: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(path=project / "nope.yaml")
    broken = project / "broken.yaml"
    broken.write_text("train: [1, 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path=broken)


def test_parse_override_nests_by_dots() -> None:
    assert parse_override("train.lr=3e-4") == {"train": {"lr": "3e-4"}}
    assert parse_override("run.name=a=b") == {"run": {"name": "a=b"}}
    assert parse_override("x=[1, 2]") == {"x": [1, 2]}
    assert parse_override("data.window=null") == {"data": {"window": None}}


def test_lists_and_null(project: Path) -> None:
    spacing = [1.0] * (Config().spatial_dims - 1) + [2.5]
    cfg = load_config(["data.window=null", f"data.target_spacing={spacing}"])
    assert cfg.data.window is None
    assert cfg.data.target_spacing == spacing


def test_values_take_the_declared_type(project: Path) -> None:
    cfg = load_config(["train.lr=3e-4", "deterministic=false", "run.name=42", "seed=7"])
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.deterministic is False
    assert cfg.run.name == "42"
    assert cfg.seed == 7


def test_saved_config_loads_back_equal(project: Path) -> None:
    cfg = load_config(["train.lr=0.01", "run.name=saved"])
    path = save_config(cfg, project / "run" / "config.yaml")
    assert load_config(path=path) == cfg
    # The atomic write leaves no temporary files behind.
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]
