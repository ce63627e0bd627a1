"""Critic regularisers: per-sample input gradients, GP / R1 in closed form, weight clipping, n_critic, warnings."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from torch import nn

from conftest import FAST, run_cli
from gantrain.data.source import DataSpec
from gantrain.errors import UserError
from gantrain.nets.dcgan import DCGANDiscriminator
from gantrain.nets.mlp import MLPDiscriminator, MLPGenerator
from gantrain.optim.schedules import constant
from gantrain.recipes.adversarial import combination_problems
from gantrain.recipes.gan import GANRecipe
from gantrain.registry import LOSSES, REGULARIZERS, load_builtin_parts
from gantrain.regularizers.base import Regularizer, input_gradient_norms
from gantrain.regularizers.gradient_penalty import GradientPenalty
from gantrain.regularizers.r1 import R1Penalty
from gantrain.regularizers.weight_clip import WeightClip

load_builtin_parts()

IMAGE_SHAPE = (3, 4, 5)  # (C, H, W): deliberately not square and not equal to the batch size
POINT_SHAPE = (2,)
SHAPES = {"image": IMAGE_SHAPE, "points": POINT_SHAPE}


class QuadraticCritic(nn.Module):
    """D(x)_i = ½ Σ_j (c_j x_ij)²: ∇ₓD(x)_i = c² ⊙ x_i, so every sample has its own, hand-computable norm."""

    def __init__(self, scale: torch.Tensor) -> None:
        super().__init__()
        self.scale = nn.Parameter(scale.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.scale * x).square().flatten(1).sum(1)


class LinearCritic(nn.Module):
    """f(x) = w·x (+ b) on the flattened sample; its input gradient is w everywhere."""

    def __init__(self, shape: tuple[int, ...], weight_norm: float, bias: bool = True, seed: int = 0) -> None:
        super().__init__()
        self.linear = nn.Linear(math.prod(shape), 1, bias=bias)
        direction = torch.randn(1, math.prod(shape), generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            self.linear.weight.copy_(weight_norm * direction / direction.norm())
            if bias:
                self.linear.bias.fill_(0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1)).squeeze(1)


def batch(shape: tuple[int, ...], n: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


# --- the shared per-sample input-gradient norm ------------------------------------------------------


def test_input_gradient_norms_are_per_sample_over_all_non_batch_dims():
    scale = torch.linspace(0.2, 1.7, math.prod(IMAGE_SHAPE)).reshape(IMAGE_SHAPE)
    critic = QuadraticCritic(scale)
    x = batch(IMAGE_SHAPE, n=5) * torch.arange(1, 6.0).reshape(5, 1, 1, 1)  # samples of clearly different sizes

    norms = input_gradient_norms(critic, x)

    expected = torch.stack([(scale.square() * sample).flatten().norm() for sample in x])
    assert norms.shape == (5,)
    torch.testing.assert_close(norms, expected)
    assert len(set(expected.tolist())) == 5  # the samples really differ, so a wrong reduction cannot pass


def test_input_gradient_norms_do_not_touch_the_callers_tensor_and_stay_differentiable():
    critic = QuadraticCritic(torch.full(IMAGE_SHAPE, 0.5))
    x = batch(IMAGE_SHAPE)
    norms = input_gradient_norms(critic, x)
    assert not x.requires_grad and x.grad is None
    assert norms.requires_grad
    (grad,) = torch.autograd.grad(norms.sum(), critic.scale)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


# --- gradient penalty ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kind", ["image", "points"])
@pytest.mark.parametrize("weight_norm", [0.5, 2.5])
def test_two_sided_gradient_penalty_of_a_linear_critic_is_lambda_times_squared_excess(kind, weight_norm, bias):
    shape = SHAPES[kind]
    critic = LinearCritic(shape, weight_norm, bias=bias)
    real, fake = batch(shape, seed=1), batch(shape, seed=2) + 3.0

    term, scalars = GradientPenalty(weight=7.0).penalty(critic, real, fake)

    expected = 7.0 * (weight_norm - 1.0) ** 2  # a mean over samples, not a sum
    assert term.shape == ()
    assert term.item() == pytest.approx(expected, rel=1e-5)
    assert scalars["penalty/gradient"].item() == pytest.approx(expected, rel=1e-5)
    assert scalars["critic/grad_norm"].item() == pytest.approx(weight_norm, rel=1e-5)


@pytest.mark.parametrize("kind", ["image", "points"])
def test_one_sided_gradient_penalty_ignores_norms_below_the_target(kind):
    shape = SHAPES[kind]
    real, fake = batch(shape, seed=1), batch(shape, seed=2)
    penalty = GradientPenalty(weight=10.0, one_sided=True)

    below, _ = penalty.penalty(LinearCritic(shape, 0.4), real, fake)
    above, _ = penalty.penalty(LinearCritic(shape, 1.5), real, fake)

    assert below.item() == 0.0
    assert above.item() == pytest.approx(10.0 * 0.5 ** 2, rel=1e-5)


def test_gradient_penalty_target_option_moves_the_minimum():
    real, fake = batch(POINT_SHAPE, seed=1), batch(POINT_SHAPE, seed=2)
    assert GradientPenalty(weight=3.0, target=2.0).penalty(LinearCritic(POINT_SHAPE, 2.0), real, fake)[0].item() \
        == pytest.approx(0.0, abs=1e-10)
    assert GradientPenalty(weight=3.0, target=2.0).penalty(LinearCritic(POINT_SHAPE, 0.5), real, fake)[0].item() \
        == pytest.approx(3.0 * 1.5 ** 2, rel=1e-5)


def test_gradient_penalty_is_taken_at_per_sample_interpolates_between_real_and_fake():
    """x̂_i = ε_i x_i + (1 − ε_i) G(z)_i with one ε per sample in [0, 1], the same over all pixels."""
    seen = []
    critic = QuadraticCritic(torch.ones(IMAGE_SHAPE))
    critic.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].detach().clone()))
    real = batch(IMAGE_SHAPE, n=16, seed=1)
    fake = real + 2.0 + batch(IMAGE_SHAPE, n=16, seed=2).abs()  # every element differs by >= 2: ε is well conditioned
    torch.manual_seed(0)

    GradientPenalty().penalty(critic, real, fake)

    assert len(seen) == 1
    eps = ((seen[0] - fake) / (real - fake)).flatten(1)
    torch.testing.assert_close(eps, eps[:, :1].expand_as(eps), atol=1e-4, rtol=1e-4)  # one ε per sample
    assert ((eps[:, 0] >= -1e-5) & (eps[:, 0] <= 1 + 1e-5)).all()
    assert eps[:, 0].std() > 0.05  # a fresh ε for each sample, not one for the whole batch


@pytest.mark.parametrize("one_sided", [False, True])
def test_no_penalty_gradient_leaks_into_the_generator(one_sided):
    spec = DataSpec(shape=POINT_SHAPE, bounded=False)
    torch.manual_seed(0)
    generator = MLPGenerator(spec, latent_dim=4, hidden=[8])
    critic = MLPDiscriminator(spec, hidden=[16])
    with torch.no_grad():  # large weights: gradient norms far above 1, so one-sided is non-zero too
        for param in critic.parameters():
            param.mul_(5.0)
    fake = generator(torch.randn(12, 4))
    assert fake.requires_grad
    real = batch(POINT_SHAPE, n=12)

    term, _ = GradientPenalty(weight=10.0, one_sided=one_sided).penalty(critic, real, fake)
    assert term.item() > 0
    term.backward()

    for name, param in generator.named_parameters():
        assert param.grad is None or not param.grad.any(), f"penalty gradient reached generator.{name}"
    weight_grads = [p.grad for p in critic.parameters() if p.dim() == 2]  # biases after the last ReLU do not move ∇ₓD
    assert all(g is not None and g.abs().sum() > 0 for g in weight_grads)


@pytest.mark.parametrize("regularizer", [GradientPenalty(weight=10.0), R1Penalty(gamma=10.0)],
                         ids=["gradient_penalty", "r1"])
@pytest.mark.parametrize("kind", ["image", "points"])
def test_penalties_are_finite_and_differentiable_into_the_critic(regularizer, kind):
    shape = SHAPES[kind]
    torch.manual_seed(0)
    critic = MLPDiscriminator(DataSpec(shape=shape), hidden=[16, 16])
    term, scalars = regularizer.penalty(critic, batch(shape, n=8, seed=1), batch(shape, n=8, seed=2))

    assert torch.isfinite(term) and term.item() > 0
    assert all(torch.isfinite(value) for value in scalars.values())
    grads = torch.autograd.grad(term, list(critic.parameters()), allow_unused=True)
    assert all(g is None or torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum().item() for g in grads if g is not None) > 0


def test_gradient_penalty_of_a_linear_critic_pulls_the_weight_norm_towards_one():
    critic = LinearCritic(POINT_SHAPE, 3.0, bias=False)
    term, _ = GradientPenalty(weight=10.0).penalty(critic, batch(POINT_SHAPE), batch(POINT_SHAPE, seed=2))
    (grad,) = torch.autograd.grad(term, critic.linear.weight)
    w = critic.linear.weight.detach()
    torch.testing.assert_close(grad, 10.0 * 2 * (3.0 - 1.0) * w / w.norm())  # d/dw λ(‖w‖−1)²


# --- R1 -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["image", "points"])
def test_r1_of_a_linear_critic_is_half_gamma_times_squared_weight_norm(kind):
    shape = SHAPES[kind]
    term, scalars = R1Penalty(gamma=6.0).penalty(LinearCritic(shape, 1.5), batch(shape), batch(shape, seed=2))
    assert term.item() == pytest.approx(0.5 * 6.0 * 1.5 ** 2, rel=1e-5)
    assert scalars["penalty/r1"].item() == pytest.approx(term.item())
    assert scalars["critic/real_grad_norm"].item() == pytest.approx(1.5, rel=1e-5)


def test_r1_averages_squared_norms_over_the_real_samples_only():
    scale = torch.linspace(0.5, 1.5, math.prod(IMAGE_SHAPE)).reshape(IMAGE_SHAPE)
    critic = QuadraticCritic(scale)
    real = batch(IMAGE_SHAPE, n=4) * torch.arange(1, 5.0).reshape(4, 1, 1, 1)
    fake = torch.full_like(real, 100.0)  # would dominate if R1 looked at fake samples
    term, _ = R1Penalty(gamma=2.0).penalty(critic, real, fake)
    expected = 0.5 * 2.0 * torch.stack([(scale.square() * x).square().sum() for x in real]).mean()
    assert term.item() == pytest.approx(expected.item(), rel=1e-5)


# --- weight clipping and the recipe -----------------------------------------------------------------


def toy_recipe(regularizers=(), n_critic: int = 1, optimizer: str = "rmsprop", lr: float = 5e-5,
               loss: str = "wasserstein") -> GANRecipe:
    spec = DataSpec(shape=POINT_SHAPE, bounded=False)
    torch.manual_seed(0)
    generator = MLPGenerator(spec, latent_dim=4, hidden=[16])
    discriminator = MLPDiscriminator(spec, hidden=[16])
    make = {"rmsprop": lambda p: torch.optim.RMSprop(p, lr=lr),
            "adam": lambda p: torch.optim.Adam(p, lr=lr, betas=(0.0, 0.9))}[optimizer]
    optimizers = {"generator": make(generator.parameters()), "discriminator": make(discriminator.parameters())}
    schedulers = {name: constant(opt) for name, opt in optimizers.items()}
    return GANRecipe(generator=generator, discriminator=discriminator, loss=LOSSES.build(loss), optimizers=optimizers,
                     schedulers=schedulers, latent_dim=4, n_critic=n_critic, regularizers=list(regularizers))


def test_weight_clip_bounds_every_critic_parameter_after_a_real_discriminator_step():
    recipe = toy_recipe([WeightClip(0.01)])
    with torch.no_grad():
        for param in recipe.discriminator.parameters():
            param.copy_(torch.linspace(-0.5, 0.5, param.numel()).reshape(param.shape))
    generator_before = [p.detach().clone() for p in recipe.generator.parameters()]

    recipe.discriminator_step({"real": batch(POINT_SHAPE, n=16)})

    values = torch.cat([p.detach().flatten() for p in recipe.discriminator.parameters()])
    assert values.abs().max() <= 0.01
    assert (values.abs() == 0.01).sum() > values.numel() // 2  # the large weights were clamped, not re-initialised
    for before, after in zip(generator_before, recipe.generator.parameters()):
        assert torch.equal(before, after)  # the generator is neither stepped nor clipped by a critic step


def test_weight_clip_holds_through_whole_train_steps_and_leaves_the_generator_alone():
    recipe = toy_recipe([WeightClip(0.01)], n_critic=5, lr=1e-2)
    with torch.no_grad():
        for net in (recipe.discriminator, recipe.generator):
            for param in net.parameters():
                param.fill_(0.3)
    data = iter([{"real": batch(POINT_SHAPE, n=16, seed=s)} for s in range(10)])
    for _ in range(2):
        recipe.train_step(lambda: next(data))
    assert all(p.abs().max() <= 0.01 for p in recipe.discriminator.parameters())
    assert max(p.abs().max().item() for p in recipe.generator.parameters()) > 0.1


@pytest.mark.parametrize("clip_value", [0, 0.0, -0.01])
def test_weight_clip_refuses_a_non_positive_clip_value(clip_value):
    with pytest.raises(UserError, match="clip_value"):
        WeightClip(clip_value)
    with pytest.raises(UserError, match="clip_value"):
        REGULARIZERS.build("weight_clip", {"clip_value": clip_value})


NON_NUMERIC = [("weight_clip", "clip_value", None), ("weight_clip", "clip_value", "abc"),
               ("gradient_penalty", "weight", "abc"), ("gradient_penalty", "target", None), ("r1", "gamma", "abc")]


@pytest.mark.parametrize("name,option,value", NON_NUMERIC, ids=[f"{n}.{o}={v}" for n, o, v in NON_NUMERIC])
def test_a_non_numeric_regularizer_option_is_a_user_error(name, option, value):
    with pytest.raises(UserError, match=option):
        REGULARIZERS.build(name, {option: value})


@pytest.mark.parametrize("name,option", [("gradient_penalty", "weight"), ("r1", "gamma")])
def test_a_negative_penalty_weight_is_a_user_error(name, option):
    with pytest.raises(UserError, match=f"{option}' must be at least 0"):
        REGULARIZERS.build(name, {option: -1})


def test_regularizers_are_registered_by_their_config_names():
    assert {"gradient_penalty", "r1", "weight_clip"} <= set(REGULARIZERS.names())
    assert isinstance(REGULARIZERS.build("gradient_penalty", {"weight": 5}), GradientPenalty)
    assert REGULARIZERS.build("gradient_penalty", {"weight": 5}).weight == 5.0
    with pytest.raises(UserError, match="has no option"):
        REGULARIZERS.build("r1", {"gama": 1})


def test_train_step_with_n_critic_5_takes_5_batches_5_critic_steps_and_1_generator_step():
    recipe = toy_recipe([GradientPenalty()], n_critic=5, optimizer="adam", lr=1e-4)
    calls = {"batches": 0, "discriminator": 0, "generator": 0}

    def next_batch():
        calls["batches"] += 1
        return {"real": batch(POINT_SHAPE, n=8, seed=calls["batches"])}

    for name, optimizer in recipe.optimizers.items():
        original = optimizer.step

        def counted(*args, _name=name, _original=original, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        optimizer.step = counted

    scalars = recipe.train_step(next_batch)

    assert calls == {"batches": 5, "discriminator": 5, "generator": 1}
    d_steps = {float(s["step"]) for s in recipe.optimizers["discriminator"].state.values()}
    g_steps = {float(s["step"]) for s in recipe.optimizers["generator"].state.values()}
    assert d_steps == {5.0} and g_steps == {1.0}
    assert {"loss/d", "loss/g", "wasserstein_estimate", "penalty/gradient", "critic/grad_norm"} <= set(scalars)


@pytest.mark.parametrize("n_critic", [0, -1, 2.5])
def test_n_critic_must_be_a_positive_integer(n_critic):
    with pytest.raises(UserError, match="n_critic"):
        toy_recipe(n_critic=n_critic)


# --- combinations the recipe warns about ---------------------------------------------------------------


def image_critic(norm: str) -> nn.Module:
    return DCGANDiscriminator(DataSpec(shape=(1, 16, 16)), base_channels=4, norm=norm)


def lipschitz_problems(problems: list[str]) -> list[str]:
    return [p for p in problems if "Lipschitz" in p]


def batchnorm_problems(problems: list[str]) -> list[str]:
    return [p for p in problems if "BatchNorm" in p]


def test_wasserstein_loss_without_a_lipschitz_regularizer_is_flagged():
    problems = combination_problems(LOSSES.build("wasserstein"), [], image_critic("layer"))
    assert len(lipschitz_problems(problems)) == 1
    # R1 does not constrain the critic's Lipschitz constant everywhere, so it does not silence the warning
    assert lipschitz_problems(combination_problems(LOSSES.build("wasserstein"), [R1Penalty()], image_critic("layer")))


@pytest.mark.parametrize("regularizer", [GradientPenalty(), WeightClip(0.01)], ids=["gradient_penalty", "weight_clip"])
def test_a_lipschitz_regularizer_silences_the_wasserstein_warning(regularizer):
    problems = combination_problems(LOSSES.build("wasserstein"), [regularizer], image_critic("layer"))
    assert not lipschitz_problems(problems)


def test_other_losses_need_no_lipschitz_regularizer():
    for loss in ("nonsaturating", "hinge", "lsgan", "minimax"):
        assert not combination_problems(LOSSES.build(loss), [], image_critic("layer")), loss


@pytest.mark.parametrize("regularizer", [GradientPenalty(), R1Penalty()], ids=["gradient_penalty", "r1"])
def test_per_sample_penalties_on_a_batchnorm_critic_are_flagged(regularizer):
    problems = combination_problems(LOSSES.build("wasserstein"), [regularizer], image_critic("batch"))
    assert len(batchnorm_problems(problems)) == 1
    assert type(regularizer).__name__ in batchnorm_problems(problems)[0]
    for norm in ("layer", "instance", "none"):
        assert not batchnorm_problems(combination_problems(LOSSES.build("wasserstein"), [regularizer],
                                                           image_critic(norm))), norm


def test_weight_clipping_on_a_batchnorm_critic_is_fine():
    """The WGAN paper's critic keeps BatchNorm: clipping needs no per-sample gradients."""
    assert combination_problems(LOSSES.build("wasserstein"), [WeightClip(0.01)], image_critic("batch")) == []


