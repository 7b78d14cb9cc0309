"""Models: every network builds, runs forward and backward in 2D and 3D; initialization,
pretrained weights, freezing and the per-layer statistics behave as documented."""

from __future__ import annotations

import math
import pickle
import random
from pathlib import Path

import pytest
import torch
from torch import nn

from {{ cookiecutter.package_name }}.models import (
    MODEL_NAMES,
    TASK_MODELS,
    ActivationStats,
    PretrainedWeightsError,
    build_model,
    freeze_layers,
    gradient_norms,
    load_pretrained,
    model_options,
    model_task,
)
from {{ cookiecutter.package_name }}.models.init import expected_std
from {{ cookiecutter.package_name }}.models.layers import SubPixelUpsample
from {{ cookiecutter.package_name }}.models.pretrained import parameterised_layers
from {{ cookiecutter.package_name }}.utils.errors import ProjectError

# Small settings so that every model runs in a fraction of a second on a CPU.
SMALL = {
    "unet": {"depth": 3, "base_channels": 4},
    "dynunet": {"depth": 2, "base_channels": 4},
    "segresnet": {"depth": 2, "base_channels": 8},
    "cnn": {"depth": 2, "base_channels": 4},
    "densenet121": {"base_channels": 4, "growth_rate": 2},
}
# Spatial sizes that are not multiples of any network's downsampling factor.
SIZES = {2: (21, 18), 3: (13, 10, 7)}
DENSENET_SIZES = {2: (33, 30), 3: (30, 29, 31)}


