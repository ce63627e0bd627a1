"""Published weight files into gantrain's networks (gantrain/engine/weight_files.py, gantrain/nets/*_layouts.py),
and the tasks and training runs that start from them (gantrain/engine/restore.py).

Every published layout is written here, small, by a re-implementation of its reference architecture with the
real key names (tests/reference_archs.py); loaded into gantrain's network, the same input must give the
same output to 1e-5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST, assert_same_training_state, run_cli
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from reference_archs import (ReferenceNLayerDiscriminator, ReferenceResnetGenerator, ReferenceRRDBNet,
                             ReferenceUnetGenerator, ReferenceVGGStyleDiscriminator, esrgan_sequential_keys,
                             randomised)

from gantrain.cli import config_dir
from gantrain.engine.restore import initialise
from gantrain.tasks.sample import run as sample
from gantrain.engine.trainer import Trainer
from gantrain.tasks.translate import run as translate_files
from gantrain.engine.weight_files import check_options, fit, load_fitted, read_weights
from gantrain.errors import UserError
from gantrain.nets.patchgan import PatchGANDiscriminator
from gantrain.nets.resnet_generator import ResNetGenerator
from gantrain.nets.rrdbnet import RRDBNetGenerator
from gantrain.nets.unet import UNetGenerator
from gantrain.nets.vgg_discriminator import VGGDiscriminator
from gantrain.registry import RECIPES, load_builtin_parts

load_builtin_parts()
TOLERANCE = 1e-5


def save(tensors: dict, path: Path) -> Path:
    torch.save(tensors, path)
    return path


def load_into(net: torch.nn.Module, network: str, path: Path, strict: bool = True, key: str | None = None,
              forced: str | None = None) -> str:
    """The loader's steps for one network; returns the format it recognised."""
    fitted = fit(read_weights(path, key), network, set(net.state_dict()), forced)
    load_fitted(net, fitted, "model.generator", network, strict)
    return fitted.layout


def assert_same(reference: torch.nn.Module, ours: torch.nn.Module, inputs: torch.Tensor) -> None:
    with torch.no_grad():
        expected, got = reference.eval()(inputs), ours.eval()(inputs)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=TOLERANCE, rtol=0), (got - expected).abs().max()


def tiny_rrdbnet(blocks: int = 2, scale: int = 4, unshuffle: int | None = None) -> RRDBNetGenerator:
    return RRDBNetGenerator(3, 3, scale, features=8, blocks=blocks, growth=4, input_unshuffle=unshuffle)


@pytest.mark.parametrize("layout", ["esrgan_named", "esrgan_sequential", "basicsr_rrdbnet"])
def test_rrdbnet_layouts_give_the_reference_outputs(tmp_path: Path, layout: str) -> None:
    reference = randomised(ReferenceRRDBNet(3, 8, 2, 4, basicsr=layout == "basicsr_rrdbnet"))
    tensors = reference.state_dict()
    if layout == "esrgan_sequential":
        tensors = esrgan_sequential_keys(tensors, 2)
        assert "model.1.sub.0.RDB1.conv1.0.weight" in tensors and "model.10.weight" in tensors
    if layout == "basicsr_rrdbnet":
        tensors = {"params_ema": tensors, "params": {k: v + 1 for k, v in tensors.items()}}  # Real-ESRGAN's wrapping
    path = save(tensors, tmp_path / "weights.pth")
    ours = tiny_rrdbnet()
    assert load_into(ours, "rrdbnet_generator", path) == layout
    assert_same(reference, ours, torch.rand(2, 3, 7, 9) * 2 - 1)


