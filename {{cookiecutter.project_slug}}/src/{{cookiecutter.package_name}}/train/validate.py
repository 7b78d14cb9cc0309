"""Validation on the whole validation set, every epoch.

Metrics come from the project's own implementations (``evaluate/``) over all validation cases,
never averaged over batches: segmentation runs each whole image through the network (sliding
windows of the training patch size) and averages the per-case Dice; classification collects the
probabilities of every case and computes accuracy, balanced accuracy and AUROC once.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from torch import nn

from ..config import Config
from ..data.dataset import MedicalDataset
from ..evaluate.classification_metrics import classification_metrics
from ..evaluate.segmentation_metrics import nanmean, segmentation_metrics


def predict_logits(
    model: nn.Module, image: torch.Tensor, patch: tuple[int, ...] | None
) -> torch.Tensor:
    """Logits for one whole image ``(1, C, *S)``: sliding windows when it exceeds the patch."""
    if patch is None or all(s <= p for s, p in zip(image.shape[2:], patch, strict=True)):
        return model(image)
    return sliding_window_inference(
        image, roi_size=patch, sw_batch_size=2, predictor=model, overlap=0.25, mode="gaussian"
    )


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
        return _classification(model, dataset, loss_fn, device, classes or [])
    finally:
        model.train(was_training)


def _segmentation(model, dataset, loss_fn, cfg, device, num_classes) -> dict[str, float]:
    losses, dice = [], []
    patch = tuple(cfg.data.patch_size)
    for index in range(len(dataset)):
        item = dataset[index]
        image = item["image"][None].to(device)
        truth = item["label"][None].to(device).long()  # masks come as uint8
        logits = predict_logits(model, image, patch).float()
        losses.append(float(loss_fn(logits, truth)))
        pred = logits.argmax(1)[0].cpu().numpy()
        spacing = dataset.geometry(index)["spacing"]
        scores = segmentation_metrics(
            pred, truth[0].cpu().numpy(), spacing, classes=tuple(range(1, num_classes))
        )
        dice.append(scores["dice"])
    return {"val_loss": float(np.mean(losses)), "val_dice": nanmean(dice)}


def _classification(model, dataset, loss_fn, device, classes) -> dict[str, float]:
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, shuffle=False)
    labels, probabilities, losses, sizes = [], [], [], []
    for batch in loader:
        logits = model(batch["image"].to(device)).float()
        target = batch["label"].to(device).long()
        losses.append(float(loss_fn(logits, target)))
        sizes.append(len(target))
        probabilities.append(torch.softmax(logits, 1).cpu().numpy())
        labels.append(target.cpu().numpy())
    scores = classification_metrics(np.concatenate(labels), np.concatenate(probabilities), classes)
    return {
        "val_loss": float(np.average(losses, weights=sizes)),
        "val_accuracy": float(scores["accuracy"]),
        "val_balanced_accuracy": float(scores["balanced_accuracy"]),
        "val_auroc": float(scores["auroc"]),
    }
