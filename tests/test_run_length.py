"""Steps per epoch and total steps: one computation for the loop and the learning-rate schedules, driven by how
many batches a recipe's step draws (a critic's n_critic), never by a setting the recipe does not read."""

from __future__ import annotations

import pytest
import torch

from conftest import FAST, compose_config, run_cli
from gantrain.data.source import DataSpec
from gantrain.engine.trainer import Trainer, build_recipe
from gantrain.optim.run_length import steps_per_epoch, total_steps
from gantrain.registry import load_builtin_parts

load_builtin_parts()
CPU = torch.device("cpu")
IMAGE = (3, 16, 16)
ONE_BATCH_PRESETS = {  # a step of these draws one batch: a critic-steps setting must change nothing
    "pix2pix": (["model.generator.base_channels=4", "model.generator.max_channels=8",
                 "model.discriminator.base_channels=4", "model.discriminator.n_layers=1",
                 "optim.schedule.hold_epochs=1", "optim.schedule.decay_epochs=1"],
                DataSpec(shape=IMAGE, keys={"source": IMAGE, "target": IMAGE}, epoch_size=10)),
    "cyclegan": (["model.generator.base_channels=4", "model.generator.blocks=1", "model.discriminator.base_channels=4",
                  "model.discriminator.n_layers=1", "optim.schedule.hold_epochs=1", "optim.schedule.decay_epochs=1"],
                 DataSpec(shape=IMAGE, keys={"a": IMAGE, "b": IMAGE}, epoch_size=10)),
    "srresnet": (["model.generator.features=4", "model.generator.blocks=1", "optim.schedule.name=linear",
                  "trainer.max_steps=null", "trainer.max_epochs=2", "trainer.batch_size=1"],
                 DataSpec(shape=IMAGE, keys={"lr": (3, 8, 8), "hr": IMAGE}, scale=2, epoch_size=10)),
}


def composed(*overrides: str):
    return compose_config("device=cpu", *overrides)


def learning_rates(recipe, steps: int) -> list[float]:
    rates = []
    for _ in range(steps):
        rates.append(recipe.optimizers[next(iter(recipe.optimizers))].param_groups[0]["lr"])
        recipe.end_step()
    return rates


def test_steps_per_epoch_and_total_steps():
    assert steps_per_epoch(10, 1) == 10 and steps_per_epoch(10, 5) == 2 and steps_per_epoch(None, 5) is None
    assert total_steps(100, 2, 10.0) == 20 and total_steps(None, 2.5, 3.0) == 8 and total_steps(7, None, None) == 7
    assert total_steps(None, 2, None) is None


@pytest.mark.parametrize("preset", sorted(ONE_BATCH_PRESETS))
def test_a_critic_setting_changes_neither_epochs_nor_schedule_of_one_batch_recipes(preset):
    overrides, spec = ONE_BATCH_PRESETS[preset]
    plain = build_recipe(composed(f"model={preset}", *overrides), spec, CPU)
    critic = build_recipe(composed(f"model={preset}", *overrides, "++trainer.n_critic=5", "++model.n_critic=5"),
                          spec, CPU)
    assert plain.batches_per_step == critic.batches_per_step == 1
    rates = learning_rates(plain, 25)
    assert rates == learning_rates(critic, 25)
    assert rates[0] > rates[15] > 0  # epochs of 10 steps: the rate has moved within the 20-step run, not ended


def test_a_wgan_step_counts_n_critic_batches_in_epochs_and_schedule(tmp_path):
    tiny = ["model=gan", "data=toy2d", "data.num_samples=320", "model.n_critic=5", "trainer.batch_size=32",
            "trainer.max_steps=null", "trainer.max_epochs=2", "trainer.progress=false",
            "model.generator.hidden=[8]", "model.discriminator.hidden=[8]"]
    trainer = Trainer(composed(*tiny), tmp_path)
    assert trainer.recipe.batches_per_step == 5
    trainer.fit()
    assert trainer.step == 4  # 10 batches an epoch, 5 per step: 2 steps an epoch
    assert trainer.stream.epochs_done() == 2

    decaying = composed(*tiny, "optim.schedule.name=linear", "+optim.schedule.start=0.0")
    recipe = build_recipe(decaying, DataSpec(shape=(2,), bounded=False, epoch_size=320), CPU)
    rates = learning_rates(recipe, 5)
    assert [rate / rates[0] for rate in rates] == pytest.approx([1, 0.75, 0.5, 0.25, 0])  # to 0 over 2 epochs: 4 steps


def test_the_old_key_points_to_the_new_one(tmp_path):
    result = run_cli("trainer.n_critic=5", *FAST, cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == ("gantrain: error: trainer.n_critic has moved: set model.n_critic=5 instead "
                                     "(critic steps per generator step are an option of the model presets that "
                                     "train a critic; model=wgan_gp has 5)")


def test_a_run_saved_before_the_move_resumes_with_its_critic_steps():
    from gantrain.cli import moved_override
    from gantrain.config_shapes import with_moved_keys

    saved = {"model": {"recipe": "gan"}, "trainer": {"n_critic": 5, "batch_size": 64}}
    assert with_moved_keys(saved, {"model": {"recipe": "gan", "n_critic": 1}, "trainer": {}}) == \
        {"model": {"recipe": "gan", "n_critic": 5}, "trainer": {"batch_size": 64}}
    assert with_moved_keys(saved, {"model": {"recipe": "pix2pix"}})["model"] == {"recipe": "gan"}
    assert moved_override("trainer.n_critic=5") == "model.n_critic=5" and moved_override("a=1") == "a=1"


def test_a_sweep_over_the_old_key_points_to_the_new_one():
    from gantrain.cli import check_group_choices
    from gantrain.errors import UserError

    with pytest.raises(UserError, match=r"trainer.n_critic has moved: set model.n_critic=choice\(1,2\) instead"):
        check_group_choices(["model=dcgan", "trainer.n_critic=choice(1,2)"])
