"""ProGAN: the fade math, equalized learning rate, minibatch stddev, the growth schedule, resume mid-fade, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from conftest import FAST, assert_same_training_state, compose_config, tensorboard_scalars, train_straight_and_resumed
from gantrain.data.build import build_data
from gantrain.data.source import DataSpec
from gantrain.engine.restore import load_trained
from gantrain.tasks.sample import run as sample
from gantrain.engine.trainer import Trainer
from gantrain.errors import UserError
from gantrain.losses.wasserstein import WassersteinLoss
from gantrain.nets.progan import (EqualizedConv2d, EqualizedLinear, ProGANDiscriminator, ProGANGenerator, downsample,
                                  minibatch_stddev, upsample)
from gantrain.recipes.progan import ProGANRecipe
from gantrain.recipes.progan_schedule import GrowthSchedule, Stage
from gantrain.registry import load_builtin_parts
from gantrain.regularizers.gradient_penalty import GradientPenalty

load_builtin_parts()
pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: 16x16 digits (not the demo's 32x32 of configs/pairing/progan_digits.yaml), 8 feature maps (the discriminator's
#: follow the generator's), phases of 32 images. A phase's last step starts at its boundary (as in the official
#: schedule), so 4x4 trains 5 steps of 8, 8x8 fades in over 3 and trains 5, 16x16 (batch 4) fades in over 6 and
#: trains 8: 27 steps in all.
TINY = ["model=progan", "data.image_size=16", "model.latent_dim=8", "model.generator.fmap_base=32",
        "model.generator.fmap_max=8", "model.schedule.training_kimg=0.032", "model.schedule.transition_kimg=0.032",
        "model.schedule.batch_size.4=8", "model.schedule.batch_size.8=8", "model.schedule.batch_size.16=4",
        "trainer.progress=false", "trainer.sample_every=1000", "trainer.checkpoint_every=1000", "trainer.keep_last=0"]
TOTAL_STEPS = 27


def config(*overrides: str) -> DictConfig:
    return compose_config(*TINY, *FAST, *overrides)


def tiny_networks(size: int = 16, channels: int = 3) -> tuple[ProGANGenerator, ProGANDiscriminator]:
    torch.manual_seed(0)
    spec = DataSpec(shape=(channels, size, size))
    return (ProGANGenerator(spec, latent_dim=8, fmap_base=32, fmap_max=8),
            ProGANDiscriminator(spec, fmap_base=32, fmap_max=8))


# --------------------------------------------------------------------------- the networks


@pytest.mark.parametrize("resolution", [8, 16])
def test_generator_fade_alpha_0_is_the_previous_resolution_upsampled_and_alpha_1_the_new_block(resolution):
    generator, _ = tiny_networks()
    z = torch.randn(4, 8)
    with torch.no_grad():
        previous, new = upsample(generator(z, resolution // 2)), generator(z, resolution)
        assert torch.equal(generator(z, resolution, alpha=0.0), previous)
        assert torch.allclose(generator(z, resolution, alpha=0.25), 0.75 * previous + 0.25 * new, atol=1e-6)
        generator.to_rgb[int(math.log2(resolution)) - 3].weight.add_(1.0)  # the previous toRGB plays no part at 1
        assert torch.equal(generator(z, resolution, alpha=1.0), new)
    assert generator(z).shape == (4, 3, 16, 16)  # the data's size by default


@pytest.mark.parametrize("resolution", [8, 16])
def test_discriminator_fade_alpha_0_scores_the_downsampled_image_and_alpha_1_the_new_block(resolution):
    _, discriminator = tiny_networks()
    x = torch.rand(8, 3, resolution, resolution) * 2 - 1
    with torch.no_grad():
        assert torch.equal(discriminator(x, alpha=0.0), discriminator(downsample(x)))
        new = discriminator(x)
        discriminator.from_rgb[int(math.log2(resolution)) - 3][0].weight.add_(1.0)
        assert torch.equal(discriminator(x, alpha=1.0), new)
    assert new.shape == (8,)


def test_equalized_learning_rate_stores_unit_normal_weights_and_scales_them_by_the_he_constant():
    torch.manual_seed(0)
    conv = EqualizedConv2d(32, 64, 3)
    assert conv.weight.std().item() == pytest.approx(1.0, abs=0.03) and torch.all(conv.bias == 0)
    assert conv.scale == pytest.approx(math.sqrt(2) / math.sqrt(32 * 9))
    x = torch.randn(2, 32, 5, 5)
    assert torch.allclose(conv(x), F.conv2d(x, conv.weight * conv.scale, conv.bias, padding=1))
    dense = EqualizedLinear(50, 4, gain=1.0)
    assert dense.scale == pytest.approx(1 / math.sqrt(50))
    assert torch.allclose(dense(x.flatten(1)[:, :50]), x.flatten(1)[:, :50] @ (dense.weight * dense.scale).T)
    # the gradient reaches the stored weights scaled too: Adam's normalised step moves every layer alike
    conv(x).sum().backward()
    plain = torch.nn.Conv2d(32, 64, 3, padding=1)
    with torch.no_grad():
        plain.weight.copy_(conv.weight * conv.scale)
    plain(x).sum().backward()
    assert torch.allclose(conv.weight.grad, plain.weight.grad * conv.scale, rtol=1e-4, atol=1e-6)


def test_minibatch_stddev_appends_each_strided_groups_mean_standard_deviation():
    torch.manual_seed(0)
    x = torch.randn(8, 2, 3, 3)
    out = minibatch_stddev(x, group_size=4)
    assert out.shape == (8, 3, 3, 3) and torch.equal(out[:, :2], x)
    for group in range(2):  # groups of 4 taken with stride 2, as the official reshape [G, M, ...] takes them
        members = x[group::2]
        expected = (members.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        assert torch.allclose(out[group::2, 2], expected.expand(4, 3, 3))
    assert minibatch_stddev(x[:3], group_size=4).shape == (3, 3, 3, 3)  # a smaller batch is one group
    with pytest.raises(ValueError, match="groups of 4"):
        minibatch_stddev(torch.randn(6, 2, 3, 3), group_size=4)


def test_drift_term_adds_epsilon_times_the_mean_squared_real_score():
    real, fake = torch.tensor([1.0, -2.0, 3.0]), torch.tensor([0.5, 0.0, -1.0])
    loss = WassersteinLoss(drift=0.001).discriminator_loss(real, fake)
    assert loss.item() == pytest.approx(fake.mean() - real.mean() + 0.001 * (real ** 2).mean())


# --------------------------------------------------------------------------- the schedule


def official_lod(images: int, final_log2: int, start: int, training_kimg: float, transition_kimg: float) -> float:
    """train.py TrainingSchedule's level of detail (0: the final resolution)."""
    kimg = images / 1000.0
    phase_dur = training_kimg + transition_kimg
    phase_idx = int(np.floor(kimg / phase_dur))
    phase_kimg = kimg - phase_idx * phase_dur
    lod = final_log2 - np.floor(np.log2(start)) - phase_idx
    lod -= max(phase_kimg - training_kimg, 0.0) / transition_kimg
    return max(lod, 0.0)


