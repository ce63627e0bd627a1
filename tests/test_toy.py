"""2-D toy data: every noise-to-image preset picks its point networks from what the data declares and trains on
points, cgan conditions on the mode index, WGAN-GP's toy settings learn the ring, and a value given to a key that
holds options is one line naming the override meant."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigTypeError
from torch import nn

from conftest import FAST, compose_config, run_cli
from gantrain.cli import check_group_choices, config_dir, main, one_line
from gantrain.data.build import build_data
from gantrain.data.stream import BatchStream
from gantrain.data.toy2d import mixture_modes
from gantrain.engine.rng import seed_everything
from gantrain.engine.trainer import build_recipe
from gantrain.errors import UserError
from gantrain.metrics.coverage import mode_statistics
from gantrain.registry import load_builtin_parts

load_builtin_parts()
pytestmark = pytest.mark.usefixtures("one_torch_thread")
CPU = torch.device("cpu")
NOISE_TO_IMAGE = ("gan", "cgan")  # recipes that draw samples from noise: their presets must run on points too
PRESETS = sorted(p.stem for p in (config_dir() / "model").glob("*.yaml")
                 if OmegaConf.load(p).model.get("recipe") in NOISE_TO_IMAGE)  # presets added later included
OWN_TRAINING = {  # what each preset keeps on points: its loss, optimizer and critic steps
    "gan": ("nonsaturating", "adam", 1), "dcgan": ("nonsaturating", "adam", 1), "wgan": ("wasserstein", "rmsprop", 5),
    "wgan_gp": ("wasserstein", "adam", 5), "cgan": ("nonsaturating", "adam", 1), "cgan_mlp": ("nonsaturating", "adam", 1)}
IMAGE_GENERATORS = {"gan": "mlp_generator", "dcgan": "dcgan_generator", "wgan": "dcgan_generator",
                    "wgan_gp": "dcgan_generator", "cgan": "conditional_dcgan_generator",
                    "cgan_mlp": "conditional_mlp_generator"}


def composed(*overrides: str) -> DictConfig:
    return compose_config("device=cpu", *overrides)


def shrink(cfg: DictConfig, width: int = 16, batch_size: int = 32) -> DictConfig:
    """The same networks, tiny: a few steps in well under a second."""
    for role in ("generator", "discriminator"):
        cfg.model[role].hidden = [width]
    cfg.trainer.batch_size = batch_size
    return cfg


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_trains_on_points_with_toy_networks_and_its_own_training(preset: str) -> None:
    cfg = composed(f"model={preset}", "data=toy2d", "data.num_samples=256")
    conditional = preset.startswith("cgan")
    assert cfg.data.kind == "points"
    for role in ("generator", "discriminator"):
        network = cfg.model[role]
        assert network.name == ("conditional_" if conditional else "") + f"mlp_{role}"
        assert list(network.hidden) == [512, 512, 512] and network.negative_slope == 0  # 3 hidden ReLU layers
    assert cfg.model.latent_dim == 2 and cfg.trainer.batch_size == 256
    if preset in OWN_TRAINING:
        assert (cfg.loss.name, cfg.optim.name, cfg.model.n_critic) == OWN_TRAINING[preset]

    source = build_data(cfg.data)
    recipe = build_recipe(shrink(cfg), source.spec, CPU)
    assert not any(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in recipe.generator.modules())
    stream = BatchStream(source.dataset, cfg.trainer.batch_size, 0, CPU)
    for _ in range(2):
        scalars = recipe.train_step(stream.next)
        recipe.end_step()
    assert all(math.isfinite(float(value)) for value in scalars.values())
    assert recipe.sample(5, torch.Generator().manual_seed(0)).shape == (5, 2)


@pytest.mark.parametrize("preset", sorted(IMAGE_GENERATORS))
def test_image_data_keeps_each_presets_image_networks(preset: str) -> None:
    assert preset in PRESETS  # found as a noise-to-image preset, so also trained on points above
    cfg = composed(f"model={preset}")  # the default data: digits, images
    assert "kind" not in cfg.data and cfg.model.generator.name == IMAGE_GENERATORS[preset]


def test_the_command_line_wins_over_what_the_points_picked() -> None:
    other = composed("model=wgan_gp", "data=toy2d", "optim=rmsprop", "model/networks=wgan_gp_images")
    assert other.optim.name == "rmsprop" and "betas" not in other.optim  # the command line still wins
    assert other.model.generator.name == "dcgan_generator"


def test_the_toy_codes_exact_settings_are_one_documented_line_and_a_left_over_schedule_option_is_named() -> None:
    exact = composed("model=wgan_gp", "data=toy2d", "optim=adam_wgan_gp", "optim.betas=[0.5,0.9]",
                     "trainer.max_steps=100000")  # the line docs/toy2d.md and the optimizer's YAML give
    build_recipe(shrink(exact), build_data(exact.data).spec, CPU)
    switched = shrink(composed("model=wgan_gp", "data=toy2d", "optim.schedule.name=constant"))
    with pytest.raises(UserError, match=r"optim.schedule.start is an option of the linear lr schedule, not of "
                                        r"constant; drop it with '~optim.schedule.start'"):
        build_recipe(switched, build_data(switched.data).spec, CPU)
    dropped = shrink(composed("model=wgan_gp", "data=toy2d", "optim.schedule.name=constant", "~optim.schedule.start"))
    build_recipe(dropped, build_data(dropped.data).spec, CPU)


def test_cgan_conditions_on_the_mode_index_of_toy_points() -> None:
    cfg = shrink(composed("model=cgan", "data=toy2d", "data.name=8gaussians", "data.num_samples=64"))
    source = build_data(cfg.data)
    centres, _ = mixture_modes("8gaussians")
    points, labels = source.dataset.points, source.dataset.labels
    assert torch.equal(labels, torch.cdist(points, centres).argmin(dim=1))  # the label is the mode
    recipe = build_recipe(cfg, source.spec, CPU)
    seen: dict[str, list[torch.Tensor]] = {"generator": [], "discriminator": []}
    for role in seen:
        recipe.networks[role].register_forward_hook(lambda module, args, output, role=role: seen[role].append(args[1]))
    batch = source.dataset.get_batch(torch.arange(32))
    recipe.train_step(lambda: batch)
    assert recipe.generator.embedding.num_embeddings == 8
    assert seen["generator"] and all(torch.equal(given, batch["label"]) for given in seen["generator"])
    assert seen["discriminator"] and all(torch.equal(given, batch["label"]) for given in seen["discriminator"])


def coverage_after(steps: int, *overrides: str) -> dict[str, float]:
    """model=wgan_gp's defaults on 8gaussians at a test-sized budget; modes covered within 10 std (0.2)."""
    cfg = composed("model=wgan_gp", "data=toy2d", "data.num_samples=4096", "trainer.batch_size=64",
                   f"trainer.max_steps={steps}", *overrides)
    seed_everything(0)
    source = build_data(cfg.data)
    recipe = build_recipe(cfg, source.spec, CPU)
    stream = BatchStream(source.dataset, cfg.trainer.batch_size, 0, CPU)
    for _ in range(steps):
        recipe.train_step(stream.next)
        recipe.end_step()
    centres, std = mixture_modes("8gaussians")
    return mode_statistics(recipe.sample(4000, torch.Generator().manual_seed(1)), centres, std, stds=10)


