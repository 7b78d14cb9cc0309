"""The run's data pipeline from its config: preprocessing, patches and augmentation settings.

Training and evaluation both read a run's images through :func:`dataset`, so evaluation applies
exactly the preprocessing the model was trained with (never the augmentation).
"""

from __future__ import annotations

from dataclasses import replace

from .. import paths
from ..config import Config
from ..utils.errors import ConfigError
from .augment import AugmentSettings
from .dataset import LoaderSettings, MedicalDataset
from .orientation import from_setting


def loader_settings(cfg: Config) -> LoaderSettings:
    """Preprocessing, patches and augmentation from ``data.*``.

    Raises:
        ConfigError: ``data.normalization`` is still ``auto``: ``train`` resolves it from the
            training cases (:func:`.fingerprint.resolve_config`) and a run's ``config.yaml``
            holds the resolved value.
    """
    if cfg.data.normalization == "auto":
        raise ConfigError(
            "data.normalization is 'auto': it is resolved from the training cases when a run "
            "starts (a run's config.yaml holds ct, mr, zscore or none); set it explicitly here"
        )
    segmentation = cfg.task == "segmentation"
    return LoaderSettings(
        # Classification sees whole images; segmentation trains on patches.
        patch_size=tuple(cfg.data.patch_size) if segmentation else None,
        foreground_fraction=cfg.data.foreground_fraction,
        target_spacing=tuple(cfg.data.target_spacing) if cfg.data.target_spacing else None,
        # The window is in HU: it belongs to CT only. Clipping MR or a 12-bit radiograph at
        # 300 would flatten most of the image (and every nodule) to one value.
        window=(
            tuple(cfg.data.window) if cfg.data.window and cfg.data.normalization == "ct" else None
        ),
        normalization={"zscore": "mr"}.get(cfg.data.normalization, cfg.data.normalization),
        augment=cfg.data.augment,
        augmentation=AugmentSettings.from_config(cfg.data.augmentation),
        cache_dir=paths.resolve(cfg.data.cache_dir) if cfg.data.cache_dir else None,
        orientation=from_setting(cfg.data.orientation),
    )


def dataset(cfg: Config, cases: list, classes: list[str] | None, *, train: bool) -> MedicalDataset:
    """The dataset of ``cases`` with the run's preprocessing; augmentation only for training.

    Args:
        cfg: the run's configuration (``data.normalization`` resolved, not ``auto``).
        cases: the manifest's cases to read.
        classes: the class names in class-index order (classification), ``None`` for
            segmentation.
        train: training (augmented, patches sampled) or evaluation (whole images as they are).

    Returns:
        The dataset.

    Raises:
        ConfigError: see :func:`loader_settings`.
    """
    settings = loader_settings(cfg)
    if not train:
        settings = replace(settings, augment=False)
    return MedicalDataset(
        cases,
        cfg.task,
        settings,
        classes=classes,
        train=train,
        seed=cfg.seed,
        spatial_dims=cfg.spatial_dims,
    )
