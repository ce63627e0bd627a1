"""How long a run is, in training steps: the one place the loop's budget and the learning-rate schedules ask.

A training step may draw several batches (a WGAN critic's n_critic steps each take one); how many is the
recipe's ``batches_per_step``, so an epoch of B batches lasts B / batches_per_step steps. A recipe that
draws one batch per step (pix2pix, CycleGAN, super-resolution) therefore never sees a critic setting.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from gantrain.data.source import DataSpec


def steps_per_epoch(batches_per_epoch: int | None, batches_per_step: int = 1) -> float | None:
    """Training steps per pass over the data (None when the data has no known epoch)."""
    if not batches_per_epoch:
        return None
    return batches_per_epoch / batches_per_step


def total_steps(max_steps: int | None, max_epochs: float | None, per_epoch: float | None) -> int | None:
    """The step budget, or max_epochs in steps, whichever ends first; None when neither is set (or known)."""
    candidates = [max_steps] if max_steps else []
    if max_epochs and per_epoch:
        candidates.append(math.ceil(max_epochs * per_epoch))
    return min(candidates) if candidates else None


def run_length(cfg: Mapping[str, Any], data_spec: DataSpec, batches_per_step: int = 1) -> dict[str, float | int | None]:
    """What schedules need to know of the run before it starts: ``total_steps`` and ``steps_per_epoch``,
    None where unknown; ``batches_per_step`` is the recipe's (``Recipe.batches_per_step``)."""
    trainer = cfg["trainer"]
    batches = max(data_spec.epoch_size // int(trainer["batch_size"]), 1) if data_spec.epoch_size else None
    per_epoch = steps_per_epoch(batches, batches_per_step)
    return {"total_steps": total_steps(trainer.get("max_steps"), trainer.get("max_epochs"), per_epoch),
            "steps_per_epoch": per_epoch}
