"""One typed configuration for every command.

The defaults live here (the dataclasses) and in ``configs/default.yaml``; ``key=value`` overrides
from the command line are merged on top. OmegaConf does the merging and type conversion; this
module checks every key first so that a typo is reported with the key's full name and the keys it
could have meant, and checks values that a type alone cannot (``device``, positive sizes).

Example:
    >>> cfg = load_config(["train.lr=3e-4", "run.name=small-lr"])
    >>> cfg.train.lr
    0.0003
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from . import paths
from .utils.errors import ConfigError
from .utils.io import atomic_write_text


@dataclass
class DataConfig:
    """Where the data is and which fold to use."""

    root: str = "data/dummy"  # folder with manifest.csv and splits.json, relative to the project
    fold: int = 0  # index into splits.json "folds"
    format: str = "{{ cookiecutter.image_format }}"  # nifti, dicom or png


@dataclass
class ModelConfig:
    """Which network to build."""

    name: str = "{{ 'unet' if cookiecutter.task == 'segmentation' else 'cnn' }}"


@dataclass
class TrainConfig:
    """Optimisation settings."""

    epochs: int = 20
    batch_size: int = {{ 2 if cookiecutter.spatial_dims == "3" else 8 }}
    lr: float = 1e-3


@dataclass
class RunConfig:
    """How the run folder is named."""

    name: str = "baseline"


@dataclass
class Config:
    """The whole configuration; ``configs/default.yaml`` mirrors it."""

    seed: int = 42
    deterministic: bool = True
    device: str = "auto"
    task: str = "{{ cookiecutter.task }}"
    spatial_dims: int = {{ cookiecutter.spatial_dims }}
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)


DEVICES = ("auto", "cpu", "cuda")
TASKS = ("segmentation", "classification")
FORMATS = ("nifti", "dicom", "png")


def _fields(cls: type) -> dict[str, Any]:
    """Field name -> resolved type of a config dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def known_keys(cls: type = Config, prefix: str = "") -> dict[str, type]:
    """Every dotted key of the config and its type, e.g. ``{"train.lr": float, ...}``."""
    keys: dict[str, type] = {}
    for name, typ in _fields(cls).items():
        if dataclasses.is_dataclass(typ):
            keys.update(known_keys(typ, f"{prefix}{name}."))
        else:
            keys[f"{prefix}{name}"] = typ
    return keys


def _check_keys(
    values: Mapping[str, Any], source: str, cls: type = Config, prefix: str = ""
) -> None:
    """Raise ConfigError for the first key in ``values`` that the config does not have."""
    fields = _fields(cls)
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in fields:
            candidates = list(known_keys())
            close = difflib.get_close_matches(full, candidates, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"unknown config key '{full}' in {source}{hint}")
        typ = fields[key]
        if dataclasses.is_dataclass(typ):
            if not isinstance(value, Mapping):
                example = f"{full}.{next(iter(_fields(typ)))}"
                raise ConfigError(
                    f"config key '{full}' in {source} is a section; set its keys, e.g. '{example}'"
                )
            _check_keys(value, source, typ, f"{full}.")


def parse_override(text: str) -> dict[str, Any]:
    """Turn ``"train.lr=3e-4"`` into ``{"train": {"lr": "3e-4"}}``, nested by the dots."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override '{text}' must look like key=value, e.g. train.lr=3e-4")
    # Scalars stay text: OmegaConf converts them to the key's declared type ("3e-4" -> 0.0003
    # for a float, "yes" -> True for a bool, an error for "ten" as an int). Lists and mappings
    # are parsed as YAML.
    value: Any = raw.strip()
    if value[:1] in ("[", "{"):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(f"override '{text}': value is not valid YAML") from None
    nested: dict[str, Any] = {}
    node = nested
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return nested


def _merge(base: Any, values: Mapping[str, Any], source: str) -> Any:
    """Merge ``values`` into the structured config ``base``, naming the key on a type error."""
    _check_keys(values, source)
    try:
        return OmegaConf.merge(base, values)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        expected = known_keys().get(key)
        name = getattr(expected, "__name__", str(expected))
        value = getattr(exc, "value", None)
        raise ConfigError(f"config key '{key}' in {source} expects {name}, got {value!r}") from None


def validate(cfg: Config) -> Config:
    """Check the values that a type alone cannot; return ``cfg`` unchanged."""
    checks = [
        (cfg.device in DEVICES, "device", f"one of {', '.join(DEVICES)}"),
        (cfg.task in TASKS, "task", f"one of {', '.join(TASKS)}"),
        (cfg.spatial_dims in (2, 3), "spatial_dims", "2 or 3"),
        (cfg.data.format in FORMATS, "data.format", f"one of {', '.join(FORMATS)}"),
        (cfg.data.fold >= 0, "data.fold", "a fold index >= 0"),
        (cfg.train.epochs >= 1, "train.epochs", "at least 1"),
        (cfg.train.batch_size >= 1, "train.batch_size", "at least 1"),
        (cfg.train.lr > 0, "train.lr", "a positive number"),
        (cfg.seed >= 0, "seed", "a non-negative integer"),
        (
            bool(cfg.run.name.strip()) and not set(cfg.run.name) & set('/\\:*?"<>|'),
            "run.name",
            "a non-empty name usable in a folder name",
        ),
    ]
    for ok, key, expected in checks:
        if not ok:
            value = OmegaConf.select(OmegaConf.structured(cfg), key)
            raise ConfigError(f"config key '{key}' = {value!r} is not valid: expected {expected}")
    return cfg


def load_config(overrides: Sequence[str] = (), path: str | Path | None = None) -> Config:
    """Build the run's configuration.

    Args:
        overrides: ``key=value`` strings applied in order after the file, e.g. ``["train.lr=3e-4"]``.
        path: YAML file with defaults; ``configs/default.yaml`` of the project when ``None``
            (the dataclass defaults alone when the project has no such file).

    Returns:
        The merged, type-checked :class:`Config`.

    Raises:
        ConfigError: unreadable file, unknown key, wrong type or invalid value; the message names
            the key and where it came from.
    """
    cfg = OmegaConf.structured(Config)
    file = Path(path) if path is not None else paths.configs_dir() / "default.yaml"
    if path is not None or file.is_file():
        if not file.is_file():
            raise ConfigError(f"config file '{file}' does not exist")
        try:
            values = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            first_line = str(exc).splitlines()[0]
            raise ConfigError(f"config file '{file}' is not valid YAML: {first_line}") from None
        if not isinstance(values, Mapping):
            raise ConfigError(f"config file '{file}' must hold a mapping of keys to values")
        cfg = _merge(cfg, values, f"'{file.name}'")
    for text in overrides:
        cfg = _merge(cfg, parse_override(text), f"override '{text}'")
    return validate(OmegaConf.to_object(cfg))


def to_dict(cfg: Config) -> dict[str, Any]:
    """The config as plain nested dicts (for JSON, YAML or a tracker)."""
    return dataclasses.asdict(cfg)


def to_yaml(cfg: Config) -> str:
    """The config as YAML text, keys in declaration order."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save_config(cfg: Config, path: str | Path) -> Path:
    """Write ``cfg`` as YAML atomically; :func:`load_config` reads it back to an equal config."""
    return atomic_write_text(Path(path), to_yaml(cfg))