def test_basicsr_x2_pixel_unshuffle_input(tmp_path: Path) -> None:
    reference = randomised(ReferenceRRDBNet(3, 8, 1, 4, basicsr=True, scale=2))
    path = save({"params": reference.state_dict()}, tmp_path / "RealESRGAN_x2plus.pth")
    fitted = fit(read_weights(path), "rrdbnet_generator")
    assert fitted.implied["input_unshuffle"].value == 2 and fitted.implied["scale"].value == 2
    with pytest.raises(UserError, match="pixel-unshuffle x2 input, model.generator.input_unshuffle is 1"):
        check_options(fitted, {"input_unshuffle": 1}, "model.generator")
    ours = tiny_rrdbnet(blocks=1, scale=2, unshuffle=2)
    load_into(ours, "rrdbnet_generator", path)
    assert_same(reference, ours, torch.rand(1, 3, 10, 6) * 2 - 1)


def test_basicsr_vgg_discriminator(tmp_path: Path) -> None:
    reference = randomised(ReferenceVGGStyleDiscriminator(3, 2))
    path = save(reference.state_dict(), tmp_path / "net_d.pth")
    ours = VGGDiscriminator(3, (128, 128), base_channels=2, stride_kernel=4, dense=100)
    assert load_into(ours, "vgg_discriminator", path) == "basicsr_vgg"
    assert_same(reference, ours, torch.rand(2, 3, 128, 128) * 2 - 1)


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_cyclegan_resnet_generator(tmp_path: Path, norm: str) -> None:
    reference = randomised(ReferenceResnetGenerator(3, 3, 4, 2, norm))
    tensors = dict(reference.state_dict())
    if norm == "instance":  # saves of old PyTorch versions hold InstanceNorm statistics the reference drops too
        tensors["model.2.running_mean"] = torch.zeros(4)
    path = save(tensors, tmp_path / "latest_net_G_A.pth")
    ours = ResNetGenerator(3, 3, (64, 64), base_channels=4, blocks=2, norm=norm)
    assert load_into(ours, "resnet_generator", path) == "cyclegan_resnet"
    assert_same(reference, ours, torch.rand(2, 3, 36, 52) * 2 - 1)


def test_pix2pix_unet_generator(tmp_path: Path) -> None:
    reference = randomised(ReferenceUnetGenerator(3, 2, 6, 2))
    path = save(reference.state_dict(), tmp_path / "latest_net_G.pth")
    ours = UNetGenerator(3, 2, (64, 64), base_channels=2, max_channels=16, depth=6, norm="batch")
    assert load_into(ours, "unet_generator", path) == "pix2pix_unet"
    assert_same(reference, ours, torch.rand(2, 3, 64, 64) * 2 - 1)


def test_pix2pix_nlayer_discriminator_and_module_prefix(tmp_path: Path) -> None:
    reference = randomised(ReferenceNLayerDiscriminator(6, 4, 3))
    path = save({f"module.{k}": v for k, v in reference.state_dict().items()}, tmp_path / "latest_net_D.pth")
    ours = PatchGANDiscriminator(6, base_channels=4, n_layers=3, norm="batch")
    load_into(ours, "patchgan_discriminator", path)
    assert_same(reference, ours, torch.rand(2, 6, 64, 64) * 2 - 1)


def test_safetensors_and_init_key(tmp_path: Path) -> None:
    safetensors = pytest.importorskip("safetensors.torch")
    reference = randomised(ReferenceRRDBNet(3, 8, 2, 4, basicsr=False))
    path = tmp_path / "RRDB_ESRGAN_x4.safetensors"
    safetensors.save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    ours = tiny_rrdbnet()
    assert load_into(ours, "rrdbnet_generator", path) == "esrgan_named"
    assert_same(reference, ours, torch.rand(1, 3, 5, 5))
    wrapped = save({"params": reference.state_dict(), "params_ema": {}}, tmp_path / "wrapped.pth")
    load_into(tiny_rrdbnet(), "rrdbnet_generator", wrapped, key="params")
    with pytest.raises(UserError, match="unknown model.init_key of .* 'g_ema'; choose from: params"):
        read_weights(wrapped, "g_ema")


