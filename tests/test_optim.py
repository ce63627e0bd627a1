"""Optimizers and learning-rate schedules, built from the ``optim`` config group."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from gantrain.errors import UserError
from gantrain.optim.optimizers import build_optimizer, build_schedule, optimizer_options
from gantrain.registry import load_builtin_parts

load_builtin_parts()
PRESETS = Path(__file__).resolve().parent.parent / "configs" / "optim"


def params() -> list[torch.nn.Parameter]:
    return list(torch.nn.Linear(3, 2).parameters())


def adam_cfg(**changes) -> dict:
    cfg = {"name": "adam", "lr": 2e-4, "betas": [0.5, 0.999], "eps": 1e-8, "weight_decay": 0.0,
           "generator": {"lr": None}, "discriminator": {"lr": None}, "schedule": {"name": "constant"}}
    cfg.update(changes)
    return cfg


# ---------------------------------------------------------------- optimizer_options


def test_options_shared_when_overrides_are_null() -> None:
    """null per-network values mean 'use the shared one'; group keys are not optimizer arguments."""
    options = optimizer_options(adam_cfg(), "generator")
    assert options == {"lr": 2e-4, "betas": [0.5, 0.999], "eps": 1e-8, "weight_decay": 0.0}


def test_options_per_network_override() -> None:
    """optim.discriminator.lr (TTUR) applies to that network only."""
    cfg = adam_cfg(generator={"lr": None}, discriminator={"lr": 4e-4, "betas": [0.0, 0.9]})
    assert optimizer_options(cfg, "generator")["lr"] == 2e-4
    disc = optimizer_options(cfg, "discriminator")
    assert disc["lr"] == 4e-4 and disc["betas"] == [0.0, 0.9]
    assert disc["eps"] == 1e-8  # not overridden: still shared


def test_options_without_override_section() -> None:
    """A config without generator/discriminator sections (or with null ones) uses the shared values."""
    cfg = adam_cfg()
    del cfg["generator"]
    cfg["discriminator"] = None
    assert optimizer_options(cfg, "generator")["lr"] == 2e-4
    assert optimizer_options(cfg, "discriminator")["lr"] == 2e-4


@pytest.mark.parametrize("lr", [0, 0.0, -1e-4, None, "fast", True])
def test_options_reject_bad_shared_lr(lr) -> None:
    """A zero, negative or non-numeric lr is a UserError naming the network."""
    with pytest.raises(UserError, match="generator"):
        optimizer_options(adam_cfg(lr=lr), "generator")


def test_options_reject_bad_override_lr() -> None:
    """A bad per-network lr is caught too, for that network only."""
    cfg = adam_cfg(discriminator={"lr": -0.1})
    assert optimizer_options(cfg, "generator")["lr"] == 2e-4
    with pytest.raises(UserError, match="discriminator"):
        optimizer_options(cfg, "discriminator")


def test_options_accept_integer_lr() -> None:
    """lr=1 from the command line is an int, and still a valid learning rate."""
    assert optimizer_options(adam_cfg(lr=1), "generator")["lr"] == 1


# ---------------------------------------------------------------- build_optimizer


def test_build_adam_uses_config_values() -> None:
    """The config's betas, eps and per-network lr land in the optimizer's param groups."""
    cfg = adam_cfg(eps=1e-6, weight_decay=0.01, generator={"lr": 1e-3})
    gen = build_optimizer(cfg, "generator", params())
    disc = build_optimizer(cfg, "discriminator", params())
    assert isinstance(gen, torch.optim.Adam)
    group = gen.param_groups[0]
    assert group["lr"] == 1e-3 and group["betas"] == (0.5, 0.999)
    assert group["eps"] == 1e-6 and group["weight_decay"] == 0.01
    assert disc.param_groups[0]["lr"] == 2e-4


def test_build_rmsprop_and_sgd() -> None:
    """rmsprop and sgd get their own arguments (alpha, momentum, nesterov)."""
    rms = build_optimizer({"name": "rmsprop", "lr": 5e-5, "alpha": 0.9, "momentum": 0.1}, "discriminator", params())
    assert isinstance(rms, torch.optim.RMSprop)
    assert rms.param_groups[0]["lr"] == 5e-5
    assert rms.param_groups[0]["alpha"] == 0.9 and rms.param_groups[0]["momentum"] == 0.1
    sgd = build_optimizer({"name": "sgd", "lr": 0.1, "momentum": 0.5, "nesterov": True}, "generator", params())
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.param_groups[0]["momentum"] == 0.5 and sgd.param_groups[0]["nesterov"] is True


@pytest.mark.parametrize("preset, kind", [("adam", torch.optim.Adam), ("rmsprop", torch.optim.RMSprop),
                                          ("sgd", torch.optim.SGD)])
def test_build_from_shipped_presets(preset: str, kind: type) -> None:
    """Each YAML preset, as Hydra composes it (an OmegaConf node), builds and steps its optimizer."""
    cfg = OmegaConf.load(PRESETS / f"{preset}.yaml")
    net = torch.nn.Linear(3, 1)
    optimizer = build_optimizer(cfg, "generator", net.parameters())
    assert isinstance(optimizer, kind)
    assert optimizer.param_groups[0]["lr"] == cfg.lr
    before = net.weight.detach().clone()
    net(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    assert not torch.equal(before, net.weight)


def test_preset_override_from_command_line_style_config() -> None:
    """optim.discriminator.lr=4e-4 on top of a preset changes only the discriminator."""
    cfg = OmegaConf.merge(OmegaConf.load(PRESETS / "adam.yaml"), OmegaConf.from_dotlist(["discriminator.lr=4e-4"]))
    assert build_optimizer(cfg, "discriminator", params()).param_groups[0]["lr"] == 4e-4
    assert build_optimizer(cfg, "generator", params()).param_groups[0]["lr"] == 2e-4
    assert build_optimizer(cfg, "generator", params()).param_groups[0]["betas"] == (0.5, 0.999)


def test_unknown_optimizer_and_option() -> None:
    """Typos in the optimizer name or its options are UserErrors."""
    with pytest.raises(UserError, match="did you mean 'adam'"):
        build_optimizer(adam_cfg(name="adma"), "generator", params())
    with pytest.raises(UserError, match="beta"):
        build_optimizer({"name": "sgd", "lr": 0.1, "betas": [0.5, 0.9]}, "generator", params())


# ---------------------------------------------------------------- schedules


def lr_trace(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list[float]:
    """The learning rate used at steps 0..steps-1 (one scheduler.step per training step)."""
    optimizer = scheduler.optimizer
    trace = []
    for _ in range(steps):
        trace.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return trace


def make_schedule(schedule: dict | None, total_steps: int | None, lr: float = 1.0):
    cfg = adam_cfg(lr=lr, schedule=schedule)
    return build_schedule(cfg, build_optimizer(cfg, "generator", params()), total_steps)


def test_constant_schedule() -> None:
    """constant (also the default when no schedule is given) keeps the lr."""
    assert lr_trace(make_schedule({"name": "constant"}, 10, lr=0.5), 10) == [0.5] * 10
    assert lr_trace(make_schedule(None, None, lr=0.5), 5) == [0.5] * 5


def test_linear_schedule_holds_then_decays_to_zero() -> None:
    """linear: factor 1 until start * total, then a straight line to 0 at total."""
    trace = lr_trace(make_schedule({"name": "linear", "start": 0.5}, 10), 11)
    assert trace[:6] == pytest.approx([1.0] * 6)
    assert trace[5:] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2, 0.0])


def test_linear_schedule_other_start() -> None:
    """start=0.25 of 8 steps: hold for 2, decay over 6; stays 0 past the end."""
    trace = lr_trace(make_schedule({"name": "linear", "start": 0.25}, 8, lr=0.3), 11)
    expected = [1, 1, 1, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6, 0, 0, 0]
    assert trace == pytest.approx([0.3 * f for f in expected])


def test_linear_schedule_from_start_zero() -> None:
    """start=0 decays from the first step."""
    trace = lr_trace(make_schedule({"name": "linear", "start": 0.0}, 4), 5)
    assert trace == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])


@pytest.mark.parametrize("total", [None, 0])
def test_linear_schedule_needs_total_steps(total) -> None:
    """Without trainer.max_steps there is no end to decay to: a UserError saying so."""
    with pytest.raises(UserError, match="max_steps"):
        make_schedule({"name": "linear"}, total)


@pytest.mark.parametrize("start", [1.0, -0.1, 1.5])
def test_linear_schedule_start_range(start: float) -> None:
    """start must lie in [0, 1)."""
    with pytest.raises(UserError, match="start"):
        make_schedule({"name": "linear", "start": start}, 10)


def test_unknown_schedule() -> None:
    """A misspelt schedule name is a UserError with a suggestion."""
    with pytest.raises(UserError, match="did you mean 'linear'"):
        make_schedule({"name": "linaer"}, 10)


@pytest.mark.parametrize("schedule", [{"name": "linear", "start": 0.5}, {"name": "constant"}])
def test_schedule_state_round_trips_weights_only(tmp_path: Path, schedule: dict) -> None:
    """A scheduler's state survives torch.save / torch.load(weights_only=True) and resumes in step."""
    reference = make_schedule(schedule, 10)
    full = lr_trace(reference, 10)

    interrupted = make_schedule(schedule, 10)
    lr_trace(interrupted, 4)
    torch.save({"scheduler": interrupted.state_dict(), "optimizer": interrupted.optimizer.state_dict()},
               tmp_path / "ckpt.pt")
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)

    resumed = make_schedule(schedule, 10)
    resumed.optimizer.load_state_dict(state["optimizer"])
    resumed.load_state_dict(state["scheduler"])
    assert resumed.last_epoch == 4
    assert lr_trace(resumed, 6) == pytest.approx(full[4:])
