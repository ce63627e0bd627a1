"""Super-resolution models: the generators at every scale, ESRGAN's relativistic generator loss, the two stages
with exact resume across the switch, tiled upscaling, network interpolation, the perceptual loss's weights.

Networks are tiny and the VGG19 of the perceptual loss is replaced by a small TorchScript feature network
(its weights cannot be downloaded here); the real VGG path is checked for its offline error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from torch import nn

from conftest import FAST, assert_same_training_state, compose_config, run_cli, train_straight_and_resumed
from gantrain.data.build import build_data
from gantrain.tasks.interpolate import run as interpolate
from gantrain.engine.trainer import build_recipe
from gantrain.engine.restore import initialise
from gantrain.engine.tiling import tiled, translate_images
from gantrain.errors import UserError
from gantrain.losses.perceptual import VGG19_WEIGHTS, vgg19_features, vgg19_layer_names
from gantrain.losses.relativistic import RelativisticAverageLoss
from gantrain.nets.rrdbnet import RRDBNetGenerator
from gantrain.nets.srresnet import SRResNetGenerator
from gantrain.nets.vgg_discriminator import VGGDiscriminator
from gantrain.recipes.translation import TranslationInfo

TINY_ESRGAN = ["model=esrgan", "data=sr", "data.hr_size=16", "data.scale=4", "data.repeat=2", "trainer.batch_size=2",
               "model.generator.features=4", "model.generator.blocks=1", "model.generator.growth=4",
               "model.discriminator.base_channels=4", "model.discriminator.dense=8", "model.pretrain.steps=2",
               "trainer.log_every=1", "trainer.sample_every=100", "metrics.eval_every=100", *FAST]


def write_photos(folder: Path, count: int, size: tuple[int, int], seed: int = 0) -> Path:
    """Smooth random RGB pictures (upscaled noise), so a low-resolution version says something about them."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        small = Image.fromarray(rng.integers(0, 256, (size[0] // 4, size[1] // 4, 3), dtype=np.uint8))
        small.resize((size[1], size[0]), Image.BICUBIC).save(folder / f"photo_{index:02d}.png")
    return folder


