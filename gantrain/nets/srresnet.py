"""SRResNet, the SRGAN generator (Ledig et al. 2017).

A 9x9 convolution with PReLU, residual blocks (conv-BN-PReLU-conv-BN plus the input), a convolution
with BN added back to the features before the blocks, sub-pixel upsampling (a convolution to r^2 x
the channels, PixelShuffle(r), PReLU) per x2 or x3 stage, and a 9x9 convolution to the image.
``batch_norm=false`` gives the BN-free variant later work (EDSR, BasicSR's MSRResNet) prefers.
The output is linear, in the same [-1, 1] scale as the input.
"""

from __future__ import annotations

import torch
from torch import nn

from gantrain.nets.upsampling import upsampling_steps
from gantrain.registry import NETWORKS


def _norm(channels: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, batch_norm: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), _norm(channels, batch_norm), nn.PReLU(),
            nn.Conv2d(channels, channels, 3, padding=1), _norm(channels, batch_norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


@NETWORKS.register("srresnet_generator")
class SRResNetGenerator(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, scale: int, features: int = 64, blocks: int = 16,
                 batch_norm: bool = True) -> None:
        super().__init__()
        self.head = nn.Sequential(nn.Conv2d(in_channels, features, 9, padding=4), nn.PReLU())
        self.body = nn.Sequential(*[ResidualBlock(features, batch_norm) for _ in range(blocks)],
                                  nn.Conv2d(features, features, 3, padding=1), _norm(features, batch_norm))
        upsampling: list[nn.Module] = []
        for factor in upsampling_steps(scale, "srresnet_generator"):
            upsampling += [nn.Conv2d(features, features * factor ** 2, 3, padding=1), nn.PixelShuffle(factor), nn.PReLU()]
        self.tail = nn.Sequential(*upsampling, nn.Conv2d(features, out_channels, 9, padding=4))
        self.scale = scale

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.head(images)
        return self.tail(features + self.body(features))
