"""The search space of ``sweep``: a YAML file of config keys and the values each may take.

Example (``configs/sweep.yaml``)::

    train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    model.dropout: {type: float, low: 0.0, high: 0.3, step: 0.1}
    train.batch_size: {type: int, low: 2, high: 8, step: 2}
    train.weight_decay: {type: categorical, choices: [0.0, 1.0e-4]}
    train.optimizer: [adam, sgd]          # a plain list is short for categorical

Every key is a config key (an unknown one is an error naming it, before anything trains), and the
bounds and choices are checked by the config loader like ``key=value`` overrides. Grid search
needs a finite set of values per key: ``categorical``, ``int``, or ``float`` with a ``step``.
"""

from __future__ import annotations

import difflib
import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml

from ..config import known_keys, load_config
from ..utils.errors import ConfigError, ProjectError

TYPES = ("float", "int", "categorical")
FIELDS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
}
# Keys a sweep must not vary: the run's name is set per trial, the monitor is the objective.
FIXED = {
    "run.name": "each trial's run is named <study>-t<number>",
    "train.monitor": "it defines the objective; set it as an override for the whole sweep",
    "task": "it is fixed by the project",
    "spatial_dims": "it is fixed by the project",
}


@dataclass(frozen=True)
class Param:
    """One searched config key: a float or int range, or a list of choices."""

    key: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        """Ask ``trial`` for this key's value (the trial's sampler picks it)."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(
                self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def grid_values(self, source: str) -> list[Any]:
        """Every value of this key in a grid search, in order.

        Raises:
            ConfigError: a float range without ``step`` (infinitely many values).
        """
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.step is None:
            raise ConfigError(
                f"grid search needs a finite set of values, but '{self.key}' in {source} is a "
                f"continuous float range [{self.low:g}, {self.high:g}]: give it a step (e.g. "
                f"step: {(self.high - self.low) / 4:g}), list the values as "
                "{type: categorical, choices: [...]}, or use --method random or tpe"
            )
        count = math.floor((self.high - self.low) / self.step + 1e-9)
        return [round(self.low + i * self.step, 12) for i in range(count + 1)]

    def to_dict(self) -> dict[str, Any]:
        """The parameter as plain data (stored with the study to recognise its space)."""
        data = asdict(self)
        data["choices"] = list(self.choices)
        return data


def as_override(key: str, value: Any) -> str:
    """``key=value`` text that :func:`load_config` reads back to ``value``."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = repr(value)
    else:
        text = str(value)
    return f"{key}={text}"


def _number(value: Any, what: str, integer: bool = False) -> float | int:
    """``value`` as a number; YAML reads ``1e-4`` (no dot) as text, so text is parsed too."""
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = int(value) if integer else float(value)
        except ValueError:
            raise ValueError(f"{what} must be a number, got {value!r}") from None
    if integer and not isinstance(value, int):
        raise ValueError(f"{what} must be a whole number, got {value!r}")
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return value


def _choice(value: Any, typ: type) -> Any:
    """A categorical choice converted to the config key's type (``"1e-4"`` to 1e-4 for floats)."""
    if value is None or isinstance(value, list | dict):
        raise ValueError(
            f"choices must be single values (numbers, text, true/false), got {value!r}"
        )
    if typ is float and not isinstance(value, bool):
        return float(_number(value, "a choice"))
    if typ is int:
        return int(_number(value, "a choice", integer=True))
    return value


