"""The typed config: defaults, file, overrides, and errors that name the key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from {{ cookiecutter.package_name }}.config import (
    Config,
    data_root,
    known_keys,
    list_presets,
    load_config,
    parse_override,
    preset_overrides,
    save_config,
    to_dict,
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


def _dotted(values: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(_dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def test_yaml_file_lists_every_key(project: Path) -> None:
    # Every key of the dataclasses is written out in configs/default.yaml (and no other), with
    # the dataclass default: a key missing from the file would still load equal to Config().
    written = _dotted(yaml.safe_load((project / "configs" / "default.yaml").read_text("utf-8")))
    assert set(written) == set(known_keys())
    defaults = _dotted(to_dict(Config()))
    assert {k: v for k, v in written.items() if v != defaults[k]} == {}


def test_augmentation_strengths_are_config_keys(project: Path) -> None:
    keys = {k for k in known_keys() if k.startswith("data.augmentation.")}
    assert keys == {
        f"data.augmentation.{name}"
        for name in (
            "flip",
            "rotate90",
            "rotate_degrees",
            "rotate_probability",
            "intensity_scale",
            "intensity_shift",
            "noise_std",
            "noise_probability",
        )
    }
    cfg = load_config(["data.augmentation.rotate_degrees=25", "data.augmentation.flip=false"])
    assert cfg.data.augmentation.rotate_degrees == 25.0
    assert cfg.data.augmentation.flip is False
    assert cfg.data.augment is True  # the on/off switch is its own key


@pytest.mark.parametrize(
    "override",
    [
        "data.augmentation.rotate_probability=1.5",
        "data.augmentation.noise_probability=-0.1",
        "data.augmentation.intensity_scale=1.0",
        "data.augmentation.intensity_shift=-0.1",
        "data.augmentation.noise_std=-1",
        "data.augmentation.rotate_degrees=181",
    ],
)
def test_invalid_augmentation_values_are_named(project: Path, override: str) -> None:
    key = override.partition("=")[0]
    with pytest.raises(ConfigError, match=f"config key '{key}' = .* expected"):
        load_config([override])


# --- Presets: configs/experiments/<name>.yaml ----------------------------------------------------


def _write_preset(project: Path, name: str, text: str) -> Path:
    file = project / "configs" / "experiments" / f"{name}.yaml"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text, encoding="utf-8")
    return file


def test_preset_merges_between_default_yaml_and_overrides(project: Path) -> None:
    # Each layer sets a key the next one leaves alone, and one key it overrides.
    default = project / "configs" / "default.yaml"
    text = default.read_text(encoding="utf-8")
    default.write_text(text.replace("seed: 42", "seed: 5", 1), encoding="utf-8")
    _write_preset(project, "mine", "train:\n  lr: 0.01\n  epochs: 3\nseed: 6\n")
    cfg = load_config(["experiment=mine", "seed=7", "train.lr=0.02"])
    assert cfg.train.epochs == 3  # preset over default.yaml and the dataclass
    assert cfg.train.lr == pytest.approx(0.02)  # override over preset
    assert cfg.seed == 7
    assert load_config(["experiment=mine"]).seed == 6  # preset over default.yaml
    assert load_config().seed == 5  # default.yaml over the dataclass
    assert cfg.train.batch_size == Config().train.batch_size  # nobody set it: the dataclass
    assert cfg.experiment == "mine"
    assert load_config().experiment == ""


def test_preset_by_path_is_the_same_and_recorded(project: Path) -> None:
    file = _write_preset(project, "mine", "train:\n  epochs: 3\n")
    by_path = load_config(["train.lr=0.02"], file)
    assert by_path == load_config(["experiment=mine", "train.lr=0.02"])
    assert by_path.experiment == "mine"
    # A file outside configs/experiments/ is merged the same way but is not a preset.
    other = project / "elsewhere.yaml"
    other.write_text("train:\n  epochs: 3\n", encoding="utf-8")
    assert load_config(path=other).train.epochs == 3
    assert load_config(path=other).experiment == ""


def test_saved_run_config_keeps_its_preset_without_applying_it_again(project: Path) -> None:
    _write_preset(project, "mine", "train:\n  epochs: 3\n  lr: 0.01\n")
    cfg = load_config(["experiment=mine", "train.epochs=1"])
    path = save_config(cfg, project / "run" / "config.yaml")
    loaded = load_config(path=path)
    assert loaded == cfg
    assert (loaded.experiment, loaded.train.epochs) == ("mine", 1)


def test_unknown_key_in_preset_names_file_key_and_suggestion(project: Path) -> None:
    _write_preset(project, "typo", "train:\n  epoch: 3\n")
    message = (
        "unknown config key 'train.epoch' in 'configs/experiments/typo.yaml'; "
        "did you mean 'train.epochs'?"
    )
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(["experiment=typo"])


def test_unknown_preset_lists_the_presets(project: Path) -> None:
    with pytest.raises(ConfigError, match="no preset 'cpu_quik'.*did you mean 'cpu_quick'"):
        load_config(["experiment=cpu_quik"])
    with pytest.raises(ConfigError, match="no preset '../default'"):
        load_config(["experiment=../default"])  # a name, never a path
    bad = project / "bad.yaml"
    bad.write_text("experiment: a b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="config key 'experiment' = 'a b' is not valid"):
        load_config(path=bad)


def test_later_experiment_override_wins_and_empty_clears_it(project: Path) -> None:
    cfg = load_config(["experiment=overfit", "experiment=cpu_quick"])
    assert cfg == load_config(["experiment=cpu_quick"])
    assert load_config(["experiment=overfit", "experiment="]) == load_config()


def _value(cfg: Config, key: str) -> object:
    """The value of a dotted key such as ``train.lr``."""
    value: object = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return value


def test_shipped_presets_load_and_change_only_what_they_say(project: Path) -> None:
    assert {"cpu_quick", "demo", "overfit"} <= set(list_presets())  # and any you add
    base = load_config()
    for name in list_presets():
        cfg = load_config([f"experiment={name}"])  # valid for this task and dimensions
        changed = {key for key in known_keys() if _value(cfg, key) != _value(base, key)}
        said = {text.partition("=")[0] for text in preset_overrides(name)}
        assert changed - {"experiment"} <= said, name
        assert cfg.experiment == name
    assert load_config(["experiment=overfit"]).overfit is True
    quick = load_config(["experiment=cpu_quick"])
    assert (quick.device, quick.train.epochs) == ("cpu", 2)


def test_data_root_is_resolved_against_the_project_and_saved_as_written(
    project: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cfg = load_config(["data.root=data/mine"])
    assert data_root(cfg) == project / "data" / "mine"
    saved = save_config(cfg, project / "run" / "config.yaml")
    assert "root: data/mine\n" in saved.read_text(encoding="utf-8")  # as the user wrote it
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    assert data_root(load_config([f"data.root={elsewhere}"])) == elsewhere  # absolute: itself
