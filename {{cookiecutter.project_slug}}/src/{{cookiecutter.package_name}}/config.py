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
    """Where the data is, which fold to use, and how images become tensors."""

    root: str = "data/dummy"  # folder with manifest.csv and splits.json, relative to the project
    fold: int = 0  # index into splits.json "folds"
    format: str = "{{ cookiecutter.image_format }}"  # nifti, dicom or png
    cache_dir: str = "data/cache"  # decoded, preprocessed arrays (safe to delete)
    patch_size: list[int] = field(default_factory=lambda: {{ "[48, 48, 32]" if cookiecutter.spatial_dims == "3" else "[96, 96]" }})
    foreground_fraction: float = 0.5  # share of training patches centred on foreground
    target_spacing: list[float] | None = None  # resample to this spacing (mm); None keeps it
    normalization: str = "{{ "ct" if cookiecutter.image_format != "png" and (cookiecutter.task == "segmentation" or cookiecutter.spatial_dims == "3") else "zscore" }}"  # ct, mr, zscore, none
    window: list[float] | None = field(default_factory=lambda: [-200.0, 300.0])  # CT HU clip
    augment: bool = True  # flips, rotations, intensity changes (training only)
    num_workers: int = 0  # DataLoader worker processes
    # Binary classification: the class whose sensitivity, specificity, PPV and NPV are reported
    # (the abnormal one). "" = the second class in sorted order, printed and recorded.
    positive_class: str = "{{ 'nodule' if cookiecutter.task == 'classification' else '' }}"
    # Segmentation: a name per label value, background first, e.g. [background, edema, tumor].
    # [] = the label names of manifest.json (a Decathlon dataset.json), else class_<k>.
    labels: list[str] = field(default_factory=list)


@dataclass
class ModelConfig:
    """Which network to build and its size and regularisation."""

    name: str = "{{ 'unet' if cookiecutter.task == 'segmentation' else 'cnn' }}"
    width: int = 16  # channels of the first level; doubles per level
    depth: int = 4  # resolution levels
    norm: str = "batch"  # batch, instance, group (batch-size independent) or none
    activation: str = "relu"  # relu, leaky_relu, elu, tanh, sigmoid (sets the initialisation)
    residual: bool = False  # residual blocks
    dropout: float = 0.0  # dropout after pooling / before dense layers
    spatial_dropout: float = 0.0  # channel dropout in convolutions
    pretrained: str = ""  # local weights file; nothing is downloaded
    freeze: int = 0  # freeze the first N blocks of a pretrained model


@dataclass
class TrainConfig:
    """Optimisation, loss and regularisation settings."""

    epochs: int = 20
    batch_size: int = {{ 2 if cookiecutter.spatial_dims == "3" and cookiecutter.task == "segmentation" else 8 }}
    lr: float = 1e-3
    optimizer: str = "adam"  # adam, adamw, sgd (with momentum)
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    schedule: str = "none"  # none, exponential, cosine, step
    warmup_epochs: int = 0  # linear warm-up before the schedule
    gamma: float = 0.95  # exponential / step decay factor
    step_size: int = 10  # epochs per step of the step schedule
    loss: str = "{{ 'dice_ce' if cookiecutter.task == 'segmentation' else 'ce' }}"  # dice_ce, ce, focal
    class_weights: bool = False  # weight the loss by inverse class frequency
    grad_clip: float = 0.0  # 0 = off
    grad_clip_mode: str = "norm"  # norm or value
    input_noise: float = 0.0  # std of Gaussian noise added to inputs (training only)
    feature_noise: float = 0.0  # std of Gaussian noise added to features (training only)
    l1_activity: float = 0.0  # L1 penalty on the last features
    l2_activity: float = 0.0  # L2 penalty on the last features
    patience: int = 10  # early stopping: epochs without improvement; 0 = off
    min_delta: float = 0.0  # early stopping: smallest change that counts
    monitor: str = "auto"  # metrics.csv column that picks best.pt; auto: val_dice / val_auroc
    steps_per_epoch: int = 0  # 0 = one pass over the training set
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    channels_last: bool = True  # memory format on CUDA (ignored on CPU)
    compile: bool = False  # torch.compile the model
    ddp_timeout: int = 1800  # seconds a torchrun process waits for the others (e.g. validation)