def _param(key: str, spec: Any, typ: type) -> Param:
    """Parse one entry of the space file (raises ValueError with what is wrong)."""
    if isinstance(spec, list):
        spec = {"type": "categorical", "choices": spec}
    if not isinstance(spec, dict):
        raise ValueError(
            "expected a mapping with a type (float, int or categorical) and its fields, "
            f"or a list of choices; got {spec!r}"
        )
    kind = spec.get("type")
    if kind not in TYPES:
        raise ValueError(f"type must be one of {', '.join(TYPES)}, got {kind!r}")
    unknown = sorted(set(spec) - FIELDS[kind])
    if unknown:
        raise ValueError(
            f"unknown field '{unknown[0]}' for type {kind} (fields: {', '.join(sorted(FIELDS[kind]))})"
        )
    if typ not in (int, float, bool, str):
        raise ValueError(
            f"the key holds a {getattr(typ, '__name__', typ)}: only single values can be searched"
        )
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ValueError("choices must be a non-empty list")
        values = tuple(_choice(c, typ) for c in choices)
        if len(set(values)) < len(values):
            raise ValueError(f"choices repeat a value: {list(values)}")
        return Param(key, kind, choices=values)
    if typ not in (int, float) or (kind == "float" and typ is int):
        allowed = "int or categorical" if typ is int else "categorical"
        raise ValueError(f"type {kind} does not fit this {typ.__name__} key: use {allowed}")
    integer = kind == "int"
    if "low" not in spec or "high" not in spec:
        raise ValueError(f"type {kind} needs low and high")
    low = _number(spec["low"], "low", integer)
    high = _number(spec["high"], "high", integer)
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ValueError(f"log must be true or false, got {log!r}")
    step = spec.get("step")
    if step is not None:
        step = _number(step, "step", integer)
        if step <= 0:
            raise ValueError(f"step must be positive, got {step}")
        if log:
            raise ValueError("log and step cannot be combined")
    if not low < high:
        raise ValueError(f"low must be below high, got low {low} and high {high}")
    if log and low <= 0:
        raise ValueError(f"a log range needs low > 0, got {low}")
    return Param(
        key,
        kind,
        float(low) if not integer else low,
        float(high) if not integer else high,
        log,
        step,
    )


def _check_key(key: Any, source: str) -> type:
    """The config type of ``key``; ConfigError for a key the config lacks or that is fixed."""
    keys = known_keys()
    if not isinstance(key, str) or key not in keys:
        close = difflib.get_close_matches(str(key), list(keys), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"unknown config key '{key}' in search space {source}{hint}")
    if key in FIXED:
        raise ConfigError(
            f"config key '{key}' in search space {source} cannot be searched: {FIXED[key]}"
        )
    return keys[key]


def load_space(
    path: Path, overrides: Sequence[str] = (), config: Path | None = None
) -> list[Param]:
    """Read and check a search-space file.

    Every key must be a config key, and its bounds or choices valid values for it together with
    ``overrides`` (checked by :func:`load_config`), so that a typo stops the sweep before any trial.

    Args:
        path: the YAML file.
        overrides: the sweep's ``key=value`` overrides.
        config: the YAML file of defaults (``configs/default.yaml`` when ``None``).

    Returns:
        The parameters, in the file's order.

    Raises:
        ProjectError: missing file. ConfigError: invalid YAML, unknown key, bad entry or value.
    """
    path = Path(path)
    source = f"'{path}'"
    if not path.is_file():
        raise ProjectError(f"search space file {source} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"search space {source} is not valid YAML: {first_line}") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(
            f"search space {source} must map config keys to ranges, e.g. "
            "'train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}'"
        )
    space = []
    for key, spec in data.items():
        typ = _check_key(key, source)
        try:
            param = _param(key, spec, typ)
        except ValueError as exc:
            raise ConfigError(f"search space {source}, key '{key}': {exc}") from None
        values = param.choices if param.type == "categorical" else (param.low, param.high)
        for value in values:
            try:
                load_config([*overrides, as_override(key, value)], config)
            except ConfigError as exc:
                raise ConfigError(f"search space {source}, key '{key}': {exc}") from None
        space.append(param)
    return space


def grid_points(space: Sequence[Param], source: str) -> list[dict[str, Any]]:
    """Every combination of the keys' grid values (the first key varies slowest)."""
    keys = [p.key for p in space]
    values = [p.grid_values(source) for p in space]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]