def test_the_recipe_logs_each_problem_as_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="gantrain"):
        toy_recipe([])
    assert any(r.levelno == logging.WARNING and "Lipschitz" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gantrain"):
        toy_recipe([GradientPenalty()])
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_base_regularizer_adds_nothing_and_constrains_nothing():
    regularizer = Regularizer()
    critic = LinearCritic(POINT_SHAPE, 2.0)
    before = [p.detach().clone() for p in critic.parameters()]
    assert regularizer.penalty(critic, batch(POINT_SHAPE), batch(POINT_SHAPE)) is None
    regularizer.after_step(critic)
    assert all(torch.equal(a, b) for a, b in zip(before, critic.parameters()))
    assert not regularizer.enforces_lipschitz and not regularizer.needs_per_sample_gradients


def test_cli_warns_about_wasserstein_without_lipschitz_but_still_trains(tmp_path):
    run = tmp_path / "run"
    result = run_cli("model=dcgan", "loss=wasserstein", "trainer.max_steps=1", "model.generator.base_channels=8",
                     "model.discriminator.base_channels=8", f"hydra.run.dir={run}", *FAST, cwd=tmp_path, check=True)
    assert result.returncode == 0
    lines = (result.stdout + result.stderr).splitlines()
    assert any("WARNING" in line and "Lipschitz" in line for line in lines), result.stdout + result.stderr
    assert (run / "checkpoints" / "last.pt").is_file()


def test_a_null_regularizer_entry_turns_it_off(tmp_path):
    """``regularizers.weight_clip=null`` removes WGAN's clipping, so the unconstrained critic is warned about."""
    result = run_cli("model=wgan", "regularizers.weight_clip=null", "trainer.max_steps=1",
                     "model.generator.base_channels=8", "model.discriminator.base_channels=8",
                     f"hydra.run.dir={tmp_path / 'run'}", *FAST, cwd=tmp_path)
    assert "Lipschitz" in result.stdout + result.stderr
    critic = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["recipe"]["networks"]
    assert max(v.abs().max().item() for k, v in critic["discriminator"].items() if "weight" in k) > 0.01
