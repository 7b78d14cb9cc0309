"""The metric registry: the metrics a run reports during training and in its evaluations.

Adding a metric is one decorated function at the end of this file, beside the built-in ones
(a notebook or a test can register one the same way at run time, with
``from {{ cookiecutter.package_name }}.metrics.registry import register``)::

    @register("segmentation", "sensitivity", definition="share of the reference voxels found")
    def _sensitivity(pred, truth, spacing):
        return float((pred & truth).sum() / truth.sum()) if truth.any() else float("nan")

Once registered, the metric is

- a ``val_<name>`` column of ``metrics.csv``, computed every epoch on the whole validation set,
  drawn in the training plots and accepted as ``train.monitor``;
- a value with a bootstrap confidence interval in ``evaluation/<split>/metrics.json`` (its
  ``definition`` in ``definitions``), a ``per_case.csv`` column (segmentation) and a row of the
  model card.

Two kinds of function, by task:

- **segmentation**, one case and one class: ``fn(pred, truth, spacing) -> float`` with ``pred``
  and ``truth`` boolean masks of the same shape, 2D ``(X, Y)`` or 3D ``(X, Y, Z)``, and
  ``spacing`` the voxel size per axis in mm. A case's value is the mean over the foreground
  classes, the set's value the mean over the cases (NaN values left out of both means, so return
  NaN where the metric is undefined, e.g. an empty reference).
- **classification**, the whole set: ``fn(labels, probabilities, positive) -> float`` with
  ``labels`` the true classes ``(N,)``, ``probabilities`` ``(N, K)`` and ``positive`` the index
  of the positive class when K = 2 (``data.positive_class``; class 1 when none is set).

The built-in entries are the validation metrics of ``metrics.csv`` (``val_dice``;
``val_accuracy``, ``val_balanced_accuracy``, ``val_auroc``); the full evaluation computes them and
its other metrics in :mod:`.segmentation` and :mod:`.classification` and adds any further
registered metric beside them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .classification import accuracy, balanced_accuracy, macro_auroc
from .segmentation import dice, nanmean

TASKS = ("segmentation", "classification")
# The column a run selects its best epoch by when ``train.monitor`` is ``auto``.
DEFAULT_MONITOR = {"segmentation": "dice", "classification": "auroc"}
LOSS_COLUMN = "val_loss"
NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Metric:
    """One registered metric.

    Attributes:
        name: the metric's name, e.g. ``dice``: ``val_<name>`` in ``metrics.csv``, ``<name>`` in
            ``metrics.json`` and ``per_case.csv``.
        task: ``segmentation`` or ``classification``.
        compute: the function (module docstring for its arguments).
        definition: what the value means, in one sentence (written to ``metrics.json``).
        higher_is_better: ``False`` for errors and distances (the best epoch is then the lowest).
        unit: the unit of the value, e.g. ``mm`` (its plot axis says it); empty for ratios.
    """

    name: str
    task: str
    compute: Callable[..., float]
    definition: str
    higher_is_better: bool = True
    unit: str = ""

    @property
    def column(self) -> str:
        """The metric's ``metrics.csv`` column, ``val_<name>``."""
        return f"val_{self.name}"


_REGISTRY: dict[str, dict[str, Metric]] = {task: {} for task in TASKS}


def _check_task(task: str) -> str:
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    return task


def register(
    task: str, name: str, *, definition: str, higher_is_better: bool = True, unit: str = ""
) -> Callable[[Callable[..., float]], Callable[..., float]]:
    """Decorator that registers a metric function under ``name`` for ``task``.

    Args:
        task: ``segmentation`` or ``classification``.
        name: lower-case letters, digits and underscores, starting with a letter; not ``loss``
            and not a name already registered for the task.
        definition: one sentence saying what the value means (its convention for empty masks or
            undefined cases, its unit).
        higher_is_better: ``False`` for errors and distances.
        unit: the value's unit, e.g. ``mm``; empty for ratios and counts.

    Returns:
        The decorator; it returns the function unchanged.

    Raises:
        ValueError: an unknown task, a malformed, reserved or taken name, or an empty definition.
    """
    _check_task(task)
    if not NAME.fullmatch(name) or name == "loss":
        raise ValueError(
            f"a metric name must be lower-case letters, digits and '_' starting with a letter "
            f"and not 'loss', got {name!r}"
        )
    if name in _REGISTRY[task]:
        raise ValueError(f"a {task} metric named {name!r} is already registered")
    if not definition.strip():
        raise ValueError(f"metric {name!r} needs a definition: one sentence saying what it means")

    def decorator(fn: Callable[..., float]) -> Callable[..., float]:
        _REGISTRY[task][name] = Metric(name, task, fn, definition, higher_is_better, unit)
        return fn

    return decorator


def unregister(task: str, name: str) -> None:
    """Remove a registered metric (a test's or a notebook's temporary one).

    Raises:
        ValueError: an unknown task, or no such metric registered.
    """
    if name not in _REGISTRY[_check_task(task)]:
        raise ValueError(f"no {task} metric named {name!r} is registered")
    del _REGISTRY[task][name]