def tiny_features(path: Path) -> Path:
    """A TorchScript stand-in for VGG19: two convolutions, taking images in [-1, 1]."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
    torch.jit.script(net).save(str(path))
    return path


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_both_generators_upscale_by_2_3_and_4(scale):
    lr = torch.randn(2, 3, 7, 9)
    for generator in (SRResNetGenerator(3, 3, scale, features=4, blocks=1),
                      RRDBNetGenerator(3, 3, scale, features=4, blocks=1, growth=2)):
        assert generator(lr).shape == (2, 3, 7 * scale, 9 * scale)
    with pytest.raises(UserError, match="upscales by 2, 3, 4, 8, not 5"):
        SRResNetGenerator(3, 3, 5)


def test_the_discriminators_fit_srgan_and_esrgan_crops():
    assert VGGDiscriminator(3, (96, 96), base_channels=2, dense=4)(torch.zeros(2, 3, 96, 96)).shape == (2, 1)
    esrgan = VGGDiscriminator(3, (128, 128), base_channels=2, stride_kernel=4, dense=4)
    assert esrgan(torch.zeros(1, 3, 128, 128)).shape == (1, 1) and esrgan.head[1].in_features == 16 * 4 * 4


def test_both_relativistic_generator_terms_carry_gradient():
    """L_G = E[BCE(f - E[r], 1)] + E[BCE(r - E[f], 0)]: the second term reaches G through E[f]."""
    loss = RelativisticAverageLoss()
    real = torch.tensor([1.0, 2.0, -0.5])
    fake = torch.tensor([0.2, -1.0, 0.4], requires_grad=True)
    (full,) = torch.autograd.grad(loss.generator_loss(fake, real), fake)
    fake_term = nn.functional.softplus(-(fake - real.mean())).mean()
    (first_only,) = torch.autograd.grad(fake_term, fake)
    real_term = nn.functional.softplus(real - fake.mean()).mean()
    (second_only,) = torch.autograd.grad(real_term, fake)
    assert second_only.abs().sum() > 0  # the "real" term depends on the fakes
    assert torch.allclose(full, first_only + second_only)


def test_tiles_match_the_whole_image_within_an_eight_bit_step():
    torch.manual_seed(0)
    generator = RRDBNetGenerator(3, 3, 4, features=4, blocks=1, growth=2).eval()
    image = torch.rand(1, 3, 30, 41) * 2 - 1
    info = TranslationInfo(3, 3, multiple=1, scale=4)
    with torch.no_grad():
        whole = translate_images(generator, image, info, tile=None, overlap=12)
        pieces = tiled(generator, image, info, tile=12, overlap=12)
    assert whole.shape == pieces.shape == (1, 3, 120, 164)
    assert (whole - pieces).abs().max() * 127.5 < 1.0


def test_vgg19_layers_and_the_offline_error(monkeypatch, tmp_path):
    names = vgg19_layer_names()
    assert names.index("conv5_4") == 34 and names.index("relu5_4") == 35 and len(names) == 37
    monkeypatch.setenv("GANTRAIN_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with pytest.raises(UserError) as caught:
        vgg19_features("conv5_4", None, True)
    message = str(caught.value)
    assert VGG19_WEIGHTS.file in message and "model.perceptual.weights=PATH" in message and "weight=0" in message
    assert "\n" not in message
    with pytest.raises(UserError, match="unknown model.perceptual.layer 'conv6_1'"):
        vgg19_features("conv6_1", "random", True)
    assert len(vgg19_features("relu2_1", "random", True)) == 1 + 7  # the input normalisation, then conv1_1..relu2_1


def test_esrgan_trains_both_stages_resumes_exactly_across_the_switch_and_interpolates(tmp_path):
    train = write_photos(tmp_path / "hr", 3, (40, 44))
    val = write_photos(tmp_path / "val", 2, (36, 32), seed=1)
    features = tiny_features(tmp_path / "features.pt")
    common = [*TINY_ESRGAN, f"data.root={train}", f"data.val_root={val}", f"model.perceptual.network={features}"]
    straight, split, _, a, b = train_straight_and_resumed(common, total=4, split_at=1, cwd=tmp_path)
    assert_same_training_state(a, b)
    assert a["recipe"]["extra"]["steps"] == 4
    assert (split / "checkpoints" / "step_0000002.pt").is_file()  # the end of the PSNR stage gets its checkpoint
    stages = a["recipe"]["optimizers"]
    assert set(stages) == {"generator", "generator_pretrain", "discriminator"}
    assert [s["step"] for s in stages["generator_pretrain"]["state"].values()][0] == 2  # PSNR stage: 2 steps
    assert [s["step"] for s in stages["generator"]["state"].values()][0] == 2  # GAN stage: the other 2

    psnr_stage = split / "checkpoints" / "step_0000002.pt"  # the generator at the end of the PSNR stage
    for alpha, source in ((0.0, psnr_stage), (1.0, straight / "checkpoints" / "last.pt")):
        out = tmp_path / f"interp_{alpha:g}.pt"
        interpolate(OmegaConf.create({"a": str(psnr_stage), "b": str(straight), "alpha": alpha, "out": str(out)}))
        blended = torch.load(out, weights_only=True)["recipe"]["networks"]["generator"]
        wanted = torch.load(source, weights_only=True)["recipe"]["networks"]["generator"]
        assert all(torch.equal(blended[k], wanted[k]) for k in wanted)
    other = torch.load(psnr_stage, weights_only=True)
    other["config"]["model"]["generator"]["features"] = 8
    torch.save(other, tmp_path / "other.pt")
    with pytest.raises(UserError, match="cannot interpolate: .* both must be the same network"):
        interpolate(OmegaConf.create({"a": str(tmp_path / "other.pt"), "b": str(straight), "alpha": 0.5,
                                      "out": str(tmp_path / "x.pt")}))

    # a GAN stage started from an earlier run's generator (model.generator.init): loaded when a new run starts
    cfg = compose_config(*common, "model.pretrain.steps=0", f"model.generator.init={psnr_stage}")
    source = build_data(cfg.data)
    recipe = build_recipe(cfg, source.spec, torch.device("cpu"))
    initialise(recipe, cfg, source.spec)  # what the loop does before a new run's first step
    wanted = torch.load(psnr_stage, weights_only=True)["recipe"]["networks"]["generator"]
    assert all(torch.equal(recipe.generator.state_dict()[k], wanted[k]) for k in wanted)

    run_cli("task=translate", f"checkpoint={tmp_path / 'interp_1.pt'}", f"input={val}", f"out={tmp_path / 'up'}",
            *FAST, cwd=tmp_path)
    with Image.open(tmp_path / "up" / "photo_00.png") as upscaled:
        assert upscaled.size == (32 * 4, 36 * 4)
    evaluated = run_cli("task=eval", f"checkpoint={straight}", f"data.val_root={val}", *FAST, cwd=tmp_path)
    assert "psnr/bicubic" in evaluated.stdout and "photo_01" in evaluated.stdout  # the per-image table