def test_option_mismatch_is_one_line_naming_the_option(tmp_path: Path) -> None:
    reference = randomised(ReferenceRRDBNet(3, 8, 3, 4, basicsr=False))
    path = save(reference.state_dict(), tmp_path / "RRDB_ESRGAN_x4.pth")
    fitted = fit(read_weights(path), "rrdbnet_generator")
    with pytest.raises(UserError, match=r"the file has 3 RRDB blocks, model.generator.blocks is 2; "
                                        r"set model.generator.blocks=3"):
        check_options(fitted, {"blocks": 2, "features": 8}, "model.generator")
    with pytest.raises(UserError, match=r"an x4 upscaler, data.scale is 2"):
        check_options(fitted, {"scale": 2}, "model.generator")


def test_missing_keys_and_non_strict_loading(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    reference = randomised(ReferenceRRDBNet(3, 8, 2, 4, basicsr=False))
    tensors = {k: v for k, v in reference.state_dict().items() if not k.startswith("HRconv")}
    path = save(tensors, tmp_path / "partial.pth")
    with pytest.raises(UserError, match=r"does not fit model.generator \(rrdbnet_generator\): missing tail.0.weight, "
                                        r"tail.0.bias; model.init_strict=false"):
        load_into(tiny_rrdbnet(), "rrdbnet_generator", path)
    ours = tiny_rrdbnet()
    before = ours.tail[0].weight.clone()
    load_into(ours, "rrdbnet_generator", path, strict=False)
    assert torch.equal(ours.head.weight, reference.conv_first.weight)
    assert torch.equal(ours.tail[0].weight, before)
    assert "not loaded (kept as initialised): tail.0.weight, tail.0.bias" in capsys.readouterr().err
    wrong = save({**reference.state_dict(), "conv_first.weight": torch.zeros(8, 1, 3, 3)}, tmp_path / "grey.pth")
    with pytest.raises(UserError, match=r"head.weight is \[8, 1, 3, 3\] in the file, \[8, 3, 3, 3\] in the network"):
        load_into(tiny_rrdbnet(), "rrdbnet_generator", wrong)


def test_unreadable_and_unknown_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.pth"
    text.write_text("not weights")
    with pytest.raises(UserError, match="is not a readable checkpoint or weights file: it is not a PyTorch file"):
        read_weights(text)
    no_tensors = save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pth")
    with pytest.raises(UserError, match="is not a checkpoint or weights file: it holds no tensors"):
        read_weights(no_tensors)
    odd = save({"encoder.weight": torch.zeros(3)}, tmp_path / "odd.pth")
    with pytest.raises(UserError, match=r"unknown weight layout for rrdbnet_generator \(keys such as encoder.weight\); "
                                        r"recognised: gantrain .*basicsr_rrdbnet .*esrgan_named .*esrgan_sequential"):
        load_into(tiny_rrdbnet(), "rrdbnet_generator", odd)
    with pytest.raises(UserError, match="model.init_format=pix2pix_unet is a layout of unet_generator, not of "
                                        "rrdbnet_generator"):
        load_into(tiny_rrdbnet(), "rrdbnet_generator", odd, forced="pix2pix_unet")


class Pickled:
    """An object only a full (unsafe) unpickling can rebuild."""


def test_files_needing_code_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "pickled.pth"
    torch.save({"params": Pickled()}, path)
    with pytest.raises(UserError, match="pickled objects that a safe .weights_only. load refuses to run"):
        read_weights(path)


def test_old_runs_resume_with_the_new_null_options() -> None:
    from gantrain.engine.trainer import _first_difference

    old = OmegaConf.to_container(OmegaConf.create({"generator": {"blocks": 2}}))
    assert _first_difference(old, {"generator": {"blocks": 2, "input_unshuffle": None}, "init_key": None}) is None
    assert _first_difference(old, {"generator": {"blocks": 3}}) is not None


# --- tasks and training runs from weight files (in process: the CLI adds only its one-line errors) ---------------

TINY_DCGAN = ["model=dcgan", "model.generator.base_channels=8", "model.discriminator.base_channels=8",
              "trainer.batch_size=8", "trainer.sample_every=100", "trainer.log_every=100", *FAST]
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def config(*overrides: str) -> DictConfig:
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("gantrain", list(overrides))


def train(run: Path, *overrides: str) -> dict:
    """A training run in this process; its last checkpoint."""
    Trainer(config(*overrides, f"hydra.run.dir={run}"), run, list(overrides)).fit()
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)


