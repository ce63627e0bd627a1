"""Learning-rate schedules, stepped once per training step."""

from __future__ import annotations

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler

from gantrain.errors import UserError
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


@SCHEDULES.register("linear")
def linear(optimizer: torch.optim.Optimizer, total_steps: int | None, start: float = 0.5) -> LRScheduler:
    if not total_steps:
        raise UserError("optim.schedule.name=linear needs trainer.max_steps to know where the decay ends")
    if not 0.0 <= start < 1.0:
        raise UserError(f"optim.schedule.start must be in [0, 1), got {start}")
    return LambdaLR(optimizer, _LinearDecay(int(total_steps), float(start)))
