"""WGAN's weight clipping (Arjovsky et al. 2017)."""

from __future__ import annotations

import torch
from torch import nn

from gantrain.options import as_float
from gantrain.regularizers.base import Regularizer
from gantrain.registry import REGULARIZERS


@REGULARIZERS.register("weight_clip")
class WeightClip(Regularizer):
    """After every critic update, clamp each critic parameter to [−c, c]: a crude Lipschitz bound."""

    enforces_lipschitz = True

    def __init__(self, clip_value: float = 0.01) -> None:
        self.clip_value = as_float("regularizers.weight_clip.clip_value", clip_value, minimum=0.0,
                                   strictly_above=True)

    @torch.no_grad()
    def after_step(self, discriminator: nn.Module) -> None:
        for param in discriminator.parameters():
            param.clamp_(-self.clip_value, self.clip_value)
