"""Optimizer constructors and how a recipe gets one per network from the ``optim`` config."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from gantrain.options import positive_number
from gantrain.registry import OPTIMIZERS, SCHEDULES

# keys of the optim group that are not optimizer arguments
RESERVED_KEYS = ("name", "generator", "discriminator", "schedule")


@OPTIMIZERS.register("adam")
def adam(params: Iterable[torch.nn.Parameter], lr: float, betas: Sequence[float] = (0.9, 0.999),
         eps: float = 1e-8, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)


@OPTIMIZERS.register("rmsprop")
def rmsprop(params: Iterable[torch.nn.Parameter], lr: float, alpha: float = 0.99, eps: float = 1e-8,
            momentum: float = 0.0, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(params, lr=lr, alpha=alpha, eps=eps, momentum=momentum, weight_decay=weight_decay)


@OPTIMIZERS.register("sgd")
def sgd(params: Iterable[torch.nn.Parameter], lr: float, momentum: float = 0.0, nesterov: bool = False,
        weight_decay: float = 0.0) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)


def optimizer_options(optim_cfg: Mapping[str, Any], role: str) -> dict[str, Any]:
    """The shared options with the per-network ones (``optim.generator.lr``...) on top; null means shared."""
    options = {k: v for k, v in optim_cfg.items() if k not in RESERVED_KEYS}
    overrides = optim_cfg.get(role) or {}
    options.update({k: v for k, v in overrides.items() if v is not None})
    positive_number(options.get("lr"), f"optim lr for the {role}")
    return options


def build_optimizer(optim_cfg: Mapping[str, Any], role: str,
                    params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """``role`` is 'generator' or 'discriminator': which per-network overrides apply."""
    return OPTIMIZERS.build(optim_cfg["name"], optimizer_options(optim_cfg, role), params=params)


def build_schedule(optim_cfg: Mapping[str, Any], optimizer: torch.optim.Optimizer, total_steps: int | None,
                   steps_per_epoch: float | None = None, stage_start: int = 0) -> torch.optim.lr_scheduler.LRScheduler:
    """``optim.schedule`` for one optimizer; schedules may ask for the run's length in steps, its epoch length,
    or the step its optimizer's training stage starts at (milestones count from there)."""
    schedule = dict(optim_cfg.get("schedule") or {"name": "constant"})
    return SCHEDULES.build(schedule.pop("name"), schedule, "optim.schedule", optimizer=optimizer,
                           total_steps=total_steps, steps_per_epoch=steps_per_epoch, stage_start=stage_start)

