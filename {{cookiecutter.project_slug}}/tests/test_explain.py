"""Interpretability: every method on tiny 2D and 3D networks, the maps land on the region that
decides the answer, TCAV finds a concept that matters, and the ``explain`` command writes its
files and refuses bad input with one message."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tiny_data import AFFINE, SHAPE, TASK
from torch import nn

from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.data.io import write_nifti
from {{ cookiecutter.package_name }}.data.manifest import MANIFEST
from {{ cookiecutter.package_name }}.evaluate.inference import load_run
from {{ cookiecutter.package_name }}.explain.concepts import (
    ConceptError,
    concept_files,
    lesion_patches,
    random_crops,
)
from {{ cookiecutter.package_name }}.explain.gradcam import gradcam
from {{ cookiecutter.package_name }}.explain.layers import (
    LayerError,
    conv_layers,
    default_layer,
    find_layer,
)
from {{ cookiecutter.package_name }}.explain.occlusion import control_region, occlusion_map, region_test
from {{ cookiecutter.package_name }}.explain.runner import positive_share_inside
from {{ cookiecutter.package_name }}.explain.saliency import saliency
from {{ cookiecutter.package_name }}.explain.scores import RegionScore, prepare
from {{ cookiecutter.package_name }}.explain.tcav import (
    RANDOM_SETS,
    assess_concept,
    pooled_activations,
    pooled_gradients,
    set_test,
    tcav_score,
    train_cav,
)
from {{ cookiecutter.package_name }}.models import build_model
from {{ cookiecutter.package_name }}.models.layers import crop_to, pad_to_multiple

TASKS = ("classification", "segmentation")
# A toy image per dimensionality: a bright box covering < 20% of the image, faint noise around.
TOY = {
    2: ((24, 24), (slice(8, 14), slice(10, 16))),
    3: ((14, 14, 14), (slice(4, 10), slice(6, 12), slice(2, 8))),
}


class BoxNet(nn.Module):
    """A fixed-weight network whose answer depends only on the image inside a known box.

    A strided 3×3(×3) convolution (channel 0 ~ brightness, channel 1 ~ darkness; center-heavy
    kernels) feeds ``evidence = mean of channel 0 inside the box``. Classification: logits
    ``(-evidence, evidence)``; segmentation: class-1 logit = channel 0 inside the box, -0.5
    outside. The input is padded to a multiple of 16 first, as the U-Nets do, so the feature
    maps lie on a larger grid than the image.
    """

    def __init__(self, box: np.ndarray, task: str) -> None:
        super().__init__()
        dims = box.ndim
        self.conv = (nn.Conv2d if dims == 2 else nn.Conv3d)(
            1, 2, 3, stride=2, padding=1, bias=False
        )
        with torch.no_grad():
            kernel = torch.full((3,) * dims, 0.02)
            kernel[(1,) * dims] = 1.0
            self.conv.weight[0, 0] = kernel
            self.conv.weight[1, 0] = -kernel
        self.task = task
        self.register_buffer("box", torch.as_tensor(box, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        padded, sizes = pad_to_multiple(x, 16, minimum=16)
        features = F.relu(self.conv(padded))
        up = crop_to(F.interpolate(features, size=padded.shape[2:], mode="nearest"), sizes)
        inside = up[:, 0] * self.box
        if self.task == "segmentation":
            logit = inside - 0.5 * (1 - self.box)
            return torch.stack([torch.zeros_like(logit), logit], dim=1)
        evidence = inside.flatten(1).sum(1) / self.box.sum()
        return torch.stack([-evidence, evidence], dim=1)


class AllBackground(nn.Module):
    """A segmentation network that predicts background everywhere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.ones_like(x), torch.zeros_like(x)], dim=1)


