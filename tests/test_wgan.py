"""WGAN and WGAN-GP: the presets end to end through the CLI, overrides across presets, learning on 2-D data."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from conftest import FAST, compose_config, run_cli, tensorboard_scalars

TINY_DCGAN = ["model.generator.base_channels=8", "model.discriminator.base_channels=8"]
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")  # BatchNorm statistics: not weights


def optimizer_steps(state: dict) -> set[float]:
    """The per-parameter 'step' counters of a saved Adam or RMSprop state (one value if all agree)."""
    assert state["state"], "the optimizer never stepped"
    return {float(entry["step"]) for entry in state["state"].values()}


def train_preset(model: str, mnist_root: Path, tmp_path: Path, *extra: str):
    run = tmp_path / model
    result = run_cli(f"model={model}", "data=mnist", f"data.root={mnist_root}", "data.download=false",
                     *TINY_DCGAN, "trainer.max_steps=3", "trainer.batch_size=16", "trainer.log_every=1",
                     f"hydra.run.dir={run}", *extra, *FAST, cwd=tmp_path)
    return run, result, torch.load(run / "checkpoints" / "last.pt", weights_only=True)


def test_wgan_gp_preset_trains_end_to_end_with_its_defaults(mnist_root, tmp_path):
    run, result, saved = train_preset("wgan_gp", mnist_root, tmp_path)
    config = saved["config"]

    assert saved["step"] == 3
    assert config["model"]["name"] == "wgan_gp"
    assert config["loss"]["name"] == "wasserstein"
    assert config["model"]["n_critic"] == 5
    assert config["optim"]["name"] == "adam" and config["optim"]["lr"] == pytest.approx(1e-4)
    assert list(config["optim"]["betas"]) == [0.0, 0.9]
    assert set(config["regularizers"]) == {"gradient_penalty"}
    assert config["regularizers"]["gradient_penalty"]["weight"] == 10
    assert config["model"]["discriminator"]["norm"] != "batch"

    optimizers = saved["recipe"]["optimizers"]
    d_group = optimizers["discriminator"]["param_groups"][0]
    assert tuple(d_group["betas"]) == (0.0, 0.9) and d_group["lr"] == pytest.approx(1e-4)  # really Adam, as configured
    assert optimizer_steps(optimizers["discriminator"]) == {5 * 3}  # n_critic critic steps per generator step
    assert optimizer_steps(optimizers["generator"]) == {3}
    assert saved["data"]["samples_taken"] == 5 * 3 * 16  # each critic step draws its own batch

    scalars = tensorboard_scalars(run)
    assert {"wasserstein_estimate", "penalty/gradient", "critic/grad_norm", "loss/d", "loss/g"} <= set(scalars)
    assert sorted(scalars["penalty/gradient"]) == [1, 2, 3]
    assert all(math.isfinite(v) and v >= 0 for v in scalars["penalty/gradient"].values())
    assert all(math.isfinite(v) and v > 0 for v in scalars["critic/grad_norm"].values())
    output = result.stdout + result.stderr
    assert "Lipschitz" not in output and "BatchNorm" not in output  # the preset is a combination that works


def test_wgan_preset_trains_end_to_end_with_its_defaults_and_clipped_critic(mnist_root, tmp_path):
    run, result, saved = train_preset("wgan", mnist_root, tmp_path)
    config = saved["config"]

    assert saved["step"] == 3
    assert config["model"]["name"] == "wgan"
    assert config["loss"]["name"] == "wasserstein"
    assert config["model"]["n_critic"] == 5
    assert config["optim"]["name"] == "rmsprop" and config["optim"]["lr"] == pytest.approx(5e-5)
    assert config["regularizers"] == {"weight_clip": {"clip_value": 0.01}}

    optimizers = saved["recipe"]["optimizers"]
    d_group = optimizers["discriminator"]["param_groups"][0]
    assert "alpha" in d_group and "betas" not in d_group and d_group["lr"] == pytest.approx(5e-5)  # really RMSprop
    assert optimizer_steps(optimizers["discriminator"]) == {5 * 3}
    assert optimizer_steps(optimizers["generator"]) == {3}

    critic = {k: v for k, v in saved["recipe"]["networks"]["discriminator"].items() if not k.endswith(BN_BUFFERS)}
    values = torch.cat([v.flatten().float() for v in critic.values()])
    assert values.abs().max() <= 0.01
    assert (values.abs() == 0.01).any()  # DCGAN's N(0, 0.02) init and BatchNorm's scale ~1 were really clamped
    generator = saved["recipe"]["networks"]["generator"]
    assert max(v.abs().max().item() for k, v in generator.items() if not k.endswith(BN_BUFFERS)) > 0.01  # G unclipped

    scalars = tensorboard_scalars(run)
    assert {"wasserstein_estimate", "critic/param_grad_norm", "loss/d", "loss/g"} <= set(scalars)
    assert "penalty/gradient" not in scalars
    for step, estimate in scalars["wasserstein_estimate"].items():  # estimate = E[D(x)] − E[D(G(z))] = −loss/d
        assert estimate == pytest.approx(-scalars["loss/d"][step], abs=1e-6)
    assert "Lipschitz" not in result.stdout + result.stderr


OVERRIDES = [  # command-line values must win over what a model preset chose (one run per preset, to stay fast)
    (["model=wgan_gp", "optim=rmsprop", "regularizers.gradient_penalty.weight=5", "model.n_critic=2"],
     {"optim.name": "rmsprop", "optim.lr": 5e-5, "regularizers.gradient_penalty.weight": 5, "model.n_critic": 2,
      "loss.name": "wasserstein", "model.discriminator.norm": "layer"}),
    (["model=dcgan", "loss=hinge"], {"loss.name": "hinge", "optim.name": "adam", "model.name": "dcgan",
                                     "regularizers": {}, "model.n_critic": 1}),
]


@pytest.mark.parametrize("args,expected", OVERRIDES, ids=[" ".join(a) for a, _ in OVERRIDES])
def test_overrides_win_over_preset_defaults_in_the_saved_config(args, expected, tmp_path):
    run = tmp_path / "run"
    run_cli(*args, *TINY_DCGAN, "trainer.max_steps=1", "trainer.batch_size=16", f"hydra.run.dir={run}", *FAST,
            cwd=tmp_path)
    saved = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    for dotted, value in expected.items():
        node = saved["config"]
        for key in dotted.split("."):
            node = node[key]
        assert node == pytest.approx(value) if isinstance(value, float) else node == value, dotted
    d_group = saved["recipe"]["optimizers"]["discriminator"]["param_groups"][0]
    assert ("alpha" in d_group) == (saved["config"]["optim"]["name"] == "rmsprop")  # the optimizer built matches
    n_critic = saved["config"]["model"]["n_critic"]
    assert optimizer_steps(saved["recipe"]["optimizers"]["discriminator"]) == {n_critic}
    tags = set(tensorboard_scalars(run))  # step 1 is always logged: the loss and regulariser built match too
    assert ("wasserstein_estimate" in tags) == (saved["config"]["loss"]["name"] == "wasserstein")
    assert ("penalty/gradient" in tags) == ("gradient_penalty" in saved["config"]["regularizers"])


# --- learning on 2-D toy data, in-process ---------------------------------------------------------------

RING = 2.0 * torch.stack([torch.cos(torch.arange(8) * math.pi / 4), torch.sin(torch.arange(8) * math.pi / 4)], 1)


def ring_distances(points: torch.Tensor) -> torch.Tensor:
    return torch.cdist(points, RING).min(dim=1).values


def energy_distance(x: torch.Tensor, y: torch.Tensor) -> float:
    return (2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean()).item()


def test_wgan_gp_moves_generated_points_onto_the_8_gaussians(one_torch_thread):
    from gantrain.data.stream import BatchStream
    from gantrain.engine.rng import seed_everything
    from gantrain.data.build import build_data
    from gantrain.engine.trainer import build_recipe
    from gantrain.registry import load_builtin_parts
    from gantrain.regularizers.gradient_penalty import GradientPenalty

    load_builtin_parts()
    steps = 1000
    cfg = compose_config(
            "model=gan", "data=toy2d", "data.name=8gaussians", "data.num_samples=4096", "loss=wasserstein",
            "optim=adam_wgan_gp", "optim.lr=2e-3", "model.n_critic=5", "+regularizers.gradient_penalty.weight=10",
            "model.generator.hidden=[128,128]", "model.discriminator.hidden=[128,128]", "trainer.batch_size=64",
            f"trainer.max_steps={steps}", "trainer.seed=0", "device=cpu")
    seed_everything(0)
    source = build_data(cfg.data)
    recipe = build_recipe(cfg, source.spec, torch.device("cpu"))
    assert [type(r) for r in recipe.regularizers] == [GradientPenalty]
    assert recipe.n_critic == 5
    stream = BatchStream(source.dataset, cfg.trainer.batch_size, cfg.trainer.seed, torch.device("cpu"))
    real = source.dataset.points[torch.randperm(len(source.dataset), generator=torch.Generator().manual_seed(1))[:1000]]

    def measure() -> tuple[float, float, int]:
        fake = recipe.sample(1000, torch.Generator().manual_seed(2))
        distances = ring_distances(fake)
        near = torch.cdist(fake, RING).argmin(dim=1)[distances < 0.5]
        modes_hit = int((torch.bincount(near, minlength=8) >= 10).sum())
        return distances.mean().item(), energy_distance(fake, real), modes_hit

    distance_before, energy_before, modes_before = measure()
    for _ in range(steps):
        scalars = recipe.train_step(stream.next)
        recipe.end_step()
    distance_after, energy_after, modes_after = measure()

    assert all(math.isfinite(float(v)) for v in scalars.values())
    assert distance_before > 1.5 and modes_before == 0  # an untrained G puts its points near the origin
    assert distance_after < 0.5 * distance_before, (distance_before, distance_after)
    assert energy_after < 0.25 * energy_before, (energy_before, energy_after)
    assert modes_after >= 6, modes_after  # it spreads over the ring rather than collapsing onto one mode