def picture(path: Path) -> torch.Tensor:
    with Image.open(path) as image:
        return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).int()


def eight_bit(images: torch.Tensor) -> torch.Tensor:
    return images[0].add(1).mul(127.5).round().clamp(0, 255).int()


def test_translate_with_published_files_without_a_run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    pixels = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    Image.fromarray(pixels).save("photo.png")
    inputs = torch.from_numpy(pixels).permute(2, 0, 1)[None].float().div(127.5).sub(1)

    reference = randomised(ReferenceRRDBNet(3, 8, 2, 4, basicsr=False))
    save(esrgan_sequential_keys(reference.state_dict(), 2), tmp_path / "RRDB_ESRGAN_x4.pth")
    task = ["task=translate", "model=esrgan", "checkpoint=RRDB_ESRGAN_x4.pth", "input=photo.png", "out=x4/",
            "model.generator.features=8", "model.generator.growth=4", *FAST]
    with pytest.raises(UserError, match="the file has 2 RRDB blocks, model.generator.blocks is 23; "
                                        "set model.generator.blocks=2"):
        translate_files(config(*task))
    translate_files(config(*task, "model.generator.blocks=2"))
    with torch.no_grad():
        assert (picture(tmp_path / "x4" / "photo.png") - eight_bit(reference(inputs))).abs().max() <= 1  # rounding

    generator = randomised(ReferenceResnetGenerator(3, 3, 4, 2))
    save(generator.state_dict(), tmp_path / "latest_net_G_A.pth")
    translate_files(config("task=translate", "model=cyclegan", "checkpoint=latest_net_G_A.pth", "input=photo.png",
                           "out=zebra/", "direction=BtoA", "model.generator.base_channels=4",
                           "model.generator.blocks=2", *FAST))
    padded = torch.nn.functional.pad(inputs, (0, 3, 0, 3), mode="reflect")  # to the generator's multiple of 4
    with torch.no_grad():
        expected = eight_bit(generator(padded)[..., :37, :53])
    assert (picture(tmp_path / "zebra" / "photo.png") - expected).abs().max() <= 1


