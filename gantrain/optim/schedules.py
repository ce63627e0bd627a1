"""Learning-rate schedules, stepped once per training step."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from gantrain.errors import UserError
from gantrain.options import positive_int
from gantrain.registry import SCHEDULES


@SCHEDULES.register("constant")
def constant(optimizer: torch.optim.Optimizer) -> LRScheduler:
    return LambdaLR(optimizer, lambda step: 1.0)


class _LinearDecay:
    """Factor 1 until ``start`` of the steps, then linearly to 0 at the last step (pix2pix / CycleGAN)."""

    def __init__(self, total_steps: int, start: float) -> None:
        self.decay_from = int(total_steps * start)
        self.decay_steps = max(1, total_steps - self.decay_from)

    def __call__(self, step: int) -> float:
        return max(0.0, 1.0 - max(0, step - self.decay_from) / self.decay_steps)


class _EpochLinearDecay:
    """Factor 1 for ``hold`` epochs, then down by 1/(decay + 1) per epoch: pix2pix/CycleGAN's ``linear`` policy.

    Epoch e (counted from 0, in whole epochs) gets 1 - max(0, e + 1 - hold) / (decay + 1), the rule of the
    papers' code, so the last of hold + decay epochs trains at lr/(decay + 1).
    """

    def __init__(self, steps_per_epoch: float, hold: int, decay: int) -> None:
        self.steps_per_epoch, self.hold, self.decay = steps_per_epoch, hold, decay

    def __call__(self, step: int) -> float:
        epoch = int(step // self.steps_per_epoch)
        return max(0.0, 1.0 - max(0, epoch + 1 - self.hold) / (self.decay + 1))


@SCHEDULES.register("epoch_linear")
def epoch_linear(optimizer: torch.optim.Optimizer, steps_per_epoch: float | None, hold_epochs: int = 100,
                 decay_epochs: int = 100) -> LRScheduler:
    if not steps_per_epoch:
        raise UserError("optim.schedule.name=epoch_linear counts epochs, but this data does not say how long an "
                        "epoch is; use optim.schedule.name=linear")
    hold = positive_int(hold_epochs, "optim.schedule.hold_epochs") if hold_epochs != 0 else 0
    decay = positive_int(decay_epochs, "optim.schedule.decay_epochs")
    return LambdaLR(optimizer, _EpochLinearDecay(float(steps_per_epoch), hold, decay))


class _Milestones:
    """gamma^k after the k-th milestone, counted in steps from ``start`` (a training stage's first step)."""

    def __init__(self, milestones: list[int], gamma: float, start: int) -> None:
        self.milestones, self.gamma, self.start = sorted(milestones), gamma, start

    def __call__(self, step: int) -> float:
        return self.gamma ** sum(step - self.start >= milestone for milestone in self.milestones)


@SCHEDULES.register("multistep")
def multistep(optimizer: torch.optim.Optimizer, milestones: list[int] = (), gamma: float = 0.5,
              stage_start: int = 0) -> LRScheduler:
    """The learning rate times gamma at each milestone (ESRGAN: halved at 50k, 100k, 200k, 300k)."""
    steps = [positive_int(m, "optim.schedule.milestones") for m in milestones]
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0 < gamma <= 1:
        raise UserError(f"optim.schedule.gamma must be in (0, 1], got {gamma!r}")
    return LambdaLR(optimizer, _Milestones(steps, float(gamma), int(stage_start)))


@SCHEDULES.register("linear")
def linear(optimizer: torch.optim.Optimizer, total_steps: int | None, start: float = 0.5) -> LRScheduler:
    if not total_steps:
        raise UserError("optim.schedule.name=linear needs trainer.max_steps to know where the decay ends")
    if not 0.0 <= start < 1.0:
        raise UserError(f"optim.schedule.start must be in [0, 1), got {start}")
    return LambdaLR(optimizer, _LinearDecay(int(total_steps), float(start)))