def small_model(name: str, spatial_dims: int, **options) -> nn.Module:
    torch.manual_seed(0)
    return build_model(
        name,
        spatial_dims=spatial_dims,
        in_channels=1,
        out_channels=3,
        **{**SMALL[name], **options},
    )


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_runs_forward_and_backward(name: str, spatial_dims: int) -> None:
    model = small_model(name, spatial_dims)
    sizes = (DENSENET_SIZES if name == "densenet121" else SIZES)[spatial_dims]
    x = torch.randn(2, 1, *sizes)
    out = model(x)
    if model_task(name) == "segmentation":
        assert out.shape == (2, 3, *sizes)
    else:
        assert out.shape == (2, 3)
    out.float().square().mean().backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None, f"{name}: no gradient for {param_name}"
        assert torch.isfinite(param.grad).all(), f"{name}: non-finite gradient in {param_name}"
    assert any(p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("sizes", [(16, 16, 16), (17, 9, 30), (1, 5, 3)])
def test_unet_pads_odd_sizes_and_crops_back(sizes: tuple[int, ...]) -> None:
    model = small_model("unet", 3).eval()
    x = torch.randn(1, 1, *sizes)
    out = model(x)
    assert out.shape == (1, 3, *sizes)
    assert torch.isfinite(out).all()
    # Documented behavior: pad the far end of each axis by repeating the edge, crop back.
    multiple = 2**3  # depth 3; and at least 2 voxels per axis at the coarsest level
    target = [max(math.ceil(s / multiple) * multiple, 2 * multiple) for s in sizes]
    pad = [0, target[2] - sizes[2], 0, target[1] - sizes[1], 0, target[0] - sizes[0]]
    padded = torch.nn.functional.pad(x, pad, mode="replicate")
    expected = model(padded)[:, :, : sizes[0], : sizes[1], : sizes[2]]
    assert torch.allclose(out, expected, atol=1e-6)


def test_unet_2d_accepts_any_size() -> None:
    model = small_model("unet", 2, depth=4)
    for sizes in [(1, 1), (15, 33), (64, 48)]:
        assert model(torch.randn(2, 1, *sizes)).shape == (2, 3, *sizes)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_wrong_input_shape_is_a_clear_error(name: str) -> None:
    model = small_model(name, 3)
    with pytest.raises(ValueError, match=r"expects input of shape \(B, 1, X, Y, Z\)"):
        model(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 1, X, Y, Z\); got \(2, 2, 32, 32, 32\)"):
        model(torch.randn(2, 2, 32, 32, 32))


def test_densenet_names_its_minimum_size() -> None:
    with pytest.raises(ValueError, match="sizes >= 29"):
        small_model("densenet121", 2)(torch.randn(2, 1, 28, 40))


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_sub_pixel_upsample_equals_a_stride_2_transposed_convolution(spatial_dims: int) -> None:
    torch.manual_seed(0)
    up = SubPixelUpsample(spatial_dims, 5, 3)
    transposed = (nn.ConvTranspose2d if spatial_dims == 2 else nn.ConvTranspose3d)(5, 3, 2, 2)
    # Transposed weight (in, out, 2, 2[, 2]) -> sub-pixel weight (out * 2**d, in, 1, 1[, 1]).
    weight = transposed.weight.movedim(0, -1).reshape(3 * 2**spatial_dims, 5)
    with torch.no_grad():
        up.conv.weight.copy_(weight.reshape(up.conv.weight.shape))
        up.conv.bias.copy_(transposed.bias.repeat_interleave(2**spatial_dims))
    x = torch.randn(2, 5, *([3, 4, 5][:spatial_dims]))
    assert torch.allclose(up(x), transposed(x), atol=1e-5)


# --- initialization ---------------------------------------------------------------------


def test_initialization_is_he_for_relu_and_xavier_for_tanh() -> None:
    for activation, rule in [("relu", "he"), ("leaky_relu", "he"), ("tanh", "xavier")]:
        torch.manual_seed(0)
        model = build_model(
            "unet",
            spatial_dims=3,
            in_channels=1,
            out_channels=2,
            base_channels=16,
            activation=activation,
        )
        weight = model.encoder[1].conv2.weight  # 64 x 64 x 27: about 110 000 samples
        fan_in = fan_out = 64 * 27
        if rule == "he":
            slope = 0.01 if activation == "leaky_relu" else 0.0
            expected = math.sqrt(2 / (1 + slope**2) / fan_in)
        else:
            expected = math.sqrt(2 / (fan_in + fan_out))
        assert expected == pytest.approx(expected_std(weight, activation))
        assert weight.std().item() == pytest.approx(expected, rel=0.03), activation
        assert abs(weight.mean().item()) < 0.05 * expected
    # He and Xavier differ by sqrt(2) here, far beyond the tolerance: the check can fail.
    assert math.sqrt(2 / fan_in) / math.sqrt(2 / (fan_in + fan_out)) == pytest.approx(math.sqrt(2))


def test_layers_without_activation_get_xavier_and_biases_start_at_zero() -> None:
    torch.manual_seed(0)
    model = build_model(
        "cnn", spatial_dims=2, in_channels=1, out_channels=2, base_channels=32, depth=3
    )
    fc = model.fc.weight  # 2 x 256 dense layer feeding the loss, not an activation
    assert fc.std().item() == pytest.approx(math.sqrt(2 / (256 + 2)), rel=0.1)
    assert torch.count_nonzero(model.fc.bias) == 0
    conv = model.stages[2][0].conv2.weight  # 256 x 256 x 9, followed by ReLU: He
    assert conv.std().item() == pytest.approx(math.sqrt(2 / (256 * 9)), rel=0.03)


def test_init_torch_keeps_pytorch_defaults() -> None:
    torch.manual_seed(0)
    model = build_model("unet", spatial_dims=2, in_channels=1, out_channels=2, init="torch")
    weight = model.encoder[1].conv2.weight  # PyTorch's default: uniform, std 1 / sqrt(3 fan_in)
    assert weight.std().item() == pytest.approx(1 / math.sqrt(3 * 64 * 9), rel=0.05)


def test_he_keeps_the_activation_scale_where_pytorch_defaults_let_it_collapse() -> None:
    """Without normalization, the std of the conv outputs layer by layer (the run's plot)."""
    stds = {}
    for init in ("auto", "torch"):
        torch.manual_seed(0)
        model = build_model(
            "cnn",
            spatial_dims=2,
            in_channels=1,
            out_channels=2,
            norm="none",
            init=init,
            depth=4,
            blocks_per_stage=2,
            residual=False,
        )
        with ActivationStats(model) as stats, torch.no_grad():
            model(torch.randn(8, 1, 64, 64))
        stds[init] = [v["std"] for v in stats.summary().values()][:8]  # spatial size >= 8
    he, default = stds["auto"], stds["torch"]
    assert max(he) / min(he) < 2  # steady: about 1.3 from the first layer to the eighth
    assert default[0] / default[-1] > 10  # PyTorch's default shrinks it more than tenfold


def test_same_seed_builds_the_same_weights() -> None:
    a, b = small_model("unet", 3), small_model("unet", 3)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


# --- registry ---------------------------------------------------------------------------


def test_task_models_cover_every_name() -> None:
    assert sorted(n for names in TASK_MODELS.values() for n in names) == sorted(MODEL_NAMES)
    assert TASK_MODELS["segmentation"][0] == "unet" and TASK_MODELS["classification"][0] == "cnn"
    assert model_options("unet")["depth"] == 4 and model_options("unet")["init"] == "auto"


def test_unknown_model_name_lists_the_names() -> None:
    with pytest.raises(
        ValueError, match="unknown model 'resnet9'; choose one of: unet, .*densenet121"
    ):
        build_model("resnet9", spatial_dims=2, in_channels=1, out_channels=2)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_unknown_option_is_named(name: str) -> None:
    with pytest.raises(ValueError, match=f"model '{name}' has no option 'dropuot'"):
        build_model(name, spatial_dims=2, in_channels=1, out_channels=2, dropuot=0.1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"norm": "layer"}, "norm must be one of batch, instance, group, none; got 'layer'"),
        ({"activation": "swish"}, "activation must be one of"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"depth": 0}, "depth must be a positive integer"),
        ({"init": "orthogonal"}, "init must be one of auto, he, xavier, torch"),
    ],
)
def test_invalid_option_values_are_named(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_model("unet", spatial_dims=3, in_channels=1, out_channels=2, **options)


def test_invalid_dims_and_channels_are_named() -> None:
    with pytest.raises(ValueError, match="spatial_dims must be one of 2, 3; got 4"):
        build_model("unet", spatial_dims=4, in_channels=1, out_channels=2)
    with pytest.raises(ValueError, match="out_channels must be a positive integer; got 0"):
        build_model("cnn", spatial_dims=2, in_channels=1, out_channels=0)


# --- pretrained weights and freezing --------------------------------------------------


def test_pretrained_weights_load_by_name_and_shape(tmp_path: Path) -> None:
    source = small_model("unet", 3)  # 3 output classes
    path = tmp_path / "weights.pt"
    state = {f"module.{k}": v for k, v in source.state_dict().items()}  # as saved under DDP
    torch.save({"model": state, "epoch": 7}, path)

    torch.manual_seed(1)
    target = build_model("unet", spatial_dims=3, in_channels=1, out_channels=2, **SMALL["unet"])
    head_before = target.head.conv.weight.clone()
    report = load_pretrained(target, path)

    assert report.mismatched == [
        ("head.conv.weight", (24, 4, 1, 1, 1), (16, 4, 1, 1, 1)),
        ("head.conv.bias", (24,), (16,)),
    ]
    assert set(report.loaded) == set(target.state_dict()) - {"head.conv.weight", "head.conv.bias"}
    assert report.missing == [] and report.unexpected == []
    assert torch.equal(target.stem[0].weight, source.stem[0].weight)
    assert torch.equal(target.head.conv.weight, head_before)  # mismatched: left as it was
    summary = report.summary()
    assert str(report) == summary
    assert f"loaded {len(report.loaded)} of {len(report.loaded) + 2} model tensors" in summary
    assert "head.conv.weight [24, 4, 1, 1, 1] vs [16, 4, 1, 1, 1]" in summary


def test_pretrained_reports_missing_and_unexpected(tmp_path: Path) -> None:
    source = small_model("unet", 2)
    state = source.state_dict()
    state.pop("stem.0.weight")
    state["extra.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "w.pt")
    report = load_pretrained(small_model("unet", 2), tmp_path / "w.pt")
    assert report.missing == ["stem.0.weight"] and report.unexpected == ["extra.weight"]


def test_pretrained_loads_into_a_wrapped_model(tmp_path: Path) -> None:
    torch.save(small_model("unet", 2).state_dict(), tmp_path / "w.pt")
    torch.manual_seed(1)
    wrapper = nn.Module()  # like DistributedDataParallel: parameters under "module."
    wrapper.module = build_model(
        "unet", spatial_dims=2, in_channels=1, out_channels=3, **SMALL["unet"]
    )
    report = load_pretrained(wrapper, tmp_path / "w.pt")
    assert report.loaded == list(wrapper.state_dict()) and report.missing == []
    assert report.loaded[0].startswith("module.")
    assert torch.equal(wrapper.module.stem[0].weight, small_model("unet", 2).stem[0].weight)


def test_pretrained_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    # Same layer names as the U-Net's stem, other shapes (6 channels, not 4); the rest differs.
    torch.save(small_model("cnn", 2, base_channels=6).state_dict(), tmp_path / "cnn.pt")
    with pytest.raises(PretrainedWeightsError, match=r"no tensor in '.*cnn\.pt' matches the model"):
        load_pretrained(small_model("unet", 2), tmp_path / "cnn.pt")


def test_missing_or_random_file_is_refused_with_its_name(tmp_path: Path) -> None:
    model = small_model("unet", 2)
    with pytest.raises(PretrainedWeightsError, match=r"'.*nothing\.pt' does not exist"):
        load_pretrained(model, tmp_path / "nothing.pt")
    noise = tmp_path / "noise.pt"
    noise.write_bytes(random.Random(0).randbytes(4096))
    with pytest.raises(PretrainedWeightsError, match=r"'.*noise\.pt' is not a weights file"):
        load_pretrained(model, noise)
    assert issubclass(PretrainedWeightsError, ProjectError)


class _Payload:
    """Unpickling this runs code: it writes the file named in ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        code = f"import pathlib; pathlib.Path({str(self.marker)!r}).write_text('ran')"
        return (exec, (code,))


@pytest.mark.parametrize("container", ["pickle", "torch.save"])
def test_hostile_pickle_is_refused_without_running_code(tmp_path: Path, container: str) -> None:
    marker = tmp_path / "marker.txt"
    path = tmp_path / "hostile.pt"
    if container == "pickle":
        path.write_bytes(pickle.dumps({"model": _Payload(marker)}, protocol=2))
    else:
        torch.save({"model": _Payload(marker)}, path)
    # Control: ordinary unpickling of the same file does run the payload.
    if container == "pickle":
        pickle.loads(path.read_bytes())
    else:
        torch.load(path, weights_only=False)
    assert marker.read_text() == "ran"
    marker.unlink()

    with pytest.raises(PretrainedWeightsError, match=r"'.*hostile\.pt' is not a weights file"):
        load_pretrained(small_model("unet", 2), path)
    assert not marker.exists()


def test_freezing_keeps_the_first_layers_unchanged_by_training() -> None:
    model = small_model("unet", 2, norm="batch")
    layers = parameterised_layers(model)
    frozen = freeze_layers(model, 3)
    assert frozen == [name for name, _ in layers[:3]] == ["stem.0", "stem.1", "encoder.0.conv1"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)  # frozen ones included on purpose
    model.train()
    for _ in range(2):
        optimizer.zero_grad()
        model(torch.randn(4, 1, 16, 16)).square().mean().backward()
        optimizer.step()
    after = model.state_dict()
    for name, module in layers[:3]:
        for param_name, param in module.named_parameters(recurse=False):
            assert not param.requires_grad
            assert torch.equal(after[f"{name}.{param_name}"], before[f"{name}.{param_name}"])
    # The frozen batch norm keeps its running statistics too; unfrozen layers did train.
    assert torch.equal(after["stem.1.running_mean"], before["stem.1.running_mean"])
    assert not torch.equal(after["encoder.0.conv2.weight"], before["encoder.0.conv2.weight"])
    assert all(p.requires_grad for _, m in layers[3:] for p in m.parameters(recurse=False))


def test_freeze_count_out_of_range_is_an_error() -> None:
    model = small_model("cnn", 2)
    count = len(parameterised_layers(model))
    assert len(freeze_layers(model, count)) == count
    assert not any(p.requires_grad for p in model.parameters())
    with pytest.raises(
        ValueError, match=rf"freeze count must be an integer in \[0, {count}\]; got {count + 1}"
    ):
        freeze_layers(model, count + 1)


# --- per-layer statistics ---------------------------------------------------------------


def test_activation_stats_record_every_weight_layer_and_remove_their_hooks() -> None:
    model = small_model("unet", 3)
    layers = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv3d, nn.Linear))]
    x = torch.randn(2, 1, 16, 16, 16)
    with ActivationStats(model) as stats:
        model(x)
        model(x)
    summary = stats.summary()
    assert sorted(summary) == sorted(layers)  # one entry per layer, in the order they ran
    assert list(summary)[:2] == ["stem.0", "encoder.0.conv1"] and list(summary)[-1] == "head.conv"
    assert list(summary).index("upsample.1.conv") < list(summary).index("upsample.0.conv")
    for name, values in summary.items():
        assert set(values) == {"mean", "std"}
        assert all(math.isfinite(v) for v in values.values()), name
    # The recorded stem statistics are those of its output.
    stem = model.stem[0](x)
    assert summary["stem.0"]["std"] == pytest.approx(stem.std().item(), rel=1e-4)
    assert summary["stem.0"]["mean"] == pytest.approx(stem.mean().item(), rel=1e-3, abs=1e-6)
    # Hooks are gone: another pass changes nothing.
    assert all(not m._forward_hooks for m in model.modules())
    model(x * 10)
    assert stats.summary() == summary
    stats.reset()
    assert stats.summary() == {}


def test_gradient_norms_cover_every_trainable_layer() -> None:
    model = small_model("cnn", 2)
    freeze_layers(model, 2)
    model(torch.randn(2, 1, 16, 16)).sum().backward()
    norms = gradient_norms(model)
    trainable = [n for n, m in parameterised_layers(model)][2:]
    assert list(norms) == trainable
    assert all(math.isfinite(v) and v >= 0 for v in norms.values())
    assert norms["fc"] == pytest.approx(
        torch.cat([model.fc.weight.grad.flatten(), model.fc.bias.grad]).norm().item(), rel=1e-5
    )
    total = math.sqrt(sum(v**2 for v in norms.values()))
    assert total == pytest.approx(
        nn.utils.clip_grad_norm_(model.parameters(), 1e9).item(), rel=1e-4
    )
