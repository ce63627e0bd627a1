"""Published weight files into gantrain's networks (gantrain/engine/weight_files.py, gantrain/nets/*_layouts.py),
and the tasks and training runs that start from them (gantrain/engine/restore.py).

Every published layout is written here, small, by a re-implementation of its reference architecture with the
real key names (tests/reference_archs.py); loaded into gantrain's network, the same input must give the
same output to 1e-5.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from reference_archs import (ReferenceNLayerDiscriminator, ReferenceResnetGenerator, ReferenceRRDBNet,
                             ReferenceUnetGenerator, ReferenceVGGStyleDiscriminator, esrgan_sequential_keys,
                             randomised)

from gantrain.engine.weight_files import check_options, fit, load_fitted, read_weights
from gantrain.errors import UserError
from gantrain.nets.patchgan import PatchGANDiscriminator
from gantrain.nets.resnet_generator import ResNetGenerator
from gantrain.nets.rrdbnet import RRDBNetGenerator
from gantrain.nets.unet import UNetGenerator
from gantrain.nets.vgg_discriminator import VGGDiscriminator
from gantrain.registry import load_builtin_parts

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