@dataclass
class EvalConfig:
    """How ``evaluate`` measures: tolerances and conventions that a reported number depends on."""

    nsd_tolerance: float = 2.0  # mm: boundary distance counted as agreement by surface Dice
    # Binary classification: the decision threshold is chosen on the validation cases by Youden's
    # J (0) or as the highest one reaching this sensitivity, then applied unchanged to the test set.
    target_sensitivity: float = 0.0
    calibrate: str = "none"  # classification: none, or temperature (fitted on validation)


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
    overfit: bool = False  # tiny subset, no regularisation: can the model fit the data at all?
    tracking: str = "{{ cookiecutter.tracking }}"  # csv (run folder only), tensorboard, mlflow
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)


DEVICES = ("auto", "cpu", "cuda")
TASKS = ("segmentation", "classification")
FORMATS = ("nifti", "dicom", "png")
# Validation metrics a run can select its best epoch by (max is better, except for val_loss).
MONITORS = {
    "segmentation": ("val_dice", "val_loss"),
    "classification": ("val_auroc", "val_balanced_accuracy", "val_accuracy", "val_loss"),
}
CHOICES = {
    "data.normalization": ("ct", "mr", "zscore", "none"),
    "model.norm": ("batch", "instance", "group", "none"),
    "model.activation": ("relu", "leaky_relu", "elu", "tanh", "sigmoid"),
    "train.optimizer": ("adam", "adamw", "sgd"),
    "train.schedule": ("none", "exponential", "cosine", "step"),
    "train.loss": ("dice_ce", "ce", "focal"),
    "train.grad_clip_mode": ("norm", "value"),
    "tracking": ("csv", "tensorboard", "mlflow"),
    "eval.calibrate": ("none", "temperature"),
}


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
    # are parsed as YAML; null (or ~) is None.
    value: Any = raw.strip()
    if value in ("null", "~"):
        value = None
    elif value[:1] in ("[", "{"):
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


def monitored_metric(cfg: Config) -> tuple[str, str]:
    """The metrics.csv column that selects the best epoch, and ``"max"`` or ``"min"``."""
    name = cfg.train.monitor
    if name == "auto":
        name = MONITORS[cfg.task][0]
    return name, "min" if name == "val_loss" else "max"


def _select(cfg: Config, key: str) -> Any:
    """The value of a dotted key, e.g. ``train.loss`` (plain attribute access: fast)."""
    value: Any = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return value