def test_toy_networks_spread_over_the_ring_where_the_old_one_layer_networks_collapse() -> None:
    """120 steps at batch 64 (about 15 s of one core): the toy MLPs put a fair share of samples near every mode
    (measured: 8/8, mode_kl 0.002); the networks points had before (one hidden layer, G 256 / D 128, LeakyReLU,
    64-D noise) collapse onto one or two (measured at 150 steps: 0/8, mode_kl 1.06)."""
    toy = coverage_after(120)
    old = coverage_after(120, "model.generator.hidden=[256]", "model.discriminator.hidden=[128]",
                         "model.generator.negative_slope=0.01", "model.discriminator.negative_slope=0.01",
                         "model.latent_dim=64")
    assert toy["coverage"] >= 7 and toy["mode_kl"] < 0.05, toy
    assert old["coverage"] <= 2, old


MISTAKES = [  # a value where the config holds options (or presets), and the fix the one line names
    (["metrics=[fid]"], "metrics is a group of options, not a value: set metrics.names=[fid]"),
    (["metrics=fid"], "set metrics.names=[fid]"),
    (["metrics=[kid,fid]"], "set metrics.names=[kid,fid]"),  # metrics.kid holds options too: the list is names
    (["ema=0.999"], "ema is a group of options, not a value: set ema.decay=0.999"),
    (["regularizers=[gradient_penalty]"], "set each entry's options, e.g. ++regularizers.gradient_penalty.weight="),
    (["model.generator=mlp_generator"], "set model.generator.name=mlp_generator"),
    (["optim.schedule=linear"], "set optim.schedule.name=linear"),
    (["++metrics.coverage=3"], "metrics.coverage.OPTION=3 (options: stds, min_share)"),
    (["loss=[hinge]"], "loss is a group of presets, not a list: pick one, e.g. loss=hinge"),
    (["trainer=[1]"], "trainer is a group of presets, not a list"),
]


@pytest.mark.parametrize("args,message", MISTAKES, ids=[" ".join(a) for a, _ in MISTAKES])
def test_a_value_given_to_options_names_the_override_meant(args: list[str], message: str) -> None:
    with pytest.raises(UserError, match=None) as info:
        check_group_choices(args)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_values_that_fit_pass() -> None:
    check_group_choices(["metrics.names=[fid]", "ema.decay=0.9", "regularizers.r1=null", "model=gan,dcgan",
                         "model.generator.hidden=[16]", "+regularizers.r1.gamma=5", "trainer.max_steps=3",
                         "model.generator={name: mlp_generator}", "optim.lr=tag(log, interval(1e-5, 1e-3))"])


def test_hydra_merge_errors_become_the_same_line() -> None:
    """A list given to options the YAML does not show (a plugin's) still gets one line with the fix."""
    error = ConfigCompositionException("Error merging override metrics.extra=[1, 2]")
    error.__cause__ = ConfigTypeError("Cannot merge DictConfig with ListConfig")
    assert one_line(error) == ("metrics.extra is a group of options, not a value: "
                               "set one of its options as metrics.extra.OPTION=[1, 2]")


def test_the_cli_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["model=wgan_gp", "data=toy2d", "metrics=[fid]"])
    assert info.value.code == 2
    assert capsys.readouterr().err == ("gantrain: error: metrics is a group of options, not a value: "
                                       "set metrics.names=[fid]\n")


def test_cfg_job_shows_the_point_networks_picked(tmp_path: Path) -> None:
    """``gantrain model=wgan_gp data=toy2d`` works as typed; --cfg job shows what the data made it pick."""
    shown = run_cli("model=wgan_gp", "data=toy2d", *FAST, "--cfg", "job", cwd=tmp_path).stdout
    assert "kind: points" in shown and "name: mlp_generator" in shown and "dcgan" not in shown
