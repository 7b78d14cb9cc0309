"""One typed configuration for every command.

The defaults live here (the dataclasses) and in ``configs/default.yaml``; a preset
(``configs/experiments/<name>.yaml``, chosen with ``experiment=<name>`` or ``--config FILE``) and
``key=value`` overrides from the command line are merged on top. OmegaConf does the merging and
type conversion; this module checks every key first so that a typo is reported with the key's full
name, the file it came from and the keys it could have meant, and checks values that a type alone
cannot (``device``, positive sizes).

Example:
    >>> cfg = load_config(["train.lr=3e-4", "run.name=small-lr"])
    >>> cfg.train.lr
    0.0003
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from . import paths
from .utils.errors import ConfigError
from .utils.io import atomic_write_text


@dataclass
class AugmentationConfig:
    """How strongly training images are augmented (``data.augment`` switches it all on or off).

    The strengths live here only: :class:`.data.augment.AugmentSettings` takes its defaults from
    these, and ``configs/default.yaml`` mirrors them (a test checks both).
    """

    flip: bool = True  # mirror each axis with probability 0.5
    rotate90: bool = True  # random quarter turns in the first two axes (when of equal length)
    rotate_degrees: float = 10.0  # largest small-rotation angle in the first two axes; 0 = off
    rotate_probability: float = 0.2  # how often the small rotation is applied
    intensity_scale: float = 0.1  # multiply intensities by a factor in [1 - s, 1 + s]; 0 = off
    intensity_shift: float = 0.1  # add an offset in [-s, s] (normalized units); 0 = off
    noise_std: float = 0.05  # largest std of added Gaussian noise (normalized units); 0 = off
    noise_probability: float = 0.15  # how often noise is added


@dataclass
class DataConfig:
    """Where the data is, which fold to use, and how images become tensors."""

    root: str = "data/dummy"  # folder with manifest.csv and splits.json, relative to the project
    fold: int = 0  # index into splits.json "folds"
    format: str = "{{ cookiecutter.image_format }}"  # nifti, dicom or png
    cache_dir: str = "data/cache"  # decoded, preprocessed arrays (safe to delete)
    patch_size: list[int] = field(default_factory=lambda: {{ "[48, 48, 32]" if cookiecutter.spatial_dims == "3" else "[96, 96]" }})
    foreground_fraction: float = 0.5  # share of training patches centered on foreground
    target_spacing: list[float] | None = None  # resample to this spacing (mm); None keeps it
    # auto: ct, mr or zscore from the training cases' fingerprint (train prints why; the run's
    # config.yaml records the resolved value and window); or ct, mr, zscore, none explicitly.
    normalization: str = "auto"
    window: list[float] | None = field(default_factory=lambda: [-200.0, 300.0])  # CT HU clip
    orientation: str = "RAS"  # axis codes of 3D cases in training (RAS, LPS, ..., none: as stored)
    augment: bool = True  # flips, rotations, intensity changes (training only)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)  # strengths
    num_workers: int = 0  # DataLoader worker processes
    # Binary classification: the class whose sensitivity, specificity, PPV and NPV are reported
    # (the abnormal one). "" = the second class in sorted order, printed and recorded.
    positive_class: str = "{{ 'nodule' if cookiecutter.task == 'classification' else '' }}"
    # Segmentation: a name per label value, background first, e.g. [background, edema, tumor].
    # [] = the label names of manifest.json (a Decathlon dataset.json), else class_<k>.
    labels: list[str] = field(default_factory=list)


@dataclass
class ModelConfig:
    """Which network to build and its size and regularization."""

    name: str = "{{ 'unet' if cookiecutter.task == 'segmentation' else 'cnn' }}"
    width: int = 16  # channels of the first level; doubles per level
    depth: int = 4  # resolution levels
    norm: str = "batch"  # batch, instance, group (batch-size independent) or none
    activation: str = "relu"  # relu, leaky_relu, elu, tanh, sigmoid (sets the initialization)
    residual: bool = False  # residual blocks
    dropout: float = 0.0  # dropout after pooling / before dense layers
    spatial_dropout: float = 0.0  # channel dropout in convolutions
    pretrained: str = ""  # local weights file; nothing is downloaded
    freeze: int = 0  # freeze the first N blocks of a pretrained model


@dataclass
class TrainConfig:
    """Optimization, loss and regularization settings."""

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
    overfit: bool = False  # tiny subset, no regularization: can the model fit the data at all?
    # The preset the run was made with (configs/experiments/<name>.yaml), recorded by
    # experiment=<name> or --config configs/experiments/<name>.yaml; "" = none.
    experiment: str = ""
    tracking: str = "{{ cookiecutter.tracking }}"  # csv (run folder only), tensorboard, mlflow
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)


DEVICES = ("auto", "cpu", "cuda")
PRESET_NAME = r"[A-Za-z0-9_-]+"  # configs/experiments/<name>.yaml
TASKS = ("segmentation", "classification")
FORMATS = ("nifti", "dicom", "png")
CHOICES = {
    "data.normalization": ("auto", "ct", "mr", "zscore", "none"),
    "model.norm": ("batch", "instance", "group", "none"),
    "model.activation": ("relu", "leaky_relu", "elu", "tanh", "sigmoid"),
    "train.optimizer": ("adam", "adamw", "sgd"),
    "train.schedule": ("none", "exponential", "cosine", "step"),
    "train.loss": ("dice_ce", "ce", "focal"),
    "train.grad_clip_mode": ("norm", "value"),
    "tracking": ("csv", "tensorboard", "mlflow"),
    "eval.calibrate": ("none", "temperature"),
}


# MONITORS, the validation metrics a run can select its best epoch by (the default first, then
# every other metric of the metric registry, metrics/registry.py, then val_loss), is the
# registry's: read through __getattr__ below, so that importing this module (as every command's
# --help does) does not import the registry and with it NumPy and SciPy.


def _metric_registry() -> ModuleType:
    """The metric registry (``metrics/registry.py``), imported on first use."""
    from .metrics import registry

    return registry


def __getattr__(name: str) -> Any:
    """``MONITORS``: the registry's ``{task: monitor columns}``, imported when first asked for."""
    if name == "MONITORS":
        return _metric_registry().MONITORS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


