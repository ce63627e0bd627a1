"""Every registered network fits the data it is given: output shapes, sizes, init, norms, no sigmoid."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from gantrain.data.source import DataSpec
from gantrain.errors import UserError
from gantrain.registry import NETWORKS, load_builtin_parts

load_builtin_parts()
LATENT = 8
REGISTERED = NETWORKS.names()
# the networks sized by the data spec (noise-to-image families); image-to-image ones take channels and sizes,
# and are tested in test_translation.py and test_super_resolution.py
ALL = [name for name in REGISTERED if "data_spec" in inspect.signature(NETWORKS.get(name)).parameters]
GENERATORS = [name for name in ALL if name.endswith("_generator")]
DISCRIMINATORS = [name for name in ALL if name.endswith("_discriminator")]
POWER_OF_TWO_SIZES = {"progan_generator", "progan_discriminator"}  # they grow from 4x4 by doublings
LINEAR_OUTPUT = {"progan_generator"}  # ProGAN's toRGB is linear, as in the paper; its samples are clamped when shown


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_options(name: str) -> dict:
    """Tiny widths so that even 128x128 networks run in milliseconds."""
    params = inspect.signature(NETWORKS.get(name)).parameters
    options = {}
    if "base_channels" in params:
        options["base_channels"] = 8
    if "hidden" in params:
        options["hidden"] = [16]
    if "fmap_base" in params:
        options.update(fmap_base=32, fmap_max=8)
    return options


def build(name: str, spec: DataSpec, **options) -> nn.Module:
    return NETWORKS.build(name, {**small_options(name), **options}, data_spec=spec, latent_dim=LATENT,
                          device=torch.device("cpu"))


def run(name: str, net: nn.Module, spec: DataSpec, n: int = 3) -> torch.Tensor:
    """One forward pass with the input the role expects: noise for generators, samples for discriminators.

    Conditional networks (G(z, y), D(x, y)) also get labels; an ACGAN discriminator's scores come first.
    """
    conditions = {}
    if "labels" in inspect.signature(net.forward).parameters:
        conditions["labels"] = torch.arange(n) % spec.num_classes
    if name in GENERATORS:
        return net(torch.randn(n, LATENT), **conditions)
    out = net(torch.rand(n, *spec.shape) * 2 - 1, **conditions)
    return out[0] if isinstance(out, tuple) else out


def test_every_network_is_a_generator_or_discriminator() -> None:
    """The role is read from the name; a network of neither kind would escape the tests below."""
    assert GENERATORS and DISCRIMINATORS
    assert all(name.endswith(("_generator", "_discriminator")) for name in REGISTERED)
    assert sorted(GENERATORS + DISCRIMINATORS) == ALL
    assert {"dcgan_generator", "dcgan_discriminator", "mlp_generator", "mlp_discriminator"} <= set(ALL)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [16, 28, 32, 64, 128])
@pytest.mark.parametrize("name", ALL)
def test_image_output_shapes(name: str, size: int, channels: int) -> None:
    """Generators give (N, C, H, W) images, discriminators one score per sample."""
    if name in POWER_OF_TWO_SIZES and size & (size - 1):
        pytest.skip(f"{name} takes powers of two only")
    torch.manual_seed(0)
    spec = DataSpec(shape=(channels, size, size), num_classes=10)
    out = run(name, build(name, spec), spec)
    expected = (3, channels, size, size) if name in GENERATORS else (3,)
    assert out.shape == expected
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", [n for n in GENERATORS if n not in LINEAR_OUTPUT])
def test_image_generators_end_in_tanh(name: str) -> None:
    """Image data lies in [-1, 1]: generators stay inside it even with blown-up weights."""
    torch.manual_seed(0)
    spec = DataSpec(shape=(1, 16, 16), num_classes=10)
    net = build(name, spec)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(50)
    out = run(name, net, spec, n=4)
    assert out.abs().max() <= 1.0


@pytest.mark.parametrize("name", [n for n in ALL if n.startswith("mlp_")])
def test_mlp_on_toy_points(name: str) -> None:
    """MLP networks take 2-D points: generators (N, 2), discriminators (N,)."""
    spec = DataSpec(shape=(2,), num_classes=8, bounded=False)
    out = run(name, build(name, spec), spec, n=5)
    assert out.shape == ((5, 2) if name in GENERATORS else (5,))


def test_mlp_generator_unbounded_for_toy_data() -> None:
    """bounded=False: no Tanh, so points can leave [-1, 1] (toy rings have radius 2)."""
    torch.manual_seed(0)
    unbounded = build("mlp_generator", DataSpec(shape=(2,), bounded=False))
    bounded = build("mlp_generator", DataSpec(shape=(2,), bounded=True))
    bounded.load_state_dict(unbounded.state_dict())
    with torch.no_grad():
        for net in (unbounded, bounded):
            net.net[-2].weight.mul_(100)  # the output Linear (before Tanh / Identity)
    z = torch.randn(64, LATENT)
    assert unbounded(z).abs().max() > 1.0
    assert bounded(z).abs().max() <= 1.0
    assert not any(isinstance(m, nn.Tanh) for m in unbounded.modules())


@pytest.mark.parametrize("name", DISCRIMINATORS)
@pytest.mark.parametrize("shape", [(1, 16, 16), (3, 32, 32)])
def test_discriminator_has_no_sigmoid(name: str, shape: tuple[int, ...]) -> None:
    """Scores are raw logits (the loss applies any sigmoid), so they can be any real number."""
    torch.manual_seed(0)
    spec = DataSpec(shape=shape, num_classes=10)
    net = build(name, spec)
    assert not any(isinstance(m, nn.Sigmoid) for m in net.modules())
    last = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]
    for value in (-3.0, 3.0):
        with torch.no_grad():
            last.weight.zero_()
            last.bias.fill_(value)
        # the last layer's output reaches the caller unchanged: no sigmoid, no clamp
        assert torch.allclose(run(name, net, spec, n=8), torch.full((8,), value))


@pytest.mark.parametrize("name", [n for n in ALL if n.startswith("dcgan_")])
@pytest.mark.parametrize("size", [30, 7, 4, 9, 100, 144])
def test_dcgan_rejects_unsupported_sizes(name: str, size: int) -> None:
    """Sizes not of the form s*2^k (s in 4..7, k >= 1) get a UserError naming the size."""
    with pytest.raises(UserError) as info:
        build(name, DataSpec(shape=(1, size, size)))
    assert f"image size {size}" in str(info.value)
    assert "data.image_size" in str(info.value)


@pytest.mark.parametrize("name", [n for n in ALL if n.startswith("dcgan_")])
@pytest.mark.parametrize("size", [8, 12, 20, 24, 48, 56])
def test_dcgan_accepts_every_documented_size(name: str, size: int) -> None:
    """Any s*2^k with s in 4..7 and k >= 1 is supported, not only the common sizes."""
    spec = DataSpec(shape=(3, size, size))
    out = run(name, build(name, spec), spec)
    assert out.shape == ((3, 3, size, size) if name in GENERATORS else (3,))


@pytest.mark.parametrize("name", [n for n in ALL if n.startswith("dcgan_")])
@pytest.mark.parametrize("shape", [(2,), (1, 16, 32)])
def test_dcgan_needs_square_images(name: str, shape: tuple[int, ...]) -> None:
    """Points or non-square images are a UserError, not a shape crash mid-run."""
    with pytest.raises(UserError, match="square images"):
        build(name, DataSpec(shape=shape))


@pytest.mark.parametrize("name", [n for n in ALL if n.startswith("dcgan_")])
def test_dcgan_init(name: str) -> None:
    """Radford et al.: conv weights N(0, 0.02), zero biases, norm scales N(1, 0.02)."""
    torch.manual_seed(0)
    net = NETWORKS.build(name, {"base_channels": 16}, data_spec=DataSpec(shape=(3, 32, 32)), latent_dim=64)
    convs = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert len(convs) >= 3
    for conv in convs:
        if conv.weight.numel() >= 1000:
            assert conv.weight.mean().abs() < 0.005
            assert conv.weight.std().item() == pytest.approx(0.02, rel=0.15)
        if conv.bias is not None:
            assert torch.all(conv.bias == 0)
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms
    scales = torch.cat([m.weight.detach() for m in norms])
    assert scales.mean().item() == pytest.approx(1.0, abs=0.01)
    assert 0.005 < scales.std().item() < 0.05
    assert all(torch.all(m.bias == 0) for m in norms)


NORM_TYPES = {"batch": nn.BatchNorm2d, "instance": nn.InstanceNorm2d, "layer": nn.GroupNorm, "none": None}


@pytest.mark.parametrize("norm", NORM_TYPES)
@pytest.mark.parametrize("name", [n for n in ALL if n.startswith("dcgan_")])
def test_dcgan_norm_options(name: str, norm: str) -> None:
    """Each norm option builds the right layers and trains a step (forward + backward)."""
    spec = DataSpec(shape=(1, 32, 32))
    net = build(name, spec, norm=norm)
    norm_layers = [m for m in net.modules()
                   if isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm, nn.LayerNorm))]
    if NORM_TYPES[norm] is None:
        assert norm_layers == []
    else:
        assert norm_layers and all(isinstance(m, NORM_TYPES[norm]) for m in norm_layers)
    out = run(name, net, spec, n=4)
    assert out.shape == ((4, 1, 32, 32) if name in GENERATORS else (4,))
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize("name", [n for n in ALL if n.startswith("dcgan_")])
def test_dcgan_unknown_norm(name: str) -> None:
    """A misspelt norm is a UserError listing the choices."""
    with pytest.raises(UserError, match="batch, instance, layer, none"):
        build(name, DataSpec(shape=(1, 16, 16)), norm="btach")


def test_dcgan_layer_norm_is_per_sample() -> None:
    """norm=layer (for gradient penalties) makes each sample's score independent of the batch."""
    torch.manual_seed(0)
    spec = DataSpec(shape=(1, 16, 16))
    net = build("dcgan_discriminator", spec, norm="layer")
    x = torch.rand(6, 1, 16, 16)
    assert torch.allclose(net(x)[:2], net(x[:2]), atol=1e-6)


def test_unknown_network_option_is_user_error() -> None:
    """Options from the config are checked against the constructor."""
    with pytest.raises(UserError, match="base_channels"):
        NETWORKS.build("dcgan_generator", {"base_channel": 8}, data_spec=DataSpec(shape=(1, 16, 16)),
                       latent_dim=LATENT)
