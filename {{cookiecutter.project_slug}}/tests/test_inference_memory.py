"""Whole-volume inference without full-size temporaries: in-place softmax, compact labels."""

from __future__ import annotations

import tracemalloc
import types

import numpy as np
import pytest
import torch
from torch import nn

from {{ cookiecutter.package_name }}.evaluate import inference
from {{ cookiecutter.package_name }}.evaluate.inference import class_labels, probabilities, softmax_


@pytest.mark.parametrize("shape", [(2, 3, 7, 5, 9), (1, 4, 6, 11), (5, 3)])
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_softmax_in_place_matches_torch(
    monkeypatch: pytest.MonkeyPatch, shape: tuple[int, ...], temperature: float
) -> None:
    monkeypatch.setattr(inference, "SLAB_VOXELS", 7)  # many slabs, one of them partial
    logits = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 30
    expected = torch.softmax(logits / temperature, dim=1)
    pointer = logits.data_ptr()
    out = softmax_(logits, temperature)
    assert out.data_ptr() == pointer  # written into the logits, no full-size copy
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="temperature must be positive"):
        softmax_(torch.zeros(1, 2), 0.0)


def test_probabilities_average_members_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inference, "SLAB_VOXELS", 64)
    image = torch.randn(1, 1, 12, 10, 8, generator=torch.Generator().manual_seed(1))
    convs = []
    for seed in (2, 3):
        torch.manual_seed(seed)
        convs.append(nn.Conv3d(1, 3, 1).eval())
    runs = [
        types.SimpleNamespace(model=c, patch=(12, 10, 8), temperature=t)
        for c, t in zip(convs, (1.0, 2.0), strict=True)
    ]
    with torch.no_grad():
        expected = (torch.softmax(convs[0](image), 1) + torch.softmax(convs[1](image) / 2, 1)) / 2
    torch.testing.assert_close(probabilities(runs, image), expected, rtol=1e-6, atol=1e-7)


def test_class_labels_are_argmax_in_one_byte(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inference, "SLAB_VOXELS", 50)
    rng = np.random.default_rng(0)
    probs = rng.random((3, 9, 8, 13)).astype(np.float32)
    probs[:, 0, 0, 0] = 0.5  # a tie: the lower class, as argmax
    labels = class_labels(probs)
    assert labels.dtype == np.uint8 and labels[0, 0, 0] == 0
    np.testing.assert_array_equal(labels, probs.argmax(0))
    assert class_labels(np.zeros((300, 2, 2), np.float32)).dtype == np.int32
    with pytest.raises(ValueError, match=r"shape \(K, \*S\)"):
        class_labels(np.zeros(4))


def test_class_labels_allocate_about_one_byte_a_voxel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inference, "SLAB_VOXELS", 1 << 14)
    probs = np.random.default_rng(1).random((2, 64, 64, 128), dtype=np.float32)
    voxels = probs[0].size
    tracemalloc.start()
    try:
        class_labels(probs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    slab = inference.SLAB_VOXELS * 8  # one slab's int64 argmax
    assert peak < voxels + slab + 100_000  # plain argmax(0) would take 8 bytes a voxel
    assert voxels * 8 > 2 * (voxels + slab + 100_000)  # ... which this bound would catch


def test_label_counts_match_bincount_without_eight_bytes_a_voxel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(inference, "SLAB_VOXELS", 1 << 14)
    labels = np.random.default_rng(2).integers(0, 3, size=(64, 64, 128)).astype(np.uint8)
    np.testing.assert_array_equal(
        inference.label_counts(labels, 4), np.bincount(labels.ravel(), minlength=4)
    )
    tracemalloc.start()
    try:
        inference.label_counts(labels, 4)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < labels.size  # np.bincount(labels.ravel()) takes 8 bytes a voxel
    with pytest.raises(ValueError, match="below 3, found 5"):
        inference.label_counts(np.array([0, 5], np.uint8), 3)


@pytest.mark.applies(task="segmentation")
def test_predict_releases_the_source_voxels_before_inference(
    trained, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sliding-window inference runs without the source image's voxels in memory (they are in
    the preprocessed tensor): a whole volume less at the peak on a 512x512x600 CT."""
    import gc
    import weakref

    from tiny_data import AFFINE, SHAPE

    from {{ cookiecutter.package_name }}.cli import main
    from {{ cookiecutter.package_name }}.data.io import write_nifti
    from {{ cookiecutter.package_name }}.evaluate import predict as predict_module

    sources: list[weakref.ref] = []
    read = predict_module.read_image

    def reading(path):
        image = read(path)
        sources.append(weakref.ref(image.array))
        return image

    alive: list[bool] = []
    infer = predict_module.probabilities

    def inferring(runs, tensor):
        gc.collect()
        alive.append(any(ref() is not None for ref in sources))
        return infer(runs, tensor)

    monkeypatch.setattr(predict_module, "read_image", reading)
    monkeypatch.setattr(predict_module, "probabilities", inferring)
    image = np.random.default_rng(3).normal(0, 20, SHAPE).astype(np.int16)
    write_nifti(image, AFFINE, tmp_path / "in" / "a.nii.gz")
    assert main(["predict", str(trained), str(tmp_path / "in"), "--out", str(tmp_path / "o")]) == 0
    assert alive == [False]