def data_root(cfg: Config) -> Path:
    """The dataset folder of ``data.root``: the path itself when absolute, else in the project.

    ``cfg.data.root`` keeps the text the user wrote (a run's ``config.yaml`` and the test-set
    records hold it unchanged, so a project folder can be moved); every command that opens the
    data resolves it here, against the project root of the moment.

    Args:
        cfg: the configuration.

    Returns:
        The absolute folder (it may not exist).
    """
    return paths.resolve(cfg.data.root)


def monitored_metric(cfg: Config) -> tuple[str, str]:
    """The metrics.csv column that selects the best epoch, and ``"max"`` or ``"min"``."""
    name = cfg.train.monitor
    registry = _metric_registry()
    if name == "auto":
        name = registry.MONITORS[cfg.task][0]
    return name, registry.monitor_mode(name)


def _select(cfg: Config, key: str) -> Any:
    """The value of a dotted key, e.g. ``train.loss`` (plain attribute access: fast)."""
    value: Any = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _augmentation_checks(aug: AugmentationConfig) -> list[tuple[bool, str, str]]:
    """The ``(ok, key, expected)`` checks of ``data.augmentation.*`` for :func:`validate`."""
    key = "data.augmentation."
    return [
        (0 <= aug.rotate_degrees <= 180, key + "rotate_degrees", "0 (off) to 180 degrees"),
        (0 <= aug.rotate_probability <= 1, key + "rotate_probability", "a value in [0, 1]"),
        (0 <= aug.intensity_scale < 1, key + "intensity_scale", "a value in [0, 1)"),
        (aug.intensity_shift >= 0, key + "intensity_shift", "0 (off) or more"),
        (aug.noise_std >= 0, key + "noise_std", "0 (off) or more"),
        (0 <= aug.noise_probability <= 1, key + "noise_probability", "a value in [0, 1]"),
    ]


def _axis_codes(code: object) -> bool:
    """Whether ``code`` names an orientation (one letter of each pair L/R, P/A, I/S) or is
    ``none`` (each file's own axes)."""
    text = str(code).upper()
    if text == "NONE":
        return True
    pairs = ("LR", "PA", "IS")
    used = sorted(next((i for i, pair in enumerate(pairs) if c in pair), -1) for c in text)
    return len(text) == 3 and used == [0, 1, 2]


