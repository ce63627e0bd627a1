"""Full-size check of the published weight layouts (the tests use reduced sizes).

Builds each reference architecture at its published size (tests/reference_archs.py: ESRGAN's 23-block RRDBNet,
BasicSR's x4 and x2 RRDBNet, CycleGAN's 9-block ResNet generator, pix2pix's unet_256, the 70x70 PatchGAN and
BasicSR's VGG discriminator for 128x128) with random weights, saves it in its published key layout, loads the file
the way a user does (task=translate's loader with the preset's default options, or the network's own loader for
discriminators) and prints the largest output difference on one small input. No download: the layouts' names and
shapes come from the reference code, the weights are random.

    python scripts/check_published_layouts.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from reference_archs import (ReferenceNLayerDiscriminator, ReferenceResnetGenerator, ReferenceRRDBNet,  # noqa: E402
                             ReferenceUnetGenerator, ReferenceVGGStyleDiscriminator, esrgan_sequential_keys,
                             randomised)

from gantrain.cli import config_dir  # noqa: E402
from gantrain.engine.restore import load_trained  # noqa: E402
from gantrain.engine.weight_files import fit, load_fitted, read_weights  # noqa: E402
from gantrain.nets.patchgan import PatchGANDiscriminator  # noqa: E402
from gantrain.nets.vgg_discriminator import VGGDiscriminator  # noqa: E402
from gantrain.registry import load_builtin_parts  # noqa: E402


def generator(path: Path, *overrides: str) -> torch.nn.Module:
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("gantrain", ["task=translate", f"checkpoint={path}", "device=cpu", *overrides])
    model = load_trained(cfg.checkpoint, "cpu", "translate", cfg, lambda recipe: recipe.test_network(None))
    return model.recipe.networks[model.recipe.test_network(None)].eval()


def discriminator(net: torch.nn.Module, network: str, path: Path) -> torch.nn.Module:
    load_fitted(net, fit(read_weights(path), network, set(net.state_dict())), "model.discriminator", network, True)
    return net.eval()


def main() -> None:
    load_builtin_parts()
    torch.manual_seed(0)
    folder = Path(tempfile.mkdtemp())
    rows = []
    esrgan = randomised(ReferenceRRDBNet(3, 64, 23, 32, basicsr=False))
    cases = [("esrgan_sequential x4", esrgan, esrgan_sequential_keys(esrgan.state_dict(), 23), ["model=esrgan"], 12),
             ("esrgan_named x4", esrgan, esrgan.state_dict(), ["model=esrgan"], 12)]
    for scale, extra in ((4, []), (2, ["model.generator.input_unshuffle=2"])):
        basicsr = randomised(ReferenceRRDBNet(3, 64, 23, 32, basicsr=True, scale=scale))
        cases.append((f"basicsr_rrdbnet x{scale}", basicsr, {"params_ema": basicsr.state_dict()},
                      ["model=rrdbnet", *extra], 12))
    resnet = randomised(ReferenceResnetGenerator(3, 3, 64, 9))
    cases.append(("cyclegan_resnet 9 blocks", resnet, resnet.state_dict(), ["model=cyclegan"], 64))
    unet = randomised(ReferenceUnetGenerator(3, 3, 8, 64))
    cases.append(("pix2pix_unet unet_256", unet, unet.state_dict(), ["model=pix2pix", "model.test_mode=eval"], 256))
    for name, reference, tensors, overrides, size in cases:
        path = folder / f"{name.split()[0]}.pth"
        torch.save(tensors, path)
        ours = generator(path, *overrides)
        image = torch.rand(1, 3, size, size) * 2 - 1
        with torch.no_grad():
            rows.append((name, (ours(image) - reference(image)).abs().max().item()))
    for name, reference, ours, network, shape in (
            ("pix2pix_nlayer 70x70", randomised(ReferenceNLayerDiscriminator(6, 64, 3)),
             PatchGANDiscriminator(6, 64, 3, "batch"), "patchgan_discriminator", (6, 256, 256)),
            ("basicsr_vgg 128", randomised(ReferenceVGGStyleDiscriminator(3, 64)),
             VGGDiscriminator(3, (128, 128), 64, None, 4, 100), "vgg_discriminator", (3, 128, 128))):
        path = folder / f"{network}.pth"
        torch.save(reference.state_dict(), path)
        image = torch.rand(1, *shape) * 2 - 1
        with torch.no_grad():
            rows.append((name, (discriminator(ours, network, path)(image) - reference(image)).abs().max().item()))
    for name, difference in rows:
        print(f"{name:28s} max |gantrain - reference| = {difference:.2e}")


if __name__ == "__main__":
    main()