def test_schedule_is_the_official_training_schedule_in_levels():
    schedule = GrowthSchedule(start_level=1, final_level=4, training_images=600, transition_images=400,
                              total_images=10**6, batch_sizes={})
    for images in range(13, 5000, 25):  # off the phase boundaries, where the official float kimg rounds either way
        lod = official_lod(images, final_log2=6, start=8, training_kimg=0.6, transition_kimg=0.4)
        stage = schedule.stage(images)
        assert stage.resolution == 2 ** (6 - int(np.floor(lod))), images  # 2 ** (resolution_log2 - floor(lod))
        assert stage.alpha == pytest.approx(1 - (lod - np.floor(lod)) if lod != np.floor(lod) else 1.0), images
    assert [schedule.stage(i).phase for i in (0, 600, 601, 1000, 1601, 3600, 9999)] == [0, 0, 1, 2, 3, 6, 6]


def test_steps_left_counts_the_steps_the_training_takes():
    schedule = GrowthSchedule(0, 2, training_images=100, transition_images=60, total_images=700,
                              batch_sizes={4: 16, 8: 12, 16: 8})
    for critic_steps in (1, 2):
        for start in (0, 101, 333):
            images, steps = start, 0
            while images < schedule.total_images:
                images += critic_steps * schedule.batch_size(schedule.stage(images))
                steps += 1
            assert schedule.steps_left(start, critic_steps) == steps


def test_training_grows_4_8_16_changes_batch_size_and_checkpoints_each_phase(tmp_path):
    trainer = Trainer(config("trainer.log_every=1"), tmp_path / "run")
    recipe, stages, sizes = trainer.recipe, [], []
    fetch, end_step = trainer.stream.next, recipe.end_step

    def recorded_fetch(n=None):
        sizes.append(n)
        return fetch(n)

    def recorded_end_step():
        end_step()
        stages.append(recipe.stage)

    trainer.stream.next, recipe.end_step = recorded_fetch, recorded_end_step
    values = trainer.fit()
    assert trainer.step == TOTAL_STEPS  # max_steps is null: the schedule ended the run
    assert [s.resolution for s in stages] == [4] * 5 + [8] * 8 + [16] * 14
    assert sizes == [8] * 13 + [4] * 14
    assert [s.alpha for s in stages[5:9]] == [0.25, 0.5, 0.75, 1.0]
    assert [s.alpha for s in stages[13:20]] == [0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0]
    assert values["growth/resolution"] == 16 and values["growth/kimg"] == 0.16
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step_*.pt"))
    assert checkpoints == ["step_0000005.pt", "step_0000008.pt", "step_0000013.pt", "step_0000019.pt"]  # phase ends
    # the fake and real images the critic compares are at the stage's resolution, the reals blended in a fade
    recipe.enter(Stage(level=1, alpha=0.0, phase=1))
    full = trainer.stream.next(8)
    assert torch.equal(recipe.reals_at_stage(full)["real"], upsample(downsample(downsample(full["real"]))))