def registered(task: str) -> tuple[Metric, ...]:
    """The metrics of ``task``, in registration order (the order of the ``val_*`` columns).

    Raises:
        ValueError: an unknown task.
    """
    return tuple(_REGISTRY[_check_task(task)].values())


def monitors(task: str) -> tuple[str, ...]:
    """The ``metrics.csv`` columns a run can select its best epoch by: the default first, then
    every other registered metric, then ``val_loss``.

    Raises:
        ValueError: an unknown task.
    """
    columns = [m.column for m in registered(task)]
    default = f"val_{DEFAULT_MONITOR[task]}"
    return (default, *[c for c in columns if c != default], LOSS_COLUMN)


class Monitors(Mapping[str, tuple[str, ...]]):
    """``{task: monitors(task)}``, read from the registry at every access (so a metric
    registered after import is a valid ``train.monitor``)."""

    def __getitem__(self, task: str) -> tuple[str, ...]:
        if task not in TASKS:
            raise KeyError(task)
        return monitors(task)

    def __iter__(self) -> Iterator[str]:
        return iter(TASKS)

    def __len__(self) -> int:
        return len(TASKS)


MONITORS = Monitors()


def monitor_mode(column: str) -> str:
    """``"min"`` for losses and registered lower-is-better metrics, ``"max"`` otherwise."""
    if "loss" in column:
        return "min"
    for metrics in _REGISTRY.values():
        for metric in metrics.values():
            if metric.column == column and not metric.higher_is_better:
                return "min"
    return "max"


def segmentation_case(
    pred_labels: np.ndarray,
    truth_labels: np.ndarray,
    spacing: Sequence[float],
    classes: Sequence[int],
    metrics: Sequence[Metric] | None = None,
) -> dict[str, float]:
    """The registered segmentation metrics of one case.

    Args:
        pred_labels: predicted label map, shape ``(X, Y)`` or ``(X, Y, Z)``.
        truth_labels: reference label map of the same shape.
        spacing: voxel size per axis in mm.
        classes: the foreground label values, e.g. ``(1,)``.
        metrics: the metrics to compute; ``None``: every registered segmentation metric.

    Returns:
        ``<name>_<c>`` per metric and class, and ``<name>``: the mean over the classes that have a
        value (NaN if none).

    Raises:
        ValueError: the maps differ in shape or ``classes`` is empty.
    """
    pred_labels, truth_labels = np.asarray(pred_labels), np.asarray(truth_labels)
    if pred_labels.shape != truth_labels.shape:
        raise ValueError(
            f"prediction and truth must have the same shape, got {pred_labels.shape} and "
            f"{truth_labels.shape}"
        )
    if not classes:
        raise ValueError("classes must name at least one label value, e.g. (1,)")
    chosen = registered("segmentation") if metrics is None else metrics
    sampling = tuple(float(s) for s in spacing)
    result: dict[str, float] = {}
    for metric in chosen:
        values = []
        for c in classes:
            value = float(metric.compute(pred_labels == c, truth_labels == c, sampling))
            result[f"{metric.name}_{c}"] = value
            values.append(value)
        result[metric.name] = nanmean(values)
    return result


def classification_set(
    labels: np.ndarray,
    probabilities: np.ndarray,
    positive: int = 1,
    metrics: Sequence[Metric] | None = None,
) -> dict[str, float]:
    """The registered classification metrics of a set of cases.

    Args:
        labels: true classes, shape ``(N,)``.
        probabilities: class probabilities, shape ``(N, K)``.
        positive: the positive class's index when K = 2.
        metrics: the metrics to compute; ``None``: every registered classification metric.

    Returns:
        ``{name: value}``.
    """
    chosen = registered("classification") if metrics is None else metrics
    truth, scores = np.asarray(labels), np.asarray(probabilities)
    return {m.name: float(m.compute(truth, scores, positive)) for m in chosen}


# --- the built-in validation metrics ------------------------------------------------------------


@register(
    "segmentation",
    "dice",
    definition="Dice overlap 2|P and T| / (|P| + |T|); both masks empty: 1, exactly one empty: 0",
)
def _dice(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float]) -> float:
    return dice(pred, truth)


@register(
    "classification",
    "accuracy",
    definition="share of cases whose most probable class is the true class",
)
def _accuracy(labels: np.ndarray, probabilities: np.ndarray, positive: int) -> float:
    return accuracy(labels, np.argmax(probabilities, axis=1))


@register(
    "classification",
    "balanced_accuracy",
    definition="mean over the classes present of the share of their cases predicted correctly",
)
def _balanced_accuracy(labels: np.ndarray, probabilities: np.ndarray, positive: int) -> float:
    return balanced_accuracy(labels, np.argmax(probabilities, axis=1), probabilities.shape[1])


@register(
    "classification",
    "auroc",
    definition="area under the ROC curve: of the positive class for two classes, else the mean "
    "one-vs-rest AUROC over the classes where it is defined",
)
def _auroc(labels: np.ndarray, probabilities: np.ndarray, positive: int) -> float:
    return macro_auroc(labels, probabilities, positive)
