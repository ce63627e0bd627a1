"""The generator's exponential moving average: the update rule, where it is used, checkpoints and resume."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from conftest import FAST, assert_same_training_state, compose_config, run_cli, train_straight_and_resumed
from gantrain.data.source import DataSpec
from gantrain.errors import UserError
from gantrain.recipes.ema import WeightAverage, checked_decay
from gantrain.recipes.gan import GANRecipe
from gantrain.registry import load_builtin_parts


def warm_decay(decay: float, t: int) -> float:
    return min(decay, (1 + t) / (10 + t))


def test_average_after_k_updates_equals_the_closed_form():
    net = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(5.0)
    average = WeightAverage(net, decay=0.5)
    live_values = [1.0, -2.0, 3.0, 0.5, 4.0, -1.0, 2.0, 2.0, 7.0, 0.0, 1.0, 3.0, -3.0, 0.25, 6.0]
    for value in live_values:
        with torch.no_grad():
            net.weight.fill_(value)
        average.update()
    # a_k = (∏ d_i) a_0 + Σ_j (1 − d_j) p_j ∏_{i>j} d_i, with d_t = min(0.5, (1 + t)/(10 + t))
    k = len(live_values)
    decays = [warm_decay(0.5, t) for t in range(k)]
    expected = 5.0 * math.prod(decays)
    for j, value in enumerate(live_values):
        expected += (1 - decays[j]) * value * math.prod(decays[j + 1:])
    assert decays[0] == pytest.approx(0.1) and decays[-1] == 0.5  # the warm-up, then the configured decay
    assert average.average.weight.item() == pytest.approx(expected, rel=1e-6)
    assert average.updates == k and not average.average.weight.requires_grad


def test_batchnorm_buffers_are_copied_from_the_live_network():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    average = WeightAverage(net, decay=0.999)
    net(torch.randn(16, 3) * 3 + 1)  # training mode: updates the running statistics
    average.update()
    live_bn, averaged_bn = net[1], average.average[1]
    assert torch.equal(live_bn.running_mean, averaged_bn.running_mean)
    assert torch.equal(live_bn.num_batches_tracked, averaged_bn.num_batches_tracked)


@pytest.mark.parametrize("value,expected", [(None, None), (0, None), (0.999, 0.999)])
def test_decay_setting(value, expected):
    assert checked_decay(value) == expected


@pytest.mark.parametrize("value", [1, 1.5, -0.1, "high", True])
def test_bad_decay_is_a_user_error(value):
    with pytest.raises(UserError, match="ema.decay"):
        checked_decay(value)


def toy_recipe(*overrides: str) -> GANRecipe:
    load_builtin_parts()
    cfg = compose_config("model=gan", "data=toy2d", "model.generator.hidden=[16]", "model.discriminator.hidden=[16]",
                         *overrides)
    return GANRecipe.from_config(cfg, DataSpec(shape=(2,), bounded=False), torch.device("cpu"))


def test_off_by_default_and_updated_once_per_generator_step():
    assert toy_recipe().averages == {} and "generator_ema" not in toy_recipe().networks
    recipe = toy_recipe("ema.decay=0.9", "model.n_critic=3")
    data = iter(lambda: {"real": torch.randn(8, 2)}, None)
    for _ in range(4):
        recipe.train_step(lambda: next(data))
    assert recipe.averages["generator"].updates == 4  # generator steps only, not the 12 critic steps
    assert set(recipe.state_dict()["networks"]) == {"generator", "discriminator", "generator_ema"}
    assert recipe.state_dict()["averages"] == {"generator": 4}


def test_samples_come_from_the_average_only_inside_averaged_weights():
    recipe = toy_recipe("ema.decay=0.9")
    with torch.no_grad():
        for param in recipe.generator.parameters():
            param.add_(1.0)  # the live generator moves away from its average
    live = recipe.sample(5, torch.Generator().manual_seed(0))
    with recipe.averaged_weights():
        averaged = recipe.sample(5, torch.Generator().manual_seed(0))
        assert recipe.generator is recipe.averages["generator"].average
    expected = recipe.averages["generator"].average(torch.randn(5, recipe.latent_dim,
                                                                generator=torch.Generator().manual_seed(0)))
    assert torch.allclose(averaged, expected) and not torch.allclose(averaged, live)
    assert recipe.generator is recipe.networks["generator"]  # restored afterwards


def test_turning_the_average_on_at_resume_starts_it_from_the_live_weights():
    trained = toy_recipe()
    with torch.no_grad():
        for param in trained.generator.parameters():
            param.mul_(2.0)
    resumed = toy_recipe("ema.decay=0.9")
    resumed.load_state_dict(trained.state_dict())
    for live, averaged in zip(trained.generator.parameters(), resumed.averages["generator"].average.parameters()):
        assert torch.equal(live, averaged)
    assert resumed.averages["generator"].updates == 0


def test_resume_restores_the_average_exactly(tmp_path):
    common = ["model=gan", "data=toy2d", "ema.decay=0.95", "trainer.batch_size=32", "trainer.log_every=1",
              "trainer.checkpoint_every=3", "trainer.sample_every=100", "data.num_samples=256", *FAST]
    *_, saved_a, saved_b = train_straight_and_resumed(common, total=10, split_at=5, cwd=tmp_path)
    assert_same_training_state(saved_a, saved_b)  # generator_ema included
    a, b = saved_a["recipe"], saved_b["recipe"]
    assert a["averages"] == b["averages"] == {"generator": 10}
    assert set(a["networks"]) >= {"generator", "generator_ema"}
    assert not all(torch.equal(value, a["networks"]["generator"][key])
                   for key, value in a["networks"]["generator_ema"].items())


def test_sample_task_draws_from_the_average(tmp_path):
    run = tmp_path / "run"
    run_cli("model=gan", "trainer.max_steps=3", "ema.decay=0.5", f"hydra.run.dir={run}", *FAST, cwd=tmp_path)
    run_cli("task=sample", f"checkpoint={run}", "n=4", "out=x.npz", "device=cpu", cwd=tmp_path)
    import numpy as np

    saved = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    recipe_state = saved["recipe"]["networks"]
    from omegaconf import OmegaConf

    load_builtin_parts()
    recipe = GANRecipe.from_config(OmegaConf.create(saved["config"]), DataSpec.from_dict(saved["data_spec"]),
                                   torch.device("cpu"))
    recipe.networks["generator"].load_state_dict(recipe_state["generator_ema"])  # the average, as the live net
    expected = recipe._generate(torch.randn(4, recipe.latent_dim, generator=torch.Generator().manual_seed(0)))
    assert np.allclose(np.load(tmp_path / "x.npz")["samples"], expected.numpy(), atol=1e-6)
