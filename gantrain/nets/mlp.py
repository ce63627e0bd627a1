"""The fully connected generator and discriminator of the original GAN (Goodfellow et al. 2014).

Sizes follow the seeds' small example (G: z -> 256 -> data, D: data -> 128 -> 1,
LeakyReLU 0.01); ``hidden`` takes any list of widths. The same networks serve 2-D toy
points at toy size (configs/model/networks/toy_mlp.yaml: 3 hidden ReLU layers of 512, as
the WGAN-GP paper's toy code), where ``negative_slope`` 0 makes the activations plain ReLUs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from gantrain.data.source import DataSpec
from gantrain.registry import NETWORKS


def activation(negative_slope: float) -> nn.Module:
    """LeakyReLU, or ReLU for a slope of 0 (the same function, a cheaper kernel, and it prints as what it is)."""
    return nn.ReLU() if negative_slope == 0 else nn.LeakyReLU(negative_slope)


def _stack(widths: Sequence[int], negative_slope: float) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for width_in, width_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(width_in, width_out), activation(negative_slope)]
    return layers


@NETWORKS.register("mlp_generator")
class MLPGenerator(nn.Module):
    """z -> sample; ends in Tanh for data in [-1, 1], linear for unbounded (toy) data."""

    def __init__(self, data_spec: DataSpec, latent_dim: int, hidden: Sequence[int] = (256,),
                 negative_slope: float = 0.01) -> None:
        super().__init__()
        self.shape = tuple(data_spec.shape)
        widths = [latent_dim, *hidden]
        self.net = nn.Sequential(*_stack(widths, negative_slope), nn.Linear(widths[-1], math.prod(self.shape)),
                                 nn.Tanh() if data_spec.bounded else nn.Identity())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.shape)


@NETWORKS.register("mlp_discriminator")
class MLPDiscriminator(nn.Module):
    """sample -> one unbounded score (a logit); the loss decides what to do with it."""

    def __init__(self, data_spec: DataSpec, hidden: Sequence[int] = (128,), negative_slope: float = 0.01) -> None:
        super().__init__()
        widths = [math.prod(data_spec.shape), *hidden]
        self.net = nn.Sequential(nn.Flatten(), *_stack(widths, negative_slope), nn.Linear(widths[-1], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)