def test_init_from_a_run_then_sample_from_its_generator_file_and_resume_exactly(tmp_path: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    source = tmp_path / "source"
    before = train(source, *TINY_DCGAN, "trainer.max_steps=2")

    # init= starts at step 0 from every network of the run, with fresh optimizers (lr ~0: the weights stay put)
    after = train(tmp_path / "started", *TINY_DCGAN, f"init={source}", "trainer.max_steps=1", "optim.lr=1e-30")
    assert after["step"] == 1
    for name in ("generator", "discriminator"):
        old, new = before["recipe"]["networks"][name], after["recipe"]["networks"][name]
        assert all(torch.equal(old[k], new[k]) for k in old if not k.endswith(BUFFERS))
        assert [s["step"] for s in after["recipe"]["optimizers"][name]["state"].values()][0] == 1

    # a run started with init= resumes exactly: the resume reads only its own checkpoint
    started = [*TINY_DCGAN, f"init={source}"]
    straight = train(tmp_path / "straight", *started, "trainer.max_steps=2")
    train(tmp_path / "split", *started, "trainer.max_steps=1")
    (source / "checkpoints" / "last.pt").rename(source / "moved.pt")  # gone: a resume must not need it
    resumed = train(tmp_path / "split", *started, "trainer.max_steps=2", f"resume={tmp_path / 'split'}")
    assert_same_training_state(straight, resumed)

    # the generator as a plain state_dict samples exactly as the run does (task=sample model=dcgan checkpoint=G.pth)
    (source / "moved.pt").rename(source / "checkpoints" / "last.pt")
    torch.save(before["recipe"]["networks"]["generator"], tmp_path / "G.pth")
    sample(config("task=sample", f"checkpoint={source}", "n=4", "out=run.npz", *TINY_DCGAN))
    sample(config("task=sample", "checkpoint=G.pth", "n=4", "out=file.npz", *TINY_DCGAN))
    assert np.array_equal(np.load("run.npz")["samples"], np.load("file.npz")["samples"])


def test_generator_init_from_a_published_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    reference = randomised(ReferenceRRDBNet(3, 8, 1, 4, basicsr=True))
    save({"params_ema": reference.state_dict(), "params": {}}, tmp_path / "RealESRGAN_x4plus.pth")
    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(2):
        Image.fromarray(np.random.default_rng(index).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
            photos / f"{index}.png")
    common = ["model=rrdbnet", "data=sr", f"data.root={photos}", "data.hr_size=16", "trainer.batch_size=2",
              "model.generator.features=8", "model.generator.blocks=1", "model.generator.growth=4",
              "optim.lr=1e-30", "trainer.sample_every=100", "metrics.names=[]", *FAST]
    saved = train(tmp_path / "run", *common, "model.generator.init=RealESRGAN_x4plus.pth", "trainer.max_steps=1")
    assert torch.equal(saved["recipe"]["networks"]["generator"]["trunk.1.weight"], reference.conv_body.weight)
    with pytest.raises(UserError, match="the file has 1 RRDB blocks, model.generator.blocks is 2"):
        train(tmp_path / "other", *common, "model.generator.blocks=2", "model.generator.init=RealESRGAN_x4plus.pth",
              "trainer.max_steps=1")


def test_bad_input_is_one_line_with_status_2(tmp_path: Path) -> None:
    (tmp_path / "notes.pth").write_text("hello")
    result = run_cli("task=translate", "model=esrgan", "checkpoint=notes.pth", "input=notes.pth", "out=up/", *FAST,
                     cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "gantrain: error: notes.pth is not a readable checkpoint or weights file: it is not a PyTorch file")


def test_cyclegan_networks_each_from_their_own_file(tmp_path: Path) -> None:
    """model.generator.init_ab / init_ba and model.discriminator.init_a / init_b pick one network each."""
    files = {name: tmp_path / f"latest_net_{name}.pth" for name in ("G_A", "G_B", "D_A", "D_B")}
    for seed, name in enumerate(files):
        net = ReferenceResnetGenerator(3, 3, 4, 2) if name.startswith("G") else ReferenceNLayerDiscriminator(3, 4, 3,
                                                                                                            "instance")
        save(randomised(net, seed).state_dict(), files[name])
    cfg = config("model=cyclegan", "model.generator.base_channels=4", "model.generator.blocks=2",
                 "model.discriminator.base_channels=4", f"model.generator.init_ab={files['G_A']}",
                 f"model.generator.init_ba={files['G_B']}", f"model.discriminator.init_a={files['D_B']}",
                 f"model.discriminator.init_b={files['D_A']}", *FAST)
    recipe_type = RECIPES.get(cfg.model.recipe)
    spec = recipe_type.standalone_spec(cfg, {})
    recipe = recipe_type.from_config(cfg, spec, torch.device("cpu"))
    initialise(recipe, cfg, spec)
    for network, name in (("generator_ab", "G_A"), ("generator_ba", "G_B"), ("discriminator_a", "D_B"),
                          ("discriminator_b", "D_A")):
        wanted = torch.load(files[name], weights_only=True)
        own = recipe.networks[network].state_dict()
        assert all(torch.equal(own[k.replace("conv_block", "body")], v) for k, v in wanted.items()), network