def toy(dims: int, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """``(1, 1, *S)`` image with a bright box, and the box as a bool mask."""
    shape, box = TOY[dims]
    mask = np.zeros(shape, bool)
    mask[box] = True
    image = torch.randn(1, 1, *shape, generator=torch.Generator().manual_seed(seed)) * 0.1
    image[0, 0][torch.as_tensor(mask)] += 3.0
    return image, mask


def tiny_model(task: str, dims: int) -> nn.Module:
    name = "unet" if task == "segmentation" else "cnn"
    torch.manual_seed(0)
    return build_model(
        name, spatial_dims=dims, in_channels=1, out_channels=2, depth=2, base_channels=4
    ).eval()


# --- the methods on toy problems -----------------------------------------------------------


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("task", TASKS)
def test_maps_fall_inside_the_region_that_decides(dims: int, task: str) -> None:
    image, box = toy(dims)
    assert box.mean() < 0.2
    net = BoxNet(box, task).eval()
    explained = prepare(net, task, image)
    assert explained.target == 1
    _, layer = find_layer(net)
    maps = {
        "saliency": saliency(explained.scorer, image, 1),
        "gradcam": gradcam(explained.scorer, image, 1, layer),
        # A patch of 2 voxels resolves the box; the default patch is coarser, for speed.
        "occlusion": occlusion_map(
            explained.scorer, image, 1, window=(2,) * dims, stride=(2,) * dims
        ),
    }
    for method, attribution in maps.items():
        assert attribution.shape == box.shape, method
        share = positive_share_inside(attribution, box)
        assert share is not None and share > 0.5, (method, share)


def test_occlusion_of_the_region_drops_the_score_and_a_control_does_not() -> None:
    image, box = toy(2)
    net = BoxNet(box, "classification").eval()

    def measure(x: torch.Tensor) -> dict[str, float]:
        return {"score": float(net(x)[0, 1])}

    result = region_test(measure, image, box)
    assert result["region_voxels"] == box.sum()
    assert result["occluded"]["score"] < 0.2 * result["original"]["score"]
    assert result["control"]["score"] == pytest.approx(result["original"]["score"], rel=0.05)
    assert not (control_region(box) & box).any()
    with pytest.raises(ValueError, match="empty"):
        region_test(measure, image, np.zeros_like(box))


def test_region_score_sums_the_class_logit_over_its_predicted_region() -> None:
    logits = torch.randn(1, 3, 4, 5)
    regions = torch.zeros(3, 4, 5)
    regions[1, :2] = 1
    scorer = RegionScore(nn.Identity(), regions)
    scores = scorer(logits)
    assert scores.shape == (1, 3)
    assert float(scores[0, 1]) == pytest.approx(float(logits[0, 1, :2].sum()), rel=1e-5)
    # Nothing predicted as foreground: class 1 is scored over the whole image.
    explained = prepare(AllBackground(), "segmentation", torch.randn(1, 1, 6, 6))
    assert (explained.target, explained.region) == (1, "whole image")


# --- every method on the project's tiny networks, 2D and 3D ---------------------------------


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("task", TASKS)
def test_every_method_runs_on_tiny_networks(dims: int, task: str) -> None:
    model = tiny_model(task, dims)
    shape = (20, 18) if dims == 2 else (12, 10, 9)  # not multiples of the downsampling
    image = torch.randn(1, 1, *shape)
    explained = prepare(model, task, image)
    name, layer = find_layer(model)
    assert name == default_layer(model)
    for attribution in (
        saliency(explained.scorer, image, explained.target),
        gradcam(explained.scorer, image, explained.target, layer),
        occlusion_map(explained.scorer, image, explained.target),
    ):
        assert attribution.shape == shape
        assert np.isfinite(attribution).all()
    activations = pooled_activations(model, layer, [np.zeros(shape, np.float32)] * 2, "cpu")
    gradients = pooled_gradients(explained.scorer, layer, image, [0, 1])
    assert activations.shape[0] == 2 and gradients.shape == (2, activations.shape[1])


@pytest.mark.parametrize(
    ("name", "options", "expected"),
    [
        ("unet", {"depth": 2, "base_channels": 4}, "fuse.0"),
        ("cnn", {"depth": 2, "base_channels": 4, "residual": True}, "stages.1.0.conv2"),
        ("dynunet", {"depth": 2, "base_channels": 4}, "upsamples.1.conv_block.conv2.conv"),
        ("segresnet", {"depth": 2, "base_channels": 8}, None),
        ("densenet121", {"base_channels": 4, "growth_rate": 4}, None),
    ],
)
def test_default_layer_is_the_last_spatial_convolution(
    name: str, options: dict, expected: str | None
) -> None:
    model = build_model(name, spatial_dims=2, in_channels=1, out_channels=2, **options)
    layer_name, layer = find_layer(model)
    assert max(layer.kernel_size) > 1  # never a 1x1 head or shortcut
    if expected is not None:
        assert layer_name == expected
    with pytest.raises(LayerError, match="has no layer 'nope'.*layers are: .*" + layer_name):
        find_layer(model, "nope")


def test_gradcam_refuses_a_layer_without_feature_maps() -> None:
    model = tiny_model("classification", 2)
    image = torch.randn(1, 1, 16, 16)
    with pytest.raises(LayerError, match="not a feature map"):
        gradcam(model, image, 0, model.fc)


# --- TCAV -----------------------------------------------------------------------------------


def test_cav_points_to_the_concept_and_scores_count_positive_derivatives() -> None:
    rng = np.random.default_rng(0)
    concept = rng.normal(0, 1, (20, 3)) + [4, 0, 0]
    random = rng.normal(0, 1, (20, 3))
    cav, accuracy = train_cav(concept, random)
    assert accuracy > 0.9
    assert np.linalg.norm(cav) == pytest.approx(1.0)
    assert cav[0] > 0.9
    gradients = np.array([[1.0, 0, 0], [1.0, 0, 0], [-1.0, 0, 0], [2.0, 0, 0]])
    assert tcav_score(gradients, cav) == 0.75


@pytest.mark.parametrize("dims", [2, 3])
def test_tcav_finds_the_concept_the_toy_network_uses(dims: int) -> None:
    """Bright patches drive the toy classifier's class 1 up and class 0 down; random noise
    patches mean nothing, so class 1 scores 1 and class 0 scores 0.

    The toy network is linear after its layer: every input has the same gradient, along
    channel 0, so a CAV scores 0 or 1 and each set's mean score against the others is its rank
    along that channel. The concept ranks first of the 10 sets, which chance does one time in
    10: the honest test does not call that significant (it needs inputs whose gradients
    differ, see ``tests/test_tcav.py``)."""
    image, box = toy(dims)
    net = BoxNet(box, "classification").eval()
    _, layer = find_layer(net)
    rng = np.random.default_rng(1)
    size = (6,) * dims
    bright = [rng.normal(0, 0.1, size) + 3.0 for _ in range(8)]
    noise = [[rng.normal(0, 0.1, size) for _ in range(8)] for _ in range(9)]
    # The activations of the first layer need only that layer (BoxNet's box fits the image).
    concept = pooled_activations(net.conv, layer, bright, "cpu")
    randoms = [pooled_activations(net.conv, layer, r, "cpu") for r in noise]
    inputs = [toy(dims, seed)[0] for seed in range(3)]
    gradients = {
        k: np.concatenate([pooled_gradients(net, layer, x, [k]) for x in inputs]) for k in (0, 1)
    }
    results = assess_concept(concept, randoms, gradients)
    assert results[1]["tcav"] == 1.0 and results[0]["tcav"] == 0.0
    ranks = [i / 9 for i in range(9)]  # the random sets' mean scores: ranks 0..8 of 9
    assert sorted(results[1]["random_scores"]) == pytest.approx(ranks)
    assert sorted(results[0]["random_scores"]) == pytest.approx([1 / 9 + r for r in ranks])
    p = set_test(1.0, ranks)
    assert results[1]["p_value"] == pytest.approx(p) and results[0]["p_value"] == pytest.approx(p)
    assert 0.1 < p < 0.15 and not results[1]["significant"]
    assert results[1]["inputs"] == 3 and len(results[1]["scores"]) == 9
    assert results[1]["tests"] == 2  # Bonferroni over the two classes


def test_concepts_from_a_folder_a_list_or_files(tmp_path: Path) -> None:
    folder = tmp_path / "bright"
    a = write_nifti(np.ones((4, 4), np.int16), AFFINE, folder / "a.nii.gz")
    b = write_nifti(np.ones((4, 4), np.int16), AFFINE, folder / "b.nii.gz")
    (folder / "notes.md").write_text("not an image")
    assert concept_files([folder]) == [a, b]
    listing = tmp_path / "concept.txt"
    listing.write_text("# bright boxes\nbright/b.nii.gz\n\n")
    assert concept_files([listing]) == [b]
    assert concept_files([a, b]) == [a, b]
    with pytest.raises(ConceptError, match="does not exist"):
        concept_files([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConceptError, match="holds no images"):
        concept_files([tmp_path / "empty"])


def test_lesion_patches_surround_the_label_and_random_crops_avoid_it() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(0, 1, (20, 20)).astype(np.float32)
    mask = np.zeros((20, 20), np.uint8)
    mask[3:6, 4:7] = 1
    image[mask > 0] = 10.0
    patches = lesion_patches([image], [mask], rng, 4)
    assert len(patches) == 4
    assert all(p.shape == (6, 6) and (p == 10.0).sum() >= 4 for p in patches)
    crops = random_crops([image], [p.shape for p in patches], rng, avoid=[mask])
    assert all(c.shape == (6, 6) and not (c == 10.0).any() for c in crops)
    assert lesion_patches([image], [np.zeros_like(mask)], rng, 4) == []


# --- the command ----------------------------------------------------------------------------


def explain_cli(run: Path, *args: str) -> int:
    return main(["explain", str(run), *args])


@pytest.mark.parametrize("method", ["saliency", "gradcam", "occlusion"])
def test_explain_writes_an_overlay_per_case_and_a_summary(
    trained: Path, capsys: pytest.CaptureFixture[str], method: str
) -> None:
    assert explain_cli(trained, "--method", method, "--cases", "2") == 0
    out = trained / "explain" / method
    printed = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert str(out) in printed and summary["finding"] in printed
    assert len(summary["cases"]) == 2
    for case in summary["cases"]:
        png = out / f"{case['case_id']}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    label = {"saliency": "Saliency", "gradcam": "Grad-CAM", "occlusion": "Occlusion"}[method]
    assert summary["finding"].startswith(label)
    if method == "gradcam":
        assert summary["layer"] in summary["finding"]
    if TASK == "segmentation":  # the label is the region to compare with
        assert 0 <= summary["inside_fraction_mean"] <= 1
        assert "inside the labelled region" in summary["finding"]


def _add_mask_column(root: Path) -> None:
    """Give the tiny classification data a ``mask`` column: its bright box (empty if none)."""
    import csv

    from {{ cookiecutter.package_name }}.data.io import read_image

    path = root / MANIFEST
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    for row in rows:
        image = read_image(root / row["image"])
        mask = (image.array > 100).astype(np.uint8)
        row["mask"] = (
            write_nifti(mask, image.affine, root / "masks" / f"{row['case_id']}.nii.gz")
            .relative_to(root)
            .as_posix()
        )
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def test_occlusion_of_the_labelled_region(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("--method", "occlusion", "--region", "mask", "--cases", "2")
    if TASK == "classification":
        assert explain_cli(trained, *args) == 2
        assert "no 'mask' column" in capsys.readouterr().err
        _add_mask_column(trained.parents[1] / "data" / "tiny")
    assert explain_cli(trained, *args) == 0
    out = trained / "explain" / "occlusion"
    region = json.loads((out / "region.json").read_text())
    assert region["cases"]
    for case in region["cases"]:
        assert case["region_voxels"] > 0
        for key in ("original", "occluded", "control"):
            assert 0 <= case[key]["probability"] <= 1
        assert case["probability_change"] == pytest.approx(
            case["occluded"]["probability"] - case["original"]["probability"]
        )
    summary = json.loads((out / "summary.json").read_text())
    assert "covering the region changed the probability" in summary["finding"]


def test_tcav_command_writes_scores_and_a_plot(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--method", "tcav", "--cases", "3"]
    if TASK == "classification":
        assert explain_cli(trained, *args) == 2
        assert "needs example images of a concept" in capsys.readouterr().err
        rng = np.random.default_rng(0)
        size = tuple(max(4, s // 2) for s in SHAPE)
        for i in range(6):
            patch = rng.normal(0, 20, size)
            patch[tuple(slice(1, 4) for _ in size)] += 200
            write_nifti(patch.astype(np.int16), AFFINE, tmp_path / "bright" / f"b{i}.nii.gz")
        args += ["--concept", str(tmp_path / "bright")]
    assert explain_cli(trained, *args) == 0
    out = trained / "explain" / "tcav"
    scores = json.loads((out / "scores.json").read_text())
    assert scores["concept"] == ("lesion patches" if TASK == "segmentation" else "bright")
    assert scores["classes"] and scores["examples"] >= 4
    tests = len(scores["classes"])  # one layer: Bonferroni over the classes tested
    assert scores["tests"] == tests and scores["random_sets"] == RANDOM_SETS
    for result in scores["classes"]:
        assert 0 <= result["tcav"] <= 1 and 0 <= result["p_value"] <= 1
        assert len(result["scores"]) == len(result["random_scores"]) == scores["random_sets"]
        assert result["p_value_corrected"] == pytest.approx(min(1, tests * result["p_value"]))
        assert result["significant"] == (result["p_value_corrected"] < result["alpha"])
    assert (out / "tcav.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["finding"].startswith("TCAV at layer")
    assert f"against {RANDOM_SETS} random sets:" in summary["finding"]
    assert f"Bonferroni correction for {tests} test" in summary["finding"]
    for result in summary["classes"]:
        for key in ("tcav", "p_value", "p_value_corrected", "random_sets", "significant"):
            assert key in result
    # Two layers: every class is tested at each, and the correction counts both.
    model = load_run(trained).model
    spatial = [n for n, m in conv_layers(model).items() if max(m.kernel_size) > 1]
    assert explain_cli(trained, *args, "--layer", ",".join(spatial[-2:])) == 0
    two = json.loads((out / "scores.json").read_text())
    assert two["layers"] == spatial[-2:] and two["tests"] == 2 * tests
    assert [c["layer"] for c in two["classes"]] == [spatial[-2]] * tests + [spatial[-1]] * tests
    for result in two["classes"]:
        assert result["p_value_corrected"] == pytest.approx(min(1, 2 * tests * result["p_value"]))
    summary = json.loads((out / "summary.json").read_text())
    assert f"correction for {2 * tests} tests (" in summary["finding"]
    assert summary["finding"].endswith(" x 2 layers)")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layer", "nope", "--method", "gradcam"], "has no layer 'nope'"),
        (["--region", "mask", "--method", "saliency"], "--region applies to occlusion"),
        (["--concept", "x", "--method", "gradcam"], "--concept applies to tcav"),
        (["--layer", "a,b", "--method", "gradcam"], "gradcam takes one --layer"),
    ],
)
def test_bad_options_exit_2_with_one_message(
    trained: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert explain_cli(trained, *args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (trained / "explain").exists()


def test_a_folder_that_is_not_a_run_exits_2(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "runs" / "empty").mkdir(parents=True)
    assert explain_cli(project / "runs" / "empty") == 2
    err = capsys.readouterr().err
    assert "not a run folder" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--method", "lime"], "invalid choice: 'lime'"), (["--cases", "0"], ">= 1, got 0")],
)
def test_bad_arguments_exit_2(
    project: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as stop:
        explain_cli(project, *args)
    assert stop.value.code == 2
    assert message in capsys.readouterr().err