def validate(cfg: Config) -> Config:
    """Check the values that a type alone cannot; return ``cfg`` unchanged."""
    checks = [
        (cfg.device in DEVICES, "device", f"one of {', '.join(DEVICES)}"),
        (cfg.task in TASKS, "task", f"one of {', '.join(TASKS)}"),
        (cfg.spatial_dims in (2, 3), "spatial_dims", "2 or 3"),
        (cfg.data.format in FORMATS, "data.format", f"one of {', '.join(FORMATS)}"),
        (
            not (cfg.data.format == "png" and cfg.spatial_dims == 3),
            "data.format",
            "nifti or dicom for 3D volumes (PNG holds 2D images only)",
        ),
        (cfg.data.fold >= 0, "data.fold", "a fold index >= 0"),
        (cfg.train.epochs >= 1, "train.epochs", "at least 1"),
        (cfg.train.batch_size >= 1, "train.batch_size", "at least 1"),
        (cfg.train.lr > 0, "train.lr", "a positive number"),
        (cfg.seed >= 0, "seed", "a non-negative integer"),
        (cfg.data.num_workers >= 0, "data.num_workers", "0 or more"),
        (
            len(cfg.data.patch_size) == cfg.spatial_dims and min(cfg.data.patch_size) >= 8,
            "data.patch_size",
            f"{cfg.spatial_dims} sizes of at least 8 voxels",
        ),
        (0 <= cfg.data.foreground_fraction <= 1, "data.foreground_fraction", "a value in [0, 1]"),
        (
            cfg.data.target_spacing is None
            or (
                len(cfg.data.target_spacing) == cfg.spatial_dims
                and min(cfg.data.target_spacing) > 0
            ),
            "data.target_spacing",
            f"null or {cfg.spatial_dims} positive spacings in mm",
        ),
        (
            cfg.data.window is None
            or (len(cfg.data.window) == 2 and cfg.data.window[0] < cfg.data.window[1]),
            "data.window",
            "null or [low, high] with low < high",
        ),
        (
            all(isinstance(n, str) and n.strip() for n in cfg.data.labels)
            and len(set(cfg.data.labels)) == len(cfg.data.labels)
            and (not cfg.data.labels or len(cfg.data.labels) >= 2),
            "data.labels",
            "[] or distinct non-empty names, one per label value from 0 (the background)",
        ),
        (cfg.model.width >= 1, "model.width", "at least 1"),
        (1 <= cfg.model.depth <= 6, "model.depth", "1 to 6"),
        (0 <= cfg.model.dropout < 1, "model.dropout", "a value in [0, 1)"),
        (0 <= cfg.model.spatial_dropout < 1, "model.spatial_dropout", "a value in [0, 1)"),
        (cfg.model.freeze >= 0, "model.freeze", "0 or more"),
        (0 <= cfg.train.momentum < 1, "train.momentum", "a value in [0, 1)"),
        (cfg.train.weight_decay >= 0, "train.weight_decay", "0 or more"),
        (0 <= cfg.train.warmup_epochs < cfg.train.epochs, "train.warmup_epochs", "0 to epochs - 1"),
        (0 < cfg.train.gamma <= 1, "train.gamma", "a value in (0, 1]"),
        (cfg.train.step_size >= 1, "train.step_size", "at least 1"),
        (cfg.train.grad_clip >= 0, "train.grad_clip", "0 (off) or more"),
        (cfg.train.input_noise >= 0, "train.input_noise", "0 or more"),
        (cfg.train.feature_noise >= 0, "train.feature_noise", "0 or more"),
        (cfg.train.l1_activity >= 0, "train.l1_activity", "0 or more"),
        (cfg.train.l2_activity >= 0, "train.l2_activity", "0 or more"),
        (cfg.train.patience >= 0, "train.patience", "0 (off) or more"),
        (cfg.train.min_delta >= 0, "train.min_delta", "0 or more"),
        (cfg.train.ddp_timeout >= 1, "train.ddp_timeout", "at least 1 (seconds)"),
        (cfg.eval.nsd_tolerance >= 0, "eval.nsd_tolerance", "0 or more (mm)"),
        (
            0 <= cfg.eval.target_sensitivity <= 1,
            "eval.target_sensitivity",
            "0 (Youden's J) or a sensitivity in (0, 1]",
        ),
        (cfg.train.steps_per_epoch >= 0, "train.steps_per_epoch", "0 (whole set) or more"),
        (
            cfg.train.monitor in ("auto", *MONITORS.get(cfg.task, ())),
            "train.monitor",
            f"auto or one of {', '.join(MONITORS.get(cfg.task, ()))}",
        ),
        (
            bool(cfg.run.name.strip()) and not set(cfg.run.name) & set('/\\:*?"<>|'),
            "run.name",
            "a non-empty name usable in a folder name",
        ),
    ]
    for key, allowed in CHOICES.items():
        value = _select(cfg, key)
        checks.append((value in allowed, key, f"one of {', '.join(allowed)}"))
    if cfg.task == "classification":
        checks.append(
            (cfg.train.loss in ("ce", "focal"), "train.loss", "ce or focal for classification")
        )
    else:
        checks.append(
            (
                cfg.eval.calibrate == "none",
                "eval.calibrate",
                "none (calibration is for classification)",
            )
        )
    for ok, key, expected in checks:
        if not ok:
            value = _select(cfg, key)
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
