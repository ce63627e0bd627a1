"""The adversarial loss catalogue: golden values, directions, stability, reductions, weights, configs."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from gantrain.errors import UserError
from gantrain.losses.base import AdversarialLoss
from gantrain.registry import LOSSES, load_builtin_parts

load_builtin_parts()

LOSS_CONFIGS = Path(__file__).parent.parent / "configs" / "loss"
BUILTIN = sorted(n for n in LOSSES.names() if LOSSES.get(n).__module__.startswith("gantrain.losses"))
EXPECTED = ["hinge", "lsgan", "minimax", "nonsaturating", "relativistic_average", "wasserstein"]

# Critic outputs used by TF-GAN's published loss tests.
REAL = [-5.0, 1.4, 12.5, 2.7]
FAKE = [10.0, 4.4, -5.5, 3.6]


def t(values: list[float], grad: bool = False) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, requires_grad=grad)


def g_loss(loss: AdversarialLoss, fake: torch.Tensor, real: torch.Tensor, **kw: object) -> torch.Tensor:
    """The generator loss the way the recipe calls it: real scores only if the loss asks for them."""
    return loss.generator_loss(fake, real if loss.needs_real_scores_for_generator else None, **kw)


def softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def test_catalogue_is_complete() -> None:
    assert BUILTIN == EXPECTED
    assert [n for n in BUILTIN if LOSSES.build(n).needs_real_scores_for_generator] == ["relativistic_average"]


# --- golden values ------------------------------------------------------------------------------

def test_wasserstein_golden_values_from_tfgan() -> None:
    loss = LOSSES.build("wasserstein")
    assert loss.generator_loss(t(FAKE)).item() == pytest.approx(-3.125)
    assert loss.discriminator_loss(t(REAL), t(FAKE)).item() == pytest.approx(0.225)


def test_hinge_golden_values_from_tfgan() -> None:
    loss = LOSSES.build("hinge")
    assert loss.discriminator_loss(t(REAL), t(FAKE)).item() == pytest.approx(6.75)
    assert loss.generator_loss(t(FAKE)).item() == pytest.approx(-3.125)


@pytest.mark.parametrize("name, d_expected, g_expected", [
    # hand-computed from the formulas on the same scores (plain-Python math, independent of torch)
    ("minimax", mean([softplus(-r) for r in REAL]) + mean([softplus(f) for f in FAKE]),
     -mean([softplus(f) for f in FAKE])),
    ("nonsaturating", mean([softplus(-r) for r in REAL]) + mean([softplus(f) for f in FAKE]),
     mean([softplus(-f) for f in FAKE])),
    ("lsgan", 0.5 * mean([(r - 1) ** 2 for r in REAL]) + 0.5 * mean([f ** 2 for f in FAKE]),
     0.5 * mean([(f - 1) ** 2 for f in FAKE])),
    ("relativistic_average",
     mean([softplus(-(r - mean(FAKE))) for r in REAL]) + mean([softplus(f - mean(REAL)) for f in FAKE]),
     mean([softplus(-(f - mean(REAL))) for f in FAKE]) + mean([softplus(r - mean(FAKE)) for r in REAL])),
])
def test_hand_computed_values(name: str, d_expected: float, g_expected: float) -> None:
    loss = LOSSES.build(name)
    assert loss.discriminator_loss(t(REAL), t(FAKE)).item() == pytest.approx(d_expected, rel=1e-12)
    assert g_loss(loss, t(FAKE), t(REAL)).item() == pytest.approx(g_expected, rel=1e-12)


def test_lsgan_values_and_custom_targets() -> None:
    assert LOSSES.build("lsgan").discriminator_loss(t(REAL), t(FAKE)).item() == pytest.approx(41.73375)
    assert LOSSES.build("lsgan").generator_loss(t(FAKE)).item() == pytest.approx(17.69625)
    loss = LOSSES.build("lsgan", {"real_target": 1, "fake_target": -1, "generator_target": 0})
    d = 0.5 * mean([(r - 1) ** 2 for r in REAL]) + 0.5 * mean([(f + 1) ** 2 for f in FAKE])
    assert loss.discriminator_loss(t(REAL), t(FAKE)).item() == pytest.approx(d)
    assert loss.generator_loss(t(FAKE)).item() == pytest.approx(0.5 * mean([f ** 2 for f in FAKE]))
    assert loss.generator_loss(torch.zeros(3)).item() == 0.0  # at the target, nothing to learn


def test_describe_scores() -> None:
    scores = LOSSES.build("wasserstein").describe_scores(t(REAL), t(FAKE))
    assert scores["wasserstein_estimate"].item() == pytest.approx(2.9 - 3.125)
    scores = LOSSES.build("minimax").describe_scores(t(REAL), t(FAKE))
    assert scores["D(x)"].item() == pytest.approx(mean([1 / (1 + math.exp(-r)) for r in REAL]))
    assert scores["D(G(z))"].item() == pytest.approx(mean([1 / (1 + math.exp(-f)) for f in FAKE]))
    assert set(LOSSES.build("nonsaturating").describe_scores(t(REAL), t(FAKE))) == {"D(x)", "D(G(z))"}
    for name in BUILTIN:
        for value in LOSSES.build(name).describe_scores(t(REAL, grad=True), t(FAKE, grad=True)).values():
            assert value.dim() == 0 and not value.requires_grad


# --- direction --------------------------------------------------------------------------------

# Between every loss's targets and inside the hinge margins, so every term is active.
INTERIOR_REAL = [0.3, 0.6, 0.1, 0.8]
INTERIOR_FAKE = [0.7, 0.2, 0.5, 0.4]


@pytest.mark.parametrize("name", EXPECTED)
def test_direction_by_autograd(name: str) -> None:
    """D's loss falls as D(real) rises and D(fake) falls; G's loss falls as D(fake) rises."""
    loss = LOSSES.build(name)
    real, fake = t(INTERIOR_REAL, grad=True), t(INTERIOR_FAKE, grad=True)
    d_real, d_fake = torch.autograd.grad(loss.discriminator_loss(real, fake), (real, fake))
    assert (d_real < 0).all() and (d_fake > 0).all()
    fake = t(INTERIOR_FAKE, grad=True)
    (g_fake,) = torch.autograd.grad(g_loss(loss, fake, t(INTERIOR_REAL)), (fake,))
    assert (g_fake < 0).all()


@pytest.mark.parametrize("name", EXPECTED)
def test_direction_by_finite_differences(name: str) -> None:
    loss = LOSSES.build(name)
    real, fake, step = t(INTERIOR_REAL), t(INTERIOR_FAKE), 1e-3
    base_d = loss.discriminator_loss(real, fake)
    assert loss.discriminator_loss(real + step, fake) < base_d
    assert loss.discriminator_loss(real, fake - step) < base_d
    assert g_loss(loss, fake + step, real) < g_loss(loss, fake, real)


@pytest.mark.parametrize("name", ["minimax", "nonsaturating", "wasserstein", "relativistic_average"])
def test_monotone_losses_keep_direction_everywhere(name: str) -> None:
    """Losses with no target or margin push the same way for any scores."""
    loss = LOSSES.build(name)
    gen = torch.Generator().manual_seed(0)
    real = (torch.randn(64, generator=gen, dtype=torch.float64) * 5).requires_grad_()
    fake = (torch.randn(64, generator=gen, dtype=torch.float64) * 5).requires_grad_()
    d_real, d_fake = torch.autograd.grad(loss.discriminator_loss(real, fake), (real, fake))
    (g_fake,) = torch.autograd.grad(g_loss(loss, fake, real.detach()), (fake,))
    assert (d_real < 0).all() and (d_fake > 0).all() and (g_fake < 0).all()


def test_nonsaturating_keeps_gradient_where_minimax_saturates() -> None:
    """The reason nonsaturating exists: a confidently rejected sample still teaches G."""
    grads = {}
    for name in ("minimax", "nonsaturating"):
        fake = torch.tensor([-30.0], requires_grad=True)
        (grads[name],) = torch.autograd.grad(LOSSES.build(name).generator_loss(fake), (fake,))
    assert abs(grads["minimax"].item()) < 1e-12
    assert grads["nonsaturating"].item() == pytest.approx(-1.0)


# --- numerical stability --------------------------------------------------------------------------

@pytest.mark.parametrize("name", EXPECTED)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_at_extreme_logits(name: str, dtype: torch.dtype) -> None:
    loss = LOSSES.build(name)
    values = [1e4, -1e4, 1e4, -1e4]
    for real_values, fake_values in [(values, values[::-1]), ([1e4] * 4, [-1e4] * 4), ([-1e4] * 4, [1e4] * 4)]:
        real = torch.tensor(real_values, dtype=dtype, requires_grad=True)
        fake = torch.tensor(fake_values, dtype=dtype, requires_grad=True)
        d = loss.discriminator_loss(real, fake)
        d_grads = torch.autograd.grad(d, (real, fake))
        g = g_loss(loss, fake, real.detach())
        (g_grad,) = torch.autograd.grad(g, (fake,))
        assert torch.isfinite(d) and torch.isfinite(g)
        assert all(torch.isfinite(grad).all() for grad in (*d_grads, g_grad))


def test_log_losses_are_exact_at_extreme_logits() -> None:
    """softplus form: a perfect D has loss ~0, a hopeless one pays the logit, never inf."""
    d = LOSSES.build("minimax").discriminator_loss(torch.tensor([1e4]), torch.tensor([-1e4]))
    assert d.item() == 0.0
    d = LOSSES.build("minimax").discriminator_loss(torch.tensor([-1e4]), torch.tensor([1e4]))
    assert d.item() == pytest.approx(2e4)
    assert LOSSES.build("nonsaturating").generator_loss(torch.tensor([-1e4])).item() == pytest.approx(1e4)


# --- reductions and weights ----------------------------------------------------------------------

LOSSES_1234 = [1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("reduction, weights, expected", [
    ("mean", None, 2.5), ("sum", None, 10.0), ("sum_by_nonzero_weights", None, 2.5),
    ("mean", 2.0, 5.0), ("sum", 2.0, 20.0), ("sum_by_nonzero_weights", 2.0, 5.0),
    ("mean", [1.0, 0.0, 2.0, 0.0], 7.0 / 4), ("sum", [1.0, 0.0, 2.0, 0.0], 7.0),
    ("sum_by_nonzero_weights", [1.0, 0.0, 2.0, 0.0], 7.0 / 2),
    ("mean", 0.0, 0.0), ("sum", 0.0, 0.0), ("sum_by_nonzero_weights", 0.0, 0.0),  # all zero: 0, not NaN
    ("sum_by_nonzero_weights", [0.0, 0.0, 0.0, 0.0], 0.0),
])
def test_reduce(reduction: str, weights: object, expected: float) -> None:
    loss = LOSSES.build("wasserstein", {"reduction": reduction})
    w = t(weights) if isinstance(weights, list) else weights
    assert loss.reduce(t(LOSSES_1234), w).item() == pytest.approx(expected)


def test_sum_by_nonzero_weights_counts_after_broadcasting() -> None:
    loss = LOSSES.build("wasserstein", {"reduction": "sum_by_nonzero_weights"})
    values = t([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert loss.reduce(values, t([[2.0], [0.0]])).item() == pytest.approx(12.0 / 3)
    assert loss.reduce(values, t([0.0, 1.0, 1.0])).item() == pytest.approx(16.0 / 4)


def test_per_sample_weights_fit_patch_scores() -> None:
    """One weight per sample works for (B, 1, H, W) scores, not as an outer product."""
    loss = LOSSES.build("wasserstein", {"reduction": "sum"})
    scores = torch.ones(3, 1, 2, 2)
    assert loss.generator_loss(scores, weights=torch.tensor([1.0, 0.0, 2.0])).item() == pytest.approx(-12.0)
    with pytest.raises(ValueError, match="broadcast"):
        loss.reduce(torch.ones(4), torch.ones(4, 1))
    with pytest.raises(ValueError, match="broadcast"):
        loss.reduce(torch.ones(4), torch.ones(3))


@pytest.mark.parametrize("reduction, expected", [
    # w = [1, 0, 2, 0]; w*f = [10, 0, -11, 0] (sum -1); w*r = [-5, 0, 25, 0] (sum 20); two non-zero weights
    ("sum", 0.5 * -1 - 2 * 20), ("mean", 0.5 * -1 / 4 - 2 * 20 / 4), ("sum_by_nonzero_weights", 0.5 * -1 / 2 - 2 * 20 / 2),
])
def test_wasserstein_weights_by_hand(reduction: str, expected: float) -> None:
    loss = LOSSES.build("wasserstein", {"reduction": reduction, "real_weight": 2.0, "generated_weight": 0.5})
    w = t([1.0, 0.0, 2.0, 0.0])
    assert loss.discriminator_loss(t(REAL), t(FAKE), weights=w).item() == pytest.approx(expected)
    g = {"sum": 1.0, "mean": 1.0 / 4, "sum_by_nonzero_weights": 1.0 / 2}[reduction]
    assert loss.generator_loss(t(FAKE), weights=w).item() == pytest.approx(g)  # generator ignores real/generated_weight


def test_hinge_weights_by_hand() -> None:
    # relu(1 - r) = [6, 0, 0, 0], relu(1 + f) = [11, 5.4, 0, 4.6]; w = [1, 0, 2, 0] keeps 6 and 11
    loss = LOSSES.build("hinge", {"reduction": "sum", "real_weight": 2, "generated_weight": 0.5})
    assert loss.discriminator_loss(t(REAL), t(FAKE), weights=t([1.0, 0.0, 2.0, 0.0])).item() == pytest.approx(17.5)
    loss = LOSSES.build("hinge", {"reduction": "sum_by_nonzero_weights"})
    assert loss.discriminator_loss(t(REAL), t(FAKE), weights=t([1.0, 0.0, 2.0, 0.0])).item() == pytest.approx(8.5)


@pytest.mark.parametrize("name", EXPECTED)
def test_scalar_weight_scales_both_losses(name: str) -> None:
    """As in TF-GAN's weighted tests: a constant weight multiplies every reduction's result."""
    for reduction in ("mean", "sum", "sum_by_nonzero_weights"):
        loss = LOSSES.build(name, {"reduction": reduction})
        d, g = loss.discriminator_loss(t(REAL), t(FAKE)), g_loss(loss, t(FAKE), t(REAL))
        assert loss.discriminator_loss(t(REAL), t(FAKE), weights=2.3).item() == pytest.approx(2.3 * d.item())
        assert g_loss(loss, t(FAKE), t(REAL), weights=2.3).item() == pytest.approx(2.3 * g.item())


@pytest.mark.parametrize("name", EXPECTED)
def test_reductions_agree_with_unit_weights(name: str) -> None:
    n = len(REAL)
    values = {}
    for reduction in ("mean", "sum", "sum_by_nonzero_weights"):
        loss = LOSSES.build(name, {"reduction": reduction})
        values[reduction] = (loss.discriminator_loss(t(REAL), t(FAKE), weights=t([1.0] * n)).item(),
                             g_loss(loss, t(FAKE), t(REAL), weights=t([1.0] * n)).item())
    assert values["sum"] == pytest.approx(tuple(n * v for v in values["mean"]))
    assert values["sum_by_nonzero_weights"] == pytest.approx(values["mean"])
    unweighted = LOSSES.build(name)
    assert values["mean"] == pytest.approx((unweighted.discriminator_loss(t(REAL), t(FAKE)).item(),
                                            g_loss(unweighted, t(FAKE), t(REAL)).item()))


@pytest.mark.parametrize("name", [n for n in EXPECTED if n != "relativistic_average"])
def test_zero_weight_removes_a_sample(name: str) -> None:
    """A zero-weighted sample gets no gradient and sum_by_nonzero_weights averages over the rest."""
    loss = LOSSES.build(name, {"reduction": "sum_by_nonzero_weights"})
    w = t([1.0, 1.0, 0.0, 1.0])
    real, fake = t(REAL, grad=True), t(FAKE, grad=True)
    d_real, d_fake = torch.autograd.grad(loss.discriminator_loss(real, fake, weights=w), (real, fake))
    assert d_real[2] == 0 and d_fake[2] == 0
    kept = [0, 1, 3]
    expected = loss.discriminator_loss(t([REAL[i] for i in kept]), t([FAKE[i] for i in kept]))
    assert loss.discriminator_loss(t(REAL), t(FAKE), weights=w).item() == pytest.approx(expected.item())
    expected = loss.generator_loss(t([FAKE[i] for i in kept]))
    assert loss.generator_loss(t(FAKE), weights=w).item() == pytest.approx(expected.item())


@pytest.mark.parametrize("name", EXPECTED)
def test_real_and_generated_weights_scale_the_halves(name: str) -> None:
    real_only = LOSSES.build(name, {"generated_weight": 0.0})
    fake_only = LOSSES.build(name, {"real_weight": 0.0})
    both = LOSSES.build(name)
    scaled = LOSSES.build(name, {"real_weight": 3.0, "generated_weight": 0.25})
    r, f = real_only.discriminator_loss(t(REAL), t(FAKE)).item(), fake_only.discriminator_loss(t(REAL), t(FAKE)).item()
    assert both.discriminator_loss(t(REAL), t(FAKE)).item() == pytest.approx(r + f)
    assert scaled.discriminator_loss(t(REAL), t(FAKE)).item() == pytest.approx(3.0 * r + 0.25 * f)
    assert g_loss(scaled, t(FAKE), t(REAL)).item() == pytest.approx(g_loss(both, t(FAKE), t(REAL)).item())


def test_relativistic_generator_needs_real_scores() -> None:
    loss = LOSSES.build("relativistic_average")
    with pytest.raises(UserError, match="real_scores"):
        loss.generator_loss(t(FAKE))
    # detached real scores (as the recipe passes them) still give G its gradient through both terms
    fake = t(FAKE, grad=True)
    (grad,) = torch.autograd.grad(loss.generator_loss(fake, t(REAL)), (fake,))
    assert torch.isfinite(grad).all() and (grad < 0).all()


# --- options and configs ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", EXPECTED)
def test_yaml_matches_constructor(name: str) -> None:
    """Every loss has a YAML that names it, lists every option with its default, and builds."""
    path = LOSS_CONFIGS / f"{name}.yaml"
    assert path.is_file(), f"missing {path}"
    cfg = OmegaConf.to_container(OmegaConf.load(path))
    assert cfg["name"] == name
    options = {k: v for k, v in cfg.items() if k != "name"}
    params = {p.name: p.default for p in inspect.signature(LOSSES.get(name)).parameters.values()}
    assert options == params
    built = LOSSES.build(cfg["name"], options)
    assert isinstance(built, AdversarialLoss)
    for key, value in options.items():
        assert getattr(built, key) == value


VARIANTS = {"lsgan_mse": "lsgan"}  # configs of a registered loss with other defaults


def test_every_yaml_names_a_registered_loss() -> None:
    for path in LOSS_CONFIGS.glob("*.yaml"):
        assert OmegaConf.load(path).name == VARIANTS.get(path.stem, path.stem)
        assert OmegaConf.load(path).name in LOSSES


@pytest.mark.parametrize("name", EXPECTED)
def test_unknown_reduction_is_a_user_error(name: str) -> None:
    with pytest.raises(UserError, match="mean, sum, sum_by_nonzero_weights"):
        LOSSES.build(name, {"reduction": "avg"})


def test_bad_option_values_are_user_errors() -> None:
    with pytest.raises(UserError, match="did you mean 'sum'"):
        LOSSES.build("hinge", {"reduction": "sums"})
    with pytest.raises(UserError, match="real_weight"):
        LOSSES.build("hinge", {"real_weight": "heavy"})
    with pytest.raises(UserError, match="real_target"):
        LOSSES.build("lsgan", {"real_target": None})
    with pytest.raises(UserError, match="has no option 'margin'"):
        LOSSES.build("hinge", {"margin": 2.0})