def test_gradient_penalty_is_measured_on_the_final_resolution_image_as_in_the_official_code():
    recipe = ProGANRecipe.from_config(config(), DataSpec(shape=(1, 16, 16)), torch.device("cpu"))
    recipe.enter(Stage(level=0, alpha=1.0, phase=0))  # 4x4 of 16x16: D's official input is upscaled by 4
    (penalty,) = recipe.regularizers
    real, fake = torch.rand(8, 1, 4, 4), torch.rand(8, 1, 4, 4)
    torch.manual_seed(1)
    term, _ = penalty.penalty(lambda x: recipe.discriminate(x, {})[0], real, fake)
    torch.manual_seed(1)  # the same mixing factors, at 16x16, through D reading a box-downsampled input
    upscaled = [F.interpolate(images, scale_factor=4) for images in (real, fake)]
    full, _ = GradientPenalty(weight=10.0).penalty(lambda x: recipe.discriminator(downsample(x, 4)), *upscaled)
    assert term.item() == pytest.approx(full.item(), rel=1e-4)


# --------------------------------------------------------------------------- resume, sampling, precision


def test_resume_in_the_middle_of_a_fade_in_continues_bitwise_like_a_straight_run(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # tiny networks: thread hand-offs would cost more than the maths
    # step 14 stops with 16x16 fading in (alpha 0.25 -> 0.375), after the batch size changed
    common = [*TINY, "trainer.log_every=1", "trainer.checkpoint_every=7", *FAST]
    straight, split, _, a, b = train_straight_and_resumed(common, total=TOTAL_STEPS, split_at=14, cwd=tmp_path)
    middle = torch.load(split / "checkpoints" / "step_0000014.pt", weights_only=True)
    assert middle["recipe"]["extra"] == {"images_seen": 108, "trained_phase": 3}
    assert a["step"] == b["step"] == TOTAL_STEPS and a["data"] == b["data"]
    assert a["recipe"]["extra"] == b["recipe"]["extra"] and "generator_ema" in a["recipe"]["networks"]
    assert_same_training_state(a, b)
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    for tag in ("loss/d", "growth/alpha"):
        assert tensorboard_scalars(straight)[tag] == tensorboard_scalars(split)[tag]


def test_sample_stopped_early_draws_at_the_resolution_reached_and_says_so(tmp_path, capsys):
    run = tmp_path / "run"
    Trainer(config("trainer.max_steps=6", f"hydra.run.dir={run}"), run).fit()  # stops with 8x8 half faded in
    out = tmp_path / "samples.npz"
    sample(config("task=sample", f"checkpoint={run}", "n=5", f"out={out}"))
    assert "training stopped at 8x8, fading in with alpha 0.500 on its way to 16x16" in capsys.readouterr().out
    samples = np.load(out)["samples"]
    assert samples.shape == (5, 1, 8, 8) and np.abs(samples).max() <= 1.0
    trained = load_trained(str(run), "cpu", "eval")  # task=eval compares with the data at that resolution
    source = build_data(trained.config.data)
    (comparison,) = trained.recipe.comparisons(source, source.evaluation_split())
    assert comparison.reference_split == "train at 8x8" and comparison.reference[0]["real"].shape == (1, 8, 8)


def test_bf16_autocast_trains_with_finite_losses(tmp_path):
    values = Trainer(config("trainer.precision=bf16", "trainer.max_steps=6", "trainer.log_every=1"),
                     tmp_path / "run").fit()
    assert all(math.isfinite(v) for v in values.values())
    assert values["growth/resolution"] == 8


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("size, overrides, message", [
    (28, [], "image size 28 is not supported by model=progan"),
    (16, ["model.schedule.start_resolution=32"], "start_resolution=32 is above the data's 16x16"),
    (16, ["model.schedule.start_resolution=6"], "start_resolution must be a power of two in 4..16"),
    (16, ["model.schedule.training_kimg=0"], "training_kimg must be a positive number"),
    (16, ["model.schedule.transition_kimg=-5"], "transition_kimg must be a positive number"),
    (16, ["model.schedule.total_kimg=0"], "total_kimg must be a positive number"),
    (16, ["~model.schedule.batch_size.16"], "batch_size has no entry for 16x16"),
    (16, ["model.schedule.batch_size.8=6"], "batch_size.8=6 is not divisible by the minibatch-stddev group of 4"),
    (16, ["optim.schedule.name=linear"], "optim.schedule.name must be constant"),
])
def test_bad_schedule_values_are_one_line_errors_before_training(size, overrides, message):
    cfg = config(*overrides)
    with pytest.raises(UserError, match=message) as info:
        ProGANRecipe.from_config(cfg, DataSpec(shape=(1, size, size)), torch.device("cpu"))
    assert "\n" not in str(info.value)
