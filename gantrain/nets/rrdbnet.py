"""RRDBNet, the ESRGAN generator (Wang et al. 2018): residual-in-residual dense blocks, no BatchNorm.

Each dense block has five 3x3 convolutions, each seeing the block's input and every earlier output
(``growth`` new channels each), LeakyReLU 0.2, and adds 0.2 x its output to its input; three such
blocks make an RRDB, which again adds 0.2 x its output to its input. After the trunk (plus a long
skip), nearest-neighbour upsampling and a convolution per x2 (or x3) stage. The dense blocks'
convolutions start small (He initialisation x ``init_scale``), which the paper found makes the deep
network train stably. ``input_unshuffle`` (BasicSR's x2 and x1 models, e.g. RealESRGAN_x2plus) first folds
each 2x2 (or 4x4) block of input pixels into channels, so the trunk runs at that much lower resolution and
the upsampling goes that much further.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gantrain.errors import UserError
from gantrain.nets.upsampling import upsampling_steps
from gantrain.registry import NETWORKS

DENSE_LAYERS = 5


class ResidualDenseBlock(nn.Module):
    def __init__(self, features: int, growth: int, residual_scale: float, init_scale: float) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(features + layer * growth, growth if layer < DENSE_LAYERS - 1 else features, 3, padding=1)
            for layer in range(DENSE_LAYERS))
        self.residual_scale = residual_scale
        for conv in self.convs:
            nn.init.kaiming_normal_(conv.weight)
            conv.weight.data.mul_(init_scale)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [x]
        for conv in self.convs[:-1]:
            outputs.append(F.leaky_relu(conv(torch.cat(outputs, 1)), 0.2))
        return x + self.residual_scale * self.convs[-1](torch.cat(outputs, 1))


class RRDB(nn.Module):
    def __init__(self, features: int, growth: int, residual_scale: float, init_scale: float) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[ResidualDenseBlock(features, growth, residual_scale, init_scale)
                                      for _ in range(3)])
        self.residual_scale = residual_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.residual_scale * self.blocks(x)


@NETWORKS.register("rrdbnet_generator")
class RRDBNetGenerator(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, scale: int, features: int = 64, blocks: int = 23,
                 growth: int = 32, residual_scale: float = 0.2, init_scale: float = 0.1,
                 input_unshuffle: int | None = None) -> None:
        super().__init__()
        input_unshuffle = input_unshuffle or 1
        if input_unshuffle not in (1, 2, 4):
            raise UserError(f"rrdbnet_generator: input_unshuffle must be 1, 2 or 4, got {input_unshuffle!r}")
        self.input_unshuffle = int(input_unshuffle)
        self.multiple = self.input_unshuffle  # input sizes the unshuffle needs (translate pads to it)
        self.head = nn.Conv2d(in_channels * self.input_unshuffle ** 2, features, 3, padding=1)
        self.trunk = nn.Sequential(*[RRDB(features, growth, residual_scale, init_scale) for _ in range(blocks)],
                                   nn.Conv2d(features, features, 3, padding=1))
        self.factors = upsampling_steps(scale * self.input_unshuffle, "rrdbnet_generator")
        self.upsampling = nn.ModuleList(nn.Conv2d(features, features, 3, padding=1) for _ in self.factors)
        self.tail = nn.Sequential(nn.Conv2d(features, features, 3, padding=1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(features, out_channels, 3, padding=1))
        self.scale = scale

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.input_unshuffle > 1:
            images = F.pixel_unshuffle(images, self.input_unshuffle)
        features = self.head(images)
        features = features + self.trunk(features)
        for factor, conv in zip(self.factors, self.upsampling):
            features = F.leaky_relu(conv(F.interpolate(features, scale_factor=factor, mode="nearest")), 0.2)
        return self.tail(features)
