"""An exponential moving average (EMA) of a network's weights, for sampling and metrics.

Averaging the generator's weights over the last few thousand updates smooths out the oscillation of
adversarial training: the averaged generator usually gives better samples and lower FID than the live
one (Karras et al. 2018; Yazıcı et al. 2019). Only the weights are averaged; buffers (BatchNorm's
running statistics) are copied from the live network at each update, since an average of running
statistics does not describe the averaged weights any better than the newest ones.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, TypeVar

import torch
from torch import nn

from gantrain.errors import UserError

T = TypeVar("T")


def average_name(network: str) -> str:
    """Where a network's weight average is kept among the recipe's networks (and in checkpoints)."""
    return f"{network}_ema"


def averaged_or_live(weights: Mapping[str, T], network: str) -> T | None:
    """``network``'s entry of a checkpoint's networks: its weight average when the run kept one, else its own."""
    return weights.get(average_name(network), weights.get(network))


def ema_decay(cfg: Mapping[str, Any]) -> float | None:
    """The run's ``ema.decay``, checked (None: no average)."""
    return checked_decay((cfg.get("ema") or {}).get("decay"))


def checked_decay(value: object) -> float | None:
    """``ema.decay`` from the config: None (or 0) turns the average off, otherwise it must lie in (0, 1)."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise UserError(f"ema.decay must be a number in (0, 1) (e.g. 0.999), or null to turn it off; got {value!r}")
    return float(value)


class WeightAverage:
    """Keeps ``average``, a frozen copy of ``source`` whose weights follow an EMA of ``source``'s weights.

    The decay warms up as min(decay, (1 + t) / (10 + t)) after t updates, so the first updates are not
    dominated by the random initial weights.
    """

    def __init__(self, source: nn.Module, decay: float) -> None:
        self.source = source
        self.decay = float(decay)
        self.average = copy.deepcopy(source).requires_grad_(False).eval()
        self.updates = 0  # how many times update() ran: the t of the warm-up

    def decay_at(self, t: int) -> float:
        return min(self.decay, (1 + t) / (10 + t))

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the live weights; copy the live buffers."""
        weight = 1.0 - self.decay_at(self.updates)
        averaged = list(self.average.parameters())
        live = [p.detach() for p in self.source.parameters()]
        torch._foreach_lerp_(averaged, live, weight)
        for kept, current in zip(self.average.buffers(), self.source.buffers()):
            kept.copy_(current)
        self.updates += 1

    @torch.no_grad()
    def reset(self) -> None:
        """Start the average over from the live weights (a resumed run that had no average yet)."""
        self.average.load_state_dict(self.source.state_dict())
        self.updates = 0
