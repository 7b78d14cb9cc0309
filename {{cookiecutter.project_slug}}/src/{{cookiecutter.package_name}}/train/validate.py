"""Validation on the whole validation set, every epoch.

Metrics are those of the metric registry (:mod:`..metrics.registry`), computed over all
validation cases, never averaged over batches: segmentation runs each whole image through the
network (sliding windows of the training patch size) and averages the per-case values;
classification collects the probabilities of every case and computes each metric once. A metric
registered there is a ``val_<name>`` column of ``metrics.csv`` without any change here.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..config import Config
from ..data.dataset import MedicalDataset
from ..metrics.classification import positive_index
from ..metrics.registry import classification_set, registered, segmentation_case
from ..metrics.segmentation import nanmean
from ..models.sliding_window import predict_logits


@torch.no_grad()
def validate(
    model: nn.Module,
    dataset: MedicalDataset,
    loss_fn: nn.Module,
    cfg: Config,
    device: torch.device,
    classes: list[str] | None,
    num_classes: int,
) -> dict[str, float]:
    """Whole-set validation metrics, keyed as metrics.csv columns (``val_loss``, ``val_dice``...)."""
    was_training = model.training
    model.eval()
    try:
        if cfg.task == "segmentation":
            return _segmentation(model, dataset, loss_fn, cfg, device, num_classes)
        return _classification(model, dataset, loss_fn, cfg, device, classes or [])
    finally:
        model.train(was_training)


def _segmentation(model, dataset, loss_fn, cfg, device, num_classes) -> dict[str, float]:
    metrics = registered("segmentation")
    losses, per_case = [], []
    patch = tuple(cfg.data.patch_size)
    for index in range(len(dataset)):
        item = dataset[index]
        image = item["image"][None].to(device)
        truth = item["label"][None].to(device).long()  # masks come as uint8
        logits = predict_logits(model, image, patch).float()
        losses.append(float(loss_fn(logits, truth)))
        pred = logits.argmax(1)[0].cpu().numpy()
        spacing = dataset.geometry(index)["spacing"]
        per_case.append(
            segmentation_case(
                pred, truth[0].cpu().numpy(), spacing, tuple(range(1, num_classes)), metrics
            )
        )
    result = {"val_loss": float(np.mean(losses))}
    for metric in metrics:
        result[metric.column] = nanmean([case[metric.name] for case in per_case])
    return result


def _classification(model, dataset, loss_fn, cfg, device, classes) -> dict[str, float]:
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, shuffle=False)
    labels, probabilities, losses, sizes = [], [], [], []
    for batch in loader:
        logits = model(batch["image"].to(device)).float()
        target = batch["label"].to(device).long()
        losses.append(float(loss_fn(logits, target)))
        sizes.append(len(target))
        probabilities.append(torch.softmax(logits, 1).cpu().numpy())
        labels.append(target.cpu().numpy())
    # Two classes: the configured positive class (data.positive_class), else class 1.
    positive = positive_index(classes, cfg.data.positive_class) if len(classes) == 2 else 1
    scores = classification_set(np.concatenate(labels), np.concatenate(probabilities), positive)
    return {
        "val_loss": float(np.average(losses, weights=sizes)),
        **{f"val_{name}": value for name, value in scores.items()},
    }