def validate(cfg: Config) -> Config:
    """Check the values that a type alone cannot; return ``cfg`` unchanged."""
    monitors = _metric_registry().MONITORS.get(cfg.task, ())
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
        (
            _axis_codes(cfg.data.orientation),
            "data.orientation",
            "three axis codes, one of each pair L/R, P/A, I/S (e.g. RAS, LPS), or none",
        ),
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
        *_augmentation_checks(cfg.data.augmentation),
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
            cfg.train.monitor in ("auto", *monitors),
            "train.monitor",
            f"auto or one of {', '.join(monitors)}",
        ),
        (
            bool(cfg.run.name.strip()) and not set(cfg.run.name) & set('/\\:*?"<>|'),
            "run.name",
            "a non-empty name usable in a folder name",
        ),
        (
            re.fullmatch(PRESET_NAME, cfg.experiment) is not None or cfg.experiment == "",
            "experiment",
            "'' or a preset name (letters, digits, '_', '-') of configs/experiments/",
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


def experiments_dir() -> Path:
    """``configs/experiments/``: the presets, one ``<name>.yaml`` each."""
    return paths.configs_dir() / "experiments"


def list_presets() -> list[str]:
    """The names of the presets in ``configs/experiments/``, sorted (``[]`` without the folder)."""
    folder = experiments_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def preset_file(name: str) -> Path:
    """The file of preset ``name``: ``configs/experiments/<name>.yaml``.

    Args:
        name: the preset's name, e.g. ``cpu_quick`` (letters, digits, ``_`` and ``-``).

    Returns:
        The path of the file, which exists.

    Raises:
        ConfigError: no such preset; the message lists the presets there are.
    """
    file = experiments_dir() / f"{name}.yaml"
    if re.fullmatch(PRESET_NAME, name) is None or not file.is_file():
        presets = list_presets()
        close = difflib.get_close_matches(name, presets, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(
            f"no preset '{name}' in {experiments_dir()}; {hint}"
            f"the presets are: {', '.join(presets) or 'none'}"
        )
    return file


def _read_yaml(file: Path) -> Mapping[str, Any]:
    """The mapping of keys to values in the YAML file ``file`` (``{}`` when it is empty).

    Raises:
        ConfigError: the file is missing, is not valid YAML, or holds something else than a
            mapping.
    """
    if not file.is_file():
        raise ConfigError(f"config file '{file}' does not exist")
    try:
        values = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        first_line = str(exc).splitlines()[0]
        raise ConfigError(f"config file '{file}' is not valid YAML: {first_line}") from None
    if not isinstance(values, Mapping):
        raise ConfigError(f"config file '{file}' must hold a mapping of keys to values")
    return values


def _flatten(values: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested mappings as ``(dotted key, value)`` pairs, in file order."""
    pairs: list[tuple[str, Any]] = []
    for key, value in values.items():
        if isinstance(value, Mapping):
            pairs += _flatten(value, f"{prefix}{key}.")
        else:
            pairs.append((f"{prefix}{key}", value))
    return pairs


def _override_text(value: Any) -> str:
    """A value as the right-hand side of a ``key=value`` override (``true``, ``[1.6, 2.5]``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(_override_text(v) for v in value) + "]"
    return str(value)


def preset_overrides(name: str) -> list[str]:
    """The settings of preset ``name`` as ``key=value`` overrides, in file order.

    Args:
        name: the preset's name, e.g. ``demo``.

    Returns:
        The overrides, e.g. ``["train.lr=0.003", "data.patch_size=[32, 32, 32]"]``; given to
        :func:`load_config` they give the same config as ``experiment=<name>`` (but for the
        ``experiment`` key itself).

    Raises:
        ConfigError: no such preset, or its file is not a valid mapping.
    """
    values = _read_yaml(preset_file(name))
    return [f"{key}={_override_text(value)}" for key, value in _flatten(values)]


def _requested_preset(overrides: Sequence[str]) -> str:
    """The preset named by the last ``experiment=<name>`` override ("" when none names one)."""
    name = ""
    for text in overrides:
        key, sep, value = text.partition("=")
        if sep and key.strip() == "experiment":
            name = value.strip()
    return name


def _is_preset(file: Path) -> bool:
    """Whether ``file`` lies in the project's ``configs/experiments/``."""
    return file.resolve().parent == experiments_dir().resolve()


def load_config(overrides: Sequence[str] = (), path: str | Path | None = None) -> Config:
    """Build the run's configuration, each layer over the one before.

    1. the dataclass defaults of :class:`Config`;
    2. ``configs/default.yaml`` of the project (when it has one);
    3. the file ``path`` (``--config``): a preset holding only the keys it changes, or a whole
       config such as a run's ``config.yaml``;
    4. the preset of the last ``experiment=<name>`` override, ``configs/experiments/<name>.yaml``;
    5. the ``key=value`` overrides, in order.

    The key ``experiment`` records the preset: ``<name>`` of ``experiment=<name>``, or the file
    name of a ``path`` in ``configs/experiments/`` (a file that sets ``experiment`` itself, like
    a run's ``config.yaml``, keeps its value).

    Args:
        overrides: ``key=value`` strings, e.g. ``["experiment=cpu_quick", "train.lr=3e-4"]``.
        path: a YAML file of keys merged over ``configs/default.yaml``, or ``None``.

    Returns:
        The merged, type-checked :class:`Config`.

    Raises:
        ConfigError: unreadable file, unknown preset, unknown key, wrong type or invalid value;
            the message names the key and the file or override it came from.
    """
    cfg = OmegaConf.structured(Config)
    default = paths.configs_dir() / "default.yaml"
    if default.is_file():
        cfg = _merge(cfg, _read_yaml(default), f"'{default.name}'")
    if path is not None:
        file = Path(path)
        values = _read_yaml(file)
        cfg = _merge(cfg, values, f"'{file.name}'")
        if "experiment" not in values and _is_preset(file):
            cfg = _merge(cfg, {"experiment": file.stem}, f"'{file.name}'")
    name = _requested_preset(overrides)
    if name:
        file = preset_file(name)
        cfg = _merge(cfg, _read_yaml(file), f"'configs/experiments/{file.name}'")
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
